"""A one-melody symusic score -> MusicXML (partwise, version 4.0), written with the standard library.

What a reader needs and a MIDI file does not say directly is worked out here: onsets are snapped
to a 32nd-note grid, or to a triplet grid in each quarter-note window where that fits the ticks
better; notes and rests are cut at bar lines (ties) and into values a musician writes (dotted
values on the beat, no value crossing a beat from off the beat); pitches are spelled in the key,
with accidentals where the bar needs them. Notes from ``split_tick`` on are coloured and marked.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

import numpy as np

from melodylm.render.common import Bar, KeyInfo, bars, beat_ticks, detect_pickup, key_of, note_rows

DIV = 24  # MusicXML divisions per quarter: 32nds (3), 16th triplets (4) and 8th triplets (8) are whole numbers
DUPLE, TRIPLE = 3, 4  # grid steps in divisions
CONTINUATION_COLOUR = "#C8462D"  # the piano roll's continuation colour, so both pictures agree
# (divisions, type, dots) of plain values, longest first.
VALUES = [(96, "whole", 0), (72, "half", 1), (48, "half", 0), (36, "quarter", 1), (24, "quarter", 0),
          (18, "eighth", 1), (12, "eighth", 0), (9, "16th", 1), (6, "16th", 0), (3, "32nd", 0)]
# Values inside a triplet window (3 in the time of 2): sounding divisions -> (type, dots).
TRIPLET_VALUES = [(16, "quarter", 0), (12, "eighth", 1), (8, "eighth", 0), (4, "16th", 0)]
STEPS = "CDEFGAB"
STEP_PC = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
SHARP_ORDER, FLAT_ORDER = "FCGDAEB", "BEADGCF"
BEAM_LEVELS = {"eighth": 1, "16th": 2, "32nd": 3}
ACCIDENTAL = {-2: "flat-flat", -1: "flat", 0: "natural", 1: "sharp", 2: "double-sharp"}


@dataclass
class Piece:
    """A notated note or rest: sounding divisions, value, ties, tuplet and split flags."""

    start: int  # divisions from the bar's start
    dur: int
    pitch: int | None  # None is a rest
    type: str
    dots: int
    triplet: bool = False
    tie_stop: bool = False
    tie_start: bool = False
    tuplet: str = ""  # "start" | "stop" | "" (bracket ends)
    new: bool = False  # at or after the split: the continuation
    beams: list = field(default_factory=list)  # (level, "begin" | "continue" | "end" | "forward hook" | ...)


# ------------------------------------------------------------------------------ quantization

def _windows(bar_list: list[Bar], tpq: int) -> list[tuple[float, float, bool]]:
    """Triplet windows (start, end, may hold triplets) in divisions, from the bar grid.

    A quarter note in x/2 and x/4 (eighth triplets), an eighth in x/8 (16th triplets: a quarter
    window would straddle the dotted-quarter beats of 6/8); none in other meters.
    """
    out = []
    for b in bar_list:
        start, length = b.start * DIV / tpq, b.length * DIV / tpq
        size = {2: DIV, 4: DIV, 8: DIV // 2}.get(b.den, DIV)
        w = start
        while w < start + length - 1e-9:
            end = min(w + size, start + length)
            out.append((w, end, b.den in (2, 4, 8) and end - w == size))
            w = end
    return out


def quantize(points: np.ndarray, bar_list: list[Bar], tpq: int) -> tuple[np.ndarray, dict[int, int]]:
    """Snap tick positions to divisions: each window takes the 32nd grid or a triplet grid.

    A window takes the grid that fits its positions with the least total error; ties go to the
    plain grid, then to one triplet over the whole window. A quarter window may also split in
    two eighths that choose apart (three 16th triplets then two 16ths). Returns the snapped
    positions and the triplet windows as {start: end} in divisions.
    """
    x = points.astype(np.float64) * DIV / tpq
    wins = _windows(bar_list, tpq)
    starts = np.array([w[0] for w in wins])
    idx = np.clip(np.searchsorted(starts, x + 1e-9, side="right") - 1, 0, len(wins) - 1)
    out = np.zeros(len(x), dtype=np.int64)
    triplets: dict[int, int] = {}
    for i in np.unique(idx):
        sel = idx == i
        w0, w1, may = wins[i]
        snapped, trip = _snap_window(x[sel] - w0, w1 - w0, may)
        triplets.update({int(round(w0 + a)): int(round(w0 + z)) for a, z in trip})
        out[sel] = np.minimum(np.round(w0 + snapped), round(w1)).astype(np.int64)
    return out, triplets


def _snap_window(rel: np.ndarray, size: float, may: bool) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Best grid for positions ``rel`` in one window: (snapped positions, triplet sub-windows)."""
    def snap(step: float) -> tuple[float, np.ndarray]:
        s = np.round(rel / step) * step
        return float(np.abs(rel - s).sum()), s

    err, best = snap(DUPLE)
    trip: list[tuple[float, float]] = []
    if not may:
        return best, trip
    t_err, t = snap(TRIPLE)
    if t_err + 1e-6 < err:
        err, best, trip = t_err, t, [(0.0, size)]
    if size == DIV:
        half = size / 2
        parts, total, halves = np.empty_like(rel), 0.0, []
        for lo, m in ((0.0, rel < half - 1e-9), (half, rel >= half - 1e-9)):
            r = rel[m] - lo
            d = np.round(r / DUPLE) * DUPLE
            tr = np.round(r / TRIPLE) * TRIPLE
            use_t = np.abs(r - tr).sum() + 1e-6 < np.abs(r - d).sum()
            parts[m] = lo + (tr if use_t else d)
            total += float(np.abs(r - (tr if use_t else d)).sum())
            if use_t:
                halves.append((lo, lo + half))
        if halves and total + 1e-6 < err:
            best, trip = parts, halves
    return best, trip


def melody_segments(score, bar_list: list[Bar], split_tick: int | None):
    """Quantized (start, end, pitch, new) notes in divisions, one line (later onsets cut earlier notes)."""
    tpq = int(score.ticks_per_quarter)
    notes = note_rows(score)
    if not len(notes):
        return [], set()
    on, end = notes[:, 0], notes[:, 0] + notes[:, 1]
    q, triplets = quantize(np.concatenate([on, end]), bar_list, tpq)
    qon, qend = q[:len(on)], q[len(on):]
    segs = []
    for i in range(len(notes)):
        s, e = int(qon[i]), int(qend[i])
        if i + 1 < len(notes):
            e = min(e, int(qon[i + 1]))
        if segs and s < segs[-1][1]:
            continue  # two onsets snapped together: keep the first
        if e > s:
            new = split_tick is not None and int(on[i]) >= split_tick
            segs.append((s, e, int(notes[i, 2]), new))
    return segs, triplets


# ------------------------------------------------------------------------------ note values

def _chunks(rel: int, length: int, beat: int) -> list[tuple[int, str, int]]:
    """Split ``length`` divisions from ``rel`` (in the bar) into written values, obeying the beat."""
    out = []
    while length > 0:
        nxt = (rel // beat + 1) * beat
        pick = None
        for v, typ, dots in VALUES:
            if v > length:
                continue
            base = v * 2 // 3 if dots else v
            on_beat = rel % beat == 0
            if (on_beat and ((rel + v) % beat == 0 or (rel + base) % beat == 0 or v < beat)) or rel + v <= nxt:
                pick = (v, typ, dots)
                break
        if pick is None:  # a length off every grid (an odd meter): the longest value that fits
            pick = next(((v, t, d) for v, t, d in VALUES if v <= length), (length, "32nd", 0))
        out.append(pick)
        rel += pick[0]
        length -= pick[0]
    return out


def _triplet_chunks(length: int) -> list[tuple[int, str, int]]:
    out = []
    while length > 0:
        pick = next(((v, t, d) for v, t, d in TRIPLET_VALUES if v <= length), (length, "16th", 0))
        out.append(pick)
        length -= pick[0]
    return out


def bar_pieces(bar: Bar, b0: int, b1: int, segs, triplets: dict[int, int], tpq: int) -> list[Piece]:
    """The notes and rests of one bar ([b0, b1) in divisions) as written pieces."""
    beat = max(1, beat_ticks(bar.num, bar.den, tpq) * DIV // tpq)
    spans = []  # (start, end, pitch, new, tie_stop, tie_start), rests filling the gaps
    pos = b0
    for s, e, p, new in segs:
        if e <= b0 or s >= b1:
            continue
        if s > pos:
            spans.append((pos, s, None, new, False, False))
        cs, ce = max(s, b0), min(e, b1)
        spans.append((cs, ce, p, new, s < b0, e > b1))
        pos = ce
    if pos < b1:
        spans.append((pos, b1, None, bool(spans and spans[-1][3]), False, False))
    pieces: list[Piece] = []
    for s, e, p, new, stop, start in spans:
        cuts = sorted({s, e} | {w for w in triplets if s < w < e} | {z for z in triplets.values() if s < z < e})
        for a, z in zip(cuts, cuts[1:]):
            trip = any(w <= a < z for w, z in triplets.items())
            chunks = _triplet_chunks(z - a) if trip else _chunks(a - b0, z - a, beat)
            at = a
            for v, typ, dots in chunks:
                pieces.append(Piece(at - b0, v, p, typ, dots, trip, new=new))
                at += v
        if p is not None:
            group = [x for x in pieces if x.pitch == p and s - b0 <= x.start < e - b0]
            for x, y in zip(group, group[1:]):
                x.tie_start, y.tie_stop = True, True
            group[0].tie_stop, group[-1].tie_start = stop, start
    _bracket(pieces, b0, triplets)
    _beam(pieces, beat)
    return pieces


def _beam(pieces: list[Piece], beat: int) -> None:
    """Beam eighths and shorter notes that share a beat (verovio draws flags for unbeamed MusicXML)."""
    groups: list[list[Piece]] = []
    for x in pieces:
        short = x.pitch is not None and x.type in BEAM_LEVELS
        same = groups and groups[-1] and groups[-1][-1].start // beat == x.start // beat \
            and groups[-1][-1].start + groups[-1][-1].dur == x.start
        if short and same:
            groups[-1].append(x)
        else:
            groups.append([x] if short else [])
    for g in (g for g in groups if len(g) > 1):
        for level in (1, 2, 3):
            run: list[Piece] = []
            for x in g + [None]:
                if x is not None and BEAM_LEVELS[x.type] >= level:
                    run.append(x)
                    continue
                if len(run) > 1:
                    run[0].beams.append((level, "begin"))
                    run[-1].beams.append((level, "end"))
                    for y in run[1:-1]:
                        y.beams.append((level, "continue"))
                elif run and level > 1:
                    run[0].beams.append((level, "forward hook" if run[0] is g[0] else "backward hook"))
                run = []


def _bracket(pieces: list[Piece], b0: int, triplets: dict[int, int]) -> None:
    for w, z in triplets.items():
        inside = [x for x in pieces if x.triplet and w <= x.start + b0 < z]
        if len(inside) > 1:  # a lone piece keeps its 3:2 value without a bracket
            inside[0].tuplet, inside[-1].tuplet = "start", "stop"


# ------------------------------------------------------------------------------ spelling

def key_alters(fifths: int) -> dict[str, int]:
    """Alteration of each step in the key signature (F# in G major -> {"F": 1})."""
    alters = {s: 0 for s in STEPS}
    for s in (SHARP_ORDER[:fifths] if fifths > 0 else FLAT_ORDER[:-fifths]):
        alters[s] = 1 if fifths > 0 else -1
    return alters


def spell(pitch: int, fifths: int) -> tuple[str, int, int]:
    """(step, alter, octave) of a MIDI pitch in a key: the key's own notes first, then sharps or flats."""
    pc = pitch % 12
    alters = key_alters(fifths)
    step = next((s for s in STEPS if (STEP_PC[s] + alters[s]) % 12 == pc), None)
    if step is None:
        names = "C C D D E F F G G A A B" if fifths >= 0 else "C D D E E F G G A A B B"
        step = names.split()[pc]
    alter = (pc - STEP_PC[step] + 6) % 12 - 6
    octave = (pitch - alter) // 12 - 1
    return step, alter, octave


# ------------------------------------------------------------------------------ XML

def _sub(parent, tag: str, text=None, **attrib):
    el = ET.SubElement(parent, tag, {k.replace("_", "-"): str(v) for k, v in attrib.items()})
    if text is not None:
        el.text = str(text)
    return el


def _attributes(measure, bar: Bar, first: bool, key: KeyInfo, clef: tuple[str, int]) -> None:
    attrs = _sub(measure, "attributes")
    if first:
        _sub(attrs, "divisions", DIV)
        k = _sub(attrs, "key")
        _sub(k, "fifths", key.fifths)
        _sub(k, "mode", key.mode)
    t = _sub(attrs, "time")
    _sub(t, "beats", bar.num)
    _sub(t, "beat-type", bar.den)
    if first:
        c = _sub(attrs, "clef")
        _sub(c, "sign", clef[0])
        _sub(c, "line", clef[1])


def _direction(measure, words: str | None = None, tempo: float | None = None) -> None:
    d = _sub(measure, "direction", placement="above")
    dt = _sub(d, "direction-type")
    if words is not None:
        _sub(dt, "words", words, color=CONTINUATION_COLOUR, font_weight="bold")
    if tempo is not None:
        m = _sub(dt, "metronome")
        _sub(m, "beat-unit", "quarter")
        _sub(m, "per-minute", round(tempo))
        _sub(d, "sound", tempo=round(tempo, 2))


def _note(measure, x: Piece, fifths: int, state: dict, whole_bar: bool) -> int:
    """Append one <note>; returns 1 for a sounding note head, 0 for a rest."""
    n = _sub(measure, "note", **({"color": CONTINUATION_COLOUR} if x.new else {}))
    if x.pitch is None:
        _sub(n, "rest", **({"measure": "yes"} if whole_bar else {}))
    else:
        step, alter, octave = spell(x.pitch, fifths)
        p = _sub(n, "pitch")
        _sub(p, "step", step)
        if alter:
            _sub(p, "alter", alter)
        _sub(p, "octave", octave)
    _sub(n, "duration", x.dur)
    for kind in ("stop", "start"):
        if (x.tie_stop if kind == "stop" else x.tie_start):
            _sub(n, "tie", type=kind)
    if not whole_bar:
        _sub(n, "type", x.type)
        for _ in range(x.dots):
            _sub(n, "dot")
    if x.pitch is not None and not x.tie_stop:
        shown = state.get((step, octave), key_alters(fifths)[step])
        if shown != alter:
            _sub(n, "accidental", ACCIDENTAL.get(alter, "natural"))
            state[(step, octave)] = alter
    if x.triplet:
        tm = _sub(n, "time-modification")
        _sub(tm, "actual-notes", 3)
        _sub(tm, "normal-notes", 2)
    for level, value in x.beams:
        _sub(n, "beam", value, number=level)
    notations = _sub(n, "notations")
    for kind in ("stop", "start"):
        if (x.tie_stop if kind == "stop" else x.tie_start):
            _sub(notations, "tied", type=kind)
    if x.tuplet:
        _sub(notations, "tuplet", type=x.tuplet, bracket="yes")
    if not len(notations):
        n.remove(notations)
    return int(x.pitch is not None)


def title_of(score) -> str:
    """The track name as a title, unless it is a stand-in: the loader's "melody" for a nameless
    track, or a General MIDI instrument name, which miditok's decoder gives every track it writes
    (a sample made from nothing was titled "Acoustic Grand Piano")."""
    from miditok.constants import MIDI_INSTRUMENTS

    name = (score.tracks[0].name if len(score.tracks) else "").strip()
    stand_ins = {"melody"} | {str(i["name"]).lower() for i in MIDI_INSTRUMENTS}
    return "" if name.lower() in stand_ins else name


def to_musicxml(score, split_tick: int | None = None, key: KeyInfo | None = None, title: str | None = None,
                pickup: int | str = 0) -> str:
    """MusicXML text of a one-melody symusic score.

    ``split_tick``: notes starting at or after it are the continuation (coloured, marked once);
    ``key``: the key to engrave (default: the file's key signature, else estimated); ``title``:
    default the track name; ``pickup``: ticks of an upbeat bar. The default 0 counts bars from
    tick 0 as the MIDI file, the tokenizer and ``--prompt-bars`` do; ``"auto"`` guesses an upbeat
    from the tune's length (:func:`~melodylm.render.common.detect_pickup`; never with a split,
    as a sample's length says nothing, and wrong for a tune whose last bar is not full).
    """
    tpq = int(score.ticks_per_quarter)
    notes = note_rows(score)
    end = int((notes[:, 0] + notes[:, 1]).max()) if len(notes) else tpq
    if pickup == "auto":
        pickup = detect_pickup(score) if split_tick is None else 0
    bar_list = bars(score, end, int(pickup))
    segs, triplets = melody_segments(score, bar_list, split_tick)
    key = key or key_of(score)
    low = float(np.median(notes[:, 2])) if len(notes) else 72.0
    clef = ("F", 4) if low < 55 else ("G", 2)  # under G3 most notes would need ledger lines
    tempo = float(score.tempos[0].qpm) if len(score.tempos) else 120.0
    if title is None:
        title = title_of(score)

    root = ET.Element("score-partwise", version="4.0")
    if title:
        _sub(_sub(root, "work"), "work-title", title)
    _sub(_sub(_sub(root, "identification"), "encoding"), "software", "melodylm")
    _sub(_sub(_sub(root, "part-list"), "score-part", id="P1"), "part-name", "Melody")
    part = _sub(root, "part", id="P1")
    marked, prev_meter = False, None
    for i, bar in enumerate(bar_list):
        b0, b1 = round(bar.start * DIV / tpq), round((bar.start + bar.length) * DIV / tpq)
        m = _sub(part, "measure", number=bar.number, **({"implicit": "yes"} if bar.number == 0 else {}))
        if i == 0 or (bar.num, bar.den) != prev_meter:
            _attributes(m, bar, i == 0, key, clef)
            prev_meter = (bar.num, bar.den)
        if i == 0:
            _direction(m, tempo=tempo)
        pieces = bar_pieces(bar, b0, b1, segs, triplets, tpq)
        state: dict = {}
        whole_rest = len(pieces) == 1 and pieces[0].pitch is None
        for x in pieces:
            if x.new and x.pitch is not None and not marked:
                _direction(m, words="continuation")
                marked = True
            _note(m, x, key.fifths, state, whole_rest)
    if len(part):
        _sub(_sub(part[-1], "barline", location="right"), "bar-style", "light-heavy")
    ET.indent(root)
    head = ('<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE score-partwise PUBLIC "-//Recordare//DTD MusicXML 4.0 '
            'Partwise//EN" "http://www.musicxml.org/dtds/partwise.dtd">\n')
    return head + ET.tostring(root, encoding="unicode") + "\n"
