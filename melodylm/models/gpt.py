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
    ``{"kv": (B, n_layer, 2, n_head, block_size, head_size), "tokens": (B, n)}`` (keys at index 0
    of the third axis, values at 1) where ``tokens`` are the ``n`` tokens whose keys and values
    fill the first ``n`` cache slots, at positions ``0 .. n-1``; slots past ``n`` hold garbage
    and are never read. ``prefill`` and ``decode`` write into the cache in place (and return
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
            cache = None if state is None else (state["kv"][:, i, 0], state["kv"][:, i, 1], start)
            x = block(x, cache)
        return self.lm_head(self.transformer.ln_f(x))  # (B, T, V)

    def logits(self, idx: torch.Tensor) -> torch.Tensor:
        return self._run(idx)

    def init_state(self, batch_size: int, device: torch.device | str) -> dict[str, torch.Tensor]:
        c = self.config
        shape = (batch_size, c.n_layer, 2, c.n_head, c.block_size, c.n_embd // c.n_head)
        # Uninitialised: a slot is written before it is read. Zeroing the whole cache cost 0.2 s
        # per call at batch 8 for a 6-layer, 1,024-token GPT (100 MB), 0.8 ms per token of 256.
        return {
            "kv": torch.empty(shape, dtype=self.lm_head.weight.dtype, device=device),
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
        return logits[:, -1], {"kv": state["kv"], "tokens": tokens}

    @torch.no_grad()
    def decode(
        self, idx: torch.Tensor, state: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One token per sequence through the cache, in plain tensor calls.

        The same kernels on the same values as :meth:`prefill` of one token, so the logits are
        bit-identical (tests check it), without the module calls, the dropout and the head
        reshuffling around them: 12 tensor calls per block instead of about 40. A cache that
        would overflow slides through :meth:`prefill`; so does training mode (dropout).
        """
        if idx.dim() != 2 or idx.size(1) != 1:
            raise ValueError(f"decode takes one token per sequence (B, 1), got {tuple(idx.shape)}")
        start = state["tokens"].size(1)
        if start >= self.config.block_size or self.training:
            return self.prefill(idx, state)
        tokens = torch.cat([state["tokens"], idx], dim=1)
        return self._step(idx[:, 0], start, state["kv"]), {"kv": state["kv"], "tokens": tokens}

    def _step(self, idx: torch.Tensor, start: int, kv: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, V)`` of ids ``(B,)`` at position ``start``, writing their keys and values."""
        tr, c = self.transformer, self.config
        B, C, nh = idx.size(0), c.n_embd, c.n_head
        slot = kv[:, :, :, :, start]  # (B, n_layer, 2, nh, hs): where this token's keys and values go
        seen = kv[:, :, :, :, : start + 1]  # (B, n_layer, 2, nh, start + 1, hs)
        x = F.embedding(idx, tr.wte.weight) + tr.wpe.weight[start]  # (B, C)
        for i, block in enumerate(tr.h):
            attn, mlp = block.attn, block.mlp
            h = F.layer_norm(x, (C,), block.ln_1.weight, block.ln_1.bias, 1e-5)
            qkv = F.linear(h, attn.c_attn.weight, attn.c_attn.bias).view(B, 3, nh, 1, C // nh)
            slot[:, i] = qkv[:, 1:, :, 0]  # keys and values in one copy
            k, v = seen[:, i].unbind(1)
            # One query may see every cached key, so no mask (is_causal would align it top-left).
            y = F.scaled_dot_product_attention(qkv[:, 0], k, v)  # (B, nh, 1, hs)
            x = x + F.linear(y.view(B, C), attn.c_proj.weight, attn.c_proj.bias)
            h = F.layer_norm(x, (C,), block.ln_2.weight, block.ln_2.bias, 1e-5)
            h = F.gelu(F.linear(h, mlp.c_fc.weight, mlp.c_fc.bias))
            x = x + F.linear(h, mlp.c_proj.weight, mlp.c_proj.bias)
        x = F.layer_norm(x, (C,), tr.ln_f.weight, tr.ln_f.bias, 1e-5)
        return F.linear(x, self.lm_head.weight, self.lm_head.bias)
