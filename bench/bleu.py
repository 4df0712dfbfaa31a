"""BLEU: melodylm.metrics.bleu.corpus_bleu against nltk.translate.bleu_score.corpus_bleu.

Part 1, side by side in one run: one shared reference set of 500 and of 2,000 tunes, 200
hypotheses, custom 9-gram weights and BLEU-4. Both scores are printed (they must be equal) with
times and the ratio. nltk's cost grows as hypotheses x references x orders (~90 s for one call
at 500 references), so it runs once at 500 references, and at 2,000 references it is timed
(median of 3) on 20 hypotheses and scaled linearly (printed as such); ours is timed (median of
5) on the same subset and on all 200.

Part 2, ours alone: 10,000 and 100,000 references x 1,000 hypotheses, with the peak of memory
allocated during the call (tracemalloc, a separate run from the timed ones) and the process'
max RSS.

Data: pitch sequences of corpora/oneills1850/*.mid (symusic); hypotheses are the last 200
tunes, references the others, extended by transposed copies (+-1..5 semitones) when more are
needed. Part 2 draws references and hypotheses from a first-order Markov chain fitted on the
tunes (``random_like``), with tune lengths drawn from the corpus. Without the corpus, Part 1
uses that Markov chain on a synthetic seed corpus too.

    python bench/bleu.py            # about 7 minutes on 2 shared cores
    python bench/bleu.py --quick    # smoke run
"""

from __future__ import annotations

import os
import sys

# Python puts this script's folder first on sys.path, where bench/tokenize.py would shadow the
# standard library's tokenize (imported by linecache, inspect, ...): look in the root instead.
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import argparse
import glob
import platform
import resource
import statistics
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

import nltk  # noqa: E402
from nltk.translate import bleu_score as nltk_bleu  # noqa: E402

from melodylm.metrics import bleu  # noqa: E402

BLEU4 = (0.25, 0.25, 0.25, 0.25)
WEIGHTS = {"custom 1-9": bleu.CUSTOM_WEIGHTS, "BLEU-4": BLEU4}


def load_tunes() -> tuple[list[list[int]], str]:
    files = sorted(glob.glob(str(ROOT / "corpora" / "oneills1850" / "*.mid")))
    if len(files) >= 400:
        import symusic

        tunes = []
        for f in files:
            notes = sorted((n.time, -n.pitch) for t in symusic.Score(f).tracks for n in t.notes)
            tunes.append([-p for _, p in notes])
        tunes = [t for t in tunes if t]
        return tunes, f"O'Neill's 1850: {len(tunes)} tunes from corpora/oneills1850 (pitch sequences)"
    # No corpus: a synthetic seed (scale-wise random walks), then the Markov chain of it.
    rng = np.random.default_rng(0)
    seed = [list(60 + np.cumsum(rng.choice([-2, -1, 0, 1, 2], int(rng.integers(60, 200)))) % 24)
            for _ in range(300)]
    lengths = rng.integers(60, 200, 2400)
    return bleu.random_like(seed, lengths, seed=1), "synthetic: Markov chain of random walks (corpus absent)"


def median_time(fn, repeats: int) -> tuple[float, object]:
    times, value = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), value


def transposed_pool(tunes: list[list[int]], need: int) -> list[list[int]]:
    pool = list(tunes)
    for shift in (1, -1, 2, -2, 3, -3, 4, -4, 5, -5):
        if len(pool) >= need:
            break
        pool += [[p + shift for p in t] for t in tunes]
    return pool[:need]


def part1(tunes: list[list[int]], n_hyps: int, sizes: list[int], nltk_hyps_large: int,
          repeats_nltk: tuple[int, int], repeats_ours: int) -> None:
    """``repeats_nltk``: nltk runs at the first size (all hypotheses) and at the larger ones."""
    hyps, rest = tunes[-n_hyps:], tunes[:-n_hyps]
    print(f"\n## Part 1: shared references, {n_hyps} hypotheses (held-out tunes); nltk runs: "
          f"{repeats_nltk[0]} at {sizes[0]} refs, median of {repeats_nltk[1]} above; ours: median of {repeats_ours}")
    print(f"{'refs':>6} {'weights':<11} {'nltk score':>20} {'ours score':>20} {'equal':>6} "
          f"{'nltk s':>9} {'ours s':>9} {'ratio':>8}  note")
    for n_refs in sizes:
        refs = transposed_pool(rest, n_refs)
        for name, w in WEIGHTS.items():
            first = n_refs == sizes[0]
            k = n_hyps if first else nltk_hyps_large
            sub = hyps[:k]
            reps = repeats_nltk[0] if first else repeats_nltk[1]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # nltk's method0 warns about zero-count orders
                t_nltk, v_nltk = median_time(lambda: nltk_bleu.corpus_bleu([refs] * k, sub, w), reps)
                t_sub, v_sub = median_time(lambda: bleu.corpus_bleu([refs] * k, sub, w), repeats_ours)
                t_all, v_all = median_time(lambda: bleu.corpus_bleu([refs] * n_hyps, hyps, w), repeats_ours)
            equal = v_nltk == v_sub
            if k == n_hyps:
                print(f"{n_refs:>6} {name:<11} {v_nltk:>20.17f} {v_sub:>20.17f} {str(equal):>6} "
                      f"{t_nltk:>9.3f} {t_all:>9.4f} {t_nltk / t_all:>7.0f}x")
            else:
                scaled = t_nltk * n_hyps / k
                print(f"{n_refs:>6} {name:<11} {v_nltk:>20.17f} {v_sub:>20.17f} {str(equal):>6} "
                      f"{t_nltk:>9.3f} {t_sub:>9.4f} {t_nltk / t_sub:>7.0f}x  scores and times on the first {k} hypotheses")
                print(f"{n_refs:>6} {name:<11} {'':>20} {v_all:>20.17f} {'':>6} "
                      f"{scaled:>9.1f} {t_all:>9.4f} {scaled / t_all:>7.0f}x  all {n_hyps}: nltk time scaled x{n_hyps / k:g}")
        sys.stdout.flush()


def part2(tunes: list[list[int]], sizes: list[int], n_hyps: int, repeats: int) -> None:
    rng = np.random.default_rng(0)
    lengths = [len(t) for t in tunes]
    t0 = time.perf_counter()
    refs_all = bleu.random_like(tunes, rng.choice(lengths, max(sizes)), seed=1)
    hyps = bleu.random_like(tunes, rng.choice(lengths, n_hyps), seed=2)
    print(f"\n## Part 2: ours alone, {n_hyps} hypotheses, Markov-chain data "
          f"(drawn in {time.perf_counter() - t0:.1f} s)")
    print(f"{'refs':>7} {'ref tokens':>11} {'custom 1-9':>11} {'BLEU-4':>8} {'both in one call':>17} "
          f"{'peak alloc MiB':>15} {'BLEU custom':>12} {'BLEU-4':>8}")
    for n_refs in sizes:
        refs = refs_all[:n_refs]
        lor = [refs] * n_hyps
        t_c, v_c = median_time(lambda: bleu.corpus_bleu(lor, hyps, bleu.CUSTOM_WEIGHTS), repeats)
        t_4, v_4 = median_time(lambda: bleu.corpus_bleu(lor, hyps, BLEU4), repeats)
        t_b, _ = median_time(lambda: bleu.corpus_bleu(lor, hyps, [bleu.CUSTOM_WEIGHTS, BLEU4]), repeats)
        tracemalloc.start()
        bleu.corpus_bleu(lor, hyps, bleu.CUSTOM_WEIGHTS)
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        n_tok = sum(map(len, refs))
        print(f"{n_refs:>7} {n_tok:>11,} {t_c:>10.2f}s {t_4:>7.2f}s {t_b:>16.2f}s {peak:>15.0f} "
              f"{v_c:>12.4f} {v_4:>8.4f}")
        sys.stdout.flush()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"process max RSS (inputs as Python lists included): {rss:.0f} MiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, one repeat (smoke test)")
    args = ap.parse_args()
    tunes, source = load_tunes()
    print(f"data: {source}")
    print(f"python {platform.python_version()}, numpy {np.__version__}, nltk {nltk.__version__}, "
          f"{platform.machine()}; medians of repeated runs")
    t0 = time.perf_counter()
    if args.quick:
        part1(tunes, 20, [100, 300], 10, (1, 1), 1)
        part2(tunes, [1_000, 5_000], 100, 1)
    else:
        part1(tunes, 200, [500, 2_000], 20, (1, 3), 5)
        part2(tunes, [10_000, 100_000], 1_000, 3)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
