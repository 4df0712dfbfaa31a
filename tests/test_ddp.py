"""Two-process DDP on the CPU (gloo) through torchrun: rank 0 writes the run, each rank trains on
its own batches, and a DDP run resumes.

The proof that the ranks saw different batches: the weights of the DDP run equal a one-process
replay that averages the gradients of rank 0's and rank 1's batch streams, and differ from a
replay that uses rank 0's stream alone.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from melodylm.checkpoint import load_checkpoint
from melodylm.cli import main
from melodylm.dataset import Dataset
from melodylm.models import ModelConfig, build_model
from melodylm.train import Batches, TrainConfig, lr_at
from conftest import default_sigint

REPO = Path(__file__).resolve().parents[1]
STEPS, MORE = 3, 5
ARGS = ["--arch", "gpt", "--size", "tiny", "--batch-size", "4", "--eval-interval", "2", "--device", "cpu",
        "--seed", "11", "--no-progress", "--set", "eval_batches=1", "--set", "sample_tokens=0",
        "--set", "dropout=0.0", "--set", "warmup_steps=1", "--set", f"lr_decay_steps={MORE}", "--lr", "0.003"]


# torchrun starts two processes per test (tens of seconds each on 2 cores): the slow set.
pytestmark = [pytest.mark.usefixtures("torch_one_thread"), pytest.mark.slow]


def torchrun_command(*args: str) -> tuple[list[str], dict[str, str]]:
    """``torchrun ... -m melodylm train ARGS`` with 2 CPU processes, and its environment."""
    launcher = [shutil.which("torchrun")] if shutil.which("torchrun") else [sys.executable, "-m",
                                                                              "torch.distributed.run"]
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    # --standalone: a private rendezvous on a free port, so parallel test runs do not collide
    return [*launcher, "--standalone", "--nproc_per_node", "2", "-m", "melodylm", "train", *args], env


def torchrun(*args: str) -> subprocess.CompletedProcess:
    cmd, env = torchrun_command(*args)
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def replay(data: Path, ckpt: dict, steps: int, ranks: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """The trainer's arithmetic in one process: DDP averages the gradients of the given ranks' batches."""
    cfg = TrainConfig.from_dict(ckpt["train_config"])
    mcfg = ModelConfig(**ckpt["model_config"])
    torch.manual_seed(cfg.seed)  # rank 0's initial weights; DDP broadcasts them to every rank
    model = build_model(mcfg)
    opt = model.configure_optimizers(cfg.weight_decay, cfg.learning_rate, (cfg.beta1, cfg.beta2), "cpu")
    tokens = Dataset(data).split("train").tokens
    streams = [Batches(tokens, mcfg.block_size, cfg.batch_size, cfg.seed * 1000 + r) for r in ranks]
    model.train()
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        loss = sum(model(*s.next())[1] for s in streams) / len(streams)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return model.state_dict()


def close(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-6) for k in a)


def test_ddp_two_processes_train_and_resume(plain_dataset, tmp_path, capsys):
    out = tmp_path / "ddp"
    r = torchrun(str(plain_dataset), "-o", str(out), "--max-steps", str(STEPS), "--json", *ARGS)
    assert r.returncode == 0, r.stderr[-3000:]
    # rank 0 alone reports and writes: one summary line, one JSON line, one set of files
    assert r.stdout.strip().count("\n") == 0
    summary = json.loads(r.stdout.strip())
    assert summary["steps"] == STEPS and summary["stopped"] == "max_steps"
    assert r.stderr.count("2 process(es)") == 1
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "config.json", "last.pt", "summary.json", "tb"]
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["step"] == STEPS

    # one RNG state per rank, each rank's batch stream its own
    rng = ckpt["trainer"]["rng"]
    assert len(rng["batches"]) == len(rng["torch"]) == 2
    assert rng["batches"][0] != rng["batches"][1]
    tokens = Dataset(plain_dataset).split("train").tokens
    for rank in (0, 1):
        b = Batches(tokens, ckpt["model_config"]["block_size"], 4, 11 * 1000 + rank)
        for _ in range(STEPS):
            b.next()
        assert json.loads(rng["batches"][rank]) == b.rng.bit_generator.state

    both = replay(plain_dataset, ckpt, STEPS, ranks=(0, 1))
    alone = replay(plain_dataset, ckpt, STEPS, ranks=(0,))
    assert close(ckpt["model"], both), "DDP weights should equal the average over both ranks' batches"
    assert not close(ckpt["model"], alone), "DDP weights equal a one-stream run: the ranks shared batches"

    # resume the DDP run for a few more steps, again with two processes
    r = torchrun("-o", str(out), "--resume", "--max-steps", str(MORE), *ARGS)
    assert r.returncode == 0, r.stderr[-3000:]
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["step"] == MORE
    assert [h["step"] for h in ckpt["trainer"]["history"]] == [2, STEPS, 4, MORE]
    assert close(ckpt["model"], replay(plain_dataset, ckpt, MORE, ranks=(0, 1)))
    assert not list(out.glob(".*.tmp-*"))

    # the ranks' batch streams cannot be continued by another number of processes
    assert main(["train", "-o", str(out), "--resume", "--max-steps", str(MORE + 1), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "2 process(es)" in err[0] and "same number" in err[0], err
    assert load_checkpoint(out / "last.pt")["step"] == MORE


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ddp_ctrl_c_stops_every_rank_at_one_step_and_resumes_exactly(plain_dataset, tmp_path):
    """Ctrl-C in a terminal signals the whole foreground group: torchrun and both ranks."""
    out, total = tmp_path / "ddp", 400
    cmd, env = torchrun_command(str(plain_dataset), "-o", str(out), "--max-steps", str(total), *ARGS)
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=default_sigint)
    t0 = time.time()
    while not (out / "last.pt").exists():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() - t0 < 240, "no checkpoint from the DDP run"
        time.sleep(0.01)
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=240)
    # torchrun reports the signal with a traceback of its own (SignalException); the ranks print none
    assert str(REPO / "melodylm") not in err and err.count("Traceback") <= 1, err[-3000:]
    ckpt = load_checkpoint(out / "last.pt")
    stopped = ckpt["step"]
    assert 1 <= stopped < total
    assert err.count(f"interrupted at step {stopped}") == 1, err[-3000:]  # rank 0 reports, once
    assert not list(out.glob(".*.tmp-*"))
    # both ranks' batch streams were saved at the same step, and the weights are the 2-rank average
    assert len(ckpt["trainer"]["rng"]["batches"]) == 2
    assert close(ckpt["model"], replay(plain_dataset, ckpt, stopped, ranks=(0, 1)))

    r = torchrun("-o", str(out), "--resume", "--max-steps", str(stopped + 2), *ARGS)
    assert r.returncode == 0, r.stderr[-3000:]
    resumed = load_checkpoint(out / "last.pt")
    assert resumed["step"] == stopped + 2
    assert close(resumed["model"], replay(plain_dataset, resumed, stopped + 2, ranks=(0, 1)))
