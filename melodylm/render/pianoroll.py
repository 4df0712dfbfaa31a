"""Piano rolls a musician can read: note names on the pitch axis, bar lines, beats counted in bars.

Notes are coloured by onset: a note is the continuation when it starts at or after
``split_tick`` (so model notes that start under the prompt's last note are still the model's).
Without a split every note has one colour and the legend names it ``single_label``.
:func:`pianoroll_figure` gives the matplotlib figure, :func:`pianoroll_array` the same picture as
an RGB array (for TensorBoard's ``add_image(..., dataformats="HWC")``), :func:`save_pianoroll` a PNG.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from melodylm.extras import require
from melodylm.render.common import bars, beat_ticks, detect_pickup, key_of, note_rows, pitch_name

PROMPT_COLOUR = "#466EC8"
CONTINUATION_COLOUR = "#C8462D"  # the sheet music's continuation colour
MAX_BAR_LABELS = 40  # past this, only every n-th bar is numbered so the labels stay legible


def _pitch_ticks(lo: int, hi: int, flats: bool) -> tuple[list[int], list[str]]:
    """Every pitch labelled for a small range, else the C and G of each octave (C4, G4, ...)."""
    pitches = list(range(lo, hi + 1))
    if len(pitches) > 24:
        pitches = [p for p in pitches if p % 12 in (0, 7)]
    return pitches, [pitch_name(p, flats) for p in pitches]


def _grid(ax, score, end: int, tpq: int, pickup: int) -> None:
    """Bar lines (numbered on top) and beats (numbered 1, 2, ... in each bar) along the x axis."""
    bar_list = bars(score, end, pickup)
    beats_x, beats_lab, inner = [], [], []
    for b in bar_list:
        step = beat_ticks(b.num, b.den, tpq)
        # A pickup bar holds the last beats of a full bar: count them as such (2 in a 6/8 upbeat of 4 eighths).
        offset = max(0, b.num * tpq * 4 // b.den - b.length)
        for i in range(-(-offset // step), (offset + b.length - 1) // step + 1):
            t = b.start + i * step - offset
            if t > b.start:
                inner.append(t / tpq)
            beats_x.append(t / tpq)
            beats_lab.append(str(i + 1))
    # One collection per kind of line: a line object per beat made a 32-bar tune's PNG take seconds.
    trans = ax.get_xaxis_transform()  # x in beats, y from 0 to 1 of the axes
    ax.vlines(inner, 0, 1, transform=trans, colors="0.88", lw=0.5, zorder=0, gid="beats")
    ax.vlines([b.start / tpq for b in bar_list], 0, 1, transform=trans, colors="0.55", lw=0.9, zorder=1, gid="bars")
    every = max(1, len(bar_list) // MAX_BAR_LABELS + 1)
    top = ax.secondary_xaxis("top")
    shown = [b for b in bar_list if (b.number - 1) % every == 0]
    top.set_xticks([b.start / tpq for b in shown], [str(b.number) for b in shown], fontsize=7)
    top.set_xlabel("bar", fontsize=8)
    ax.set_xticks([])
    if len(beats_x) <= 160:  # more would overlap; the bar numbers on top still count
        # Plain texts, not tick labels: matplotlib's Tick objects cost ~9 ms each (a 32-bar tune has 100 beats).
        for x, label in zip(beats_x, beats_lab):
            ax.text(x, -0.015, label, transform=trans, ha="center", va="top", fontsize=6, gid="beat")
        ax.set_xlabel("beat in bar", labelpad=10)


def pianoroll_figure(score, split_tick: int | None = None, title: str = "",
                     labels: tuple[str, str] = ("prompt", "continuation"), single_label: str = "melody",
                     width: float | None = None, dpi: int = 100, pickup: int | str = 0):
    """A matplotlib Figure of a melody's piano roll (Agg backend, no display needed).

    ``split_tick`` (ticks of the score): notes with onset >= it are drawn as ``labels[1]``, the
    others as ``labels[0]``; ``None`` draws all notes in one colour named ``single_label``.
    """
    require("matplotlib", "render", "piano rolls (png)")
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    tpq = int(score.ticks_per_quarter)
    notes = note_rows(score)
    end = int((notes[:, 0] + notes[:, 1]).max()) if len(notes) else tpq * 4
    beats = end / tpq
    fig = Figure(figsize=(width or float(np.clip(beats * 0.12, 6, 20)), 3.4), dpi=dpi)
    ax = fig.add_subplot()
    if split_tick is None:
        groups = [(np.ones(len(notes), bool), CONTINUATION_COLOUR, single_label)]
    else:
        new = notes[:, 0] >= split_tick
        groups = [(~new, PROMPT_COLOUR, labels[0]), (new, CONTINUATION_COLOUR, labels[1])]
    handles = []
    for sel, colour, label in groups:
        if sel.any():
            ax.add_collection(_rects(notes[sel], tpq, colour, label))
            handles.append(Patch(color=colour, label=label))
    lo, hi = (int(notes[:, 2].min()) - 1, int(notes[:, 2].max()) + 1) if len(notes) else (59, 73)
    ax.set_xlim(0, max(beats, 1.0))
    ax.set_ylim(lo - 0.5, hi + 0.5)
    flats = len(notes) > 0 and _flat_key(score)
    ax.set_yticks(*_pitch_ticks(lo, hi, flats), fontsize=7)
    if pickup == "auto":
        pickup = detect_pickup(score) if split_tick is None else 0
    _grid(ax, score, end, tpq, int(pickup))
    if split_tick is not None:
        ax.axvline(split_tick / tpq, color="0.2", lw=1.2, ls="--", zorder=3)
    if handles:
        ax.legend(handles=handles, loc="upper right", fontsize=7, framealpha=0.85)
    if title:
        fig.suptitle(title, fontsize=9, y=0.99)
    # Fixed margins: tight_layout draws the figure once more only to measure it.
    fig.subplots_adjust(left=max(0.02, 0.45 / fig.get_figwidth()), right=0.99, bottom=0.15, top=0.80)
    return fig


def _flat_key(score) -> bool:
    try:
        return key_of(score).fifths < 0
    except ImportError:  # no key estimator available: sharps, as MIDI tools name pitches
        return False


def _rects(notes: np.ndarray, tpq: int, colour: str, label: str):
    """One PolyCollection of note rectangles (x in beats, 0.8 of a semitone high), ``gid`` = label."""
    from matplotlib.collections import PolyCollection

    x0 = notes[:, 0] / tpq
    x1 = x0 + np.maximum(notes[:, 1] / tpq, 0.02)
    y0, y1 = notes[:, 2] - 0.4, notes[:, 2] + 0.4
    verts = np.stack([np.stack([x0, y0], 1), np.stack([x1, y0], 1), np.stack([x1, y1], 1), np.stack([x0, y1], 1)], 1)
    return PolyCollection(verts, facecolors=colour, edgecolors="none", zorder=2, gid=label)


def pianoroll_array(score, split_tick: int | None = None, **kwargs) -> np.ndarray:
    """The piano roll of :func:`pianoroll_figure` as an (H, W, 3) uint8 RGB array."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = pianoroll_figure(score, split_tick, **kwargs)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def save_pianoroll(score, path: str | Path, split_tick: int | None = None, **kwargs) -> Path:
    """Write the piano roll of :func:`pianoroll_figure` as a PNG file; returns the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = pianoroll_figure(score, split_tick, **kwargs)
    FigureCanvasAgg(fig).print_png(str(path))
    return path
