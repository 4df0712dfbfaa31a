"""Data subcommands: ``corpus import`` (scores -> MIDI), ``tokenize`` (MIDI -> dataset), ``detokenize``."""

from __future__ import annotations

import sys
from pathlib import Path

from melodylm.cli.common import Parser, add_command, parse_floats, parse_range, print_json
from melodylm.errors import UserError


def register_corpus(sub):
    p = add_command(sub, "corpus", "build a corpus of one-melody MIDI files from scores",
                    "melodylm corpus import tunes.abc scores/ -o corpora/mine")
    csub = p.add_subparsers(dest="corpus_command", metavar="ACTION", parser_class=Parser)
    q = add_command(csub, "import", "convert ABC (multi-tune too), MusicXML, Humdrum and MIDI files into one MIDI "
                    "file per tune", "melodylm corpus import tunes.abc scores/ -o corpora/mine --workers 2")
    q.add_argument("sources", nargs="+", metavar="SRC", help="files or folders (searched recursively)")
    q.add_argument("-o", "--out", required=True, metavar="DIR", help="output folder (gets *.mid and MANIFEST.tsv)")
    q.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    q.add_argument("--force", action="store_true", help="write into a non-empty folder (replaces a previous import)")
    q.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    q.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def run_corpus(args) -> int:
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
        print_json({k: v for k, v in s.items() if k != "failures"})
    return 0


def register_tokenize(sub):
    from melodylm.infill import FIM_ORDERS

    p = add_command(sub, "tokenize", "turn MIDI files/folders into a token dataset (default: the embedded corpus)",
                    "melodylm tokenize corpora/oneills1850 -o data/oneills --scheme REMI --transpose -3:3")
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="MIDI files or folders (recursive); default: the embedded corpus")
    p.add_argument("-o", "--out", default=None, help="dataset folder (default: data/default)")
    p.add_argument("--scheme", default="REMI",
                   help="miditok tokenization: REMI, TSD, MIDILike, Structured (default REMI)")
    p.add_argument("--melody", default="auto",
                   help="auto | skyline | all | track:N | track:NAME (default auto; `melodylm inspect` lists tracks)")
    p.add_argument("--velocities", action="store_true", help="keep note velocities as tokens")
    p.add_argument("--split", default="0.9,0.05,0.05", help="train,val,test fractions (default 0.9,0.05,0.05)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    p.add_argument("--transpose", default="0:0", metavar="LOW:HIGH",
                   help="semitone range added to the training split, e.g. -5:6")
    p.add_argument("--subword", default="none", help="none | bpe | unigram (sentencepiece, learned on train)")
    p.add_argument("--vocab-size", type=int, default=1000, help="subword vocabulary size (default 1000)")
    p.add_argument("--workers", type=int, default=0,
                   help="worker processes (default 0 = all cores); 1 reads in this process, without the "
                        "crash and hang guard")
    p.add_argument("--controls", default="all", metavar="KINDS",
                   help="control tokens at the start of each tune: all (key, meter, style), none, or a comma "
                        "list such as key,meter (default all)")
    p.add_argument("--style", action="append", default=[], metavar="NAME=FOLDER",
                   help="style label of the files under FOLDER (repeatable; default: each input folder's name)")
    p.add_argument("--fim-rate", type=float, default=None, metavar="R",
                   help="share of training tunes that training reads rearranged for fill-in-the-middle "
                        "(default 0.5; 0 = no infilling)")
    p.add_argument("--fim-suffix-bars", type=int, default=None, metavar="N",
                   help="bars after a training gap that its rearrangement keeps as the suffix (default 8)")
    p.add_argument("--fim-order", default=None, choices=FIM_ORDERS,
                   help="layout of a rearranged tune: psm = prefix, suffix, middle; spm = suffix, prefix, "
                        "middle, so the middle continues the prefix where it ends (default spm)")
    p.add_argument("--max-notes", type=int, default=None, help="skip melodies with more notes (default 20000)")
    p.add_argument("--max-beats", type=int, default=None, help="skip melodies longer than this (default 20000)")
    p.add_argument("--max-file-mb", type=float, default=None, help="skip larger files (default 16)")
    p.add_argument("--force", action="store_true", help="replace an existing dataset folder")
    p.add_argument("--tokenizer", default="", metavar="CKPT",
                   help="reuse the tokenizer of a checkpoint, run, dataset or Hugging Face export (so that "
                        "model can be evaluated or fine-tuned on the new files)")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def run_tokenize(args) -> int:
    from melodylm.controls import parse_style_args
    from melodylm.dataset import DEFAULT_DATA_DIR, TokenizeConfig, tokenize
    from melodylm.infill import FIM_ORDER, FIM_RATE, FIM_SUFFIX_BARS
    from melodylm.midi import MAX_BEATS, MAX_FILE_MB, MAX_NOTES

    cfg = TokenizeConfig(
        inputs=args.inputs, out_dir=args.out or str(DEFAULT_DATA_DIR), scheme=args.scheme,
        melody=args.melody, velocities=args.velocities, split=parse_floats("--split", args.split, 3),
        seed=args.seed, transpose=parse_range("--transpose", args.transpose), subword=args.subword,
        vocab_size=args.vocab_size, workers=args.workers,
        # 0 must reach validate() and be refused, not silently become the default
        max_notes=MAX_NOTES if args.max_notes is None else args.max_notes,
        max_beats=MAX_BEATS if args.max_beats is None else args.max_beats,
        max_file_mb=MAX_FILE_MB if args.max_file_mb is None else args.max_file_mb, force=args.force,
        controls=args.controls, styles=parse_style_args(args.style),
        fim_rate=FIM_RATE if args.fim_rate is None else args.fim_rate, tokenizer=args.tokenizer,
        fim_order=FIM_ORDER if args.fim_order is None else args.fim_order,
        fim_suffix_bars=FIM_SUFFIX_BARS if args.fim_suffix_bars is None else args.fim_suffix_bars,
    )
    s = tokenize(cfg, progress=not args.no_progress)
    why = ", ".join(f"{n} {k}" for k, n in sorted(s["reasons"].items(), key=lambda kv: -kv[1]))
    print(f"{s['files']} files: {s['ok']} ok, {s['skipped']} skipped, {s['failed']} failed"
          + (f" ({why})" if why else "") + f" in {s['seconds']:.1f}s", file=sys.stderr)
    print("tokens: " + ", ".join(f"{k} {v:,} ({s['tunes'][k]} tunes)" for k, v in s["tokens"].items())
          + f"; vocabulary {s['vocab_size']}; written to {s['out_dir']} (details: manifest.jsonl)", file=sys.stderr)
    if s.get("controls"):
        print("controls: " + "; ".join(f"{k} {len(v)} ({', '.join(v[:6])}{', ...' if len(v) > 6 else ''})"
                                       for k, v in s["controls"].items())
              + f"; {s['fim_sequences']} training tunes rearranged for infilling", file=sys.stderr)
    for warning in s.get("warnings", ()):
        print(f"melodylm: warning: {warning}", file=sys.stderr)
    if args.json:
        print_json({k: s[k] for k in ("files", "ok", "skipped", "failed", "tokens", "tunes", "vocab_size",
                                      "out_dir")})
    return 0


def register_detokenize(sub):
    p = add_command(sub, "detokenize", "write one tune of a dataset back to MIDI",
                    "melodylm detokenize data/default --split test --index 0 -o tune.mid")
    p.add_argument("data_dir", nargs="?", default=None, help="dataset folder (default: data/default)")
    p.add_argument("--split", default="train", help="train | val | test")
    p.add_argument("--index", type=int, default=0, help="tune number within the split")
    p.add_argument("-o", "--out", required=True, help="MIDI file to write")
    return p


def run_detokenize(args) -> int:
    from melodylm.dataset import DEFAULT_DATA_DIR, Dataset

    out = Dataset(args.data_dir or DEFAULT_DATA_DIR).detokenize(args.split, args.index, args.out)
    print(f"wrote {out}", file=sys.stderr)
    return 0
