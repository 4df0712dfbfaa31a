"""Reading MIDI safely, choosing the melody, transposing, and the score helpers everyone shares.

Everything here works on :class:`symusic.Score` objects and plain numpy note arrays, never torch.
A *melody* is a one-track score at the source file's resolution, with the source's tempo, time
and key signatures. :func:`load_melody` is the single entry point the dataset code uses; it never
raises for a bad file, it returns a :class:`ChosenMelody` with ``status`` and ``reason`` set instead.

The one copy of each score helper: a score's notes as an array (:func:`score_notes`,
:func:`notes_in_beats`), its bar lines (:func:`bar_lines`, :func:`bar_start`,
:func:`bar_start_before`, :func:`bar_index`, :func:`meter_changes`, :func:`time_signature_at`,
:func:`beats_per_bar`), cropping a continuation from a tick (:func:`crop_from`) and cutting a score
from a bar line (:func:`score_from`, :func:`trim_silence`, which leaves out a pop song's silent
intro bars). Prompts, samples, reports, plots and ``melodylm inspect`` use these. Tracks are
named for ``--melody track:N|NAME`` by :func:`find_track` and listed by :func:`describe_tracks`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from melodylm.errors import UserError

MELODY_MODES = ("auto", "skyline", "all")  # plus "track:N" (an index) and "track:NAME"
# Track names that announce the melody in files from notation programs and DAWs.
_MELODY_NAME = re.compile(r"melod|vocal|voice|lead|solo|tune|sing|lyric|theme", re.I)

# Defaults for what a single file may contain before it is skipped as absurd.
MAX_FILE_MB = 16.0
MAX_NOTES = 20_000  # notes in the chosen melody
MAX_BEATS = 20_000  # about 2 hours at 160 bpm; more is not a melody


@dataclass
class ChosenMelody:
    """The chosen melody of one file, or why there is none."""

    path: str
    status: str = "ok"  # ok | skipped | failed
    reason: str = ""
    score: object | None = None  # symusic.Score with exactly one track, or None
    n_notes: int = 0
    info: dict = field(default_factory=dict)  # what was chosen and what was dropped


def note_array(track) -> np.ndarray:
    """Notes of a symusic track as an (N, 3) int64 array of (time, duration, pitch), sorted."""
    arr = track.notes.numpy()
    out = np.stack([arr["time"], arr["duration"], arr["pitch"]], axis=1).astype(np.int64)
    if len(out):
        out = out[np.lexsort((out[:, 2], out[:, 0]))]
    return out


def polyphony_ratio(notes: np.ndarray) -> float:
    """Share of notes that start while an earlier note of the same track still sounds."""
    if len(notes) < 2:
        return 0.0
    ends = np.maximum.accumulate(notes[:, 0] + notes[:, 1])
    return float(np.mean(notes[1:, 0] < ends[:-1]))


def skyline(notes: np.ndarray) -> tuple[np.ndarray, int]:
    """Reduce notes to one line: the highest sounding note wins.

    At each onset only the highest note is kept; a kept note that starts while a lower kept note
    sounds cuts that note short, a note that starts under a higher sounding note is dropped.
    Returns the monophonic notes and how many notes were dropped.
    """
    if len(notes) and (notes[:, 1] > 0).all() and (notes[1:, 0] >= notes[:-1, 0] + notes[:-1, 1]).all():
        return notes, 0  # already one line (the usual melody track): nothing to drop or cut
    kept: list[list[int]] = []
    dropped = 0
    for t, d, p in notes.tolist():
        if d <= 0:
            dropped += 1
            continue
        if kept:
            pt, pd, pp = kept[-1]
            if t == pt:  # same onset: keep the higher one
                if p > pp:
                    kept[-1] = [t, d, p]
                dropped += 1
                continue
            if t < pt + pd:  # overlap
                if p > pp:
                    kept[-1][1] = t - pt
                else:
                    dropped += 1
                    continue
        kept.append([t, d, p])
    out = np.array(kept, dtype=np.int64).reshape(-1, 3)
    return out, dropped


def content_hash(notes: np.ndarray, tpq: int, relative_pitch: bool = False) -> str:
    """Hash of the note content (onsets and durations in beats, pitches), independent of file bytes.

    Two files with the same melody get the same hash, so the split can keep them together. With
    ``relative_pitch`` the hash is transposition-invariant (pitches relative to the lowest).
    """
    if len(notes):
        rel = notes.copy()
        rel[:, 0] -= rel[0, 0]
        if relative_pitch:
            rel[:, 2] -= rel[:, 2].min()
        beats = np.round(rel[:, :2] * (96.0 / tpq)).astype(np.int64)  # 96 per beat covers common grids
        data = np.concatenate([beats, rel[:, 2:3]], axis=1).astype("<i8").tobytes()
    else:
        data = b""
    return hashlib.sha1(data).hexdigest()[:16]


def check_melody_mode(mode: str, flag: str = "--melody") -> None:
    """Raise :class:`UserError` naming ``flag`` unless ``mode`` is a melody mode :func:`load_melody` knows."""
    if mode in MELODY_MODES or (mode.startswith("track:") and mode[6:].strip()):
        return
    raise UserError(f"{flag} {mode!r}: use auto, skyline, all, track:N (a track index, see `melodylm inspect FILE`) "
                    "or track:NAME")


def describe_tracks(tracks: list, notes: list[np.ndarray], which: list[int] | None = None,
                    pitched_only: bool = False) -> str:
    """Tracks of a file on one line, as ``--melody`` names them: ``track:1 'Bass' (32 notes), ...``.

    ``which`` limits the list to those indices; ``pitched_only`` leaves out drum tracks and
    tracks without notes (the ones a melody cannot be).
    """
    parts = []
    for i in range(len(tracks)) if which is None else which:
        t = tracks[i]
        if pitched_only and (t.is_drum or not len(notes[i])):
            continue
        n = len(notes[i])
        what = f"{n} note{'s' if n != 1 else ''}" if n else "no notes"
        parts.append(f"track:{i} {t.name or ''!r} ({'drums, ' if t.is_drum else ''}{what})")
    return ", ".join(parts) if parts else "none"


def find_track(tracks: list, notes: list[np.ndarray], key: str) -> tuple[int | None, str]:
    """The track ``--melody track:KEY`` means, or ``None`` and a one-line reason listing the tracks.

    ``KEY`` is an index (digits) or a track name, compared case-insensitively: an exact name first,
    else a unique part of one (``vocal`` finds ``Lead Vocal``). Among several tracks of that name the
    only pitched one with notes wins; otherwise the name is ambiguous.
    """
    key = key.strip()
    if key.isdigit():
        idx = int(key)
        if not 0 <= idx < len(tracks) or not len(notes[idx]):
            return None, (f"track {idx} does not exist or has no notes ({len(tracks)} tracks: "
                          f"{describe_tracks(tracks, notes)})")
        return idx, ""
    if not key:
        return None, "track: needs an index or a name"
    names = [(t.name or "").strip().casefold() for t in tracks]
    want = key.casefold()
    hits = [i for i, n in enumerate(names) if n == want] or [i for i, n in enumerate(names) if want in n]
    if len(hits) > 1:
        usable = [i for i in hits if not tracks[i].is_drum and len(notes[i])]
        hits = usable if len(usable) == 1 else hits
    if not hits:
        return None, f"no track is named {key!r}; tracks: {describe_tracks(tracks, notes)}"
    if len(hits) > 1:
        return None, (f"track name {key!r} is ambiguous ({len(hits)} tracks match); pick one by index: "
                      f"{describe_tracks(tracks, notes, hits)}")
    idx = hits[0]
    if not len(notes[idx]):
        return None, f"track {idx} {tracks[idx].name!r} has no notes; tracks: {describe_tracks(tracks, notes)}"
    return idx, ""


def choose_track(tracks: list, notes: list[np.ndarray]) -> tuple[int, str]:
    """Index of the melody track among non-empty, non-drum tracks, and why it was chosen."""
    candidates = [i for i, t in enumerate(tracks) if not t.is_drum and len(notes[i])]
    named = [i for i in candidates if _MELODY_NAME.search(tracks[i].name or "")]
    if named:
        return named[0], f"named {tracks[named[0]].name!r}"
    mono = [i for i in candidates if polyphony_ratio(notes[i]) <= 0.25]
    pool = mono or candidates
    best = max(pool, key=lambda i: (float(np.mean(notes[i][:, 2])), len(notes[i])))
    why = "highest mostly-monophonic track" if mono else "highest track (none is monophonic)"
    return best, why


def read_score(path: str | Path, max_file_mb: float = MAX_FILE_MB) -> tuple[object | None, str, str]:
    """Read a whole MIDI file: ``(score, "ok", "")``, or ``(None, status, reason)`` with status
    ``failed`` (unreadable, not MIDI, corrupt) or ``skipped`` (too large). Never raises for a bad file.
    """
    import symusic

    path = str(path)
    try:
        size = Path(path).stat().st_size
    except OSError as e:
        return None, "failed", f"cannot read file: {e.strerror or e}"
    if Path(path).is_dir():  # open() would fail below and call it a corrupt MIDI file
        return None, "failed", "cannot read file: it is a folder"
    if size == 0:
        return None, "failed", "empty file (0 bytes)"
    if size > max_file_mb * 1e6:
        return None, "skipped", f"file too large: {size / 1e6:.1f} MB (limit --max-file-mb {max_file_mb:g})"
    try:
        with open(path, "rb") as f:
            head = f.read(14)
        if head[:4] != b"MThd":
            if head[:4] == b"RIFF":
                reason = "RIFF-wrapped MIDI (RMID) is not supported"
            else:
                reason = "not a MIDI file (no MThd header)"
            return None, "failed", reason
        if len(head) == 14 and head[12] & 0x80:  # a valid file, but times in frames, not beats
            return None, "failed", "SMPTE time division is not supported (only ticks per beat)"
        score = symusic.Score(path)
    except Exception as e:  # symusic raises RuntimeError/ValueError for malformed files
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        msg = msg.removeprefix("MiniMidi: ").removesuffix(": iostream error")
        bad = re.fullmatch(r"Get (\w+)=(-?\d+)", msg)  # symusic's words for a data byte out of range
        if bad:
            msg = f"bad event: {bad[1].replace('_', ' ')} {bad[2]} is out of range"
        return None, "failed", f"corrupt MIDI: {msg[:200]}"
    return score, "ok", ""


def load_melody(
    path: str | Path,
    mode: str = "auto",
    max_notes: int = MAX_NOTES,
    max_file_mb: float = MAX_FILE_MB,
    max_beats: int = MAX_BEATS,
) -> ChosenMelody:
    """Read a MIDI file and pick its melody. Never raises for a bad file.

    ``mode``: ``auto`` (melody track reduced by skyline), ``skyline`` (all non-drum tracks merged
    and reduced to their top line), ``track:N`` (track N, reduced by skyline), ``all`` (all
    non-drum tracks merged, polyphony kept as chords), ``track:NAME`` (the track of that name,
    see :func:`find_track`).
    """
    path = str(path)
    mel = ChosenMelody(path=path)
    score, mel.status, mel.reason = read_score(path, max_file_mb)
    if score is None:
        return mel
    return select_melody(score, mode, mel, max_notes=max_notes, max_beats=max_beats)


def select_melody(score, mode: str, mel: ChosenMelody, max_notes: int = MAX_NOTES,
                  max_beats: int = MAX_BEATS) -> ChosenMelody:
    """Fill ``mel`` with the melody of ``score`` chosen by ``mode`` (see :func:`load_melody`)."""
    import symusic

    tpq = int(score.ticks_per_quarter)
    if tpq <= 0:
        mel.status, mel.reason = "failed", "invalid time division"
        return mel
    tracks = list(score.tracks)
    notes = [note_array(t) for t in tracks]
    non_drum = [i for i, t in enumerate(tracks) if not t.is_drum and len(notes[i])]
    info: dict = {"mode": mode, "tracks": len(tracks)}
    if not any(len(n) for n in notes):
        mel.status, mel.reason = "skipped", "no notes"
        return mel
    if not non_drum:
        mel.status, mel.reason = "skipped", "drums only"
        return mel
    if mode == "auto":
        idx, why = choose_track(tracks, notes)
        chosen, used = notes[idx], [idx]
        info.update(track=idx, track_name=tracks[idx].name, why=why)
    elif mode.startswith("track:") and mode[6:].strip():
        idx, why = find_track(tracks, notes, mode[6:])
        if idx is None:
            mel.status, mel.reason = "skipped", why
            return mel
        if tracks[idx].is_drum:  # its "pitches" name drum sounds (GM channel 10), not notes
            mel.status, mel.reason = "skipped", (f"track {idx} is a drum track; pick a pitched one with --melody: "
                                                 f"{describe_tracks(tracks, notes, pitched_only=True)}")
            return mel
        chosen, used = notes[idx], [idx]
        info.update(track=idx, track_name=tracks[idx].name)
    elif mode in ("skyline", "all"):
        used = non_drum
        chosen = np.concatenate([notes[i] for i in used])
        chosen = chosen[np.lexsort((chosen[:, 2], chosen[:, 0]))]
    else:
        mel.status, mel.reason = "failed", f"bad melody mode {mode!r}"
        return mel
    info["dropped_tracks"] = [i for i in range(len(tracks)) if i not in used and len(notes[i])]
    info["dropped_track_notes"] = int(sum(len(notes[i]) for i in info["dropped_tracks"]))
    if mode == "all":
        valid = chosen[:, 1] > 0
        dropped = int((~valid).sum())
        chosen = chosen[valid]
        # identical overlapping notes (same onset and pitch) would decode as one: keep one
        _, first = np.unique(chosen[:, [0, 2]], axis=0, return_index=True)
        dropped += len(chosen) - len(first)
        chosen = chosen[np.sort(first)]
    else:
        chosen, dropped = skyline(chosen)
    info["dropped_notes"] = int(dropped)
    if not len(chosen):
        mel.status, mel.reason = "skipped", "no notes with positive duration"
        return mel
    if len(chosen) > max_notes:
        mel.status, mel.reason = "skipped", f"too many notes: {len(chosen)} in the melody (limit --max-notes {max_notes})"
        return mel
    end_beats = float(chosen[:, 0].max() + chosen[:, 1].max()) / tpq
    if end_beats > max_beats:
        mel.status, mel.reason = "skipped", f"too long: {end_beats:.0f} beats (limit --max-beats {max_beats})"
        return mel

    out = symusic.Score(tpq)
    # Events after the melody's last note say nothing about it, and a time signature placed far
    # beyond it (a broken delta time) made miditok fill the gap with rests: 200k tokens, seconds.
    end = int((chosen[:, 0] + chosen[:, 1]).max())
    for ts in score.time_signatures:
        if ts.numerator > 0 and ts.denominator > 0 and ts.time <= end:
            out.time_signatures.append(symusic.TimeSignature(ts.time, ts.numerator, ts.denominator))
    for tp in score.tempos:
        if tp.time <= end:
            out.tempos.append(symusic.Tempo(tp.time, tp.qpm))
    for ks in score.key_signatures:
        if ks.time <= end:
            out.key_signatures.append(symusic.KeySignature(ks.time, ks.key, ks.tonality))
    src = tracks[used[0]]
    out.tracks.append(make_track(chosen, name=src.name or "melody", program=src.program))
    info["hash"] = content_hash(chosen, tpq)
    info["shape_hash"] = content_hash(chosen, tpq, relative_pitch=True)
    mel.score, mel.n_notes, mel.info = out, int(len(chosen)), info
    return mel


def make_track(notes: np.ndarray, name: str = "melody", program: int = 0, velocity: int = 90):
    """A symusic track from an (N, 3) array of (time, duration, pitch) in ticks."""
    import symusic

    track = symusic.Track(name=name, program=int(program), is_drum=False)
    n = len(notes)
    track.notes = symusic.Note.from_numpy(
        notes[:, 0].astype(np.int32), notes[:, 1].astype(np.int32), notes[:, 2].astype(np.int8),
        np.full(n, velocity, dtype=np.int8),
    )
    return track


def transpose(score, semitones: int, pitch_range: tuple[int, int]):
    """A copy of a one-track score shifted by ``semitones``; notes leaving ``pitch_range`` are dropped.

    ``pitch_range`` is half-open ``[low, high)`` like miditok's. Returns (score, dropped_count).
    """
    out = score.copy()
    lo, hi = pitch_range
    dropped = 0
    for i, tr in enumerate(score.tracks):
        notes = note_array(tr)
        notes[:, 2] += semitones
        keep = (notes[:, 2] >= lo) & (notes[:, 2] < hi)
        dropped += int((~keep).sum())
        out.tracks[i] = make_track(notes[keep], name=tr.name, program=tr.program)
    return out, dropped


# ---------------------------------------------------------------------------- notes, bars, crops
# One copy of each score helper: the sampler, the scorer and the plots all read scores this way.

def score_notes(score) -> np.ndarray:
    """Notes of all tracks of a score as an (N, 3) int64 array of (time, duration, pitch) in ticks.

    Sorted by onset, then pitch. An empty score gives a (0, 3) array.
    """
    parts = [note_array(t) for t in score.tracks]
    notes = np.concatenate(parts) if parts else np.zeros((0, 3), dtype=np.int64)
    return notes[np.lexsort((notes[:, 2], notes[:, 0]))] if len(notes) else notes.reshape(0, 3)


def notes_in_beats(notes: np.ndarray, tpq: int) -> np.ndarray:
    """A float copy of a (time, duration, pitch) tick array with time and duration in quarter notes."""
    out = notes.astype(float)
    out[:, :2] /= tpq
    return out


def time_signatures(score) -> list[tuple[int, int, int]]:
    """Valid (tick, numerator, denominator) of a score, sorted, with MIDI's 4/4 before the first."""
    sigs = sorted((int(ts.time), int(ts.numerator), int(ts.denominator)) for ts in score.time_signatures
                  if ts.numerator > 0 and ts.denominator > 0)
    if not sigs or sigs[0][0] > 0:
        sigs.insert(0, (0, 4, 4))
    return sigs


def time_signature_at(score, tick: int = 0) -> tuple[int, int]:
    """(numerator, denominator) in force at ``tick``: the score's first valid one if none starts by then, else 4/4."""
    sigs = sorted((int(ts.time), int(ts.numerator), int(ts.denominator)) for ts in score.time_signatures
                  if ts.numerator > 0 and ts.denominator > 0)
    active = [s for s in sigs if s[0] <= tick] or sigs[:1]
    return (active[-1][1], active[-1][2]) if active else (4, 4)


def beats_per_bar(numerator: int, denominator: int) -> float:
    """Quarter notes in one bar of a time signature (6/8 -> 3.0)."""
    return numerator * 4 / denominator


def bar_lines(score):
    """Bar starts in ticks, one after another without end, following the score's time signatures.

    4/4 holds before the first time signature; a time signature that falls inside a bar takes
    effect at the next bar line.
    """
    tpq = int(score.ticks_per_quarter)
    sigs = time_signatures(score)
    tick, i = 0, 0
    while True:
        yield tick
        while i + 1 < len(sigs) and sigs[i + 1][0] <= tick:
            i += 1
        _, num, den = sigs[i]
        tick += max(1, num * tpq * 4 // den)


def bar_start(score, bar: int) -> int:
    """Tick where bar ``bar`` (0-based) starts."""
    for b, tick in enumerate(bar_lines(score)):
        if b == bar:
            return tick
    raise AssertionError  # unreachable: the bar lines never end


def bar_start_before(score, tick: int) -> int:
    """Start of the bar that holds ``tick``."""
    start = 0
    for line in bar_lines(score):
        if line > tick:
            return start
        start = line
    raise AssertionError  # unreachable: the bar lines never end


def crop_from(score, notes: np.ndarray, tick: int):
    """A copy of ``score`` holding only ``notes``, moved so the bar holding ``tick`` starts at 0.

    ``notes`` is a (time, duration, pitch) tick array of the score's notes (usually those from
    ``tick`` on). Keeping the bar position makes the crop read like the same bars of the full
    score; the time signature in force at the bar start moves to 0 and later ones move with the
    notes. The crop has one track, named and programmed like the score's first track, its notes
    at that track's most common velocity (a sample's notes keep the velocity they decoded with,
    prompt kept or not). Returns (the cropped score, the moved notes).
    """
    shift = bar_start_before(score, int(tick))
    moved = np.asarray(notes, dtype=np.int64).reshape(-1, 3).copy()
    moved[:, 0] -= shift
    name, program = (score.tracks[0].name, score.tracks[0].program) if len(score.tracks) else ("", 0)
    velocity = 90  # make_track's default, for a score without notes
    if len(score.tracks) and len(score.tracks[0].notes):
        velocity = int(np.bincount(score.tracks[0].notes.numpy()["velocity"].astype(np.int64)).argmax())
    out = score.copy()
    out.tracks.clear()
    out.tracks.append(make_track(moved, name=name or "melody", program=program, velocity=velocity))
    sigs = list(score.time_signatures)
    active = [s for s in sigs if s.time <= shift][-1:]
    out.time_signatures.clear()
    for s in active + [s for s in sigs if s.time > shift]:
        moved_sig = s.copy()
        moved_sig.time = max(0, int(s.time) - shift)
        out.time_signatures.append(moved_sig)
    return out, moved


def bar_index(score, tick: int) -> int:
    """0-based number of the bar that holds ``tick`` (bar ``bar_index + 1`` in a score's own counting)."""
    for b, line in enumerate(bar_lines(score)):
        if line > tick:
            return b - 1
    raise AssertionError  # unreachable: the bar lines never end


def score_from(score, tick: int):
    """A copy of ``score`` from ``tick`` on, moved to start at 0.

    Notes that start before ``tick`` are dropped; the tempo, time and key signatures in force at
    ``tick`` move to 0 and later ones move with the notes (symusic's ``clip`` keeps them so). Give
    a bar line as ``tick`` so the bars stay the score's bars.
    """
    tick = int(tick)
    if tick <= 0:
        return score.copy()
    end = max(int(score.end()), tick) + 1
    return score.clip(tick, end, clip_end=False).shift_time(-tick)


def trim_silence(score, from_tick: int = 0) -> tuple[object, int]:
    """``score`` from the bar holding its first note at or after ``from_tick``, moved to start at 0.

    Whole empty bars before the melody go (a pop song's intro: its melody may start in bar 13);
    a pickup keeps its bar, so a score whose first note lies in its first bar comes back
    unchanged. Returns (the score, the tick of the original where it now starts).
    Raises ``ValueError`` when no note starts at or after ``from_tick``.
    """
    notes = score_notes(score)
    later = notes[notes[:, 0] >= from_tick]
    if not len(later):
        raise ValueError(f"no note starts at or after tick {from_tick}")
    start = bar_start_before(score, int(later[0, 0]))
    return (score_from(score, start) if start > 0 else score), start


def meter_changes(score) -> list[tuple[int, int, int]]:
    """(bar, numerator, denominator) for each meter of a score, bars from 1, as :func:`bar_lines` reads them.

    A time signature takes effect at the first bar line at or after it; of two before one bar line
    the later holds, and one repeating the meter in force is no change. 4/4 holds before the first.
    """
    out: list[tuple[int, int, int]] = []
    lines = bar_lines(score)
    bar, line = 1, next(lines)
    for tick, num, den in time_signatures(score):
        while line < tick:
            bar, line = bar + 1, next(lines)
        if out and out[-1][0] == bar:
            out.pop()
        if not out or out[-1][1:] != (num, den):
            out.append((bar, num, den))
    return out
