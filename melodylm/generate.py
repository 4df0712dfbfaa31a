"""Prompt -> tokens -> sampling -> MIDI. One generation loop for every architecture.

The loop talks to models only through ``init_state`` / ``prefill`` / ``decode``; the GPT's KV
cache, the LSTM's state and the bi-LSTM's window live inside the state object.
"""

from __future__ import annotations

import numpy as np
import torch


def filter_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None) -> torch.Tensor:
    """Temperature, then top-k, then nucleus (top-p) filtering of ``(B, V)`` logits."""
    logits = logits.float() / max(temperature, 1e-8)
    if top_k:
        k = min(int(top_k), logits.size(-1))
        kth = torch.topk(logits, k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and 0 < top_p < 1:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = torch.softmax(sorted_logits, dim=-1)
        # drop a token when the mass before it already reaches top_p (the first token always stays)
        drop = (torch.cumsum(probs, dim=-1) - probs) >= top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return logits


@torch.no_grad()
def sample_ids(model, tokenizer, n: int = 1, max_new_tokens: int = 256, prompt: list[int] | None = None,
               temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
               generator: torch.Generator | None = None, device: str | torch.device = "cpu") -> list[np.ndarray]:
    """Sample ``n`` continuations of ``prompt`` (model ids; BOS is prepended when missing).

    Returns the new model ids of each sample, up to and excluding the end token.
    """
    bos, eos = tokenizer.bos_id, tokenizer.eos_id
    prompt = list(prompt or [])
    if not prompt or prompt[0] != bos:
        prompt = [bos] + prompt
    idx = torch.tensor([prompt] * n, dtype=torch.long, device=device)
    state = model.init_state(n, device)
    logits, state = model.prefill(idx, state)
    out = torch.empty(n, 0, dtype=torch.long)
    done = torch.zeros(n, dtype=torch.bool)
    for _ in range(max_new_tokens):
        probs = torch.softmax(filter_logits(logits, temperature, top_k, top_p), dim=-1).cpu()
        nxt = torch.multinomial(probs, 1, generator=generator)
        nxt[done] = eos
        out = torch.cat([out, nxt], dim=1)
        done |= nxt[:, 0] == eos
        if bool(done.all()):
            break
        logits, state = model.decode(nxt.to(device), state)
    result = []
    for row in out.tolist():
        result.append(np.asarray(row[:row.index(eos)] if eos in row else row, dtype=np.int64))
    return result
