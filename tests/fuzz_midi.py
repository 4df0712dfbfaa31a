"""A seeded corpus of broken and odd MIDI files, made by mutating valid ones.

The fuzz tests use it; it can also be run by hand to write a corpus for a manual look::

    python tests/fuzz_midi.py OUT_DIR --n 500 --seed 0

How files are made
------------------
Seeds are valid files: a few tunes of the embedded O'Neill corpus (read as bytes) and synthetic
multi-track songs built with mido (melody, bass, chords, drums; several resolutions and metres).
Each seed is parsed once into :class:`Song` -- header fields plus, per track, a list of
``(delta, event bytes)`` with every status byte written out -- and :func:`serialize` writes it
back with our own writer, so a mutation can produce bytes that mido itself would refuse to write.
:func:`make_case` picks a kind and a seed with a ``random.Random`` seeded by ``(seed, index)``,
so file ``i`` of a corpus is the same whatever ``n`` is and on any machine.

Kinds (``KINDS``; the weights in ``_WEIGHTS`` say how often each is drawn):

``valid``              a seed, unchanged (so a corpus always holds usable tunes)
``truncated``          cut at a random byte
``chunk_length``       a wrong length in the MThd or an MTrk header (0, off by some bytes, 2**32-1)
``running_status``     a status byte dropped (data bytes then follow a meta event or open a track),
                       or a stray data byte inserted
``absurd_delta``       a delta time of up to 0x0FFFFFFF ticks, or a VLQ that never ends
``zero_tracks``        a header that declares no tracks, or tracks the file does not have
``smpte``              an SMPTE time division (negative frames per second, ticks per frame)
``format2``            format 2 (independent patterns), or an undefined format number
``meta_length``        a meta event whose length is 0, too short, or longer than its track;
                       tempo 0, time signature 0/0 or 7/2**255, key signature -100
``note_order``         notes ending before they start (note-off first), zero-length notes,
                       note-offs with no note-on, notes that never end
``overlap``            identical notes stacked on each other, in one track and across tracks
``drums_only``         every channel event moved to the drum channel
``many_notes``         more than 100,000 notes (``generate`` writes exactly one such file)
``empty``              0 bytes
``text``               a text file named .mid
``random_tail``        a valid MThd followed by random bytes (with or without an MTrk tag)
``noise``              a few random bytes flipped, inserted or deleted anywhere
``unknown_chunk``      an unknown chunk between the tracks (valid: readers must skip it)
"""

from __future__ import annotations

import argparse
import io
import random
import struct
from dataclasses import dataclass, field
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[1] / "corpora" / "oneills1850"
N_REAL_SEEDS = 6  # corpus tunes used as seeds, spread over the collection

Event = tuple[int, bytes]  # (delta ticks, complete event bytes with status)


@dataclass
class Song:
    """A standard MIDI file as header fields and raw events."""

    fmt: int = 1
    division: int = 480  # ticks per quarter, or an SMPTE word when the high bit is set
    tracks: list[list[Event]] = field(default_factory=list)
    ntracks: int | None = None  # declared track count; None = len(tracks)


@dataclass
class Case:
    """One generated file: where it is and what was done to it."""

    path: Path
    kind: str
    seed_name: str


# --- writing ---------------------------------------------------------------------------------------
def vlq(n: int) -> bytes:
    """MIDI variable-length quantity (7 bits per byte, high bit = more follows)."""
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def meta(kind: int, data: bytes, length: int | None = None) -> bytes:
    """A meta event; ``length`` overrides the declared length (to lie about it)."""
    return bytes([0xFF, kind]) + vlq(len(data) if length is None else length) + data


def track_body(events: list[Event], end: bool = True) -> bytes:
    body = b"".join(vlq(d) + ev for d, ev in events)
    if end:
        body += b"\x00" + meta(0x2F, b"")
    return body


def chunk(tag: bytes, body: bytes, length: int | None = None) -> bytes:
    return tag + struct.pack(">I", len(body) if length is None else length) + body


def header(fmt: int, ntracks: int, division: int, length: int = 6) -> bytes:
    return chunk(b"MThd", struct.pack(">HHH", fmt, ntracks, division & 0xFFFF), length)


def serialize(song: Song) -> bytes:
    n = len(song.tracks) if song.ntracks is None else song.ntracks
    return header(song.fmt, n, song.division) + b"".join(chunk(b"MTrk", track_body(t)) for t in song.tracks)


# --- reading seeds ----------------------------------------------------------------------------------
def _event_bytes(msg) -> bytes:
    raw = bytes(msg.bytes())  # meta events come as FF type len data, channel events as status data
    if raw[0] == 0xF0:  # sysex is F0 <len> data F7 in a file
        return b"\xF0" + vlq(len(raw) - 1) + raw[1:]
    return raw


def song_from_bytes(data: bytes) -> Song:
    """Parse a valid file (a seed) with mido; end-of-track events are left to the writer."""
    import mido

    mf = mido.MidiFile(file=io.BytesIO(data))
    tracks = []
    for tr in mf.tracks:
        events, carry = [], 0
        for msg in tr:
            if msg.is_meta and msg.type == "end_of_track":
                carry += msg.time
                continue
            events.append((msg.time + carry, _event_bytes(msg)))
            carry = 0
        tracks.append(events)
    return Song(fmt=mf.type, division=mf.ticks_per_beat, tracks=tracks)


def _synthetic(rng: random.Random, tpq: int, metre: tuple[int, int], n_bars: int, name: str) -> bytes:
    """A multi-track song built with mido: melody, bass, block chords and drums."""
    import mido

    num, den = metre
    bar = tpq * 4 * num // den
    mf = mido.MidiFile(type=1, ticks_per_beat=tpq)
    conductor = mido.MidiTrack([
        mido.MetaMessage("track_name", name=name, time=0),
        mido.MetaMessage("time_signature", numerator=num, denominator=den, time=0),
        mido.MetaMessage("key_signature", key=rng.choice(["C", "G", "D", "Am", "Em", "Bb"]), time=0),
        mido.MetaMessage("set_tempo", tempo=rng.choice([400000, 500000, 600000]), time=0),
    ])
    mf.tracks.append(conductor)

    def part(name: str, channel: int, program: int, notes: list[tuple[int, int, int]]):
        """notes: (onset, duration, pitch) in ticks -> note_on/note_off messages with deltas."""
        evs = []
        for t, d, p in notes:
            evs.append((t, 1, p))
            evs.append((t + d, 0, p))
        evs.sort(key=lambda e: (e[0], e[1]))  # offs before ons at the same tick
        msgs = [mido.MetaMessage("track_name", name=name, time=0),
                mido.Message("program_change", channel=channel, program=program, time=0)]
        now = 0
        for t, on, p in evs:
            kind = "note_on" if on else "note_off"
            msgs.append(mido.Message(kind, channel=channel, note=p, velocity=80 if on else 0, time=t - now))
            now = t
        return mido.MidiTrack(msgs)

    step = tpq // 2
    melody, t = [], 0
    pitch = rng.randint(62, 74)
    while t < n_bars * bar:
        d = step * rng.choice([1, 1, 2, 3])
        melody.append((t, d, pitch))
        pitch = min(96, max(55, pitch + rng.choice([-3, -2, -1, 1, 2, 4])))
        t += d
    bass = [(b * bar, bar, 36 + rng.randint(0, 11)) for b in range(n_bars)]
    chords = [(b * bar, bar, 48 + rng.randint(0, 4) + k) for b in range(n_bars) for k in (0, 4, 7)]
    drums = [(b * step, step // 2, rng.choice([36, 38, 42])) for b in range(n_bars * bar // step)]
    mf.tracks.append(part("Melody" if rng.random() < 0.5 else "Flute", 0, 73, melody))
    mf.tracks.append(part("Bass", 1, 33, bass))
    mf.tracks.append(part("Piano", 2, 0, chords))
    mf.tracks.append(part("Drums", 9, 0, drums))
    buf = io.BytesIO()
    mf.save(file=buf)
    return buf.getvalue()


def seed_songs(corpus: Path = CORPUS, n_real: int = N_REAL_SEEDS) -> dict[str, Song]:
    """The valid seeds: ``n_real`` corpus tunes (if the corpus exists) and four synthetic songs."""
    seeds: dict[str, Song] = {}
    files = sorted(corpus.glob("*.mid")) if corpus.is_dir() else []
    if files:
        step = max(1, len(files) // n_real)
        for f in files[::step][:n_real]:
            seeds[f"real_{f.stem}"] = song_from_bytes(f.read_bytes())
    rng = random.Random(1850)
    for tpq, metre, bars in ((480, (4, 4), 4), (96, (3, 4), 6), (384, (6, 8), 4), (220, (2, 2), 3)):
        name = f"synth_{tpq}_{metre[0]}_{metre[1]}"
        seeds[name] = song_from_bytes(_synthetic(rng, tpq, metre, bars, name))
    return seeds


# --- mutations --------------------------------------------------------------------------------------
def _copy(song: Song) -> Song:
    return Song(song.fmt, song.division, [list(t) for t in song.tracks], song.ntracks)


def _track_with_events(rng: random.Random, song: Song, channel_only: bool = False) -> list[Event] | None:
    def ok(ev: bytes) -> bool:
        return 0x80 <= ev[0] < 0xF0 if channel_only else True

    tracks = [t for t in song.tracks if any(ok(ev) for _, ev in t)]
    return rng.choice(tracks) if tracks else None


def _note_track(rng: random.Random, song: Song) -> list[Event]:
    tracks = [t for t in song.tracks if any(0x90 <= ev[0] <= 0x9F for _, ev in t)]
    if tracks:
        return rng.choice(tracks)
    song.tracks.append([])
    return song.tracks[-1]


def m_truncated(rng, song, data):
    return data[:rng.randint(1, max(1, len(data) - 1))]


def m_chunk_length(rng, song, data):
    body_starts = [i for i in range(len(data) - 3) if data[i:i + 4] == b"MTrk"]
    choices = [0, 1, 5, 0xFFFFFFFF, 0x7FFFFFFF]
    if body_starts and rng.random() < 0.75:
        at = rng.choice(body_starts)
        old = struct.unpack(">I", data[at + 4:at + 8])[0]
        new = rng.choice(choices + [max(0, old - rng.randint(1, 8)), old + rng.randint(1, 64)])
        return data[:at + 4] + struct.pack(">I", new) + data[at + 8:]
    return data[:4] + struct.pack(">I", rng.choice([0, 2, 5, 7, 100, 0xFFFFFFFF])) + data[8:]


def m_running_status(rng, song, data):
    s = _copy(song)
    tr = _track_with_events(rng, s, channel_only=True)
    if tr is None:
        return data
    idx = [i for i, (_, ev) in enumerate(tr) if 0x80 <= ev[0] < 0xF0]
    i = rng.choice(idx)
    d, ev = tr[i]
    how = rng.randrange(3)
    if how == 0:  # drop the status byte: data bytes follow whatever came before
        tr[i] = (d, ev[1:])
    elif how == 1:  # a channel event with no status at the very start of a track
        tr.insert(0, (0, bytes([rng.randrange(0x80), rng.randrange(0x80)])))
    else:  # a meta event cancels running status; then data bytes alone
        tr.insert(i, (0, meta(0x01, b"x")))
        tr.insert(i + 1, (0, ev[1:]))
    return serialize(s)


def m_absurd_delta(rng, song, data):
    s = _copy(song)
    tr = _track_with_events(rng, s)
    if tr is None or rng.random() < 0.2:  # a VLQ with the continuation bit on every byte
        at = data.find(b"MTrk")
        if at < 0:
            return data + b"\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF"
        return data[:at + 8] + b"\xFF" * rng.randint(4, 12) + data[at + 8:]
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(tr))
        tr[i] = (rng.choice([0x0FFFFFFF, 0x7FFFFFF, rng.randrange(1 << 20, 1 << 28)]), tr[i][1])
    return serialize(s)


def m_zero_tracks(rng, song, data):
    s = _copy(song)
    how = rng.randrange(3)
    if how == 0:
        s.tracks, s.ntracks = [], 0
    elif how == 1:
        s.ntracks = 0  # tracks present but not declared
    else:
        s.ntracks = len(s.tracks) + rng.choice([1, 5, 65535 - len(s.tracks)])  # declared, not present
    return serialize(s)


def m_smpte(rng, song, data):
    s = _copy(song)
    fps = rng.choice([24, 25, 29, 30, 1, 127])
    s.division = ((-fps) & 0xFF) << 8 | rng.choice([0, 1, 4, 40, 80, 255])
    return serialize(s)


def m_format2(rng, song, data):
    s = _copy(song)
    s.fmt = rng.choice([2, 2, 2, 3, 255, 65535])
    return serialize(s)


def m_meta_length(rng, song, data):
    s = _copy(song)
    if not s.tracks:
        s.tracks.append([])
    tr = rng.choice(s.tracks)
    i = rng.randint(0, len(tr))
    how = rng.randrange(8)
    if how == 0:
        ev = meta(0x51, b"\x07\xA1\x20", length=rng.choice([0, 1, 2]))  # tempo with too few bytes
    elif how == 1:
        ev = meta(0x58, b"\x04\x02", length=4)  # time signature says 4 bytes, gives 2
    elif how == 2:
        ev = meta(0x03, b"name", length=rng.choice([0x0FFFFFFF, 5000]))  # longer than the track
    elif how == 3:
        ev = meta(0x51, b"\x00\x00\x00")  # tempo 0 microseconds per beat
    elif how == 4:
        ev = meta(0x58, bytes([rng.choice([0, 7, 255]), rng.choice([0, 255, 31]), 24, 8]))  # 0/1, 7/2**255 ...
    elif how == 5:
        ev = meta(0x59, bytes([rng.choice([0x9C, 0x64, 0x80]), rng.choice([0, 1, 7])]))  # key -100, +100, minor 7
    elif how == 6:
        ev = meta(0x2F, b"")  # end of track in the middle
    else:
        ev = meta(rng.randrange(0x80), bytes(rng.randrange(256) for _ in range(rng.randrange(6))))
    tr.insert(i, (rng.choice([0, 0, 10]), ev))
    return serialize(s)


def m_note_order(rng, song, data):
    s = _copy(song)
    tr = _note_track(rng, s)
    ch = rng.randrange(16)
    p = rng.randint(40, 90)
    how = rng.randrange(4)
    if how == 0:  # note-off before its note-on: a negative duration if paired naively
        evs = [(0, bytes([0x80 | ch, p, 0])), (240, bytes([0x90 | ch, p, 90])), (240, bytes([0x80 | ch, p, 0]))]
    elif how == 1:  # zero-length notes: on and off at the same tick, both orders
        evs = [(0, bytes([0x90 | ch, p, 90])), (0, bytes([0x80 | ch, p, 0])),
               (0, bytes([0x80 | ch, p + 1, 0])), (0, bytes([0x90 | ch, p + 1, 90])),
               (0, bytes([0x90 | ch, p + 2, 0]))]  # velocity-0 note-on as the only event
    elif how == 2:  # offs with no ons at all
        evs = [(rng.randrange(100), bytes([0x80 | ch, rng.randrange(128), 64])) for _ in range(rng.randint(1, 6))]
    else:  # notes that never end
        evs = [(rng.randrange(100), bytes([0x90 | ch, rng.randrange(128), 100])) for _ in range(rng.randint(1, 6))]
    i = rng.randint(0, len(tr))
    tr[i:i] = evs
    if rng.random() < 0.5:  # also strip every note-off of the track
        tr[:] = [(d, ev) for d, ev in tr if not (0x80 <= ev[0] <= 0x8F)]
    return serialize(s)


def m_overlap(rng, song, data):
    s = _copy(song)
    tr = _note_track(rng, s)
    ons = [i for i, (_, ev) in enumerate(tr) if 0x90 <= ev[0] <= 0x9F and ev[2] > 0]
    if not ons:
        return serialize(s)
    for i in sorted(rng.sample(ons, min(len(ons), rng.randint(1, 8))), reverse=True):
        for _ in range(rng.randint(1, 3)):
            tr.insert(i + 1, (0, tr[i][1]))  # the same note-on again at the same tick
    if rng.random() < 0.5:
        s.tracks.append(list(tr))  # and an identical copy of the whole track
    return serialize(s)


def m_drums_only(rng, song, data):
    s = _copy(song)
    for tr in s.tracks:
        for j, (d, ev) in enumerate(tr):
            if 0x80 <= ev[0] < 0xF0:
                tr[j] = (d, bytes([(ev[0] & 0xF0) | 9]) + ev[1:])
    return serialize(s)


def m_many_notes(rng, song, data, n: int = 100_500):
    """A one-track file of ``n`` short notes (running status keeps it ~0.6 MB)."""
    body = bytearray(b"\x00\xC0\x49\x00\x90")
    for i in range(n):
        p = 60 + (i * 7) % 24
        body += bytes([p, 90]) + b"\x3C" + bytes([p, 0]) + b"\x00"  # on, 60 ticks, off (velocity 0)
    body = bytes(body[:-1]) + b"\x00" + meta(0x2F, b"")
    return header(0, 1, 240) + chunk(b"MTrk", body)


def m_empty(rng, song, data):
    return b""


def m_text(rng, song, data):
    lines = ["X:1", "T:Not a MIDI file", "M:6/8", "K:G", "|:GAB c2d|e2d c2B:|"]
    return ("\n".join(rng.sample(lines, len(lines))) + "\n").encode()


def m_random_tail(rng, song, data):
    tail = bytes(rng.randrange(256) for _ in range(rng.randint(0, 400)))
    if rng.random() < 0.5:
        tail = b"MTrk" + struct.pack(">I", len(tail)) + tail
    return header(rng.choice([0, 1]), rng.randint(0, 3), rng.choice([96, 480, 1])) + tail


def m_noise(rng, song, data):
    b = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        if not b:
            break
        i = rng.randrange(len(b))
        how = rng.randrange(3)
        if how == 0:
            b[i] ^= 1 << rng.randrange(8)
        elif how == 1:
            b.insert(i, rng.randrange(256))
        else:
            del b[i]
    return bytes(b)


def m_unknown_chunk(rng, song, data):
    at = data.find(b"MTrk")
    junk = chunk(rng.choice([b"XFIH", b"MJNK", b"\x00\x00\x00\x00"]), bytes(rng.randrange(256) for _ in range(20)))
    return data[:at] + junk + data[at:] if at >= 0 else data + junk


def m_valid(rng, song, data):
    return data


MUTATIONS = {
    "valid": m_valid, "truncated": m_truncated, "chunk_length": m_chunk_length,
    "running_status": m_running_status, "absurd_delta": m_absurd_delta, "zero_tracks": m_zero_tracks,
    "smpte": m_smpte, "format2": m_format2, "meta_length": m_meta_length, "note_order": m_note_order,
    "overlap": m_overlap, "drums_only": m_drums_only, "many_notes": m_many_notes, "empty": m_empty,
    "text": m_text, "random_tail": m_random_tail, "noise": m_noise, "unknown_chunk": m_unknown_chunk,
}
KINDS = tuple(MUTATIONS)
# many_notes is written once by generate(), never drawn
_WEIGHTS = {k: 1 for k in KINDS if k != "many_notes"} | {"valid": 3, "noise": 3, "truncated": 2}


def mutate(kind: str, rng: random.Random, song: Song, data: bytes | None = None) -> bytes:
    """The bytes of ``song`` with mutation ``kind`` applied (see the module docstring).

    ``data`` is ``serialize(song)`` when the caller has it already.
    """
    return MUTATIONS[kind](rng, song, serialize(song) if data is None else data)


def make_case(index: int, seed: int, seeds: dict[str, Song],
              seed_bytes: dict[str, bytes] | None = None) -> tuple[str, str, bytes]:
    """(kind, seed name, bytes) of file ``index``: a function of ``(seed, index)`` alone."""
    rng = random.Random(f"{seed}:{index}")
    kinds = sorted(_WEIGHTS)
    kind = rng.choices(kinds, weights=[_WEIGHTS[k] for k in kinds])[0]
    name = rng.choice(sorted(seeds))
    return kind, name, mutate(kind, rng, seeds[name], seed_bytes[name] if seed_bytes else None)


def generate(out_dir: str | Path, n: int, seed: int = 0, seeds: dict[str, Song] | None = None,
             many_notes: bool = True) -> list[Case]:
    """Write ``n`` files to ``out_dir`` (one of them with >100k notes if ``many_notes``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seeds = seed_songs() if seeds is None else seeds
    seed_bytes = {name: serialize(song) for name, song in seeds.items()}
    cases = []
    for i in range(n):
        if many_notes and i == n // 2:
            kind, name, data = "many_notes", "-", m_many_notes(None, None, b"")
        else:
            kind, name, data = make_case(i, seed, seeds, seed_bytes)
        path = out / f"{i:05d}_{kind}.mid"
        path.write_bytes(data)
        cases.append(Case(path, kind, name))
    return cases


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="write a seeded corpus of broken and odd MIDI files")
    ap.add_argument("out_dir")
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    cs = generate(a.out_dir, a.n, a.seed)
    counts: dict[str, int] = {}
    for c in cs:
        counts[c.kind] = counts.get(c.kind, 0) + 1
    print(f"wrote {len(cs)} files to {a.out_dir}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
