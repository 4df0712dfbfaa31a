"""`melodylm demo`: its training recipe on a budget of seconds, the real-tune range check, and the
whole demo end to end on the corpus slice (the real budget is minutes on the full corpus)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from melodylm import checkpoint as ckpts
from melodylm.demo import demo_train_config, metric_ranges, run_demo
from melodylm.errors import UserError
from melodylm.melody_sets import MelodyItem
from melodylm.train import lr_at, time_budgeted, train

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.mark.slow
def test_demo_recipe_trains_on_the_clock(tiny_dataset, tmp_path):
    cfg = demo_train_config(tiny_dataset, tmp_path / "run", train_seconds=4, seed=0)
    # the schedule is a function of the elapsed share of the budget, not of a step count
    assert time_budgeted(cfg)
    assert lr_at(0, cfg, elapsed=cfg.max_time) == pytest.approx(cfg.learning_rate * cfg.min_lr_ratio)
    assert lr_at(0, cfg, elapsed=cfg.max_time * 0.5) < cfg.learning_rate
    summary = train(cfg, force=True, progress=False)
    assert summary["steps"] >= 1 and summary["stopped"] == "max_time"
    last = ckpts.load_checkpoint(tmp_path / "run" / "last.pt")
    saved = ckpts.train_config(last)
    assert saved["arch"] == cfg.arch and saved["lr_decay_steps"] == 0 and saved["max_time"] == 4
    assert ckpts.model_config(last)["n_layer"] == cfg.model["n_layer"]
    # the learning rate the run ended on is the clock's (on a step schedule, step n of a
    # 100-step warmup would still be warming up, the demo's first runs' failure on busy cores)
    elapsed = ckpts.trainer_state(last)["elapsed"]
    assert 0 < elapsed <= summary["seconds"]
    assert lr_at(summary["steps"], cfg, elapsed) == pytest.approx(lr_at(0, cfg, elapsed))
    assert lr_at(summary["steps"], cfg, elapsed) != pytest.approx(lr_at(summary["steps"], cfg, 0.0))
    assert math.isfinite(summary["train_loss"]) and math.isfinite(summary["best_val_loss"])

def _item(gap: float, n: int = 16) -> MelodyItem:
    """n quarter notes of 1 - gap beats, one per beat: rest ratio ~gap, 4 notes a bar in 4/4."""
    notes = np.array([[i, 1.0 - gap, 60 + i % 5] for i in range(n)], dtype=float)
    return MelodyItem(name=f"gap{gap}", notes=notes, beats_per_bar=4.0)


@pytest.mark.parametrize("sample_gaps, inside", [
    ((0.1, 0.2), True),   # mean rest ratio inside the real tunes' 5th-95th percentile
    ((0.6, 0.7), False),  # rests far beyond what real tunes have (the old demo's 69%)
    ((0.0, 0.0), False),  # no rests at all, while every real tune has some
])
def test_metric_ranges_says_whether_samples_rest_like_real_tunes(sample_gaps, inside):
    reference = [_item(g) for g in np.linspace(0.05, 0.3, 21)]
    ranges = metric_ranges([_item(g) for g in sample_gaps], reference)
    r = ranges["rest_ratio"]
    assert r["inside"] is inside
    assert len(r["samples"]) == len(sample_gaps)
    assert r["min"] <= r["low"] < r["high"] <= r["max"]
    # every item has 4 notes per bar: the samples sit at the reference's value exactly
    assert ranges["notes_per_bar"]["mean"] == pytest.approx(4.0) and ranges["notes_per_bar"]["inside"]


@pytest.mark.slow
def test_demo_runs_end_to_end_and_writes_the_report(corpus_slice, tmp_path):
    out = tmp_path / "demo"
    report = run_demo(out, train_seconds=3, n_samples=2, seed=0, progress=False, inputs=[str(corpus_slice)])
    text = report.read_text()
    for heading in ("## Held-out test split", "5-gram Kneser-Ney", "on test bits/note", "LSTM 1 x 256",
                    "## BLEU against the training split", "## Copy detection", "## Music metrics",
                    "| rest_ratio |", "| notes_per_bar |", "tensorboard --logdir", "load average"):
        assert heading in text, heading
    # the pictures the report links exist, and the samples decode to MIDI with their sidecars
    pngs = sorted((out / "samples").glob("*.png"))
    assert len(pngs) == 2 and all(f"samples/{p.name}" in text for p in pngs)
    for side in sorted((out / "samples").glob("*.json")):
        meta = json.loads(side.read_text())
        assert meta["invalid_tokens"] == 0
    assert (out / "run" / "best.pt").exists() and list((out / "run" / "tb").iterdir())
    with pytest.raises(UserError, match="--force"):
        run_demo(out, train_seconds=2, n_samples=2, progress=False, inputs=[str(corpus_slice)])
