"""Shared fixtures: synthetic MIDI built in code, and small token datasets from the embedded corpus.

What other test modules can use:

``write_midi(path, tracks, ...)`` (plain function, also the ``midi_writer`` fixture)
    writes a MIDI file from a list of :class:`Part` (name, notes in beats, program, drum flag).
``corpus_files`` (session)
    sorted paths of the embedded O'Neill corpus (skips the test if it is missing).
``corpus_slice`` (session)
    a folder holding copies of ``SLICE_SIZE`` corpus files, spread over the whole collection.
``tiny_dataset`` (session)
    a REMI dataset folder (no subwords, no transposition) built once from ``corpus_slice``; open
    it with ``melodylm.dataset.Dataset(tiny_dataset)``. Treat it as read-only.
``make_dataset`` (session)
    a factory ``make_dataset(**TokenizeConfig fields) -> Path`` that builds a dataset from
    ``corpus_slice`` once per distinct set of options and reuses it for the rest of the run.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "corpora" / "oneills1850"
SLICE_SIZE = 60  # enough for non-empty val/test splits at 0.8/0.1/0.1, fast to tokenize
TPQ = 480


@dataclass
class Part:
    """One track of a synthetic MIDI file. ``notes`` are (onset, duration, pitch), times in beats."""

    notes: list[tuple[float, float, int]] = field(default_factory=list)
    name: str = ""
    program: int = 0
    is_drum: bool = False


def write_midi(path: str | Path, tracks: list[Part], tpq: int = TPQ, time_signature: tuple[int, int] = (4, 4),
               tempo: float = 120.0) -> Path:
    """Write a MIDI file with the given tracks (times in beats, rounded to ticks) and return its path."""
    import symusic

    score = symusic.Score(tpq)
    score.time_signatures.append(symusic.TimeSignature(0, *time_signature))
    score.tempos.append(symusic.Tempo(0, float(tempo)))
    for part in tracks:
        tr = symusic.Track(name=part.name, program=part.program, is_drum=part.is_drum)
        for onset, dur, pitch in part.notes:
            tr.notes.append(symusic.Note(round(onset * tpq), round(dur * tpq), int(pitch), 90))
        score.tracks.append(tr)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    score.dump_midi(str(path))
    return path


def scale(start: float = 0.0, n: int = 8, low: int = 60, step: float = 1.0, dur: float = 1.0,
          steps: tuple[int, ...] = (0, 2, 4, 5, 7, 9, 11, 12)) -> list[tuple[float, float, int]]:
    """A monophonic run of ``n`` notes (a major scale by default), one every ``step`` beats."""
    return [(start + i * step, dur, low + steps[i % len(steps)] + 12 * (i // len(steps))) for i in range(n)]


@pytest.fixture
def midi_writer():
    """``write_midi`` as a fixture, for tests that prefer fixtures to imports."""
    return write_midi


@pytest.fixture(scope="session")
def corpus_files() -> list[Path]:
    files = sorted(CORPUS.glob("*.mid"))
    if not files:
        pytest.skip(f"embedded corpus {CORPUS} is missing")
    return files


@pytest.fixture(scope="session")
def corpus_slice(corpus_files, tmp_path_factory) -> Path:
    """``SLICE_SIZE`` corpus files taken at even steps through the collection, copied to a tmp folder."""
    step = max(1, len(corpus_files) // SLICE_SIZE)
    folder = tmp_path_factory.mktemp("corpus_slice")
    for f in corpus_files[::step][:SLICE_SIZE]:
        shutil.copy(f, folder / f.name)
    return folder


@pytest.fixture(scope="session")
def make_dataset(corpus_slice, tmp_path_factory):
    """Factory: build (once per option set) a dataset from ``corpus_slice`` and return its folder."""
    from melodylm.dataset import TokenizeConfig, tokenize

    cache: dict[str, Path] = {}

    def build(**options) -> Path:
        options.setdefault("split", (0.8, 0.1, 0.1))
        options.setdefault("workers", 1)
        key = json.dumps(options, sort_keys=True, default=str)
        if key not in cache:
            out = tmp_path_factory.mktemp("dataset") / "data"
            tokenize(TokenizeConfig(inputs=[str(corpus_slice)], out_dir=str(out), **options), progress=False)
            cache[key] = out
        return cache[key]

    return build


def wait_for_http(url: str, proc, timeout: float = 60.0, request_timeout: float = 2.0) -> bytes:
    """GET ``url`` until the server in ``proc`` (a Popen with text stdout) answers; its body.

    Fails with the server's output when the process ends or ``timeout`` seconds pass first.
    """
    import time
    import urllib.request

    end = time.time() + timeout
    while True:
        try:
            return urllib.request.urlopen(url, timeout=request_timeout).read()
        except OSError:
            if proc.poll() is not None or time.time() > end:
                raise AssertionError(f"server did not answer {url}: {proc.stdout.read()}") from None
            time.sleep(0.1)


def default_sigint() -> None:
    """``preexec_fn`` for a child that must see Ctrl-C: a job started in the background by a
    non-interactive shell inherits an ignored SIGINT, which the child would keep."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture(scope="session")
def tiny_dataset(make_dataset) -> Path:
    """A REMI dataset of the corpus slice (split 0.8/0.1/0.1, no subwords). Do not modify it."""
    return make_dataset()


@pytest.fixture(scope="session")
def plain_dataset(make_dataset) -> Path:
    """The same without controls and infilling: training windows are plain slices of the token stream
    (what ``train.Batches`` replays in the DDP tests). Do not modify it."""
    return make_dataset(controls="none", fim_rate=0.0)


@pytest.fixture(scope="module")
def torch_one_thread():
    """Tiny models run several times faster on one thread when the cores are shared.

    Modules that train tiny models use it with ``pytestmark = pytest.mark.usefixtures(...)``.
    """
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


POP_MELODY = (0, 2, 4, 5, 7, 5, 4, 2)  # scale steps above G4 of the synthetic pop song's vocal line


def pop_song(path: str | Path, melody_start: float = 48.0, melody_bars: int = 8,
             extra: list[Part] | None = None) -> Path:
    """A pop-like multitrack file in 4/4: drums, bass and piano chords from beat 0, and a
    'Lead Vocal' line (one note a beat, from G4) entering at ``melody_start`` (beat 48 = bar 13).

    Tracks: 0 Drums (drum flag), 1 Bass (program 33), 2 Piano (chords), 3 Lead Vocal (program 54),
    then ``extra``.
    """
    beats = int(melody_start) + 4 * melody_bars
    roots = (0, 5, 7, 5)  # I IV V IV, one chord a bar
    drums = Part([(b, 0.25, 36 if b % 2 == 0 else 38) for b in range(beats)], name="Drums", is_drum=True)
    bass = Part([(b, 1.5, 36 + roots[(b // 4) % 4]) for b in range(0, beats, 2)], name="Bass", program=33)
    piano = Part([(b, 4.0, p + roots[(b // 4) % 4]) for b in range(0, beats, 4) for p in (60, 64, 67)],
                 name="Piano")
    vocal = Part([(melody_start + i, 1.0, 67 + POP_MELODY[i % 8]) for i in range(4 * melody_bars)],
                 name="Lead Vocal", program=54)
    return write_midi(path, [drums, bass, piano, vocal, *(extra or [])])
