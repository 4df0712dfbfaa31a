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
        where = "" if self.prog == "melodylm" else f"{self.prog}: "  # the line starts with 'melodylm:' already
        raise UserError(f"{where}{message} (see `{self.prog} -h`)")


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
    p.add_argument("--workers", type=int, default=0,
                   help="worker processes (default 0 = all cores); 1 reads in this process, without the "
                        "crash and hang guard")
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
        # 0 must reach validate() and be refused, not silently become the default
        max_notes=MAX_NOTES if args.max_notes is None else args.max_notes,
        max_beats=MAX_BEATS if args.max_beats is None else args.max_beats,
        max_file_mb=MAX_FILE_MB if args.max_file_mb is None else args.max_file_mb, force=args.force,
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


def _register_sample(sub) -> None:
    p = _add(sub, "sample", "generate melodies from a checkpoint, from scratch or continuing a MIDI prompt",
             "melodylm sample --prompt tune.mid --prompt-bars 4 --max-bars 8 --n 4 --seed 1 --plot -o samples/mine")
    p.add_argument("--checkpoint", default=None, metavar="CKPT",
                   help="checkpoint file or run folder (default: checkpoints/pretrained/model.pt, else the newest "
                        "./checkpoints/*/best.pt)")
    p.add_argument("--prompt", default=None, metavar="MIDI", help="MIDI file to continue (default: start from nothing)")
    p.add_argument("-o", "--out", default=None, metavar="OUT_DIR",
                   help="output folder (default: samples/<run>-<date>-<time>); must be empty unless --force")
    p.add_argument("--n", type=int, default=1, help="samples, generated in one batch (default 1)")
    p.add_argument("--max-tokens", type=int, default=1024, help="new tokens per sample at most (default 1024)")
    p.add_argument("--max-notes", type=int, default=None, help="new notes per sample at most")
    p.add_argument("--max-bars", type=int, default=None, help="new bars per sample at most (REMI)")
    p.add_argument("--temperature", type=float, default=1.0, help="softmax temperature, > 0 (default 1.0)")
    p.add_argument("--top-k", type=int, default=0, help="sample among the k likeliest tokens; 0 = all, 1 = greedy")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus: the likeliest tokens holding this mass (default 1)")
    p.add_argument("--seed", type=int, default=0, help="random seed; same seed and flags give the same files on CPU")
    keep = p.add_mutually_exclusive_group()
    keep.add_argument("--keep-prompt", dest="keep_prompt", action="store_true", default=True,
                      help="write prompt and continuation (default)")
    keep.add_argument("--continuation-only", dest="keep_prompt", action="store_false",
                      help="write the continuation alone, from the bar where it starts")
    p.add_argument("--prompt-bars", type=int, default=None, metavar="N", help="use the first N bars of the prompt")
    p.add_argument("--prompt-notes", type=int, default=None, metavar="N", help="use the first N notes of the prompt")
    p.add_argument("--melody", default="auto", help="how to pick the prompt's melody: auto | skyline | track:N | all")
    p.add_argument("--no-constraint", action="store_true",
                   help="sample any token, even where the grammar forbids it (research; files may lose notes)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps (default auto)")
    p.add_argument("--plot", action="store_true", help="also write a piano-roll PNG per sample")
    p.add_argument("--force", action="store_true", help="write into a non-empty OUT_DIR (replaces earlier samples)")
    p.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    p.set_defaults(func=_cmd_sample)


def _cmd_sample(args) -> int:
    import time

    from melodylm.generate import find_default_checkpoint, generate, signature, validate_options, write_samples
    from melodylm.device import pick_device

    validate_options(args.n, args.temperature, args.top_k, args.top_p, args.max_tokens, args.max_notes,
                     args.max_bars, args.prompt_bars, args.prompt_notes)
    ckpt = args.checkpoint or find_default_checkpoint()
    if ckpt is None:
        raise UserError("no checkpoint: train one (`melodylm train`) or pass --checkpoint CKPT")
    if args.prompt is None and (args.prompt_bars or args.prompt_notes):
        raise UserError("--prompt-bars/--prompt-notes need --prompt MIDI")
    out = Path(args.out) if args.out else None
    if out is not None and out.exists() and (not out.is_dir() or (any(out.iterdir()) and not args.force)):
        raise UserError(f"-o {out}: {'not a folder' if not out.is_dir() else 'folder is not empty (use --force)'}")
    samples = generate(ckpt, args.prompt, args.n, max_tokens=args.max_tokens, max_notes=args.max_notes,
                       max_bars=args.max_bars, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                       seed=args.seed, constrain=not args.no_constraint, keep_prompt=args.keep_prompt,
                       melody=args.melody, prompt_bars=args.prompt_bars, prompt_notes=args.prompt_notes,
                       device=pick_device(args.device))
    info = samples[0].info
    if info.get("prompt") and info["prompt"]["dropped_pitches"]:
        d = info["prompt"]["dropped_pitches"]
        print(f"melodylm: {args.prompt}: {len(d)} prompt note(s) outside the model's pitch range were dropped "
              f"(pitches {', '.join(map(str, sorted(set(d))))})", file=sys.stderr)
    if out is None:
        run = Path(info["checkpoint"]).parent.name or "model"
        base = Path("samples") / f"{run}-{time.strftime('%Y%m%d-%H%M%S')}"
        out, k = base, 1
        while out.exists():
            out, k = Path(f"{base}-{k}"), k + 1
    elif args.force and out.is_dir():
        for old in out.glob("sample_[0-9][0-9][0-9].*"):
            if old.suffix in (".mid", ".json", ".png"):
                old.unlink()
    flags = {k: v for k, v in vars(args).items() if k not in ("func", "debug")}
    files = write_samples(samples, out, plot=args.plot, extra={"flags": flags})
    print(signature(samples[0]), file=sys.stderr)
    for f, s in zip(files, samples):
        print(f"wrote {f}: {s.n_notes} notes ({s.new_notes} new, {s.new_tokens} tokens, stopped at {s.stop}), "
              f"{s.invalid_tokens} invalid tokens", file=sys.stderr)
    if args.json:
        _print_json({"files": [str(f) for f in files], "n_notes": [s.n_notes for s in samples],
                     "invalid_tokens": [s.invalid_tokens for s in samples], "out_dir": str(out)})
    return 0


def _register_demo(sub) -> None:
    p = _add(sub, "demo", "the whole job on the embedded corpus: tokenize, train, evaluate, sample, score, report",
             "melodylm demo -o demo --train-seconds 240")
    p.add_argument("-o", "--out", default="demo", help="output folder (default: demo)")
    p.add_argument("--train-seconds", type=float, default=240.0, help="training time budget (default 240)")
    p.add_argument("--n", type=int, default=4, help="continuations to sample (default 4)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--force", action="store_true", help="replace an existing output folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args) -> int:
    from melodylm.demo import run_demo

    if args.train_seconds <= 0 or args.n < 1:
        raise UserError("--train-seconds must be > 0 and --n >= 1")
    run_demo(args.out, args.train_seconds, args.n, args.seed, args.force, progress=not args.no_progress)
    return 0


_SCORE_REFERENCE = "data/default:train"


def _score_num(x, digits: int = 4) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _copy_where(row: dict | None) -> str:
    if not row:
        return "none"
    return (f"{row['notes']} notes: {row['name']} from note {row['sample_note']} (beat {row['sample_beat']:g}) "
            f"= {row['reference']} note {row['reference_note']} (beat {row['reference_beat']:g})")


def _print_score_skipped(skipped: list[dict], out) -> None:
    for s in skipped[:10]:
        print(f"  skipped {s['name']}: {s['reason']}", file=out)
    if len(skipped) > 10:
        print(f"  ... {len(skipped) - 10} more skipped", file=out)


def _register_bleu(sub) -> None:
    p = _add(sub, "bleu", "BLEU of generated melodies beside human and random baselines, with copy detection",
             "melodylm bleu samples/gpt-small-20250101-120000 --reference data/default:train --weights custom")
    p.add_argument("samples", nargs="?", default=None, metavar="SAMPLES",
                   help="MIDI file or folder (default: the newest folder of MIDI files under ./samples)")
    p.add_argument("--reference", default=None, metavar="REF",
                   help=f"DATA_DIR:split or a MIDI folder (default: {_SCORE_REFERENCE})")
    p.add_argument("--weights", default="custom",
                   help="custom (0,1/12,1/12,1/6,1/6,1/6,1/6,1/12,1/12) | bleu4 | uniform:N | a list like 0,1,1,2")
    p.add_argument("--smoothing", type=int, default=0, help="nltk smoothing method 0..7 (default 0 = none)")
    p.add_argument("--unit", default="token", help="token (base tokens) | pitch | interval (default token)")
    p.add_argument("--human", default=None, metavar="REF",
                   help="real melodies for the human baseline (default: the reference dataset's test split); none = skip")
    p.add_argument("--seed", type=int, default=0, help="seed of the baselines (default 0)")
    p.add_argument("--melody", default="auto", help="how to read MIDI melodies: auto | skyline | track:N | all")
    p.add_argument("--min-copy", type=int, default=16, metavar="N",
                   help="a run of N notes found verbatim in the reference counts as a copy (default 16)")
    p.add_argument("--per-sample", action="store_true", help="also score every sample alone")
    p.add_argument("--json", action="store_true", help="print the numbers as JSON (last line of stdout)")
    p.set_defaults(func=_cmd_bleu)


def _cmd_bleu(args) -> int:
    from melodylm.score import bleu_report, check_bleu_options, copy_report, load_pair, newest_samples

    check_bleu_options(args.weights, args.smoothing, args.unit)
    if args.min_copy < 1:
        raise UserError(f"--min-copy {args.min_copy}: must be at least 1")
    samples = args.samples or str(newest_samples())
    reference = args.reference or _SCORE_REFERENCE
    # Load both sets once: the BLEU and the copy detection read the same melodies.
    smp, ref = load_pair(samples, reference, args.melody, need_tokens=args.unit == "token")
    r = bleu_report(smp, ref, weights=args.weights, smoothing=args.smoothing, unit=args.unit,
                    per_sample=args.per_sample, human=args.human, seed=args.seed, melody=args.melody)
    c = copy_report(smp, ref, min_notes=args.min_copy, melody=args.melody)
    out = sys.stderr if args.json else sys.stdout
    b = r["baselines"]
    print(f"BLEU {_score_num(r['bleu'])}  ({r['n_samples']} samples from {r['samples']} against {r['n_references']} "
          f"melodies of {r['reference']}, unit {r['unit']})", file=out)
    print(f"  human     {_score_num(b['human'])}  " + (f"({r['n_samples']} real melodies of {r['human_source']}, cut to "
          "the samples' lengths)" if b["human"] is not None else "(no held-out melodies; --human REF)"), file=out)
    print(f"  random    {_score_num(b['random'])}  (bigram chain fitted on the reference, the samples' lengths)", file=out)
    print(f"  self-BLEU {_score_num(r['self_bleu'])}  (each sample against the others: high = the samples repeat "
          "each other)", file=out)
    print(f"copies: {c['n_copied']}/{c['n_samples']} samples ({100 * c['copied_share']:.0f}%) hold a run of >= "
          f"{c['min_notes']} notes found verbatim in the reference; longest {_copy_where(c['longest'])}", file=out)
    if args.per_sample:
        for row, cp in zip(r["per_sample"], c["per_sample"]):
            print(f"  {row['name']}: BLEU {_score_num(row['bleu'])}, longest copy {cp['notes']} notes", file=out)
    if r["note"]:
        print(f"note: {r['note']}", file=out)
    _print_score_skipped(r["skipped"], out)
    print(f"signature: {r['signature']}", file=out)
    if args.json:
        copies = {k: c[k] for k in ("unit", "min_notes", "n_copied", "copied_share", "median_notes", "longest")}
        result = {k: r[k] for k in ("bleu", "baselines", "self_bleu", "signature", "n_samples", "n_references",
                                     "unit", "weights", "note")} | {"copies": copies}
        if args.per_sample:
            result["per_sample"] = [row | {"copy_notes": cp["notes"]} for row, cp in zip(r["per_sample"], c["per_sample"])]
        _print_json(result)
    return 0


def _register_copies(sub) -> None:
    p = _add(sub, "copies", "find the longest run of each sample copied verbatim from the reference melodies",
             "melodylm copies samples/gpt-small-20250101-120000 --reference data/default:train --unit interval")
    p.add_argument("samples", nargs="?", default=None, metavar="SAMPLES",
                   help="MIDI file or folder (default: the newest folder of MIDI files under ./samples)")
    p.add_argument("--reference", default=None, metavar="REF",
                   help=f"DATA_DIR:split or a MIDI folder (default: {_SCORE_REFERENCE})")
    p.add_argument("--min-notes", type=int, default=16, metavar="N", help="a run of N notes counts as a copy (default 16)")
    p.add_argument("--unit", default="note",
                   help="note: same (pitch, duration); interval: same (interval, duration), transpositions too")
    p.add_argument("--melody", default="auto", help="how to read MIDI melodies: auto | skyline | track:N | all")
    p.add_argument("--json", action="store_true", help="print the report as JSON (last line of stdout)")
    p.set_defaults(func=_cmd_copies)


def _cmd_copies(args) -> int:
    from melodylm.score import copy_report, newest_samples

    c = copy_report(args.samples or str(newest_samples()), args.reference or _SCORE_REFERENCE,
                    min_notes=args.min_notes, unit=args.unit, melody=args.melody)
    out = sys.stderr if args.json else sys.stdout
    for row in c["per_sample"]:
        mark = "COPY" if row["notes"] >= c["min_notes"] else "    "
        where = (f" from note {row['sample_note']} = {row['reference']} note {row['reference_note']} "
                 f"(beat {row['reference_beat']:g})" if row["notes"] else "")
        print(f"{mark} {row['name']}: {row['notes']} of {row['sample_notes']} notes{where}", file=out)
    print(f"{c['n_copied']}/{c['n_samples']} samples ({100 * c['copied_share']:.0f}%) hold a run of >= "
          f"{c['min_notes']} notes ({c['unit']}s) found in one of {c['n_references']} melodies of {c['reference']}; "
          f"median longest run {c['median_notes']:g} notes", file=out)
    _print_score_skipped(c["skipped"], out)
    if args.json:
        _print_json(c)
    return 0


def _register_metrics(sub) -> None:
    p = _add(sub, "metrics", "melodic and tonal statistics of samples, and their overlap with a reference (OA, KL)",
             "melodylm metrics samples/gpt-small-20250101-120000 --reference data/default:train --plot metrics.png")
    p.add_argument("samples", nargs="?", default=None, metavar="SAMPLES",
                   help="MIDI file or folder, or DATA_DIR:split (default: the newest folder under ./samples)")
    p.add_argument("--reference", default=None, metavar="REF",
                   help=f"DATA_DIR:split or a MIDI folder (default: {_SCORE_REFERENCE} if it exists); none = samples alone")
    p.add_argument("--plot", default=None, metavar="PNG", help="draw both sets' distributions side by side")
    p.add_argument("--melody", default="auto", help="how to read MIDI melodies: auto | skyline | track:N | all")
    p.add_argument("--json", action="store_true", help="print the numbers as JSON (last line of stdout)")
    p.set_defaults(func=_cmd_metrics)


def _cmd_metrics(args) -> int:
    from melodylm.score import metrics_report, newest_samples

    reference = args.reference
    if reference is None:
        default_dir = Path(_SCORE_REFERENCE.rsplit(":", 1)[0])
        reference = _SCORE_REFERENCE if default_dir.is_dir() else None
        if reference is None:
            print(f"melodylm: no reference ({default_dir} not found): statistics of the samples alone", file=sys.stderr)
    elif reference.lower() == "none":
        reference = None
    m = metrics_report(args.samples or str(newest_samples()), reference, plot=args.plot, melody=args.melody)
    out = sys.stderr if args.json else sys.stdout
    print(f"{m['n_samples']} samples from {m['samples_source']}"
          + (f" against {m['n_references']} melodies of {m['reference_source']} (OA: overlapping area of the "
             "distributions, 1 = same; KL(samples || reference) in nats)" if m["reference_source"] else ""), file=out)
    print(m["table"], file=out)
    _print_score_skipped(m["skipped"], out)
    if m["plot"]:
        print(f"wrote {m['plot']}", file=out)
    if args.json:
        _print_json({k: v for k, v in m.items() if k != "table"})
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
        args, extra = parser.parse_known_args(argv)
        if extra:  # argparse would blame the top-level parser; point at the subcommand's help
            prog = " ".join(["melodylm", *(c for c in (getattr(args, "command", None),
                                                        getattr(args, "corpus_command", None)) if c)])
            where = "" if prog == "melodylm" else f"{prog}: "
            raise UserError(f"{where}unrecognized arguments: {' '.join(extra)} (see `{prog} -h`)")
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
    except OSError as e:  # a path that cannot be read or written (not a folder, permissions, disk full)
        if debug:
            raise
        where = f"{e.filename}: " if e.filename else ""
        print(f"melodylm: error: {where}{e.strerror or e} (check the path, its permissions and free space; "
              "--debug shows where it happened)", file=sys.stderr)
        return 2
