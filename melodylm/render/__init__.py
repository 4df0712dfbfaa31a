"""Hear it and read it: any one-melody MIDI file -> WAV, sheet music (SVG, MusicXML), piano roll (PNG).

``render_file(path, out_dir)`` writes ``OUT_DIR/STEM.EXT`` for each format and returns the paths;
``render_files(paths, out_dir)`` does it for many files and reports each failure in one line
without stopping the others. The engines are optional (``pip install 'melodylm[render]'``): a
missing one raises :class:`MissingExtraError` naming what to install.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from melodylm.render.common import MissingExtraError, RenderError, read_melody
from melodylm.render.meta import copy_meta

FORMATS = ("wav", "svg", "png", "musicxml")

__all__ = ["FORMATS", "MissingExtraError", "RenderError", "RenderReport", "copy_meta", "render_file",
           "render_files", "render_score"]


def check_formats(formats) -> tuple[str, ...]:
    """Formats as a tuple ("wav,svg" or a list), or a :class:`RenderError` naming the unknown one."""
    if isinstance(formats, str):
        formats = [f for f in formats.split(",") if f.strip()]
    out = tuple(f.strip().lower().lstrip(".") for f in formats)
    bad = [f for f in out if f not in FORMATS]
    if bad or not out:
        raise RenderError(f"--formats {','.join(out) or '(none)'}: choose from {','.join(FORMATS)}")
    return out


def render_score(score, out_dir: str | Path, stem: str, formats=FORMATS, program: int = 0,
                 split_tick: int | None = None, title: str | None = None) -> dict[str, Path]:
    """Render a one-melody symusic score (e.g. a fresh sample) to ``OUT_DIR/STEM.EXT``.

    ``split_tick`` (ticks of ``score``) is where the continuation begins: marked and coloured in
    the sheet music and the piano roll. Returns {format: path}.
    """
    formats = check_formats(formats)
    out_dir = Path(out_dir)
    out: dict[str, Path] = {}
    if "wav" in formats:
        from melodylm.render.audio import render_wav

        out["wav"] = render_wav(score, out_dir / f"{stem}.wav", program=program)
    if "svg" in formats or "musicxml" in formats:
        from melodylm.render.sheet import render_sheet

        out.update(render_sheet(
            score, svg_path=out_dir / f"{stem}.svg" if "svg" in formats else None,
            musicxml_path=out_dir / f"{stem}.musicxml" if "musicxml" in formats else None,
            split_tick=split_tick, title=title))
    if "png" in formats:
        from melodylm.render.pianoroll import save_pianoroll

        labels = {"single_label": "melody"} if split_tick is None else {}
        out["png"] = save_pianoroll(score, out_dir / f"{stem}.png", split_tick, title=title or stem, **labels)
    return {f: out[f] for f in formats}


def render_file(midi_path: str | Path, out_dir: str | Path, formats=FORMATS, program: int = 0,
                split_tick: int | None = None, stem: str | None = None) -> dict[str, Path]:
    """Render the melody of one MIDI file to ``OUT_DIR/STEM.EXT`` (STEM defaults to the file's stem).

    The melody is chosen as training chooses it (``melodylm.midi.load_melody``, mode ``auto``).
    ``split_tick`` is in the file's ticks. Raises :class:`RenderError` (one line naming the file)
    for a missing, corrupt, empty or drum-only file and :class:`MissingExtraError` when an
    engine is not installed.
    """
    formats = check_formats(formats)
    score = read_melody(midi_path)
    return render_score(score, out_dir, stem or Path(midi_path).stem, formats, program, split_tick)


@dataclass
class RenderReport:
    """What :func:`render_files` did: files written per input, one-line errors per failed input."""

    written: dict[str, dict[str, Path]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """One line per input: the files it gave, or why it gave none."""
        out = [f"{src}: " + ", ".join(str(p) for p in paths.values()) for src, paths in self.written.items()]
        return out + [f"error: {msg}" for msg in self.errors.values()]


def render_files(paths, out_dir: str | Path, formats=FORMATS, program: int = 0, progress=None) -> RenderReport:
    """Render each MIDI file; a bad file is one line in ``errors`` and the others still render.

    A missing engine (:class:`MissingExtraError`) and bad options stop everything, since every
    file would fail the same way. ``progress``: optional callable(line) told about each file.
    Two inputs with the same stem would overwrite each other: the later one is an error.
    """
    formats = check_formats(formats)
    if not 0 <= int(program) <= 127:
        raise RenderError(f"--program {program}: must be a General MIDI program 0..127 (0 = piano)")
    report = RenderReport()
    stems: dict[str, str] = {}
    for p in map(str, paths):
        stem = Path(p).stem
        try:
            if stem in stems:
                raise RenderError(f"{p}: same name as {stems[stem]}; its files would overwrite those (rename one)")
            stems[stem] = p
            report.written[p] = render_file(p, out_dir, formats, program)
            line = f"{p}: " + ", ".join(str(x) for x in report.written[p].values())
        except MissingExtraError:
            raise
        except RenderError as e:
            report.errors[p] = str(e)
            line = f"error: {e}"
        if progress is not None:
            progress(line)
    return report
