"""The only module that knows the checkpoint format.

A checkpoint is one file that is enough to sample: model config and weights, the tokenizer,
the training config, the dataset fingerprint and library versions, plus (in ``last.pt``) the
optimizer, grad-scaler and RNG states needed to resume exactly. :func:`build_payload` writes
that layout, :func:`restore_training` and :func:`restore_rng` read the resume part back, and
the accessors (:func:`model_config`, :func:`train_config`, :func:`trained_on`, ...) are how
every other module reads a loaded checkpoint; nobody else indexes its keys. Everything in it is a tensor,
a number, a string, or a dict/list of those, so it loads with ``torch.load(weights_only=True)``:
a file that smuggles a pickled object is refused before anything in it runs.

Writes are atomic: temp file in the same folder, fsync, rename, fsync of the folder. A crash or
``kill -9`` at any moment leaves either the previous checkpoint or the new one, never a mix.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from melodylm import __version__
from melodylm.errors import CheckpointError, UserError

FORMAT = "melodylm.checkpoint"
FORMAT_VERSION = 1


def versions() -> dict[str, str]:
    """Library versions recorded in every checkpoint."""
    import numpy

    out = {"melodylm": __version__, "torch": str(torch.__version__), "numpy": str(numpy.__version__)}
    try:
        import miditok

        out["miditok"] = str(getattr(miditok, "__version__", "?"))
    except ImportError:  # pragma: no cover
        pass
    return out


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` atomically to ``path`` (adds format, version and library versions)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "versions": versions(), **payload}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        # Disk full, interrupt: the previous checkpoint at `path` is untouched.
        try:
            tmp.unlink()
        except OSError:
            pass
        if isinstance(e, OSError):
            kept = "the previous one is unchanged" if path.exists() else "none was written"
            raise CheckpointError(f"cannot write checkpoint {path}: {e.strerror or e}; {kept}") from e
        raise
    try:
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:  # some filesystems cannot fsync a folder; the rename is still atomic
        pass
    return path


def remove_temp_files(folder: str | Path) -> list[Path]:
    """Delete the temp files that a killed :func:`save_checkpoint` left in ``folder``.

    Only for a folder no other process is writing to (the trainer calls it when it resumes).
    """
    removed = []
    for tmp in Path(folder).glob(".*.tmp-*"):
        try:
            tmp.unlink()
            removed.append(tmp)
        except OSError:
            pass
    return removed


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely; every problem is a :class:`CheckpointError` with a clear message."""
    path = Path(path)
    if path.is_dir():
        for name in ("best.pt", "last.pt", "model.pt"):
            if (path / name).is_file():
                path = path / name
                break
        else:
            raise CheckpointError(f"{path} holds no best.pt, last.pt or model.pt")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        found = [ln.strip() for ln in str(e).splitlines() if "Unsupported global" in ln]
        if not found:  # e.g. a text file: torch falls back to plain unpickling, which fails on the first byte
            raise CheckpointError(f"{path} is truncated or not a checkpoint (it cannot be unpickled safely)") from None
        what = found[0].split(" was not")[0].replace("WeightsUnpickler error: ", "")
        raise CheckpointError(f"{path} was refused: it contains a pickled Python object ({what}) that could run "
                              "code when loaded; melodylm only loads plain tensors and numbers") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as e:
        why = (str(e).splitlines() or ["empty file" if path.stat().st_size == 0 else type(e).__name__])[0][:120]
        raise CheckpointError(f"{path} is truncated or not a checkpoint ({why})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a melodylm checkpoint")
    if ckpt.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format {ckpt.get('format_version')}; this melodylm "
                              f"{__version__} reads format {FORMAT_VERSION}")
    for key in ("model_config", "model", "tokenizer"):
        if key not in ckpt:
            raise CheckpointError(f"{path} lacks {key!r}: incomplete checkpoint")
    ckpt["path"] = str(path)
    return ckpt


def load_model(path: str | Path, device: str | torch.device = "cpu"):
    """Model (eval mode) and tokenizer from a checkpoint file or run folder."""
    from melodylm.models import ModelConfig, build_model
    from melodylm.tokenizer import MelodyTokenizer

    ckpt = load_checkpoint(path, map_location=device)
    try:
        model = build_model(ModelConfig(**ckpt["model_config"]))
        model.load_state_dict(ckpt["model"])
    except (TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{ckpt['path']}: model weights do not match its config ({str(e)[:160]})") from None
    model.to(device).eval()
    tokenizer = MelodyTokenizer.from_dict(ckpt["tokenizer"])
    return model, tokenizer, ckpt


def file_hash(path: str | Path) -> str:
    import hashlib

    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()[:12]


# --- the payload the trainer writes ------------------------------------------------------------
def build_payload(*, model_config: dict, model: dict, tokenizer: dict, train_config: dict, data_fingerprint: str,
                  data_stats: dict, step: int, best_val: float, trainer: dict | None = None,
                  optimizer: dict | None = None, scaler: dict | None = None,
                  rng: list[dict] | None = None) -> dict[str, Any]:
    """The checkpoint dict for :func:`save_checkpoint`.

    ``best.pt`` needs only the first group (enough to sample and evaluate). ``last.pt`` also gets
    ``trainer`` (the loop's counters: step, best_val, evals_without_gain, elapsed, tokens_seen,
    history, train_loss, step_s, eval_s), ``optimizer``/``scaler`` state dicts and ``rng``, one
    :func:`rng_state` per process in rank order.
    """
    p: dict[str, Any] = {"model_config": model_config, "model": model, "tokenizer": tokenizer,
                         "train_config": train_config, "data_fingerprint": data_fingerprint, "step": step,
                         "best_val_loss": best_val if math.isfinite(best_val) else None,
                         "data_stats": {"notes": data_stats["notes"], "tokens": data_stats["tokens"]}}
    if trainer is not None:
        p["optimizer"] = optimizer
        p["scaler"] = scaler or {}
        rng_lists = {k: [r[k] for r in rng] for k in rng[0]} if rng else {}
        p["trainer"] = {**trainer, "rng": rng_lists}
    return p


def rng_state(batch_rng: np.random.Generator, device: torch.device) -> dict[str, Any]:
    """This process's random streams: the batch sampler (as JSON text), torch's CPU and CUDA generators."""
    return {"batches": json.dumps(batch_rng.bit_generator.state), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state() if device.type == "cuda" else None}


def restore_rng(ckpt: dict, batch_rng: np.random.Generator, rank: int, world: int, device: torch.device) -> None:
    """Put rank ``rank``'s saved random streams back; refuse another number of processes."""
    rng = ckpt["trainer"]["rng"]
    if len(rng["batches"]) != world:  # each rank continues its own saved batch stream
        raise UserError(f"--resume: {Path(ckpt['path']).parent} was trained with {len(rng['batches'])} process(es); "
                        f"resume it with the same number (this start has {world})")
    batch_rng.bit_generator.state = json.loads(rng["batches"][rank])
    torch.set_rng_state(rng["torch"][rank])
    if device.type == "cuda" and rng.get("cuda") and rng["cuda"][rank] is not None:
        torch.cuda.set_rng_state(rng["cuda"][rank])


def restore_training(ckpt: dict, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     scaler: torch.amp.GradScaler) -> None:
    """Load weights, optimizer and grad-scaler state from a ``last.pt``."""
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    if ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])


def load_weights(ckpt: dict, model: torch.nn.Module) -> None:
    """Copy a checkpoint's weights into ``model`` (fine-tuning starts from them)."""
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise CheckpointError(f"{ckpt['path']}: model weights do not match its config ({str(e)[:160]})") from None


def trainer_state(ckpt: dict) -> dict[str, Any]:
    """The loop's counters saved in a ``last.pt``, with the defaults older files lack."""
    tr = ckpt["trainer"]
    history = list(tr.get("history", []))
    train_loss = tr.get("train_loss", history[-1]["train_loss"] if history else float("nan"))
    return {"step": tr["step"], "best_val": tr["best_val"], "evals_without_gain": tr["evals_without_gain"],
            "elapsed": tr["elapsed"], "tokens_seen": tr["tokens_seen"], "history": history,
            "train_loss": train_loss, "step_s": tr.get("step_s", 0.0), "eval_s": tr.get("eval_s", 0.0)}


# --- reading a loaded checkpoint --------------------------------------------------------------
def checkpoint_path(ckpt: dict) -> str:
    """The file a checkpoint was loaded from."""
    return ckpt["path"]


def model_config(ckpt: dict) -> dict[str, Any]:
    """The ``ModelConfig`` fields, as a dict."""
    return dict(ckpt["model_config"])


def architecture(ckpt: dict) -> str:
    """``lstm`` | ``bilstm`` | ``gpt``."""
    return ckpt["model_config"]["arch"]


def train_config(ckpt: dict) -> dict[str, Any]:
    """The ``TrainConfig`` fields of the run that wrote it; empty for a file made without one."""
    return dict(ckpt.get("train_config") or {})


def trained_on(ckpt: dict) -> str | None:
    """The dataset folder the model was trained on, if the checkpoint names one."""
    return train_config(ckpt).get("data_dir") or None


def data_fingerprint(ckpt: dict) -> str | None:
    """The fingerprint of the dataset it was trained on (None for a file made without one)."""
    return ckpt.get("data_fingerprint")


def tokenizer_dict(ckpt: dict) -> dict[str, Any]:
    """The tokenizer as ``MelodyTokenizer.to_dict`` wrote it."""
    return ckpt["tokenizer"]


def saved_step(ckpt: dict) -> int | None:
    """The optimizer step the checkpoint was written at."""
    return ckpt.get("step")


def has_trainer_state(ckpt: dict) -> bool:
    """Whether the file can be resumed (a ``last.pt``) rather than only sampled."""
    return "trainer" in ckpt and "optimizer" in ckpt


def tokenizer_difference(ours: dict, theirs: dict) -> str | None:
    """How two tokenizers (``to_dict`` form) differ, in words; None when they tokenize alike.

    The miditok version is not compared: the same settings give the same tokens across versions,
    nor the fill-in-the-middle layout (order, suffix bars): it arranges training sequences, the
    ids mean the same.
    """
    parts = []
    a, b = ours.get("settings", {}), theirs.get("settings", {})
    for k in sorted(set(a) | set(b)):
        if json.dumps(a.get(k)) != json.dumps(b.get(k)):  # tuples from code, lists from JSON
            parts.append(f"{k} {a.get(k)!r} vs {b.get(k)!r}")
    if ours.get("subword") != theirs.get("subword"):
        parts.append(f"subword {ours.get('subword')!r} vs {theirs.get('subword')!r}")
    elif ours.get("sp_model") != theirs.get("sp_model"):
        parts.append("another learned subword vocabulary")
    if not parts and ours.get("base_vocab") != theirs.get("base_vocab"):
        parts.append("another base vocabulary")
    def extras(d: dict):
        return {k: v for k, v in (d.get("extra") or {}).items() if not k.startswith("fim_")} or None

    if extras(ours) != extras(theirs):
        parts.append("other control or fill tokens")
    return "; ".join(parts) or None
