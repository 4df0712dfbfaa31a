"""What the quality benchmarks share: the O'Neill + Essen corpus and running melodylm's command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXE = [sys.executable, "-m", "melodylm"]


def sh(args: list[str]) -> str:
    """Run a command from the repository root, echo it to stderr, return its last stdout line."""
    print("$", " ".join(args), file=sys.stderr, flush=True)
    out = subprocess.run(args, cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True).stdout
    return out.strip().splitlines()[-1] if out.strip() else ""


def sh_json(args: list[str]) -> dict:
    """Run a melodylm command that ends with ``--json`` and parse its summary line."""
    return json.loads(sh(args))


def quality_corpus(data: str | Path = "data/quality") -> Path:
    """O'Neill's tunes + the Essen collection (both embedded under corpora/), default tokens.

    Tokenized once under ``data/``; later calls reuse it. Without ``corpora/essen`` the collection is
    imported from music21's corpus first (about 17 minutes on 2 cores).
    """
    data = ROOT / data
    if not (data / "COMPLETE").exists():
        essen = ROOT / "corpora" / "essen"
        if not (essen / "MANIFEST.tsv").exists():
            essen = ROOT / "data" / "essen"
        if not (essen / "MANIFEST.tsv").exists():
            from melodylm.corpus import music21_corpus_path

            sh(EXE + ["corpus", "import", str(music21_corpus_path("essenFolksong")), "-o", str(essen),
                      "--no-progress"])
        sh(EXE + ["tokenize", "corpora/oneills1850", str(essen), "-o", str(data), "--no-progress", "--force"])
    return data


def key_profiles(name: str) -> tuple:
    """(major, minor) weights of a key profile: ``KrumhanslKessler`` (melodylm's own estimator) or a
    key-profile class of music21's ``analysis.discrete`` (``TemperleyKostkaPayne``, ``AardenEssen``...)."""
    from melodylm.keys import KRUMHANSL_KESSLER

    if name == "KrumhanslKessler":
        return KRUMHANSL_KESSLER
    from music21.analysis import discrete

    cls = getattr(discrete, name, None)
    if cls is None or not hasattr(cls, "getWeights"):
        raise SystemExit(f"{name}: not a key-profile class of music21.analysis.discrete")
    return tuple(cls().getWeights(mode) for mode in ("major", "minor"))
