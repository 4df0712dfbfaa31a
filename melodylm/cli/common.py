"""What every subcommand module shares: the parser classes, adding a subcommand, flag parsing, JSON."""

from __future__ import annotations

import argparse
import json
from typing import Callable

from melodylm.errors import UserError


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples in each subcommand's epilog on their own lines."""


class Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is a UserError (one line, exit 2) like every other mistake.

    ``late_epilog``, if set, rewrites the epilog when the help is shown: for text that needs a
    slow import, which ``melodylm -h`` and every other command should not pay for.
    """

    late_epilog: Callable[[str], str] | None = None

    def format_help(self) -> str:
        if self.late_epilog is not None:
            self.epilog, self.late_epilog = self.late_epilog(self.epilog or ""), None
        return super().format_help()

    def error(self, message: str) -> None:  # type: ignore[override]
        where = "" if self.prog == "melodylm" else f"{self.prog}: "  # the line starts with 'melodylm:' already
        raise UserError(f"{where}{message} (see `{self.prog} -h`)")


def add_command(sub, name: str, help: str, example: str) -> argparse.ArgumentParser:
    """A subcommand parser with its description, an example line and ``--debug``."""
    p = sub.add_parser(name, help=help, description=help, epilog=f"example:\n  {example}",
                       formatter_class=Formatter)
    p.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    return p


def print_json(obj) -> None:
    """One JSON line on stdout (the last line a script reads)."""
    print(json.dumps(obj, sort_keys=False, default=str))


def parse_floats(flag: str, text: str, n: int) -> tuple[float, ...]:
    """``n`` comma-separated numbers, else a UserError naming ``flag``."""
    try:
        vals = tuple(float(x) for x in text.split(","))
    except ValueError:
        vals = ()
    if len(vals) != n:
        raise UserError(f"{flag} {text!r}: expected {n} comma-separated numbers")
    return vals


def parse_range(flag: str, text: str) -> tuple[int, int]:
    """``LOW:HIGH`` as two integers, else a UserError naming ``flag``."""
    try:
        lo, hi = (int(x) for x in text.split(":"))
    except ValueError:
        raise UserError(f"{flag} {text!r}: expected LOW:HIGH, e.g. -3:3") from None
    return lo, hi
