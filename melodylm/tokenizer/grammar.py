"""Which model id may follow which, as tensors, for one tokenizer (the sampler's constraint).

Built from miditok's table of which token type may follow which, mapped onto model ids (a
subword piece is checked through the base tokens it stands for), plus what depends on the tokens
before: REMI time is kept as miditok's decoder keeps it, so a Position never sends time back and
stays inside its bar; a MIDILike ``NoteOff`` closes a note that is open and every note is closed
before the end; PAD, BOS and drum tokens never come. The end token is only allowed where time
may move on (never after a pitch waiting for its duration), and after at least one note.
Constrained samples have no errors by miditok's ``tokens_errors`` (tests check it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

import melodylm.tokenizer.miditok_adapter as miditok_adapter

# Token types that only complete the token before them: a sequence never starts with one.
_COMPLETING = {"Duration", "Velocity", "NoteOff", "DrumOff"}
# Token types after which time may move on: where they may follow a token, the token ends an event.
_TIME = {"Bar", "Position", "TimeShift", "Rest"}
_NOTE_ON = {"Pitch", "NoteOn", "PitchDrum", "DrumOn"}
_NOTE_OFF = {"NoteOff", "DrumOff"}
_SPECIAL = ("PAD", "BOS", "EOS")
# Drum tokens are in miditok's vocabulary but encoding a melody (never a drum track) makes none.
_DRUM = {"PitchDrum", "DrumOn", "DrumOff"}
_FAR = 1 << 20  # distance of a state from which no end can be reached


@dataclass
class _Effect:
    """What a run of base tokens (a subword piece) needs from the state before it, in table form."""

    valid: bool = True  # its own transitions and values are fine
    first: int = -1  # type index of its first and last token
    last: int = -1
    pos_req: int = -1  # first Position with no Bar or Rest before it: may not go back in time
    pos_max: int = -1  # largest Position with no TimeSig before it: must fit the state's bar
    sim: bool = False  # a Position follows a Rest or TimeSig inside: checked by simulation (Grammar.step)
    note_first: bool = False  # a note (or Chord) comes before any Position, Bar or Rest inside
    notes: int = 0
    delta: int = 0  # notes opened minus notes closed (MIDILike)
    need_open: set = field(default_factory=set)  # pitches the state must hold open / closed
    need_closed: set = field(default_factory=set)
    set_open: set = field(default_factory=set)  # pitches open / closed afterwards
    set_closed: set = field(default_factory=set)


class Grammar:
    """Which model ids may come next, as tensors, for one tokenizer.

    Built from miditok's ``tokens_types_graph`` of the base tokenizer. Each model id (a base
    token, or a subword piece standing for several) gets a row in a few tables: its first and
    last token types, whether its inside is valid, what it needs from the state and what it
    changes. :meth:`allowed` turns a batch of states into a ``(B, V)`` mask; :meth:`step`
    applies chosen ids.

    For tokenizations with Position tokens (REMI) the state follows time in ticks exactly as
    miditok's decoder does (bars, time signatures, rests that carry over bar lines, the end of the
    last note), so a note never starts before the previous one and bars are counted in time, not
    in Bar tokens. This is stricter than miditok's ``tokens_errors``, which lets a Position after a
    Rest go back; and a note after a Rest waits for a Position, as REMI writes it.
    """

    def __init__(self, tokenizer, device: torch.device | str = "cpu") -> None:
        self.tok = tokenizer
        base = tokenizer.base
        vocab = tokenizer.base_vocab
        self.res = int(base.config.max_num_pos_per_beat)  # positions per beat of the time signature
        self.types = sorted({t.split("_")[0] for t in vocab})
        tix = {t: i for i, t in enumerate(self.types)}
        self.tix = tix
        graph = {a: {b for b in nxt if b in tix} for a, nxt in base.tokens_types_graph.items() if a in tix}
        for s in _SPECIAL:
            graph.setdefault(s, set())
        self.graph = graph
        self.btype = np.array([tix[t.split("_")[0]] for t in vocab], dtype=np.int64)
        self.bval = np.array([self._value(t) for t in vocab], dtype=np.int64)
        self.has_bar = "Bar" in tix
        self.has_pos = "Position" in tix
        self.has_off = any(t in tix for t in _NOTE_OFF)
        real = [t for t in self.types if t not in _SPECIAL and t not in _DRUM]
        if self.has_bar:
            starts = {"Bar"}  # REMI counts bars from its Bar tokens: a tune starts with one
        else:
            starts = {t for t in graph.get("BOS", set()) if t in real and t not in _COMPLETING}
        self.start_types = starts
        self.end_type = np.array([bool(graph.get(t, set()) & _TIME) for t in self.types], dtype=bool)
        self.end_type[tix["BOS"]] = True  # an empty sequence is complete (used only when forced)
        self.K = 128 if self.has_off else 0  # open notes tracked
        self.dist = self._distances()  # (n_types, K + 1): tokens to the nearest possible end

        V = tokenizer.vocab_size
        self.V = V
        self.pad, self.bos, self.eos = tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id
        pieces = [self._base_of(i) for i in range(V)]
        effects = [self.analyse(p) if p else _Effect(valid=False) for p in pieces]
        for i, name in ((self.pad, "PAD"), (self.bos, "BOS"), (self.eos, "EOS")):
            effects[i] = _Effect(valid=False, first=tix[name], last=tix[name])
            pieces[i] = []
        self.device = dev = torch.device(device)

        def col(name: str, dtype=torch.long) -> torch.Tensor:
            return torch.tensor([getattr(e, name) for e in effects], dtype=dtype, device=dev)

        self.piece_ok = col("valid", torch.bool)
        self.first, self.last = col("first"), col("last")
        self.pos_req, self.pos_max = col("pos_req"), col("pos_max")
        self.note_first = col("note_first", torch.bool)
        self.notes, self.delta = col("notes"), col("delta")
        self.has_sim = any(e.sim and e.valid for e in effects)
        L = max(1, max(len(p) for p in pieces))
        seq = np.full((V, L), -1, dtype=np.int64)
        for i, p in enumerate(pieces):
            seq[i, : len(p)] = p
        self.seq = torch.tensor(seq, device=dev)  # base tokens of every id, -1 padded
        self.plen = torch.tensor([len(p) for p in pieces], device=dev)
        self.btype_t = torch.tensor(self.btype, device=dev)
        self.bval_t = torch.tensor(self.bval, device=dev)
        if self.has_pos:
            self._time_tables(vocab, dev)
        first = np.array([e.first for e in effects])
        trans = np.zeros((len(self.types), V), dtype=bool)
        for a, name in enumerate(self.types):
            ok_types = starts if name == "BOS" else graph.get(name, set())
            trans[a] = np.isin(first, [tix[t] for t in ok_types]) & (first >= 0)
        self.trans = torch.tensor(trans, device=dev)
        self.end_t = torch.tensor(self.end_type, device=dev)
        self.dist_t = torch.tensor(self.dist, dtype=torch.long, device=dev)
        self.dist_piece = self.dist_t[self.last.clamp_min(0), 0]  # (V,) when no note can be open
        self.dist_piece[~self.piece_ok] = _FAR
        self.max_dist = int(self.dist[self.dist < _FAR].max()) + 1  # budgets above this never bind
        self.T = {t: tix.get(t, -9) for t in ("Bar", "TimeSig", "Position", "Rest", "Duration")}
        self.note_types = torch.tensor([tix[t] for t in _NOTE_ON if t in tix], device=dev)
        if self.has_off:
            P = 128
            need_open, need_closed = torch.zeros(V, P, device=dev), torch.zeros(V, P, device=dev)
            set_open = torch.zeros(V, P, dtype=torch.bool, device=dev)
            set_closed = torch.zeros(V, P, dtype=torch.bool, device=dev)
            for i, e in enumerate(effects):
                need_open[i, list(e.need_open)] = 1
                need_closed[i, list(e.need_closed)] = 1
                set_open[i, list(e.set_open)] = True
                set_closed[i, list(e.set_closed)] = True
            self.need_open_T, self.need_closed_T = need_open.T.contiguous(), need_closed.T.contiguous()
            self.set_open, self.set_closed = set_open, set_closed

    # --- tables ---------------------------------------------------------------------------------
    def _value(self, token: str) -> int:
        """The integer a base token carries: pitch, position, positions per bar (TimeSig), or
        length in positions (Duration, Rest, TimeShift are written ``beats.positions.resolution``)."""
        kind, _, val = token.partition("_")
        if kind == "TimeSig":
            return int(val.split("/")[0]) * self.res
        parts = val.split(".")
        try:
            if len(parts) == 3:
                beats, pos, res = (int(x) for x in parts)
                return beats * self.res + pos * self.res // res
            return int(val)
        except ValueError:
            return 0

    def _time_tables(self, vocab: list[str], dev: torch.device) -> None:
        """Ticks of every Position / Duration / Rest token under each time-signature denominator,
        and what each TimeSig token sets, all taken from miditok's own tables."""
        import symusic
        from miditok.utils import compute_ticks_per_bar

        base = self.tok.base
        tpb_of = miditok_adapter.ticks_per_beat_by_denominator(base)
        dens = sorted(tpb_of)
        self.den_index = {d: i for i, d in enumerate(dens)}
        ticks = np.zeros((len(dens), len(vocab)), dtype=np.int64)
        ts_den = np.zeros(len(vocab), dtype=np.int64)
        ts_bar = np.ones(len(vocab), dtype=np.int64)
        for j, d in enumerate(dens):
            tpb = tpb_of[d]
            tpp = miditok_adapter.ticks_per_position(base, tpb)
            durations, rests = miditok_adapter.duration_ticks(base, tpb), miditok_adapter.rest_ticks(base, tpb)
            for i, t in enumerate(vocab):
                kind, _, val = t.partition("_")
                if kind == "Position":
                    ticks[j, i] = int(val) * tpp
                elif kind == "Duration":
                    ticks[j, i] = durations[val]
                elif kind == "Rest":
                    ticks[j, i] = rests[val]
        for i, t in enumerate(vocab):
            if t.startswith("TimeSig_"):
                num, den = miditok_adapter.parse_time_signature(base, t.split("_", 1)[1])
                ts_den[i] = self.den_index[den]
                ts_bar[i] = compute_ticks_per_bar(symusic.TimeSignature(0, num, den), base.time_division)
        self.ticks_t = torch.tensor(ticks, device=dev)  # (denominators, base vocab)
        self.ts_den_t, self.ts_bar_t = torch.tensor(ts_den, device=dev), torch.tensor(ts_bar, device=dev)
        self.tpp_t = torch.tensor([miditok_adapter.ticks_per_position(base, tpb_of[d]) for d in dens], device=dev)
        self.den44 = self.den_index.get(4, 0)
        self.bar44 = int(compute_ticks_per_bar(symusic.TimeSignature(0, 4, 4), base.time_division))

    def _base_of(self, i: int) -> list[int]:
        """Base tokens of model id ``i``; none for ids past the base or piece table (control and
        fill-in-the-middle tokens), which the grammar never offers and steps as nothing."""
        if self.tok.subword == "none":
            return [i] if 0 <= i < len(self.btype) else []
        base = self.tok.decode_ids([i]).tolist()
        return base if all(0 <= b < len(self.btype) for b in base) else []

    def _distances(self) -> np.ndarray:
        """Fewest tokens from (last type, open notes) to a state where the sequence may end."""
        n, K = len(self.types), self.K
        on = {self.tix[t] for t in _NOTE_ON if t in self.tix} if self.has_off else set()
        off = {self.tix[t] for t in _NOTE_OFF if t in self.tix}
        real = [i for i, t in enumerate(self.types) if t not in _SPECIAL and t not in _DRUM]
        succ = {a: [self.tix[b] for b in self.graph.get(t, set()) if self.tix[b] in real]
                for a, t in enumerate(self.types)}
        dist = np.full((n, K + 1), _FAR, dtype=np.int64)
        for a in range(n):
            if self.end_type[a]:
                dist[a, 0] = 0
        changed = True
        while changed:  # relax until stable: a dozen types x 129 open counts
            changed = False
            for a in range(n):
                for k in range(K + 1):
                    best = dist[a, k]
                    for b in succ[a]:
                        k2 = k + (b in on) - (b in off)
                        if 0 <= k2 <= K and dist[b, k2] + 1 < best:
                            best = dist[b, k2] + 1
                    if best < dist[a, k]:
                        dist[a, k], changed = best, True
        return dist

    def analyse(self, base: list[int]) -> _Effect:
        """Needs of a run of base-token ids (a subword piece) from the state before it."""
        e = _Effect()
        names = [self.types[int(self.btype[b])] for b in base]
        e.first, e.last = self.tix[names[0]], self.tix[names[-1]]
        if any(n in _SPECIAL or n in _DRUM for n in names):
            e.valid = False
        for a, b in zip(names, names[1:]):
            if b not in self.graph.get(a, set()):
                e.valid = False
        pos = None  # last Position inside, once its bar is known (None: relative to the state)
        since = None  # what last reset time inside the piece: None, "Bar" or "Rest"
        bar_len = None
        opened: set = set()
        closed: set = set()
        for b, name in zip(base, names):
            v = int(self.bval[b])
            if name in _NOTE_ON or name == "Chord":
                if since is None and pos is None:
                    e.note_first = True
                elif since == "Rest" and pos is None:
                    e.valid = False  # a note right after a Rest: see need_pos in Grammar.step
            if name in ("Bar", "Rest"):
                since, pos = name, (-1 if name == "Bar" else None)
            elif name == "TimeSig":
                bar_len = v
                if since != "Bar":
                    since = "TimeSig"  # ticks per position may change in the middle of a bar
            elif name == "Position":
                if bar_len is None:
                    e.pos_max = max(e.pos_max, v)
                elif v >= bar_len:
                    e.valid = False
                if since in ("Rest", "TimeSig"):
                    e.sim = True
                elif pos is None:
                    if e.pos_req < 0:
                        e.pos_req = v
                elif v <= pos:
                    e.valid = False
                pos = v
            elif name in _NOTE_ON:
                e.notes += 1
                if self.has_off:
                    if v in opened:
                        e.valid = False  # the same pitch twice without a NoteOff between
                    elif v not in closed:
                        e.need_closed.add(v)
                    opened.add(v)
                    closed.discard(v)
                    e.delta += 1
            elif name in _NOTE_OFF:
                if v in opened:
                    opened.discard(v)
                elif v in closed:
                    e.valid = False  # closed twice
                else:
                    e.need_open.add(v)
                closed.add(v)
                e.delta -= 1
        e.set_open, e.set_closed = opened, closed
        return e

    # --- batch state ----------------------------------------------------------------------------
    def start(self, n: int, prompt_base: list[int]) -> dict[str, torch.Tensor]:
        """States of ``n`` sequences that have read BOS and then the prompt's base tokens."""
        dev = self.device

        def full(v: int) -> torch.Tensor:
            return torch.full((1,), v, dtype=torch.long, device=dev)

        no = torch.zeros(1, dtype=torch.bool, device=dev)
        st = {"last": full(self.tix["BOS"]), "notes": full(0), "has_note": no, "k": full(0)}
        if self.has_pos:  # the variables of miditok's REMI decoder, in ticks; 4/4 until a TimeSig
            st.update(cur=full(0), bar_tick=full(0), bar=full(-1), bar_pos=full(4 * self.res),
                      bar_ticks=full(self.bar44), den=full(self.den44), anchor=full(0), anchor_bar=full(0),
                      note_end=full(0), floor=full(0), need_pos=no)
        if self.has_off:
            st["open"] = torch.zeros(1, 128, dtype=torch.bool, device=dev)
        specials = (self.tok.pad_id_base, self.tok.bos_id_base, self.tok.eos_id_base)
        prompt_base = [int(b) for b in prompt_base if int(b) not in specials]
        for b in prompt_base:  # one sequence, one base token at a time
            self._base_step(st, torch.tensor([b], device=dev))
        if prompt_base:
            e = self.analyse(prompt_base)
            st["last"] = full(e.last)
            st["has_note"] = torch.tensor([e.notes > 0], device=dev)
            if self.has_off:
                st["open"][0, list(e.set_open)] = True
                st["k"] = full(len(e.set_open))
        st["notes"] = full(0)  # count new notes only
        if self.has_pos:
            st["bar0"] = st["bar"].clone()  # bars are counted from the prompt's last one
        return {k: v.expand(n, *v.shape[1:]).clone() for k, v in st.items()}

    def allowed(self, st: dict[str, torch.Tensor], remaining_after: int, max_notes: int | None,
                allow_eos: bool = True) -> torch.Tensor:
        """``(B, V)`` mask of the ids each sequence may take next (the end token included).

        ``remaining_after``: tokens still allowed after this one; the mask only keeps ids from
        which an end stays reachable in time. Once ``max_notes`` new notes are out, only ids that
        bring the sequence closer to an end are allowed, then only the end token. Ids with a
        Position after a Rest inside are checked exactly by :meth:`step` after they are drawn.
        """
        last = st["last"]
        ok = self.trans[last] & self.piece_ok  # (B, V)
        if self.has_pos:
            lowest = st["floor"] - st["bar_tick"]  # ticks into the bar a Position may not go below
            tpp = self.tpp_t[st["den"]]
            ok &= (self.pos_req < 0) | (self.pos_req * tpp[:, None] >= lowest[:, None])
            ok &= self.pos_max < st["bar_pos"][:, None]
            ok &= ~(st["need_pos"][:, None] & self.note_first)
        k = st["k"]
        if self.has_off:
            openf = st["open"].float()
            viol = openf @ self.need_closed_T + (1.0 - openf) @ self.need_open_T
            ok &= viol == 0
            k_after = (k[:, None] + self.delta).clamp(0, self.K)
            dist_after = self.dist_t[self.last.clamp_min(0)[None, :], k_after]
        else:
            dist_after = self.dist_piece[None, :]
        can_end = self.end_t[last] & (k == 0)
        hit = None  # the notes limit is reached: head for the end, then end
        if max_notes is not None:
            ok &= st["notes"][:, None] + self.notes <= max_notes
            hit = st["notes"] >= max_notes
            dist_now = self.dist_t[last, k]
            ok &= ~hit[:, None] | (dist_after < dist_now[:, None])
            ok &= ~(hit & can_end)[:, None]
        if remaining_after < self.max_dist:
            ok &= dist_after <= remaining_after  # keep an end reachable within the token budget
        eos = can_end & allow_eos
        if remaining_after > 0:  # no end before the first note unless a limit calls for it
            eos &= st["has_note"] if hit is None else st["has_note"] | hit
        # With nothing else left (never expected), ending beats a token the grammar forbids.
        ok[:, self.eos] = eos | ~ok.any(dim=1)
        return ok

    def step(self, st: dict[str, torch.Tensor], ids: torch.Tensor, bars: tuple[int, int] | None = None
             ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """States after the ids ``(B,)`` (special ids change nothing), and which of them send time back.

        Runs the base tokens of each id one at a time, as miditok's decoder reads them. With
        ``bars = (first, end)`` (bars counted in time from 0, REMI), an id is also flagged when it
        puts a note before bar ``first`` or moves time to bar ``end`` or later: the sampler writes
        the middle of a tune so, its notes inside the bars it replaces and the suffix's bar untouched.
        """
        st = dict(st)
        bad = torch.zeros_like(ids, dtype=torch.bool)
        if bars is not None and not self.has_pos:
            raise ValueError("bars are known only for tokenizations with Position tokens (REMI)")
        if self.has_pos:
            L = int(self.plen[ids].max())
            for j in range(L):
                b = self.seq[ids, j]
                bad |= self._base_step(st, b)
                if bars is not None:
                    is_note = (b >= 0) & torch.isin(self.btype_t[b.clamp_min(0)], self.note_types)
                    bad |= (is_note & (st["bar"] < bars[0])) | (st["bar"] >= bars[1])
        new_last = self.last[ids]
        special = (ids == self.eos) | (ids == self.pad) | (ids == self.bos)
        st["last"] = torch.where(special, st["last"], new_last)
        n = self.notes[ids]
        st["notes"] = st["notes"] + n
        st["has_note"] = st["has_note"] | (n > 0)
        if self.has_off:
            st["open"] = (st["open"] & ~self.set_closed[ids]) | self.set_open[ids]
            st["k"] = st["open"].sum(dim=1)
        return st, bad

    def _base_step(self, st: dict[str, torch.Tensor], b: torch.Tensor) -> torch.Tensor:
        """One base token per sequence (``-1``: none) through the time keeping of miditok's REMI
        decoder, in ticks, in place; returns where a Position goes back in time or past the bar."""
        if not self.has_pos:
            return torch.zeros_like(b, dtype=torch.bool)
        T = self.T
        bb = b.clamp_min(0)
        typ = torch.where(b >= 0, self.btype_t[bb], -1)
        v = self.bval_t[bb]
        ticks = self.ticks_t[st["den"], bb]
        cur, bar_tick, bar, bar_ticks = st["cur"], st["bar_tick"], st["bar"], st["bar_ticks"]
        # Bar: the next bar starts one bar length after the current one (the first bar at 0)
        is_bar = typ == T["Bar"]
        nb = bar + 1
        cur = torch.where(is_bar & (nb > 0), bar_tick + bar_ticks, cur)
        bar_tick = torch.where(is_bar, cur, bar_tick)
        bar = torch.where(is_bar, nb, bar)
        floor = torch.where(is_bar, bar_tick, st["floor"])
        # TimeSig: when it changes, bars are counted anew from the current bar
        is_ts = typ == T["TimeSig"]
        new_bar_ticks, new_den = self.ts_bar_t[bb], self.ts_den_t[bb]
        change = is_ts & ((new_bar_ticks != bar_ticks) | (new_den != st["den"]))
        anchor = torch.where(change, bar_tick, st["anchor"])
        anchor_bar = torch.where(change, bar, st["anchor_bar"])
        bar_ticks = torch.where(change, new_bar_ticks, bar_ticks)
        den = torch.where(change, new_den, st["den"])
        bar_pos = torch.where(is_ts, v, st["bar_pos"])
        # Rest: from the end of the last note, and it may carry into later bars
        is_rest = typ == T["Rest"]
        r_cur = torch.maximum(st["note_end"], cur) + ticks
        real = anchor_bar + torch.div(r_cur - anchor, bar_ticks, rounding_mode="floor")
        jump = is_rest & (real > bar)
        b0 = torch.where(bar < 0, 0, bar)
        bar_tick = torch.where(jump, bar_tick + (real - b0) * bar_ticks, bar_tick)
        bar = torch.where(jump, real, bar)
        cur = torch.where(is_rest, r_cur, cur)
        floor = torch.where(is_rest, r_cur, floor)
        # Position: inside the current bar, never before the floor
        is_pos = typ == T["Position"]
        # After a Rest the next note waits for a Position, as REMI writes it: miditok's
        # tokens_errors would otherwise compare later Positions with the one before the Rest.
        need_pos = (st["need_pos"] | is_rest) & ~is_pos & ~is_bar
        p_cur = bar_tick + ticks
        bad = is_pos & ((p_cur < floor) | (v >= bar_pos))
        bar = torch.where(is_pos & (bar < 0), 0, bar)
        cur = torch.where(is_pos, p_cur, cur)
        floor = torch.where(is_pos, p_cur + 1, floor)
        # Duration: the note that started at cur ends later
        is_dur = typ == T["Duration"]
        note_end = torch.where(is_dur, torch.maximum(st["note_end"], cur + ticks), st["note_end"])
        st.update(cur=cur, bar_tick=bar_tick, bar=bar, bar_ticks=bar_ticks, bar_pos=bar_pos, den=den, anchor=anchor,
                  anchor_bar=anchor_bar, note_end=note_end, floor=floor, need_pos=need_pos)
        return bad

    def steppable(self, ids: torch.Tensor) -> torch.Tensor:
        """``ids`` with every id the grammar has no table row for (a control or sentinel token,
        or an id past its vocabulary) replaced by the end token, which changes no state."""
        inside = (ids >= 0) & (ids < self.V)
        known = self.first[ids.clamp(0, self.V - 1)] >= 0
        return torch.where(inside & known, ids, torch.full_like(ids, self.eos))

    def time_signature_mask(self, ts_base_id: int) -> torch.Tensor:
        """``(V,)`` mask of the ids holding no TimeSig token other than base id ``ts_base_id``."""
        cache = self.__dict__.setdefault("_ts_masks", {})  # asked at every step of a middle
        if int(ts_base_id) not in cache:
            b = self.seq.clamp_min(0)
            is_ts = (self.seq >= 0) & (self.btype_t[b] == self.T["TimeSig"])
            cache[int(ts_base_id)] = ~(is_ts & (self.seq != int(ts_base_id))).any(dim=1)
        return cache[int(ts_base_id)]

    def new_bars(self, st: dict[str, torch.Tensor]) -> torch.Tensor:
        """Bars begun since the prompt (REMI), per sequence."""
        return st["bar"] - st["bar0"]

    # --- checking -------------------------------------------------------------------------------
    def errors(self, base_ids) -> int:
        """miditok's count of errors (bad type successions, time going back, unclosed notes)."""
        from miditok import TokSequence

        ids = [int(i) for i in base_ids if int(i) not in
               (self.tok.pad_id_base, self.tok.bos_id_base, self.tok.eos_id_base)]
        if not ids:
            return 0
        ratio = self.tok.base.tokens_errors(TokSequence(ids=ids))
        return int(round(float(ratio) * len(ids)))


__all__ = ["Grammar"]
