"""Interruptions: Ctrl-C, ``kill -9`` (also in the middle of a checkpoint write) and a full disk.

The first two run ``python -m melodylm train`` as a real subprocess; after each interruption the
newest complete checkpoint must load and ``--resume`` must carry on from it.
"""

from __future__ import annotations

import errno
import io
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from melodylm.checkpoint import load_checkpoint
from melodylm.cli import main
from melodylm.errors import CheckpointError
from melodylm.train import TrainConfig, train
from conftest import default_sigint

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals"),
              pytest.mark.usefixtures("torch_one_thread")]


def train_argv(data: Path, out: Path, max_steps: int, *extra: str, decay_steps: int | None = None) -> list[str]:
    # eval_interval 1: a checkpoint after every step, so kills often land in a write. A resumed
    # run must ask for the schedule it started with (resume refuses another), hence decay_steps.
    return ["train", str(data), "-o", str(out), "--arch", "gpt", "--size", "tiny", "--batch-size", "4",
            "--max-steps", str(max_steps), "--eval-interval", "1", "--device", "cpu", "--no-progress",
            "--seed", "3", "--set", "eval_batches=1", "--set", "sample_tokens=0", "--set", "warmup_steps=2",
            "--set", f"lr_decay_steps={decay_steps or max_steps}", "--set", "dropout=0.2", *extra]


def start(argv: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop("RANK", None)
    return subprocess.Popen([sys.executable, "-m", "melodylm", *argv], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)



def wait_for(pred, proc: subprocess.Popen, timeout: float = 120.0, poll: float = 0.002) -> None:
    t0 = time.time()
    while not pred():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"training ended early ({proc.returncode}): {err[-2000:]}")
        if time.time() - t0 > timeout:
            proc.kill()
            pytest.fail("timed out waiting for the training subprocess")
        time.sleep(poll)


def temp_files(out: Path) -> list[Path]:
    return sorted(out.glob(".*.tmp-*"))


def weights_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_ctrl_c_saves_and_resume_continues_exactly(tiny_dataset, tmp_path, capsys):
    out, total = tmp_path / "run", 400
    proc = start(train_argv(tiny_dataset, out, total))
    wait_for(lambda: (out / "last.pt").exists(), proc)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "--resume" in err and str(out) in err
    ckpt = load_checkpoint(out / "last.pt")
    stopped = ckpt["step"]
    assert 1 <= stopped < total
    assert f"interrupted at step {stopped}" in err
    assert not temp_files(out)

    # resume to a nearby target, in-process, then compare with one uninterrupted run of the same length
    target = min(total, stopped + 3)
    assert main(train_argv(tiny_dataset, out, target, "--resume", decay_steps=total)) == 0
    capsys.readouterr()
    resumed = load_checkpoint(out / "last.pt")
    assert resumed["step"] == target
    assert [h["step"] for h in resumed["trainer"]["history"]] == list(range(1, target + 1))
    # the uninterrupted reference must share the schedule of the interrupted run (lr_decay_steps=total)
    ref = tmp_path / "ref"
    assert main(train_argv(tiny_dataset, ref, target, "--set", f"lr_decay_steps={total}")) == 0
    capsys.readouterr()
    whole = load_checkpoint(ref / "last.pt")
    assert [h["train_loss"] for h in resumed["trainer"]["history"]] == \
        [h["train_loss"] for h in whole["trainer"]["history"]]
    assert weights_equal(resumed["model"], whole["model"])


@pytest.mark.slow
def test_kill_9_at_random_times_keeps_a_loadable_checkpoint(tiny_dataset, tmp_path, capsys):
    rng = random.Random(20240611)
    out, total = tmp_path / "run", 2000
    steps_seen = []
    for attempt in range(3):
        argv = train_argv(tiny_dataset, out, total, *(["--resume"] if attempt else []))
        proc = start(argv)
        before = load_checkpoint(out / "last.pt")["step"] if attempt else 0
        # wait until this process has written a checkpoint of its own
        wait_for(lambda: (out / "last.pt").exists() and (not attempt or
                                                        os.stat(out / "last.pt").st_mtime_ns > mtime), proc)
        if attempt == 1:
            # aim at the middle of a write: kill as soon as a temp file shows up
            wait_for(lambda: bool(temp_files(out)), proc, poll=0.0005)
        else:
            time.sleep(rng.uniform(0.0, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL
        ckpt = load_checkpoint(out / "last.pt")  # never a torn file
        assert ckpt["step"] > before
        assert [h["step"] for h in ckpt["trainer"]["history"]] == list(range(1, ckpt["step"] + 1))
        steps_seen.append(ckpt["step"])
        mtime = os.stat(out / "last.pt").st_mtime_ns
    assert steps_seen == sorted(steps_seen)

    # a final resume finishes a few more steps from the last complete checkpoint. TensorBoard reads
    # event files in name order and names start with the second they were opened: an in-process
    # resume (no import time) could open its file in the killed run's second and sort before it.
    newest = max(int(f.name.split(".")[3]) for f in (out / "tb").glob("events.out.tfevents.*"))
    while int(time.time()) <= newest:
        time.sleep(0.05)
    target = steps_seen[-1] + 2
    assert main(train_argv(tiny_dataset, out, target, "--resume", decay_steps=total)) == 0
    capsys.readouterr()
    final = load_checkpoint(out / "last.pt")
    assert final["step"] == target
    assert not temp_files(out), "a resumed run should clear temp files left by a killed one"
    # TensorBoard shows one curve: the steps logged after the last checkpoint of a killed run are
    # replaced by the resumed run's, not shown twice
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(out / "tb"), size_guidance={"scalars": 0})
    ea.Reload()
    curve = [(e.step, e.value) for e in ea.Scalars("val/loss")]
    assert curve == [(h["step"], pytest.approx(h["val_loss"], rel=1e-6)) for h in final["trainer"]["history"]]


def test_disk_full_while_saving_keeps_the_previous_checkpoint(tiny_dataset, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    cfg = dict(data_dir=str(tiny_dataset), out_dir=str(out), arch="lstm", size="tiny", batch_size=4, eval_interval=1,
               eval_batches=1, sample_tokens=0, device="cpu")
    train(TrainConfig(**cfg, max_steps=2), progress=False)
    good = load_checkpoint(out / "last.pt")
    good_best = load_checkpoint(out / "best.pt")
    assert good["step"] == 2

    real_save = torch.save

    def full_disk_save(obj, f, *args, **kwargs):
        buf = io.BytesIO()
        real_save(obj, buf, *args, **kwargs)
        data = buf.getvalue()
        f.write(data[:len(data) // 2])  # the disk fills up half way through
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", full_disk_save)
    argv = ["train", "-o", str(out), "--resume", "--max-steps", "4", "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("melodylm: error: ") and "No space left" in err[-1] and "unchanged" in err[-1], err
    assert not any("Traceback" in line for line in err)
    monkeypatch.undo()

    after = load_checkpoint(out / "last.pt")
    assert after["step"] == 2 and weights_equal(after["model"], good["model"])
    assert weights_equal(load_checkpoint(out / "best.pt")["model"], good_best["model"])
    assert not temp_files(out)
    assert not list(out.glob("*.tmp*"))
    # and the run goes on once there is room again
    assert main(argv) == 0
    capsys.readouterr()
    assert load_checkpoint(out / "last.pt")["step"] == 4


def test_save_checkpoint_failure_leaves_no_temp_file(tmp_path, monkeypatch):
    from melodylm.checkpoint import save_checkpoint

    target = tmp_path / "last.pt"

    def boom(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(CheckpointError, match="No space left"):
        save_checkpoint(target, {"model": {}})
    assert list(tmp_path.iterdir()) == []
