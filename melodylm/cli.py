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
