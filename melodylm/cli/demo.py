"""``melodylm demo``: the whole job on the embedded corpus, into one folder with a report."""

from __future__ import annotations

from melodylm.cli.common import add_command
from melodylm.errors import UserError


def register_demo(sub):
    from melodylm.demo import DEMO_TRAIN_SECONDS

    p = add_command(sub, "demo", "the whole job on the embedded corpus: tokenize, train, evaluate, sample, score, "
                    "report", f"melodylm demo -o demo --train-seconds {DEMO_TRAIN_SECONDS:.0f}")
    p.add_argument("-o", "--out", default="demo", help="output folder (default: demo)")
    p.add_argument("--train-seconds", type=float, default=DEMO_TRAIN_SECONDS,
                   help=f"training time budget (default {DEMO_TRAIN_SECONDS:.0f})")
    p.add_argument("--n", type=int, default=4, help="continuations to sample (default 4)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--force", action="store_true", help="replace an existing output folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def run_demo(args) -> int:
    from melodylm.demo import run_demo as demo

    if args.train_seconds <= 0 or args.n < 1:
        raise UserError("--train-seconds must be > 0 and --n >= 1")
    demo(args.out, args.train_seconds, args.n, args.seed, args.force, progress=not args.no_progress)
    return 0
