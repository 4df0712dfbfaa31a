"""Scoring subcommands: ``bleu`` (with baselines and copies), ``copies``, ``metrics``.

All three read a set of samples (a MIDI file or folder, by default the newest folder under
``./samples``) and a reference set, with the same flags for both.
"""

from __future__ import annotations

import argparse
import sys

from melodylm.cli.common import add_command, print_json
from melodylm.errors import UserError

SCORE_REFERENCE = "data/default:train"  # what samples are scored against unless --reference says otherwise
# what one copied "note" has to match in each unit of `copies --unit`
COPY_UNIT_TEXT = {"note": "same pitch and duration", "interval": "same interval and duration"}


def _plural(n: int, word: str, plural: str | None = None) -> str:
    """``1 sample``, ``2 samples``."""
    return f"{n} {word if n == 1 else plural or word + 's'}"


def _num(x, digits: int = 4) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _add_sets(p: argparse.ArgumentParser, samples_help: str, reference_help: str) -> None:
    """The flags every scoring command has: the samples, the reference, the melody choice and --json."""
    p.add_argument("samples", nargs="?", default=None, metavar="SAMPLES", help=samples_help)
    p.add_argument("--reference", default=None, metavar="REF", help=reference_help)
    p.add_argument("--melody", default="auto",
                   help="how to read MIDI melodies: auto | skyline | all | track:N | track:NAME")
    p.add_argument("--json", action="store_true", help="print the numbers as JSON (last line of stdout)")


def _add_min_notes(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--min-notes", type=int, default=None, metavar="N",
                   help=f"a run of N notes found verbatim in the reference {what} (default 16)")


_SAMPLES_HELP = "MIDI file or folder (default: the newest folder of MIDI files under ./samples)"
_REFERENCE_HELP = f"DATA_DIR:split or a MIDI folder (default: {SCORE_REFERENCE})"


def _at(where: dict) -> str:
    return f"note {where['note']}, bar {where['bar']} beat {where['beat']:g}"


def _copy_where(row: dict | None) -> str:
    """Where a copied run starts, in the sample file's own notes, bars and beats and in the reference's."""
    if not row:
        return "none"
    return (f"{row['notes']} notes: {row['name']} from {_at(row['sample_at'])} = "
            f"{row['reference']} {_at(row['reference_at'])}")


def _print_skipped(skipped: list[dict], out) -> None:
    for s in skipped[:10]:
        print(f"  skipped {s['name']}: {s['reason']}", file=out)
    if len(skipped) > 10:
        print(f"  ... {len(skipped) - 10} more skipped", file=out)


def register_bleu(sub):
    p = add_command(sub, "bleu", "BLEU of generated melodies beside human and random baselines, with copy detection",
                    "melodylm bleu samples/gpt-small-20250101-120000 --reference data/default:train --weights custom")
    _add_sets(p, _SAMPLES_HELP, _REFERENCE_HELP)
    p.add_argument("--weights", default="custom",
                   help="custom (0,1/12,1/12,1/6,1/6,1/6,1/6,1/12,1/12) | bleu4 | uniform:N | a list like 0,1,1,2")
    p.add_argument("--smoothing", type=int, default=0, help="nltk smoothing method 0..7 (default 0 = none)")
    p.add_argument("--unit", default="token", help="token (base tokens) | pitch | interval (default token)")
    p.add_argument("--human", default=None, metavar="REF",
                   help="real melodies for the human baseline (default: the reference dataset's test split); "
                        "none = skip")
    p.add_argument("--seed", type=int, default=0, help="seed of the baselines (default 0)")
    _add_min_notes(p, "counts as a copy")
    # the flag's name before it was shared with `copies`
    p.add_argument("--min-copy", dest="min_copy", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--per-sample", action="store_true", help="also score every sample alone")
    return p


def run_bleu(args) -> int:
    from melodylm.reports import bleu_and_copies

    flag, min_notes = ("--min-copy", args.min_copy) if args.min_copy is not None else ("--min-notes", args.min_notes)
    if min_notes is not None and min_notes < 1:
        raise UserError(f"{flag} {min_notes}: must be at least 1")
    r = bleu_and_copies(args.samples, args.reference or SCORE_REFERENCE, weights=args.weights,
                        smoothing=args.smoothing, unit=args.unit, per_sample=args.per_sample, human=args.human,
                        seed=args.seed, melody=args.melody, min_notes=16 if min_notes is None else min_notes)
    out = sys.stderr if args.json else sys.stdout
    b, c = r["baselines"], r["copies"]
    print(f"BLEU {_num(r['bleu'])}  ({_plural(r['n_samples'], 'sample')} from {r['samples']} against "
          f"{r['n_references']} melodies of {r['reference']}, unit {r['unit']})", file=out)
    print(f"  human     {_num(b['human'])}  " + (f"({r['n_samples']} real melodies of {r['human_source']}, cut to "
          "the samples' lengths)" if b["human"] is not None else "(no held-out melodies; --human REF)"), file=out)
    print(f"  random    {_num(b['random'])}  (bigram chain fitted on the reference, the samples' lengths)", file=out)
    print(f"  self-BLEU {_num(r['self_bleu'])}  (each sample against the others: high = the samples repeat "
          "each other)", file=out)
    print(f"copies: {c['n_copied']}/{_plural(c['n_samples'], 'sample')} ({100 * c['copied_share']:.0f}%) hold a run "
          f"of >= {c['min_notes']} notes found verbatim in the reference; longest {_copy_where(c['longest'])}",
          file=out)
    if args.per_sample:
        for row in r["per_sample"]:
            print(f"  {row['name']}: BLEU {_num(row['bleu'])}, longest copy {row['copy_notes']} notes", file=out)
    if r["note"]:
        print(f"note: {r['note']}", file=out)
    _print_skipped(r["skipped"], out)
    print(f"signature: {r['signature']}", file=out)
    if args.json:
        print_json(r)
    return 0


def register_copies(sub):
    p = add_command(sub, "copies", "find the longest run of each sample copied verbatim from the reference melodies",
                    "melodylm copies samples/gpt-small-20250101-120000 --reference data/default:train --unit interval")
    _add_sets(p, _SAMPLES_HELP, _REFERENCE_HELP)
    _add_min_notes(p, "counts as a copy")
    p.add_argument("--unit", default="note",
                   help="note: same (pitch, duration); interval: same (interval, duration), transpositions too")
    return p


def run_copies(args) -> int:
    from melodylm.reports import copy_report, newest_samples

    c = copy_report(args.samples or str(newest_samples()), args.reference or SCORE_REFERENCE,
                    min_notes=16 if args.min_notes is None else args.min_notes, unit=args.unit, melody=args.melody)
    out = sys.stderr if args.json else sys.stdout
    for row in c["per_sample"]:
        mark = "COPY" if row["notes"] >= c["min_notes"] else "    "
        where = f" from {_at(row['sample_at'])} = {row['reference']} {_at(row['reference_at'])}" if row["notes"] else ""
        print(f"{mark} {row['name']}: {row['notes']} of {row['sample_notes']} notes{where}", file=out)
    print(f"{c['n_copied']}/{_plural(c['n_samples'], 'sample')} ({100 * c['copied_share']:.0f}%) hold a run of >= "
          f"{c['min_notes']} notes ({COPY_UNIT_TEXT.get(c['unit'], c['unit'])}) found in one of "
          f"{_plural(c['n_references'], 'melody', 'melodies')} of {c['reference']}; "
          f"median longest run {c['median_notes']:g} notes", file=out)
    _print_skipped(c["skipped"], out)
    if args.json:
        print_json(c)
    return 0


def register_metrics(sub):
    p = add_command(sub, "metrics", "melodic and tonal statistics of samples, and their overlap with a reference "
                    "(OA, KL)", "melodylm metrics samples/gpt-small-20250101-120000 --reference data/default:train "
                    "--plot metrics.png")
    _add_sets(p, "MIDI file or folder, or DATA_DIR:split (default: the newest folder under ./samples)",
              f"DATA_DIR:split or a MIDI folder (default: {SCORE_REFERENCE} if it exists); none = samples alone")
    p.add_argument("--plot", default=None, metavar="PNG", help="draw both sets' distributions side by side")
    return p


def run_metrics(args) -> int:
    from pathlib import Path

    from melodylm.reports import metrics_report, newest_samples

    reference = args.reference
    if reference is None:
        default_dir = Path(SCORE_REFERENCE.rsplit(":", 1)[0])
        reference = SCORE_REFERENCE if default_dir.is_dir() else None
        if reference is None:
            print(f"melodylm: no reference ({default_dir} not found): statistics of the samples alone", file=sys.stderr)
    elif reference.lower() == "none":
        reference = None
    m = metrics_report(args.samples or str(newest_samples()), reference, plot=args.plot, melody=args.melody)
    out = sys.stderr if args.json else sys.stdout
    print(f"{_plural(m['n_samples'], 'sample')} from {m['samples_source']}"
          + (f" against {m['n_references']} melodies of {m['reference_source']} (OA: overlapping area of the "
             "distributions, 1 = same; KL(samples || reference) in nats)" if m["reference_source"] else ""), file=out)
    print(m["table"], file=out)
    _print_skipped(m["skipped"], out)
    if m["plot"]:
        print(f"wrote {m['plot']}", file=out)
    if args.json:
        print_json({k: v for k, v in m.items() if k != "table"})
    return 0
