"""``melodylm inspect``: what a MIDI file holds and which melody the other commands would take from it."""

from __future__ import annotations

from melodylm.cli.common import add_command, print_json


def register_inspect(sub):
    p = add_command(sub, "inspect", "list a MIDI file's tracks, the melody --melody would take and why, its bars, "
                    "key and meter", "melodylm inspect song.mid")
    p.add_argument("file", metavar="MIDI", help="the MIDI file to describe")
    p.add_argument("--melody", default="auto",
                   help="the melody choice to show: auto | skyline | all | track:N | track:NAME (default auto)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON line instead")
    return p


def run_inspect(args) -> int:
    from melodylm.inspect_midi import format_report, inspect_file

    report = inspect_file(args.file, args.melody)
    if args.json:
        print_json(report.to_dict())
    else:
        print(format_report(report))
    return 0
