"""Generation speed on CPU (fp32): our GPT with its KV cache, without it, and Hugging Face
``GPT2LMHeadModel.generate`` on a GPT-2 of the same shape with the same weights.

    python bench/generate_speed.py               # 45 minutes on 2 cores shared with other jobs
    python bench/generate_speed.py --rounds 1    # quicker, noisier
    python bench/generate_speed.py --threads 2   # torch's default here; slower when the machine is busy
    python bench/generate_speed.py --only ours-cache,hf-generate --rounds 5   # the ratio alone

Shape: the GPT of bench/train_speed.py (6 layers, 8 heads, width 256, biases on, exact GELU,
dropout 0) with a context of 1,024 so that 1,024 new tokens fit without sliding; vocabulary of
the default REMI tokenizer. GPT-2 gets our weights copied in, so both compute the same function
and greedy decoding must give the same tokens (checked and printed).

Decoding: greedy (``top_k=1`` / ``do_sample=False``) from BOS alone, the end token never
chosen (``ignore_eos`` / ``min_new_tokens``), so every run makes exactly the tokens asked for.
The speed comparison runs unconstrained; ours with the grammar constraint is a separate row.
A second pair of rows samples (temperature 1, every token) instead of taking the argmax.

Timing: every variant runs once per round, in turn, so a machine that gets busier or quieter
slows all of them alike; we report the median over rounds (after one untimed warm-up round of
short runs) as new tokens per second, batch x tokens / wall time, prefill included.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch

from melodylm.sampling import generate_ids
from melodylm.tokenizer.grammar import Grammar
from melodylm.models import ModelConfig, build_model
from melodylm.tokenizer import MelodyTokenizer

SHAPE = dict(n_layer=6, n_head=8, n_embd=256, block_size=1024, dropout=0.0, bias=True)


def models(tok: MelodyTokenizer):
    """Our GPT and a GPT-2 holding the same weights, both in eval mode."""
    import transformers

    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    ours = build_model(ModelConfig(arch="gpt", vocab_size=tok.vocab_size, pad_id=tok.pad_id, **SHAPE)).eval()
    config = transformers.GPT2Config(
        vocab_size=tok.vocab_size, n_positions=SHAPE["block_size"], n_embd=256, n_layer=6, n_head=8,
        activation_function="gelu", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=1e-5,
        # GPT-2's default ids (50256) lie outside this vocabulary and make it warn: name ours.
        bos_token_id=tok.bos_id, eos_token_id=tok.eos_id, pad_token_id=tok.pad_id,
    )
    hf = transformers.GPT2LMHeadModel._from_config(config, attn_implementation="sdpa").eval()
    transposed = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
    hf_state = hf.state_dict()
    with torch.no_grad():  # our Linear stores (out, in), GPT-2's Conv1D (in, out)
        for name, tensor in ours.state_dict().items():
            if name != "lm_head.weight":  # tied to the token embedding
                hf_state[name].copy_(tensor.t() if name.endswith(transposed) else tensor)
    return ours, hf


def variants(ours, hf, tok: MelodyTokenizer, grammar: Grammar) -> dict[str, Callable[[int, int], list[list[int]]]]:
    """name -> f(batch, new_tokens) returning the new token ids of each sequence."""

    def ours_run(use_cache: bool, constrain: bool, sample: bool = False):
        def f(batch: int, n: int) -> list[list[int]]:
            g = torch.Generator().manual_seed(0)
            out = generate_ids(ours, tok, n=batch, max_new_tokens=n, top_k=None if sample else 1, generator=g,
                               constrain=constrain, use_cache=use_cache, ignore_eos=True, grammar=grammar)
            return [x.ids.tolist() for x in out]
        return f

    def hf_run(sample: bool = False):
        def f(batch: int, n: int) -> list[list[int]]:
            torch.manual_seed(0)
            idx = torch.full((batch, 1), tok.bos_id, dtype=torch.long)
            with torch.no_grad():
                out = hf.generate(idx, attention_mask=torch.ones_like(idx), max_new_tokens=n, min_new_tokens=n,
                                  do_sample=sample, top_k=0 if sample else None, top_p=None, temperature=1.0,
                                  use_cache=True, pad_token_id=tok.pad_id, eos_token_id=tok.eos_id)
            return out[:, 1:].tolist()
        return f

    return {
        "ours-cache": ours_run(True, False),
        "ours-no-cache": ours_run(False, False),
        "hf-generate": hf_run(),
        "ours-cache-constrained": ours_run(True, True),
        "ours-cache-sample": ours_run(True, False, sample=True),
        "hf-generate-sample": hf_run(sample=True),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (median over them)")
    parser.add_argument("--tokens", type=int, default=1024, help="new tokens of the single sequence")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--batch-tokens", type=int, default=1024, help="new tokens per sequence of the batch")
    parser.add_argument("--batch-no-cache-tokens", type=int, default=128,
                        help="the no-cache run of the batch makes fewer tokens (it grows quadratically)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for every variant (default 1: on 2 shared cores a second thread "
                             "mostly spins, 2-4x slower per step here)")
    parser.add_argument("--only", default=None,
                        help="comma-separated variants to run (default: all), e.g. ours-cache,hf-generate")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import transformers

    tok = MelodyTokenizer()
    ours, hf = models(tok)
    grammar = Grammar(tok)
    runs = variants(ours, hf, tok, grammar)
    if args.only:
        unknown = sorted(set(args.only.split(",")) - set(runs))
        if unknown:
            parser.error(f"--only: unknown variant {', '.join(unknown)}; expected some of {', '.join(runs)}")
        runs = {k: v for k, v in runs.items() if k in args.only.split(",")}
    plan = [(name, 1, args.tokens) for name in runs]
    plan += [(name, args.batch, args.batch_no_cache_tokens if name == "ours-no-cache" else args.batch_tokens)
             for name in ("ours-cache", "ours-no-cache", "hf-generate", "ours-cache-constrained") if name in runs]
    load_start = os.getloadavg()[0]
    for name, batch, _ in plan:  # warm-up: allocator, kernels, lazy imports
        runs[name](batch, 8)
    times: dict[tuple[str, int], list[float]] = {(name, batch): [] for name, batch, _ in plan}
    tokens: dict[tuple[str, int], list[list[int]]] = {}
    loads = []
    for _ in range(args.rounds):
        loads.append(os.getloadavg()[0])
        for name, batch, n in plan:
            t0 = time.perf_counter()
            tokens[(name, batch)] = runs[name](batch, n)
            times[(name, batch)].append(time.perf_counter() - t0)
    load_end = os.getloadavg()[0]

    print(f"torch {torch.__version__}, transformers {transformers.__version__}, python {platform.python_version()}, "
          f"{torch.get_num_threads()} threads, {os.cpu_count()} cpus, fp32")
    print(f"GPT: 6 layers x 8 heads x 256 wide, biases, context {SHAPE['block_size']}, vocab {tok.vocab_size} "
          f"(REMI); {sum(p.numel() for p in ours.parameters()) / 1e6:.2f}M parameters; the same weights in GPT-2")
    print(f"\n{'variant':<24} {'batch':>5} {'new tokens':>10} {'median s':>9} {'min..max s':>13} {'tokens/s':>9}")
    speed = {}
    n_of = {(name, batch): n for name, batch, n in plan}
    for name, batch, n in plan:
        t = times[(name, batch)]
        med = statistics.median(t)
        speed[(name, batch)] = batch * n / med
        print(f"{name:<24} {batch:>5} {n:>10} {med:>9.2f} {min(t):>6.2f}..{max(t):<6.2f} {speed[(name, batch)]:>9.0f}")
    print(f"(median of {args.rounds} interleaved rounds; greedy unless 'sample'; the end token never chosen)")
    for batch in (1, args.batch):
        s = {k[0]: v for k, v in speed.items() if k[1] == batch}
        ratios = [(label, a, b) for label, a, b in (
            ("cache / no-cache", "ours-cache", "ours-no-cache"), ("ours / HF generate", "ours-cache", "hf-generate"),
            ("constrained / unconstrained", "ours-cache-constrained", "ours-cache"),
            ("sampling ours / HF", "ours-cache-sample", "hf-generate-sample")) if a in s and b in s]
        # per round: the two variants ran one after the other, so a busy spell slows both
        paired = {label: statistics.median(tb / ta * n_of[(a, batch)] / n_of[(b, batch)]
                                           for ta, tb in zip(times[(a, batch)], times[(b, batch)]))
                  for label, a, b in ratios}
        print(f"batch {batch}: " + ", ".join(f"{label} {s[a] / s[b]:.2f}x (per round {paired[label]:.2f}x)"
                                             for label, a, b in ratios))
    same = [f"ours == HF generate: {tokens[('ours-cache', 1)] == tokens[('hf-generate', 1)]}"] \
        if "hf-generate" in runs and "ours-cache" in runs else []
    if "ours-no-cache" in runs and "ours-cache" in runs:
        same_nc = [t[: args.batch_no_cache_tokens] for t in tokens[("ours-cache", args.batch)]] == \
            tokens[("ours-no-cache", args.batch)]
        same.append(f"cache == no-cache: {tokens[('ours-cache', 1)] == tokens[('ours-no-cache', 1)]} (batch 1), "
                    f"{same_nc} (batch {args.batch})")
    print("greedy tokens: " + "; ".join(same))
    print(f"load average {load_start:.1f} at the start, {load_end:.1f} at the end, "
          f"median {statistics.median(loads):.1f} at the rounds' starts")
    print(json.dumps({f"{k[0]}@{k[1]}": round(v, 1) for k, v in speed.items()}))


if __name__ == "__main__":
    main()
