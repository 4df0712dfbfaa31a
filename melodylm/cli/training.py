"""Training subcommands: ``train`` (a run folder of checkpoints) and ``evaluate`` (bits per note)."""

from __future__ import annotations

import os
import sys

from melodylm.cli.common import add_command, print_json
from melodylm.errors import UserError

# Every flag of `train` that sets a TrainConfig key, once: (flags, key, type, help). A flag left
# out of the command line stays None and does not override the config file.
TRAIN_FLAGS = (
    (("-o", "--out"), "out_dir", str, "run folder (default: checkpoints/<arch>-<date>-<time>)"),
    (("--arch",), "arch", str, "lstm | bilstm | gpt (default gpt)"),
    (("--size",), "size", str, "tiny | small | base model preset (default small)"),
    (("--init",), "init", str, "start a new run from this checkpoint's weights and model (fine-tuning)"),
    (("--batch-size",), "batch_size", int, "sequences per step per process"),
    (("--grad-accum",), "grad_accum", int, "micro-batches per step"),
    (("--lr",), "learning_rate", float, "peak learning rate"),
    (("--max-steps",), "max_steps", int, "optimizer steps"),
    (("--max-epochs",), "max_epochs", float, "passes over the training tokens"),
    (("--max-time",), "max_time", float, "seconds of training"),
    (("--eval-interval",), "eval_interval", int, "steps between evaluations"),
    (("--patience",), "patience", int, "evaluations without improvement before stopping"),
    (("--seed",), "seed", int, "random seed"),
    (("--block-size",), "block_size", int, "context length in tokens"),
    (("--device",), "device", str, "auto | cpu | cuda | cuda:N | mps"),
    (("--precision",), "precision", str, "auto | fp32 | bf16 | fp16"),
)


def register_train(sub):
    p = add_command(sub, "train", "train an LSTM, bi-LSTM or GPT on a token dataset",
                    "melodylm train data/default --arch gpt --size small --max-time 600 -o checkpoints/gpt-small")
    p.add_argument("data_dir", nargs="?", default=None, help="dataset folder (default: data/default)")
    p.add_argument("--config", default=None, help="TOML or JSON file of training keys")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set n_layer=6 --set dropout=0.2")
    for flags, key, kind, helptext in TRAIN_FLAGS:
        metavar = "CKPT" if key == "init" else flags[-1].lstrip("-").replace("-", "_").upper()
        p.add_argument(*flags, dest=key, type=kind, default=None, metavar=metavar, help=helptext)
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile the model")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in -o from its last.pt (what it honours: see below)")
    p.add_argument("--force", action="store_true", help="start over in an existing run folder")
    p.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.late_epilog = _train_epilog  # the resume rules live with TrainConfig, which imports torch: read on -h only
    return p


def _train_epilog(epilog: str) -> str:
    import textwrap

    from melodylm.train_config import RESUME_HELP

    return textwrap.fill(RESUME_HELP, 100) + "\n\n" + epilog


def train_settings(args) -> dict:
    """The TrainConfig keys of the command line: config file, then flags, then ``--set``."""
    from melodylm.train import load_config_file, parse_set

    d: dict = load_config_file(args.config) if args.config else {}
    keys = ["data_dir", "compile", *(key for _, key, _, _ in TRAIN_FLAGS)]
    d.update({k: getattr(args, k) for k in keys if getattr(args, k) is not None})
    d.update(parse_set(args.set))
    return d


def run_train(args) -> int:
    from melodylm.train import TrainConfig, summary_line, train

    d = train_settings(args)
    if args.resume and not d.get("out_dir"):
        raise UserError("--resume needs -o RUN_FOLDER (the run to continue)")
    summary = train(TrainConfig.from_dict(d), resume=args.resume, force=args.force, progress=not args.no_progress)
    if int(os.environ.get("RANK", 0)) == 0:  # under torchrun, one process reports
        print(summary_line(summary), file=sys.stderr)
        if args.json:
            print_json(summary)
    return 130 if summary["stopped"] == "interrupted" else 0


def register_evaluate(sub):
    p = add_command(sub, "evaluate", "score a checkpoint on a split: bits per note beside a 5-gram baseline",
                    "melodylm evaluate checkpoints/gpt-small/best.pt data/default --split test --json")
    p.add_argument("checkpoint", nargs="?", default=None,
                   help="checkpoint file or run folder (default: the newest ./checkpoints/*/best.pt, else the "
                        "shipped model)")
    p.add_argument("data_dir", nargs="*", default=None, metavar="DATA",
                   help="dataset folder (default: the one it was trained on), or MIDI files and folders, "
                        "tokenized with the checkpoint's tokenizer")
    p.add_argument("--split", default="test", help="train | val | test (default test)")
    p.add_argument("--infill", default=None, metavar="A:B",
                   help="also score bars A..B given both sides and given the left side only (infilling models)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    p.add_argument("--baseline-order", type=int, default=5, help="n-gram order of the baseline; 0 = none")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def run_evaluate(args) -> int:
    from melodylm.evaluate import evaluate

    if args.baseline_order < 0 or args.baseline_order == 1:
        raise UserError("--baseline-order must be 0 (none) or >= 2")
    data = args.data_dir[0] if len(args.data_dir or []) == 1 else (args.data_dir or None)
    r = evaluate(args.checkpoint, data, args.split, args.device, args.baseline_order,
                 progress=not args.no_progress, infill=args.infill)
    b = r.get("baseline")
    print(f"{r['arch']} on {r['data_dir']}:{r['split']} ({r['tunes']} tunes, {r['notes']} notes, {r['tokens']} tokens)",
          file=sys.stderr)
    for reason, count in (r.get("left_out") or {}).items():
        print(f"  left out {count} file(s): {reason}", file=sys.stderr)
    print(f"  {'model:':<11} {r['bits_per_note']:.3f} bits/note  {r['bits_per_token']:.3f} bits/token  "
          f"ppl {r['perplexity']:.2f}  acc {r['accuracy']:.3f}", file=sys.stderr)
    print(f"  {'':<11} = {r['pitch_bits_per_note']:.3f} pitch + {r['rhythm_bits_per_note']:.3f} rhythm "
          f"({r['onset_bits_per_note']:.3f} onset + {r['duration_bits_per_note']:.3f} duration) + "
          f"{r['other_bits_per_note']:.3f} other (bars, meters, controls, end) bits/note", file=sys.stderr)
    if b:
        print(f"  {str(b['order']) + '-gram KN:':<11} {b['bits_per_note']:.3f} bits/note  "
              f"{b['bits_per_token']:.3f} bits/token  ppl {b['perplexity']:.2f}  "
              f"(ratio model/baseline {r['bits_per_note'] / b['bits_per_note']:.2f})", file=sys.stderr)
    f = r.get("infill")
    if f:
        print(f"  infill {f['span']}: {f['both_sides_bits_per_note']:.3f} bits/note given both sides, "
              f"{f['left_only_bits_per_note']:.3f} given the left side only ({f['tunes']} tunes, {f['notes']} notes, "
              f"{f['skipped']} skipped, {f['no_right_side']} with no bar after {f['span'].split(':')[1]})",
              file=sys.stderr)
    if args.json:
        keys = ("loss", "perplexity", "bits_per_token", "bits_per_note", "pitch_bits_per_note", "rhythm_bits_per_note",
                "onset_bits_per_note", "duration_bits_per_note", "other_bits_per_note", "accuracy", "tunes", "tokens",
                "notes", "split", "checkpoint")
        print_json({k: r[k] for k in keys} | {"baseline": b, "infill": f, "left_out": r.get("left_out") or {}})
    return 0
