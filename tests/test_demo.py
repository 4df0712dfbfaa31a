"""`melodylm demo` end to end, with a training budget of seconds (the real one is 4 minutes)."""

from __future__ import annotations

import json

import pytest

from melodylm.demo import run_demo
from melodylm.errors import UserError

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_demo_runs_end_to_end_and_writes_the_report(tmp_path):
    out = tmp_path / "demo"
    report = run_demo(out, train_seconds=2, n_samples=2, seed=0, progress=False)
    text = report.read_text()
    for heading in ("## Held-out test split", "5-gram Kneser-Ney", "## BLEU against the training split",
                    "## Copy detection", "## Music metrics", "tensorboard --logdir"):
        assert heading in text, heading
    # the pictures the report links exist, and the samples decode to MIDI with their sidecars
    pngs = sorted((out / "samples").glob("*.png"))
    assert len(pngs) == 2 and all(f"samples/{p.name}" in text for p in pngs)
    for side in sorted((out / "samples").glob("*.json")):
        meta = json.loads(side.read_text())
        assert meta["invalid_tokens"] == 0
    assert (out / "run" / "best.pt").exists() and list((out / "run" / "tb").iterdir())
    with pytest.raises(UserError, match="--force"):
        run_demo(out, train_seconds=2, n_samples=2, progress=False)
