"""Reports on sets of melodies: BLEU beside baselines, verbatim copies, music statistics.

This is what ``melodylm bleu | copies | metrics`` and the demo call::

    MIDI files / DATA_DIR:split ──load_set──> MelodySet of MelodyItem (notes in beats, base tokens)
        ──> bleu_report      (metrics.bleu: corpus BLEU, human / random / self-BLEU baselines)
        ──> copy_report      (metrics.copy: longest verbatim run of each sample in the reference)
        ──> metrics_report   (metrics.music: melodic statistics, overlap of the distributions)

Sets are loaded by :mod:`melodylm.melody_sets` (a MIDI file or folder, or ``DATA_DIR:split``;
a sample's prompt is dropped using its sidecar); its names used here are re-exported.

BLEU of melodies against a large reference set saturates: BLEU-4 of real held-out folk tunes
against other tunes of the collection was 0.95 at 500 references, 0.98 at 2,000 and 0.99 at
8,000. So a BLEU number means little alone: :func:`bleu_report` puts it beside real held-out
melodies and random sequences cut to the same lengths, under the same reference and weights,
and the samples' self-BLEU.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from melodylm.errors import UserError
from melodylm.melody_sets import MelodyItem, MelodySet, Spec, file_position, load_pair, load_set, newest_samples

__all__ = [
    "COPY_UNITS",
    "MelodyItem",
    "MelodySet",
    "UNITS",
    "bleu_and_copies",
    "bleu_report",
    "check_bleu_options",
    "copy_items",
    "copy_report",
    "load_pair",
    "load_set",
    "metrics_report",
    "newest_samples",
    "sequences",
]

UNITS = ("token", "pitch", "interval")  # what BLEU counts n-grams of
COPY_UNITS = ("note", "interval")  # what a verbatim copy is made of
# Durations are compared on a grid of 1/48 beat (32nds and triplets exact), so that two files
# of different resolutions give the same items for the same notes.
_DURATION_GRID = 48


# --------------------------------------------------------------------------------------------
# BLEU.

def sequences(items: Sequence[MelodyItem], unit: str) -> list[list[int]]:
    """The sequence each melody contributes to BLEU: base tokens, pitches, or pitch intervals."""
    if unit not in UNITS:
        raise UserError(f"--unit {unit!r}: choose one of {', '.join(UNITS)}")
    if unit == "token":
        return [np.asarray(it.tokens, dtype=np.int64).tolist() for it in items]
    pitches = [np.asarray(it.notes[:, 2], dtype=np.int64) for it in items]
    if unit == "pitch":
        return [p.tolist() for p in pitches]
    return [np.diff(p).tolist() for p in pitches]


def _weights(weights: str | Sequence[float]) -> tuple[tuple[float, ...], str | None]:
    from melodylm.metrics.bleu import parse_weights

    if isinstance(weights, str):
        return parse_weights(weights)
    return parse_weights(",".join(repr(float(w)) for w in weights))


def _smoothing(smoothing: int):
    from nltk.translate.bleu_score import SmoothingFunction

    if isinstance(smoothing, bool) or not isinstance(smoothing, (int, np.integer)) or not 0 <= smoothing <= 7:
        raise UserError(f"--smoothing {smoothing!r}: choose an nltk smoothing method 0..7 (0 = none)")
    return None if smoothing == 0 else getattr(SmoothingFunction(), f"method{int(smoothing)}")


def check_bleu_options(weights: str | Sequence[float], smoothing: int, unit: str
                       ) -> tuple[tuple[float, ...], str | None]:
    """Check BLEU options before any loading; returns (weights, normalisation note or None).

    Raises:
        UserError: bad weights (negative, none positive, unreadable), smoothing not in 0..7, or
            an unknown unit; the message names the flag.
    """
    w, note = _weights(weights)
    _smoothing(smoothing)
    if unit not in UNITS:
        raise UserError(f"--unit {unit!r}: choose one of {', '.join(UNITS)}")
    return w, note


def bleu_report(samples: Spec, reference: Spec, weights: str | Sequence[float] = "custom", smoothing: int = 0,
                unit: str = "token", per_sample: bool = False, human: Spec | None = None, seed: int = 0,
                melody: str = "auto") -> dict:
    """Corpus BLEU of the samples against a reference set, with baselines under the same setting.

    Args:
        samples, reference: specs or loaded sets (see :func:`load_set`); typically the samples
            folder and ``DATA_DIR:train``.
        weights: ``custom`` (0,1/12,1/12,1/6,1/6,1/6,1/6,1/12,1/12 over 1- to 9-grams), ``bleu4``,
            ``uniform:N``, a comma-separated list, or a sequence of numbers.
        smoothing: nltk smoothing method 0..7 (0 = none).
        unit: ``token`` (base tokens of the reference's tokenizer), ``pitch``, or ``interval``
            (consecutive pitch differences: transposition-invariant).
        per_sample: add every sample's sentence BLEU.
        human: real melodies for the human baseline; default the held-out split of the
            reference dataset (its test split for ``DATA_DIR:train``); ``"none"`` for no baseline.
        seed: seed of the random baseline and of the choice of human melodies.

    Returns:
        ``bleu``; ``baselines`` ``{"human", "random"}`` (human is None without held-out melodies);
        ``self_bleu`` (each sample against the others; None for one sample); ``signature``;
        ``n_samples``; ``n_references``; ``weights``; ``note`` (what was normalised, or None);
        ``unit``, ``smoothing``, ``seed``, ``human_source``, ``skipped``; with ``per_sample``
        a list of ``{"name", "bleu"}``.

    The human baseline takes as many held-out melodies as there are samples and cuts each to a
    sample's length; the random one draws sequences of the samples' lengths from a bigram chain
    fitted on the reference (:func:`melodylm.metrics.bleu.baselines.random_like`). BLEU rises with
    length and with the reference size, which is why both baselines copy the samples' lengths
    and share the reference.
    """
    from melodylm.metrics.bleu import BleuReference, bleu_signature, matched_lengths, random_like, self_bleu

    w, note = check_bleu_options(weights, smoothing, unit)
    smooth_fn = _smoothing(smoothing)
    smp, ref = load_pair(samples, reference, melody, unit == "token")
    hyps, refs = sequences(smp, unit), sequences(ref, unit)
    lengths = [len(h) for h in hyps]
    n_orders = max(len(w), 5) if smoothing in (5, 7) else len(w)
    table = BleuReference(refs, max_n=n_orders)

    human_spec = ref.held_out if human is None else (None if str(human).lower() == "none" else human)
    human_set = None
    if human_spec is not None:
        human_set = load_set(human_spec, ref.tokenizer if unit == "token" else None, melody)
        if not human_set:
            raise UserError(f"{human_set.source}: no melody for the human baseline")
    with warnings.catch_warnings():
        # nltk's method0 warns for every zero n-gram count; with 9-gram weights that is normal.
        warnings.simplefilter("ignore")
        bleu = float(table.corpus_bleu(hyps, w, smooth_fn))
        human_bleu = None
        if human_set is not None:
            human_seqs = matched_lengths(sequences(human_set, unit), lengths, seed)
            human_bleu = float(table.corpus_bleu(human_seqs, w, smooth_fn))
        random_bleu = float(table.corpus_bleu(random_like(refs, lengths, seed=seed), w, smooth_fn))
        selfb = float(self_bleu(hyps, w, smooth_fn)) if len(hyps) > 1 else None
        per = table.sentence_scores(hyps, w, smooth_fn) if per_sample else None
    out: dict[str, Any] = {
        "bleu": bleu,
        "baselines": {"human": human_bleu, "random": random_bleu},
        "self_bleu": selfb,
        "signature": bleu_signature(w, int(smoothing), unit, table.fingerprint, len(refs)) + f"|seed:{seed}",
        "n_samples": len(hyps),
        "n_references": len(refs),
        "weights": list(w),
        "note": note,
        "unit": unit,
        "smoothing": int(smoothing),
        "seed": seed,
        "samples": smp.source,
        "reference": ref.source,
        "human_source": human_set.source if human_set is not None else None,
        "skipped": [{"name": n, "reason": r} for n, r in smp.skipped],
    }
    if per is not None:
        out["per_sample"] = [{"name": it.name, "bleu": float(s)} for it, s in zip(smp, per)]
    return out


# --------------------------------------------------------------------------------------------
# Copies.

def copy_items(item: MelodyItem, unit: str) -> list[tuple[int, int]]:
    """What a copy is made of: (pitch, duration) per note, or (interval, duration) per later note.

    Durations are counted in 1/48 beat.
    """
    pitch = np.asarray(item.notes[:, 2], dtype=np.int64)
    dur = np.rint(np.asarray(item.notes[:, 1], dtype=float) * _DURATION_GRID).astype(np.int64)
    if unit == "note":
        return list(zip(pitch.tolist(), dur.tolist()))
    if unit == "interval":
        return list(zip(np.diff(pitch).tolist(), dur[1:].tolist()))
    raise UserError(f"--unit {unit!r}: choose one of {', '.join(COPY_UNITS)}")


def copy_report(samples: Spec, reference: Spec, min_notes: int = 16, unit: str = "note",
                melody: str = "auto") -> dict:
    """The longest verbatim run of each sample found in one reference melody.

    A run is consecutive notes with the same (pitch, duration) (``unit="note"``), or the same
    (interval from the previous note, duration) (``unit="interval"``: a transposed copy counts).
    Lengths are in notes either way (k intervals span k + 1 notes).

    Returns:
        ``unit``, ``min_notes``, ``n_samples``, ``n_references``; ``n_copied`` and
        ``copied_share``: samples with a run of at least ``min_notes`` notes; ``median_notes``;
        ``longest``: the longest run overall (or None); ``per_sample``: per sample ``{"name",
        "notes" (run length), "sample_notes", "sample_note", "sample_beat", "reference",
        "reference_note", "reference_beat", "sample_at", "reference_at"}`` (where the run starts
        on each side: note and beat counted from the continuation's bar for a sample with a kept
        prompt, ``*_at`` in the file's own notes, bars and beats (:func:`file_position`);
        reference fields are None without a run).
    """
    from melodylm.metrics.copy import CopyIndex

    if unit not in COPY_UNITS:
        raise UserError(f"--unit {unit!r}: choose one of {', '.join(COPY_UNITS)}")
    if isinstance(min_notes, bool) or int(min_notes) != min_notes or min_notes < 1:
        raise UserError(f"--min-notes {min_notes!r}: must be a whole number of notes, at least 1")
    smp, ref = load_pair(samples, reference, melody, need_tokens=False)
    index = CopyIndex([copy_items(it, unit) for it in ref])
    matches = index.longest_matches([copy_items(it, unit) for it in smp])
    extra = 1 if unit == "interval" else 0
    rows = []
    for it, m in zip(smp, matches):
        found = m.length > 0
        r = ref[m.tune] if found else None
        rows.append({
            "name": it.name,
            "notes": m.length + extra if found else 0,
            "sample_notes": len(it.notes),
            "sample_note": m.sample_offset if found else None,
            "sample_beat": float(it.notes[m.sample_offset, 0]) if found else None,
            "reference": r.name if r is not None else None,
            "reference_note": m.train_offset if found else None,
            "reference_beat": float(r.notes[m.train_offset, 0]) if r is not None else None,
            "sample_at": file_position(it, m.sample_offset) if found else None,
            "reference_at": file_position(r, m.train_offset) if r is not None else None,
        })
    lengths = [row["notes"] for row in rows]
    n_copied = sum(x >= min_notes for x in lengths)
    longest = max(rows, key=lambda row: row["notes"]) if rows else None
    return {
        "unit": unit,
        "min_notes": int(min_notes),
        "n_samples": len(rows),
        "n_references": len(ref),
        "n_copied": n_copied,
        "copied_share": n_copied / len(rows) if rows else 0.0,
        "median_notes": float(np.median(lengths)) if rows else 0.0,
        "longest": longest if longest is not None and longest["notes"] > 0 else None,
        "per_sample": rows,
        "samples": smp.source,
        "reference": ref.source,
        "skipped": [{"name": n, "reason": r} for n, r in smp.skipped],
    }


def bleu_and_copies(samples: Spec | None, reference: Spec, min_notes: int = 16, **bleu_options) -> dict:
    """``melodylm bleu``: :func:`bleu_report` of the samples (default: :func:`newest_samples`) with
    the :func:`copy_report` of the same two sets under ``"copies"`` (its per-sample rows become
    ``copy_notes`` in ``per_sample``). Both read the melodies once.
    """
    check_bleu_options(bleu_options.get("weights", "custom"), bleu_options.get("smoothing", 0),
                       bleu_options.get("unit", "token"))
    melody = bleu_options.get("melody", "auto")
    smp, ref = load_pair(samples or str(newest_samples()), reference, melody,
                         need_tokens=bleu_options.get("unit", "token") == "token")
    r = bleu_report(smp, ref, **bleu_options)
    c = copy_report(smp, ref, min_notes=min_notes, melody=melody)
    if "per_sample" in r:
        r["per_sample"] = [row | {"copy_notes": cp["notes"]} for row, cp in zip(r["per_sample"], c["per_sample"])]
    return r | {"copies": {k: v for k, v in c.items() if k != "per_sample"}}


# --------------------------------------------------------------------------------------------
# Music statistics.

def _set_values(items: Sequence[MelodyItem]) -> dict[str, np.ndarray]:
    from melodylm.metrics.music import METRICS, melody_metrics

    rows = [melody_metrics(it.notes, it.beats_per_bar) for it in items]
    return {name: np.array([r[name] for r in rows], dtype=float) for name in METRICS}


def _finite(x: float) -> float | None:
    """A JSON-safe number: NaN and infinities become None."""
    return float(x) if x is not None and math.isfinite(x) else None


def _summary(values: dict[str, np.ndarray]) -> dict[str, dict]:
    out = {}
    for name, v in values.items():
        v = v[np.isfinite(v)]
        out[name] = {"mean": _finite(v.mean()) if v.size else None, "std": _finite(v.std()) if v.size else None,
                     "n": int(v.size)}
    return out


def metrics_report(samples: Spec, reference: Spec | None = None, plot: str | Path | None = None,
                   melody: str = "auto") -> dict:
    """Melodic and tonal statistics of the samples, and how their distributions differ from a reference.

    Args:
        samples, reference: specs or loaded sets (see :func:`load_set`); no reference gives the
            samples' statistics alone.
        plot: PNG path for the two sets' distributions side by side (needs a reference).

    Returns:
        ``n_samples``, ``n_references``; ``samples`` and ``reference``: per metric ``{"mean",
        "std", "n"}``; ``comparison``: per metric ``{"oa", "kl"}`` (overlapping area, 1 = same
        distribution; KL(samples || reference) in nats; None where undefined) or None;
        ``table``: the text table; ``plot``: the PNG written, or None. See
        :mod:`melodylm.metrics.music` for the metrics.
    """
    from melodylm.metrics.music import compare_sets, plot_distributions, summary_table

    if plot is not None and reference is None:
        raise UserError("--plot needs a reference set to compare with (--reference)")
    smp = load_set(samples, None, melody)
    if not smp:
        why = "; ".join(f"{n}: {r}" for n, r in smp.skipped[:3])
        raise UserError(f"{smp.source}: no usable melody among the samples" + (f" ({why})" if why else ""))
    ref = load_set(reference, None, melody) if reference is not None else None
    if ref is not None and not ref:
        raise UserError(f"{ref.source}: the reference holds no melody")
    a = _set_values(smp)
    b = _set_values(ref) if ref is not None else None
    comparison = None
    if b is not None:
        comparison = {name: {"oa": _finite(c["oa"]), "kl": _finite(c["kl"])}
                      for name, c in compare_sets(a, b).items()}
    if plot is not None:
        plot = Path(plot)
        try:
            plot.parent.mkdir(parents=True, exist_ok=True)
            plot_distributions(a, b, plot)
        except OSError as e:
            raise UserError(f"--plot {plot}: cannot write ({e.strerror or e})") from None
    return {
        "n_samples": len(smp),
        "n_references": len(ref) if ref is not None else 0,
        "samples": _summary(a),
        "reference": _summary(b) if b is not None else None,
        "comparison": comparison,
        "table": summary_table(a, b),
        "plot": str(plot) if plot is not None else None,
        "samples_source": smp.source,
        "reference_source": ref.source if ref is not None else None,
        "skipped": [{"name": n, "reason": r} for n, r in smp.skipped],
    }
