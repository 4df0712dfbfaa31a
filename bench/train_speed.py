"""Training speed on CPU (fp32): our GPT against Hugging Face GPT-2 of the same shape, with the
LSTM and bi-LSTM alongside.

    python bench/train_speed.py              # ~4 minutes on 2 shared cores, longer under heavy load
    python bench/train_speed.py --threads 1  # steadier when other jobs share the cores
    python bench/train_speed.py --rounds 3   # quicker, noisier

Memory first: each model trains ``--memory-steps`` steps in a fresh interpreter that reports
its peak resident set (``resource.getrusage``) before building the model (imports) and after
training, so no model shares allocator caches with another. (Linux carries the parent's peak
into a child, so the parent spawns them before it builds any model or imports transformers.)

Speed next: every model lives in one process and the models take turns, one training step
each per round, so a machine that gets busier or quieter during the run slows all of them
alike. The first ``--warmup`` rounds are dropped; tokens/s is batch x context / median step.

Same shape for both GPTs: 6 layers, 8 heads, width 256, context 256, batch 16, vocabulary 512,
exact GELU, LayerNorm eps 1e-5, weight tying, dropout 0 everywhere. With biases on ("gpt") ours
is the same function as GPT-2 (tests/test_models.py copies weights and compares logits);
"gpt-nobias" is our default config. Both train with fused AdamW (ours through
``configure_optimizers``; GPT-2 as the Hugging Face Trainer sets it up on torch >= 2.8), lr 3e-4,
``zero_grad(set_to_none=True)``, loss over every position.

Then, for each GPT, where a step's time goes (``torch.profiler``, self time of each op over
``--profile-steps`` steps): matrix products (``mm``/``addmm``/``bmm``), the SDPA attention kernels,
and everything else. Matrix-product speed in GFLOP/s comes from the FLOPs a step must do
(6 x tokens x matrix parameters, the tied output layer included), beside one large square matmul
on this machine. The ceiling line answers: how much faster than GPT-2 could ours be if all its
time outside matrix products and attention were removed?

Last, causal attention alone at the GPT's shape in three implementations (the SDPA flash kernel
both GPTs use, SDPA's math backend, matmul + masked softmax written out), and one AdamW step
over the GPT's parameters in PyTorch's three implementations.

``--models gpt-compile`` adds ours through ``torch.compile`` (its first steps compile: ~30 s).
"""

from __future__ import annotations

import os
import sys

# Python puts this script's folder first on sys.path, and bench/ holds a tokenize.py that would
# shadow the standard library module torch imports (through inspect -> linecache).
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import torch  # noqa: E402

from melodylm.models import ModelConfig, build_model  # noqa: E402

VOCAB, BLOCK, BATCH = 512, 256, 16
BILSTM_BATCH = 1  # each position reads its own 32-token window both ways: ~64x an LSTM's work per token
LR, BETAS, WD = 3e-4, (0.9, 0.95), 0.1
GPT_SHAPE = dict(n_layer=6, n_head=8, n_embd=256, block_size=BLOCK, vocab_size=VOCAB, dropout=0.0)
DEFAULT_MODELS = "gpt,gpt-nobias,hf-gpt2-sdpa,lstm,bilstm"

Run = tuple[torch.nn.Module, torch.optim.Optimizer, Callable[[torch.Tensor], torch.Tensor], int]


def hf_gpt2(attn_implementation: str) -> torch.nn.Module:
    import transformers

    transformers.logging.set_verbosity_error()
    config = transformers.GPT2Config(
        vocab_size=VOCAB, n_positions=BLOCK, n_embd=256, n_layer=6, n_head=8,
        activation_function="gelu",  # exact GELU, the same function as ours
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=1e-5,
        # The default ids (50256) lie outside a 512-token vocabulary and make GPT-2 warn.
        bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )
    model = transformers.GPT2LMHeadModel._from_config(config, attn_implementation=attn_implementation)
    assert model.config._attn_implementation == attn_implementation
    return model


def make(name: str) -> Run:
    """Model, optimiser, a function from a (B, T + 1) batch to the loss, and the batch size."""
    torch.manual_seed(0)
    if name.startswith("hf-gpt2-"):
        model = hf_gpt2(name.removeprefix("hf-gpt2-")).train()
        opt = torch.optim.AdamW(model.parameters(), lr=LR, betas=BETAS, weight_decay=WD, fused=True)
        # GPT-2 shifts the labels itself: it reads T tokens and predicts the last T - 1 of them.
        return model, opt, lambda b: model(input_ids=b[:, 1:], labels=b[:, 1:]).loss, BATCH
    configs = {
        "gpt": ModelConfig(arch="gpt", bias=True, **GPT_SHAPE),
        "gpt-nobias": ModelConfig(arch="gpt", bias=False, **GPT_SHAPE),
        "lstm": ModelConfig(arch="lstm", n_layer=2, n_embd=256, block_size=BLOCK, vocab_size=VOCAB, dropout=0.0),
        "bilstm": ModelConfig(arch="bilstm", n_layer=2, n_embd=256, window=32, block_size=BLOCK, vocab_size=VOCAB,
                              dropout=0.0),
    }
    configs["gpt-compile"] = configs["gpt"]  # ours with biases through torch.compile (inductor's C++ kernels)
    model = build_model(configs[name]).train()
    forward = torch.compile(model) if name == "gpt-compile" else model
    opt = model.configure_optimizers(WD, LR, BETAS, "cpu")
    return model, opt, lambda b: forward(b[:, :-1], b[:, 1:])[1], BILSTM_BATCH if name == "bilstm" else BATCH


def batch_for(batch_size: int, seed: int) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch_size, BLOCK + 1), generator=torch.Generator().manual_seed(seed))


def train_step(run: Run, seed: int) -> float:
    model, opt, loss_fn, batch_size = run
    batch = batch_for(batch_size, seed)
    t0 = time.perf_counter()
    loss = loss_fn(batch)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return time.perf_counter() - t0


def memory_worker(name: str, steps: int) -> None:
    """In a fresh interpreter: peak RSS (MiB) after imports, then after ``steps`` training steps."""
    if name.startswith("hf-gpt2-"):
        import transformers  # noqa: F401  (count the import in "before", not in training)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    run = make(name)
    for i in range(steps):  # AdamW state appears at the first step; the peak by the second
        train_step(run, i)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"before_mib": before, "peak_mib": after}))


MATMUL_OPS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"}


def kernel_split(run: Run, steps: int) -> dict[str, float]:
    """Seconds per step of self op time in matrix products, SDPA attention, and everything else."""
    from torch.profiler import ProfilerActivity, profile

    train_step(run, 10_000)  # warm: the profile must not see first-call allocations
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(steps):
            train_step(run, 10_001 + i)
    split = {"matmul": 0.0, "attention": 0.0, "other": 0.0}
    for ev in prof.key_averages():
        kind = ("matmul" if ev.key in MATMUL_OPS
                else "attention" if "scaled_dot_product" in ev.key or "flash_attention" in ev.key else "other")
        split[kind] += ev.self_cpu_time_total / 1e6 / steps  # microseconds in the profiler
    return split


def matmul_flops_per_step(model: torch.nn.Module, batch_size: int) -> float:
    """Forward + backward FLOPs of the matrix products outside attention: 2 x 3 x tokens x weights.

    Every 2-D weight except the position table multiplies each token once (the token table via
    the tied output layer); backward costs twice the forward.
    """
    weights = sum(p.numel() for n, p in model.named_parameters() if p.dim() == 2 and "wpe" not in n)
    return 6.0 * batch_size * BLOCK * weights


def square_matmul_gflops(n: int = 2048, repeats: int = 7) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e9


def attention_kernels(rounds: int) -> dict[str, tuple[float, float]]:
    """Median ms (forward, backward) of causal attention at the GPT's shape, three ways, interleaved."""
    from torch.nn import functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    n_head, hs = GPT_SHAPE["n_head"], GPT_SHAPE["n_embd"] // GPT_SHAPE["n_head"]
    mask = torch.ones(BLOCK, BLOCK, dtype=torch.bool).tril()

    def flash(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    def math(q, k, v):
        with sdpa_kernel(SDPBackend.MATH):
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    def written_out(q, k, v):
        s = (q @ k.transpose(-1, -2)) * hs**-0.5
        return torch.softmax(s.masked_fill(~mask, float("-inf")), dim=-1) @ v

    kinds = {"sdpa flash (ours, GPT-2 sdpa)": flash, "sdpa math backend": math, "matmul + softmax": written_out}
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in kinds}
    gen = torch.Generator().manual_seed(0)
    for r in range(rounds + 2):
        for k, fn in kinds.items():
            q, kk, v = (torch.randn(BATCH, n_head, BLOCK, hs, generator=gen, requires_grad=True) for _ in range(3))
            grad = torch.randn(BATCH, n_head, BLOCK, hs, generator=gen)
            t0 = time.perf_counter()
            y = fn(q, kk, v)
            t1 = time.perf_counter()
            y.backward(grad)
            if r >= 2:
                times[k].append((t1 - t0, time.perf_counter() - t1))
    return {k: (statistics.median(f for f, _ in v) * 1e3, statistics.median(b for _, b in v) * 1e3)
            for k, v in times.items()}


def optimizer_steps(rounds: int) -> dict[str, float]:
    """Median ms of one AdamW step over the GPT's parameters, per implementation, interleaved."""
    params = [p for p in build_model(ModelConfig(arch="gpt", **GPT_SHAPE)).parameters()]
    for p in params:
        p.grad = torch.randn_like(p)
    kinds = {"for-loop": dict(foreach=False), "foreach": dict(foreach=True), "fused": dict(fused=True)}
    opts = {k: torch.optim.AdamW(params, lr=LR, weight_decay=WD, **kw) for k, kw in kinds.items()}
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for r in range(rounds + 2):
        for k, opt in opts.items():
            t0 = time.perf_counter()
            opt.step()
            if r >= 2:
                times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6, help="timed rounds, one step per model each")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    parser.add_argument("--models", default=DEFAULT_MODELS,
                        help=f"comma-separated, from {DEFAULT_MODELS},hf-gpt2-eager,gpt-compile")
    parser.add_argument("--memory-steps", type=int, default=2)
    parser.add_argument("--profile-steps", type=int, default=2, help="profiled steps per GPT (0: no profile)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice, one per core)")
    parser.add_argument("--memory-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_flush_denormal(True)  # the bi-LSTM backward otherwise runs into denormals (~15x slower)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_worker:
        memory_worker(args.memory_worker, args.memory_steps)
        return

    names = args.models.split(",")
    t_start = time.perf_counter()
    load_start = os.getloadavg()[0]
    memory = {}
    for name in names:
        out = subprocess.run(
            [sys.executable, __file__, "--memory-worker", name, "--memory-steps", str(args.memory_steps)]
            + (["--threads", str(args.threads)] if args.threads else []),
            check=True, capture_output=True, text=True,
        )
        memory[name] = json.loads(out.stdout.strip().splitlines()[-1])

    import transformers

    runs = {name: make(name) for name in names}
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(args.warmup + args.rounds):
        for name in names:
            dt = train_step(runs[name], r)
            if r >= args.warmup:
                times[name].append(dt)
    gpts = [n for n in names if "gpt" in n and n != "gpt-compile"]  # inductor's kernels go by other names
    splits = {n: kernel_split(runs[n], args.profile_steps) for n in gpts} if args.profile_steps else {}
    peak = square_matmul_gflops() if splits else 0.0
    attn_ms = attention_kernels(args.rounds + 4) if splits else {}
    opt_ms = optimizer_steps(args.rounds + 4)
    load_end = os.getloadavg()[0]

    print(f"torch {torch.__version__}, transformers {transformers.__version__}, python {platform.python_version()}, "
          f"{torch.get_num_threads()} threads, {os.cpu_count()} cpus, fp32")
    print(f"GPTs: 6 layers x 8 heads x 256 wide, context {BLOCK}, batch {BATCH}, vocab {VOCAB}; "
          f"(bi-)LSTM: 2 layers x 256, batch {BATCH} (bi-LSTM: window 32, batch {BILSTM_BATCH})")
    hf_attn = [n.removeprefix("hf-gpt2-") for n in names if n.startswith("hf-gpt2-")]
    print(f"Hugging Face GPT2LMHeadModel attention implementation: {', '.join(hf_attn) or 'not run'}")
    print(f"\n{'model':<14} {'params':>7} {'batch':>5} {'median step':>11} {'min..max ms':>13} {'tokens/s':>8} "
          f"{'peak RSS':>9} {'training':>9}")
    speed = {}
    for name in names:
        model, _, _, batch_size = runs[name]
        med = statistics.median(times[name])
        speed[name] = batch_size * BLOCK / med
        params = sum(p.numel() for p in model.parameters())  # parameters() yields a tied tensor once
        m = memory[name]
        print(f"{name:<14} {params / 1e6:>6.2f}M {batch_size:>5} {med * 1e3:>9.0f}ms "
              f"{min(times[name]) * 1e3:>6.0f}..{max(times[name]) * 1e3:<6.0f} {speed[name]:>8.0f} "
              f"{m['peak_mib']:>7.0f}Mi {m['peak_mib'] - m['before_mib']:>7.0f}Mi")
    print(f"(median of {args.rounds} interleaved steps after {args.warmup} warm-up rounds; peak RSS of a fresh "
          f"process after {args.memory_steps} steps; training = peak minus peak after imports)")
    for ours in ("gpt", "gpt-nobias", "gpt-compile"):
        for ref in ("hf-gpt2-sdpa", "hf-gpt2-eager"):
            if ours in speed and ref in speed:
                # Steps of one round ran seconds apart, so their ratio cancels most of the drift
                # of a shared machine; the median of those is the steadier figure.
                paired = statistics.median(b / a for a, b in zip(times[ours], times[ref]))
                print(f"speed {ours} / {ref}: {speed[ours] / speed[ref]:.2f}x (ratio of medians), "
                      f"{paired:.2f}x (median of per-round ratios)")
    if splits:
        print(f"\nwhere a step goes (self op time, {args.profile_steps} profiled steps each; a 2048^3 matmul alone: "
              f"{peak:.0f} GFLOP/s):")
        for name, sp in splits.items():
            total = sum(sp.values())
            model, _, _, batch_size = runs[name]
            gflops = matmul_flops_per_step(model, batch_size) / sp["matmul"] / 1e9
            print(f"  {name:<14} " + ", ".join(f"{k} {v * 1e3:.0f}ms ({v / total:.0%})" for k, v in sp.items())
                  + f"; matmuls at {gflops:.0f} GFLOP/s")
        for ours in ("gpt", "gpt-nobias"):
            if ours in splits and "hf-gpt2-sdpa" in speed:
                sp = splits[ours]
                floor = statistics.median(times[ours]) * (sp["matmul"] + sp["attention"]) / sum(sp.values())
                print(f"ceiling {ours} / hf-gpt2-sdpa with zero time outside matmul and attention: "
                      f"{statistics.median(times['hf-gpt2-sdpa']) / floor:.2f}x")
    if attn_ms:
        print(f"causal attention alone, {BATCH} x {GPT_SHAPE['n_head']} heads x {BLOCK} x "
              f"{GPT_SHAPE['n_embd'] // GPT_SHAPE['n_head']} (median ms forward + backward): "
              + ", ".join(f"{k} {f:.1f} + {b:.1f}" for k, (f, b) in attn_ms.items()))
    print("AdamW step over the GPT's parameters (median ms): "
          + ", ".join(f"{k} {v:.1f}" for k, v in opt_ms.items())
          + f"; for-loop / fused {opt_ms['for-loop'] / opt_ms['fused']:.1f}x")
    print(f"load average {load_start:.1f} at the start, {load_end:.1f} at the end; "
          f"total {time.perf_counter() - t_start:.0f}s")


if __name__ == "__main__":
    main()
