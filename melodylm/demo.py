"""``melodylm demo``: the whole job on the embedded corpus in under ten minutes on two busy CPU cores.

tokenize -> train a one-layer LSTM for a fixed time -> evaluate beside the 5-gram baseline ->
continue a held-out tune four ways -> BLEU with baselines, copy detection, music metrics (with
whether the samples' rests and notes per bar are those of real tunes) -> report.md.
Every step is the same library function the CLI calls; nothing here is demo-only logic.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from melodylm import __version__
from melodylm.outputs import SampleJob, replace_dir, sample_to_folder

if TYPE_CHECKING:
    from melodylm.train import TrainConfig


def _step(n: int, total: int, text: str) -> float:
    print(f"\n[{n}/{total}] {text}", file=sys.stderr, flush=True)
    return time.time()


def _fmt(x, nd: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{nd}f}"


def _load() -> str:
    """The 1-minute load average, which says how busy the machine was (n/a where the OS has none)."""
    import os

    try:
        return f"{os.getloadavg()[0]:.1f}"
    except (OSError, AttributeError):
        return "n/a"


def _pick_prompt(data_dir: Path) -> str:
    """The MIDI file of the first test tune with at least 8 bars' worth of notes (48): a readable prompt."""
    from melodylm.dataset import Dataset

    data = Dataset(data_dir)
    test = data.split("test")
    pick = next((i for i in test.originals() if test.index[i]["n_notes"] >= 48), int(test.originals()[0]))
    return data.manifest()[int(test.index[pick]["source"])]["path"]


# The demo's training recipe, chosen by 90-second wall-clock runs on 2 shared cores (load average
# 7-13, one thread each): a one-layer LSTM of width 256 reached 0.91-0.93 val nats/token (4.43
# test bits/note, below the 5-gram's 4.65) where the 4 x 256 GPT of the old demo made 8 steps
# (18.8 bits/note), the 2 x 384 LSTM 18 steps (12.4) and a 2 x 128 GPT 1.10 nats/token. Under
# load, steps are what a small model buys: batches of 8 beat 16 and 32 (0.93 against 1.02 and
# 1.56 nats/token), peak learning rate 6e-3 beat 4e-3 and 1e-2, width 256 beat 384, dropout is
# off (under one epoch there is nothing to regularise) and 128-token windows give more updates.
# At the full 300 s (load average 9-10) the demo made 1,098 steps: 3.41 test bits/note against
# the 5-gram's 4.67, and 6 1/2 minutes for the whole demo.
DEMO_MODEL = {"n_layer": 1, "n_embd": 256, "block_size": 128, "dropout": 0.0}
DEMO_ARCH = "lstm"
DEMO_LR = 6e-3
DEMO_BATCH = 8
# One thread: with two on busy cores the same run made 6 steps in 90 s against 78 with one
# (38 against 631 tokens/s, load average 13): the threads wait for each other's time slices.
DEMO_THREADS = 1
DEMO_TRAIN_SECONDS = 300.0
# Sampling: nucleus 0.95 at temperature 1. The rests came from the model, not the sampler: a 90 s
# model (0.93 val nats/token) rested 7-10% of the time at top-p 0.8-0.95 and temperature
# 0.85-1.0 (real tunes: under 3.7% for 95% of them); the 300 s model rests 0%, 6.8 notes a bar.
DEMO_TOP_P = 0.95
DEMO_TEMPERATURE = 1.0
# Real tunes' range for a sample metric: the middle 90% of the test tunes (5th to 95th percentile).
RANGE_PERCENTILES = (5.0, 95.0)
CHECKED_METRICS = ("rest_ratio", "notes_per_bar")


def demo_train_config(data_dir: str | Path, run_dir: str | Path, train_seconds: float = DEMO_TRAIN_SECONDS,
                      seed: int = 0) -> TrainConfig:
    """The demo's recipe as a :class:`~melodylm.train.TrainConfig`: a clock-scheduled run of ``train_seconds``.

    ``lr_decay_steps`` stays 0 and ``max_steps`` out of reach, so warmup (``warmup_frac`` of the
    budget) and the cosine follow the elapsed time: a slow or busy machine makes fewer steps but
    still ends its schedule at the end of the budget.
    """
    from melodylm.train import TrainConfig

    return TrainConfig(data_dir=str(data_dir), out_dir=str(run_dir), arch=DEMO_ARCH, size="small",
                       model=dict(DEMO_MODEL), max_time=float(train_seconds), max_steps=10_000_000,
                       # an evaluation with its logged sample and two checkpoints took 10-17 s of
                       # 4-second test runs under load: a few evaluations, no sample, leave the
                       # budget to the steps
                       lr_decay_steps=0, eval_interval=200, sample_tokens=0, learning_rate=DEMO_LR,
                       batch_size=DEMO_BATCH, seed=seed)


def model_name(cfg: TrainConfig) -> str:
    """How the report names the demo's model, e.g. ``LSTM 1 x 256``."""
    m = {**cfg.model}
    return f"{cfg.arch.upper()} {m.get('n_layer', '?')} x {m.get('n_embd', '?')}"


def metric_ranges(samples, reference, names: tuple[str, ...] = CHECKED_METRICS) -> dict[str, dict]:
    """Whether the samples' mean of each metric lies inside the reference tunes' middle 90%.

    ``samples`` and ``reference`` are loaded melody sets (:func:`melodylm.melody_sets.load_set`).
    Returns per metric ``{"samples": [one value per sample], "mean", "low", "high", "min", "max",
    "inside"}`` where ``low``/``high`` are the reference's 5th/95th percentiles and ``min``/``max``
    its extremes.
    """
    import numpy as np

    from melodylm.metrics.music import melody_metrics

    def values(items, name: str) -> np.ndarray:
        v = np.array([melody_metrics(it.notes, it.beats_per_bar)[name] for it in items], dtype=float)
        return v[np.isfinite(v)]

    out = {}
    for name in names:
        a, b = values(samples, name), values(reference, name)
        if not a.size or not b.size:
            out[name] = {"samples": a.tolist(), "mean": None, "low": None, "high": None, "min": None,
                         "max": None, "inside": False}
            continue
        low, high = (float(x) for x in np.percentile(b, RANGE_PERCENTILES))
        mean = float(a.mean())
        out[name] = {"samples": a.tolist(), "mean": mean, "low": low, "high": high, "min": float(b.min()),
                     "max": float(b.max()), "inside": bool(low <= mean <= high)}
    return out


def run_demo(out_dir: str | Path = "demo", train_seconds: float = DEMO_TRAIN_SECONDS, n_samples: int = 4,
             seed: int = 0, force: bool = False, progress: bool = True, inputs: list[str] | None = None) -> Path:
    """Run the demo into ``out_dir``; returns the path of ``report.md``.

    ``inputs`` are MIDI files or folders to use instead of the embedded corpus (tests use a slice).
    torch runs on :data:`DEMO_THREADS` thread(s) meanwhile, and on as many as before afterwards.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(DEMO_THREADS)
    try:
        return _run(Path(out_dir), train_seconds, n_samples, seed, force, progress, inputs)
    finally:
        torch.set_num_threads(threads)


def _run(out_dir: Path, train_seconds: float, n_samples: int, seed: int, force: bool, progress: bool,
         inputs: list[str] | None) -> Path:
    from melodylm.dataset import TokenizeConfig, tokenize
    from melodylm.evaluate import evaluate
    from melodylm.melody_sets import load_set
    from melodylm.train import train

    out = replace_dir(out_dir, force)
    t_all = time.time()
    total = 6
    timings: dict[str, float] = {}

    t = _step(1, total, "tokenize the embedded corpus (O'Neill's Music of Ireland)" if inputs is None
              else f"tokenize {', '.join(map(str, inputs))}")
    data_dir = out / "data"
    tcfg = TokenizeConfig(out_dir=str(data_dir), seed=seed, force=True)
    if inputs is not None:
        tcfg.inputs = [str(x) for x in inputs]
    tsum = tokenize(tcfg, progress=progress)
    timings["tokenize"] = time.time() - t
    print(f"  {tsum['ok']} tunes; tokens: " + ", ".join(f"{k} {v:,}" for k, v in tsum["tokens"].items()), file=sys.stderr)

    run_dir = out / "run"
    cfg = demo_train_config(data_dir, run_dir, train_seconds, seed)
    t = _step(2, total, f"train a {model_name(cfg)} for {train_seconds:.0f} s")
    summary = train(cfg, force=True, progress=progress)
    summary["model"] = model_name(cfg)
    timings["train"] = time.time() - t
    ckpt = Path(summary["checkpoint"])

    t = _step(3, total, "evaluate on the test split beside a 5-gram Kneser-Ney baseline")
    ev = evaluate(ckpt, data_dir, split="test", progress=progress)
    timings["evaluate"] = time.time() - t
    base = ev["baseline"]
    print(f"  model {ev['bits_per_note']:.3f} bits/note, 5-gram {base['bits_per_note']:.3f} bits/note", file=sys.stderr)

    t = _step(4, total, f"continue a held-out tune {n_samples} ways")
    source = _pick_prompt(data_dir)
    prompt = out / "prompt.mid"
    shutil.copyfile(source, prompt)
    samples_dir = out / "samples"
    media = _can_render()
    sample_summary = sample_to_folder(SampleJob(
        checkpoint=str(ckpt), prompt=str(prompt), out_dir=str(samples_dir), n=n_samples, max_bars=8, seed=seed,
        top_p=DEMO_TOP_P, temperature=DEMO_TEMPERATURE, prompt_bars=4, plot=True, audio=media, score=media,
        force=True))
    timings["sample"] = time.time() - t

    t = _step(5, total, "score: BLEU with baselines, copy detection, music metrics")
    from melodylm.reports import bleu_and_copies, metrics_report

    bleu = bleu_and_copies(str(samples_dir), f"{data_dir}:train", weights="custom", seed=seed)
    copies = bleu["copies"]
    smp, test_set = load_set(str(samples_dir)), load_set(f"{data_dir}:test")
    metrics = metrics_report(smp, test_set, plot=out / "metrics.png")
    ranges = metric_ranges(smp, test_set)
    timings["score"] = time.time() - t
    for name, r in ranges.items():
        print(f"  {name}: samples {_fmt(r['mean'])}, test tunes {_fmt(r['low'])}-{_fmt(r['high'])}: "
              f"{'inside' if r['inside'] else 'OUTSIDE'}", file=sys.stderr)

    t = _step(6, total, "write report.md")
    report = out / "report.md"
    results = {"tokenize": tsum, "train": summary, "evaluate": ev, "files": sample_summary["files"],
               "prompt_source": source, "prompt": prompt, "bleu": bleu, "copies": copies, "metrics": metrics,
               "ranges": ranges}
    timings["total"] = time.time() - t_all
    lines = _report_lines(out, n_samples, results, timings)
    report.write_text("\n".join(lines) + "\n")
    print(f"\nreport: {report}  (total {time.time() - t_all:.0f} s)", file=sys.stderr)
    print(f"TensorBoard: tensorboard --logdir {run_dir / 'tb'}", file=sys.stderr)
    return report


def _can_render() -> bool:
    """Whether audio and sheet music can be made here; if not, say once which extra to install."""
    from melodylm.outputs import check_render_options
    from melodylm.extras import MissingExtraError

    try:
        check_render_options(audio=True, score=True)
    except MissingExtraError as e:
        print(f"  note: the report will have piano rolls only: {e}", file=sys.stderr)
        return False
    return True


def _sample_lines(out: Path, mid: Path, png: Path) -> list[str]:
    """One sample in the report: its piano roll beside its sheet music, and a player for its audio."""
    rel = mid.relative_to(out).with_suffix("")
    svg, wav = mid.with_suffix(".svg"), mid.with_suffix(".wav")
    lines = [f"### {mid.name}", ""]
    if svg.exists():
        lines += ["| piano roll | sheet music |", "|---|---|",
                  f"| ![piano roll]({png.relative_to(out)}) | ![sheet music]({rel}.svg) |", ""]
    else:
        lines += [f"![{mid.name}]({png.relative_to(out)})", ""]
    if wav.exists():
        # An <audio> player where the viewer allows HTML, and a plain link where it does not.
        lines += [f'<audio controls src="{rel}.wav"></audio> [listen: {wav.name}]({rel}.wav)', ""]
    return lines


def _report_lines(out: Path, n_samples: int, results: dict, timings: dict[str, float]) -> list[str]:
    """The lines of ``report.md`` from each step's result; draws a missing piano roll for each sample first."""
    import symusic

    from melodylm.render.pianoroll import save_pianoroll

    tsum, summary, ev = results["tokenize"], results["train"], results["evaluate"]
    bleu, copies, metrics, ranges = results["bleu"], results["copies"], results["metrics"], results["ranges"]
    files, source, prompt = results["files"], results["prompt_source"], results["prompt"]
    ckpt, run_dir = Path(summary["checkpoint"]), out / "run"
    base = ev["baseline"]
    pictures = []
    for f in files:
        png = Path(f).with_suffix(".png")
        if not png.exists():
            side = json.loads(Path(f).with_suffix(".json").read_text())
            save_pianoroll(symusic.Score(f), png, side.get("split_tick"), title=Path(f).stem)
        pictures.append(png)
    lines = [
        f"# melodylm demo report (melodylm {__version__})",
        "",
        f"Corpus: the embedded O'Neill collection, {tsum['ok']} tunes; tokens per split: "
        + ", ".join(f"{k} {v:,}" for k, v in tsum["tokens"].items()) + ".",
        f"Model: {summary['model']}, trained {summary['steps']} steps in {summary['seconds']:.0f} s "
        f"({summary['tokens_per_s']:,.0f} tokens/s), best validation loss {_fmt(summary['best_val_loss'])}; "
        "its learning-rate warmup and cosine follow the clock, so a busy machine ends the schedule too.",
        "",
        "## Held-out test split",
        "",
        "| model | bits/note | bits/token | perplexity | accuracy |",
        "|---|---|---|---|---|",
        f"| {summary['model']} | {ev['bits_per_note']:.3f} | {ev['bits_per_token']:.3f} | {ev['perplexity']:.2f} | {ev['accuracy']:.3f} |",
        f"| {base['order']}-gram Kneser-Ney (d={base['discount']}) | {base['bits_per_note']:.3f} | "
        f"{base['bits_per_token']:.3f} | {base['perplexity']:.2f} | |",
        "",
        "Bits per note = total bits of a tune (end token included) / its notes: comparable across tokenizers.",
        f"The model is {'below' if ev['bits_per_note'] < base['bits_per_note'] else 'NOT below'} the "
        f"{base['order']}-gram on test bits/note.",
        "",
        f"## {n_samples} continuations of a held-out tune",
        "",
        f"Prompt: first 4 bars of `{source}` (blue); continuation in red.",
        "",
    ]
    for f, png in zip(files, pictures):
        lines += _sample_lines(out, Path(f), png)
    b = bleu["baselines"]
    lines += [
        "## BLEU against the training split, with baselines",
        "",
        "| set | BLEU (custom 1-9-gram weights) |",
        "|---|---|",
        f"| samples | {_fmt(bleu['bleu'])} |",
        f"| real held-out tunes (same lengths) | {_fmt(b.get('human'))} |",
        f"| random melodies from the reference's statistics | {_fmt(b.get('random'))} |",
        f"| self-BLEU of the samples | {_fmt(bleu.get('self_bleu'))} |",
        "",
        f"Signature: `{bleu['signature']}`",
        "",
        "## Copy detection",
        "",
        "```",
        json.dumps({k: v for k, v in copies.items() if k != "per_sample"}, indent=1, default=str)[:2000],
        "```",
        "",
        "## Music metrics (samples vs the test split)",
        "",
        "```",
        str(metrics.get("table", "")),
        "```",
        "",
        "![metrics](metrics.png)" if (out / "metrics.png").exists() else "",
        "",
        "Rests and notes per bar against the real tunes (test tunes' range: 5th to 95th percentile):",
        "",
        "| metric | samples' mean | each sample | test tunes' range | test min-max | inside |",
        "|---|---|---|---|---|---|",
        *(f"| {name} | {_fmt(r['mean'])} | {', '.join(_fmt(v) for v in r['samples'])} | "
          f"{_fmt(r['low'])}-{_fmt(r['high'])} | {_fmt(r['min'])}-{_fmt(r['max'])} | "
          f"{'yes' if r['inside'] else 'no'} |" for name, r in ranges.items()),
        "",
        "## Reproduce and explore",
        "",
        f"- TensorBoard: `tensorboard --logdir {run_dir / 'tb'}`",
        f"- Checkpoint: `{ckpt}`; sample more: `melodylm sample --checkpoint {ckpt} --prompt {prompt}`",
        "- Timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items())
        + f"; load average at the end {_load()}",
    ]
    return lines
