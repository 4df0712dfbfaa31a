"""A decoder-only transformer (GPT-2 layout) with a key/value cache for generation.

Pre-norm blocks (LayerNorm before attention and MLP), exact GELU, learned position
embeddings, fused query/key/value projection and ``F.scaled_dot_product_attention``. With
``bias=True`` and the weights copied over, it computes the same function as Hugging Face's
``GPT2LMHeadModel`` configured with ``activation_function="gelu"`` (tests check this).

Attention weights get no dropout (on CPU it roughly halves training speed); ``dropout``
applies to the embeddings and to both residual branches.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .base import MelodyModel, ModelConfig

KVCache = tuple[torch.Tensor, torch.Tensor, int]  # (keys, values, tokens already cached) of one layer


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention that can read from and write to a key/value cache."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # one matmul for q, k, v
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        if cache is None or cache[2] == 0:
            if cache is not None:
                cache[0][:, :, :T] = k
                cache[1][:, :, :T] = v
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            k_buf, v_buf, start = cache
            k_buf[:, :, start : start + T] = k
            v_buf[:, :, start : start + T] = v
            k, v = k_buf[:, :, : start + T], v_buf[:, :, : start + T]
            # is_causal=True aligns its mask top-left: query i would see keys 0..i only, not the
            # cached ones. A single new query may see every key; a chunk needs its own mask.
            mask = None
            if T > 1:
                mask = torch.ones(T, start + T, dtype=torch.bool, device=x.device).tril(diagonal=start)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        y = y.transpose(1, 2).reshape(B, T, C)  # re-assemble heads side by side
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        # eps 1e-5 is PyTorch's default and GPT-2's, so weights can be exchanged with it.
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=1e-5, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=1e-5, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cache)
        return x + self.mlp(self.ln_2(x))


class GPT(MelodyModel):
    """GPT next-token model.

    ``max_context`` is ``block_size``: ``forward`` refuses longer inputs because the position
    table ends there. Generation state is a dict of tensors, batch first:
    ``{"k": (B, n_layer, n_head, block_size, head_size), "v": same, "tokens": (B, n)}`` where
    ``tokens`` are the ``n`` tokens whose keys and values fill the first ``n`` cache slots, at
    positions ``0 .. n-1``. ``prefill`` and ``decode`` write into the cache in place (and return
    it): copy a state before branching from it.

    When a new token would not fit, the cache is rebuilt from the last ``slide_keep`` tokens
    (three quarters of ``block_size``), so positions stay inside the table and every prediction
    sees at least ``slide_keep`` tokens; the rebuild costs one prefill every
    ``block_size - slide_keep`` tokens.
    """

    # 6 x 6 x 384 ("base") is the shape of nanoGPT's character-level model.
    sizes = {
        "tiny": dict(n_layer=2, n_head=2, n_embd=32, block_size=32),
        "small": dict(n_layer=4, n_head=4, n_embd=256, block_size=256),
        "base": dict(n_layer=6, n_head=6, n_embd=384, block_size=256),
    }

    @classmethod
    def check_config(cls, config: ModelConfig) -> None:
        """Attention heads split the width evenly."""
        if config.n_embd % config.n_head:
            raise ValueError(f"n_embd ({config.n_embd}) must be divisible by n_head ({config.n_head})")

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.check_config(config)
        self.config = config
        self.max_context = config.block_size
        self.slide_keep = max(1, config.block_size - config.block_size // 4)
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                wpe=nn.Embedding(config.block_size, config.n_embd),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
                ln_f=nn.LayerNorm(config.n_embd, eps=1e-5, bias=config.bias),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_weights:
            self.lm_head.weight = self.transformer.wte.weight
        self.apply(self._init_weights)
        # GPT-2: scale the projections that write into the residual stream by 1/sqrt(2 * n_layer),
        # so the stream's variance does not grow with depth at initialisation.
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def _run(self, idx: torch.Tensor, start: int = 0, state: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Hidden states -> logits for ``idx`` placed at positions ``start ..``, through the cache if given."""
        T = idx.size(1)
        if start + T > self.config.block_size:
            raise ValueError(
                f"sequence of {start + T} tokens is longer than the GPT context (block_size={self.config.block_size})"
            )
        pos = torch.arange(start, start + T, dtype=torch.long, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))  # (B, T, C)
        for i, block in enumerate(self.transformer.h):
            cache = None if state is None else (state["k"][:, i], state["v"][:, i], start)
            x = block(x, cache)
        return self.lm_head(self.transformer.ln_f(x))  # (B, T, V)

    def logits(self, idx: torch.Tensor) -> torch.Tensor:
        return self._run(idx)

    def init_state(self, batch_size: int, device: torch.device | str) -> dict[str, torch.Tensor]:
        c = self.config
        shape = (batch_size, c.n_layer, c.n_head, c.block_size, c.n_embd // c.n_head)
        dtype = self.lm_head.weight.dtype
        return {
            "k": torch.zeros(shape, dtype=dtype, device=device),
            "v": torch.zeros(shape, dtype=dtype, device=device),
            "tokens": torch.zeros(batch_size, 0, dtype=torch.long, device=device),
        }

    @torch.no_grad()
    def prefill(
        self, idx: torch.Tensor, state: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if idx.dim() != 2 or idx.size(1) < 1:
            raise ValueError(f"prefill takes token ids (B, T) with T >= 1, got {tuple(idx.shape)}")
        start = state["tokens"].size(1)
        tokens = torch.cat([state["tokens"], idx], dim=1)
        if tokens.size(1) > self.config.block_size:
            # Slide: re-encode the most recent tokens from position 0 (old keys carry old positions).
            tokens = tokens[:, -self.slide_keep :]
            idx, start = tokens, 0
        logits = self._run(idx, start, state)
        return logits[:, -1], {"k": state["k"], "v": state["v"], "tokens": tokens}
