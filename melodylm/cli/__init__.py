"""Command line: the only code that reads argv.

:data:`COMMANDS` lists every subcommand with the module that defines it: ``register`` adds its
flags to the parser and ``run`` builds a config from them and calls one library function. User
mistakes raise :class:`melodylm.errors.UserError` and end as one line on stderr with exit code
2; ``--debug`` shows the traceback instead.

Modules: ``data`` (corpus, tokenize, detokenize), ``training`` (train, evaluate), ``sample``, ``render_cmd``,
``inspect_cmd``, ``serve_cmd``, ``scores`` (bleu, copies, metrics), ``demo``, ``package`` (info, export, import-hf);
``common`` holds what they share.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, NamedTuple

from melodylm import __version__
from melodylm.cli import data, demo, inspect_cmd, package, render_cmd, sample, scores, serve_cmd, training
from melodylm.cli.common import Formatter, Parser
from melodylm.errors import UserError


class Command(NamedTuple):
    """One subcommand: where it lives, how its flags are added, and what runs it."""

    module: str
    register: Callable[[argparse._SubParsersAction], argparse.ArgumentParser]
    run: Callable[[argparse.Namespace], int]


def _command(module, name: str) -> Command:
    return Command(module.__name__, getattr(module, f"register_{name}"), getattr(module, f"run_{name}"))


# In the order `melodylm -h` lists them: the order of the work.
COMMANDS: dict[str, Command] = {
    "corpus": _command(data, "corpus"),
    "inspect": _command(inspect_cmd, "inspect"),
    "tokenize": _command(data, "tokenize"),
    "detokenize": _command(data, "detokenize"),
    "train": _command(training, "train"),
    "evaluate": _command(training, "evaluate"),
    "sample": _command(sample, "sample"),
    "render": _command(render_cmd, "render"),
    "serve": _command(serve_cmd, "serve"),
    "bleu": _command(scores, "bleu"),
    "copies": _command(scores, "copies"),
    "metrics": _command(scores, "metrics"),
    "demo": _command(demo, "demo"),
    "info": _command(package, "info"),
    "export": _command(package, "export"),
    "import-hf": _command(package, "import_hf"),
}


def build_parser() -> argparse.ArgumentParser:
    """The ``melodylm`` parser with every subcommand of :data:`COMMANDS`."""
    parser = Parser(
        prog="melodylm",
        description="Token-based language modelling of melodies.",
        epilog="example:\n  melodylm tokenize && melodylm train --arch gpt && melodylm sample --prompt song.mid",
        formatter_class=Formatter,
    )
    parser.add_argument("--version", action="version", version=f"melodylm {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for command in COMMANDS.values():
        command.register(sub)
    return parser


def _run(argv: list[str]) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # argparse would blame the top-level parser; point at the subcommand's help
        prog = " ".join(["melodylm", *(c for c in (getattr(args, "command", None),
                                                    getattr(args, "corpus_command", None)) if c)])
        where = "" if prog == "melodylm" else f"{prog}: "
        raise UserError(f"{where}unrecognized arguments: {' '.join(extra)} (see `{prog} -h`)")
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    return int(COMMANDS[args.command].run(args) or 0)


def main(argv: list[str] | None = None) -> int:
    """Run ``melodylm`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        return _run(argv)
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


__all__ = ["COMMANDS", "Command", "build_parser", "main"]
