"""melodylm.metrics.music: hand-computed values on tiny melodies, OA / KL sanity."""

from __future__ import annotations

import math

import numpy as np
import pytest

from melodylm.metrics import music
from melodylm.metrics.music import Note, melody_metrics

SCALE_RUN = [Note(0, 1, 60), Note(1, 1, 62), Note(2, 1, 64), Note(3, 1, 65), Note(4, 1, 67)]
WITH_RESTS = [(0, 0.5, 60), (1, 0.5, 61), (2, 1, 60), (4, 1, 72)]  # plain tuples work too


def _close(got: dict, expected: dict) -> None:
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=1e-12), name


def test_scale_run():
    _close(melody_metrics(SCALE_RUN), {
        "pitch_range": 7, "distinct_pitches": 5, "distinct_pitch_classes": 5,
        "pitch_class_entropy": math.log2(5), "scale_consistency": 1.0,
        "mean_abs_interval": (2 + 2 + 1 + 2) / 4, "stepwise_share": 1.0,
        "macroharmony": 5, "centricity": 1 / 5,  # fewer than 12 notes: one window of all
        "rest_ratio": 0.0, "notes_per_bar": 5 / 2,  # beats 0-5 touch bars 0 and 1
        "repetition_4": 0.0, "duration_entropy": 0.0,
    })


def test_rests_octaves_and_chromatic_notes():
    _close(melody_metrics(WITH_RESTS), {
        "pitch_range": 12, "distinct_pitches": 3, "distinct_pitch_classes": 2,  # 60 and 72: one class
        "pitch_class_entropy": -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25)),
        "scale_consistency": 1.0,  # C# major holds B# = C
        "mean_abs_interval": 14 / 3, "stepwise_share": 2 / 3,
        "macroharmony": 2, "centricity": 3 / 4,
        "rest_ratio": (0.5 + 0.5 + 1.0) / 5.0, "notes_per_bar": 4 / 2,
        "repetition_4": 0.0, "duration_entropy": 1.0,
    })
    chromatic = [(i, 1, p) for i, p in enumerate([60, 61, 62, 63])]
    assert melody_metrics(chromatic)["scale_consistency"] == 0.75  # no diatonic scale holds 4 semitones


def test_windows_count_pitch_classes_not_pitches():
    pitches = [60] * 6 + [62, 64, 65, 67, 69, 71, 72]  # 13 notes: two windows of 12
    m = melody_metrics([(i, 1, p) for i, p in enumerate(pitches)])
    assert m["distinct_pitches"] == 8 and m["distinct_pitch_classes"] == 7
    assert m["macroharmony"] == 7  # 7 classes in both windows (72 is C again)
    assert m["centricity"] == pytest.approx(6 / 12)  # C: 6 of 12 in each window
    assert m["notes_per_bar"] == 13 / 4


def test_repetition_and_overlaps():
    m = melody_metrics([(i, 1, p) for i, p in enumerate([60, 62, 64, 60, 62, 64, 60])])
    assert m["repetition_4"] == 2 / 4  # patterns (2,2,-4) twice, (2,-4,2) and (-4,2,2) once
    # A long note covering a short one leaves no gap; bars counted from the first onset's bar.
    m = melody_metrics([(4, 4, 60), (5, 1, 64), (8, 2, 67)])
    assert m["rest_ratio"] == 0.0 and m["notes_per_bar"] == 3 / 2


def test_empty_and_single_note():
    assert all(math.isnan(v) for v in melody_metrics([]).values())
    one = melody_metrics([(0, 2, 62)])
    assert one["pitch_range"] == 0 and one["macroharmony"] == 1 and one["centricity"] == 1
    assert math.isnan(one["mean_abs_interval"]) and math.isnan(one["repetition_4"])


def test_overlapping_area_and_kl():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, 2000)
    assert music.overlapping_area(a, a) == pytest.approx(1.0, abs=1e-9)
    assert music.kl_divergence(a, a) == pytest.approx(0.0, abs=1e-9)
    far = rng.normal(100, 1, 500)
    assert music.overlapping_area(a, far) < 1e-6
    assert music.kl_divergence(a, far) > 10
    b = rng.normal(1, 1, 2000)
    # Normal(0,1) vs Normal(1,1): OA = 2 * Phi(-1/2) = 0.617 and KL = 0.5. The KDE estimate of
    # KL is noisy in the tails (0.47-0.61 over seeds at n = 2000), hence the wider bounds.
    assert music.overlapping_area(a, b) == pytest.approx(2 * 0.5 * math.erfc(0.5 / math.sqrt(2)), abs=0.05)
    assert 0.35 < music.kl_divergence(a, b) < 0.8
    assert music.overlapping_area(a, b) == pytest.approx(music.overlapping_area(b, a), abs=1e-9)
    # Constant sets have no spread for Scott's rule: still 1 when equal, ~0 when apart.
    assert music.overlapping_area([3, 3, 3], [3, 3]) == pytest.approx(1.0, abs=1e-9)
    assert music.overlapping_area([3] * 5, [7] * 5) < 1e-6
    assert math.isnan(music.overlapping_area([], [1.0]))


def test_kde_and_scott_bandwidth():
    x = np.array([0.0, 2.0])
    grid = np.linspace(-6, 8, 4001)
    expected = sum(np.exp(-0.5 * ((grid - xi) / 0.5) ** 2) for xi in x) / (2 * 0.5 * math.sqrt(2 * math.pi))
    assert np.allclose(music.kde(x, grid, 0.5), expected, atol=1e-9)
    values = np.array([1.0, 2.0, 4.0, 7.0])
    assert music._bandwidth(values, 99.0) == pytest.approx(np.std(values, ddof=1) * 4 ** -0.2)
    assert music._bandwidth(np.array([5.0, 5.0]), 99.0) == 99.0


@pytest.mark.slow
def test_set_comparison_table_and_plot(tmp_path):
    melodies = [SCALE_RUN, WITH_RESTS, [(i, 1, 60 + (i * 7) % 12) for i in range(16)], []]
    ma = music.set_metrics(melodies)
    assert set(ma) == set(music.METRICS) and ma["pitch_range"].shape == (4,)
    same = music.compare_sets(ma, ma)
    assert all(v["oa"] == pytest.approx(1.0, abs=1e-9) for v in same.values())
    shifted = {k: v + 50 for k, v in ma.items()}
    assert all(v["oa"] < 1e-3 for v in music.compare_sets(ma, shifted).values())
    table = music.summary_table(ma, shifted, labels=("model", "corpus"))
    assert "model" in table and "corpus" in table and "OA" in table
    assert len(table.splitlines()) == 2 + len(music.METRICS)
    path = tmp_path / "metrics.png"
    music.plot_distributions(ma, shifted, path, labels=("model", "corpus"))
    assert path.stat().st_size > 10_000
