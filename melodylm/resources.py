"""Where the embedded corpus and the shipped model are found, installed or from source.

A wheel carries both as package data under ``melodylm/_bundled/`` (the build copies them in from
the repository's top-level ``corpora/`` and ``checkpoints/`` folders, which stay where they are).
Run from a source checkout (or an editable install), they are read from those folders directly.
Package data wins when both exist, so an installed melodylm never depends on a checkout nearby.

Datasets, runs and samples always land in the current folder; only these read-only files come
from the package.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
# Inside a wheel: melodylm/_bundled/{corpora/oneills1850, checkpoints/pretrained/model.pt}.
BUNDLED = PACKAGE_DIR / "_bundled"
# From source: the repository root, one level above the package.
REPO_ROOT = PACKAGE_DIR.parent

CORPUS_NAME = "oneills1850"
CORPUS_PARTS = ("corpora", CORPUS_NAME)
MODEL_PARTS = ("checkpoints", "pretrained", "model.pt")


def _roots() -> list[tuple[str, Path]]:
    """Places to look, in order, each with the word ``info`` uses for it."""
    return [("package data", BUNDLED), ("repository checkout", REPO_ROOT)]


def _find(parts: tuple[str, ...], want_dir: bool) -> tuple[Path | None, str]:
    for where, root in _roots():
        p = root.joinpath(*parts)
        if (p.is_dir() and any(p.glob("*.mid"))) if want_dir else p.is_file():
            return p, where
    return None, "missing"


def corpus_dir() -> Path | None:
    """Folder of the embedded corpus (one MIDI file per tune), or ``None`` when neither the package
    nor a checkout has it."""
    return _find(CORPUS_PARTS, want_dir=True)[0]


def shipped_model() -> Path | None:
    """The shipped pretrained checkpoint ``model.pt``, or ``None`` when it is not there."""
    return _find(MODEL_PARTS, want_dir=False)[0]


def newest_run(cwd: str | Path | None = None) -> Path | None:
    """The newest ``checkpoints/*/best.pt`` under ``cwd`` (default: the current folder)."""
    root = Path(cwd or Path.cwd()) / "checkpoints"
    runs = [p for p in root.glob("*/best.pt") if p.is_file()]
    if not runs:
        return None
    return max(runs, key=lambda p: (p.stat().st_mtime, str(p)))


def find_default_checkpoint(cwd: str | Path | None = None) -> Path | None:
    """What ``sample`` and ``evaluate`` use without a checkpoint argument.

    The newest run under ``./checkpoints/`` with a ``best.pt``, so that ``train`` then ``sample``
    uses the model just trained; else the shipped model; else ``None``.
    """
    return newest_run(cwd) or shipped_model()


def locations() -> dict[str, dict[str, str | None]]:
    """Where the corpus and the model were found: ``{"corpus": {"path", "from"}, "model": ...}``."""
    out = {}
    for key, parts, want_dir in (("corpus", CORPUS_PARTS, True), ("model", MODEL_PARTS, False)):
        path, where = _find(parts, want_dir)
        out[key] = {"path": str(path) if path else None, "from": where}
    return out


__all__ = ["BUNDLED", "REPO_ROOT", "corpus_dir", "find_default_checkpoint", "locations", "newest_run",
           "shipped_model"]
