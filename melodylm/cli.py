"""Command line: the only module that reads argv.

Each subcommand parses its flags, builds a config and calls one plain function. User mistakes
raise :class:`melodylm.errors.UserError` and end as one line on stderr with exit code 2;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from melodylm import __version__
from melodylm.errors import UserError


class _Formatter(argparse.RawDescriptionHelpFormatter):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is a UserError (one line, exit 2) like every other mistake."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{self.prog}: {message} (see `{self.prog} -h`)")


def _add(sub, name: str, help: str, example: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help, description=help, epilog=f"example:\n  {example}",
                       formatter_class=_Formatter)
    p.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    return p


def _print_json(obj) -> None:
    print(json.dumps(obj, sort_keys=False, default=str))


# --- subcommands -----------------------------------------------------------------------------
# Each _register_* adds one subcommand and binds it to a _cmd_* function.

def _register_tokenize(sub) -> None:
    p = _add(sub, "tokenize", "turn MIDI files/folders into a token dataset (default: the embedded corpus)",
             "melodylm tokenize corpora/oneills1850 -o data/oneills --scheme REMI --transpose -3:3")
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="MIDI files or folders (recursive); default: the embedded corpus")
    p.add_argument("-o", "--out", default=None, help="dataset folder (default: data/default)")
    p.add_argument("--scheme", default="REMI", help="miditok tokenization: REMI, TSD, MIDILike, Structured (default REMI)")
    p.add_argument("--melody", default="auto", help="auto | skyline | track:N | all (default auto)")
    p.add_argument("--velocities", action="store_true", help="keep note velocities as tokens")
    p.add_argument("--split", default="0.9,0.05,0.05", help="train,val,test fractions (default 0.9,0.05,0.05)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    p.add_argument("--transpose", default="0:0", metavar="LOW:HIGH", help="semitone range added to the training split, e.g. -5:6")
    p.add_argument("--subword", default="none", help="none | bpe | unigram (sentencepiece, learned on train)")
    p.add_argument("--vocab-size", type=int, default=1000, help="subword vocabulary size (default 1000)")
    p.add_argument("--workers", type=int, default=0, help="processes (default 0 = all cores)")
    p.add_argument("--max-notes", type=int, default=None, help="skip melodies with more notes (default 20000)")
    p.add_argument("--max-beats", type=int, default=None, help="skip melodies longer than this (default 20000)")
    p.add_argument("--max-file-mb", type=float, default=None, help="skip larger files (default 16)")
    p.add_argument("--force", action="store_true", help="replace an existing dataset folder")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_tokenize)


def _parse_floats(flag: str, text: str, n: int) -> tuple[float, ...]:
    try:
        vals = tuple(float(x) for x in text.split(","))
    except ValueError:
        vals = ()
    if len(vals) != n:
        raise UserError(f"{flag} {text!r}: expected {n} comma-separated numbers")
    return vals


def _parse_range(flag: str, text: str) -> tuple[int, int]:
    try:
        lo, hi = (int(x) for x in text.split(":"))
    except ValueError:
        raise UserError(f"{flag} {text!r}: expected LOW:HIGH, e.g. -3:3") from None
    return lo, hi


def _cmd_tokenize(args) -> int:
    from melodylm.dataset import DEFAULT_DATA_DIR, TokenizeConfig, tokenize
    from melodylm.midi import MAX_BEATS, MAX_FILE_MB, MAX_NOTES

    cfg = TokenizeConfig(
        inputs=args.inputs, out_dir=args.out or str(DEFAULT_DATA_DIR), scheme=args.scheme,
        melody=args.melody, velocities=args.velocities, split=_parse_floats("--split", args.split, 3),
        seed=args.seed, transpose=_parse_range("--transpose", args.transpose), subword=args.subword,
        vocab_size=args.vocab_size, workers=args.workers,
        max_notes=args.max_notes or MAX_NOTES, max_beats=args.max_beats or MAX_BEATS,
        max_file_mb=args.max_file_mb or MAX_FILE_MB, force=args.force,
    )
    s = tokenize(cfg, progress=not args.no_progress)
    why = ", ".join(f"{n} {k}" for k, n in sorted(s["reasons"].items(), key=lambda kv: -kv[1]))
    print(f"{s['files']} files: {s['ok']} ok, {s['skipped']} skipped, {s['failed']} failed"
          + (f" ({why})" if why else "") + f" in {s['seconds']:.1f}s", file=sys.stderr)
    print("tokens: " + ", ".join(f"{k} {v:,} ({s['tunes'][k]} tunes)" for k, v in s["tokens"].items())
          + f"; vocabulary {s['vocab_size']}; written to {s['out_dir']} (details: manifest.jsonl)", file=sys.stderr)
    if args.json:
        _print_json({k: s[k] for k in ("files", "ok", "skipped", "failed", "tokens", "tunes", "vocab_size", "out_dir")})
    return 0


def _register_detokenize(sub) -> None:
    p = _add(sub, "detokenize", "write one tune of a dataset back to MIDI",
             "melodylm detokenize data/default --split test --index 0 -o tune.mid")
    p.add_argument("data_dir", nargs="?", default=None, help="dataset folder (default: data/default)")
    p.add_argument("--split", default="train", help="train | val | test")
    p.add_argument("--index", type=int, default=0, help="tune number within the split")
    p.add_argument("-o", "--out", required=True, help="MIDI file to write")
    p.set_defaults(func=_cmd_detokenize)


def _cmd_detokenize(args) -> int:
    from melodylm.dataset import DEFAULT_DATA_DIR, Dataset

    out = Dataset(args.data_dir or DEFAULT_DATA_DIR).detokenize(args.split, args.index, args.out)
    print(f"wrote {out}", file=sys.stderr)
    return 0


def _register_corpus(sub) -> None:
    p = _add(sub, "corpus", "build a corpus of one-melody MIDI files from scores",
             "melodylm corpus import tunes.abc scores/ -o corpora/mine")
    csub = p.add_subparsers(dest="corpus_command", metavar="ACTION", parser_class=_Parser)
    q = _add(csub, "import", "convert ABC (multi-tune too), MusicXML, Humdrum and MIDI files into one MIDI file per tune",
             "melodylm corpus import tunes.abc scores/ -o corpora/mine --workers 2")
    q.add_argument("sources", nargs="+", metavar="SRC", help="files or folders (searched recursively)")
    q.add_argument("-o", "--out", required=True, metavar="DIR", help="output folder (gets *.mid and MANIFEST.tsv)")
    q.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    q.add_argument("--force", action="store_true", help="write into a non-empty folder (replaces a previous import)")
    q.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    q.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_corpus)


def _cmd_corpus(args) -> int:
    if args.corpus_command != "import":
        raise UserError("melodylm corpus: choose an action: import (see `melodylm corpus -h`)")
    from melodylm.corpus import import_corpus

    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers {args.workers}: must be at least 1")
    s = import_corpus([Path(x) for x in args.sources], Path(args.out), workers=args.workers,
                      force=args.force, progress=not args.no_progress)
    print(f"{s['tunes']} tunes: {s['ok']} ok, {s['failed']} failed, {s['duplicates']} with the same notes"
          f" as an earlier tune; {s['files']} files written to {s['out_dir']} in {s['seconds']:.1f}s"
          f" (details: {s['manifest']})", file=sys.stderr)
    for source, index, reason in s["failures"]:
        print(f"  failed: {source} tune {index}: {reason}", file=sys.stderr)
    if s["failed"] > len(s["failures"]):
        print(f"  ... {s['failed'] - len(s['failures'])} more failures in the manifest", file=sys.stderr)
    if args.json:
        _print_json({k: v for k, v in s.items() if k != "failures"})
    return 0


def _register_train(sub) -> None:
    p = _add(sub, "train", "train an LSTM, bi-LSTM or GPT on a token dataset",
             "melodylm train data/default --arch gpt --size small --max-time 600 -o checkpoints/gpt-small")
    p.add_argument("data_dir", nargs="?", default=None, help="dataset folder (default: data/default)")
    p.add_argument("-o", "--out", default=None, help="run folder (default: checkpoints/<arch>-<date>-<time>)")
    p.add_argument("--arch", default=None, help="lstm | bilstm | gpt (default gpt)")
    p.add_argument("--size", default=None, help="tiny | small | base model preset (default small)")
    p.add_argument("--config", default=None, help="TOML or JSON file of training keys")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set n_layer=6 --set dropout=0.2")
    for flag, kind, helptext in (
        ("--batch-size", int, "sequences per step per process"), ("--grad-accum", int, "micro-batches per step"),
        ("--lr", float, "peak learning rate"), ("--max-steps", int, "optimizer steps"),
        ("--max-epochs", float, "passes over the training tokens"),
        ("--max-time", float, "seconds of training"), ("--eval-interval", int, "steps between evaluations"),
        ("--patience", int, "evaluations without improvement before stopping"),
        ("--seed", int, "random seed"), ("--block-size", int, "context length in tokens"),
        ("--device", str, "auto | cpu | cuda | cuda:N | mps"), ("--precision", str, "auto | fp32 | bf16 | fp16")):
        p.add_argument(flag, type=kind, default=None, help=helptext)
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile the model")
    p.add_argument("--resume", action="store_true", help="continue the run in -o from its last.pt")
    p.add_argument("--force", action="store_true", help="start over in an existing run folder")
    p.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)


def _cmd_train(args) -> int:
    from melodylm.train import TrainConfig, load_config_file, parse_set, train

    d: dict = load_config_file(args.config) if args.config else {}
    flags = {"data_dir": args.data_dir, "out_dir": args.out, "arch": args.arch, "size": args.size,
             "batch_size": args.batch_size, "grad_accum": args.grad_accum, "learning_rate": args.lr,
             "max_steps": args.max_steps, "max_epochs": args.max_epochs, "max_time": args.max_time,
             "eval_interval": args.eval_interval, "patience": args.patience, "seed": args.seed,
             "device": args.device, "precision": args.precision, "compile": args.compile,
             "block_size": args.block_size}
    d.update({k: v for k, v in flags.items() if v is not None})
    d.update(parse_set(args.set))
    if args.resume and not d.get("out_dir"):
        raise UserError("--resume needs -o RUN_FOLDER (the run to continue)")
    cfg = TrainConfig.from_dict(d)
    summary = train(cfg, resume=args.resume, force=args.force, progress=not args.no_progress)
    if int(__import__("os").environ.get("RANK", 0)) == 0:
        print(f"{summary['steps']} steps, train loss {summary['train_loss']}, best val loss "
              f"{summary['best_val_loss']} ({summary['stopped']}); {summary['tokens_per_s']:,.0f} tokens/s; "
              f"checkpoint {summary['checkpoint']}", file=sys.stderr)
        if args.json:
            _print_json(summary)
    return 130 if summary["stopped"] == "interrupted" else 0


def _register_evaluate(sub) -> None:
    p = _add(sub, "evaluate", "score a checkpoint on a split: bits per note beside a 5-gram baseline",
             "melodylm evaluate checkpoints/gpt-small/best.pt data/default --split test --json")
    p.add_argument("checkpoint", help="checkpoint file or run folder")
    p.add_argument("data_dir", nargs="?", default=None, help="dataset folder (default: the one it was trained on)")
    p.add_argument("--split", default="test", help="train | val | test (default test)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    p.add_argument("--baseline-order", type=int, default=5, help="n-gram order of the baseline; 0 = none")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_evaluate)


def _cmd_evaluate(args) -> int:
    from melodylm.evaluate import evaluate

    if args.baseline_order < 0 or args.baseline_order == 1:
        raise UserError("--baseline-order must be 0 (none) or >= 2")
    r = evaluate(args.checkpoint, args.data_dir, args.split, args.device, args.baseline_order,
                 progress=not args.no_progress)
    b = r.get("baseline")
    print(f"{r['arch']} on {r['data_dir']}:{r['split']} ({r['tunes']} tunes, {r['notes']} notes, {r['tokens']} tokens)",
          file=sys.stderr)
    print(f"  model      : {r['bits_per_note']:.3f} bits/note  {r['bits_per_token']:.3f} bits/token  "
          f"ppl {r['perplexity']:.2f}  acc {r['accuracy']:.3f}", file=sys.stderr)
    if b:
        print(f"  {b['order']}-gram KN : {b['bits_per_note']:.3f} bits/note  {b['bits_per_token']:.3f} bits/token  "
              f"ppl {b['perplexity']:.2f}  (ratio model/baseline {r['bits_per_note'] / b['bits_per_note']:.2f})",
              file=sys.stderr)
    if args.json:
        _print_json({k: r[k] for k in ("loss", "perplexity", "bits_per_token", "bits_per_note", "accuracy",
                                        "tunes", "tokens", "notes", "split", "checkpoint")} | {"baseline": b})
    return 0


# @@SUBCOMMANDS@@


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="melodylm",
        description="Token-based language modelling of melodies.",
        epilog="example:\n  melodylm tokenize && melodylm train --arch gpt && melodylm sample --prompt song.mid",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"melodylm {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, fn in sorted(globals().items()):
        if name.startswith("_register_"):
            fn(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 0
        return int(args.func(args) or 0)
    except UserError as e:
        if debug:
            raise
        print(f"melodylm: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("melodylm: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
