"""`melodylm tokenize` and `melodylm detokenize` from the command line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, Part, write_midi
from melodylm.cli import main


@pytest.fixture(scope="module")
def inputs(corpus_slice, tmp_path_factory) -> Path:
    """Eight corpus tunes and one file of each bad kind."""
    src = tmp_path_factory.mktemp("cli_in")
    for f in sorted(corpus_slice.glob("*.mid"))[:8]:
        shutil.copy(f, src / f.name)
    (src / "empty.mid").write_bytes(b"")
    (src / "notes.mid").write_text("a text file with a .mid name\n")
    (src / "cut.mid").write_bytes((src / f.name).read_bytes()[:50])
    write_midi(src / "kit.mid", [Part([(0, 1, 36), (1, 1, 38)], is_drum=True)])
    return src


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_tokenize_reports_counts_and_json_summary(inputs, tmp_path, capsys):
    code, out, err = run_cli(capsys, "tokenize", str(inputs), "-o", str(tmp_path / "d"), "--json", "--no-progress",
                             "--workers", "1", "--split", "0.6,0.2,0.2")
    assert code == 0
    summary = json.loads(out)
    assert {"files", "ok", "skipped", "failed", "tokens"} <= set(summary)
    assert (summary["files"], summary["ok"], summary["skipped"], summary["failed"]) == (12, 8, 1, 3)
    assert set(summary["tokens"]) == {"train", "val", "test"} and summary["tokens"]["train"] > 0
    stats = json.loads((tmp_path / "d" / "stats.json").read_text())
    assert summary["tokens"] == stats["tokens"]
    assert "12 files: 8 ok, 1 skipped, 3 failed" in err
    assert "drums only" in err and "empty file" in err and "corrupt MIDI" in err


def test_max_notes_skips_long_melodies(inputs, tmp_path, capsys):
    src = tmp_path / "in"
    shutil.copytree(inputs, src)
    write_midi(src / "endless.mid", [Part([(i * 0.25, 0.25, 60 + i % 7) for i in range(3000)], name="m")])
    code, out, err = run_cli(capsys, "tokenize", str(src), "-o", str(tmp_path / "d"), "--json", "--no-progress",
                             "--max-notes", "2000", "--workers", "2")
    assert code == 0
    assert (json.loads(out)["ok"], json.loads(out)["skipped"]) == (8, 2)
    assert "13 files: 8 ok, 2 skipped, 3 failed" in err and "1 too many notes" in err
    rows = {Path(r["path"]).name: r for r in map(json.loads, open(tmp_path / "d" / "manifest.jsonl"))}
    assert rows["endless.mid"]["reason"] == "too many notes: 3000 in the melody (limit --max-notes 2000)"
    # when no file is usable the run ends with one line, and no dataset folder
    code, out, err = run_cli(capsys, "tokenize", str(src), "-o", str(tmp_path / "e"), "--no-progress",
                             "--max-notes", "5", "--workers", "1")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("melodylm: error: no usable tune among 13 file(s) (")
    assert "9 too many notes" in err
    assert not (tmp_path / "e").exists()


def test_missing_input_is_one_line_exit_2(tmp_path, capsys):
    code, out, err = run_cli(capsys, "tokenize", str(tmp_path / "missing"), "-o", str(tmp_path / "d"))
    assert code == 2 and out == ""
    assert err == f"melodylm: error: input {str(tmp_path / 'missing')!r} does not exist\n"


def test_unwritable_output_is_one_line_exit_2(inputs, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code, _, err = run_cli(capsys, "tokenize", str(inputs), "-o", str(blocker / "d"), "--no-progress")
    assert code == 2 and err.count("\n") == 1 and "cannot write" in err
    code, _, err = run_cli(capsys, "tokenize", str(inputs), "-o", str(blocker), "--no-progress")
    assert code == 2 and err.count("\n") == 1 and "not a folder" in err


def test_existing_output_needs_force(inputs, tmp_path, capsys):
    out = tmp_path / "d"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, _, err = run_cli(capsys, "tokenize", str(inputs), "-o", str(out), "--no-progress", "--workers", "1")
    assert code == 2 and "--force" in err and err.count("\n") == 1
    assert (out / "keep.txt").read_text() == "mine"
    code, _, _ = run_cli(capsys, "tokenize", str(inputs), "-o", str(out), "--no-progress", "--workers", "1", "--force")
    assert code == 0 and (out / "COMPLETE").exists() and not (out / "keep.txt").exists()


@pytest.mark.parametrize("flag, value", [("--split", "0.9,0.1"), ("--transpose", "3"), ("--scheme", "Octuple"),
                                         ("--melody", "loudest"), ("--workers", "-2"), ("--subword", "bytes")])
def test_bad_flags_are_one_line_exit_2(tmp_path, capsys, flag, value):
    code, _, err = run_cli(capsys, "tokenize", "-o", str(tmp_path / "d"), flag, value)
    assert code == 2 and err.count("\n") == 1 and flag in err


def test_detokenize_writes_a_valid_midi(tiny_dataset, tmp_path, capsys):
    import symusic

    from melodylm.dataset import Dataset

    out = tmp_path / "tune.mid"
    code, _, err = run_cli(capsys, "detokenize", str(tiny_dataset), "--split", "test", "--index", "1", "-o", str(out))
    assert code == 0 and f"wrote {out}" in err
    assert out.read_bytes()[:4] == b"MThd"
    score = symusic.Score(str(out))
    ds = Dataset(tiny_dataset)
    assert len(score.tracks[0].notes) == ds.split("test").index["n_notes"][1] > 0
    code, _, err = run_cli(capsys, "detokenize", str(tiny_dataset), "--index", "100000", "-o", str(out))
    assert code == 2 and "out of range" in err
    code, _, err = run_cli(capsys, "detokenize", str(tmp_path / "none"), "-o", str(out))
    assert code == 2 and "not found" in err


def test_real_process_exit_code_and_no_traceback(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "melodylm", "tokenize", str(tmp_path / "nowhere"), "-o",
                           str(tmp_path / "d")], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [f"melodylm: error: input {str(tmp_path / 'nowhere')!r} does not exist"]
    assert "Traceback" not in proc.stderr


def test_a_small_collection_warns_about_each_empty_split(tmp_path, capsys):
    """12 files at the default 0.9/0.05/0.05: val and test are each empty about half the time."""
    src = tmp_path / "pop"
    for i in range(12):  # twelve different tunes (their split follows their notes)
        write_midi(src / f"song{i:02d}.mid", [Part([(j * 0.5, 0.5, 60 + (i * 7 + j * (i + 1)) % 24)
                                                    for j in range(16)], name="lead")])
    code, out, err = run_cli(capsys, "tokenize", str(src), "-o", str(tmp_path / "d"), "--no-progress",
                             "--workers", "1", "--json")
    assert code == 0
    tunes = json.loads(out)["tunes"]
    empty = [s for s in ("val", "test") if tunes[s] == 0]
    assert empty, tunes  # this collection leaves at least one split empty at seed 0
    warnings = [line for line in err.splitlines() if line.startswith("melodylm: warning:")]
    assert len(warnings) == 1
    assert all(f"the {' and '.join(empty)} split" in w for w in warnings)
    assert "--split" in warnings[0] and "add more files" in warnings[0]
    # a split asked to be empty is not warned about
    code, _, err = run_cli(capsys, "tokenize", str(src), "-o", str(tmp_path / "e"), "--no-progress",
                           "--workers", "1", "--split", "1,0,0")
    assert code == 0 and "warning" not in err


def test_a_folder_of_abc_files_points_to_corpus_import(tmp_path, capsys):
    src = tmp_path / "tunes"
    src.mkdir()
    (src / "reels.abc").write_text("X:1\nT:One\nM:4/4\nL:1/8\nK:G\nGABc dedB|\n\nX:2\nT:Two\nK:D\nDEFG A2|\n")
    code, out, err = run_cli(capsys, "tokenize", str(src), "-o", str(tmp_path / "d"), "--no-progress")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "1 score file(s) (abc)" in err and f"`melodylm corpus import {src} -o corpora/NAME`" in err
    code, _, err = run_cli(capsys, "tokenize", str(src / "reels.abc"), "-o", str(tmp_path / "d"), "--no-progress")
    assert code == 2 and "melodylm corpus import" in err
    assert not (tmp_path / "d").exists()
