"""Output folders: refusals, staged builds swapped into place, sample folder names, replacing samples."""

from __future__ import annotations

import pytest

from melodylm.errors import UserError
from melodylm.outputs import (check_out_dir, clear_samples, default_samples_dir, publish_dir, replace_dir,
                              staging_dir)


def test_check_out_dir_refuses_a_file_and_a_busy_folder_without_force(tmp_path):
    assert check_out_dir(tmp_path / "new", force=False) is False
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(UserError, match="exists and is not a folder"):
        check_out_dir(tmp_path / "f.txt", force=True)
    with pytest.raises(UserError, match=r"is not empty \(use --force\)"):
        check_out_dir(tmp_path, force=False, fix="use --force")
    assert check_out_dir(tmp_path, force=True) is True
    assert (tmp_path / "f.txt").read_text() == "x"  # checking writes nothing


def test_a_staged_folder_replaces_the_old_one_only_when_published(tmp_path):
    out = tmp_path / "data"
    out.mkdir()
    (out / "old.txt").write_text("old")
    tmp = staging_dir(out)
    assert tmp.parent == tmp_path and tmp.name.startswith(".data.partial-") and not any(tmp.iterdir())
    (tmp / "new.txt").write_text("new")
    assert (out / "old.txt").exists()  # untouched until published
    publish_dir(tmp, out)
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_replace_dir_empties_only_with_force(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x").write_text("x")
    with pytest.raises(UserError, match="pass --force"):
        replace_dir(tmp_path / "d", force=False)
    assert not any(replace_dir(tmp_path / "d", force=True).iterdir())


def test_default_samples_dir_is_named_after_the_run_and_numbered_when_taken(tmp_path):
    run = tmp_path / "checkpoints" / "gpt-small"
    run.mkdir(parents=True)
    (run / "best.pt").write_bytes(b"")
    now = 1_700_000_000.0
    a = default_samples_dir(run / "best.pt", root=tmp_path / "samples", now=now)
    assert a.parent == tmp_path / "samples" and a.name.startswith("gpt-small-")
    assert default_samples_dir(run, root=tmp_path / "samples", now=now) == a  # a run folder names it the same
    a.mkdir(parents=True)
    assert default_samples_dir(run, root=tmp_path / "samples", now=now) == a.parent / f"{a.name}-1"


def test_clear_samples_removes_a_batch_and_keeps_other_files(tmp_path):
    for name in ("sample_000.mid", "sample_000.json", "sample_001.png", "sample_001.txt", "notes.mid", "sample_x.mid"):
        (tmp_path / name).write_text("")
    gone = clear_samples(tmp_path)
    assert sorted(p.name for p in gone) == ["sample_000.json", "sample_000.mid", "sample_001.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.mid", "sample_001.txt", "sample_x.mid"]
