"""A bidirectional LSTM that predicts the next token from a fixed window of past tokens."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .base import MelodyModel, ModelConfig


class BiLSTM(MelodyModel):
    """Window model: a bidirectional LSTM reads tokens ``t - W + 1 .. t`` and predicts ``t + 1``.

    Reading the window in both directions lets every token be seen with both its left and
    right neighbours inside the window, yet the model stays causal: the window ends at ``t``
    and never contains the token it predicts. Windows that start before the first token are
    left-padded with ``pad_id``, in training and in generation alike.

    The final states of both directions are concatenated, projected to the embedding width and
    passed to the output layer (tied to the embedding by default).

    ``max_context`` is ``None``: ``forward`` cuts every position's window itself, so inputs of any
    length work, but no prediction sees more than ``window`` tokens. Generation state is the
    last ``window`` token ids ``(B, window)``; each step re-reads the whole window (a
    bidirectional recurrence cannot be updated one token at a time).
    """

    # It reads only its last ``window`` tokens: with the suffix first it would see the prefix while
    # writing the middle, so it needs the suffix right before the middle.
    fim_order = "psm"
    # Every position runs its own window, so compute grows with window * n_embd^2 per token.
    sizes = {
        "tiny": dict(n_layer=1, n_embd=32, block_size=32, window=8),
        "small": dict(n_layer=2, n_embd=192, block_size=64, window=32),  # cost grows with block_size x window
        "base": dict(n_layer=2, n_embd=512, block_size=256, window=64),
    }

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.max_context = None
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.lstm = nn.LSTM(
            config.n_embd,
            config.n_embd,
            num_layers=config.n_layer,
            batch_first=True,
            bidirectional=True,
            dropout=config.dropout if config.n_layer > 1 else 0.0,
        )
        self.proj = nn.Linear(2 * config.n_embd, config.n_embd, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_weights:
            self.lm_head.weight = self.wte.weight
        for module in (self.wte, self.proj, self.lm_head):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        # Inputs of a useful size for the recurrence (see lstm.py: std 0.02 stalls on the unigram).
        nn.init.uniform_(self.wte.weight, -0.5, 0.5)
        if self.proj.bias is not None:
            nn.init.zeros_(self.proj.bias)

    def _read(self, windows: torch.Tensor) -> torch.Tensor:
        """Next-token logits for a batch of windows ``(N, W)`` -> ``(N, V)``."""
        x = self.drop(self.wte(windows))  # (N, W, C)
        _, (h, _) = self.lstm(x)  # h: (n_layer * 2, N, C), last layer's two directions last
        # Forward direction: state after the window's last token; backward: after its first.
        both = torch.cat([h[-2], h[-1]], dim=-1)  # (N, 2C)
        return self.lm_head(self.drop(self.proj(both)))

    def logits(self, idx: torch.Tensor) -> torch.Tensor:
        B, T = idx.shape
        W = self.config.window
        padded = F.pad(idx, (W - 1, 0), value=self.config.pad_id)  # (B, W - 1 + T)
        windows = padded.unfold(1, W, 1)  # (B, T, W): row t holds tokens t - W + 1 .. t
        return self._read(windows.reshape(B * T, W)).view(B, T, -1)

    def init_state(self, batch_size: int, device: torch.device | str) -> torch.Tensor:
        return torch.full((batch_size, self.config.window), self.config.pad_id, dtype=torch.long, device=device)

    @torch.no_grad()
    def prefill(self, idx: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if idx.dim() != 2 or idx.size(1) < 1:
            raise ValueError(f"prefill takes token ids (B, T) with T >= 1, got {tuple(idx.shape)}")
        window = torch.cat([state, idx], dim=1)[:, -self.config.window :]
        return self._read(window), window
