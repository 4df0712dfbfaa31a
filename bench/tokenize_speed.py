"""Tokenizing speed: `melodylm tokenize` against a plain miditok loop and a music21 pipeline.

Usage: python bench/tokenize_speed.py [--repeats 3] [--music21-files 100] [--workers 0]

Data: O'Neill's 1850 tunes, corpora/oneills1850/*.mid (one melody per file).
Compared, in one run, repeats interleaved so that all three see the same machine load:

* ours: ``melodylm.dataset.tokenize`` (what ``melodylm tokenize`` runs), REMI, no subwords, all
  cores by default: read, choose the melody, hash, split, tokenize, write the dataset folder.
* miditok loop: one process, ``symusic.Score(path)`` and ``miditok.REMI.encode`` with the same
  tokenizer settings (``TokenizerSettings().miditok_config()``), ids collected in a list.
* music21: the notes-and-chords pipeline of the classic Keras LSTM tutorials:
  ``converter.parse`` (``forceSource=True``, no pickle cache), ``flatten().notes``, a Note becomes
  ``str(pitch)``, a Chord ``'.'.join(normalOrder)``. It is slow, so it runs on every n-th file
  (``--music21-files`` of them) and its rate is per file of that subset.

Reported: medians over ``--repeats`` of wall time, files/s, notes/s and tokens/s (ours and
miditok count REMI ids, music21 counts its strings: one per note or chord), CPU time per file
(all processes), and the ratios. Each measurement runs in its own forked process; imports are
done before the clock starts.
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file's name shadows the standard library's `tokenize` (imported by inspect, linecache...):
# take its own folder off the import path before anything imports it.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from melodylm.dataset import DEFAULT_CORPUS, Dataset, TokenizeConfig, tokenize  # noqa: E402
from melodylm.tokenizer import TokenizerSettings  # noqa: E402

warnings.filterwarnings("ignore")


def cpu_seconds() -> float:
    """CPU time of this process and of its finished child processes (the tokenize workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _timed_child(conn, fn, args) -> None:
    import music21  # noqa: F401  imported before the clock starts, like miditok in the parent

    c0, t0 = cpu_seconds(), time.perf_counter()
    tokens, notes = fn(*args)
    conn.send((time.perf_counter() - t0, cpu_seconds() - c0, tokens, notes))
    conn.close()


def timed(fn, *args) -> tuple[float, float, int, int]:
    """(wall seconds, CPU seconds, tokens, notes) of one call of ``fn``, in a fresh forked process.

    A fresh process per measurement keeps one contender's heap (music21 leaves a large one) from
    slowing the next: tokenize's workers are forked, and copying a big parent's pages costs CPU.
    """
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_timed_child, args=(send, fn, args))
    proc.start()
    result = recv.recv()
    proc.join()
    return result


def ours(files: list[Path], out: Path, workers: int) -> tuple[int, int]:
    tokenize(TokenizeConfig(inputs=[str(f) for f in files], out_dir=str(out), workers=workers, force=True),
             progress=False)
    rows = [r for r in Dataset(out).manifest() if r["status"] == "ok"]
    return sum(r["n_tokens"] for r in rows), sum(r["n_notes"] for r in rows)


def plain_miditok(files: list[Path]) -> tuple[int, int]:
    import miditok
    import symusic

    tok = miditok.REMI(TokenizerSettings().miditok_config())
    seqs = []
    for f in files:
        seq = tok.encode(symusic.Score(str(f)))
        seqs.append((seq[0] if isinstance(seq, list) else seq).ids)
    pitch_ids = {i for t, i in tok.vocab.items() if t.startswith("Pitch_")}
    return sum(len(s) for s in seqs), sum(sum(i in pitch_ids for i in s) for s in seqs)


def music21_notes_chords(files: list[Path]) -> tuple[int, int]:
    from music21 import chord, converter, note

    out: list[str] = []
    n_notes = 0
    for f in files:
        score = converter.parse(str(f), forceSource=True)
        for el in score.flatten().notes:
            if isinstance(el, note.Note):
                out.append(str(el.pitch))
                n_notes += 1
            elif isinstance(el, chord.Chord):
                out.append(".".join(str(n) for n in el.normalOrder))
                n_notes += len(el.pitches)
    return len(out), n_notes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--music21-files", type=int, default=100)
    ap.add_argument("--workers", type=int, default=0, help="ours: processes (0 = all cores)")
    args = ap.parse_args()

    files = sorted(DEFAULT_CORPUS.glob("*.mid"))
    if not files:
        sys.exit(f"no MIDI files in {DEFAULT_CORPUS}")
    step = max(1, len(files) // args.music21_files)
    subset = files[::step][: args.music21_files]
    cores = os.cpu_count()
    from importlib.metadata import version

    import miditok  # noqa: F401  imported once here (it imports torch), not inside the timings

    print(f"{len(files)} files; music21 on {len(subset)} of them (every {step}th); {cores} cores; "
          f"python {platform.python_version()}, miditok {version('miditok')}, symusic {version('symusic')}, "
          f"music21 {version('music21')}")
    runs: dict[str, list[tuple[float, float, int, int]]] = {"ours": [], "ours-1": [], "miditok": [], "music21": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            runs["ours"].append(timed(ours, files, Path(tmp) / "all", args.workers))
            runs["ours-1"].append(timed(ours, files, Path(tmp) / "one", 1))
            runs["miditok"].append(timed(plain_miditok, files))
            runs["music21"].append(timed(music21_notes_chords, subset))
            print(f"repeat {r + 1}: " + ", ".join(f"{k} {v[-1][0]:.2f}s" for k, v in runs.items())
                  + f"; load average {os.getloadavg()[0]:.1f}", flush=True)

    workers = args.workers or cores
    n_files = {"ours": len(files), "ours-1": len(files), "miditok": len(files), "music21": len(subset)}
    names = {"ours": f"melodylm tokenize ({workers} workers)", "ours-1": "melodylm tokenize (1 worker)",
             "miditok": "plain miditok loop (1 process)", "music21": f"music21 notes/chords ({len(subset)} files)"}
    rate, cpu_ms = {}, {}
    print(f"\nmedians of {args.repeats} repeats")
    print(f"| what | files | wall s | files/s | notes/s | tokens/s | CPU ms/file | ours ({workers} workers) files/s ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for k, v in runs.items():
        sec = statistics.median(x[0] for x in v)
        cpu_ms[k] = statistics.median(x[1] for x in v) / n_files[k] * 1000
        toks, notes = v[0][2], v[0][3]
        rate[k] = n_files[k] / sec
        ratio = "" if k == "ours" else f"{rate['ours'] / rate[k]:.2f}x"
        print(f"| {names[k]} | {n_files[k]} | {sec:.2f} | {rate[k]:.0f} | {notes / sec:,.0f} | {toks / sec:,.0f} | "
              f"{cpu_ms[k]:.2f} | {ratio} |")
    print(f"\nfiles/s: ours / miditok loop = {rate['ours'] / rate['miditok']:.2f} (target >= 2), "
          f"ours / music21 = {rate['ours'] / rate['music21']:.0f} (target >= 20); "
          f"CPU per file: miditok loop / ours = {cpu_ms['miditok'] / cpu_ms['ours']:.2f}, "
          f"music21 / ours = {cpu_ms['music21'] / cpu_ms['ours']:.0f}")


if __name__ == "__main__":
    main()
