"""``melodylm info``: versions, the torch device, and where the corpus and the model were found."""

from __future__ import annotations

import platform
from importlib import metadata
from pathlib import Path

from melodylm import __version__
from melodylm.extras import EXTRAS, available

CORE = ("torch", "miditok", "symusic", "numpy", "sentencepiece", "nltk")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def info(cwd: str | Path | None = None) -> dict:
    """Everything ``melodylm info`` prints, as a dict (``--json`` prints it as is)."""
    import torch

    from melodylm.device import pick_device
    from melodylm.resources import PACKAGE_DIR, find_default_checkpoint, locations

    dev = pick_device("auto")
    gpu = torch.cuda.get_device_name(dev) if dev.type == "cuda" else None
    default = find_default_checkpoint(cwd)
    return {
        "melodylm": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "package": str(PACKAGE_DIR),
        "versions": {name: _version(name) for name in CORE},
        "extras": {name: available(name) for name in EXTRAS},
        "device": {"auto": str(dev), "name": gpu, "cuda": torch.cuda.is_available(),
                   "torch_threads": torch.get_num_threads()},
        **locations(),
        "default_checkpoint": str(default) if default else None,
    }


def format_info(d: dict) -> str:
    """The human-readable lines of :func:`info`."""
    where = lambda r: f"{r['path']} ({r['from']})" if r["path"] else "not found"  # noqa: E731
    dev = d["device"]
    lines = [
        f"melodylm {d['melodylm']} (python {d['python']}, {d['platform']}) at {d['package']}",
        "versions: " + ", ".join(f"{k} {v or 'missing'}" for k, v in d["versions"].items()),
        "extras: " + ", ".join(f"{k} {'yes' if ok else 'no'}" for k, ok in d["extras"].items()),
        f"device: {dev['auto']}" + (f" ({dev['name']})" if dev["name"] else "") + f", {dev['torch_threads']} threads",
        f"corpus: {where(d['corpus'])}",
        f"model: {where(d['model'])}",
        f"default checkpoint here: {d['default_checkpoint'] or 'none'}",
    ]
    return "\n".join(lines)
