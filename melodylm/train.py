"""The training loop: device, autocast, DDP, TensorBoard, checkpoints, early stopping, exact resume.

Models know nothing of any of this: the trainer wraps whatever :func:`build_model` returns.
Run on several GPUs (or processes) with ``torchrun --nproc_per_node N -m melodylm train ...``:
DDP is detected from the ``RANK`` variable torchrun sets; rank 0 logs and writes checkpoints,
every rank draws different batches.

Batches are random windows of ``block_size + 1`` tokens from the training split's flat token
array (tunes separated by BOS/EOS). The window positions come from a numpy generator whose state
is saved in ``last.pt``, together with the torch RNG, so ``--resume`` continues exactly.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from melodylm.checkpoint import load_checkpoint, remove_temp_files, save_checkpoint
from melodylm.dataset import DEFAULT_DATA_DIR, Dataset
from melodylm.device import autocast_ctx, pick_device, pick_precision
from melodylm.errors import TrainingError, UserError
from melodylm.models import MODELS, ModelConfig, build_model, size_preset


@dataclass
class TrainConfig:
    """Everything a training run does. Loadable from TOML/JSON; unknown keys are an error."""

    data_dir: str = str(DEFAULT_DATA_DIR)
    out_dir: str = ""  # run folder; default checkpoints/<arch>-<date>-<time>
    arch: str = "gpt"  # lstm | bilstm | gpt
    size: str = "small"  # tiny | small | base preset; model fields below override it
    model: dict = field(default_factory=dict)  # ModelConfig overrides, e.g. {"n_layer": 4}
    batch_size: int = 32  # sequences per micro-batch (per process)
    grad_accum: int = 1  # micro-batches per optimizer step
    learning_rate: float = 1e-3
    min_lr_ratio: float = 0.1  # cosine decays to learning_rate * min_lr_ratio
    warmup_steps: int = 100
    lr_decay_steps: int = 0  # 0 = max_steps; set it to resume a run into a longer one exactly
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0  # 0 = off
    max_steps: int = 2000
    max_epochs: float = 0.0  # > 0: stop after this many passes over the training tokens
    max_time: float = 0.0  # > 0: stop after this many seconds of training
    eval_interval: int = 200
    eval_batches: int = 20  # fixed validation windows, the same at every evaluation
    patience: int = 0  # > 0: stop after this many evaluations without a better val loss
    sample_tokens: int = 256  # tokens of the piano-roll sample logged at each evaluation; 0 = off
    log_interval: int = 10
    seed: int = 1337
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    compile: bool = False

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        model_names = {f.name for f in fields(ModelConfig)} - {"arch", "vocab_size", "pad_id"}
        out: dict[str, Any] = {"model": dict(d.get("model", {}))}
        for k, v in d.items():
            if k == "model":
                continue
            if k in names:
                out[k] = v
            elif k in model_names:
                out["model"][k] = v
            else:
                raise UserError(f"unknown config key {k!r}; valid keys: {', '.join(sorted(names | model_names))}")
        bad = set(out["model"]) - model_names
        if bad:
            raise UserError(f"unknown model key(s) {sorted(bad)}; valid: {', '.join(sorted(model_names))}")
        return cls(**out)

    def validate(self) -> None:
        if self.arch not in MODELS:
            raise UserError(f"--arch {self.arch!r}: choose one of {', '.join(MODELS)}")
        if self.size not in ("tiny", "small", "base"):
            raise UserError(f"--size {self.size!r}: choose tiny, small or base")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise UserError(f"--precision {self.precision!r}: choose auto, fp32, bf16 or fp16")
        for name in ("batch_size", "grad_accum", "eval_interval", "eval_batches", "log_interval"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be >= 1")
        if self.max_steps < 1:
            raise UserError("--max-steps must be >= 1")
        if self.learning_rate <= 0 or not math.isfinite(self.learning_rate):
            raise UserError("--lr must be a positive number")
        for name in ("max_epochs", "max_time", "patience", "warmup_steps", "weight_decay", "grad_clip",
                     "lr_decay_steps"):
            if getattr(self, name) < 0:
                raise UserError(f"--{name.replace('_', '-')} must be >= 0")


def load_config_file(path: str | Path) -> dict:
    """A TOML or JSON file of TrainConfig keys (a [model] table is allowed)."""
    path = Path(path)
    try:
        text = path.read_bytes()
    except OSError as e:
        raise UserError(f"--config {path}: {e.strerror or e}") from None
    try:
        if path.suffix == ".json":
            return json.loads(text)
        try:
            import tomllib
        except ImportError:  # Python < 3.11
            import tomli as tomllib
        return tomllib.loads(text.decode())
    except Exception as e:
        raise UserError(f"--config {path} is not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {e}") from None


def parse_set(items: list[str]) -> dict:
    """``--set key=value`` pairs; values are parsed as JSON when they can be (numbers, booleans)."""
    out = {}
    for item in items:
        if "=" not in item:
            raise UserError(f"--set {item!r}: expected key=value")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            out[k.strip()] = v
    return out


# --- data ------------------------------------------------------------------------------------------
class Batches:
    """Random training windows, reproducible from a numpy generator whose state is checkpointed."""

    def __init__(self, tokens: np.ndarray, block_size: int, batch_size: int, seed: int):
        if len(tokens) < 2:
            raise UserError("the training split has fewer than 2 tokens: tokenize more data")
        self.tokens = tokens
        self.block = min(block_size, len(tokens) - 1)
        self.batch_size = batch_size
        self.rng = np.random.Generator(np.random.PCG64(seed))

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        ix = self.rng.integers(0, len(self.tokens) - self.block, size=self.batch_size)
        x = np.stack([self.tokens[i:i + self.block] for i in ix]).astype(np.int64)
        y = np.stack([self.tokens[i + 1:i + 1 + self.block] for i in ix]).astype(np.int64)
        return torch.from_numpy(x), torch.from_numpy(y)


def fixed_windows(tokens: np.ndarray, block_size: int, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The same ``n`` validation windows every time (a fixed seed, independent of training RNG)."""
    block = min(block_size, len(tokens) - 1)
    rng = np.random.Generator(np.random.PCG64(seed))
    ix = rng.integers(0, len(tokens) - block, size=n)
    x = np.stack([tokens[i:i + block] for i in ix]).astype(np.int64)
    y = np.stack([tokens[i + 1:i + 1 + block] for i in ix]).astype(np.int64)
    return torch.from_numpy(x), torch.from_numpy(y)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup, then cosine decay to ``learning_rate * min_lr_ratio`` at ``lr_decay_steps``."""
    total = cfg.lr_decay_steps or cfg.max_steps
    if step < cfg.warmup_steps:
        return cfg.learning_rate * (step + 1) / (cfg.warmup_steps + 1)
    if step >= total:
        return cfg.learning_rate * cfg.min_lr_ratio
    ratio = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
    coeff = 0.5 * (1.0 + math.cos(math.pi * ratio))
    return cfg.learning_rate * (cfg.min_lr_ratio + coeff * (1 - cfg.min_lr_ratio))


def default_out_dir(arch: str) -> str:
    return str(Path("checkpoints") / f"{arch}-{time.strftime('%Y%m%d-%H%M%S')}")


# --- the loop --------------------------------------------------------------------------------------
def train(cfg: TrainConfig, resume: bool = False, force: bool = False, progress: bool = True) -> dict:
    """Train a model; return the summary (steps, train_loss, best_val_loss, checkpoint, tokens_per_s)."""
    cfg.validate()
    ddp = int(os.environ.get("RANK", -1)) != -1
    rank, world, local_rank = 0, 1, 0
    if ddp:
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
    else:
        device = pick_device(cfg.device)
    master = rank == 0
    # Flushing denormals is processor state of the calling thread: put it back afterwards, or
    # every later float computation in this process (tests, notebooks) silently changes.
    flush_was_on = _flushes_denormals()
    torch.set_flush_denormal(True)  # bi-LSTM backward on CPU crawls on denormals (field notes)
    try:
        return _train(cfg, resume, force, progress and master, device, rank, world, ddp)
    finally:
        if not flush_was_on:
            torch.set_flush_denormal(False)
        if ddp:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def _train(cfg: TrainConfig, resume: bool, force: bool, progress: bool, device: torch.device,
           rank: int, world: int, ddp: bool) -> dict:
    from tqdm import tqdm

    master = rank == 0
    out = Path(cfg.out_dir or default_out_dir(cfg.arch))
    cfg.out_dir = str(out)
    state: dict[str, Any] | None = None
    if resume:
        last = out / "last.pt"
        if not last.is_file():
            raise UserError(f"--resume: {last} not found (nothing to resume in {out})")
        state = load_checkpoint(last)
        saved = TrainConfig.from_dict(state["train_config"])
        # Only the stopping criteria may change on resume; everything else comes from the run.
        # One left at its default keeps the run's own value, so `train --resume -o RUN` finishes
        # the run it continues instead of training to the default max_steps.
        defaults = TrainConfig()
        for k in ("max_steps", "max_epochs", "max_time", "patience"):
            if getattr(cfg, k) != getattr(defaults, k):
                setattr(saved, k, getattr(cfg, k))
        saved.out_dir, saved.device, saved.precision = str(out), cfg.device, cfg.precision
        cfg = saved
        if master:
            remove_temp_files(out)  # left by a run killed while it wrote a checkpoint
    elif master and out.exists() and any(out.iterdir()) and not force:
        raise UserError(f"run folder {out} already exists: pass --resume to continue it or --force to start over")

    data = Dataset(cfg.data_dir)
    tok = data.tokenizer
    fingerprint = data.fingerprint()
    if state is not None and state.get("data_fingerprint") != fingerprint:
        raise UserError(f"--resume: the dataset {cfg.data_dir} changed since the run started "
                        "(fingerprint differs); start a new run")
    train_tokens = data.split("train").tokens
    val_tokens = data.split("val").tokens
    if len(val_tokens) < 2:
        val_tokens = train_tokens  # tiny datasets: validate on train rather than not at all

    if state is not None:
        mcfg = ModelConfig(**state["model_config"])
    else:
        try:
            mcfg = ModelConfig(**{**size_preset(cfg.arch, cfg.size), **cfg.model,
                                  "arch": cfg.arch, "vocab_size": tok.vocab_size, "pad_id": tok.pad_id})
        except (TypeError, ValueError) as e:
            raise UserError(f"bad model setting: {e}") from None
    if mcfg.vocab_size != tok.vocab_size:
        raise UserError(f"the run's model has {mcfg.vocab_size} tokens but dataset {cfg.data_dir} has "
                        f"{tok.vocab_size}: resume with the dataset it was trained on")

    torch.manual_seed(cfg.seed + rank)
    model = build_model(mcfg).to(device)
    precision = pick_precision(cfg.precision, device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    optimizer = model.configure_optimizers(cfg.weight_decay, cfg.learning_rate, (cfg.beta1, cfg.beta2), device.type)
    scaler = torch.amp.GradScaler(device.type, enabled=(precision == "fp16"))
    batches = Batches(train_tokens, mcfg.block_size, cfg.batch_size, cfg.seed * 1000 + rank)
    step, best_val, evals_without_gain, elapsed, tokens_seen = 0, float("inf"), 0, 0.0, 0
    history: list[dict] = []
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if "scaler" in state and state["scaler"]:
            scaler.load_state_dict(state["scaler"])
        tr = state["trainer"]
        step, best_val, evals_without_gain = tr["step"], tr["best_val"], tr["evals_without_gain"]
        elapsed, tokens_seen, history = tr["elapsed"], tr["tokens_seen"], list(tr.get("history", []))
        rng_states = tr["rng"]
        if len(rng_states["batches"]) != world:  # each rank continues its own saved batch stream
            raise UserError(f"--resume: {out} was trained with {len(rng_states['batches'])} process(es); "
                            f"resume it with the same number (this start has {world})")
        batches.rng.bit_generator.state = json.loads(rng_states["batches"][rank])
        torch.set_rng_state(rng_states["torch"][rank])
        if device.type == "cuda" and rng_states.get("cuda"):
            torch.cuda.set_rng_state(rng_states["cuda"][rank])

    raw_model = model
    if cfg.compile:
        model = torch.compile(model)
    if ddp:
        from torch.nn.parallel import DistributedDataParallel as DDP

        model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    ctx = autocast_ctx(device, precision)
    tokens_per_step = cfg.batch_size * batches.block * cfg.grad_accum * world
    max_steps = cfg.max_steps
    if cfg.max_epochs > 0:
        max_steps = min(max_steps, max(1, math.ceil(cfg.max_epochs * len(train_tokens) / tokens_per_step)))
    eval_x, eval_y = fixed_windows(val_tokens, mcfg.block_size, cfg.eval_batches * 8)
    notes_per_token = data.stats["notes"]["val"] / max(1, data.stats["tokens"]["val"]) if len(val_tokens) != len(train_tokens) \
        else data.stats["notes"]["train"] / max(1, data.stats["tokens"]["train"])

    writer = None
    if master:
        if state is None and force:  # start over: no curve, checkpoint or summary of the old run may survive
            import shutil

            for name in ("best.pt", "last.pt", "summary.json"):
                (out / name).unlink(missing_ok=True)
            shutil.rmtree(out / "tb", ignore_errors=True)
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps({**asdict(cfg), "model_config": asdict(mcfg)}, indent=1))
        from torch.utils.tensorboard import SummaryWriter

        # A run killed after its last checkpoint logged steps that the resumed run logs again:
        # purge_step hides the old ones from TensorBoard.
        writer = SummaryWriter(str(out / "tb"), purge_step=step + 1 if state is not None else None)
        if state is None:
            n = raw_model.num_params()
            print(f"{cfg.arch} ({cfg.size}): {n / 1e6:.2f}M parameters, vocab {mcfg.vocab_size}, "
                  f"context {mcfg.block_size}, device {device} {precision}, {world} process(es) -> {out}",
                  file=sys.stderr)

    def rng_snapshot() -> dict:
        mine = {"batches": json.dumps(batches.rng.bit_generator.state), "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state() if device.type == "cuda" else None}
        if not ddp:
            return {k: [v] for k, v in mine.items()}
        import torch.distributed as dist

        gathered: list = [None] * world
        dist.all_gather_object(gathered, mine)
        return {k: [g[k] for g in gathered] for k in mine}

    def payload(full: bool) -> dict:
        p = {"model_config": asdict(mcfg), "model": raw_model.state_dict(), "tokenizer": tok.to_dict(),
             "train_config": asdict(cfg), "data_fingerprint": fingerprint, "step": step,
             "best_val_loss": best_val if math.isfinite(best_val) else None,
             "data_stats": {"notes": data.stats["notes"], "tokens": data.stats["tokens"]}}
        if full:
            p["optimizer"] = optimizer.state_dict()
            p["scaler"] = scaler.state_dict() if scaler.is_enabled() else {}
            p["trainer"] = {"step": step, "best_val": best_val, "evals_without_gain": evals_without_gain,
                            "elapsed": elapsed, "tokens_seen": tokens_seen, "history": history, "rng": rng_snapshot()}
        return p

    saved_step = [state["step"] if state is not None else None]  # step of the newest last.pt

    def save_last() -> None:
        p = payload(full=True)  # every rank takes part in the RNG gather
        if master:
            save_checkpoint(out / "last.pt", p)
        saved_step[0] = step

    def diverged(what: str, value: float, at: int) -> TrainingError:
        kept = (f"the last good checkpoint {out / 'last.pt'} (step {saved_step[0]}) is kept"
                if saved_step[0] is not None else "no checkpoint was written")
        return TrainingError(f"the {what} became {value} at step {at}: stopped; {kept} (try a lower --lr)")

    @torch.no_grad()
    def evaluate() -> float:
        raw_model.eval()
        losses = []
        bs = max(1, cfg.batch_size)
        for i in range(0, len(eval_x), bs):
            x, y = eval_x[i:i + bs].to(device), eval_y[i:i + bs].to(device)
            with ctx:
                _, loss = raw_model(x, y)
            losses.append(loss.float().item())
        raw_model.train()
        return float(np.mean(losses))

    def log_sample() -> None:
        if not cfg.sample_tokens or writer is None:
            return
        try:
            from melodylm.generate import sample_ids
            from melodylm.plot import pianoroll_array

            raw_model.eval()
            g = torch.Generator(device="cpu").manual_seed(cfg.seed)
            ids = sample_ids(raw_model, tok, n=1, max_new_tokens=cfg.sample_tokens, generator=g, device=device)[0]
            score = tok.decode_score(tok.decode_ids(ids))
            writer.add_image("sample/pianoroll", pianoroll_array(score), step, dataformats="HWC")
        except Exception as e:  # a sample is a nicety; never let it stop training
            print(f"note: could not render a sample at step {step}: {e}", file=sys.stderr)
        finally:
            raw_model.train()  # a failed sample must not leave dropout off for the rest of the run

    stop_reason = "max_steps"
    last_loss = float("nan")
    interrupted = False
    # Ctrl-C / SIGTERM only raise a flag that the loop reads between steps, so last.pt holds a
    # whole step and --resume continues exactly; a second signal leaves at once.
    signals = [0]
    prev_handlers: dict = {}

    def on_signal(signum, frame):
        signals[0] += 1
        if signals[0] > 1:
            raise KeyboardInterrupt

    def stop_requested() -> bool:
        if not ddp:
            return signals[0] > 0
        import torch.distributed as dist

        flag = torch.tensor([float(signals[0] > 0)], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)  # all ranks stop at the same step
        return bool(flag.item())

    if threading_main():
        for sig in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(sig) is not signal.SIG_IGN:
                prev_handlers[sig] = signal.signal(sig, on_signal)
    # With a time budget the bar counts seconds, so its ETA is the budget's end (step count in the postfix).
    by_time = bool(cfg.max_time)
    bar = tqdm(total=round(cfg.max_time) if by_time else max_steps, initial=round(elapsed) if by_time else step,
               desc=f"train {cfg.arch}", unit="s" if by_time else "step", disable=not progress,
               file=sys.stderr, dynamic_ncols=True)
    t_start = time.time() - elapsed
    t_log, tok_log = time.time(), 0
    tok_s = 0.0
    model.train()
    try:
        while step < max_steps:
            if stop_requested():
                interrupted, stop_reason = True, "interrupted"
                break
            if cfg.max_time and time.time() - t_start >= cfg.max_time:
                stop_reason = "max_time"
                break
            lr = lr_at(step, cfg)
            for g in optimizer.param_groups:
                g["lr"] = lr
            loss_sum = 0.0
            for micro in range(cfg.grad_accum):
                x, y = batches.next()
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                sync = (not ddp) or micro == cfg.grad_accum - 1
                with (nullcontext() if sync else model.no_sync()):
                    with ctx:
                        _, loss = model(x, y)
                        loss = loss / cfg.grad_accum
                    scaler.scale(loss).backward()
                loss_sum += loss.detach().float().item()
            if not math.isfinite(loss_sum):
                raise diverged("training loss", loss_sum, step + 1)
            grad_norm = float("nan")
            if cfg.grad_clip > 0:
                scaler.unscale_(optimizer)
                grad_norm = torch.nn.utils.clip_grad_norm_(raw_model.parameters(), cfg.grad_clip).item()
                # fp16's scaler skips steps with inf gradients by design; in fp32/bf16 they poison the weights
                if not math.isfinite(grad_norm) and not scaler.is_enabled():
                    raise diverged("gradient norm", grad_norm, step + 1)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            last_loss = loss_sum
            tokens_seen += tokens_per_step
            tok_log += tokens_per_step
            bar.update(min(round(time.time() - t_start), bar.total) - bar.n if by_time else 1)
            if step % cfg.log_interval == 0 or step == max_steps:
                now = time.time()
                tok_s = tok_log / max(1e-9, now - t_log)
                t_log, tok_log = now, 0
                bar.set_postfix(step=step, loss=f"{last_loss:.3f}", best_val=f"{best_val:.3f}", tok_s=f"{tok_s:,.0f}")
                if writer is not None:
                    writer.add_scalar("train/loss", last_loss, step)
                    writer.add_scalar("train/perplexity", math.exp(min(last_loss, 50)), step)
                    writer.add_scalar("train/lr", lr, step)
                    if math.isfinite(grad_norm):
                        writer.add_scalar("train/grad_norm", grad_norm, step)
                    writer.add_scalar("train/tokens_per_s", tok_s, step)
            time_up = bool(cfg.max_time) and time.time() - t_start >= cfg.max_time
            if step % cfg.eval_interval == 0 or step == max_steps or time_up:
                elapsed = time.time() - t_start
                val = evaluate()
                if not math.isfinite(val):  # the last update broke the weights: never checkpoint them
                    raise diverged("validation loss", val, step)
                improved = val < best_val
                if improved:
                    best_val, evals_without_gain = val, 0
                else:
                    evals_without_gain += 1
                history.append({"step": step, "train_loss": last_loss, "val_loss": val})
                if master:
                    writer.add_scalar("val/loss", val, step)
                    writer.add_scalar("val/perplexity", math.exp(min(val, 50)), step)
                    writer.add_scalar("val/bits_per_token", val / math.log(2), step)
                    writer.add_scalar("val/bits_per_note", val / math.log(2) / max(1e-9, notes_per_token), step)
                    if improved:
                        save_checkpoint(out / "best.pt", payload(full=False))
                    log_sample()
                save_last()
                if cfg.patience and evals_without_gain >= cfg.patience:
                    stop_reason = "early_stop"
                    break
                if time_up:  # evaluated and saved above, so best.pt reflects the whole budget
                    stop_reason = "max_time"
                    break
    except KeyboardInterrupt:
        interrupted = True
        stop_reason = "interrupted"
    finally:
        bar.close()
        for sig, handler in prev_handlers.items():
            signal.signal(sig, handler)
    elapsed = time.time() - t_start
    # Every rank takes this same branch (save_last gathers from all of them), so it must not
    # depend on the file system, where rank 0 may not have finished writing last.pt yet.
    if saved_step[0] != step or interrupted:
        save_last()
    if master and not (out / "best.pt").exists():
        save_checkpoint(out / "best.pt", payload(full=False))
    if writer is not None:
        writer.close()
    run_tok_s = tokens_seen / max(1e-9, elapsed)
    summary = {"steps": step, "train_loss": round(last_loss, 5) if math.isfinite(last_loss) else None,
               "best_val_loss": round(best_val, 5) if math.isfinite(best_val) else None,
               "checkpoint": str(out / "best.pt"), "tokens_per_s": round(run_tok_s, 1),
               "stopped": stop_reason, "seconds": round(elapsed, 1), "out_dir": str(out)}
    if master:
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
    if interrupted and master:
        print(f"interrupted at step {step}: saved {out / 'last.pt'}; continue with "
              f"`melodylm train --resume -o {out}`", file=sys.stderr)
    return summary


def _flushes_denormals() -> bool:
    """Whether this thread turns subnormal floats into zero (there is no getter in torch)."""
    return (torch.tensor([1e-39], dtype=torch.float32) * 2.0).item() == 0.0


def threading_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
