"""The only module that knows the checkpoint format.

A checkpoint is one file that is enough to sample: model config and weights, the tokenizer,
the training config, the dataset fingerprint and library versions, plus (in ``last.pt``) the
optimizer, grad-scaler and RNG states needed to resume exactly. Everything in it is a tensor,
a number, a string, or a dict/list of those, so it loads with ``torch.load(weights_only=True)``:
a file that smuggles a pickled object is refused before anything in it runs.

Writes are atomic: temp file in the same folder, fsync, rename, fsync of the folder. A crash or
``kill -9`` at any moment leaves either the previous checkpoint or the new one, never a mix.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from melodylm import __version__
from melodylm.errors import CheckpointError

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
