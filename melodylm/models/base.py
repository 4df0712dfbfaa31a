"""The interface every next-token model implements.

The trainer, the evaluator and the sampler only ever talk to :class:`MelodyModel`, so they never
branch on the architecture. A model is a pure ``nn.Module``: it knows nothing of data, training
loops, DDP or autocast; those are applied from the outside.

Two ways in:

* ``forward(idx, targets)`` scores a whole batch at once (training, evaluation). The logits at
  position ``t`` predict token ``t + 1`` from tokens ``<= t``.
* ``init_state`` / ``prefill`` / ``decode`` generate token by token. The state is made of plain
  tensors (a tuple or a dict of tensors), so a sampler can move, copy or reorder it without
  knowing what is inside. For any prompt, the logits they return equal the last logits of
  ``forward`` on the context the state holds.
"""

from __future__ import annotations

import inspect
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F


@dataclass
class ModelConfig:
    """Hyper-parameters of every architecture; fields an architecture does not use are ignored."""

    arch: str = "gpt"  # which model: "lstm" | "bilstm" | "gpt"
    vocab_size: int = 512  # set from the tokenizer; a few hundred for REMI + subwords
    block_size: int = 256  # training context length in tokens (gpt: also the position table size)
    n_layer: int = 4  # transformer blocks / stacked LSTM layers
    n_head: int = 4  # gpt only: attention heads; must divide n_embd
    n_embd: int = 256  # embedding width, transformer width and LSTM hidden size
    dropout: float = 0.1  # on embeddings and residual/recurrent outputs; 0.0 to disable
    bias: bool = False  # biases in Linear and LayerNorm layers (LSTM gates always have them)
    window: int = 32  # bilstm only: tokens it reads (ending at t) before predicting t + 1
    tie_weights: bool = True  # share the token embedding with the output layer (fewer params)
    pad_id: int = 0  # bilstm only: fills windows that start before the first token

    def __post_init__(self) -> None:
        check_types(self)
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd", "window"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0 <= self.pad_id < self.vocab_size:
            raise ValueError(f"pad_id ({self.pad_id}) must be a token id below vocab_size ({self.vocab_size})")
        from . import MODELS  # the registry imports this module, so look it up at call time

        if self.arch in MODELS:  # an unknown arch is build_model's error, which lists the known ones
            MODELS[self.arch].check_config(self)


_KINDS = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string", "dict": "a table"}


def check_types(config: Any) -> None:
    """Raise TypeError naming the first dataclass field whose value does not match its annotation.

    Values come from TOML, JSON and ``--set key=value`` (parsed as JSON), so a typo such as
    ``n_layer=three`` arrives as a string. An integer is accepted for a float field and turned
    into a float; a bool is never accepted as a number (``True < 2`` would pass a range check).
    """
    for f in fields(config):
        kind = str(f.type).split("|")[0].strip()
        if kind not in _KINDS:
            continue
        v = getattr(config, f.name)
        ok = {"int": isinstance(v, int) and not isinstance(v, bool),
              "float": isinstance(v, (int, float)) and not isinstance(v, bool),
              "bool": isinstance(v, bool), "str": isinstance(v, str), "dict": isinstance(v, dict)}[kind]
        if not ok:
            raise TypeError(f"{f.name} must be {_KINDS[kind]}, got {v!r}")
        if kind == "float":
            if not math.isfinite(v):
                raise ValueError(f"{f.name} must be a finite number, got {v!r}")
            object.__setattr__(config, f.name, float(v))


def size_preset(arch: str, size: str) -> dict[str, Any]:
    """Return the ``ModelConfig`` fields for a named size ("tiny" | "small" | "base"), ``arch`` included.

    "tiny" is for tests (a training step takes milliseconds on a CPU), "small" trains in
    minutes on two CPU cores (a few million parameters), "base" wants a GPU or patience. Each
    model class keeps its own table in ``sizes``. Use as
    ``ModelConfig(**size_preset("gpt", "small"), vocab_size=len(tokenizer))``: the vocabulary
    size is not part of a preset because it comes from the tokenizer.
    """
    from . import MODELS  # the registry imports this module, so look it up at call time

    if arch not in MODELS:
        raise ValueError(f"unknown arch {arch!r}; expected one of {', '.join(MODELS)}")
    sizes = MODELS[arch].sizes
    if size not in sizes:
        raise ValueError(f"unknown size {size!r} for {arch}; expected one of {', '.join(sizes)}")
    return {"arch": arch, **sizes[size]}


class MelodyModel(nn.Module, ABC):
    """Abstract next-token model over melody tokens.

    Subclasses set ``self.config``, ``self.max_context`` and an output layer ``self.lm_head``
    (used to tell the output projection apart from pure lookup tables in :meth:`num_params`),
    and list their named sizes in the class attribute ``sizes`` (see :func:`size_preset`).

    ``max_context`` is the number of tokens ``forward`` can take at once: ``block_size`` for
    the GPT (position embeddings end there), ``None`` when any length works (the LSTM, and the
    bi-LSTM which cuts its windows itself). Generation has no such limit for any model:
    ``prefill`` and ``decode`` accept any amount of input and manage their own context.
    """

    config: ModelConfig
    max_context: int | None
    lm_head: nn.Linear
    sizes: ClassVar[dict[str, dict[str, Any]]] = {}
    # Layout of a rearranged tune (melodylm.infill.FIM_ORDERS) this architecture fills best from;
    # None when either serves (attention reads any earlier position).
    fim_order: ClassVar[str | None] = None

    @classmethod
    def check_config(cls, config: ModelConfig) -> None:
        """Raise ValueError naming the field when ``config`` cannot build this architecture."""

    @abstractmethod
    def logits(self, idx: torch.Tensor) -> torch.Tensor:
        """Next-token logits at every position: ``(B, T)`` token ids -> ``(B, T, V)``."""

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Score a batch.

        Args:
            idx: token ids ``(B, T)``.
            targets: ids the logits should predict ``(B, T)``, usually ``idx`` shifted left by
                one; ``-1`` marks positions left out of the loss (padding, prompt).

        Returns:
            ``(logits, loss)``: logits ``(B, T, V)`` where position ``t`` predicts token
            ``t + 1`` from tokens ``<= t``, and the mean cross-entropy over targets ``!= -1``
            (``None`` without targets).
        """
        logits = self.logits(idx)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)
        return logits, loss

    @abstractmethod
    def init_state(self, batch_size: int, device: torch.device | str) -> Any:
        """Generation state for ``batch_size`` sequences that have seen no token yet."""

    @abstractmethod
    def prefill(self, idx: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """Consume a prompt ``(B, T)`` of any length ``T >= 1``; return next-token logits ``(B, V)``
        and the new state."""

    def decode(self, idx: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """Consume one new token per sequence ``(B, 1)``; return next-token logits ``(B, V)`` and
        the new state. The default is :meth:`prefill` of one token; models override it when a
        single step has a faster path."""
        if idx.dim() != 2 or idx.size(1) != 1:
            raise ValueError(f"decode takes one token per sequence (B, 1), got {tuple(idx.shape)}")
        return self.prefill(idx, state)

    def configure_optimizers(
        self, weight_decay: float, learning_rate: float, betas: tuple[float, float], device_type: str
    ) -> torch.optim.AdamW:
        """AdamW with weight decay on matrices (linear, embedding, LSTM weights) only.

        Decaying biases and LayerNorm gains only pulls them towards a meaningless zero, so every
        parameter with fewer than two dimensions goes in a group without decay.

        The fused kernel is used on CUDA and on CPU: on CPU it is one vectorised loop per tensor
        instead of a dozen elementwise ops, measured ~2.8x faster than the default for a
        5M-parameter GPT on one thread and 5-90x on two busy cores (BENCHMARKS.md, "Training
        speed").
        """
        params = [p for p in self.parameters() if p.requires_grad]  # tied weights appear once
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        groups = [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        fused = device_type in ("cuda", "cpu") and "fused" in inspect.signature(torch.optim.AdamW).parameters
        extra = {"fused": True} if fused else {}
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, **extra)

    def num_params(self, non_embedding: bool = True) -> int:
        """Number of parameters, each shared tensor counted once.

        With ``non_embedding``, lookup tables that do no computation are left out: position
        embeddings, and the token embedding unless it doubles as the output layer (tied).
        This is the count that scaling laws relate to compute.
        """
        params = {id(p): p for p in self.parameters()}
        n = sum(p.numel() for p in params.values())
        if non_embedding:
            head = self.lm_head.weight
            tables = {id(m.weight): m.weight for m in self.modules() if isinstance(m, nn.Embedding)}
            n -= sum(w.numel() for key, w in tables.items() if w is not head)
        return n
