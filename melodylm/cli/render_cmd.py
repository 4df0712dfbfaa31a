"""``melodylm render``: any MIDI file -> sound (WAV), sheet music (SVG, MusicXML) and a piano roll (PNG)."""

from __future__ import annotations

import sys
from pathlib import Path

from melodylm.cli.common import add_command
from melodylm.errors import UserError


def register_render(sub):
    p = add_command(sub, "render", "hear and read MIDI files: WAV audio, SVG sheet music, PNG piano roll, MusicXML",
                    "melodylm render samples/mine/*.mid -o renders --formats wav,svg --program 73")
    p.add_argument("files", nargs="+", metavar="FILE.mid", help="MIDI files (samples, prompts, corpus tunes)")
    p.add_argument("-o", "--out", required=True, metavar="DIR", help="output folder: writes DIR/STEM.EXT per file")
    p.add_argument("--formats", default="wav,svg,png,musicxml", metavar="LIST",
                   help="comma-separated, from wav,svg,png,musicxml (default: all four)")
    p.add_argument("--program", type=int, default=0, metavar="N",
                   help="General MIDI instrument of the WAV, 0..127 (default 0, piano; 40 violin, 73 flute)")
    return p


def run_render(args) -> int:
    """Render every file; a bad file is one line on stderr and the others still render (exit 2 if any failed)."""
    from melodylm.render import check_formats, render_files

    formats = check_formats(args.formats)  # a bad list is one line before anything is read
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"-o {out}: exists and is not a folder (choose another -o)")

    def progress(line: str) -> None:
        if line.startswith("error: "):
            print(f"melodylm: {line}", file=sys.stderr, flush=True)
        else:
            print(f"wrote {line}", flush=True)

    report = render_files(args.files, out, formats, args.program, progress=progress)
    done, total = len(report.written), len(report.written) + len(report.errors)
    if report.errors:
        print(f"melodylm: rendered {done} of {total} files into {out}; "
              f"{len(report.errors)} could not be rendered (see above)", file=sys.stderr)
        return 2
    return 0
