"""Do the controls steer? Key and meter adherence of samples from a checkpoint trained with controls.

For each asked key, ``--n`` samples from nothing (``--bars`` bars each, top-p 0.95); the key of each
sample is estimated from its notes by melodylm's own Krumhansl-Kessler estimator (``melodylm.keys``),
so "in key" means the estimator's tonic and mode equal the asked ones. For each asked meter, the share
of samples whose every bar carries that time signature.

    python bench/steer_adherence.py CKPT
    python bench/steer_adherence.py CKPT --keys "G major,D major" --meters 6/8 --n 8

A model that was never shown a key (no tune of the training split, transposed copies included, has it)
cannot be asked for it: the script reports it as unknown rather than failing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

from melodylm.controls import GUIDANCE  # noqa: E402
from melodylm.errors import UserError  # noqa: E402
from melodylm.generate import generate  # noqa: E402
from melodylm.keys import parse_key  # noqa: E402

KEYS = "G major,D major,A minor,E minor,F major,Bb major"
METERS = "6/8,3/4"


def adherence(args, kind: str, value: str) -> dict:
    """Sample ``args.n`` melodies asking ``kind=value``; count those that came out as asked."""
    try:
        samples = generate(args.checkpoint, n=args.n, max_bars=args.bars, seed=args.seed, top_p=args.top_p,
                           guidance=args.guidance, **{kind: value})
    except UserError as e:
        return {"asked": f"{kind} {value}", "error": str(e)}
    if kind == "key":
        asked = parse_key(value)
        got = [s.info["controls"]["key"] for s in samples]
        hits = sum(g is not None and parse_key(g) == asked for g in got)
        value = asked.name
    else:  # every bar of the sample in the asked meter
        got = [s.info["controls"]["meters"] for s in samples]
        hits = sum(m == [value] for m in got)
    return {"asked": f"{kind} {value}", "hits": hits, "n": len(samples), "got": got}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--keys", default=KEYS)
    ap.add_argument("--meters", default=METERS)
    ap.add_argument("--n", type=int, default=8, help="samples per asked value")
    ap.add_argument("--bars", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--top-p", type=float, default=0.95)
    ap.add_argument("--guidance", type=float, default=GUIDANCE, help="classifier-free guidance weight (0 = off)")
    args = ap.parse_args()
    rows = []
    for kind, values in (("key", args.keys), ("meter", args.meters)):
        for value in values.split(","):
            rows.append(adherence(args, kind, value))
    print(f"\n{args.checkpoint}: {args.n} samples per value, {args.bars} bars from nothing, top-p {args.top_p}, "
          f"seed {args.seed}, guidance {args.guidance:g}\n")
    print("| asked | samples in it | share |")
    print("|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['asked']} | {r['error']} | |")
        else:
            print(f"| {r['asked']} | {r['hits']} / {r['n']} | {r['hits'] / max(1, r['n']):.0%} |")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
