"""`melodylm bleu | copies | metrics`: defaults, --json, exit codes (run in-process)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from melodylm.cli import main
from melodylm.dataset import Dataset


@pytest.fixture(scope="module")
def workdir(tiny_dataset, tmp_path_factory) -> Path:
    """A project folder: data/default -> the tiny dataset, samples/<two runs> of real tunes + sidecars."""
    root = tmp_path_factory.mktemp("project")
    (root / "data").mkdir()
    os.symlink(tiny_dataset, root / "data" / "default")
    ds = Dataset(tiny_dataset)
    for run, split in (("old-run", "val"), ("new-run", "test")):
        out = root / "samples" / run
        for i in range(min(4, len(ds.split(split)))):
            mid = ds.detokenize(split, i, out / f"sample_{i:03d}.mid")
            mid.with_suffix(".json").write_text(json.dumps({"continuation_start_beat": 0}))
    # the training tune 0 as a sample of the newer run: a planted copy
    ds.detokenize("train", 0, root / "samples" / "new-run" / "sample_copy.mid")
    for f in (root / "samples" / "old-run").glob("*.mid"):
        os.utime(f, (1e9, 1e9))
    return root


def _run(capsys, *argv) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_bleu_defaults_newest_samples_and_default_dataset(workdir, capsys, monkeypatch):
    monkeypatch.chdir(workdir)
    rc, out, err = _run(capsys, "bleu", "--weights", "custom", "--json")
    assert rc == 0, err
    r = json.loads(out.strip().splitlines()[-1])
    assert set(r) >= {"bleu", "baselines", "self_bleu", "signature", "copies"}
    assert set(r["baselines"]) == {"human", "random"}
    assert all(0 <= r[k] <= 1 for k in ("bleu", "self_bleu")) and r["baselines"]["human"] is not None
    assert r["n_samples"] == 5  # the newest run (new-run), not old-run
    copies = r["copies"]
    assert copies["n_copied"] >= 1 and copies["longest"]["name"] == "sample_copy"
    assert copies["longest"]["reference_note"] == 0 and copies["min_notes"] == 16
    assert "per_sample" not in r
    # human-readable report went to stderr, with the signature line
    assert "human" in err and "random" in err and "self-BLEU" in err and "signature: weights:" in err


def test_bleu_text_report_and_per_sample(workdir, capsys):
    samples = str(workdir / "samples" / "new-run")
    rc, out, _ = _run(capsys, "bleu", samples, "--reference", f"{workdir}/data/default:train",
                      "--unit", "interval", "--per-sample", "--min-copy", "8", "--weights", "1,1,1")
    assert rc == 0
    assert out.startswith("BLEU ") and "signature: weights:1/3,1/3,1/3|smooth:0|unit:interval" in out
    assert "note: --weights summed to 3" in out and "sample_copy: BLEU" in out and ">= 8 notes" in out
    rc, out, _ = _run(capsys, "bleu", samples, "--reference", f"{workdir}/data/default:train", "--per-sample", "--json")
    rows = json.loads(out.strip().splitlines()[-1])["per_sample"]
    assert len(rows) == 5 and {"name", "bleu", "copy_notes"} <= set(rows[0])


@pytest.mark.parametrize("argv, match", [
    (["bleu", "--weights", "0,0"], "--weights"),
    (["bleu", "--weights", "one,two"], "--weights"),
    (["bleu", "--smoothing", "9"], "--smoothing"),
    (["bleu", "--smoothing", "x"], "--smoothing"),
    (["bleu", "--unit", "bars"], "--unit"),
    (["bleu", "--min-copy", "0"], "--min-copy"),
    (["bleu", "--reference", "nowhere:train"], "nowhere not found"),
    (["copies", "--unit", "pitch"], "--unit"),
    (["metrics", "--plot", "x.png", "--reference", "none"], "--plot"),
])
def test_user_errors_exit_2_with_one_line(workdir, capsys, monkeypatch, argv, match):
    monkeypatch.chdir(workdir)
    rc, out, err = _run(capsys, *argv)
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and match in err


def test_no_samples_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for cmd in ("bleu", "copies", "metrics"):
        rc, _, err = _run(capsys, cmd)
        assert rc == 2 and "no samples found" in err
    (tmp_path / "empty").mkdir()
    rc, _, err = _run(capsys, "metrics", "empty", "--reference", "none")
    assert rc == 2 and "no MIDI files" in err


@pytest.mark.slow
def test_copies_and_metrics_json(workdir, capsys, monkeypatch):
    monkeypatch.chdir(workdir)
    rc, out, _ = _run(capsys, "copies", "samples/new-run", "--min-notes", "12", "--json")
    assert rc == 0
    c = json.loads(out.strip().splitlines()[-1])
    assert c["n_samples"] == 5 and c["min_notes"] == 12 and len(c["per_sample"]) == 5
    planted = next(row for row in c["per_sample"] if row["name"] == "sample_copy")
    assert planted["notes"] == planted["sample_notes"]
    rc, out, _ = _run(capsys, "copies", "samples/new-run")
    assert rc == 0 and "COPY sample_copy" in out

    rc, out, err = _run(capsys, "metrics", "samples/new-run", "--json", "--plot", "m.png")
    assert rc == 0, err
    m = json.loads(out.strip().splitlines()[-1])
    assert m["comparison"] and m["reference_source"].endswith("data/default:train")
    assert (workdir / "m.png").is_file() and "OA" in err
    rc, out, _ = _run(capsys, "metrics", "samples/new-run", "--reference", "none")
    assert rc == 0 and "OA" not in out and "pitch_range" in out


def test_copy_positions_are_in_the_files_own_bars_and_beats(workdir, capsys, tmp_path):
    """A copy after a 2-bar prompt is reported where it is in the file, not from the continuation's start."""
    import symusic

    from conftest import Part, write_midi
    from melodylm.midi import beats_per_bar, time_signature_at

    tune = symusic.Score(str(workdir / "samples" / "new-run" / "sample_copy.mid"))
    tpq = tune.ticks_per_quarter
    bpb = beats_per_bar(*time_signature_at(tune, 0))
    copied = [(n.time / tpq + 2 * bpb, n.duration / tpq, n.pitch) for n in tune.tracks[0].notes]
    prompt = [(i * bpb / 2, bpb / 2, 40 + i) for i in range(4)]  # two bars that match nothing
    out = tmp_path / "positions"
    write_midi(out / "sample_000.mid", [Part(prompt + copied)], time_signature=time_signature_at(tune, 0))
    (out / "sample_000.json").write_text(json.dumps({"continuation_start_beat": 2 * bpb}))
    ref = f"{workdir}/data/default:train"
    rc, stdout, _ = _run(capsys, "copies", str(out), "--reference", ref, "--json")
    assert rc == 0
    row = json.loads(stdout.strip().splitlines()[-1])["per_sample"][0]
    first = copied[0][0] - 2 * bpb  # the tune's first onset, in its own first bar or later
    bar, beat = int(first // bpb) + 1, first % bpb + 1
    assert row["reference_at"] == {"note": 0, "bar": bar, "beat": beat, "file_beat": first}
    assert row["sample_at"] == {"note": 4, "bar": bar + 2, "beat": beat, "file_beat": first + 2 * bpb}
    rc, text, _ = _run(capsys, "copies", str(out), "--reference", ref)
    assert f"sample_000: {len(copied)} of {len(copied)} notes from note 4, bar {bar + 2} beat {beat:g} = " in text
    assert "1/1 sample (100%)" in text and "(same pitch and duration)" in text and "(notes)" not in text
    # bleu reads the same flag name, and says "1 sample"
    rc, text, _ = _run(capsys, "bleu", str(out), "--reference", ref, "--min-notes", "4", "--human", "none")
    assert rc == 0 and "(1 sample from" in text and f"from note 4, bar {bar + 2} beat {beat:g}" in text
    assert ">= 4 notes" in text
