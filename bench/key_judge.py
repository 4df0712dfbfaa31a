"""How often does a key estimator find the key a tune is written in? The judge of key adherence, judged.

The share of tunes whose estimated key is the key of their first key signature, for melodylm's
Krumhansl-Kessler estimator and for the other key profiles of music21's ``analysis.discrete`` (same
correlation, other weights), on each tune's first ``--bars`` bars (the length of the adherence
samples) and on the whole tune, major- and minor-signature tunes apart.

    python bench/key_judge.py                      # music21's Ryan's Mammoth, Aird's Airs, Nottingham
    python bench/key_judge.py corpora/mine --bars 8

By default the folk collections of music21 that no melodylm model trains on are imported first into
``data/key-judge`` (``melodylm corpus import``, about a minute on 2 cores). A MIDI key signature is
major or minor only: ``melodylm corpus import`` writes dorian or mixolydian tunes as the major key of
their signature, so a minor signature here is a tune its transcriber wrote in a minor key.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.common import EXE, ROOT, key_profiles, sh  # noqa: E402

from melodylm.keys import estimate_key, key_from_signature  # noqa: E402

HELD_OUT = ("ryansMammoth", "airdsAirs", "nottingham-dataset")
PROFILES = "KrumhanslKessler,AardenEssen,TemperleyKostkaPayne,BellmanBudge,SimpleWeights"


def default_folder() -> Path:
    """music21's held-out folk collections as one-melody MIDI files, imported once."""
    from melodylm.corpus import music21_corpus_path

    out = ROOT / "data" / "key-judge"
    if not (out / "MANIFEST.tsv").exists():
        sh(EXE + ["corpus", "import", *(str(music21_corpus_path(n)) for n in HELD_OUT), "-o", str(out),
                  "--force", "--no-progress"])
    return out


def tunes(folders: list[Path], bars: int) -> list[tuple]:
    """``(written key, opening notes, all notes)`` of every MIDI file with a key signature and notes."""
    import symusic

    from melodylm.infill import bar_starts, notes_of

    out = []
    for folder in folders:
        for path in sorted(Path(folder).rglob("*.mid")):
            score = symusic.Score(str(path))
            notes = notes_of(score)
            if not len(score.key_signatures) or not len(notes):
                continue
            written = key_from_signature(min(score.key_signatures, key=lambda k: k.time))
            starts = bar_starts(score, int(notes[:, 0].max()))
            out.append((written, notes[notes[:, 0] < starts[min(bars, len(starts) - 1)]], notes))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="*", type=Path, help="MIDI folders (default: music21's held-out collections)")
    ap.add_argument("--bars", type=int, default=8)
    ap.add_argument("--profiles", default=PROFILES)
    args = ap.parse_args()
    rows = tunes(args.folders or [default_folder()], args.bars)
    n = {m: sum(r[0].mode == m for r in rows) for m in ("major", "minor")}
    print(f"\n{len(rows)} tunes with a key signature ({n['major']} major, {n['minor']} minor): "
          f"estimated key = written key\n")
    print(f"| profile | major, first {args.bars} bars | minor, first {args.bars} bars | major, whole tune | "
          "minor, whole tune |")
    print("|---|---|---|---|---|")
    for name in args.profiles.split(","):
        weights = key_profiles(name)
        cells = []
        for part in (1, 2):
            for mode in ("major", "minor"):
                hits = sum(estimate_key(r[part][:, 2], r[part][:, 1], weights) == r[0]
                           for r in rows if r[0].mode == mode)
                cells.append(f"{hits} / {n[mode]} ({hits / max(1, n[mode]):.0%})")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
