"""Melodic and tonal statistics of melodies, and how far two sets of melodies differ.

A melody is a list of notes ``(onset, duration, pitch)`` (beats, beats, MIDI pitch) sorted by
onset; plain tuples work. :func:`melody_metrics` describes one melody with the numbers in
:data:`METRICS`; :func:`set_metrics` does a whole set; :func:`compare_sets` puts two sets side
by side per metric with the overlapping area (OA) and Kullback-Leibler divergence of their
distributions, following Yang & Lerch (2018), "On the evaluation of generative models in
music" (Neural Computing and Applications): each set's values are smoothed with a Gaussian
kernel density estimate (bandwidth by Scott's rule) and the two densities are compared on one
common grid. OA is 1 for identical distributions and near 0 for disjoint ones.

Empty melodies and metrics that need more notes than a melody has (an interval needs two) are
NaN and left out of summaries and comparisons.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

import numpy as np

__all__ = [
    "METRICS",
    "Note",
    "compare_sets",
    "kde",
    "kl_divergence",
    "melody_metrics",
    "overlapping_area",
    "plot_distributions",
    "set_metrics",
    "summary_table",
]


class Note(NamedTuple):
    """One note: onset and duration in beats, MIDI pitch."""

    onset: float
    duration: float
    pitch: int


# name -> one-line meaning (also the order of tables and plots)
METRICS: dict[str, str] = {
    "pitch_range": "highest minus lowest pitch (semitones)",
    "distinct_pitches": "number of different MIDI pitches",
    "distinct_pitch_classes": "number of different pitch classes (0-12)",
    "pitch_class_entropy": "entropy of the pitch-class histogram, one count per note (bits)",
    "scale_consistency": "largest share of notes inside one major / natural-minor scale",
    "mean_abs_interval": "mean |pitch difference| of consecutive notes (semitones)",
    "stepwise_share": "share of consecutive-note intervals of 1 or 2 semitones",
    "macroharmony": "mean number of distinct pitch classes per window of 12 notes",
    "centricity": "mean share of the most frequent pitch class per window of 12 notes",
    "rest_ratio": "time between a note's end and the next onset / time from first onset to last end",
    "notes_per_bar": "notes / bars touched",
    "repetition_4": "share of 4-note interval patterns occurring more than once in the melody",
    "duration_entropy": "entropy of the note-duration histogram (bits)",
}

WINDOW = 12  # notes per window for macroharmony and centricity

_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_MINOR = (0, 2, 3, 5, 7, 8, 10)
# 24 scales (12 tonics x major / natural minor) as 12-bit pitch-class masks. Relative keys
# share a set (C major = A minor), so there are 12 distinct sets; keeping 24 mirrors the
# definition and costs nothing.
_SCALES = np.array([[(pc - tonic) % 12 in steps for pc in range(12)]
                    for steps in (_MAJOR, _MINOR) for tonic in range(12)], dtype=bool)

# numpy >= 2 renamed trapz to trapezoid; setup.cfg allows numpy 1.24.
_trapezoid = getattr(np, "trapezoid", None) or getattr(np, "trapz")

# Durations are compared after rounding to 1/48 beat (covers triplets and 32nds), so that
# float noise from tick conversion does not split one value into several.
_DURATION_QUANTUM = 1 / 48


def _entropy_bits(counts: Iterable[int]) -> float:
    c = np.array([x for x in counts if x > 0], dtype=float)
    if c.size == 0:
        return math.nan
    p = c / c.sum()
    return float(-(p * np.log2(p)).sum()) + 0.0  # + 0.0 turns -0.0 into 0.0


def melody_metrics(notes: Sequence[Sequence[float]], beats_per_bar: float = 4) -> dict[str, float]:
    """All :data:`METRICS` for one melody (NaN where undefined).

    Definitions (n notes, pitches p_i in onset order, pitch class p_i mod 12):

    * ``pitch_class_entropy``: Shannon entropy in bits of the pitch-class counts.
    * ``scale_consistency``: max over the 24 major / natural-minor scales of the share of notes
      whose pitch class is in the scale.
    * ``mean_abs_interval``, ``stepwise_share``: over the n-1 intervals p_{i+1} - p_i; a step is
      |interval| in {1, 2} (a repeated note is not a step). NaN for n < 2.
    * ``macroharmony``: windows of 12 consecutive notes, sliding by one note (one window of all
      notes if n < 12); the mean over windows of the number of distinct pitch classes.
    * ``centricity``: same windows; the mean over windows of (count of the most frequent pitch
      class in the window / notes in the window).
    * ``rest_ratio``: gaps between the latest note end so far and the next onset (overlaps count
      0), summed, over the time from the first onset to the last end. NaN if that is 0.
    * ``notes_per_bar``: n / number of bars from the bar of the first onset to the bar of the
      last end (bars of ``beats_per_bar`` beats from beat 0).
    * ``repetition_4``: for every 4 consecutive notes, the pattern of their 3 intervals
      (transposition-invariant); the share of patterns that occur at least twice. NaN for n < 4.
    * ``duration_entropy``: entropy in bits of the durations, rounded to 1/48 beat.
    """
    n = len(notes)
    out = {name: math.nan for name in METRICS}
    if n == 0:
        return out
    onset = np.array([x[0] for x in notes], dtype=float)
    dur = np.array([x[1] for x in notes], dtype=float)
    pitch = np.array([x[2] for x in notes], dtype=np.int64)
    pc = pitch % 12
    pc_counts = np.bincount(pc, minlength=12)

    out["pitch_range"] = float(pitch.max() - pitch.min())
    out["distinct_pitches"] = float(np.unique(pitch).size)
    out["distinct_pitch_classes"] = float(np.count_nonzero(pc_counts))
    out["pitch_class_entropy"] = _entropy_bits(pc_counts)
    out["scale_consistency"] = float((_SCALES @ pc_counts).max() / n)

    if n >= 2:
        step = np.abs(np.diff(pitch))
        out["mean_abs_interval"] = float(step.mean())
        out["stepwise_share"] = float(np.isin(step, (1, 2)).mean())

    width = min(WINDOW, n)
    windows = np.lib.stride_tricks.sliding_window_view(pc, width)  # (n - width + 1, width)
    one_hot = np.zeros((windows.shape[0], 12), dtype=np.int64)
    for col in range(width):
        one_hot[np.arange(windows.shape[0]), windows[:, col]] += 1
    out["macroharmony"] = float(np.count_nonzero(one_hot, axis=1).mean())
    out["centricity"] = float((one_hot.max(axis=1) / width).mean())

    end = onset + dur
    latest_end = np.maximum.accumulate(end)
    span = float(latest_end[-1] - onset[0])
    if span > 0:
        gaps = np.clip(onset[1:] - latest_end[:-1], 0, None)
        out["rest_ratio"] = float(gaps.sum() / span)
    first_bar = math.floor(onset[0] / beats_per_bar)
    last_bar = max(first_bar + 1, math.ceil(latest_end[-1] / beats_per_bar - 1e-9))
    out["notes_per_bar"] = n / (last_bar - first_bar)

    if n >= 4:
        iv = np.diff(pitch)
        patterns = list(zip(iv[:-2].tolist(), iv[1:-1].tolist(), iv[2:].tolist()))
        seen = Counter(patterns)
        out["repetition_4"] = sum(seen[p] > 1 for p in patterns) / len(patterns)

    out["duration_entropy"] = _entropy_bits(Counter(np.round(dur / _DURATION_QUANTUM).tolist()).values())
    return out


def set_metrics(melodies: Iterable[Sequence[Sequence[float]]], beats_per_bar: float = 4) -> dict[str, np.ndarray]:
    """Per metric, the array of values over the melodies (NaN kept, aligned with the input)."""
    rows = [melody_metrics(m, beats_per_bar) for m in melodies]
    return {name: np.array([r[name] for r in rows], dtype=float) for name in METRICS}


# --------------------------------------------------------------------------------------------
# Two distributions: KDE on a common grid, overlapping area, KL divergence.

_GRID = 1000  # grid points; densities are smooth at this resolution (4+ points per bandwidth)


def _bandwidth(x: np.ndarray, fallback: float) -> float:
    """Scott's rule for one dimension: n**(-1/5) times the sample standard deviation (ddof=1).

    Constant data (or one value) has no spread to scale: ``fallback`` is used instead.
    """
    if x.size > 1:
        sd = float(np.std(x, ddof=1))
        if sd > 0:
            return sd * x.size ** (-1 / 5)
    return fallback


def kde(x: np.ndarray, grid: np.ndarray, bandwidth: float) -> np.ndarray:
    """Gaussian kernel density of the values ``x`` on ``grid``, normalised to area 1 there."""
    z = (grid[:, None] - x[None, :]) / bandwidth
    density = np.exp(-0.5 * z * z).sum(axis=1) / (x.size * bandwidth * math.sqrt(2 * math.pi))
    area = _trapezoid(density, grid)
    return density / area if area > 0 else density


def _common_grid(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, float, float]:
    both = np.concatenate([a, b])
    lo, hi = float(both.min()), float(both.max())
    # Used where a set is constant: a narrow kernel relative to the joint range (or the value).
    fallback = 0.05 * (hi - lo) if hi > lo else 0.05 * max(abs(hi), 1.0)
    bw_a, bw_b = _bandwidth(a, fallback), _bandwidth(b, fallback)
    margin = 4 * max(bw_a, bw_b)
    return np.linspace(lo - margin, hi + margin, _GRID), bw_a, bw_b


def _densities(a: Sequence[float], b: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if a.size == 0 or b.size == 0:
        return None
    grid, bw_a, bw_b = _common_grid(a, b)
    return grid, kde(a, grid, bw_a), kde(b, grid, bw_b)


def overlapping_area(a: Sequence[float], b: Sequence[float]) -> float:
    """Area under min(density of a, density of b): 1 = same distribution, 0 = disjoint."""
    d = _densities(a, b)
    if d is None:
        return math.nan
    grid, pa, pb = d
    return float(_trapezoid(np.minimum(pa, pb), grid))


def kl_divergence(a: Sequence[float], b: Sequence[float], floor: float = 1e-12) -> float:
    """KL(a || b) in nats between the two kernel densities on the common grid.

    Densities are floored at ``floor`` so that a region where ``b`` has (numerically) no mass
    gives a large but finite value.
    """
    d = _densities(a, b)
    if d is None:
        return math.nan
    grid, pa, pb = d
    pa, pb = np.maximum(pa, floor), np.maximum(pb, floor)
    return float(max(_trapezoid(pa * np.log(pa / pb), grid), 0.0))


def compare_sets(metrics_a: Mapping[str, np.ndarray], metrics_b: Mapping[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Per metric: mean and std of each set, OA and KL(a || b) of their distributions."""
    out = {}
    for name in METRICS:
        if name not in metrics_a or name not in metrics_b:
            continue
        a = np.asarray(metrics_a[name], dtype=float)
        b = np.asarray(metrics_b[name], dtype=float)
        a, b = a[np.isfinite(a)], b[np.isfinite(b)]
        out[name] = {
            "mean_a": float(a.mean()) if a.size else math.nan,
            "std_a": float(a.std()) if a.size else math.nan,
            "mean_b": float(b.mean()) if b.size else math.nan,
            "std_b": float(b.std()) if b.size else math.nan,
            "oa": overlapping_area(a, b),
            "kl": kl_divergence(a, b),
        }
    return out


def summary_table(metrics_a: Mapping[str, np.ndarray], metrics_b: Mapping[str, np.ndarray] | None = None,
                  labels: tuple[str, str] = ("samples", "reference")) -> str:
    """Plain-text table: mean +- std per set, and OA / KL when a second set is given."""
    header = f"{'metric':<24}{labels[0]:>20}"
    if metrics_b is not None:
        header += f"{labels[1]:>20}{'OA':>8}{'KL':>9}"
    lines = [header, "-" * len(header)]
    cmp = compare_sets(metrics_a, metrics_b) if metrics_b is not None else None
    for name in METRICS:
        if name not in metrics_a:
            continue
        a = np.asarray(metrics_a[name], dtype=float)
        a = a[np.isfinite(a)]
        line = f"{name:<24}{_mean_std(a):>20}"
        if cmp is not None and name in cmp:
            b = np.asarray(metrics_b[name], dtype=float)  # type: ignore[index]
            line += f"{_mean_std(b[np.isfinite(b)]):>20}{cmp[name]['oa']:>8.3f}{cmp[name]['kl']:>9.3f}"
        lines.append(line)
    return "\n".join(lines)


def _mean_std(x: np.ndarray) -> str:
    return f"{x.mean():.3f} +- {x.std():.3f}" if x.size else "n/a"


def plot_distributions(metrics_a: Mapping[str, np.ndarray], metrics_b: Mapping[str, np.ndarray], path,
                       labels: tuple[str, str] = ("samples", "reference")) -> None:
    """One panel per metric: both sets' kernel densities (as used for OA / KL), saved to ``path``.

    Uses matplotlib's Agg canvas directly, so it needs no display and leaves pyplot's global
    state alone.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = [n for n in METRICS if n in metrics_a and n in metrics_b]
    cols = 4
    rows = max(1, math.ceil(len(names) / cols))
    fig = Figure(figsize=(4 * cols, 2.8 * rows))
    FigureCanvasAgg(fig)
    for i, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, i + 1)
        d = _densities(metrics_a[name], metrics_b[name])
        if d is None:
            ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes)
        else:
            grid, pa, pb = d
            ax.plot(grid, pa, label=labels[0])
            ax.plot(grid, pb, label=labels[1])
            ax.fill_between(grid, np.minimum(pa, pb), alpha=0.25, color="grey")
            ax.set_title(f"{name}  OA={_trapezoid(np.minimum(pa, pb), grid):.2f}", fontsize=9)
        ax.tick_params(labelsize=7)
        if i == 0:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
