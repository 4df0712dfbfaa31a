"""Quality on a real corpus: test bits per note of gpt, lstm and bilstm beside the 5-gram baseline.

Corpus: O'Neill's tunes (embedded) + the Essen folk songs, both imported from music21's corpus
with `melodylm corpus import`, tokenized with default settings (REMI, 90/5/5 split by content).
Each model trains for the same wall-clock budget on this machine, then `evaluate` scores the
test split with the Kneser-Ney 5-gram trained on the same training split beside it.

    python bench/quality.py --minutes 30            # the issue's budget per model
    python bench/quality.py --minutes 8 --archs gpt # quicker

Before each model trains, a short probe run of the same recipe measures its steps per second
here, so its cosine learning-rate schedule ends with the budget (``--steps-per-s`` sets it instead).

The corpus is built on first use under data/ (about 20 minutes for Essen on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.common import EXE, ROOT, quality_corpus, sh  # noqa: E402

# Per-architecture settings: the `small` presets, learning rates that work for each.
RECIPES = {
    "gpt": ["--size", "small", "--lr", "2e-3", "--batch-size", "16"],
    "lstm": ["--size", "small", "--lr", "3e-3", "--batch-size", "16"],
    "bilstm": ["--size", "small", "--lr", "3e-3", "--batch-size", "32"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0, help="training budget per model")
    ap.add_argument("--archs", default="gpt,lstm,bilstm")
    ap.add_argument("--data", default="data/quality")
    ap.add_argument("--runs", default="runs/quality")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps-per-s", type=float, default=0.0,
                    help="optimizer steps per second, for every model: the cosine schedule spans minutes*60*this "
                         "steps (default: measured per model by a short probe run)")
    ap.add_argument("--probe-seconds", type=float, default=45.0)
    args = ap.parse_args()
    exe = EXE
    data = quality_corpus(args.data)
    stats = json.loads((data / "stats.json").read_text())
    rows = []
    baseline = None

    def train(arch: str, run: Path, seconds: float, *extra: str) -> dict:
        return json.loads(sh(exe + ["train", str(data), "--arch", arch, *RECIPES[arch], "--max-time", str(seconds),
                                    "--max-steps", "1000000", "--eval-interval", "100", "--seed", str(args.seed),
                                    *extra, "-o", str(run), "--force", "--json", "--no-progress"]))

    for arch in args.archs.split(","):
        run = ROOT / args.runs / arch
        rate = args.steps_per_s
        if not rate:
            # A short run of the same recipe measures this machine's pace for this model, so the
            # learning rate reaches the end of its cosine when the budget does (evals included).
            probe = train(arch, run, args.probe_seconds)
            rate = probe["steps"] / probe["seconds"]
            print(f"{arch}: {rate:.3f} steps/s in a {probe['seconds']:.0f} s probe", file=sys.stderr, flush=True)
        decay_steps = max(1, int(args.minutes * 60 * rate))
        t0 = time.time()
        summ = train(arch, run, args.minutes * 60, "--set", f"lr_decay_steps={decay_steps}")
        ev = json.loads(sh(exe + ["evaluate", str(run / "best.pt"), str(data), "--split", "test", "--json",
                                  "--no-progress"] + ([] if baseline is None else ["--baseline-order", "0"])))
        baseline = baseline or ev["baseline"]
        rows.append({"arch": arch, "steps": summ["steps"], "decay_steps": decay_steps,
                     "minutes": round((time.time() - t0) / 60, 1),
                     "tokens_per_s": summ["tokens_per_s"], "bits_per_note": ev["bits_per_note"],
                     "bits_per_token": ev["bits_per_token"], "accuracy": ev["accuracy"]})
    print(f"\ncorpus {args.data}: train {stats['tunes']['train']} tunes, test {stats['tunes']['test']} tunes "
          f"({stats['notes']['test']} notes); budget {args.minutes:g} min per model\n")
    print("| model | steps (cosine length) | tokens/s | test bits/note | ratio to 5-gram | bits/token | accuracy |")
    print("|---|---|---|---|---|---|---|")
    b = baseline["bits_per_note"]
    for r in rows:
        print(f"| {r['arch']} | {r['steps']} ({r['decay_steps']}) | {r['tokens_per_s']:,.0f} | {r['bits_per_note']:.3f} | "
              f"{r['bits_per_note'] / b:.2f} | {r['bits_per_token']:.3f} | {r['accuracy']:.3f} |")
    print(f"| 5-gram Kneser-Ney (d={baseline['discount']}) | | | {b:.3f} | 1.00 | {baseline['bits_per_token']:.3f} | |")
    print(json.dumps({"rows": rows, "baseline": baseline}))


if __name__ == "__main__":
    main()
