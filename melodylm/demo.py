"""``melodylm demo``: the whole job on the embedded corpus in about ten minutes on two CPU cores.

tokenize -> train a small GPT for a fixed time -> evaluate beside the 5-gram baseline -> continue
a held-out tune four ways -> BLEU with baselines, copy detection, music metrics -> report.md.
Every step is the same library function the CLI calls; nothing here is demo-only logic.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

from melodylm import __version__
from melodylm.outputs import SampleJob, replace_dir, sample_to_folder


def _step(n: int, total: int, text: str) -> float:
    print(f"\n[{n}/{total}] {text}", file=sys.stderr, flush=True)
    return time.time()


def _fmt(x, nd: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{nd}f}"


def _pick_prompt(data_dir: Path) -> str:
    """The MIDI file of the first test tune with at least 8 bars' worth of notes (48): a readable prompt."""
    from melodylm.dataset import Dataset

    data = Dataset(data_dir)
    test = data.split("test")
    pick = next((i for i in test.originals() if test.index[i]["n_notes"] >= 48), int(test.originals()[0]))
    return data.manifest()[int(test.index[pick]["source"])]["path"]


def run_demo(out_dir: str | Path = "demo", train_seconds: float = 240.0, n_samples: int = 4,
             seed: int = 0, force: bool = False, progress: bool = True) -> Path:
    """Run the demo into ``out_dir``; returns the path of ``report.md``."""
    from melodylm.dataset import TokenizeConfig, tokenize
    from melodylm.evaluate import evaluate
    from melodylm.train import TrainConfig, train

    out = replace_dir(out_dir, force)
    t_all = time.time()
    total = 6
    timings: dict[str, float] = {}

    t = _step(1, total, "tokenize the embedded corpus (O'Neill's Music of Ireland)")
    data_dir = out / "data"
    tsum = tokenize(TokenizeConfig(out_dir=str(data_dir), seed=seed, force=True), progress=progress)
    timings["tokenize"] = time.time() - t
    print(f"  {tsum['ok']} tunes; tokens: " + ", ".join(f"{k} {v:,}" for k, v in tsum["tokens"].items()), file=sys.stderr)

    t = _step(2, total, f"train a small GPT for {train_seconds:.0f} s")
    run_dir = out / "run"
    cfg = TrainConfig(data_dir=str(data_dir), out_dir=str(run_dir), arch="gpt", size="small",
                      max_time=train_seconds, max_steps=100_000, eval_interval=50, warmup_steps=30,
                      lr_decay_steps=int(train_seconds * 1.5), seed=seed, learning_rate=2e-3, batch_size=16)
    summary = train(cfg, force=True, progress=progress)
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
        top_p=0.95, prompt_bars=4, plot=True, audio=media, score=media, force=True))
    timings["sample"] = time.time() - t

    t = _step(5, total, "score: BLEU with baselines, copy detection, music metrics")
    from melodylm.reports import bleu_and_copies, metrics_report

    bleu = bleu_and_copies(str(samples_dir), f"{data_dir}:train", weights="custom", seed=seed)
    copies = bleu["copies"]
    metrics = metrics_report(str(samples_dir), f"{data_dir}:test", plot=out / "metrics.png")
    timings["score"] = time.time() - t

    t = _step(6, total, "write report.md")
    report = out / "report.md"
    results = {"tokenize": tsum, "train": summary, "evaluate": ev, "files": sample_summary["files"],
               "prompt_source": source, "prompt": prompt, "bleu": bleu, "copies": copies, "metrics": metrics}
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
    bleu, copies, metrics = results["bleu"], results["copies"], results["metrics"]
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
        f"Model: GPT `small`, trained {summary['steps']} steps in {summary['seconds']:.0f} s "
        f"({summary['tokens_per_s']:,.0f} tokens/s), best validation loss {_fmt(summary['best_val_loss'])}.",
        "",
        "## Held-out test split",
        "",
        "| model | bits/note | bits/token | perplexity | accuracy |",
        "|---|---|---|---|---|",
        f"| GPT small | {ev['bits_per_note']:.3f} | {ev['bits_per_token']:.3f} | {ev['perplexity']:.2f} | {ev['accuracy']:.3f} |",
        f"| {base['order']}-gram Kneser-Ney (d={base['discount']}) | {base['bits_per_note']:.3f} | "
        f"{base['bits_per_token']:.3f} | {base['perplexity']:.2f} | |",
        "",
        "Bits per note = total bits of a tune (end token included) / its notes: comparable across tokenizers.",
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
        "## Reproduce and explore",
        "",
        f"- TensorBoard: `tensorboard --logdir {run_dir / 'tb'}`",
        f"- Checkpoint: `{ckpt}`; sample more: `melodylm sample --checkpoint {ckpt} --prompt {prompt}`",
        "- Timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()),
    ]
    return lines
