"""Import symbolic scores (ABC, MusicXML, Humdrum, MIDI) into a folder of one-melody MIDI files.

Every tune becomes one MIDI file with one track: track name (the title), tempo, time signature,
key signature, and the melody's notes at exact positions (rests are implied by timing). A
``MANIFEST.tsv`` beside the files lists every tune, including those that failed and why, so a
corpus can be audited and rebuilt.

Parsing is music21's; this module adds what a bulk import needs on top of it. Each point was
measured on music21 10.5; with all of them, the ~13k folk tunes of music21's own corpus convert
with 0 parse failures (about 9 minutes on 2 worker processes):

* Multi-tune ABC files are split on ``X:`` lines and parsed tune by tune. Parsed as one opus, a
  single broken tune loses the whole file, and tunes that share an ``X:`` number overwrite each
  other.
* Ties are merged only between notes of the same pitch that touch. ``stripTies()`` also merges
  a "tie" between different pitches, which O'Neill's transcriptions write as a slur (``G3-A``, in 47 of 240 tunes checked).
* The time signature is the first measure's: the first one of a flattened stream can be a bogus
  1/16 from later in the tune.
* The melody is the first part that has notes (some multi-part tunes open with a part of
  invisible rests).
* Sources are parsed with ``forceSource=True``: music21 otherwise reads its own pickle cache,
  which hides parse errors of changed files and changes parse timings by a factor of 4.

music21 is an optional dependency (``pip install 'melodylm[music21]'``) and is imported lazily.
"""

from __future__ import annotations

import csv
import hashlib
import multiprocessing
import os
import re
import time
import unicodedata
import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterable

from melodylm.errors import UserError
from melodylm.outputs import check_out_dir

TICKS_PER_BEAT = 480  # divisible by 3 and by 2**5: triplets and 1/128 notes land on whole ticks
DEFAULT_QPM = 120.0  # MIDI's own default tempo, written explicitly when the source gives none
DEFAULT_VELOCITY = 80  # folk sources carry no dynamics; a fixed mezzo-forte
MANIFEST_NAME = "MANIFEST.tsv"
MANIFEST_COLUMNS = ("file", "title", "source", "index", "status", "reason", "n_notes")

# suffix -> kind; ABC is split into tunes here, the other formats are parsed whole by music21
SUFFIXES = {
    ".abc": "abc",
    ".xml": "musicxml",
    ".musicxml": "musicxml",
    ".mxl": "musicxml",
    ".krn": "humdrum",
    ".mid": "midi",
    ".midi": "midi",
}

_X_LINE = re.compile(r"^X:", re.MULTILINE)
_T_LINE = re.compile(r"^T:[ \t]*(.*?)[ \t]*$", re.MULTILINE)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


# --- music21 access ----------------------------------------------------------------------------

def _music21():
    """Import music21 or explain how to install it (it is an optional extra)."""
    from melodylm.extras import require

    return require("music21", "music21", "corpus import")


def music21_corpus_path(name: str) -> Path:
    """Folder of one collection bundled with music21, e.g. ``"oneills1850"`` or ``"essenFolksong"``.

    Raises UserError when music21 is missing or has no collection of that name.
    """
    root = Path(_music21().__file__).parent / "corpus"
    path = root / name
    if "/" in name or "\\" in name or name.startswith(".") or not path.is_dir():
        names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
        raise UserError(f"music21 has no corpus {name!r}; choose one of: {', '.join(names)}")
    return path


# --- ABC splitting ----------------------------------------------------------------------------

def split_abc(text: str) -> list[str]:
    """Split an ABC file into one self-contained text per tune.

    A tune starts at an ``X:`` line and runs to the next one. The file header (everything before
    the first ``X:``, e.g. default ``L:`` or ``%%`` directives) is kept in front of every tune, so
    each piece parses on its own. A file without any ``X:`` line is one tune if it has content.
    """
    starts = [m.start() for m in _X_LINE.finditer(text)]
    if not starts:
        return [text] if text.strip() else []
    header = text[: starts[0]]
    ends = starts[1:] + [len(text)]
    return [header + text[a:b].rstrip() + "\n" for a, b in zip(starts, ends)]


_L_OR_M_LINE = re.compile(r"^[LM]:", re.MULTILINE)
_K_LINE = re.compile(r"^K:", re.MULTILINE)


def default_unit_length(tune: str) -> str:
    """Give a tune without ``L:`` and ``M:`` the ABC standard's default unit length, 1/8.

    music21 derives the unit from ``M:`` when ``L:`` is missing (ABC 2.1, section 3.1.7), but
    rejects a tune that has neither, though the standard says 1/8 then.
    """
    if _L_OR_M_LINE.search(tune):
        return tune
    k = _K_LINE.search(tune)
    at = k.start() if k else len(tune)
    return tune[:at] + "L:1/8\n" + tune[at:]


def _abc_title(tune: str) -> str:
    """First ``T:`` field of an ABC tune, without parsing it (for tunes that fail to parse)."""
    m = _T_LINE.search(tune)
    return m.group(1) if m else ""


# --- from a music21 score to note events ------------------------------------------------------

@dataclass
class TuneNotes:
    """One tune as MIDI-ready data: notes in ticks at :data:`TICKS_PER_BEAT` and its metadata."""

    title: str
    notes: list[tuple[int, int, int, int]]  # (onset, end, pitch, velocity) in ticks, sorted
    time_signature: tuple[int, int] | None
    key: str | None  # a key name mido accepts, e.g. "D", "Gm", "Bb"
    qpm: float
    n_grace: int = 0  # grace notes dropped (they have no duration of their own)


def _ticks(quarter_length) -> int:
    # Fraction keeps triplet offsets (1/3, 2/3) exact until the final rounding.
    return round(Fraction(quarter_length) * TICKS_PER_BEAT)


def _first_part_with_notes(score):
    """The melody part: the first part that has at least one note (not only rests)."""
    parts = list(getattr(score, "parts", None) or [score])
    for part in parts:
        if next(iter(part.recurse().notes), None) is not None:
            return part
    return None


def _first_of(part, score, cls):
    """First ``cls`` object of the part's first measure, else of the part, else of the score."""
    from music21 import stream

    first = part.getElementsByClass(stream.Measure).first()
    for where in (first, part, score):
        if where is None:
            continue
        found = where.recurse().getElementsByClass(cls).first()
        if found is not None:
            return found
    return None


_MAJOR = ("Cb", "Gb", "Db", "Ab", "Eb", "Bb", "F", "C", "G", "D", "A", "E", "B", "F#", "C#")
_MINOR = ("Abm", "Ebm", "Bbm", "Fm", "Cm", "Gm", "Dm", "Am", "Em", "Bm", "F#m", "C#m", "G#m", "D#m", "A#m")


def _key_name(ks) -> str | None:
    """MIDI key-signature name of a music21 Key/KeySignature.

    A MIDI key signature is only major or minor: other modes (dorian, mixolydian...) keep their
    number of sharps and are written as the major key with that signature.
    """
    if ks is None or not -7 <= ks.sharps <= 7:
        return None
    minor = getattr(ks, "mode", None) == "minor"
    return (_MINOR if minor else _MAJOR)[ks.sharps + 7]


def _time_signature(ts) -> tuple[int, int] | None:
    if ts is None:
        return None
    num, den = int(ts.numerator), int(ts.denominator)
    # MIDI stores the denominator as a power of two; anything else cannot be written.
    if num < 1 or den < 1 or den & (den - 1):
        return None
    return num, den


def _note_tie(note, chord) -> str | None:
    tie = note.tie if note.tie is not None else (chord.tie if chord is not None else None)
    return tie.type if tie is not None else None


def melody_from_score(score, title: str = "", title_from_part: bool = False) -> TuneNotes:
    """Extract the melody of a music21 score (or part) as tick-exact note events.

    Chords keep all their notes (choosing one line is the tokenizer's job). Grace notes are
    dropped and counted. Notes are merged only when the first is tied and the next has the same
    pitch and starts exactly where it ends; a tie mark between different pitches is a slur and
    both notes stay. The title is the score's, else the melody part's name if
    ``title_from_part`` (MIDI files keep it in the track name), else ``title``.
    """
    from music21 import key, meter, tempo

    part = _first_part_with_notes(score)
    if part is None:
        raise ValueError("no notes")
    md = getattr(score, "metadata", None)
    part_name = (part.partName or "") if title_from_part else ""
    title = (md.bestTitle if md is not None and md.bestTitle else "") or part_name.strip() or title

    notes: list[list[int]] = []  # [onset, end, pitch, velocity]
    open_ties: dict[int, int] = {}  # pitch -> index in notes of a note whose tie continues
    n_grace = 0
    for el in part.flatten().notes:
        if el.duration.isGrace or el.duration.quarterLength == 0:
            n_grace += 1
            continue
        members = [(el, None)] if el.isNote else [(n, el) for n in getattr(el, "notes", ())]
        onset = _ticks(el.offset)
        end = _ticks(el.offset + el.duration.quarterLength)
        velocity = el.volume.velocity if el.volume.velocity is not None else DEFAULT_VELOCITY
        for n, chord in members:
            if not hasattr(n, "pitch"):
                continue  # unpitched percussion has no place in a melody
            pitch = n.pitch.midi
            tie = _note_tie(n, chord)
            i = open_ties.pop(pitch, None)
            if i is not None and notes[i][1] == onset:
                notes[i][1] = end
            else:
                i = len(notes)
                notes.append([onset, end, pitch, int(velocity)])
            if tie in ("start", "continue"):
                open_ties[pitch] = i
    if not notes:
        raise ValueError("no notes" + (f" ({n_grace} grace notes only)" if n_grace else ""))

    notes.sort()
    # Overlapping notes of one pitch (voice overlays, unisons) cannot both sound in MIDI:
    # end the earlier one where the later starts.
    last: dict[int, list[int]] = {}
    for n in notes:
        prev = last.get(n[2])
        if prev is not None and prev[1] > n[0]:
            prev[1] = n[0]
        last[n[2]] = n
    events = [tuple(n) for n in notes if n[1] > n[0]]

    mm = _first_of(part, score, tempo.MetronomeMark)
    qpm = mm.getQuarterBPM() if mm is not None else None
    return TuneNotes(
        title=title,
        notes=events,  # type: ignore[arg-type]
        time_signature=_time_signature(_first_of(part, score, meter.TimeSignature)),
        key=_key_name(_first_of(part, score, key.KeySignature)),
        qpm=float(qpm) if qpm else DEFAULT_QPM,
        n_grace=n_grace,
    )


# --- writing ----------------------------------------------------------------------------------

def _ascii(text: str) -> str:
    # MIDI text events are Latin-1 by convention and readers disagree on anything else; fold
    # accents away so every reader shows the same title. The manifest keeps the original.
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


def write_midi(melody: TuneNotes, path: Path) -> None:
    """Write a melody as a one-track MIDI file at :data:`TICKS_PER_BEAT` ticks per beat."""
    import mido

    head = [mido.MetaMessage("track_name", name=_ascii(melody.title))]
    if melody.time_signature:
        num, den = melody.time_signature
        head.append(mido.MetaMessage("time_signature", numerator=num, denominator=den))
    if melody.key:
        head.append(mido.MetaMessage("key_signature", key=melody.key))
    head.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(melody.qpm)))
    head.append(mido.Message("program_change", program=0, channel=0))

    # (tick, order, message): at equal ticks a note ends before the next one starts
    timed = []
    for onset, end, pitch, velocity in melody.notes:
        timed.append((onset, 1, pitch, mido.Message("note_on", note=pitch, velocity=velocity)))
        timed.append((end, 0, pitch, mido.Message("note_off", note=pitch, velocity=0)))
    timed.sort(key=lambda t: t[:3])

    track = mido.MidiTrack(head)
    now = 0
    for tick, _, _, msg in timed:
        track.append(msg.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    mid = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT)
    mid.tracks.append(track)
    mid.save(str(path))


# --- jobs -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Job:
    source: str  # as shown in the manifest (relative to the folder or file given)
    path: str  # on disk
    kind: str  # one of SUFFIXES' values
    stem: str  # unique, safe file-name stem for this source
    index: int  # 1-based tune number within the source (ABC); 0: the whole file
    text: str | None = None  # the tune's ABC text


def _row(job: _Job, index: int, file: str = "", title: str = "", status: str = "ok",
         reason: str = "", n_notes: int = 0) -> dict[str, Any]:
    clean = lambda s: " ".join(str(s).split())  # noqa: E731 - tabs/newlines would break the TSV
    return {"file": file, "title": clean(title), "source": job.source, "index": index,
            "status": status, "reason": clean(reason)[:300], "n_notes": n_notes}


def _reason(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {msg[0] if msg else ''}".rstrip(": ")


def _convert(job: _Job, out_dir: str) -> list[dict[str, Any]]:
    """Parse one job (one ABC tune, or one whole file) and write its tune(s). Never raises."""
    music21 = _music21()
    fallback = _abc_title(job.text) if job.text is not None else ""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # music21 warns per odd bar; the manifest has what matters
            if job.text is not None:
                parsed = music21.converter.parse(default_unit_length(job.text), format="abc", forceSource=True)
            else:
                # music21 snaps MIDI onsets to 1/4 and 1/3 beats by default, which moves
                # dotted-sixteenth rhythms; MIDI timing is already exact, so keep it.
                extra = {"quantizePost": False} if job.kind == "midi" else {}
                parsed = music21.converter.parse(job.path, forceSource=True, **extra)
    except Exception as e:  # noqa: BLE001 - any parser error fails this tune only
        return [_row(job, max(job.index, 1), title=fallback, status="failed", reason=_reason(e))]

    # A file may hold several pieces (an opus); an ABC piece holds exactly one tune.
    scores = list(parsed.scores) if isinstance(parsed, music21.stream.Opus) else [parsed]
    rows = []
    for k, score in enumerate(scores, start=1):
        index = job.index if job.index else k
        name = f"{job.stem}_{index:04d}.mid"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                default = job.stem if len(scores) == 1 else f"{job.stem} {index}"
                melody = melody_from_score(score, title=fallback or default, title_from_part=job.kind == "midi")
            write_midi(melody, Path(out_dir) / name)
        except Exception as e:  # noqa: BLE001
            rows.append(_row(job, index, title=fallback, status="failed", reason=_reason(e)))
            continue
        reason = f"dropped {melody.n_grace} grace notes" if melody.n_grace else ""
        row = _row(job, index, file=name, title=melody.title, reason=reason, n_notes=len(melody.notes))
        row["_digest"] = hashlib.sha1(repr(melody.notes).encode()).hexdigest()
        rows.append(row)
    if not scores:
        rows.append(_row(job, max(job.index, 1), title=fallback, status="failed", reason="no scores in file"))
    return rows


def _convert_star(args: tuple[_Job, str]) -> list[dict[str, Any]]:
    return _convert(*args)


def _source_files(sources: Iterable[Path]) -> list[tuple[Path, str]]:
    """(file, name shown in the manifest) for every importable file, folders searched recursively."""
    found: list[tuple[Path, str]] = []
    for src in sources:
        src = Path(src)
        if not src.exists():
            raise UserError(f"{src}: no such file or folder; pass existing ABC/MusicXML/Humdrum/MIDI files or folders")
        if src.is_dir():
            files = sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
            if not files:
                raise UserError(f"{src}: folder has no {'/'.join(sorted(SUFFIXES))} files")
            found += [(p, (Path(src.name) / p.relative_to(src)).as_posix()) for p in files]
        elif src.suffix.lower() in SUFFIXES:
            found.append((src, src.as_posix()))
        else:
            raise UserError(f"{src}: unknown format; importable suffixes are {', '.join(sorted(SUFFIXES))}")
    return found


def _read_text(path: Path) -> str:
    # ABC files from before UTF-8 was common are Latin-1; decoding cannot fail with it.
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _jobs(sources: Iterable[Path]) -> list[_Job]:
    """One job per ABC tune and per other file, with unique, deterministic file-name stems."""
    jobs: list[_Job] = []
    used: set[str] = set()
    for path, shown in _source_files(sources):
        base = _UNSAFE.sub("_", path.stem).strip("._") or "tune"
        stem, k = base, 1
        while stem.lower() in used:  # same stem in two folders; lower(): case-insensitive file systems
            k += 1
            stem = f"{base}-{k}"
        used.add(stem.lower())
        kind = SUFFIXES[path.suffix.lower()]
        if kind == "abc":
            text = _read_text(path)
            jobs += [_Job(shown, str(path), kind, stem, i, tune)
                     for i, tune in enumerate(split_abc(text), start=1)]
        else:
            jobs.append(_Job(shown, str(path), kind, stem, 0))
    return jobs


def _prepare_out_dir(out_dir: Path, force: bool) -> None:
    """Refuse a file or a non-empty folder without ``force``; with it, remove an earlier import.

    Only the files an earlier import wrote (listed in its manifest) are removed, so no stale
    tunes remain; files we did not write are left alone.
    """
    if check_out_dir(out_dir, force, fix="pass --force to replace the previous import, or choose another -o"):
        old = out_dir / MANIFEST_NAME
        if old.is_file():
            for row in read_manifest(old):
                name = row.get("file") or ""
                if name and "/" not in name and "\\" not in name and name.endswith(".mid"):
                    (out_dir / name).unlink(missing_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)


def read_manifest(path: Path) -> list[dict[str, str]]:
    """Rows of a ``MANIFEST.tsv`` as dicts keyed by :data:`MANIFEST_COLUMNS`."""
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE, quotechar=None))


def _write_manifest(rows: list[dict[str, Any]], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS, delimiter="\t", quoting=csv.QUOTE_NONE, quotechar=None,
                           escapechar=None, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def import_corpus(sources: list[Path], out_dir: Path, workers: int | None = None, force: bool = False,
                  progress: bool = True) -> dict:
    """Convert score files and folders into one MIDI file per tune in ``out_dir``.

    Writes ``<source-stem>_<index:04d>.mid`` per tune and ``MANIFEST.tsv`` listing every tune
    (ok or failed, with the reason). ``workers`` defaults to the number of CPUs; 1 runs in this
    process. Refuses a non-empty ``out_dir`` unless ``force``.

    Returns a summary: ``tunes``, ``ok``, ``failed``, ``files`` (written), ``out_dir``,
    ``duplicates`` (tunes whose notes equal an earlier tune's; written, and named in the
    manifest's reason), ``manifest``, ``seconds`` and ``failures`` (up to 20 ``(source, index, reason)``).
    """
    _music21()  # fail early, before touching the output folder
    from tqdm import tqdm

    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    jobs = _jobs(sources)
    _prepare_out_dir(out_dir, force)
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs) or 1))
    work = [(job, str(out_dir)) for job in jobs]

    rows: list[dict[str, Any]] = []
    bar = tqdm(total=len(work), unit="tune", desc="import", disable=not progress)
    try:
        if workers == 1:
            for item in work:
                rows += _convert_star(item)
                bar.update()
        else:
            # fork shares the already imported music21 with the workers (saves ~1 s each)
            methods = multiprocessing.get_all_start_methods()
            ctx = multiprocessing.get_context("fork" if "fork" in methods else None)
            with ctx.Pool(workers) as pool:
                # ordered results keep the manifest deterministic; chunks amortise the IPC
                for result in pool.imap(_convert_star, work, chunksize=4):
                    rows += result
                    bar.update()
    finally:
        bar.close()

    # Collections repeat tunes (music21's O'Neill has alternative transcriptions side by side).
    # Identical note lists are kept but named, so a dataset split can keep copies together.
    first: dict[str, str] = {}
    n_dup = 0
    for r in rows:
        digest = r.pop("_digest", None)
        if digest is None:
            continue
        if digest in first:
            n_dup += 1
            r["reason"] = "; ".join(filter(None, [r["reason"], f"same notes as {first[digest]}"]))
        else:
            first[digest] = r["file"]

    _write_manifest(rows, out_dir / MANIFEST_NAME)
    failed = [r for r in rows if r["status"] != "ok"]
    return {
        "tunes": len(rows),
        "ok": len(rows) - len(failed),
        "failed": len(failed),
        "files": sum(1 for r in rows if r["file"]),
        "duplicates": n_dup,
        "out_dir": str(out_dir),
        "manifest": str(out_dir / MANIFEST_NAME),
        "seconds": round(time.perf_counter() - t0, 1),
        "failures": [(r["source"], r["index"], r["reason"]) for r in failed[:20]],
    }
