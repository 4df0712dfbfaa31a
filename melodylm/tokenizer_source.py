"""Reuse a tokenizer that already exists: ``melodylm tokenize --tokenizer SOURCE``.

A dataset made with a checkpoint's tokenizer has exactly that checkpoint's vocabulary, so the
checkpoint can be evaluated on it, sampled with its prompts, or fine-tuned on it. SOURCE may be a
checkpoint file, a run folder, a dataset folder, a ``tokenizer.json`` (melodylm's or miditok's)
or a Hugging Face export folder. torch is imported only for a checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

from melodylm.errors import UserError
from melodylm.tokenizer import FORMAT, MelodyTokenizer

CHECKPOINT_NAMES = ("best.pt", "last.pt", "model.pt")


def load_tokenizer(source: str | Path) -> MelodyTokenizer:
    """The tokenizer ``source`` was made with (see the module docstring for what ``source`` may be)."""
    path = Path(source)
    if not path.exists():
        raise UserError(f"--tokenizer {path}: not found (give a checkpoint, run folder, dataset folder or "
                        "tokenizer.json)")
    if path.is_dir():
        if any((path / n).is_file() for n in CHECKPOINT_NAMES):
            return _from_checkpoint(path)
        if (path / "tokenizer.json").is_file():
            return _from_json(path / "tokenizer.json")
        raise UserError(f"--tokenizer {path}: the folder holds no checkpoint ({', '.join(CHECKPOINT_NAMES)}) "
                        "and no tokenizer.json")
    if path.name.endswith(".json"):
        return _from_json(path)
    return _from_checkpoint(path)


def _from_checkpoint(path: Path) -> MelodyTokenizer:
    from melodylm.checkpoint import load_checkpoint

    return MelodyTokenizer.from_dict(load_checkpoint(path)["tokenizer"])


def _from_json(path: Path) -> MelodyTokenizer:
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"--tokenizer {path}: not valid JSON") from None
    if isinstance(raw, dict) and raw.get("format") == FORMAT:  # a dataset's tokenizer.json
        return MelodyTokenizer.from_dict(raw)
    if isinstance(raw, dict) and "tokenization" in raw:  # miditok's file, as in a Hugging Face export
        from melodylm.hf import load_miditok

        if path.name != "tokenizer.json":
            raise UserError(f"--tokenizer {path}: pass the folder of a miditok tokenizer.json (as exported)")
        return load_miditok(path.parent)
    raise UserError(f"--tokenizer {path}: neither a melodylm nor a miditok tokenizer file")


__all__ = ["load_tokenizer"]
