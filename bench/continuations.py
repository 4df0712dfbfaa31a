"""Continuations of held-out tunes, against the held-out tunes: the shipped model's music-metric check.

``--n`` tunes of the dataset's test split, spread evenly over it (every k-th in manifest order, so
both corpora of a mixed dataset take part), each continued once from its first ``--prompt-bars``
bars for ``--bars`` new bars (top-p 0.95, seed ``--seed + i``). The continuations alone are compared
by ``melodylm metrics`` (overlapping area of each metric's distribution, 1 = the same distribution;
KL divergence beside it) with two references:

* **the same bars of every test tune**: bars ``prompt-bars + 1`` to ``prompt-bars + bars`` of each
  tune of the test split (leading silence trimmed, as a prompt's is), what the continuations stand
  in for. Several metrics depend on length (``repetition_4`` counts 4-note patterns heard twice,
  and a 32-bar reel with its repeats has more of them than any 16 bars of it), so this is the
  like-for-like yardstick;
* the whole test tunes, for reference.

    python bench/continuations.py                       # the shipped model on data/pretrained
    python bench/continuations.py runs/x/best.pt --data data/default --n 16
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from melodylm.dataset import Dataset  # noqa: E402
from melodylm.generate import generate, write_samples  # noqa: E402
from melodylm.reports import metrics_report  # noqa: E402


def held_out_prompts(data_dir: Path, n: int) -> list[Path]:
    """``n`` source files of the test split, evenly spread over its manifest order."""
    rows = [r for r in Dataset(data_dir).manifest() if r.get("split") == "test" and r.get("n_tokens")]
    if len(rows) < n:
        raise SystemExit(f"{data_dir}: the test split has {len(rows)} tunes, fewer than --n {n}")
    step = len(rows) / n
    return [Path(rows[int(i * step)]["path"]) for i in range(n)]


def emptied(out: Path) -> Path:
    """``out``, created, without the MIDI files of an earlier run."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.mid"):
        old.unlink()
    return out


def same_bars(data_dir: Path, first: int, n_bars: int, out: Path) -> Path:
    """Bars ``first``..``first + n_bars - 1`` (from 1) of every test tune as MIDI files in ``out``."""
    from melodylm.midi import bar_start, crop_from, load_melody, score_notes, trim_silence

    emptied(out)
    for r in Dataset(data_dir).manifest():
        if r.get("split") != "test" or not r.get("n_tokens"):
            continue
        mel = load_melody(r["path"])
        if mel.score is None:
            continue
        score, _ = trim_silence(mel.score)
        a, b = bar_start(score, first - 1), bar_start(score, first - 1 + n_bars)
        notes = score_notes(score)
        notes = notes[(notes[:, 0] >= a) & (notes[:, 0] < b)]
        if len(notes) >= 4:
            crop_from(score, notes, a)[0].dump_midi(str(out / Path(r["path"]).name))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", nargs="?", default="checkpoints/pretrained/model.pt")
    ap.add_argument("--data", default="data/pretrained", help="tokenized dataset whose test split is held out")
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--prompt-bars", type=int, default=4)
    ap.add_argument("--bars", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--top-p", type=float, default=0.95)
    ap.add_argument("--out", default="samples/continuations")
    args = ap.parse_args()
    out = emptied(Path(args.out))
    prompts = held_out_prompts(Path(args.data), args.n)
    for i, prompt in enumerate(prompts):
        s = generate(args.checkpoint, prompt=prompt, n=1, prompt_bars=args.prompt_bars, max_bars=args.bars,
                     top_p=args.top_p, seed=args.seed + i, keep_prompt=False)
        write_samples(s, out, stem=f"{i:02d}_{prompt.stem}")
    ref = same_bars(Path(args.data), args.prompt_bars + 1, args.bars, Path(str(out) + "-reference"))
    print(f"\n{args.checkpoint}: {args.n} held-out tunes of {args.data}:test, {args.prompt_bars} prompt bars, "
          f"{args.bars} new bars, top-p {args.top_p}, seeds {args.seed}..{args.seed + args.n - 1}")
    result = {"prompts": [p.name for p in prompts]}
    for name, reference in (("same bars of the test tunes", str(ref)), ("whole test tunes", f"{args.data}:test")):
        rep = metrics_report(str(out), reference)
        print(f"\nagainst {name} ({rep['n_references']} melodies, {reference}):\n")
        print(rep["table"])
        oa = {k: v["oa"] for k, v in rep["comparison"].items()}
        worst = min((v for v in oa.values() if v is not None), default=None)
        print(f"lowest overlapping area: {worst:.2f}" if worst is not None else "no overlapping area computed")
        result[name] = {"oa": oa, "lowest_oa": worst}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
