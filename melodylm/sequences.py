"""Training sequences that steer: control heads, fill-in-the-middle rearrangements, and the windows
a trainer cuts from them. Numpy only (the trainer turns windows into tensors).

A dataset tokenized with controls stores every tune as ``BOS Key_* Meter_* Style_* tune EOS``
(the *head* is BOS and the control tokens). Its training split may also hold, for a share of its
tunes (``--fim-rate``), the tune rearranged for infilling,
``head prefix FILL_SUFFIX suffix FILL_MIDDLE middle FILL_END`` (:mod:`melodylm.infill`), which
the trainer reads *in place of* the plain tune.

Windows: the trainer reads ``block_size + 1`` tokens at a time. A median O'Neill tune is 330
REMI tokens, longer than the 256-token context of the small models, so windows at random token
positions would mostly start inside a tune and never see its controls. A window here always
starts with the head of the tune it starts in (:func:`melodylm.controls.crop_keeping_head`),
then continues from its random position, across the following tunes if it reaches their end,
as plain windows do. A window that starts inside the tune reads ``head WINDOW_CUT`` before it
(:data:`melodylm.controls.CUT`), so the model can tell it from the tune's true beginning; the
target that predicts the cut mark is not scored (target -1). Each control of a head is dropped at a rate
(``control_dropout``), independently per window, so one model samples with any subset of
controls; the heads of the following tunes in the window are dropped alike.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from melodylm.controls import CUT, KINDS, PREFIXES, control_tokens, token_controls
from melodylm.errors import UserError

IGNORE = -1  # target the models' loss skips (cross_entropy ignore_index)
MAX_HEADS = 8  # heads per window whose controls are dropped independently; later ones keep all


def tune_rng(seed: int, content_hash: str | None, transpose: int) -> np.random.Generator:
    """The generator of one tune (or transposed copy): the same whatever the order of files or workers."""
    h = zlib.crc32((content_hash or "").encode())
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, h, int(transpose) + 64])


def select_controls(controls: dict, kinds: tuple[str, ...]) -> dict:
    """Only the control kinds a dataset puts in its heads (others ``None``)."""
    return {k: (controls.get(k) if k in kinds else None) for k in KINDS}


def parse_control_kinds(text: str) -> tuple[str, ...]:
    """``--controls`` text (``all``, ``none`` or a comma list such as ``key,meter``) as kinds."""
    from melodylm.errors import UserError

    t = text.strip().lower()
    if t == "all":
        return KINDS
    if t == "none":
        return ()
    kinds = tuple(k.strip() for k in t.split(",") if k.strip())
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise UserError(f"--controls {text!r}: use all, none, or a comma list of {', '.join(KINDS)}")
    return tuple(k for k in KINDS if k in kinds)


def fim_cut(tok, base_ids: np.ndarray, rate: float, rng: np.random.Generator, suffix_bars: int | None = None):
    """``(span, FimParts)`` for a tune drawn for infilling at ``rate``, else ``(None, None)``.

    The expensive part of a rearrangement (one decode, three encodes: 28 ms of a median tune
    against 3.7 ms to tokenize it), done where the tune is tokenized. A tune the cut cannot
    handle (miditok tokens that differ when a middle is added) stays plain. ``suffix_bars``:
    bars after the span kept as its suffix (default ``FIM_SUFFIX_BARS``).
    """
    from melodylm.errors import UserError
    from melodylm.infill import FIM_SPAN_BARS, FIM_SUFFIX_BARS, choose_span, count_bars, fim_parts

    if rate <= 0:
        return None, None
    span = choose_span(lambda: count_bars(tok.decode_score(base_ids)), rng, rate, max_bars=FIM_SPAN_BARS)
    if span is None:
        return None, None
    try:
        return span, fim_parts(tok, base_ids, span, suffix_bars=suffix_bars or FIM_SUFFIX_BARS)
    except (AssertionError, ValueError, UserError):
        return None, None


def head_lengths(tokens: np.ndarray, starts: np.ndarray, tok) -> np.ndarray:
    """Head length (BOS and control tokens) of each sequence starting at ``starts``."""
    out = np.ones(len(starts), dtype=np.int64)
    if not tok.has_controls:
        return out
    n_max = 1 + len(KINDS)
    for j, s in enumerate(starts.tolist()):
        out[j] = tok.head_length(np.asarray(tokens[s:s + n_max], dtype=np.int64))
    return out


def suffix_head_lengths(tokens: np.ndarray, starts: np.ndarray, lengths: np.ndarray, middle_id: int) -> np.ndarray:
    """Heads of suffix-first rearranged tunes: through their ``FILL_MIDDLE`` token.

    A window that starts inside such a tune's prefix or middle then still reads the suffix the
    middle leads into, as the model does when it fills a gap. Without it, a 256-token window
    starting at a uniformly drawn position held the whole suffix before 42.8% of the prefix and
    middle tokens of the shipped model's rearranged tunes (O'Neill + Essen, 8-bar suffixes).
    """
    out = np.zeros(len(starts), dtype=np.int64)
    for j, (s, n) in enumerate(zip(starts.tolist(), lengths.tolist())):
        at = np.flatnonzero(np.asarray(tokens[s:s + n]) == middle_id)
        out[j] = int(at[0]) + 1 if len(at) else 0
    return out


# --- writing a dataset's sequences ------------------------------------------------------------
def head_for(tok, controls: dict, kinds: tuple[str, ...]) -> np.ndarray:
    """BOS and the tokens of the controls in ``kinds`` that the tokenizer knows (others left out)."""
    if not tok.has_controls:
        return np.asarray([tok.bos_id], dtype=np.int64)
    chosen = select_controls(controls, kinds)
    known = {k: v for k, v in chosen.items() if v and tok.extra.has(control_tokens({k: v})[0])}
    return tok.head_ids(known)


def write_split(tmp: Path, split: str, rows: list, tok, kinds: tuple[str, ...], dtype,
                index_dtype) -> int:
    """``{split}.bin`` and ``{split}.index.npy``: every tune as ``BOS controls tune EOS``; returns its tokens."""
    index = np.zeros(len(rows), dtype=index_dtype)
    chunks = []
    start = 0
    for j, sq in enumerate(rows):
        seq = np.concatenate([head_for(tok, sq.controls, kinds), tok.encode_ids(sq.ids), [tok.eos_id]]).astype(dtype)
        chunks.append(seq)
        index[j] = (start, len(seq), sq.n_notes, sq.row, sq.transpose)
        start += len(seq)
    flat = np.concatenate(chunks) if chunks else np.zeros(0, dtype=dtype)
    flat.tofile(tmp / f"{split}.bin")
    np.save(tmp / f"{split}.index.npy", index, allow_pickle=False)
    return int(len(flat))


def write_fim(tmp: Path, rows: list, tok, kinds: tuple[str, ...], dtype, index_dtype) -> tuple[int, int]:
    """``train.fim.bin`` and its index: the training tunes drawn for infilling, rearranged.

    The index's ``source`` is the row of ``train.index.npy`` that the sequence stands in for.
    Returns (sequences, tokens).
    """
    from melodylm.infill import Sentinels, rearrange

    sentinels = Sentinels.from_vocab(tok.extra)
    chosen = [(j, sq) for j, sq in enumerate(rows) if sq.fim is not None]
    index = np.zeros(len(chosen), dtype=index_dtype)
    chunks, start = [], 0
    for i, (j, sq) in enumerate(chosen):
        ids, _ = rearrange(sq.fim, sentinels, head_for(tok, sq.controls, kinds), tok.encode_ids)
        chunks.append(ids.astype(dtype))
        index[i] = (start, len(ids), sq.n_notes, j, sq.transpose)
        start += len(ids)
    flat = np.concatenate(chunks) if chunks else np.zeros(0, dtype=dtype)
    flat.tofile(tmp / "train.fim.bin")
    np.save(tmp / "train.fim.index.npy", index, allow_pickle=False)
    return len(chosen), int(len(flat))


# --- reading windows -------------------------------------------------------------------------------
@dataclass
class Segment:
    """Where each sequence of the stream lives: source array, start there, length, head length."""

    src: np.ndarray
    start: np.ndarray
    length: np.ndarray
    head: np.ndarray
    # Tokens at the end of a head that are context only where a window starts inside the tune:
    # a suffix-first tune's suffix, trained once where the tune starts, not again in every window.
    context: np.ndarray | None = None


class WindowStream:
    """The training (or validation) sequences in order, read as windows that keep their heads.

    ``sources`` are token arrays (a split's memory-mapped tokens, the infilling sequences);
    ``seg`` says which slice of which source each sequence is. Positions are counted in the
    virtual concatenation of all sequences.
    """

    def __init__(self, sources: list[np.ndarray], seg: Segment, kind_of: dict[int, int], cut_id: int | None = None):
        self.cut_id = cut_id  # WINDOW_CUT, read after the head of a window that starts inside its tune
        self.sources = sources
        self.seg = seg
        self.vstart = np.concatenate([[0], np.cumsum(seg.length)]).astype(np.int64)
        self.total = int(self.vstart[-1])
        self.kind_of = kind_of  # control id -> its kind's position in KINDS

    @classmethod
    def of_split(cls, tokens: np.ndarray, index: np.ndarray, tok, fim: tuple[np.ndarray, np.ndarray] | None = None
                 ) -> "WindowStream":
        """A split's sequences; with ``fim`` (tokens, index whose ``source`` is the row it replaces),
        the rearranged sequences stand in for their plain rows."""
        n = len(index)
        src = np.zeros(n, dtype=np.int64)
        start = index["start"].astype(np.int64).copy()
        length = index["length"].astype(np.int64).copy()
        sources = [tokens]
        if fim is not None and len(fim[1]):
            rows = fim[1]["source"].astype(np.int64)
            src[rows] = 1
            start[rows] = fim[1]["start"]
            length[rows] = fim[1]["length"]
            sources.append(fim[0])
        # Without controls there is nothing to keep: heads of length 0 make plain contiguous windows.
        head = np.zeros(n, dtype=np.int64)
        if tok.has_controls:
            for s in range(len(sources)):
                m = src == s
                head[m] = head_lengths(sources[s], start[m], tok)
        if len(sources) > 1 and tok.extra.fim_order == "spm":
            rows = np.flatnonzero(src == 1)
            controls = head[rows].copy()
            head[rows] = suffix_head_lengths(sources[1], start[rows], length[rows], tok.extra.id("FILL_MIDDLE"))
            context = np.zeros(n, dtype=np.int64)
            context[rows] = np.maximum(0, head[rows] - np.maximum(controls, 1))
        else:
            context = None
        kind_of: dict[int, int] = {}
        if tok.extra is not None:
            for t in tok.extra.tokens:
                for k, kind in enumerate(KINDS):
                    if t.startswith(PREFIXES[kind]):
                        kind_of[tok.extra.id(t)] = k
        cut = tok.extra.id(CUT) if tok.extra is not None and tok.extra.has(CUT) else None
        return cls(sources, Segment(src, start, length, head, context), kind_of, cut)

    def limit(self, n: int) -> int:
        """Window starts are drawn from ``[0, limit)``: room for ``n`` tokens and a head after them."""
        return max(1, self.total - n - int(self.seg.head.max(initial=1)))

    def starts(self, rng: np.random.Generator, size: int, n: int, weights: np.ndarray | None = None) -> np.ndarray:
        """``size`` window starts for ``n``-token windows: uniform over ``[0, limit)``, or with
        ``weights`` (one per sequence) each sequence's tokens drawn that many times as often."""
        lim = self.limit(n)
        if weights is None:
            return rng.integers(0, lim, size=size)
        mass = np.cumsum(self.seg.length * weights)
        u = rng.random(size) * mass[-1]
        j = np.minimum(np.searchsorted(mass, u, side="right"), len(weights) - 1)
        offset = (u - (mass[j] - self.seg.length[j] * weights[j])) / weights[j]
        return np.minimum(self.vstart[j] + offset.astype(np.int64), lim - 1)

    def has_control(self, ids: set[int]) -> np.ndarray:
        """Per sequence: whether its head holds one of the control ``ids``."""
        out = np.zeros(len(self.seg.length), dtype=bool)
        for j in range(len(out)):
            out[j] = any(int(t) in ids for t in self._seq(j, 0, int(self.seg.head[j])))
        return out

    def _seq(self, j: int, a: int, b: int) -> np.ndarray:
        s = int(self.seg.start[j])
        return np.asarray(self.sources[int(self.seg.src[j])][s + a:s + b], dtype=np.int64)

    def _head(self, j: int, drop: np.ndarray | None, rate: float) -> np.ndarray:
        h = self._seq(j, 0, int(self.seg.head[j]))
        if drop is None or rate <= 0 or len(h) <= 1:
            return h
        keep = [True] + [int(t) not in self.kind_of or drop[self.kind_of[int(t)]] >= rate for t in h[1:]]
        return h[np.asarray(keep)]

    def window(self, p: int, n: int, drop: np.ndarray | None = None, rate: float = 0.0
               ) -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)`` of ``n - 1`` inputs and targets from virtual position ``p``.

        ``drop`` is ``(MAX_HEADS, len(KINDS))`` uniforms: control ``k`` of the ``i``-th head in
        the window is left out when ``drop[i, k] < rate``.
        """
        j = int(np.searchsorted(self.vstart, p, side="right") - 1)
        head = self._head(j, None if drop is None else drop[0], rate)
        off = max(int(p - self.vstart[j]), int(self.seg.head[j]))
        jump = len(head) > 0 and off > int(self.seg.head[j])  # the window starts inside the tune
        parts, have, ignore = [head], len(head), []
        if jump:
            ignore.append(len(head) - 1)  # the cut mark (or the jump itself) is not a target
            c = 0 if self.seg.context is None else int(self.seg.context[j])
            ignore.extend(range(max(0, len(head) - 1 - c), len(head) - 1))
            if self.cut_id is not None:
                parts.append(np.asarray([self.cut_id], dtype=np.int64))
                have += 1
        k = 1
        while have < n:
            piece = self._seq(j, off, min(int(self.seg.length[j]), off + n - have))
            parts.append(piece)
            have += len(piece)
            j += 1
            if have >= n or j >= len(self.seg.length):
                break
            nxt = self._head(j, drop[k] if drop is not None and k < len(drop) else None, rate)
            k += 1
            parts.append(nxt[:n - have])
            have += min(len(nxt), n - have)
            off = int(self.seg.head[j])
        w = np.concatenate(parts)[:n]
        real = len(w)
        if real < n:  # only at the very end of a tiny stream: padding, never a target
            w = np.concatenate([w, np.full(n - real, w[-1] if real else 0, dtype=np.int64)])
            ignore.extend(range(max(0, real - 1), n - 1))
        x, y = w[:-1].copy(), w[1:].copy()
        for i in ignore:
            if i < len(y):
                y[i] = IGNORE
        return x, y

    def batch(self, ps: np.ndarray, n: int, drops: np.ndarray | None = None, rate: float = 0.0
              ) -> tuple[np.ndarray, np.ndarray]:
        """Windows at positions ``ps``: ``(x, y)`` arrays of shape ``(len(ps), n - 1)``."""
        xs, ys = zip(*(self.window(int(p), n, None if drops is None else drops[b], rate) for b, p in enumerate(ps)))
        return np.stack(xs), np.stack(ys)


def minor_weights(stream: WindowStream | None, tok, weight: float) -> np.ndarray | None:
    """Per training sequence, how many times as often its windows are drawn: ``weight`` for tunes
    whose key control is minor, 1 for the rest (None when ``weight`` is 1: every token as often)."""
    if weight == 1:
        return None
    from melodylm.keys import parse_key

    keys = {t: token_controls([t]).get("key") for t in (tok.extra.tokens if tok.extra is not None else ())}
    minor = {tok.extra.id(t) for t, k in keys.items() if k is not None and parse_key(k).mode == "minor"}
    if stream is None or not minor:
        raise UserError(f"minor_weight {weight}: the dataset has no minor key controls "
                        "(tokenize it with key controls, or leave minor_weight at 1)")
    return np.where(stream.has_control(minor), float(weight), 1.0)
