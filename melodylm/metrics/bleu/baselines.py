"""Baselines that give a BLEU score its meaning: self-BLEU, random sequences, real melodies cut to length.

BLEU of melodies against a large reference set saturates: BLEU-4 of real held-out folk tunes
against other tunes of the collection was 0.95 at 500 references, 0.98 at 2,000 and 0.99 at
8,000. A score is only comparable at a fixed reference set, beside baselines of the same lengths:

* :func:`self_bleu`: each sample against the others (high = the samples repeat each other);
* :func:`random_like`: a Markov chain fitted on the references, a floor;
* :func:`matched_lengths`: real melodies cut to the samples' lengths, the human level.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from itertools import chain
from typing import Any

import numpy as np

from melodylm.metrics.bleu.compute import (Smoothing, Token, Weights, compute_bleu, is_nltk_method, orders_to_count,
                                           weights_list)
from melodylm.metrics.bleu.engine import (HypCounts, build_tables, clipped_sums, closest_lengths, encode,
                                          positions, run_lengths, synthetic_reference)

__all__ = ["matched_lengths", "random_like", "self_bleu"]


def self_bleu(
    hypotheses: Sequence[Sequence[Token]],
    weights: Weights = (0.25, 0.25, 0.25, 0.25),
    smoothing_function: Smoothing | None = None,
    per_hypothesis: bool = False,
) -> float | list[float] | list[list[float]]:
    """Mean sentence BLEU of each hypothesis against all the others (never itself).

    High self-BLEU means the samples repeat each other. Equal to averaging nltk's
    ``sentence_bleu(hypotheses[:i] + hypotheses[i+1:], hypotheses[i], ...)`` over ``i`` (to
    1e-12; the mean is ``math.fsum``), but counts every hypothesis once: for each n-gram it keeps
    the largest and second-largest count over the set and the owner of the largest, so "the
    others' max" is one lookup. With a list of weight tuples the mean is per tuple.

    Args:
        per_hypothesis: return the list of per-hypothesis scores instead of the mean.
    """
    n_h = len(hypotheses)
    if n_h < 2:
        raise ValueError("self-BLEU needs at least two hypotheses")
    all_weights, single = weights_list(weights)
    n_orders = max(len(w) for w in all_weights)
    need = orders_to_count(smoothing_function, n_orders)

    vocab = {t: i for i, t in enumerate(dict.fromkeys(chain.from_iterable(hypotheses)))}
    base = len(vocab) + 1
    tok, lengths = encode(hypotheses, vocab, base - 1)
    seq, rem = positions(lengths)
    starts = np.cumsum(lengths) - lengths
    tables, levels = build_tables(tok, rem, need, base)
    num = np.zeros((n_h, need), dtype=np.int64)
    mx_levels = []
    for n, (pos, ids) in enumerate(levels, 1):
        mx = _others_max(seq[pos], ids, tables.size(n))
        mx_levels.append(mx)
        num[:, n - 1] = clipped_sums(seq[pos], ids, mx, tables.size(n), n_h)
    counts_obj = HypCounts(hypotheses, num, np.zeros(n_h, dtype=np.int64), levels, mx_levels, starts, seq)

    # Closest length among the others: remove one copy of the hypothesis' own length.
    length_counts = Counter(lengths.tolist())
    uniq = np.array(sorted(length_counts), dtype=np.int64)
    scores = []
    for h, hyp in enumerate(hypotheses):
        n_tok = len(hyp)
        if length_counts[n_tok] > 1:
            ref_len = n_tok
        else:
            others = uniq[uniq != n_tok]
            ref_len = int(closest_lengths(others, np.array([n_tok]))[0])
        totals = [max(1, n_tok - n + 1) for n in range(1, n_orders + 1)]
        if is_nltk_method(smoothing_function, "method5", "method7"):
            refs_arg: Any = synthetic_reference(counts_obj.clipped_ngrams(h, 5))
        else:
            refs_arg = [x for i, x in enumerate(hypotheses) if i != h]
        scores.append(compute_bleu(num[h, :n_orders].tolist(), totals, n_tok, ref_len, weights,
                                   smoothing_function, False, references=refs_arg, hypothesis=hyp))
    if per_hypothesis:
        return scores
    if single:
        return math.fsum(scores) / n_h
    return [math.fsum(s[j] for s in scores) / n_h for j in range(len(all_weights))]


def _others_max(s: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    """Per position: the largest count of its n-gram in any *other* sequence.

    ``s`` is the sequence of each position, ``ids`` its n-gram id (below ``k``). For every id we
    keep the best count and its owner, and the second best (0 if one owner only), so the
    others' max is the second best where the position's own sequence is the best owner.
    """
    key = s * k + ids
    key.sort()
    first, counts = run_lengths(key)
    owner, gid = key[first] // k, key[first] % k
    order = np.lexsort((-counts, gid))
    gid_s, cnt_s, own_s = gid[order], counts[order], owner[order]
    g_first, _ = run_lengths(gid_s)
    top1 = np.zeros(k, dtype=np.int64)
    top1_owner = np.full(k, -1, dtype=np.int64)
    top2 = np.zeros(k, dtype=np.int64)
    top1[gid_s[g_first]] = cnt_s[g_first]
    top1_owner[gid_s[g_first]] = own_s[g_first]
    second = g_first + 1
    has_second = second < gid_s.size
    has_second[has_second] = gid_s[second[has_second]] == gid_s[g_first[has_second]]
    top2[gid_s[g_first[has_second]]] = cnt_s[second[has_second]]
    return np.where(top1_owner[ids] == s, top2[ids], top1[ids])


def random_like(
    references: Sequence[Sequence[Token]],
    lengths: Sequence[int],
    seed: int = 0,
    order: int = 1,
) -> list[list[Token]]:
    """Random sequences with the references' token statistics: a floor for BLEU.

    ``order=1`` (default): a first-order Markov chain fitted on the references. The first token
    is drawn from the references' first tokens, every next one from the tokens that follow the
    current one in the references (by bigram count). A token that is never followed by anything
    (it only ends references) is followed by a draw from the unigram distribution.
    ``order=0``: every token is drawn independently from the unigram distribution.

    Args:
        references: token sequences to fit.
        lengths: the length of each sequence to draw (e.g. the lengths of the samples scored).
        seed: numpy seed; same inputs and seed give the same sequences.
    """
    if order not in (0, 1):
        raise ValueError(f"order must be 0 (unigram) or 1 (bigram), got {order}")
    vocab = list(dict.fromkeys(chain.from_iterable(references)))
    if not vocab:
        raise ValueError("references contain no tokens")
    index = {t: i for i, t in enumerate(vocab)}
    tok, ref_lengths = encode(references, index, -1)
    tok = tok.astype(np.int64)
    v = len(vocab)
    rng = np.random.default_rng(seed)
    lengths_arr = np.asarray(lengths, dtype=np.int64).reshape(-1)
    n_out, t_max = lengths_arr.size, int(lengths_arr.max(initial=0))

    unigram_cum = np.cumsum(np.bincount(tok, minlength=v))

    def draw_unigram(size: int) -> np.ndarray:
        return np.searchsorted(unigram_cum, rng.integers(0, unigram_cum[-1], size), side="right")

    if order == 0:
        flat = draw_unigram(int(lengths_arr.sum())).tolist()
        bounds = np.cumsum(lengths_arr).tolist()
        return [[vocab[i] for i in flat[e - n:e]] for e, n in zip(bounds, lengths_arr.tolist())]

    ref_starts = (np.cumsum(ref_lengths) - ref_lengths)[ref_lengths > 0]
    first_cum = np.cumsum(np.bincount(tok[ref_starts], minlength=v))
    # Bigram counts as a sparse matrix in CSR order (rows = current token); a draw is a
    # uniform integer in the row's slice of the running count, found by binary search.
    _, rem = positions(ref_lengths)
    has_next = np.flatnonzero(rem > 1)
    uniq, cnt = np.unique(tok[has_next] * v + tok[has_next + 1], return_counts=True)
    row, nxt = uniq // v, uniq % v
    cum = np.cumsum(cnt)
    row_total = np.bincount(row, weights=cnt, minlength=v).astype(np.int64)
    row_begin = np.cumsum(row_total) - row_total

    # All sequences advance together. Sorted by length (longest first), the sequences still
    # growing at step t are a prefix; each writes its token t into one flat output array.
    by_len = np.argsort(-lengths_arr, kind="stable")
    sorted_len = lengths_arr[by_len]
    offset = np.cumsum(sorted_len) - sorted_len
    ascending = sorted_len[::-1]
    flat = np.zeros(int(sorted_len.sum()), dtype=np.int64)
    cur = np.searchsorted(first_cum, rng.integers(0, first_cum[-1], n_out), side="right")
    for t in range(t_max):
        live = n_out - int(np.searchsorted(ascending, t, side="right"))
        cur = cur[:live]
        if t > 0:
            total = row_total[cur]
            at = np.searchsorted(cum, row_begin[cur] + rng.integers(0, np.maximum(total, 1)), side="right")
            cur = nxt[np.minimum(at, nxt.size - 1)] if nxt.size else np.zeros_like(cur)
            dead = total == 0
            if dead.any():
                cur[dead] = draw_unigram(int(dead.sum()))
        flat[offset[:live] + t] = cur
    tokens = [vocab[i] for i in flat.tolist()]
    out: list[list[Token]] = [[] for _ in range(n_out)]
    for r, start, n in zip(by_len.tolist(), offset.tolist(), sorted_len.tolist()):
        out[r] = tokens[start:start + n]
    return out


def matched_lengths(pool: Sequence[Sequence], lengths: Sequence[int], seed: int = 0) -> list[list]:
    """One sequence of ``pool`` per length, cut to that length: same count and lengths.

    Longest lengths choose first, each taking a random sequence at least that long, preferring
    one not taken yet (sequences are reused only when the pool runs short); where no sequence is
    long enough, the longest one is taken whole. Returned in the order of ``lengths``.
    """
    if not pool:
        raise ValueError("empty pool")
    rng = np.random.default_rng(seed)
    pool_len = np.fromiter(map(len, pool), dtype=np.int64, count=len(pool))
    out: list[list] = [[] for _ in lengths]
    unused = np.ones(len(pool), dtype=bool)
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        long_enough = pool_len >= lengths[i]
        fresh = np.flatnonzero(long_enough & unused)
        reuse = np.flatnonzero(long_enough)
        j = int(rng.choice(fresh if fresh.size else reuse)) if reuse.size else int(np.argmax(pool_len))
        unused[j] = False
        out[i] = list(pool[j][:lengths[i]])
    return out
