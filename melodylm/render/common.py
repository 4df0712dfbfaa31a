"""What the renderers share: reading a melody, bar lines, pitch names, the key, missing extras.

Nothing here imports an optional package at module level, so ``import melodylm.render`` works
without the ``render`` extra; each renderer asks for its engine through :func:`melodylm.extras.require`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from melodylm.errors import UserError
from melodylm.extras import MissingExtraError  # noqa: F401  (re-exported by melodylm.render)
from melodylm.midi import time_signatures

SHARP_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
FLAT_NAMES = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")


class RenderError(UserError):
    """A file that cannot be rendered (corrupt, drum-only, empty) or a bad render option."""


def read_melody(path: str | Path):
    """The melody of a MIDI file as a one-track symusic score, chosen as training chooses it.

    Raises :class:`RenderError` with one line (``FILE: reason``) for a missing, corrupt, empty or
    drum-only file.
    """
    from melodylm.midi import load_melody

    mel = load_melody(path, "auto")
    if mel.status != "ok":
        raise RenderError(f"{path}: {mel.reason}")
    return mel.score


def note_rows(score) -> np.ndarray:
    """(N, 4) int64 array of (onset, duration, pitch, velocity) ticks over all tracks, by onset."""
    rows = []
    for tr in score.tracks:
        a = tr.notes.numpy()
        rows.append(np.stack([a["time"], a["duration"], a["pitch"], a["velocity"]], axis=1).astype(np.int64))
    out = np.concatenate(rows) if rows else np.zeros((0, 4), dtype=np.int64)
    return out[np.lexsort((out[:, 2], out[:, 0]))] if len(out) else out


@dataclass(frozen=True)
class Bar:
    """One measure: where it starts, how long it is (ticks) and its time signature."""

    start: int
    length: int
    num: int
    den: int
    number: int  # 1-based as a musician counts; a pickup bar is number 0


def detect_pickup(score) -> int:
    """Length in ticks of an anacrusis written from tick 0, or 0.

    MIDI has no pickup bar: converters put the upbeat at tick 0 and every later bar line moves by
    its length. 180 of the first 400 O'Neill tunes end off a bar line; when a tune that starts at
    tick 0 ends ``r`` ticks past a bar line, the pickup is those ``r`` ticks (its last bar is full).
    """
    notes = note_rows(score)
    if not len(notes) or notes[0, 0] != 0:
        return 0
    tpq = int(score.ticks_per_quarter)
    sigs = time_signatures(score)
    if len(sigs) > 1:
        return 0  # a meter change makes the remainder meaningless
    _, num, den = sigs[0]
    bar = num * tpq * 4 // den
    end = int((notes[:, 0] + notes[:, 1]).max())
    return end % bar


def bars(score, end: int, pickup: int = 0) -> list[Bar]:
    """Measures covering ticks [0, end), following the time signatures; a first bar of ``pickup`` ticks."""
    tpq = int(score.ticks_per_quarter)
    sigs = time_signatures(score)
    out: list[Bar] = []
    tick, i, number = 0, 0, 1
    if pickup > 0:
        _, num, den = sigs[0]
        out.append(Bar(0, pickup, num, den, 0))
        tick = pickup
    while tick < end or not out:
        while i + 1 < len(sigs) and sigs[i + 1][0] <= tick:
            i += 1
        _, num, den = sigs[i]
        length = max(1, num * tpq * 4 // den)
        out.append(Bar(tick, length, num, den, number))
        tick += length
        number += 1
    return out


def beat_ticks(num: int, den: int, tpq: int) -> int:
    """Ticks of one counted beat: a dotted quarter in 6/8, 9/8, 12/8, else one 1/den note."""
    if den == 8 and num % 3 == 0 and num > 3:
        return 3 * tpq // 2
    return tpq * 4 // den


def pitch_name(pitch: int, flats: bool = False) -> str:
    """Scientific pitch name of a MIDI pitch: 60 -> C4, 61 -> C#4 (Db4 with ``flats``)."""
    names = FLAT_NAMES if flats else SHARP_NAMES
    return f"{names[pitch % 12]}{pitch // 12 - 1}"


@dataclass(frozen=True)
class KeyInfo:
    """The key to engrave: fifths (-7..7), mode, and whether the file said it or it was estimated."""

    fifths: int
    mode: str  # major | minor
    source: str  # file | estimated

    @property
    def name(self) -> str:
        tonic = (7 * self.fifths + (9 if self.mode == "minor" else 0)) % 12
        names = FLAT_NAMES if self.fifths < 0 else SHARP_NAMES
        return f"{names[tonic]} {self.mode}"


def key_of(score) -> KeyInfo:
    """The file's first key signature, or one estimated from the notes (Krumhansl-Kessler profiles)."""
    for ks in sorted(score.key_signatures, key=lambda k: int(k.time)):
        if -7 <= int(ks.key) <= 7:
            return KeyInfo(int(ks.key), "minor" if int(ks.tonality) else "major", "file")
    from melodylm.keys import estimate_key

    notes = note_rows(score)
    key = estimate_key(notes[:, 2].tolist(), (notes[:, 1] / score.ticks_per_quarter).tolist())
    return KeyInfo(int(key.fifths), str(key.mode), "estimated")
