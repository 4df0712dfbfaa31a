"""Do the controls steer? Key and meter adherence of samples from a checkpoint trained with controls.

For each asked key, ``--n`` samples from nothing (``--bars`` bars each, top-p 0.95); the key of each
sample is estimated from its notes by melodylm's own Krumhansl-Kessler estimator (``melodylm.keys``),
so "in key" means the estimator's tonic and mode equal the asked ones. For each asked meter, the share
of samples whose every bar carries that time signature.

    python bench/steer_adherence.py CKPT
    python bench/steer_adherence.py CKPT --keys "G major,D major" --meters 6/8 --n 8

A model that was never shown a key (no tune of the training split, transposed copies included, has it)
cannot be asked for it: the script reports it as unknown rather than failing.

The yardstick beside each key (``--yardstick DATA``, a dataset tokenized with controls): the same
estimator on the first ``--bars`` bars of DATA's held-out tunes (validation and test) whose key
control is that key. A sample as much in its key as those tunes are in theirs scores that share.

    python bench/steer_adherence.py checkpoints/pretrained/model.pt --yardstick data/pretrained

``--halves`` also judges each half of the bars on its own (bars 1-4 and 5-8 of 8), for the samples
and for the yardstick's tunes: whether a sample starts out of key or wanders off it.

``--profile NAME`` judges samples and yardstick with another key profile of music21's
``analysis.discrete`` (e.g. ``TemperleyKostkaPayne``, ``AardenEssen``, ``BellmanBudge``) in place of
Krumhansl-Kessler, to see how much of a share is the judge's.

``--key-tries N`` is ``melodylm sample --key-tries``: a sample whose notes do not estimate as the
asked key (by the default estimator) is drawn again, up to N draws in all (default 4). ``--key-tries 1``
measures the model's first draw alone; with ``--profile`` the kept samples are judged by another
profile than the one that chose them. The run prints the draws per key sample this took.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import key_profiles  # noqa: E402
from melodylm.controls import GUIDANCE, KEY_TRIES  # noqa: E402
from melodylm.errors import UserError  # noqa: E402
from melodylm.generate import generate  # noqa: E402
from melodylm.keys import parse_key  # noqa: E402

KEYS = "G major,D major,A minor,E minor,F major,Bb major"
METERS = "6/8,3/4"


def adherence(args, kind: str, value: str) -> dict:
    """Sample ``args.n`` melodies asking ``kind=value``; count those that came out as asked."""
    try:
        samples = generate(args.checkpoint, n=args.n, max_bars=args.bars, seed=args.seed, top_p=args.top_p,
                           temperature=args.temperature, key_tries=args.key_tries,
                           guidance=args.guidance, **{kind: value})
    except UserError as e:
        return {"asked": f"{kind} {value}", "error": str(e)}
    if kind == "key":
        asked = parse_key(value)
        if args.profile:
            got = [judged_key(s.score, args.profiles) for s in samples]
        else:  # the key generate estimated from the new notes, with the default judge
            got = [s.info["controls"]["key"] for s in samples]
        hits = sum(g is not None and parse_key(g) == asked for g in got)
        value = asked.name
        draws = sum(s.info["controls"]["tries"] for s in samples)
        if args.halves:
            halves = [halves_in_key(s.score, asked, args.bars, args.profiles) for s in samples]
            return {"asked": f"{kind} {value}", "hits": hits, "n": len(samples), "got": got, "draws": draws,
                    "halves": [sum(h[i] for h in halves) for i in range(2)]}
        return {"asked": f"{kind} {value}", "hits": hits, "n": len(samples), "got": got, "draws": draws}
    else:  # every bar of the sample in the asked meter
        got = [s.info["controls"]["meters"] for s in samples]
        hits = sum(m == [value] for m in got)
    return {"asked": f"{kind} {value}", "hits": hits, "n": len(samples), "got": got}


def judged_key(score, profiles) -> str | None:
    """The key of a sample's notes under ``profiles``."""
    from melodylm.infill import notes_of
    from melodylm.keys import estimate_key

    notes = notes_of(score)
    return estimate_key(notes[:, 2], notes[:, 1], profiles).name if len(notes) else None


def halves_in_key(score, asked, bars: int, profiles) -> tuple[bool, bool]:
    """Whether the notes of the first and of the second half of ``bars`` bars estimate as ``asked``."""
    from melodylm.infill import bar_starts, notes_of
    from melodylm.keys import estimate_key

    notes = notes_of(score)
    if not len(notes):
        return False, False
    starts = list(bar_starts(score, int(notes[:, 0].max()))) + [int(notes[:, 0].max()) + 1]
    cut, end = starts[min(bars // 2, len(starts) - 1)], starts[min(bars, len(starts) - 1)]
    out = []
    for part in (notes[notes[:, 0] < cut], notes[(notes[:, 0] >= cut) & (notes[:, 0] < end)]):
        out.append(bool(len(part)) and estimate_key(part[:, 2], part[:, 1], profiles) == asked)
    return out[0], out[1]


def yardstick(data_dir: str, bars: int, halves: bool, profiles) -> dict:
    """``{Key: (tunes estimated in it, tunes)}`` over the first ``bars`` bars of the held-out
    tunes of a dataset, each tune's key read from the key token at its head."""
    import numpy as np

    from melodylm.controls import token_controls
    from melodylm.dataset import Dataset
    from melodylm.infill import bar_starts, notes_of
    from melodylm.keys import estimate_key

    data = Dataset(data_dir)
    tok = data.tokenizer
    if not tok.has_controls:
        raise SystemExit(f"--yardstick {data_dir}: the dataset has no control tokens")
    out: dict = {}
    for split in ("val", "test"):
        sp = data.split(split)
        for i in sp.originals():
            ids = np.asarray(sp.tune(i), dtype=np.int64)
            h = tok.head_length(ids)
            key = token_controls(tok.extra.name(int(t)) for t in ids[1:h]).get("key")
            score = tok.decode_score(tok.decode_ids(ids[h:-1]))
            notes = notes_of(score)
            if key is None or not len(notes):
                continue
            starts = bar_starts(score, int(notes[:, 0].max()))
            head = notes[notes[:, 0] < starts[min(bars, len(starts) - 1)]]
            asked = parse_key(key)
            hit = estimate_key(head[:, 2], head[:, 1], profiles) == asked
            got = out.setdefault(asked, [0, 0, 0, 0])
            got[0] += int(hit)
            got[1] += 1
            if halves:
                h = halves_in_key(score, asked, bars, profiles)
                got[2] += int(h[0])
                got[3] += int(h[1])
    return {k: tuple(v) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--keys", default=KEYS)
    ap.add_argument("--meters", default=METERS)
    ap.add_argument("--n", type=int, default=8, help="samples per asked value")
    ap.add_argument("--bars", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--top-p", type=float, default=0.95)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--guidance", type=float, default=GUIDANCE, help="classifier-free guidance weight (0 = off)")
    ap.add_argument("--key-tries", type=int, default=KEY_TRIES,
                    help="draws in all for a sample out of the asked key (melodylm sample --key-tries; 1 = first draw)")
    ap.add_argument("--yardstick", metavar="DATA", help="dataset whose held-out tunes give each key's yardstick")
    ap.add_argument("--halves", action="store_true", help="also judge the first and the second half of the bars")
    ap.add_argument("--profile", help="judge with this music21 key profile (default: Krumhansl-Kessler)")
    args = ap.parse_args()
    args.profiles = key_profiles(args.profile or "KrumhanslKessler")
    human = yardstick(args.yardstick, args.bars, args.halves, args.profiles) if args.yardstick else {}
    rows = []
    for kind, values in (("key", args.keys), ("meter", args.meters)):
        for value in filter(None, values.split(",")):
            rows.append(adherence(args, kind, value))
    print(f"\n{args.checkpoint}: {args.n} samples per value, {args.bars} bars from nothing, top-p {args.top_p}, "
          f"temperature {args.temperature:g}, seed {args.seed}, guidance {args.guidance:g}, "
          f"key tries {args.key_tries}, "
          f"key judge {args.profile or 'KrumhanslKessler'}\n")
    print(f"| asked | samples in it | share | held-out tunes of {args.yardstick} in it (first {args.bars} bars) |"
          if human else "| asked | samples in it | share |")
    print("|---|---|---|---|" if human else "|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['asked']} | {r['error']} | |")
            continue
        line = f"| {r['asked']} | {r['hits']} / {r['n']} | {r['hits'] / max(1, r['n']):.0%} |"
        if human:
            h = human.get(parse_key(r["asked"].removeprefix("key "))) if r["asked"].startswith("key ") else None
            line += f" {h[0]} / {h[1]} ({h[0] / h[1]:.0%}) |" if h else " |"
            r["yardstick"] = h
        print(line)
    keys = [r for r in rows if r["asked"].startswith("key ") and "error" not in r]
    if keys:
        line = f"| keys in all | {sum(r['hits'] for r in keys)} / {sum(r['n'] for r in keys)} | " \
               f"{sum(r['hits'] for r in keys) / max(1, sum(r['n'] for r in keys)):.0%} |"
        if human:
            hs = [r["yardstick"] for r in keys if r.get("yardstick")]
            line += f" {sum(h[0] for h in hs)} / {sum(h[1] for h in hs)} ({sum(h[0] for h in hs) / max(1, sum(h[1] for h in hs)):.0%}) |"
        print(line)
        print(f"\ndraws per key sample: {sum(r['draws'] for r in keys) / max(1, sum(r['n'] for r in keys)):.2f} "
              f"(--key-tries {args.key_tries})")
    if args.halves and keys:
        print_halves(args, keys, human)
    print(json.dumps(rows, default=str))


def print_halves(args, keys: list[dict], human: dict) -> None:
    """The table of ``--halves``: samples (and yardstick tunes) whose each half is in the asked key."""
    a, b = args.bars // 2, args.bars
    print(f"\n| asked | samples, bars 1-{a} in key | bars {a + 1}-{b} |"
          + (" held-out tunes, bars 1-{} | bars {}-{} |".format(a, a + 1, b) if human else ""))
    print("|---|---|---|" + ("---|---|" if human else ""))
    for r in keys:
        line = f"| {r['asked']} | {r['halves'][0]} / {r['n']} | {r['halves'][1]} / {r['n']} |"
        h = r.get("yardstick")
        if h:
            line += f" {h[2]} / {h[1]} ({h[2] / h[1]:.0%}) | {h[3]} / {h[1]} ({h[3] / h[1]:.0%}) |"
        print(line)


if __name__ == "__main__":
    main()
