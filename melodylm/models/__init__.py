"""Next-token models behind one interface, and the registry that builds them from a config.

Adding an architecture takes one module with a :class:`MelodyModel` subclass (its named sizes
included) and one entry in ``MODELS``.
"""

from __future__ import annotations

from .base import MelodyModel, ModelConfig, size_preset
from .bilstm import BiLSTM
from .gpt import GPT
from .lstm import LSTM

MODELS: dict[str, type[MelodyModel]] = {
    "lstm": LSTM,
    "bilstm": BiLSTM,
    "gpt": GPT,
}


def build_model(config: ModelConfig) -> MelodyModel:
    """Instantiate the architecture ``config.arch`` names, with freshly initialised weights."""
    if config.arch not in MODELS:
        raise ValueError(f"unknown arch {config.arch!r}; expected one of {', '.join(MODELS)}")
    return MODELS[config.arch](config)


__all__ = ["MODELS", "BiLSTM", "GPT", "LSTM", "MelodyModel", "ModelConfig", "build_model", "size_preset"]
