"""Optional dependencies: every feature imports its extra through :func:`require`.

The core (tokenize, train, evaluate, sample, scores) needs only the packages every install gets.
The rest is an extra, installed as ``pip install 'melodylm[NAME]'``; a feature whose extra is
missing stops with one line that names what needs it and the command that installs it, instead
of an ImportError traceback. Corpus import, the renderers, the playground and the Hugging Face
export all ask here, so the message reads the same everywhere.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from melodylm.errors import UserError

# extra -> (what it is for, the modules it provides); setup.cfg's extras_require lists the same.
EXTRAS: dict[str, tuple[str, tuple[str, ...]]] = {
    "music21": ("corpus import from ABC, MusicXML and Humdrum", ("music21",)),
    "serve": ("the playground's web server", ("fastapi", "uvicorn", "multipart")),
    "hf": ("Hugging Face export and import", ("safetensors", "transformers")),
    "bench": ("the side-by-side benchmarks", ("transformers", "music21")),
    "render": ("audio and sheet-music rendering", ("verovio", "tinysoundfont", "pretty_midi")),
}
# Modules whose install command is not `pip install 'melodylm[EXTRA]'`. tinysoundfont declares
# pyaudio (live playback only), which has no Linux wheel and fails to build without PortAudio's
# headers, so it is installed without its dependencies (as `make install` does); matplotlib is a
# core dependency, missing only from a broken install.
INSTALL_HINT: dict[str, str] = {
    "tinysoundfont": "pip install --no-deps 'tinysoundfont>=0.3.7,<0.4'",
    "matplotlib": "pip install matplotlib",
}
# Import names that differ from the name pip knows the package by.
DIST_NAME: dict[str, str] = {"multipart": "python-multipart", "pretty_midi": "pretty-midi"}


class MissingExtraError(UserError):
    """A feature was used whose optional dependency is not installed."""


def install_hint(module: str, extra: str) -> str:
    """The command that installs ``module`` (its extra's, unless :data:`INSTALL_HINT` says otherwise)."""
    return INSTALL_HINT.get(module.split(".")[0], f"pip install 'melodylm[{extra}]'")


def require(module: str, extra: str, feature: str | None = None) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming what needs it and how to install it.

    ``feature`` says what needed it (default: the extra's description), e.g.
    ``require("verovio", "render", "sheet music (svg)")``.
    """
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}; known: {', '.join(EXTRAS)}")
    try:
        return importlib.import_module(module)
    except ImportError as e:
        top = module.split(".")[0]
        what = feature or EXTRAS[extra][0]
        hint = install_hint(module, extra)
        # A module that is installed but fails inside its own imports is a different problem:
        # say so, rather than telling the user to install what they already have.
        missing = getattr(e, "name", None)
        if missing and missing.split(".")[0] != top:
            raise MissingExtraError(f"{what}: {top} is installed but cannot import {missing!r} ({e}); "
                                    f"reinstall it with `{hint}`") from None
        raise MissingExtraError(f"{what} needs the Python package {DIST_NAME.get(top, top)!r}, which is not "
                                f"installed: run `{hint}`") from None


def available(extra: str) -> bool:
    """Whether every module of ``extra`` can be found (without importing it)."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in EXTRAS[extra][1])


__all__ = ["EXTRAS", "INSTALL_HINT", "MissingExtraError", "available", "install_hint", "require"]
