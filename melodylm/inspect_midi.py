"""What is in a MIDI file, as the melody tools see it: tracks, the melody they would take, bars, key, meter.

:func:`inspect_file` reads one file and returns a :class:`FileReport`; :func:`format_report` turns
it into the text ``melodylm inspect`` prints, :meth:`FileReport.to_dict` into its ``--json``.
Bars are counted from 1 along the file's own time signatures (:func:`melodylm.midi.bar_lines`),
so ``melodylm sample --prompt-start-bar N`` and the bars shown here are the same bars.

Typical use::

    from melodylm.inspect_midi import inspect_file, format_report
    print(format_report(inspect_file("song.mid")))
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from melodylm.errors import UserError
from melodylm.midi import (ChosenMelody, bar_index, check_melody_mode, meter_changes, note_array, polyphony_ratio,
                           read_score, select_melody)

# choose_track calls a track with at most this share of overlapping notes "mostly monophonic".
MOSTLY_MONOPHONIC = 0.25
# What the modes that merge tracks take, said the way choose_track says why it took a track.
_MERGED = {"skyline": "the top line of all pitched tracks", "all": "all pitched tracks, chords kept"}


@dataclass
class TrackInfo:
    """One track of a file: what it holds and how a melody choice sees it."""

    index: int
    name: str
    program: int  # General MIDI program, 0-based
    notes: int
    kind: str  # drums | monophonic | mostly monophonic | polyphonic | empty
    overlap: float  # share of notes that start while an earlier one still sounds
    lowest: int | None = None  # MIDI pitches
    highest: int | None = None
    first_bar: int | None = None  # bars from 1: where its first note starts, where its last one does
    last_bar: int | None = None


@dataclass
class FileReport:
    """Everything ``melodylm inspect`` says about one file (see :func:`inspect_file`)."""

    path: str
    ticks_per_quarter: int
    tracks: list[TrackInfo]
    bars: int  # bars up to the end of the last note
    beats: float  # quarter notes up to the end of the last note
    meters: list[dict]  # [{"meter": "4/4", "bar": 1}, ...]: each time signature and the bar it takes effect
    tempo: float  # quarter notes per minute at the start
    tempo_changes: int
    melody_mode: str
    melody: dict | None  # track, name, why, notes, first_bar, last_bar, start_beat; None: see melody_reason
    melody_reason: str = ""
    key: str | None = None  # the file's key signature, else the one estimated from the melody
    key_source: str | None = None  # file | estimated
    estimated_key: str | None = None  # Krumhansl-Schmuckler on the melody's notes, weighted by duration
    key_signatures: list[dict] = field(default_factory=list)  # [{"key": "D major", "bar": 1}, ...]

    def to_dict(self) -> dict:
        """Plain JSON-ready data."""
        return asdict(self)


def _track_kind(is_drum: bool, notes: np.ndarray) -> tuple[str, float]:
    if not len(notes):
        return "empty", 0.0
    overlap = polyphony_ratio(notes)
    if is_drum:
        return "drums", overlap
    if overlap == 0:
        return "monophonic", overlap
    return ("mostly monophonic" if overlap <= MOSTLY_MONOPHONIC else "polyphonic"), overlap


def _meters(score) -> list[dict]:
    return [{"meter": f"{num}/{den}", "bar": bar} for bar, num, den in meter_changes(score)]


def _keys(score, melody: ChosenMelody) -> tuple[list[dict], str | None]:
    """The file's key signatures with their bars, and the key estimated from the melody's notes."""
    from melodylm.keys import estimate_key, key_from_signature

    sigs = []
    for ks in sorted(score.key_signatures, key=lambda k: k.time):
        try:
            name = key_from_signature(ks).name
        except ValueError:  # a signature outside -7..7 fifths says nothing usable
            continue
        if not sigs or sigs[-1]["key"] != name:
            sigs.append({"key": name, "bar": bar_index(score, int(ks.time)) + 1})
    estimated = None
    if melody.status == "ok":
        arr = note_array(melody.score.tracks[0])
        estimated = estimate_key(arr[:, 2], arr[:, 1]).name
    return sigs, estimated


def inspect_file(path: str | Path, melody: str = "auto") -> FileReport:
    """Read ``path`` and describe it: tracks, the melody ``melody`` picks (and why), bars, key, meter.

    Raises :class:`UserError` (one line naming the file) for a file that cannot be read as MIDI.
    A readable file without a usable melody is described, with ``melody`` None and the reason.
    """
    check_melody_mode(melody)
    score, status, reason = read_score(path)
    if score is None:
        raise UserError(f"{path}: {reason}")
    tpq = int(score.ticks_per_quarter)
    if tpq <= 0:
        raise UserError(f"{path}: invalid time division")
    tracks = []
    ends = [0]
    for i, tr in enumerate(score.tracks):
        arr = note_array(tr)
        kind, overlap = _track_kind(tr.is_drum, arr)
        info = TrackInfo(i, tr.name or "", int(tr.program), len(arr), kind, round(overlap, 3))
        if len(arr):
            info.lowest, info.highest = int(arr[:, 2].min()), int(arr[:, 2].max())
            info.first_bar = bar_index(score, int(arr[0, 0])) + 1
            info.last_bar = bar_index(score, int(arr[-1, 0])) + 1
            ends.append(int((arr[:, 0] + arr[:, 1]).max()))
        tracks.append(info)
    end = max(ends)
    mel = select_melody(score, melody, ChosenMelody(path=str(path)))
    chosen = None
    if mel.status == "ok":
        arr = note_array(mel.score.tracks[0])
        chosen = {"track": mel.info.get("track"), "name": mel.info.get("track_name"),
                  "why": mel.info.get("why") or _MERGED.get(melody, f"asked for with --melody {melody}"),
                  "notes": mel.n_notes,
                  "first_bar": bar_index(score, int(arr[0, 0])) + 1, "last_bar": bar_index(score, int(arr[-1, 0])) + 1,
                  "start_beat": round(float(arr[0, 0]) / tpq, 6)}
    key_sigs, estimated = _keys(score, mel)
    key, source = (key_sigs[0]["key"], "file") if key_sigs else (estimated, "estimated" if estimated else None)
    tempos = sorted(score.tempos, key=lambda t: t.time)
    return FileReport(
        path=str(path), ticks_per_quarter=tpq, tracks=tracks,
        bars=(bar_index(score, end - 1) + 1) if end > 0 else 0, beats=round(end / tpq, 6), meters=_meters(score),
        tempo=round(float(tempos[0].qpm), 3) if tempos else 120.0, tempo_changes=max(0, len(tempos) - 1),
        melody_mode=melody, melody=chosen, melody_reason="" if chosen else mel.reason, key=key, key_source=source,
        estimated_key=estimated, key_signatures=key_sigs)


def _bars(first: int, last: int) -> str:
    return f"{first}" if first == last else f"{first}-{last}"


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    return ["  " + "  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]


def format_report(r: FileReport) -> str:
    """The text ``melodylm inspect`` prints for one file."""
    meter = ", ".join(m["meter"] + ("" if m["bar"] == 1 else f" from bar {m['bar']}") for m in r.meters)
    if r.key_source == "file":
        key = f"{r.key} (key signature)"
        if r.estimated_key and r.estimated_key != r.key:
            key += f"; the melody's notes suggest {r.estimated_key}"
    else:
        key = f"{r.key} (estimated from the melody's notes)" if r.key else "unknown (no melody)"
    lines = [f"{r.path}: {len(r.tracks)} track{'s' if len(r.tracks) != 1 else ''}, {r.bars} bars "
             f"({r.beats:g} beats), {r.ticks_per_quarter} ticks per beat",
             f"meter {meter}; key {key}; tempo {r.tempo:g} bpm"
             + (f" ({r.tempo_changes} tempo changes)" if r.tempo_changes else "")]
    if r.tracks:
        rows = [["track", "name", "program", "notes", "pitches", "bars", "kind"]]
        for t in r.tracks:
            kind = t.kind if t.kind in ("drums", "monophonic", "empty") else f"{t.kind} ({t.overlap:.0%} overlap)"
            rows.append([f"{t.index}", repr(t.name), f"{t.program}", f"{t.notes}",
                         f"{t.lowest}-{t.highest}" if t.notes else "-",
                         _bars(t.first_bar, t.last_bar) if t.notes else "-", kind])
        lines += ["tracks:", *_table(rows)]
    m = r.melody
    if m is None:
        lines.append(f"melody ({r.melody_mode}): none: {r.melody_reason}")
        return "\n".join(lines)
    which = f"track {m['track']} {m['name']!r}, {m['why']}" if m["track"] is not None else m["why"]
    lines.append(f"melody ({r.melody_mode}): {which}; {m['notes']} notes in bar"
                 f"{'s' if m['last_bar'] > m['first_bar'] else ''} {_bars(m['first_bar'], m['last_bar'])}")
    if m["first_bar"] > 1:
        lines.append(f"  it starts in bar {m['first_bar']} (beat {m['start_beat']:g}); a prompt from this file "
                     "starts there (--prompt-start-bar N: a later bar)")
    return "\n".join(lines)


__all__ = ["FileReport", "TrackInfo", "format_report", "inspect_file"]
