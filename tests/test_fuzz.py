"""Broken MIDI never stops a tokenize run: fuzzing the reader, the tokenizer and `melodylm tokenize`.

The corpus comes from ``tests/fuzz_midi.py`` (seeded mutations of valid files; see its docstring
for the kinds). The command-line run tokenizes 10,000 of them, as the reliability issue asks
(measured on 2 shared cores: 2.4 s CPU to write them, 7-9 s CPU and 11-18 s wall to tokenize,
peak 255 MiB); ``MELODYLM_FUZZ_N`` sets another count.

Per-file limits that keep memory bounded (defaults of ``melodylm tokenize``): files over 16 MB
are skipped unread (``--max-file-mb``); melodies over 20,000 notes (``--max-notes``) or 20,000
beats (``--max-beats``) are skipped before tokenizing; a worker gives a file up after
``FILE_TIMEOUT_S`` (300 s). The peak asserted below is ``ru_maxrss`` from ``wait4``: the largest
single process (the CLI or one of its workers). The worst file these limits let through (16 MB of
notes) peaks at ~650 MB in one process, so even the sum over the CLI and 2 workers stays under the
2 GB bound; the fuzz corpus peaks at ~270 MB.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fuzz_midi
from conftest import REPO
from melodylm import dataset
from melodylm.dataset import SPLITS, Dataset, TokenizeConfig, tokenize
from melodylm.midi import load_melody, note_array, polyphony_ratio
from melodylm.tokenizer import MelodyTokenizer

FUZZ_N = int(os.environ.get("MELODYLM_FUZZ_N", "10000"))
MAX_RSS_BYTES = 2 * 1024**3
STATUSES = ("ok", "skipped", "failed")


def env() -> dict:
    return dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))


@pytest.fixture(scope="module")
def seeds() -> dict:
    return fuzz_midi.seed_songs()


@pytest.fixture(scope="module")
def fuzz_dir(seeds, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz") / "in"
    fuzz_midi.generate(folder, FUZZ_N, seed=0, seeds=seeds)
    return folder


@pytest.fixture(scope="module")
def tokenizer() -> MelodyTokenizer:
    return MelodyTokenizer()


def check_reason(status: str, reason: str) -> None:
    """What a user reads in the manifest: a status, and for a bad file one short printable line."""
    assert status in STATUSES
    if status == "ok":
        assert reason == ""
    else:
        assert reason.strip() and reason.isprintable() and len(reason) <= 260, reason


# --- the generator -----------------------------------------------------------------------------------
def test_generator_is_seeded_and_covers_every_kind(seeds, tmp_path):
    a = fuzz_midi.generate(tmp_path / "a", 400, seed=3, seeds=seeds)
    b = fuzz_midi.generate(tmp_path / "b", 300, seed=3, seeds=seeds, many_notes=False)
    # file i depends on (seed, i) only: not on n, not on the run
    same = [i for i in range(300) if i != 200]
    assert all(a[i].path.read_bytes() == b[i].path.read_bytes() for i in same)
    c = fuzz_midi.generate(tmp_path / "c", 50, seed=4, seeds=seeds, many_notes=False)
    assert sum(a[i].path.read_bytes() != c[i].path.read_bytes() for i in range(50)) > 35
    assert set(Counter(x.kind for x in a)) == set(fuzz_midi.KINDS)
    assert sum(x.kind == "many_notes" for x in a) == 1
    assert {x.seed_name.split("_")[0] for x in a} >= {"real", "synth"}


@pytest.mark.parametrize("kind", [k for k in fuzz_midi.KINDS if k not in ("valid", "many_notes", "empty", "text")])
def test_mutations_change_the_file(seeds, kind):
    changed = 0
    for i, name in enumerate(sorted(seeds)):
        data = fuzz_midi.mutate(kind, random.Random(i), seeds[name])
        changed += data != fuzz_midi.serialize(seeds[name])
    assert changed >= len(seeds) - 1, kind


def test_writer_round_trips_the_seeds(seeds):
    import mido
    import io

    for name, song in seeds.items():
        mf = mido.MidiFile(file=io.BytesIO(fuzz_midi.serialize(song)))
        assert (mf.type, mf.ticks_per_beat, len(mf.tracks)) == (song.fmt, song.division, len(song.tracks)), name
        assert fuzz_midi.song_from_bytes(fuzz_midi.serialize(song)) == song


# Kinds whose outcome is known exactly; every other kind may go any way, with a reason.
EXPECTED = {
    "valid": ("ok", ""),
    "empty": ("failed", "empty file (0 bytes)"),
    "text": ("failed", "not a MIDI file (no MThd header)"),
    "smpte": ("failed", "SMPTE time division is not supported (only ticks per beat)"),
    "drums_only": ("skipped", "drums only"),
    "many_notes": ("skipped", "too many notes: 100500 in the melody (limit --max-notes 20000)"),
}


@pytest.mark.parametrize("kind", fuzz_midi.KINDS)
def test_each_kind_gets_a_status_and_a_reason(seeds, kind, tmp_path, tokenizer):
    tok = tokenizer
    statuses = Counter()
    for i, name in enumerate(sorted(seeds)[: 1 if kind == "many_notes" else None]):
        path = tmp_path / f"{i}.mid"
        path.write_bytes(fuzz_midi.mutate(kind, random.Random(i), seeds[name]))
        mel = load_melody(path)
        check_reason(mel.status, mel.reason)
        if kind in EXPECTED:
            assert (mel.status, mel.reason) == EXPECTED[kind], (name, mel.reason)
        if mel.status == "ok":
            assert tok.count_notes(tok.encode_score(mel.score)) > 0
        statuses[mel.status] += 1
    if kind in ("overlap", "unknown_chunk"):  # readable files: every one gives a melody
        assert statuses == {"ok": len(seeds)}


def test_a_time_signature_far_past_the_melody_costs_nothing(seeds, tmp_path, tokenizer):
    # a broken delta time moved the conductor track's events ~2**28 ticks away; miditok used to
    # fill the gap up to them with ~200k rest tokens (seconds and hundreds of MB per file)
    song = fuzz_midi._copy(seeds["synth_96_3_4"])
    conductor = song.tracks[0]
    conductor.append((0x0FFFFFFF, fuzz_midi.meta(0x58, bytes([2, 2, 24, 8]))))  # 2/2, 2**28 ticks on
    (tmp_path / "far.mid").write_bytes(fuzz_midi.serialize(song))
    (tmp_path / "plain.mid").write_bytes(fuzz_midi.serialize(seeds["synth_96_3_4"]))
    tok = tokenizer
    far, plain = load_melody(tmp_path / "far.mid"), load_melody(tmp_path / "plain.mid")
    assert far.status == plain.status == "ok"
    assert np.array_equal(note_array(far.score.tracks[0]), note_array(plain.score.tracks[0]))
    t0 = time.process_time()
    ids = tok.encode_score(far.score)
    assert time.process_time() - t0 < 1.0
    assert np.array_equal(ids, tok.encode_score(plain.score))


# --- property-based: arbitrary byte edits on top of the mutations ------------------------------------
EDIT = st.tuples(st.sampled_from(["flip", "set", "insert", "delete", "cut", "dup"]),
                 st.floats(0, 1, allow_nan=False), st.integers(0, 255))
DRAWN_KINDS = [k for k in fuzz_midi.KINDS if k != "many_notes"]


def apply_edits(data: bytes, edits) -> bytes:
    b = bytearray(data)
    for op, where, value in edits:
        i = min(len(b), int(where * len(b)))
        if op == "insert" or not b:
            b.insert(i, value)
            continue
        i = min(i, len(b) - 1)
        if op == "flip":
            b[i] ^= 1 << (value % 8)
        elif op == "set":
            b[i] = value
        elif op == "delete":
            del b[i]
        elif op == "cut":
            del b[i:]
        else:  # repeat a short stretch (doubled events, chunk tags)
            b[i:i] = b[i:i + 1 + value % 16]
    return bytes(b)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hypothesis") / "case.mid"


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pick=st.integers(0, 10**6), kind=st.sampled_from(DRAWN_KINDS), rng_seed=st.integers(0, 2**32),
       edits=st.lists(EDIT, max_size=8), mode=st.sampled_from(["auto", "skyline", "all", "track:1"]))
@pytest.mark.slow
def test_reader_and_tokenizer_never_raise(seeds, scratch, tokenizer, pick, kind, rng_seed, edits, mode):
    name = sorted(seeds)[pick % len(seeds)]
    data = apply_edits(fuzz_midi.mutate(kind, random.Random(rng_seed), seeds[name]), edits)
    scratch.write_bytes(data)
    mel = load_melody(scratch, mode, max_notes=5000, max_beats=5000)
    check_reason(mel.status, mel.reason)
    if mel.status != "ok":
        assert mel.score is None
        return
    notes = note_array(mel.score.tracks[0])
    assert len(mel.score.tracks) == 1 and 0 < len(notes) == mel.n_notes <= 5000
    assert (notes[:, 1] > 0).all()
    if mode != "all":
        assert polyphony_ratio(notes) == 0
    ids = tokenizer.encode_score(mel.score)
    assert ids.ndim == 1 and ((ids >= 0) & (ids < tokenizer.base_vocab_size)).all()
    # what tokenize does with it (pitch range, transposition, split) never raises either
    dataset._W.update(tok=tokenizer, cfg=TokenizeConfig(melody=mode, transpose=(-1, 1), max_notes=5000,
                                                         max_beats=5000, split=(1.0, 0.0, 0.0)))
    rec, seqs = dataset._process(str(scratch))
    check_reason(rec["status"], rec["reason"])
    assert not re.match(r"[A-Z]\w*(Error|Exception)\b", rec["reason"]), rec["reason"]  # an unexpected exception
    if rec["status"] == "ok":
        assert rec["split"] == "train" and rec["n_tokens"] > 0 and seqs[0].transpose == 0


# --- the command line on FUZZ_N files ----------------------------------------------------------------
@pytest.fixture(scope="module")
def fuzz_run(fuzz_dir, tmp_path_factory) -> dict:
    """`melodylm tokenize` on the fuzz corpus in a real process, with its peak memory (wait4)."""
    out = tmp_path_factory.mktemp("fuzz_out") / "data"
    logs = out.parent
    t0 = time.time()
    with open(logs / "stdout", "w") as so, open(logs / "stderr", "w") as se:
        proc = subprocess.Popen([sys.executable, "-m", "melodylm", "tokenize", str(fuzz_dir), "-o", str(out), "--json",
                                 "--workers", "2"], stdout=so, stderr=se, cwd=logs, env=env())
        # wait4 gives this child's resource use, including the pool workers it reaped
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    return {"rc": proc.returncode, "out": out, "stdout": (logs / "stdout").read_text(),
            "stderr": (logs / "stderr").read_text(), "maxrss": usage.ru_maxrss * 1024, "wall": time.time() - t0,
            "cpu": usage.ru_utime + usage.ru_stime}


@pytest.mark.slow
def test_tokenize_finishes_with_one_manifest_line_per_file(fuzz_run, fuzz_dir):
    assert fuzz_run["rc"] == 0, fuzz_run["stderr"][-2000:]
    assert "Traceback" not in fuzz_run["stderr"]
    rows = Dataset(fuzz_run["out"]).manifest()
    inputs = sorted(str(p) for p in fuzz_dir.iterdir())
    assert len(inputs) == FUZZ_N
    assert [r["path"] for r in rows] == inputs  # every input exactly once, in order
    for r in rows:
        check_reason(r["status"], r["reason"])
        if r["status"] == "ok":
            assert r["split"] in SPLITS and r["n_tokens"] > 0 and r["n_notes"] > 0
        else:
            assert r["split"] is None and r["n_tokens"] == 0
    counts = Counter(r["status"] for r in rows)
    summary = json.loads(fuzz_run["stdout"])
    assert (summary["files"], summary["ok"], summary["skipped"], summary["failed"]) == \
        (FUZZ_N, counts["ok"], counts["skipped"], counts["failed"])
    assert counts["ok"] > FUZZ_N // 10 and counts["failed"] > FUZZ_N // 10 and counts["skipped"] > FUZZ_N // 50
    # the kinds with a known outcome got it
    for r in rows:
        kind = Path(r["path"]).stem.split("_", 1)[1]
        if kind in EXPECTED:
            assert (r["status"], r["reason"]) == EXPECTED[kind], r
    # the stored tunes are the ok rows, each readable
    ds = Dataset(fuzz_run["out"])
    assert sum(ds.stats["tunes"].values()) == counts["ok"]
    assert len(ds.split("train").tune(0)) > 2


@pytest.mark.slow
def test_tokenize_memory_stays_bounded(fuzz_run):
    print(f"\n{FUZZ_N} files: {fuzz_run['wall']:.1f} s wall, {fuzz_run['cpu']:.1f} s CPU, "
          f"peak RSS {fuzz_run['maxrss'] / 2**20:.0f} MiB")
    assert 0 < fuzz_run["maxrss"] < MAX_RSS_BYTES


# --- determinism ---------------------------------------------------------------------------------------
def folder_bytes(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


@pytest.fixture(scope="module")
def small_fuzz(seeds, tmp_path_factory) -> Path:
    """300 fuzz files, no 100k-note file: for runs that happen several times."""
    folder = tmp_path_factory.mktemp("small_fuzz") / "in"
    fuzz_midi.generate(folder, 300, seed=7, seeds=seeds, many_notes=False)
    return folder


def build(src: Path, out: Path, **options) -> dict:
    options.setdefault("workers", 2)
    return tokenize(TokenizeConfig(inputs=[str(src)], out_dir=str(out), **options), progress=False)


@pytest.mark.slow
def test_broken_files_do_not_change_determinism(small_fuzz, tmp_path):
    """Same inputs twice: byte-identical folders; copied in another order: only the paths differ;
    renamed and shuffled: the same split for every content hash."""
    build(small_fuzz, tmp_path / "a")
    build(small_fuzz, tmp_path / "b")
    a = folder_bytes(tmp_path / "a")
    assert a == folder_bytes(tmp_path / "b")
    files = sorted(small_fuzz.iterdir())
    # the same folder name elsewhere: a tune's style control is its input folder's name
    reordered = tmp_path / "reordered" / small_fuzz.name
    reordered.mkdir(parents=True)
    for f in random.Random(2).sample(files, len(files)):  # created in another order on disk
        shutil.copy(f, reordered / f.name)
    build(reordered, tmp_path / "c", workers=1)
    c = folder_bytes(tmp_path / "c")
    assert {k: v for k, v in c.items() if k != "manifest.jsonl"} == {k: v for k, v in a.items() if k != "manifest.jsonl"}
    assert c["manifest.jsonl"].replace(str(reordered).encode(), str(small_fuzz).encode()) == a["manifest.jsonl"]
    renamed = tmp_path / "renamed"
    renamed.mkdir()
    names = [f"t{i:04d}.mid" for i in range(len(files))]
    random.Random(3).shuffle(names)
    for f, n in zip(files, names):
        shutil.copy(f, renamed / n)
    build(renamed, tmp_path / "d")

    def by_hash(d: Path) -> dict:
        out: dict = {}
        for r in Dataset(d).manifest():
            if r["status"] == "ok":
                out.setdefault(r["hash"], set()).add(r["split"])
        return out

    ha, hd = by_hash(tmp_path / "a"), by_hash(tmp_path / "d")
    assert ha == hd and len(ha) > 20 and all(len(s) == 1 for s in ha.values())


# --- a reader that crashes or hangs ----------------------------------------------------------------------
def _misbehaving_reader(real):
    def load(path, *args, **kwargs):
        name = Path(path).name
        if "crash" in name:
            import faulthandler

            faulthandler.disable()  # no crash report on the terminal: this crash is intended
            os.kill(os.getpid(), signal.SIGSEGV)
        if "hang" in name:
            time.sleep(3600)
        return real(path, *args, **kwargs)

    return load


@pytest.mark.slow
def test_a_crash_or_hang_loses_only_that_file(small_fuzz, corpus_slice, tmp_path, monkeypatch):
    src = tmp_path / "in"
    src.mkdir()
    for f in sorted(small_fuzz.iterdir())[:150]:
        shutil.copy(f, src / f.name)
    for f in sorted(corpus_slice.glob("*.mid"))[:30]:
        shutil.copy(f, src / f"z_{f.name}")
    text = b"not MIDI, so the clean run fails these files too\n"
    for name in ("00000_crash.mid", "00001_hang.mid", "00120_crash.mid"):
        (src / name).write_bytes(text)
    build(src, tmp_path / "clean")

    monkeypatch.setattr(dataset, "load_melody", _misbehaving_reader(dataset.load_melody))
    monkeypatch.setattr(dataset, "FILE_TIMEOUT_S", 2)
    isolated = []
    real_isolated = dataset._process_isolated
    monkeypatch.setattr(dataset, "_process_isolated", lambda p, a: isolated.append(p) or real_isolated(p, a))
    t0 = time.time()
    build(src, tmp_path / "bad")
    elapsed = time.time() - t0

    clean, bad = folder_bytes(tmp_path / "clean"), folder_bytes(tmp_path / "bad")
    assert {k: v for k, v in bad.items() if k != "manifest.jsonl"} == {k: v for k, v in clean.items() if k != "manifest.jsonl"}
    rows_clean, rows_bad = Dataset(tmp_path / "clean").manifest(), Dataset(tmp_path / "bad").manifest()
    differ = {Path(b["path"]).name: b for c, b in zip(rows_clean, rows_bad) if c != b}
    assert set(differ) == {"00000_crash.mid", "00001_hang.mid", "00120_crash.mid"}
    assert differ["00000_crash.mid"]["reason"] == differ["00120_crash.mid"]["reason"] == \
        "the MIDI reader crashed on this file"
    assert differ["00001_hang.mid"]["reason"] == "gave up after 2 s reading this file (a hang in the MIDI reader?)"
    assert all(r["status"] == "failed" for r in differ.values())
    # only the batches that held the bad files were retried one file per process
    n_files = len(rows_bad)
    chunk = max(1, min(64, n_files // 16))
    assert set(differ) <= {Path(p).name for p in isolated}
    assert len(isolated) <= 4 * chunk < n_files / 2
    assert elapsed < 120


def test_one_core_still_guards_the_run_against_a_crashing_reader(corpus_slice, tmp_path, monkeypatch):
    # the default --workers 0 on a one-core machine: one worker process, not this process
    src = tmp_path / "in"
    src.mkdir()
    for f in sorted(corpus_slice.glob("*.mid"))[:3]:
        shutil.copy(f, src / f.name)
    (src / "zz_crash.mid").write_bytes(b"MThd")
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    monkeypatch.setattr(dataset, "load_melody", _misbehaving_reader(dataset.load_melody))
    summary = build(src, tmp_path / "data", workers=0)
    rows = {Path(r["path"]).name: r for r in Dataset(tmp_path / "data").manifest()}
    assert rows["zz_crash.mid"]["reason"] == "the MIDI reader crashed on this file"
    assert sum(r["status"] == "ok" for r in rows.values()) == 3
    assert summary["files"] == 4


# --- interrupted runs ------------------------------------------------------------------------------------
SLOW_TOKENIZE = """
import sys, time
import melodylm.dataset as d
from melodylm.cli import main
real = d._process
def slow(path):
    time.sleep(0.05)
    return real(path)
d._process = slow
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_kill_9_never_leaves_a_dataset_at_the_target(small_fuzz, tmp_path):
    # 300 files x 50 ms over 2 workers: the build is well under way when the kill comes
    out = tmp_path / "data"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_TOKENIZE, "tokenize", str(small_fuzz), "-o", str(out),
                             "--workers", "2", "--no-progress"], env=env(), start_new_session=True)
    deadline = time.time() + 120
    while not any(p.name.startswith(".data.partial-") for p in tmp_path.iterdir()):
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.01)
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its workers, as the OOM killer or a power cut would
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".data.partial-")]
    assert len(leftovers) == 1  # a hidden build folder, which is not mistaken for a dataset
    with pytest.raises(dataset.DataError, match="not a dataset folder|incomplete"):
        Dataset(leftovers[0])
    # the next run at the same target is not blocked by it
    build(small_fuzz, out, workers=1)
    assert Dataset(out).stats["files"] == 300


@pytest.mark.slow
def test_ctrl_c_stops_soon_keeps_the_old_folder_and_leaves_no_partial_one(small_fuzz, tmp_path, monkeypatch, capsys):
    # 600 files x 50 ms over 2 workers is >= 15 s of work; Ctrl-C after 1 s must not wait for the
    # queued batches (it used to run every one of them before exiting)
    from melodylm.cli import main

    src = tmp_path / "in"
    shutil.copytree(small_fuzz, src)
    for f in sorted(small_fuzz.iterdir()):
        shutil.copy(f, src / f"copy_{f.name}")
    old_data = tmp_path / "data"  # what --force would replace, had the run finished
    old_data.mkdir()
    (old_data / "keep.txt").write_text("the previous dataset")
    real = dataset._process
    monkeypatch.setattr(dataset, "_process", lambda path: (time.sleep(0.05), real(path))[1])

    def ctrl_c(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, ctrl_c)
    try:
        t0 = time.time()
        signal.setitimer(signal.ITIMER_REAL, 1.0)
        code = main(["tokenize", str(src), "-o", str(old_data), "--workers", "2", "--no-progress", "--force"])
        elapsed = time.time() - t0
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    err = capsys.readouterr().err
    assert code == 130 and err == "melodylm: interrupted\n"
    assert elapsed < 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "in"]  # no partial folder left
    assert [p.name for p in old_data.iterdir()] == ["keep.txt"]  # and the old folder untouched
