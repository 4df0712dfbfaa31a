"""Kneser-Ney n-gram baseline: melodylm.ngram.KneserNey against nltk.lm.KneserNeyInterpolated.

Usage: python bench/ngram.py [--order 5] [--nltk-tokens 2000] [--repeats 5]

Data: O'Neill's 1850 tunes from corpora/oneills1850/*.mid when present, one token per note,
id = pitch * 8 + duration bucket (log2 of the duration in sixteenths, clipped to 0..7),
vocab 1024; tunes split 90/10 in file order. Without the folder, a synthetic corpus of the
same size from a random sparse Markov chain. Both models are fitted on the same training
tunes; nltk scores the first test tunes until `--nltk-tokens` tokens (it is ~1,000x slower),
ours scores those and then the whole test split. Timings are medians over `--repeats` runs
(nltk: one run, median per query). A scale test fits ours on the training split
transposed by -2..+2 semitones (~1M tokens).
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from melodylm.ngram import BOS, EOS, KneserNey  # noqa: E402

CORPUS = Path(__file__).resolve().parents[1] / "corpora" / "oneills1850"
N_BUCKETS = 8
VOCAB = 128 * N_BUCKETS


def note_ids(path: Path) -> list[int]:
    """One id per note, in onset order: pitch and a coarse log-duration bucket."""
    import symusic

    score = symusic.Score(str(path))
    sixteenth = score.ticks_per_quarter / 4
    notes = sorted((n.time, n.pitch, n.duration) for track in score.tracks for n in track.notes)
    ids = []
    for _, pitch, duration in notes:
        bucket = int(np.clip(round(math.log2(max(duration, 1) / sixteenth)), 0, N_BUCKETS - 1))
        ids.append(pitch * N_BUCKETS + bucket)
    return ids


def synthetic(n_tunes: int = 2000, mean_len: int = 108, seed: int = 0) -> list[list[int]]:
    """Tunes from a sparse first-order Markov chain over 200 ids (each id has 6 successors)."""
    rng = np.random.default_rng(seed)
    succ = rng.integers(0, 200, (200, 6))
    tunes = []
    for _ in range(n_tunes):
        t = [int(rng.integers(200))]
        for _ in range(int(rng.poisson(mean_len))):
            t.append(int(succ[t[-1], rng.integers(6)]))
        tunes.append(t)
    return tunes


def load() -> tuple[str, list[list[int]]]:
    files = sorted(CORPUS.glob("*.mid"))
    if files:
        return f"oneills1850 ({len(files)} MIDI files, pitch x duration-bucket ids)", [note_ids(f) for f in files]
    return "synthetic Markov chain (corpora/oneills1850 absent)", synthetic()


def median_time(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--order", type=int, default=5)
    ap.add_argument("--nltk-tokens", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    import nltk
    from nltk.lm import KneserNeyInterpolated
    from nltk.lm.preprocessing import padded_everygram_pipeline

    name, tunes = load()
    cut = int(len(tunes) * 0.9)
    train, test = tunes[:cut], tunes[cut:]
    n_train, n_test = sum(map(len, train)), sum(map(len, test)) + len(test)  # + one </s> per tune
    order = args.order
    print(f"data: {name}; train {len(train)} tunes / {n_train} tokens, test {len(test)} tunes / {n_test} predictions")
    print(f"python {platform.python_version()}, numpy {np.__version__}, nltk {nltk.__version__}, order {order}, discount 0.1")

    # -- ours
    fit_s, lm = median_time(lambda: KneserNey(order=order, vocab_size=VOCAB).fit(train), args.repeats)
    score_s, logps = median_time(lambda: lm.logprobs_many(test), args.repeats)
    all_lp = np.concatenate(logps)
    assert np.isfinite(all_lp).all()
    one_by_one_s, _ = median_time(lambda: [lm.logprobs(t) for t in test], args.repeats)

    # -- nltk on the first test tunes
    t0 = time.perf_counter()
    ngrams, vocab = padded_everygram_pipeline(order, [[str(t) for t in s] for s in train])
    ref = KneserNeyInterpolated(order)
    ref.fit(ngrams, vocab)
    nltk_fit_s = time.perf_counter() - t0
    sub, count = [], 0
    for t in test:
        if count >= args.nltk_tokens:
            break
        sub.append(t)
        count += len(t) + 1
    per_query, deltas, zeros = [], [], 0
    for tune, ours in zip(sub, lm.logprobs_many(sub)):
        padded = [BOS] * (order - 1) + [str(t) for t in tune] + [EOS]
        for i, t in enumerate(range(order - 1, len(padded))):
            t0 = time.perf_counter()
            p = ref.score(padded[t], tuple(padded[t - order + 1 : t]))
            per_query.append(time.perf_counter() - t0)
            if p == 0.0:
                zeros += 1  # a token unseen in training: nltk says 0, ours is finite
            else:
                deltas.append(abs(math.log(p) - ours[i]))
    sub_s, _ = median_time(lambda: lm.logprobs_many(sub), args.repeats)
    nltk_tok = statistics.median(per_query)
    ours_tok = sub_s / count

    # -- scale: ~1M tokens (training split transposed by -2..+2 semitones)
    big = [[i + shift * N_BUCKETS for i in t] for shift in range(-2, 3) for t in train]
    big_fit_s, big_lm = median_time(lambda: KneserNey(order=order, vocab_size=VOCAB).fit(big), max(1, args.repeats // 2))
    big_score_s, _ = median_time(lambda: big_lm.logprobs_many(big), 1)
    n_big = sum(map(len, big)) + len(big)

    print("\n| what | ours | nltk.lm | ratio |\n|---|---|---|---|")
    print(f"| fit, {n_train} train tokens | {fit_s:.3f} s | {nltk_fit_s:.1f} s | {nltk_fit_s / fit_s:.0f}x |")
    print(
        f"| score, per token ({count} test tokens, median) | {ours_tok * 1e6:.2f} us | {nltk_tok * 1e3:.2f} ms "
        f"| {nltk_tok / ours_tok:,.0f}x |"
    )
    print(
        f"| score whole test split ({n_test} tokens), batched | {score_s:.3f} s ({score_s / n_test * 1e6:.2f} us/token) "
        f"| ~{nltk_tok * n_test / 60:.0f} min (est.) | |"
    )
    print(f"| score whole test split, one tune per call | {one_by_one_s:.3f} s | | |")
    print(f"| fit {n_big} tokens (5 transpositions) / score them | {big_fit_s:.2f} s / {big_score_s:.2f} s | | |")
    seen = {i for t in train for i in t}
    n_unseen = sum(i not in seen for t in test for i in t)
    print(f"\nmax |delta log p| vs nltk over {len(deltas)} tokens: {max(deltas):.3g}; nltk p = 0 for {zeros} of them (unseen ids)")
    print(f"whole test split: {n_unseen} tokens unseen in training (nltk: infinite perplexity; ours finite)")

    # The yardstick itself: cross-entropy on the test split by order and discount (one token
    # per note here, so bits/token = bits/note, </s> included).
    discounts = (0.1, 0.5, 0.75, 0.9)
    print("\n| order | " + " | ".join(f"bits/token, d={d}" for d in discounts) + " |")
    print("|---|" + "---|" * len(discounts))
    for k in range(2, order + 1):
        row = []
        for d in discounts:
            lp = np.concatenate(KneserNey(order=k, discount=d, vocab_size=VOCAB).fit(train).logprobs_many(test))
            row.append(f"{-lp.mean() / math.log(2):.3f}")
        print(f"| {k} | " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
