"""Fill in the middle: bars A..B of a tune rewritten so a left-to-right model sees both sides.

Bars are counted in time, from the tune's time signatures, not by counting REMI ``Bar`` tokens:
with rests on (the default), miditok writes a rest across a bar line as one ``Rest`` token and
leaves out the ``Bar`` tokens it crosses (a two-bar rest in 4/4 gives ``Rest_7.1.2`` and no
``Bar``), so bar tokens undercount bars. The tune is therefore cut at note level:

- **prefix**: the notes starting before bar A, i.e. the tune's own tokens up to its last note
  there;
- **middle**: the tokens that continue the prefix through the notes starting in bars A..B, exactly
  what a left-to-right model would write after the prefix;
- **suffix**: the notes starting in bar B+1 or later, encoded on their own as a tune that starts
  at bar B+1's bar line (``Bar TimeSig ...``), so it does not depend on where the middle ends.

The training rearrangement is ``head prefix FILL_SUFFIX suffix FILL_MIDDLE middle FILL_END``
(order ``psm``) or ``head FILL_SUFFIX suffix FILL_MIDDLE prefix middle FILL_END`` (``spm``), where
``head`` is ``BOS`` and the control tokens; the tokenizer's extras say which. The left-only variant
for evaluation is
``head prefix middle``, with the middle encoded identically, so the two score the same tokens.
Each part is mapped to model ids on its own (``encode``), so subword pieces never cross a part
boundary. Splicing puts the generated middle back between the kept notes: the suffix's notes are
placed at bar B+1's original start, and a middle note at or past that bar line, or before bar A,
is an error.

Bar numbers are 1-based and spans inclusive (``5:8`` is four bars). Everything here is numpy and
symusic; the tokenizer is any object with melodylm's ``encode_score``/``decode_score``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import numpy as np

from melodylm.errors import UserError

# Share of training tunes rearranged for infilling. Bavarian et al. (2022), "Efficient Training of
# Language Models to Fill in the Middle", found left-to-right quality unchanged for FIM rates up
# to 0.9 on code and text; 0.5 is the starting point until our own continuation check measures it.
FIM_RATE = 0.5
# Training spans have at most FIM_SPAN_BARS bars and their suffix the FIM_SUFFIX_BARS bars after
# them (a tokenizer records its own value; sampling and ``evaluate --infill`` show a model the suffix
# it was trained with). With the whole rest of the tune as suffix (the first version), a 32-bar reel
# filled at bars 5..8 put ~300 suffix tokens between the bar the middle leads into and the middle, and
# 128-256-token training windows held suffix and middle together in few rearranged tunes. With 4 bars,
# bars 9..12 told the shipped LSTM little about bars 5..8 (both sides 3.140 bits/note, left only 3.135);
# with 8 bars, which reach the end of the second strain, whose last bars repeat the first strain's
# cadence (bars 15-16 equal bars 7-8 in 39 of the 245 test tunes of 16+ bars), 3.149 against 3.162.
FIM_SPAN_BARS = 8
FIM_SUFFIX_BARS = 8
# psm puts the suffix between prefix and middle; spm puts it first, so the middle continues the prefix
# right where it ends (Bavarian et al. 2022 train both). For the shipped LSTM after 600 steps of
# fine-tuning, bars 3..4 given both sides: psm 3.348 bits/note against 3.187 left only (the LSTM must
# carry the prefix's state across the suffix), spm 3.093 against 3.174.
FIM_ORDERS = ("psm", "spm")
FIM_ORDER = "spm"
_SPAN_RE = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")


@dataclass(frozen=True)
class FimParts:
    """A tune cut around bars ``span`` (base ids, no BOS/EOS)."""

    prefix: np.ndarray
    middle: np.ndarray
    suffix: np.ndarray
    span: tuple[int, int]
    n_bars: int  # bars of the whole tune (up to the bar of its last note onset)
    bar_ticks: tuple[int, int]  # start of bar A and of bar B+1, in the decoded score's ticks


@dataclass(frozen=True)
class Sentinels:
    """Model ids of the three fill-in-the-middle sentinel tokens, and the order they lay out."""

    suffix: int
    middle: int
    end: int
    order: str = "psm"  # one of FIM_ORDERS

    @classmethod
    def from_vocab(cls, vocab) -> "Sentinels":
        """From a :class:`melodylm.controls.ExtraVocab` (``FILL_SUFFIX``, ``FILL_MIDDLE``, ``FILL_END``)."""
        return cls(vocab.id("FILL_SUFFIX"), vocab.id("FILL_MIDDLE"), vocab.id("FILL_END"), vocab.fim_order)


# --- bars ------------------------------------------------------------------------------------------
def parse_span(text: str, flag: str = "--fill") -> tuple[int, int]:
    """``"5:8"`` -> ``(5, 8)``: bars numbered from 1, inclusive; a bad form is a UserError."""
    m = _SPAN_RE.match(str(text))
    if m is None or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise UserError(f"{flag} {text!r}: give bars as A:B with 1 <= A <= B, e.g. {flag} 5:8")
    return int(m.group(1)), int(m.group(2))


def check_span(span: tuple[int, int], n_bars: int, flag: str = "--fill") -> None:
    """UserError unless bars ``span`` lie inside a tune of ``n_bars`` bars."""
    a, b = span
    if not 1 <= a <= b <= n_bars:
        raise UserError(f"{flag} {a}:{b}: the tune has {n_bars} bar(s), numbered 1..{n_bars}")


def bar_starts(score, end_tick: int) -> np.ndarray:
    """Ticks of the bar lines from 0 through the first bar line after ``end_tick``.

    The time signature in force at a bar line sets that bar's length; with none, 4/4.
    """
    tpq = int(score.ticks_per_quarter)
    sigs = sorted(((int(t.time), int(t.numerator), int(t.denominator)) for t in score.time_signatures
                   if t.numerator > 0 and t.denominator > 0), key=lambda s: s[0])
    starts, t, j, cur = [], 0, 0, (4, 4)
    while True:
        while j < len(sigs) and sigs[j][0] <= t:
            cur = sigs[j][1:]
            j += 1
        starts.append(t)
        if t > end_tick:
            return np.asarray(starts, dtype=np.int64)
        t += max(1, cur[0] * tpq * 4 // cur[1])


def notes_of(score) -> np.ndarray:
    """(N, 3) int64 array of (onset, duration, pitch) of a one-track score, by onset then pitch."""
    if not len(score.tracks) or not len(score.tracks[0].notes):
        return np.zeros((0, 3), dtype=np.int64)
    n = score.tracks[0].notes.numpy()
    arr = np.stack([n["time"], n["duration"], n["pitch"]], axis=1).astype(np.int64)
    return arr[np.lexsort((arr[:, 2], arr[:, 0]))]


def count_bars(score) -> int:
    """Bars of a tune: through the bar holding its last note onset (0 without notes)."""
    notes = notes_of(score)
    if not len(notes):
        return 0
    last = int(notes[:, 0].max())
    starts = bar_starts(score, last)
    return int(np.searchsorted(starts, last, side="right"))


def _sub_score(score, notes: np.ndarray, shift: int = 0):
    """A copy of ``score`` holding only ``notes`` (moved ``shift`` ticks earlier) and the time
    signatures from ``shift`` on, the one in force at ``shift`` placed at 0."""
    import symusic

    out = symusic.Score(int(score.ticks_per_quarter))
    sigs = sorted(score.time_signatures, key=lambda s: s.time)
    before = [s for s in sigs if s.time <= shift]
    after = [s for s in sigs if s.time > shift]
    if before:
        out.time_signatures.append(symusic.TimeSignature(0, before[-1].numerator, before[-1].denominator))
    for s in after:
        out.time_signatures.append(symusic.TimeSignature(int(s.time) - shift, s.numerator, s.denominator))
    for tp in score.tempos:
        if tp.time <= shift and not len(out.tempos):
            out.tempos.append(symusic.Tempo(0, tp.qpm))
    track = symusic.Track(name="melody", program=0, is_drum=False)
    for onset, dur, pitch in notes.tolist():
        track.notes.append(symusic.Note(int(onset) - shift, int(dur), int(pitch), 90))
    out.tracks.append(track)
    return out


# --- cutting and rearranging ---------------------------------------------------------------------
def fim_parts(tok, base_ids, span: tuple[int, int], suffix_bars: int | None = None) -> FimParts:
    """Cut a tune's base ids (no BOS/EOS) around bars ``span`` into prefix, middle and suffix.

    ``suffix_bars`` keeps only that many bars after the span as the suffix (all by default): the
    bars the middle must lead into, in less context. A window model (bilstm) sees the suffix only
    while it is inside its window, and a GPT's context holds prefix + suffix + middle.
    """
    score = tok.decode_score(base_ids)
    notes = notes_of(score)
    n_bars = count_bars(score)
    check_span(span, n_bars)
    a, b = span
    starts = bar_starts(score, int(notes[:, 0].max()))
    t_a, t_b1 = int(starts[a - 1]), int(starts[b])
    pre = notes[notes[:, 0] < t_a]
    mid = notes[(notes[:, 0] >= t_a) & (notes[:, 0] < t_b1)]
    suf = notes[notes[:, 0] >= t_b1]
    if suffix_bars is not None:
        if suffix_bars < 0:
            raise ValueError(f"suffix_bars must be >= 0, got {suffix_bars}")
        cut = starts[min(len(starts) - 1, b + suffix_bars)]
        suf = suf[suf[:, 0] < cut] if b + suffix_bars < len(starts) else suf
    prefix = tok.encode_score(_sub_score(score, pre)) if len(pre) else np.zeros(0, dtype=np.int64)
    both = tok.encode_score(_sub_score(score, np.concatenate([pre, mid])))
    if len(mid) and not np.array_equal(both[:len(prefix)], prefix):
        raise AssertionError("the prefix's tokens changed when the middle was added")  # a miditok change
    middle = both[len(prefix):] if len(mid) else np.zeros(0, dtype=np.int64)
    suffix = tok.encode_score(_sub_score(score, suf, shift=t_b1)) if len(suf) else np.zeros(0, dtype=np.int64)
    return FimParts(prefix, middle, suffix, (a, b), n_bars, (t_a, t_b1))


def choose_span(n_bars: "int | Callable[[], int]", rng: np.random.Generator, rate: float = FIM_RATE,
                max_bars: int | None = None) -> tuple[int, int] | None:
    """A random span for training, or ``None`` (train this tune plainly) with probability 1 - rate.

    The span has 1..``max_bars`` bars (default: all but one, so one side always has context),
    length then start drawn uniformly. Always three draws from ``rng``, so later draws do not
    depend on this tune's length or the outcome. ``n_bars`` may be a function, called only when
    the tune is chosen: counting bars decodes the tune, which the other tunes can skip.
    """
    u, lr, sr = rng.random(3)
    if u >= rate:
        return None
    if callable(n_bars):
        n_bars = n_bars()
    longest = min(n_bars - 1, max_bars if max_bars is not None else n_bars - 1)
    if n_bars < 2 or longest < 1 or u >= rate:
        return None
    length = 1 + int(lr * longest)
    start = 1 + int(sr * (n_bars - length + 1))
    return start, start + length - 1


def _identity(ids: np.ndarray) -> np.ndarray:
    return np.asarray(ids, dtype=np.int64)


def rearrange(parts: FimParts, sentinels: Sentinels, head=(), encode: Callable = _identity
              ) -> tuple[np.ndarray, np.ndarray]:
    """The tune rearranged in ``sentinels.order`` as model ids, and a mask of the middle's tokens.

    psm: ``head prefix FILL_SUFFIX suffix FILL_MIDDLE middle FILL_END``; spm: ``head FILL_SUFFIX
    suffix FILL_MIDDLE prefix middle FILL_END``. ``head`` is model ids (BOS and control tokens);
    ``encode`` maps base ids to model ids (``MelodyTokenizer.encode_ids``), applied to each part
    alone. The mask is True at the middle's tokens (not FILL_END): the positions evaluation scores.
    """
    h, p, s, m = (np.asarray(head, dtype=np.int64), encode(parts.prefix), encode(parts.suffix), encode(parts.middle))
    if sentinels.order == "spm":
        pieces = [h, [sentinels.suffix], s, [sentinels.middle], p, m, [sentinels.end]]
    else:
        pieces = [h, p, [sentinels.suffix], s, [sentinels.middle], m, [sentinels.end]]
    ids = np.concatenate([np.asarray(x, dtype=np.int64) for x in pieces])
    mask = np.zeros(len(ids), dtype=bool)
    mask[len(ids) - 1 - len(m):len(ids) - 1] = True
    return ids, mask


def left_only(parts: FimParts, head=(), encode: Callable = _identity) -> tuple[np.ndarray, np.ndarray]:
    """``head prefix middle`` (no suffix, no sentinels) and the mask of the middle's tokens.

    The middle's model ids equal those of :func:`rearrange`, so bits per note over the two masks
    compare the same predictions with and without the right side.
    """
    h, p, m = np.asarray(head, dtype=np.int64), encode(parts.prefix), encode(parts.middle)
    ids = np.concatenate([h, np.asarray(p, dtype=np.int64), np.asarray(m, dtype=np.int64)])
    mask = np.zeros(len(ids), dtype=bool)
    mask[len(h) + len(p):] = True
    return ids, mask


def fill_prompt(parts: FimParts, sentinels: Sentinels, head=(), encode: Callable = _identity) -> np.ndarray:
    """Model ids a sampler starts from to write bars A..B: the rearrangement up to the middle
    (psm: ``head prefix FILL_SUFFIX suffix FILL_MIDDLE``; spm: ``head FILL_SUFFIX suffix FILL_MIDDLE prefix``)."""
    ids, mask = rearrange(parts, sentinels, head, encode)
    return ids[:len(ids) - 1 - int(mask.sum())]


# --- putting a middle back -----------------------------------------------------------------------
def splice(tok, base_ids, span: tuple[int, int], middle) -> tuple[object, np.ndarray]:
    """The tune with bars ``span`` replaced by ``middle`` (base ids that continue the prefix).

    Returns ``(score, base_ids)`` of the result, in the tokenizer's time resolution. Every note
    starting outside the span is the decoded original's, onset, pitch and duration. Raises
    ``ValueError`` if a middle note starts before bar A or at/after bar B+1, or if the middle
    changes the bar lines inside the span (another time signature): the middle then does not fill
    exactly B-A+1 bars. A middle note may sound past bar B+1's line, as a tied note in the
    original may; only its onset must lie in the span.
    """
    score = tok.decode_score(base_ids)
    notes = notes_of(score)
    parts = fim_parts(tok, base_ids, span)
    t_a, t_b1 = parts.bar_ticks
    new = tok.decode_score(np.concatenate([parts.prefix, np.asarray(middle, dtype=np.int64)]))
    if int(new.ticks_per_quarter) != int(score.ticks_per_quarter):
        raise AssertionError("decoding changed the time resolution")
    new_notes = notes_of(new)
    n_pre = int((notes[:, 0] < t_a).sum())
    mid = new_notes[n_pre:]
    a, b = span
    if len(mid) and (mid[:, 0].min() < t_a or mid[:, 0].max() >= t_b1):
        raise ValueError(f"the middle has notes outside bars {a}..{b}: it must fill exactly {b - a + 1} bar(s)")
    end = int(mid[:, 0].max()) if len(mid) else t_a
    # Bar lines from bar A through the one after the middle's last onset must be the original's.
    g_old, g_new = bar_starts(score, end), bar_starts(new, end)
    if not np.array_equal(g_old[g_old >= t_a], g_new[g_new >= t_a]):
        raise ValueError(f"the middle changes the bar lines of bars {a}..{b} (another time signature)")
    kept = np.concatenate([notes[notes[:, 0] < t_a], mid, notes[notes[:, 0] >= t_b1]])
    out = _sub_score(score, kept)
    return out, tok.encode_score(out)


# --- one training sequence ---------------------------------------------------------------------
def training_sequence(tok, base_ids, controls: dict, vocab, rng: np.random.Generator, fim_rate: float = FIM_RATE,
                      control_dropout: float | None = None) -> tuple[np.ndarray, tuple[int, int] | None]:
    """Model ids of one training tune: ``BOS controls tune EOS``, or its rearrangement for a span.

    Controls are dropped independently (:func:`melodylm.controls.drop_controls`), then a span is
    drawn (:func:`choose_span`); both from ``rng``, a fixed number of draws per call, so a
    generator seeded per tune gives the same sequence in any order of tunes or workers. ``vocab``
    is the :class:`melodylm.controls.ExtraVocab`. Returns ``(ids, span or None)``.
    """
    from melodylm.controls import CONTROL_DROPOUT, drop_controls

    kept = drop_controls(controls, rng, CONTROL_DROPOUT if control_dropout is None else control_dropout)
    head = np.concatenate([[tok.bos_id], vocab.prefix_ids(kept)]).astype(np.int64)
    base_ids = np.asarray(base_ids, dtype=np.int64)
    span = choose_span(lambda: count_bars(tok.decode_score(base_ids)), rng, fim_rate, max_bars=FIM_SPAN_BARS)
    if span is None:
        return np.concatenate([head, tok.encode_ids(base_ids), [tok.eos_id]]).astype(np.int64), None
    ids, _ = rearrange(fim_parts(tok, base_ids, span, suffix_bars=FIM_SUFFIX_BARS), Sentinels.from_vocab(vocab),
                       head, tok.encode_ids)
    return ids, span
