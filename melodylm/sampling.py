"""Logits -> token, and the generation loop over model states: one loop for every architecture.

:func:`pick_tokens` draws one id per row of logits (temperature, top-k, top-p).
:func:`generate_ids` runs the loop: it talks to models only through ``init_state`` /
``prefill`` / ``decode`` (or, with ``use_cache=False``, through ``forward`` on the last
``max_context`` tokens); the GPT's KV cache, the LSTM's state and the bi-LSTM's window live
inside the state object, which is made of batch-first tensors, so finished sequences are simply
dropped from it. The tokenizer's :class:`~melodylm.tokenizer.grammar.Grammar` masks the ids
that may not come next, so every sequence decodes to MIDI. What the loop returns are model ids
(:class:`GeneratedIds`); :mod:`melodylm.generate` turns them into melodies and files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from melodylm.tokenizer.grammar import Grammar

STOP_REASONS = ("running", "eos", "max_tokens", "max_notes", "max_bars")


@dataclass(frozen=True)
class MiddleBars:
    """What the loop must respect while it writes bars A..B of a tune between kept bars.

    The prompt is ``BOS controls prefix FILL_SUFFIX suffix FILL_MIDDLE`` and the grammar starts
    from the prefix's state, which the middle continues. Bars are counted in time from 0.
    """

    first_bar: int  # bar A - 1: no note starts before it
    end_bar: int  # bar B: time may not reach it (the suffix starts there)
    end_id: int  # FILL_END: ends the middle where the end token would end a tune
    time_signature: int | None = None  # base id of the TimeSig in force: no other is written

    @property
    def bars(self) -> tuple[int, int]:
        return self.first_bar, self.end_bar


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


def _select(state: Any, rows: torch.Tensor) -> Any:
    """Keep sequences ``rows`` of a model state (batch-first tensors, in tuples, lists or dicts)."""
    if isinstance(state, torch.Tensor):
        return state.index_select(0, rows)
    if isinstance(state, dict):
        return {k: _select(v, rows) for k, v in state.items()}
    if isinstance(state, (tuple, list)):
        return type(state)(_select(v, rows) for v in state)
    return state


@dataclass
class GeneratedIds:
    """What the loop gives for one sequence: its new model ids, and why it stopped."""

    ids: np.ndarray  # new model ids, the end token excluded
    stop: str  # eos | max_tokens | max_notes | max_bars


@torch.no_grad()
def generate_ids(model, tokenizer, n: int = 1, max_new_tokens: int | None = 256, prompt: list[int] | None = None,
                     temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                     generator: torch.Generator | None = None, device: str | torch.device = "cpu", *,
                     constrain: bool = True, max_notes: int | None = None, max_bars: int | None = None,
                     use_cache: bool = True, ignore_eos: bool = False, prompt_base: list[int] | None = None,
                     grammar: Grammar | None = None, middle: MiddleBars | None = None, guidance: float = 0.0,
                     unconditional: list[int] | None = None) -> list[GeneratedIds]:
    """Generate ``n`` continuations of ``prompt`` (model ids; BOS is prepended when missing) in one batch.

    Prefill once, then one token per step for every sequence still running; a sequence stops
    at the end token or at the first limit reached, and leaves the batch. ``max_new_tokens``
    caps the new tokens (``None``: no cap, so set another limit); ``max_notes`` / ``max_bars``
    count new notes / Bar tokens (a bar beyond ``max_bars`` ends the sequence instead of starting;
    with ``constrain`` a Rest that would carry time past it is drawn again, so a Bar ends it).

    ``constrain`` masks ids the grammar forbids (see :class:`Grammar`); ``prompt_base`` (the
    prompt's base tokens) sets the grammar's starting state and defaults to decoding ``prompt``.
    ``use_cache=False`` recomputes ``forward`` on the last ``max_context`` tokens at every step
    (a reference and a benchmark baseline). ``ignore_eos`` never ends before ``max_new_tokens``
    (benchmarks). ``middle`` writes the middle of a tune (:class:`MiddleBars`, ``prompt_base`` the
    prefix's base tokens). Control and sentinel ids are never drawn: asked controls go in the prompt.

    ``guidance`` > 0 with ``unconditional`` (the same prompt without its control tokens) samples
    with classifier-free guidance (Ho & Salimans 2022): a second batch reads the prompt without
    controls, and each step draws from ``logits + guidance * (logits - unconditional logits)``,
    i.e. p(x | controls) * (p(x | controls) / p(x))^guidance, which pushes further from what the
    model writes when no control is asked. Training drops each control at random, so the same model
    gives both; guidance costs a second decode per token.
    """
    dev = torch.device(device)
    bos, eos = tokenizer.bos_id, tokenizer.eos_id
    prompt = [int(i) for i in (prompt or [])]
    prompt = prompt if prompt and prompt[0] == bos else [bos] + prompt
    if prompt_base is None:
        prompt_base = tokenizer.decode_ids(prompt[1:]).tolist()
    g = grammar if grammar is not None and grammar.device == dev else Grammar(tokenizer, dev)
    if max_bars is not None and not g.has_pos:
        raise ValueError(f"max_bars: {tokenizer.settings.scheme} has no bars to count")
    if middle is not None and (not constrain or max_bars is not None or not g.has_pos):
        raise ValueError("a middle is written under the grammar (REMI), without max_bars")
    limit = max_new_tokens if max_new_tokens is not None else 1 << 62
    track = constrain or max_notes is not None or max_bars is not None
    end = middle.end_id if middle is not None else eos
    st = g.start(n, prompt_base) if track else {}

    rows = torch.arange(n, device=dev)  # original index of each sequence in the batch
    live = torch.ones(n, dtype=torch.bool, device=dev)  # finished ones are fed EOS until the next compaction
    stop = torch.zeros(n, dtype=torch.long, device=dev)
    steps: list[tuple[torch.Tensor, torch.Tensor]] = []  # (rows, ids or -1) of each step
    dec = _Decoder(model, prompt, n, dev, use_cache, guidance, unconditional)
    logits = dec.start()
    extra = logits.size(-1) - g.V  # ids the tokenizer does not know (none for a trained checkpoint)
    eos_col = torch.tensor([eos], device=dev)
    t = 0
    while t < limit:
        remaining_after = limit - t - 1
        lg = logits
        if constrain:
            lg = lg.masked_fill(~_allowed(g, st, remaining_after, max_notes, ignore_eos, extra, middle), float("-inf"))
        elif ignore_eos:
            lg = lg.index_fill(1, eos_col, float("-inf"))
        nxt = torch.where(live, pick_tokens(lg, temperature, top_k, top_p, generator), end)  # (B,)
        if track:
            nxt, new_st = _step_grammar(g, st, nxt, lg, constrain, (temperature, top_k, top_p, generator), max_bars,
                                        middle.bars if middle is not None else None)
            why = _stop_reasons(g, st, new_st, nxt, end, constrain, max_notes, max_bars)
            st = new_st
        else:
            why = (nxt == eos).long()
        ended = (why > 0) & live
        nxt = torch.where(ended, end, nxt)
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
                dec.select(keep)
        logits = dec.step(nxt)
    if limit == 0:
        stop.fill_(2)
    return _collect(steps, stop, n)


class _Decoder:
    """The model side of the loop: its state (or, without a cache, the whole sequence), and with
    guidance a second state that read the prompt without its control tokens. ``start`` and
    ``step`` return the ``(B, V)`` float logits to draw from, guidance applied."""

    def __init__(self, model, prompt: list[int], n: int, dev: torch.device, use_cache: bool, guidance: float,
                 unconditional: list[int] | None) -> None:
        self.model, self.n, self.dev, self.use_cache = model, n, dev, use_cache
        self.ctx = getattr(model, "max_context", None)
        self.guidance = guidance if unconditional is not None else 0.0
        if self.guidance > 0 and not use_cache:
            raise ValueError("guidance decodes two batches with their caches: use_cache=True")
        self.prompt = prompt
        u = [int(i) for i in (unconditional or [])]
        self.unconditional = u if u and u[0] == prompt[0] else [prompt[0]] + u
        self.state = self.ustate = self.seq = None

    def _ids(self, ids: list[int]) -> torch.Tensor:
        return torch.tensor([ids], dtype=torch.long, device=self.dev).expand(self.n, len(ids))

    def _mix(self, logits: torch.Tensor, ulogits: torch.Tensor | None) -> torch.Tensor:
        lg = logits.float()
        return lg if ulogits is None else lg + self.guidance * (lg - ulogits.float())

    def _forward(self) -> torch.Tensor:
        return self.model(self.seq[:, -self.ctx:] if self.ctx else self.seq)[0][:, -1]

    def start(self) -> torch.Tensor:
        if not self.use_cache:
            self.seq = self._ids(self.prompt).clone()
            return self._mix(self._forward(), None)
        logits, self.state = self.model.prefill(self._ids(self.prompt), self.model.init_state(self.n, self.dev))
        ulogits = None
        if self.guidance > 0:
            ulogits, self.ustate = self.model.prefill(self._ids(self.unconditional),
                                                      self.model.init_state(self.n, self.dev))
        return self._mix(logits, ulogits)

    def select(self, keep: torch.Tensor) -> None:
        if not self.use_cache:
            self.seq = self.seq.index_select(0, keep)
            return
        self.state = _select(self.state, keep)
        if self.ustate is not None:
            self.ustate = _select(self.ustate, keep)

    def step(self, nxt: torch.Tensor) -> torch.Tensor:
        if not self.use_cache:
            self.seq = torch.cat([self.seq, nxt[:, None]], dim=1)
            return self._mix(self._forward(), None)
        logits, self.state = self.model.decode(nxt[:, None], self.state)
        ulogits = None
        if self.ustate is not None:
            ulogits, self.ustate = self.model.decode(nxt[:, None], self.ustate)
        return self._mix(logits, ulogits)


def _allowed(g: Grammar, st: dict, remaining_after: int, max_notes: int | None, ignore_eos: bool, extra: int,
             middle: MiddleBars | None) -> torch.Tensor:
    """The grammar's ``(B, V)`` mask, widened to ids the tokenizer does not know (never allowed)
    and narrowed to the middle's bars when writing one."""
    ok = g.allowed(st, remaining_after, max_notes, allow_eos=not ignore_eos)
    if extra > 0:
        ok = torch.cat([ok, ok.new_zeros(ok.size(0), extra)], dim=1)
    return _middle_mask(g, st, ok, middle, g.eos) if middle is not None else ok


def _middle_mask(g: Grammar, st: dict, ok: torch.Tensor, middle: MiddleBars, eos: int) -> torch.Tensor:
    """The grammar's mask for writing a middle: the end token's place goes to FILL_END, which needs
    a new note; no Bar in the last bar; no time signature but the tune's own."""
    ok = ok.clone()
    ok[:, middle.end_id] = ok[:, eos] & (st["notes"] > 0)
    ok[:, eos] = False
    V = g.V
    # Before bar A only time may move (a note there, or a Position whose note must follow, is a
    # dead end the redraws cannot leave); in bar B no Bar may start (the redraws would catch it).
    early = st["bar"] < middle.first_bar
    starts_note = (g.first == g.T["Position"]) | torch.isin(g.first, g.note_types) | (g.first == g.tix.get("Chord", -9))
    ok[:, :V] &= ~(early[:, None] & starts_note[None, :])
    in_last = st["bar"] >= middle.end_bar - 1
    ok[:, :V] &= ~(in_last[:, None] & (g.first == g.T["Bar"])[None, :])
    if middle.time_signature is not None:
        ok[:, :V] &= g.time_signature_mask(middle.time_signature)[None, :]
    # Every row keeps an option: the end once a note is out, else whatever the grammar allows.
    stuck = ~ok.any(dim=1)
    ok[stuck, middle.end_id] = True
    return ok


def _step_grammar(g: Grammar, st: dict, nxt: torch.Tensor, lg: torch.Tensor, constrain: bool,
                  draw: tuple, max_bars: int | None = None, bars: tuple[int, int] | None = None
                  ) -> tuple[torch.Tensor, dict]:
    """The grammar states after the drawn ids, redrawing ids the grammar rejects only on stepping.

    Two things are known only once an id is run: a piece with a Position after a Rest inside
    may send time back, and a Rest (after a long note, from that note's end) may carry time over
    several bar lines, past ``max_bars``. Such an id is forbidden and drawn again (exact: the draw
    is conditioned on the allowed set), so with ``max_bars`` only an id that starts with a Bar
    ends a sequence for its bar count. ``draw``: (temperature, top_k, top_p, generator) of
    :func:`pick_tokens`.
    """
    check_bars = constrain and max_bars is not None
    starts_bar = g.first == g.T["Bar"] if check_bars else None

    def rejected(new_st: dict, bad: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        out = bad if (constrain and g.has_sim) else torch.zeros_like(bad)
        if check_bars:
            out = out | ((g.new_bars(new_st) > max_bars) & ~starts_bar[ids])
        return out

    def stepped(ids: torch.Tensor) -> tuple[torch.Tensor, dict, torch.Tensor]:
        ids_g = g.steppable(ids) if bars is not None else ids.clamp_max(g.V - 1)
        new_st, bad = g.step(st, ids_g, bars)
        bad = rejected(new_st, bad, ids_g) | (bad if bars is not None else torch.zeros_like(bad))
        return ids_g, new_st, bad

    _, new_st, bad = stepped(nxt)
    for _ in range(lg.size(1)):
        if not bool(bad.any()):
            break
        lg[bad, nxt[bad]] = float("-inf")
        nxt = nxt.masked_scatter(bad, pick_tokens(lg[bad], *draw))
        _, new_st, bad = stepped(nxt)
    return nxt, new_st


def _stop_reasons(g: Grammar, st: dict, new_st: dict, nxt: torch.Tensor, eos: int, constrain: bool,
                  max_notes: int | None, max_bars: int | None) -> torch.Tensor:
    """Index into :data:`STOP_REASONS` of why each sequence ends at this token (0: it goes on)."""
    why = (nxt == eos).long()
    if constrain and max_notes is not None:
        why = torch.where((nxt == eos) & (st["notes"] >= max_notes), 3, why)
    if max_bars is not None:  # a bar beyond the limit (a Bar, or a rest over the bar line) is the end
        why = torch.where((why == 0) & (g.new_bars(new_st) > max_bars), 4, why)
    if max_notes is not None and not constrain:
        why = torch.where((why == 0) & (new_st["notes"] > max_notes), 3, why)
    return why


def _collect(steps: list[tuple[torch.Tensor, torch.Tensor]], stop: torch.Tensor, n: int) -> list[GeneratedIds]:
    """Each sequence's ids from the per-step (rows, ids or -1) records, with its stop reason."""
    out: list[list[int]] = [[] for _ in range(n)]
    if steps:
        all_rows = torch.cat([r for r, _ in steps]).tolist()
        all_ids = torch.cat([i for _, i in steps]).tolist()
        for r, i in zip(all_rows, all_ids):
            if i >= 0:
                out[r].append(i)
    return [GeneratedIds(np.asarray(ids, dtype=np.int64), STOP_REASONS[why]) for ids, why in zip(out, stop.tolist())]


__all__ = ["GeneratedIds", "MiddleBars", "STOP_REASONS", "filter_logits", "generate_ids", "pick_tokens"]
