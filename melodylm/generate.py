"""Prompt -> tokens -> sampling -> MIDI. One generation loop for every architecture.

The loop talks to models only through ``init_state`` / ``prefill`` / ``decode`` (or, with
``use_cache=False``, through ``forward`` on the last ``max_context`` tokens); the GPT's KV cache,
the LSTM's state and the bi-LSTM's window live inside the state object, which is made of
batch-first tensors, so finished samples are simply dropped from it.

Every sample decodes to MIDI because decoding is constrained by the tokenizer's grammar
(:class:`Grammar`): miditok's table of which token type may follow which, mapped onto model ids
(a subword piece is checked through the base tokens it stands for), plus what depends on the
tokens before: REMI time is kept as miditok's decoder keeps it, so a Position never sends time
back and stays inside its bar; a MIDILike ``NoteOff`` closes a note that is open and every note is
closed before the end; PAD, BOS and drum tokens never come. The end token is only allowed where
time may move on (never after a pitch waiting for its duration), and after at least one note.
Constrained samples have no errors by miditok's ``tokens_errors`` (tests check it).

Typical use::

    from melodylm.generate import generate, write_samples
    samples = generate("checkpoints/gpt-small", "tune.mid", n=4, prompt_bars=4, max_bars=8, seed=1)
    write_samples(samples, "samples/mine")
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from melodylm.errors import UserError
from melodylm.midi import bar_start  # noqa: F401  (re-exported: prompts are cut at bar lines)

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
_STOP_NAMES = ("running", "eos", "max_tokens", "max_notes", "max_bars")


# ============================================================================ logits -> token

def filter_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None) -> torch.Tensor:
    """Temperature, then top-k, then nucleus (top-p) filtering of ``(B, V)`` logits.

    ``top_k`` of 0 or ``None`` and ``top_p`` of 1 or ``None`` keep every token. Tokens already at
    ``-inf`` (masked by the grammar) stay there and take no share of the nucleus.
    """
    logits = logits.float() / max(temperature, 1e-8)
    if top_k and top_k < logits.size(-1):
        kth = torch.topk(logits, int(top_k), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and 0 < top_p < 1:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = torch.softmax(sorted_logits, dim=-1)
        # drop a token when the mass before it already reaches top_p (the first token always stays)
        drop = (torch.cumsum(probs, dim=-1) - probs) >= top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return logits


def pick_tokens(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row of ``(B, V)`` logits: greedy for ``top_k=1``, else a sample.

    Sampling divides the probabilities by exponential noise and takes the largest: the same
    distribution as ``torch.multinomial`` in one kernel without a host round trip.
    """
    if top_k == 1:
        return logits.argmax(dim=-1)
    probs = torch.softmax(filter_logits(logits, temperature, top_k, top_p), dim=-1)
    noise = torch.empty_like(probs).exponential_(1.0, generator=generator).clamp_min_(1e-30)
    return (probs / noise).argmax(dim=-1)


# ============================================================================ grammar

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
        dens = sorted(base._tpb_per_ts)
        self.den_index = {d: i for i, d in enumerate(dens)}
        ticks = np.zeros((len(dens), len(vocab)), dtype=np.int64)
        ts_den = np.zeros(len(vocab), dtype=np.int64)
        ts_bar = np.ones(len(vocab), dtype=np.int64)
        for j, d in enumerate(dens):
            tpb = base._tpb_per_ts[d]
            tpp = base._compute_ticks_per_pos(tpb)
            for i, t in enumerate(vocab):
                kind, _, val = t.partition("_")
                if kind == "Position":
                    ticks[j, i] = int(val) * tpp
                elif kind == "Duration":
                    ticks[j, i] = base._tpb_tokens_to_ticks[tpb][val]
                elif kind == "Rest":
                    ticks[j, i] = base._tpb_rests_to_ticks[tpb][val]
        for i, t in enumerate(vocab):
            if t.startswith("TimeSig_"):
                num, den = base._parse_token_time_signature(t.split("_", 1)[1])
                ts_den[i] = self.den_index[den]
                ts_bar[i] = compute_ticks_per_bar(symusic.TimeSignature(0, num, den), base.time_division)
        self.ticks_t = torch.tensor(ticks, device=dev)  # (denominators, base vocab)
        self.ts_den_t, self.ts_bar_t = torch.tensor(ts_den, device=dev), torch.tensor(ts_bar, device=dev)
        self.tpp_t = torch.tensor([base._compute_ticks_per_pos(base._tpb_per_ts[d]) for d in dens], device=dev)
        self.den44 = self.den_index.get(4, 0)
        self.bar44 = int(compute_ticks_per_bar(symusic.TimeSignature(0, 4, 4), base.time_division))

    def _base_of(self, i: int) -> list[int]:
        if self.tok.subword == "none":
            return [i]
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

    def step(self, st: dict[str, torch.Tensor], ids: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """States after the ids ``(B,)`` (special ids change nothing), and which of them send time back.

        Runs the base tokens of each id one at a time, as miditok's decoder reads them.
        """
        st = dict(st)
        bad = torch.zeros_like(ids, dtype=torch.bool)
        if self.has_pos:
            L = int(self.plen[ids].max())
            for j in range(L):
                bad |= self._base_step(st, self.seq[ids, j])
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


def _select(state: Any, rows: torch.Tensor) -> Any:
    """Keep sequences ``rows`` of a model state (batch-first tensors, in tuples, lists or dicts)."""
    if isinstance(state, torch.Tensor):
        return state.index_select(0, rows)
    if isinstance(state, dict):
        return {k: _select(v, rows) for k, v in state.items()}
    if isinstance(state, (tuple, list)):
        return type(state)(_select(v, rows) for v in state)
    return state


# ============================================================================ the loop

@dataclass
class Sampled:
    """Model ids one sequence got, and why it stopped."""

    ids: np.ndarray  # new model ids, the end token excluded
    stop: str  # eos | max_tokens | max_notes | max_bars


@torch.no_grad()
def sample_sequences(model, tokenizer, n: int = 1, max_new_tokens: int | None = 256, prompt: list[int] | None = None,
                     temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                     generator: torch.Generator | None = None, device: str | torch.device = "cpu", *,
                     constrain: bool = True, max_notes: int | None = None, max_bars: int | None = None,
                     use_cache: bool = True, ignore_eos: bool = False, prompt_base: list[int] | None = None,
                     grammar: Grammar | None = None) -> list[Sampled]:
    """Generate ``n`` continuations of ``prompt`` (model ids; BOS is prepended when missing) in one batch.

    Prefill once, then one token per step for every sequence still running; a sequence stops
    at the end token or at the first limit reached, and leaves the batch. ``max_new_tokens``
    caps the new tokens (``None``: no cap, so set another limit); ``max_notes`` / ``max_bars``
    count new notes / Bar tokens (a bar beyond ``max_bars`` ends the sequence instead of starting).

    ``constrain`` masks ids the grammar forbids (see :class:`Grammar`); ``prompt_base`` (the
    prompt's base tokens) sets the grammar's starting state and defaults to decoding ``prompt``.
    ``use_cache=False`` recomputes ``forward`` on the last ``max_context`` tokens at every step
    (a reference and a benchmark baseline). ``ignore_eos`` never ends before ``max_new_tokens``
    (benchmarks).
    """
    dev = torch.device(device)
    bos, eos = tokenizer.bos_id, tokenizer.eos_id
    prompt = [int(i) for i in (prompt or [])]
    if not prompt or prompt[0] != bos:
        prompt = [bos] + prompt
    if prompt_base is None:
        prompt_base = tokenizer.decode_ids(prompt[1:]).tolist()
    if grammar is None or grammar.device != dev:
        grammar = Grammar(tokenizer, dev)
    g = grammar
    if max_bars is not None and not g.has_pos:
        raise ValueError(f"max_bars: {tokenizer.settings.scheme} has no bars to count")
    limit = max_new_tokens if max_new_tokens is not None else 1 << 62
    track = constrain or max_notes is not None or max_bars is not None
    st = g.start(n, prompt_base) if track else {}

    P = len(prompt)
    rows = torch.arange(n, device=dev)  # original index of each sequence in the batch
    live = torch.ones(n, dtype=torch.bool, device=dev)  # finished ones are fed EOS until the next compaction
    stop = torch.zeros(n, dtype=torch.long, device=dev)
    steps: list[tuple[torch.Tensor, torch.Tensor]] = []  # (rows, ids or -1) of each step
    idx = torch.tensor([prompt], dtype=torch.long, device=dev).expand(n, P)
    ctx = getattr(model, "max_context", None)
    if use_cache:
        state = model.init_state(n, dev)
        logits, state = model.prefill(idx, state)
    else:
        seq = idx.clone()
        logits = model(seq[:, -ctx:] if ctx else seq)[0][:, -1]
    extra = logits.size(-1) - g.V  # ids the tokenizer does not know (none for a trained checkpoint)
    eos_col = torch.tensor([eos], device=dev)
    t = 0
    while t < limit:
        remaining_after = limit - t - 1
        lg = logits.float()
        if constrain:
            ok = g.allowed(st, remaining_after, max_notes, allow_eos=not ignore_eos)
            if extra > 0:
                ok = torch.cat([ok, ok.new_zeros(ok.size(0), extra)], dim=1)
            lg = lg.masked_fill(~ok, float("-inf"))
        elif ignore_eos:
            lg = lg.index_fill(1, eos_col, float("-inf"))
        nxt = pick_tokens(lg, temperature, top_k, top_p, generator)  # (B,)
        nxt = torch.where(live, nxt, eos)
        if track:
            nxt_g = nxt.clamp_max(g.V - 1)
            new_st, bad = g.step(st, nxt_g)
            if constrain and g.has_sim:
                # A piece with a Position after a Rest inside was drawn where it sends time back:
                # forbid it and draw again (exact: the draw is conditioned on the allowed set).
                for _ in range(g.V):
                    if not bool(bad.any()):
                        break
                    lg[bad, nxt_g[bad]] = float("-inf")
                    redraw = pick_tokens(lg[bad], temperature, top_k, top_p, generator)
                    nxt = nxt.masked_scatter(bad, redraw)
                    nxt_g = nxt.clamp_max(g.V - 1)
                    new_st, bad = g.step(st, nxt_g)
        why = (nxt == eos).long()
        if track:
            if constrain and max_notes is not None:
                why = torch.where((nxt == eos) & (st["notes"] >= max_notes), 3, why)
            if max_bars is not None:  # a bar beyond the limit (a Bar, or a rest over the bar line) is the end
                why = torch.where((why == 0) & (g.new_bars(new_st) > max_bars), 4, why)
            if max_notes is not None and not constrain:
                why = torch.where((why == 0) & (new_st["notes"] > max_notes), 3, why)
            st = new_st
        ended = (why > 0) & live
        nxt = torch.where(ended, eos, nxt)
        steps.append((rows, torch.where(live & ~ended, nxt, -1)))
        t += 1
        if t == limit:
            stop[rows] = torch.where(ended, why, torch.where(live, 2, stop[rows]))
            break
        if bool(ended.any()):
            stop[rows[ended]] = why[ended]
            live = live & ~ended
            dead = int((~live).sum())
            if dead == live.numel():
                break
            if 4 * dead >= live.numel():  # drop finished sequences once they are a quarter of the batch
                keep = torch.nonzero(live).squeeze(1)
                rows, nxt, live = rows[keep], nxt[keep], live[keep]
                st = {k: v.index_select(0, keep) for k, v in st.items()}
                if use_cache:
                    state = _select(state, keep)
                else:
                    seq = seq.index_select(0, keep)
        if use_cache:
            logits, state = model.decode(nxt[:, None], state)
        else:
            seq = torch.cat([seq, nxt[:, None]], dim=1)
            logits = model(seq[:, -ctx:] if ctx else seq)[0][:, -1]
    if limit == 0:
        stop.fill_(2)
    out: list[list[int]] = [[] for _ in range(n)]
    if steps:
        all_rows = torch.cat([r for r, _ in steps]).tolist()
        all_ids = torch.cat([i for _, i in steps]).tolist()
        for r, i in zip(all_rows, all_ids):
            if i >= 0:
                out[r].append(i)
    return [Sampled(np.asarray(ids, dtype=np.int64), _STOP_NAMES[why]) for ids, why in zip(out, stop.tolist())]


def sample_ids(model, tokenizer, n: int = 1, max_new_tokens: int = 256, prompt: list[int] | None = None,
               temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
               generator: torch.Generator | None = None, device: str | torch.device = "cpu",
               **kwargs) -> list[np.ndarray]:
    """The new model ids of each sequence (see :func:`sample_sequences` for the arguments)."""
    seqs = sample_sequences(model, tokenizer, n, max_new_tokens, prompt, temperature, top_k, top_p,
                            generator, device, **kwargs)
    return [s.ids for s in seqs]


# ============================================================================ prompts

@dataclass
class Prompt:
    """The part of a MIDI file that conditions generation, tokenized as training data is."""

    path: str
    score: Any  # one-track symusic Score, cut and filtered
    base_ids: np.ndarray
    n_notes: int
    beats: float  # end of its last note, in quarter notes
    tempo: float  # quarter notes per minute
    time_signature: tuple[int, int]
    cut: str  # "" | "bars:N" | "notes:N"
    dropped_pitches: list[int] = field(default_factory=list)  # outside the tokenizer's range


def load_prompt(path: str | Path, tokenizer, melody: str = "auto", bars: int | None = None,
                notes: int | None = None) -> Prompt:
    """Read a MIDI prompt: melody selection as in training, an optional cut, the tokenizer's pitch range.

    ``bars``: keep the first ``bars`` bars (notes that start there, cut at the bar line);
    ``notes``: keep the first ``notes`` notes. Raises :class:`UserError` for a file that cannot
    be read or leaves no note.
    """
    from melodylm.midi import load_melody, make_track, note_array, time_signature_at

    mel = load_melody(path, melody)
    if mel.status != "ok":
        raise UserError(f"--prompt {path}: {mel.reason}")
    score = mel.score
    tpq = int(score.ticks_per_quarter)
    track = score.tracks[0]
    arr = note_array(track)
    cut = ""
    if bars is not None:
        end = bar_start(score, bars)
        arr = arr[arr[:, 0] < end]
        arr[:, 1] = np.minimum(arr[:, 1], end - arr[:, 0])
        cut = f"bars:{bars}"
    if notes is not None:
        arr = arr[:notes]
        cut = (cut + "," if cut else "") + f"notes:{notes}"
    lo, hi = tokenizer.settings.pitch_range
    inside = (arr[:, 2] >= lo) & (arr[:, 2] < hi)
    dropped = sorted(int(p) for p in arr[~inside, 2])
    arr = arr[inside]
    if not len(arr):
        why = f"all its notes lie outside the model's pitch range {lo}..{hi - 1}" if dropped else "no notes"
        raise UserError(f"--prompt {path}: {why}{' after the cut ' + cut if cut else ''}")
    out = score.copy()
    out.tracks[0] = make_track(arr, name=track.name, program=track.program)
    base_ids = tokenizer.encode_score(out)
    n_notes = tokenizer.count_notes(base_ids)
    if n_notes == 0:
        raise UserError(f"--prompt {path}: no notes left after tokenization")
    tempo = float(score.tempos[0].qpm) if len(score.tempos) else 120.0
    ts = time_signature_at(score, 0)
    beats = float((arr[:, 0] + arr[:, 1]).max()) / tpq
    return Prompt(str(path), out, base_ids, n_notes, beats, tempo, ts, cut, dropped)


# ============================================================================ from ids to scores

@dataclass
class Sample:
    """One generated melody."""

    score: Any  # symusic Score written to the MIDI file
    ids: np.ndarray  # new model ids
    base_ids: np.ndarray  # base tokens of the file: prompt (with keep_prompt) and continuation
    n_notes: int  # notes in ``score``
    new_notes: int  # notes the model added
    new_tokens: int  # model ids the model added
    invalid_tokens: int  # miditok's errors among the continuation's base tokens
    invalid_share: float  # the same per new base token
    continuation_start_beat: float  # quarter notes; notes from here on are the model's
    notes_before_start: int  # the model's notes that start before it (under the prompt's last note)
    stop: str  # eos | max_tokens | max_notes | max_bars
    info: dict = field(default_factory=dict)  # signature: checkpoint, flags, prompt, versions


def _note_rows(score) -> list[tuple[int, int, int]]:
    """A score's notes as sorted (time, duration, pitch) tuples, to count them as a multiset."""
    from melodylm.midi import score_notes

    return sorted(tuple(r) for r in score_notes(score).tolist())


def _finish_score(tokenizer, base_ids, tempo: float, ts: tuple[int, int]):
    import symusic

    score = tokenizer.decode_score(base_ids, tempo=tempo)
    if not len(score.time_signatures):
        score.time_signatures.append(symusic.TimeSignature(0, ts[0], ts[1]))
    return score


def build_sample(tokenizer, grammar: Grammar, sampled: Sampled, prompt: Prompt | None,
                 keep_prompt: bool = True) -> Sample:
    """Decode one sequence: the MIDI score, its note counts, errors and where the continuation starts."""
    from melodylm.midi import bar_start_before, crop_from

    new_base = tokenizer.decode_ids(sampled.ids)
    p_base = prompt.base_ids if prompt is not None else np.zeros(0, dtype=np.int64)
    full = np.concatenate([p_base, new_base]).astype(np.int64)
    tempo = prompt.tempo if prompt else 120.0
    ts = prompt.time_signature if prompt else (4, 4)
    score = _finish_score(tokenizer, full, tempo, ts)
    invalid = grammar.errors(full) - (grammar.errors(p_base) if len(p_base) else 0)
    invalid = max(0, invalid)
    tpq = int(score.ticks_per_quarter)
    start_tick, early = 0, 0
    if prompt is not None:
        # The continuation's notes are those of the whole decoded minus those of the prompt alone.
        p_notes = _note_rows(_finish_score(tokenizer, p_base, tempo, ts))
        start_tick = max((t + d for t, d, _ in p_notes), default=0)
        left = Counter(p_notes)
        new = []
        for r in _note_rows(score):
            if left[r]:
                left[r] -= 1
            else:
                new.append(r)
        early = sum(1 for t, _, _ in new if t < start_tick)
        if not keep_prompt:
            first = min((t for t, _, _ in new), default=start_tick)
            shift = bar_start_before(score, min(start_tick, first))
            score, _ = crop_from(score, np.array(new, dtype=np.int64).reshape(-1, 3), min(start_tick, first))
            start_tick -= shift
            full = new_base
    n_notes = sum(len(tr.notes) for tr in score.tracks)
    new_base_n = len(new_base)
    return Sample(
        score=score, ids=sampled.ids, base_ids=full, n_notes=int(n_notes),
        new_notes=int(tokenizer.count_notes(new_base)), new_tokens=int(len(sampled.ids)),
        invalid_tokens=int(invalid), invalid_share=round(invalid / new_base_n, 6) if new_base_n else 0.0,
        continuation_start_beat=round(start_tick / tpq, 6), notes_before_start=int(early), stop=sampled.stop,
    )


# ============================================================================ the public API

def validate_options(n: int = 1, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                     max_tokens: int | None = 1024, max_notes: int | None = None, max_bars: int | None = None,
                     prompt_bars: int | None = None, prompt_notes: int | None = None) -> None:
    """Raise :class:`UserError` naming the flag for impossible values."""
    if n < 1:
        raise UserError(f"--n {n}: must be at least 1")
    if not (temperature > 0 and math.isfinite(temperature)):
        raise UserError(f"--temperature {temperature}: must be a positive number")
    if top_k < 0:
        raise UserError(f"--top-k {top_k}: must be 0 (off) or more")
    if not (0 < top_p <= 1):
        raise UserError(f"--top-p {top_p}: must be in (0, 1]")
    for flag, v in (("--max-tokens", max_tokens), ("--max-notes", max_notes), ("--max-bars", max_bars)):
        if v is not None and v < 0:
            raise UserError(f"{flag} {v}: must not be negative")
    for flag, v in (("--prompt-bars", prompt_bars), ("--prompt-notes", prompt_notes)):
        if v is not None and v < 1:
            raise UserError(f"{flag} {v}: must be at least 1")


def generate(checkpoint_or_model, prompt: str | Path | Prompt | None = None, n: int = 1, *,
             tokenizer=None, max_tokens: int | None = 1024, max_notes: int | None = None,
             max_bars: int | None = None, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
             seed: int = 0, constrain: bool = True, keep_prompt: bool = True, melody: str = "auto",
             prompt_bars: int | None = None, prompt_notes: int | None = None,
             device: str | torch.device = "cpu", use_cache: bool = True) -> list[Sample]:
    """Generate ``n`` melodies in one batch and return them as :class:`Sample` (``.score`` is a symusic Score).

    Args:
        checkpoint_or_model: a checkpoint file or run folder, or a ``MelodyModel`` (then pass
            ``tokenizer``).
        prompt: a MIDI file (its melody is chosen by ``melody``, as for training data, and cut
            by ``prompt_bars`` / ``prompt_notes``), a :class:`Prompt`, or ``None`` to start from
            BOS alone. A prompt longer than the model's context is prefilled whole: the GPT keeps
            its end in its sliding cache, the LSTM reads it all, the bi-LSTM its last window.
        max_tokens, max_notes, max_bars: each sequence stops at the end token or at the first
            limit reached (``None``: no such limit; notes and bars count the continuation only).
        temperature, top_k, top_p: sampling; ``top_k=1`` is greedy.
        seed: same seed, model and options give the same tokens (and files) on the CPU.
        constrain: mask ids the tokenizer's grammar forbids, so every sample decodes.
        keep_prompt: the scores hold prompt and continuation; otherwise the continuation alone,
            moved to start at the bar where it begins.
        use_cache: ``False`` recomputes the whole context at every step (reference, benchmark).
    """
    from melodylm.checkpoint import file_hash, load_model
    from melodylm import __version__

    validate_options(n, temperature, top_k, top_p, max_tokens, max_notes, max_bars, prompt_bars, prompt_notes)
    dev = torch.device(device)
    info: dict[str, Any] = {"melodylm_version": __version__}
    if isinstance(checkpoint_or_model, (str, Path)):
        model, tok, ckpt = load_model(checkpoint_or_model, dev)
        info.update(checkpoint=ckpt["path"], checkpoint_hash=file_hash(ckpt["path"]))
    else:
        model, tok = checkpoint_or_model, tokenizer
        if tok is None:
            raise ValueError("generate() with a model needs its tokenizer")
        model.to(dev).eval()
        info.update(checkpoint=None, checkpoint_hash=None)
    info["arch"] = getattr(model.config, "arch", type(model).__name__)
    if isinstance(prompt, (str, Path)):
        prompt = load_prompt(prompt, tok, melody, prompt_bars, prompt_notes)
    p_base = prompt.base_ids.tolist() if prompt is not None else []
    p_ids = tok.encode_ids(np.asarray(p_base, dtype=np.int64)).tolist() if p_base else []
    grammar = Grammar(tok, dev)
    if max_bars is not None and not grammar.has_pos:
        raise UserError(f"--max-bars: {tok.settings.scheme} tokens do not mark bars; "
                        "use --max-notes or --max-tokens")
    gen = torch.Generator(device=dev).manual_seed(int(seed))
    seqs = sample_sequences(model, tok, n, max_tokens, p_ids, temperature, top_k, top_p, gen, dev,
                            constrain=constrain, max_notes=max_notes, max_bars=max_bars, use_cache=use_cache,
                            prompt_base=p_base, grammar=grammar)
    info["options"] = dict(n=n, max_tokens=max_tokens, max_notes=max_notes, max_bars=max_bars,
                           temperature=temperature, top_k=top_k, top_p=top_p, seed=seed, constrain=constrain,
                           keep_prompt=keep_prompt, melody=melody, prompt_bars=prompt_bars,
                           prompt_notes=prompt_notes, use_cache=use_cache)
    info["prompt"] = None if prompt is None else {
        "file": prompt.path, "notes": prompt.n_notes, "beats": round(prompt.beats, 6), "tokens": len(p_ids),
        "cut": prompt.cut, "dropped_pitches": prompt.dropped_pitches, "tempo": prompt.tempo,
        "time_signature": f"{prompt.time_signature[0]}/{prompt.time_signature[1]}"}
    samples = []
    for i, s in enumerate(seqs):
        sample = build_sample(tok, grammar, s, prompt, keep_prompt)
        sample.info = {**info, "index": i}
        samples.append(sample)
    return samples


def signature(sample: Sample) -> str:
    """One line that says how a sample was made."""
    i, o = sample.info, sample.info.get("options", {})
    ck = f"{Path(i['checkpoint']).parent.name}/{Path(i['checkpoint']).name}:{i['checkpoint_hash']}" \
        if i.get("checkpoint") else i.get("arch", "model")
    p = i.get("prompt")
    return (f"melodylm {i.get('melodylm_version')} | {ck} | seed {o.get('seed')} | T {o.get('temperature')} "
            f"top-k {o.get('top_k')} top-p {o.get('top_p')} | "
            f"{'constrained' if o.get('constrain') else 'unconstrained'} | "
            f"prompt {Path(p['file']).name + (' ' + p['cut'] if p['cut'] else '') if p else 'none'}")


def write_samples(samples: list[Sample], out_dir: str | Path, plot: bool = False, stem: str = "sample",
                  extra: dict | None = None) -> list[Path]:
    """Write ``<stem>_NNN.mid`` and a JSON sidecar (``.json``) per sample, and a piano roll with ``plot``.

    The sidecar holds the signature (checkpoint and hash, options, seed, version, prompt) and
    the sample's numbers, ``continuation_start_beat`` included. ``extra`` is merged into it.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, s in enumerate(samples):
        mid = out / f"{stem}_{k:03d}.mid"
        s.score.dump_midi(str(mid))
        side = {
            "signature": signature(s), **s.info, **(extra or {}),
            "file": mid.name, "n_notes": s.n_notes, "new_notes": s.new_notes, "new_tokens": s.new_tokens,
            "invalid_tokens": s.invalid_tokens, "invalid_share": s.invalid_share,
            "continuation_start_beat": s.continuation_start_beat, "notes_before_start": s.notes_before_start,
            "stop": s.stop,
        }
        mid.with_suffix(".json").write_text(json.dumps(side, indent=1, default=str) + "\n")
        if plot:
            from melodylm.plot import save_pianoroll

            split = s.continuation_start_beat if s.info.get("prompt") else None
            save_pianoroll(s.score, mid.with_suffix(".png"), split_beat=split, title=signature(s))
        paths.append(mid)
    return paths


# Where a shipped model lives: <repository>/checkpoints/pretrained/model.pt.
REPO_CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints"


def find_default_checkpoint(cwd: str | Path | None = None) -> Path | None:
    """The shipped model (``checkpoints/pretrained/model.pt`` of the repository, or of the current
    folder), else the newest run under ``./checkpoints`` with a ``best.pt``, else ``None``."""
    cwd = Path(cwd or Path.cwd())
    for root in (REPO_CHECKPOINTS, cwd / "checkpoints"):
        shipped = root / "pretrained" / "model.pt"
        if shipped.is_file():
            return shipped
    runs = [p for p in (cwd / "checkpoints").glob("*/best.pt") if p.is_file()]
    if not runs:
        return None
    return max(runs, key=lambda p: (p.stat().st_mtime, str(p)))


__all__ = ["Grammar", "Prompt", "Sample", "Sampled", "bar_start", "filter_logits", "find_default_checkpoint",
           "generate", "load_prompt", "pick_tokens", "sample_ids", "sample_sequences", "signature",
           "validate_options", "write_samples"]
