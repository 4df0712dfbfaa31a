"""The training loop: device, autocast, DDP, TensorBoard, checkpoints, early stopping, exact resume.

Models know nothing of any of this: the trainer wraps whatever :func:`build_model` returns.
Run on several GPUs (or processes) with ``torchrun --nproc_per_node N -m melodylm train ...``:
DDP is detected from the ``RANK`` variable torchrun sets; rank 0 logs and writes checkpoints,
every rank draws different batches.

Batches are random windows of ``block_size + 1`` tokens from the training split's flat token
array (tunes separated by BOS/EOS). The window positions come from a numpy generator whose state
is saved in ``last.pt``, together with the torch RNG, so ``--resume`` continues exactly.

The module reads top to bottom: the config and its checks, batches, the learning-rate schedule,
then :func:`train` -> :func:`prepare` (config, data, model, run folder) -> :func:`loop` (one
:func:`train_step` after another, :func:`evaluate_and_save` every ``eval_interval`` steps) ->
:func:`finish` (last checkpoint, summary). Every counter the loop changes lives in one
:class:`TrainState`; the objects it works with (model, optimizer, writer, ...) in one :class:`Run`.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from melodylm import checkpoint as ckpts
from melodylm.checkpoint import load_checkpoint, remove_temp_files, save_checkpoint
from melodylm.controls import KINDS
from melodylm.dataset import Dataset
from melodylm.device import autocast_ctx, pick_device, pick_precision
from melodylm.errors import TrainingError, UserError
from melodylm.models import ModelConfig, build_model
from melodylm.sequences import MAX_HEADS, WindowStream, minor_weights
from melodylm.train_config import (RESUME_HELP, RESUME_HONOURS, TrainConfig, check_init_tokenizer,
                                   check_resume_data, load_config_file, load_init, model_config, parse_set,
                                   resume_config)

__all__ = ["RESUME_HELP", "RESUME_HONOURS", "Batches", "TrainConfig", "TrainState", "fixed_windows",
           "load_config_file", "lr_at", "parse_set", "summary_line", "train"]



# --- data ------------------------------------------------------------------------------------------
class Batches:
    """Random training windows, reproducible from a numpy generator whose state is checkpointed.

    With a :class:`melodylm.sequences.WindowStream` (a dataset with controls or infilling) each
    window starts with its tune's head (BOS and controls), each control dropped at
    ``control_dropout``, and the rearranged infilling tunes stand in for their plain ones.
    """

    def __init__(self, tokens: np.ndarray, block_size: int, batch_size: int, seed: int,
                 stream: WindowStream | None = None, control_dropout: float = 0.0, weights: np.ndarray | None = None):
        total = stream.total if stream is not None else len(tokens)
        if total < 2:
            raise UserError("the training split has fewer than 2 tokens: tokenize more data")
        self.tokens = tokens
        self.stream = stream
        self.control_dropout = control_dropout
        self.weights = weights  # per sequence of the stream: how many times as often it is drawn
        self.block = min(block_size, total - 1)
        self.batch_size = batch_size
        self.rng = np.random.Generator(np.random.PCG64(seed))

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.stream is not None:
            n = self.block + 1
            ix = self.stream.starts(self.rng, self.batch_size, n, self.weights)
            drops = self.rng.random((self.batch_size, MAX_HEADS, len(KINDS)))
            x, y = self.stream.batch(ix, n, drops, self.control_dropout)
            return torch.from_numpy(x), torch.from_numpy(y)
        ix = self.rng.integers(0, len(self.tokens) - self.block, size=self.batch_size)
        x = np.stack([self.tokens[i:i + self.block] for i in ix]).astype(np.int64)
        y = np.stack([self.tokens[i + 1:i + 1 + self.block] for i in ix]).astype(np.int64)
        return torch.from_numpy(x), torch.from_numpy(y)


def fixed_windows(tokens: np.ndarray, block_size: int, n: int, seed: int = 0, stream: WindowStream | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """The same ``n`` validation windows every time (a fixed seed, independent of training RNG).

    With a ``stream`` the windows keep their heads, every control kept: plain continuation
    given all controls.
    """
    rng = np.random.Generator(np.random.PCG64(seed))
    if stream is not None:
        block = min(block_size, stream.total - 1)
        x, y = stream.batch(rng.integers(0, stream.limit(block + 1), size=n), block + 1)
        return torch.from_numpy(x), torch.from_numpy(y)
    block = min(block_size, len(tokens) - 1)
    ix = rng.integers(0, len(tokens) - block, size=n)
    x = np.stack([tokens[i:i + block] for i in ix]).astype(np.int64)
    y = np.stack([tokens[i + 1:i + 1 + block] for i in ix]).astype(np.int64)
    return torch.from_numpy(x), torch.from_numpy(y)


def time_budgeted(cfg: TrainConfig) -> bool:
    """Whether the learning-rate schedule follows the clock (``max_time`` set, no ``lr_decay_steps``)."""
    return cfg.max_time > 0 and cfg.lr_decay_steps == 0


def lr_at(step: int, cfg: TrainConfig, elapsed: float = 0.0) -> float:
    """Linear warmup, then cosine decay to ``learning_rate * min_lr_ratio``.

    By steps, the cosine ends at ``lr_decay_steps`` (or ``max_steps``). With a time budget
    (:func:`time_budgeted`) it is a function of the elapsed fraction of the budget instead, so a
    90-second run finishes its warmup and its cosine however many steps this machine manages:
    warmup ends at ``warmup_frac`` of the budget or after ``warmup_steps``, whichever comes first.
    ``elapsed`` is saved in ``last.pt``, so a resumed run continues the same curve.
    """
    if time_budgeted(cfg):
        done = max(elapsed / cfg.max_time, step / cfg.max_steps)
        warm = 1.0 if cfg.warmup_frac == 0 else min(1.0, max(done / cfg.warmup_frac,
                                                              (step + 1) / (cfg.warmup_steps + 1)))
        ratio = min(1.0, max(0.0, (done - cfg.warmup_frac) / (1 - cfg.warmup_frac)))
        return warm * _cosine(ratio, cfg)
    total = cfg.lr_decay_steps or cfg.max_steps
    if step < cfg.warmup_steps:
        return cfg.learning_rate * (step + 1) / (cfg.warmup_steps + 1)
    if step >= total:
        return cfg.learning_rate * cfg.min_lr_ratio
    return _cosine((step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps), cfg)


def _cosine(ratio: float, cfg: TrainConfig) -> float:
    coeff = 0.5 * (1.0 + math.cos(math.pi * ratio))
    return cfg.learning_rate * (cfg.min_lr_ratio + coeff * (1 - cfg.min_lr_ratio))


def default_out_dir(arch: str) -> str:
    return str(Path("checkpoints") / f"{arch}-{time.strftime('%Y%m%d-%H%M%S')}")


# --- the run's state and objects -------------------------------------------------------------------
@dataclass
class TrainState:
    """Every counter the loop changes. The persisted ones are saved in ``last.pt`` (see :meth:`saved`)."""

    step: int = 0
    best_val: float = float("inf")
    evals_without_gain: int = 0
    elapsed: float = 0.0  # seconds of training, evaluations included, over every resumed part of the run
    tokens_seen: int = 0
    history: list = field(default_factory=list)  # {"step", "train_loss", "val_loss"} per evaluation
    train_loss: float = float("nan")  # of the newest step
    # A time budget stops when one more step and the final evaluation would not fit: a resumed
    # run needs both durations to make the same decision.
    step_s: float = 0.0  # seconds of the newest step
    eval_s: float = 0.0  # seconds of the newest evaluation + checkpoint (0 before the first)
    # not saved: how this process is doing
    saved_step: int | None = None  # step of the newest last.pt
    stopped: str = "max_steps"

    def saved(self) -> dict:
        return {"step": self.step, "best_val": self.best_val, "evals_without_gain": self.evals_without_gain,
                "elapsed": self.elapsed, "tokens_seen": self.tokens_seen, "history": self.history,
                "train_loss": self.train_loss, "step_s": self.step_s, "eval_s": self.eval_s}


@dataclass
class Run:
    """What one training process works with; set up by :func:`prepare`, never changed by the loop."""

    cfg: TrainConfig
    mcfg: ModelConfig
    out: Path
    device: torch.device
    precision: str
    rank: int
    world: int
    ddp: bool
    raw_model: Any  # the MelodyModel: evaluation, sampling, checkpoints
    model: Any  # what the step runs: raw_model, compiled and/or wrapped in DDP
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    batches: "Batches"
    tokenizer: Any
    data_stats: dict
    fingerprint: str
    eval_x: torch.Tensor
    eval_y: torch.Tensor
    notes_per_token: float
    tokens_per_step: int
    max_steps: int
    writer: Any = None  # TensorBoard, rank 0 only
    t_start: float = 0.0  # time.time() at elapsed 0

    @property
    def master(self) -> bool:
        return self.rank == 0


class StopFlag:
    """Ctrl-C / SIGTERM only raise a flag that the loop reads between steps, so last.pt holds a
    whole step and --resume continues exactly; a second signal leaves at once."""

    def __init__(self) -> None:
        self.count = 0
        self.previous: dict = {}

    def handle(self, signum, frame) -> None:
        self.count += 1
        if self.count > 1:
            raise KeyboardInterrupt

    def install(self) -> None:
        import threading

        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        for sig in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(sig) is not signal.SIG_IGN:
                self.previous[sig] = signal.signal(sig, self.handle)

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


# --- the entry point -------------------------------------------------------------------------------
def train(cfg: TrainConfig, resume: bool = False, force: bool = False, progress: bool = True) -> dict:
    """Train a model; return the summary (steps, train_loss, best_val_loss, checkpoint, tokens_per_s, ...).

    ``resume`` continues the run in ``cfg.out_dir`` (see :data:`RESUME_HONOURS`); ``cfg.init``
    starts a new run from a checkpoint's weights with a fresh optimizer (fine-tuning).
    """
    cfg.validate()
    ddp = int(os.environ.get("RANK", -1)) != -1
    rank, world, device = start_processes(cfg, ddp)
    # Flushing denormals is processor state of the calling thread: put it back afterwards, or
    # every later float computation in this process (tests, notebooks) silently changes.
    flush_was_on = _flushes_denormals()
    torch.set_flush_denormal(True)  # bi-LSTM backward on CPU crawls on denormal floats
    try:
        run, state = prepare(cfg, resume, force, device, rank, world, ddp)
        flag = StopFlag()
        flag.install()
        bar = progress_bar(run, state, progress and run.master)
        run.t_start = time.time() - state.elapsed
        try:
            loop(run, state, flag, bar)
        except KeyboardInterrupt:
            state.stopped = "interrupted"
        finally:
            bar.close()
            flag.restore()
        return finish(run, state)
    finally:
        if not flush_was_on:
            torch.set_flush_denormal(False)
        if ddp:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def start_processes(cfg: TrainConfig, ddp: bool) -> tuple[int, int, torch.device]:
    """``(rank, world_size, device)``; under torchrun also joins the process group."""
    if not ddp:
        return 0, 1, pick_device(cfg.device)
    import torch.distributed as dist

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if torch.cuda.is_available() and cfg.device in ("auto", "cuda"):
        device = torch.device(f"cuda:{local_rank}")
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device = torch.device("cpu")
        backend = "gloo"
    dist.init_process_group(backend=backend)
    return rank, world, device


def prepare(cfg: TrainConfig, resume: bool, force: bool, device: torch.device, rank: int, world: int,
            ddp: bool) -> tuple[Run, TrainState]:
    """Check the request, load data, build (or restore) model and optimizer, open the run folder."""
    master = rank == 0
    last = init = None
    if resume:
        out = Path(cfg.out_dir or default_out_dir(cfg.arch))
        if not (out / "last.pt").is_file():
            raise UserError(f"--resume: {out / 'last.pt'} not found (nothing to resume in {out})")
        last = load_checkpoint(out / "last.pt")
        cfg = resume_config(cfg, last, out)
        if master:
            remove_temp_files(out)  # left by a run killed while it wrote a checkpoint
    elif cfg.init:
        init = load_init(cfg)
    out = Path(cfg.out_dir or default_out_dir(cfg.arch))
    cfg.out_dir = str(out)
    if last is None and master and out.exists() and any(out.iterdir()) and not force:
        raise UserError(f"run folder {out} already exists: pass --resume to continue it or --force to start over")

    data = Dataset(cfg.data_dir)
    tok = data.tokenizer
    fingerprint = data.fingerprint()
    if last is not None:
        check_resume_data(cfg, last, fingerprint)
    if init is not None:
        check_init_tokenizer(cfg, init, tok)
    train_tokens = data.split("train").tokens
    val_tokens = data.split("val").tokens
    val_on_train = len(val_tokens) < 2
    if val_on_train:
        val_tokens = train_tokens  # tiny datasets: validate on train rather than not at all
    train_stream, val_stream = steering_streams(data, cfg, val_on_train)
    mcfg = model_config(cfg, tok, last, init)

    torch.manual_seed(cfg.seed + rank)
    raw_model = build_model(mcfg).to(device)
    if init is not None:
        ckpts.load_weights(init, raw_model)
    precision = pick_precision(cfg.precision, device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    optimizer = raw_model.configure_optimizers(cfg.weight_decay, cfg.learning_rate, (cfg.beta1, cfg.beta2),
                                               device.type)
    scaler = torch.amp.GradScaler(device.type, enabled=(precision == "fp16"))
    batches = Batches(train_tokens, mcfg.block_size, cfg.batch_size, cfg.seed * 1000 + rank, train_stream,
                      cfg.control_dropout, minor_weights(train_stream, tok, cfg.minor_weight))
    state = TrainState()
    if last is not None:
        ckpts.restore_training(last, raw_model, optimizer, scaler)
        state = TrainState(**ckpts.trainer_state(last), saved_step=ckpts.saved_step(last))
        ckpts.restore_rng(last, batches.rng, rank, world, device)

    model = torch.compile(raw_model) if cfg.compile else raw_model
    if ddp:
        from torch.nn.parallel import DistributedDataParallel as DDP

        model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    tokens_per_step = cfg.batch_size * batches.block * cfg.grad_accum * world
    max_steps = cfg.max_steps
    if cfg.max_epochs > 0:
        n_train = train_stream.total if train_stream is not None else len(train_tokens)
        max_steps = min(max_steps, max(1, math.ceil(cfg.max_epochs * n_train / tokens_per_step)))
    eval_x, eval_y = fixed_windows(val_tokens, mcfg.block_size, cfg.eval_batches * 8, stream=val_stream)
    split = "train" if val_on_train else "val"
    notes_per_token = data.stats["notes"][split] / max(1, data.stats["tokens"][split])
    run = Run(cfg=cfg, mcfg=mcfg, out=out, device=device, precision=precision, rank=rank, world=world, ddp=ddp,
              raw_model=raw_model, model=model, optimizer=optimizer, scaler=scaler, batches=batches, tokenizer=tok,
              data_stats=data.stats, fingerprint=fingerprint, eval_x=eval_x, eval_y=eval_y,
              notes_per_token=notes_per_token, tokens_per_step=tokens_per_step, max_steps=max_steps)
    if master:
        open_run_folder(run, state, fresh=last is None, force=force, val_on_train=val_on_train)
    return run, state


def steering_streams(data: Dataset, cfg: TrainConfig, val_on_train: bool
                     ) -> tuple[WindowStream | None, WindowStream | None]:
    """Window streams of a dataset with controls or infilling (None for plain datasets, whose
    windows are cut from the flat token arrays as before). ``cfg.infill`` off reads every
    training tune plainly, even where the dataset holds its rearrangement."""
    tok = data.tokenizer
    if tok.extra is None:
        return None, None
    tr = data.split("train")
    train = WindowStream.of_split(tr.tokens, tr.index, tok, data.fim() if cfg.infill else None)
    if val_on_train:
        return train, WindowStream.of_split(tr.tokens, tr.index, tok)
    va = data.split("val")
    return train, WindowStream.of_split(va.tokens, va.index, tok)


def open_run_folder(run: Run, state: TrainState, fresh: bool, force: bool, val_on_train: bool) -> None:
    """Rank 0: make the folder, write config.json, open TensorBoard, say what is about to train."""
    out, cfg, mcfg = run.out, run.cfg, run.mcfg
    if fresh and force:  # start over: no curve, checkpoint or summary of the old run may survive
        import shutil

        for name in ("best.pt", "last.pt", "summary.json"):
            (out / name).unlink(missing_ok=True)
        shutil.rmtree(out / "tb", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps({**asdict(cfg), "model_config": asdict(mcfg)}, indent=1))
    from torch.utils.tensorboard import SummaryWriter

    # A run killed after its last checkpoint logged steps that the resumed run logs again:
    # purge_step hides the old ones from TensorBoard.
    run.writer = SummaryWriter(str(out / "tb"), purge_step=None if fresh else state.step + 1)
    if fresh:
        start = f" from {cfg.init}" if cfg.init else ""
        print(f"{cfg.arch} ({cfg.size}){start}: {run.raw_model.num_params() / 1e6:.2f}M parameters, vocab "
              f"{mcfg.vocab_size}, context {mcfg.block_size}, device {run.device} {run.precision}, {run.world} "
              f"process(es) -> {out}", file=sys.stderr)
    extra, wants = run.tokenizer.extra, run.raw_model.fim_order
    if fresh and cfg.infill and wants and extra is not None and extra.has_infill and extra.fim_order != wants:
        print(f"note: {cfg.data_dir} lays out its infilling tunes {extra.fim_order}; a {cfg.arch} fills best from "
              f"the {wants} layout: tokenize with --fim-order {wants} for it", file=sys.stderr)
    if val_on_train:
        print(f"note: {cfg.data_dir} has no validation tunes: validation runs on the training split, so the val "
              "loss flatters the model (tokenize with a larger val fraction in --split, or more files)",
              file=sys.stderr)


def progress_bar(run: Run, state: TrainState, show: bool):
    """With a time budget the bar counts seconds, so its ETA is the budget's end (steps in the postfix)."""
    from tqdm import tqdm

    by_time = bool(run.cfg.max_time)
    return tqdm(total=round(run.cfg.max_time) if by_time else run.max_steps,
                initial=round(state.elapsed) if by_time else state.step, desc=f"train {run.cfg.arch}",
                unit="s" if by_time else "step", disable=not show, file=sys.stderr, dynamic_ncols=True)


# --- the loop --------------------------------------------------------------------------------------
def loop(run: Run, state: TrainState, flag: StopFlag, bar) -> None:
    """Step until a stopping criterion; sets ``state.stopped`` to the reason."""
    cfg = run.cfg
    run.model.train()
    meter = {"time": time.time(), "tokens": 0}  # throughput since the last log line
    while state.step < run.max_steps:
        stop, elapsed, projected = poll(run, state, flag)
        if stop:
            state.stopped = "interrupted"
            return
        # Stop when the next step and the final evaluation would not fit in the budget; the first
        # step of a run always runs, so a tiny budget still trains.
        if cfg.max_time and state.step > 0 and projected >= cfg.max_time:
            state.stopped = "max_time"
            if state.step > 0 and (not state.history or state.history[-1]["step"] != state.step):
                evaluate_and_save(run, state)  # so best.pt and last.pt reflect the whole budget
            return
        t0 = time.time()
        lr = lr_at(state.step, cfg, elapsed)
        loss, grad_norm = train_step(run, state, lr)
        state.step += 1
        state.train_loss = loss
        state.tokens_seen += run.tokens_per_step
        meter["tokens"] += run.tokens_per_step
        state.step_s = time.time() - t0
        bar.update(min(round(time.time() - run.t_start), bar.total) - bar.n if cfg.max_time else 1)
        if state.step % cfg.log_interval == 0 or state.step == run.max_steps:
            log_step(run, state, meter, bar, lr, grad_norm)
        if state.step % cfg.eval_interval == 0 or state.step == run.max_steps:
            evaluate_and_save(run, state)
            if cfg.patience and state.evals_without_gain >= cfg.patience:
                state.stopped = "early_stop"
                return
    state.stopped = "max_steps"


def poll(run: Run, state: TrainState, flag: StopFlag) -> tuple[bool, float, float]:
    """Between steps: (stop requested, seconds trained, seconds after one more step and an evaluation).

    Under DDP every rank takes the maximum, so all stop at the same step and use the same
    learning rate even where the schedule follows the clock.
    """
    elapsed = time.time() - run.t_start
    eval_s = state.eval_s or _eval_estimate(run, state)
    projected = elapsed + state.step_s + eval_s
    if not run.ddp:
        return flag.count > 0, elapsed, projected
    import torch.distributed as dist

    t = torch.tensor([float(flag.count > 0), elapsed, projected], dtype=torch.float64, device=run.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t[0].item()), float(t[1].item()), float(t[2].item())


def _eval_estimate(run: Run, state: TrainState) -> float:
    """Seconds an evaluation will take, before the first one is timed: a forward pass of a batch
    costs about a third of a training micro-step (forward + backward, twice the forward's work)."""
    batches = math.ceil(len(run.eval_x) / run.cfg.batch_size)
    return batches * state.step_s / (3 * run.cfg.grad_accum)


def train_step(run: Run, state: TrainState, lr: float) -> tuple[float, float]:
    """One optimizer step over ``grad_accum`` micro-batches; returns (training loss, gradient norm)."""
    cfg = run.cfg
    for g in run.optimizer.param_groups:
        g["lr"] = lr
    ctx = autocast_ctx(run.device, run.precision)
    loss_sum = 0.0
    for micro in range(cfg.grad_accum):
        x, y = run.batches.next()
        x, y = x.to(run.device, non_blocking=True), y.to(run.device, non_blocking=True)
        sync = (not run.ddp) or micro == cfg.grad_accum - 1
        with (nullcontext() if sync else run.model.no_sync()):
            with ctx:
                _, loss = run.model(x, y)
                loss = loss / cfg.grad_accum
            run.scaler.scale(loss).backward()
        loss_sum += loss.detach().float().item()
    if not math.isfinite(loss_sum):
        raise diverged(run, state, "training loss", loss_sum, state.step + 1)
    grad_norm = float("nan")
    if cfg.grad_clip > 0:
        run.scaler.unscale_(run.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(run.raw_model.parameters(), cfg.grad_clip).item()
        # fp16's scaler skips steps with inf gradients by design; in fp32/bf16 they poison the weights
        if not math.isfinite(grad_norm) and not run.scaler.is_enabled():
            raise diverged(run, state, "gradient norm", grad_norm, state.step + 1)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.optimizer.zero_grad(set_to_none=True)
    return loss_sum, grad_norm


def diverged(run: Run, state: TrainState, what: str, value: float, at: int) -> TrainingError:
    """The error for a non-finite loss or gradient: nothing after the last good checkpoint is saved."""
    kept = (f"the last good checkpoint {run.out / 'last.pt'} (step {state.saved_step}) is kept"
            if state.saved_step is not None else "no checkpoint was written")
    return TrainingError(f"the {what} became {value} at step {at}: stopped; {kept} (try a lower --lr)")


def log_step(run: Run, state: TrainState, meter: dict, bar, lr: float, grad_norm: float) -> None:
    """Progress bar postfix and TensorBoard scalars of the newest step."""
    now = time.time()
    tok_s = meter["tokens"] / max(1e-9, now - meter["time"])
    meter.update(time=now, tokens=0)
    bar.set_postfix(step=state.step, loss=f"{state.train_loss:.3f}", best_val=f"{state.best_val:.3f}",
                    tok_s=f"{tok_s:,.0f}")
    w = run.writer
    if w is None:
        return
    w.add_scalar("train/loss", state.train_loss, state.step)
    w.add_scalar("train/perplexity", math.exp(min(state.train_loss, 50)), state.step)
    w.add_scalar("train/lr", lr, state.step)
    if math.isfinite(grad_norm):
        w.add_scalar("train/grad_norm", grad_norm, state.step)
    w.add_scalar("train/tokens_per_s", tok_s, state.step)


# --- evaluation and checkpoints --------------------------------------------------------------------
def evaluate_and_save(run: Run, state: TrainState) -> None:
    """Validation loss on the fixed windows, TensorBoard, best.pt when it improved, then last.pt."""
    t0 = time.time()
    state.elapsed = t0 - run.t_start
    val = evaluate_loss(run)
    if not math.isfinite(val):  # the last update broke the weights: never checkpoint them
        raise diverged(run, state, "validation loss", val, state.step)
    improved = val < state.best_val
    if improved:
        state.best_val, state.evals_without_gain = val, 0
    else:
        state.evals_without_gain += 1
    state.history.append({"step": state.step, "train_loss": state.train_loss, "val_loss": val})
    if run.master:
        w, step = run.writer, state.step
        w.add_scalar("val/loss", val, step)
        w.add_scalar("val/perplexity", math.exp(min(val, 50)), step)
        w.add_scalar("val/bits_per_token", val / math.log(2), step)
        w.add_scalar("val/bits_per_note", val / math.log(2) / max(1e-9, run.notes_per_token), step)
        if improved:
            save_checkpoint(run.out / "best.pt", payload(run, state, full=False))
        log_sample(run, step)
    save_last(run, state)
    state.eval_s = time.time() - t0


@torch.no_grad()
def evaluate_loss(run: Run) -> float:
    """Mean loss over the fixed validation windows (dropout off)."""
    run.raw_model.eval()
    ctx = autocast_ctx(run.device, run.precision)
    losses = []
    bs = run.cfg.batch_size
    for i in range(0, len(run.eval_x), bs):
        x, y = run.eval_x[i:i + bs].to(run.device), run.eval_y[i:i + bs].to(run.device)
        with ctx:
            _, loss = run.raw_model(x, y)
        losses.append(loss.float().item())
    run.raw_model.train()
    return float(np.mean(losses))


def log_sample(run: Run, step: int) -> None:
    """A seeded sample's piano roll in TensorBoard: what the model writes, at a glance."""
    if not run.cfg.sample_tokens or run.writer is None:
        return
    try:
        from melodylm.render.pianoroll import pianoroll_array
        from melodylm.sampling import generate_ids

        run.raw_model.eval()
        g = torch.Generator(device="cpu").manual_seed(run.cfg.seed)
        ids = generate_ids(run.raw_model, run.tokenizer, n=1, max_new_tokens=run.cfg.sample_tokens, generator=g,
                           device=run.device)[0].ids
        score = run.tokenizer.decode_score(run.tokenizer.decode_ids(ids))
        img = pianoroll_array(score, title=f"step {step}", single_label="generated", dpi=80)
        run.writer.add_image("sample/pianoroll", img, step, dataformats="HWC")
    except Exception as e:  # a sample is a nicety; never let it stop training
        print(f"note: could not render a sample at step {step}: {e}", file=sys.stderr)
    finally:
        run.raw_model.train()  # a failed sample must not leave dropout off for the rest of the run


def payload(run: Run, state: TrainState, full: bool) -> dict:
    """The checkpoint of this moment: enough to sample (best.pt) or, with ``full``, to resume (last.pt)."""
    kw: dict[str, Any] = {}
    if full:
        kw = dict(trainer=state.saved(), optimizer=run.optimizer.state_dict(),
                  scaler=run.scaler.state_dict() if run.scaler.is_enabled() else {}, rng=gather_rng(run))
    return ckpts.build_payload(model_config=asdict(run.mcfg), model=run.raw_model.state_dict(),
                               tokenizer=run.tokenizer.to_dict(), train_config=asdict(run.cfg),
                               data_fingerprint=run.fingerprint, data_stats=run.data_stats, step=state.step,
                               best_val=state.best_val, **kw)


def gather_rng(run: Run) -> list[dict]:
    """Every rank's random streams, in rank order (a collective: all ranks must call it)."""
    mine = ckpts.rng_state(run.batches.rng, run.device)
    if not run.ddp:
        return [mine]
    import torch.distributed as dist

    gathered: list = [None] * run.world
    dist.all_gather_object(gathered, mine)
    return gathered


def save_last(run: Run, state: TrainState) -> None:
    """last.pt (written by rank 0; every rank takes part in the RNG gather)."""
    p = payload(run, state, full=True)
    if run.master:
        save_checkpoint(run.out / "last.pt", p)
    state.saved_step = state.step


# --- the end ---------------------------------------------------------------------------------------
def finish(run: Run, state: TrainState) -> dict:
    """Save what is not saved yet, close TensorBoard, write and return the summary."""
    state.elapsed = time.time() - run.t_start
    interrupted = state.stopped == "interrupted"
    # Every rank takes this same branch (save_last gathers from all of them), so it must not
    # depend on the file system, where rank 0 may not have finished writing last.pt yet.
    if state.saved_step != state.step or interrupted:
        save_last(run, state)
    if run.master and not (run.out / "best.pt").exists():
        save_checkpoint(run.out / "best.pt", payload(run, state, full=False))
    if run.writer is not None:
        run.writer.close()
    summary = {"steps": state.step,
               "train_loss": round(state.train_loss, 5) if math.isfinite(state.train_loss) else None,
               "best_val_loss": round(state.best_val, 5) if math.isfinite(state.best_val) else None,
               "checkpoint": str(run.out / "best.pt"), "tokens_per_s": round(state.tokens_seen / max(1e-9, state.elapsed), 1),
               "stopped": state.stopped, "seconds": round(state.elapsed, 1), "out_dir": str(run.out)}
    if not run.master:
        return summary
    (run.out / "summary.json").write_text(json.dumps(summary, indent=1))
    budget = run.cfg.max_time
    if budget and state.elapsed > budget and not interrupted:
        print(f"note: the run took {state.elapsed:.1f} s of its {budget:.0f} s --max-time: the final evaluation "
              f"and checkpoint took {state.eval_s:.1f} s", file=sys.stderr)
    if interrupted:
        print(f"interrupted at step {state.step}: saved {run.out / 'last.pt'}; continue with "
              f"`melodylm train --resume -o {run.out}`", file=sys.stderr)
    return summary


def summary_line(summary: dict) -> str:
    """The one line ``melodylm train`` prints at the end; a loss that was never measured reads "n/a"."""
    def loss(v):
        return "n/a" if v is None else f"{v}"

    return (f"{summary['steps']} steps, train loss {loss(summary['train_loss'])}, best val loss "
            f"{loss(summary['best_val_loss'])} ({summary['stopped']}); {summary['tokens_per_s']:,.0f} tokens/s; "
            f"checkpoint {summary['checkpoint']}")


def _flushes_denormals() -> bool:
    """Whether this thread turns subnormal floats into zero (there is no getter in torch)."""
    return (torch.tensor([1e-39], dtype=torch.float32) * 2.0).item() == 0.0
