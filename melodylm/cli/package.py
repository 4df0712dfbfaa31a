"""Package and interop subcommands: ``info`` (versions, device, data found), ``export`` and ``import-hf``."""

from __future__ import annotations

import sys

from melodylm.cli.common import add_command, print_json
from melodylm.errors import UserError

EXPORT_FORMATS = ("hf",)


def register_info(sub):
    p = add_command(sub, "info", "versions, the torch device, and where the corpus and the shipped model were found",
                    "melodylm info --json")
    p.add_argument("--json", action="store_true", help="print the details as JSON")
    return p


def run_info(args) -> int:
    from melodylm.info import format_info, info

    d = info()
    if args.json:
        print_json(d)
    else:
        print(format_info(d))
    return 0


def register_export(sub):
    p = add_command(sub, "export", "write a GPT checkpoint as a Hugging Face folder (config, safetensors, "
                    "miditok tokenizer, model card)",
                    "melodylm export checkpoints/pretrained/model.pt --format hf -o hf/melodylm-oneills")
    p.add_argument("checkpoint", metavar="CKPT", help="checkpoint file or run folder (a GPT)")
    p.add_argument("--format", default="hf", help="hf: transformers GPT2LMHeadModel + miditok tokenizer (default)")
    p.add_argument("-o", "--out", required=True, metavar="DIR", help="folder to write (must be empty unless --force)")
    p.add_argument("--force", action="store_true", help="replace the contents of a non-empty DIR")
    p.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    return p


def run_export(args) -> int:
    from melodylm.hf import export_hf

    if args.format not in EXPORT_FORMATS:
        raise UserError(f"--format {args.format!r}: choose one of {', '.join(EXPORT_FORMATS)}")
    s = export_hf(args.checkpoint, args.out, force=args.force)
    print(f"wrote {s['out_dir']}: {', '.join(s['files'])} ({s['parameters'] / 1e6:.2f}M parameters); load it with "
          f"transformers.AutoModelForCausalLM.from_pretrained({s['out_dir']!r})", file=sys.stderr)
    if args.json:
        print_json(s)
    return 0


def register_import_hf(sub):
    p = add_command(sub, "import-hf", "turn an exported Hugging Face folder (GPT-2 + miditok tokenizer) into a "
                    "checkpoint", "melodylm import-hf hf/melodylm-oneills -o checkpoints/oneills-hf")
    p.add_argument("folder", metavar="DIR", help="folder with config.json, model.safetensors and tokenizer.json")
    p.add_argument("-o", "--out", required=True, metavar="RUN",
                   help="run folder (gets best.pt) or a .pt file, e.g. checkpoints/NAME")
    p.add_argument("--force", action="store_true", help="replace an existing checkpoint")
    return p


def run_import_hf(args) -> int:
    from melodylm.hf import import_hf

    path = import_hf(args.folder, args.out, force=args.force)
    print(f"wrote {path}: sample with `melodylm sample --checkpoint {path}`, fine-tune with "
          f"`melodylm train DATA --init {path}`", file=sys.stderr)
    return 0
