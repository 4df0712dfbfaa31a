"""The BLEU counting engine: clipped n-gram counts against a reference set, in numpy.

nltk's ``corpus_bleu`` recounts every reference for every hypothesis and every n-gram order, so
its cost grows as hypotheses x references x orders: with 9-gram weights, 200 melodies take
~90 s against 500 reference tunes and ~7 minutes against 2,000 (``bench/bleu.py``, numbers in
BENCHMARKS.md). A score only needs, for every n-gram a hypothesis contains, the largest number
of times one reference contains it. We count that once per reference set and hand the sums to
:func:`melodylm.metrics.bleu.compute.compute_bleu`:

* clipped counts: ``min(count in hypothesis, max over references of count in that reference)``;
* the closest reference length per hypothesis, ties going to the shorter one.

How the counting works. Tokens become small integers; an n-gram gets a dense id from the pair
``(id of its (n-1)-gram prefix, last token)``, which is an exact int64 key (no hashing, no
collisions). An n-gram can only occur in a hypothesis if its prefix does, so while streaming the
references we follow, per position, only the prefixes that the hypotheses contain: memory is
bounded by the hypotheses plus one chunk of references, whatever the number of references.

:class:`BleuReference` is the public face: one encoded reference set for many queries. The
lower-level names without an underscore (``encode``, ``build_tables``, ``HypCounts``, ...) are
shared with :mod:`~melodylm.metrics.bleu.baselines` and :mod:`~melodylm.metrics.bleu.nltk_compat`;
``SmallGroup`` counts tiny groups with Counters, where numpy's per-call overhead would dominate.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Sequence
from itertools import chain, repeat
from typing import Any

import numpy as np

from melodylm.metrics.bleu.compute import (Smoothing, Token, Weights, closest_ref_length, compute_bleu,
                                           orders_to_count, is_nltk_method, weights_list)

__all__ = ["BleuReference"]


# References are processed in chunks of about this many tokens: bounds the temporary arrays
# (a few int64 arrays of this length) and keeps (references x ids) small enough for direct
# counting at low orders, without making numpy calls too small to be efficient.
_CHUNK_TOKENS = 1 << 19

# Direct-address lookup tables (int32 entries) replace binary searches; all tables of one
# query together stay below this many entries (64 MiB). Low orders, built first, have the
# most lookups and the smallest tables.
_DIRECT_MAX = 1 << 24

# Largest (sequences x ids) grid counted directly (int64 cells, 16 MiB) instead of sorted.
_DENSE_CELLS = 1 << 21

# Reference sets with at most this many (tokens x orders) get their n-gram tables built once,
# so that every later query is only a lookup; larger ones are streamed for each query.
_PRECOMPUTE_MAX = 20_000_000

# A token that equals nothing a hypothesis contains: separates the n-grams of the small
# reference we hand to nltk's smoothing method 5 (see synthetic_reference).
_NEVER = object()


def closest_lengths(sorted_lengths: np.ndarray, hyp_lens: np.ndarray) -> np.ndarray:
    """Vectorised :func:`closest_ref_length` against sorted unique reference lengths."""
    j = np.searchsorted(sorted_lengths, hyp_lens)  # first reference length >= hypothesis length
    upper = sorted_lengths[np.minimum(j, sorted_lengths.size - 1)]
    lower = sorted_lengths[np.maximum(j - 1, 0)]
    # The shorter neighbour wins ties, which is nltk's (distance, length) ordering.
    take_lower = (j > 0) & ((j == sorted_lengths.size) | (hyp_lens - lower <= upper - hyp_lens))
    return np.where(take_lower, lower, upper)



def synthetic_reference(clipped: dict[tuple, int]) -> list[list[Any]]:
    """A one-reference list on which nltk's ``modified_precision`` gives the given clipped counts.

    nltk's smoothing method 5 (and 7) recounts the 5-grams of the last hypothesis against its
    references, which for a large shared reference set costs as much as nltk's whole score.
    Each n-gram is written ``clipped`` times, separated by a token that matches nothing, so every
    other window contains the separator and the reference's count of each n-gram is exactly its
    clipped count.
    """
    ref: list[Any] = []
    for gram, count in clipped.items():
        for _ in range(count):
            ref.extend(gram)
            ref.append(_NEVER)
    return [ref]



# --------------------------------------------------------------------------------------------
# Counting. Sequences are encoded as one int32 array ``tok`` plus their lengths.

def encode(seqs: Sequence[Sequence[Token]], vocab: dict, unk: int) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated token ids (tokens not in ``vocab`` become ``unk``) and the lengths."""
    lengths = np.fromiter(map(len, seqs), dtype=np.int64, count=len(seqs))
    total = int(lengths.sum())
    # map(dict.get, tokens, repeat(unk)) runs in C: ~50 ns a token.
    tok = np.fromiter(map(vocab.get, chain.from_iterable(seqs), repeat(unk)), dtype=np.int32, count=total)
    return tok, lengths


def positions(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every token: index of its sequence, and tokens left in it (itself included)."""
    seq = np.repeat(np.arange(lengths.size, dtype=np.int64), lengths)
    ends = np.cumsum(lengths)
    rem = ends[seq] - np.arange(seq.size, dtype=np.int64)
    return seq, rem


class _Tables:
    """Dense ids for a set of n-grams, orders 1..n_orders.

    Order 1: the id is the token id; ``present`` marks which tokens occur. Order n >= 2: the id of
    an n-gram is the rank of ``prefix_id * base + last_token`` in ``keys[n-1]`` (sorted, unique).
    """

    def __init__(self, present: np.ndarray, keys: list[np.ndarray], base: int) -> None:
        self.present = present
        self.keys = keys  # keys[0] unused (order 1 uses token ids), keys[n-1] for order n
        self.base = base
        self._direct: dict[int, np.ndarray] = {}
        self._direct_used = 0

    def size(self, n: int) -> int:
        """Number of ids at order ``n``."""
        return self.base if n == 1 else self.keys[n - 1].size

    def find(self, n: int, pair: np.ndarray, volume: int) -> tuple[np.ndarray, np.ndarray]:
        """(hit mask, ids of the hits) of order-``n`` pair keys.

        Pair keys are below ``size(n-1) * base``; when that is small, a direct int32 table
        indexed by the key is ~15x faster than binary search (random access into a sorted
        array misses the cache on every step). ``volume`` (how many keys will be looked up in
        all) decides whether building the table pays off.
        """
        keys = self.keys[n - 1]
        span = self.size(n - 1) * self.base
        if n not in self._direct and self._direct_used + span <= _DIRECT_MAX and span <= 8 * volume:
            self._direct_used += span
            table = np.full(span, -1, dtype=np.int32)
            table[keys] = np.arange(keys.size, dtype=np.int32)
            self._direct[n] = table
        if n in self._direct:
            j = self._direct[n][pair]
            hit = j >= 0
            return hit, j[hit].astype(np.int64)
        if keys.size == 0:
            return np.zeros(pair.size, dtype=bool), pair[:0]
        j = np.searchsorted(keys, pair)
        hit = keys[np.minimum(j, keys.size - 1)] == pair
        return hit, j[hit]


def build_tables(tok: np.ndarray, rem: np.ndarray, n_orders: int, base: int) -> tuple[_Tables, list]:
    """Tables of every n-gram in ``tok``, and per order the (positions, ids) of all n-grams."""
    present = np.zeros(base, dtype=bool)
    present[tok] = True
    pos = np.arange(tok.size, dtype=np.int64)
    ids = tok.astype(np.int64)
    keys: list[np.ndarray] = [np.empty(0, dtype=np.int64)]
    levels = [(pos, ids)]
    for n in range(2, n_orders + 1):
        keep = rem[pos] >= n
        pos = pos[keep]
        pair = ids[keep] * base + tok[pos + n - 1]
        uniq, ids = np.unique(pair, return_inverse=True)
        keys.append(uniq)
        levels.append((pos, ids.reshape(-1)))
    return _Tables(present, keys, base), levels


def _lookup(tok: np.ndarray, rem: np.ndarray, tables: _Tables, n_orders: int, volume: int = 0):
    """Yield, per order, the (positions, ids) of the n-grams of ``tok`` that are in ``tables``.

    An n-gram is in the tables only if its prefix is, so each order only looks at the positions
    that survived the previous one: high orders cost little. ``volume``: see ``_Tables.find``.
    (:func:`_stream_max_counts` walks the orders the same way, counting as it goes.)
    """
    pos = np.flatnonzero(tables.present[tok])
    ids = tok[pos].astype(np.int64)
    yield pos, ids
    for n in range(2, n_orders + 1):
        keep = rem[pos] >= n
        pos = pos[keep]
        pair = ids[keep] * tables.base + tok[pos + n - 1]
        hit, ids = tables.find(n, pair, volume)
        pos = pos[hit]
        yield pos, ids


def run_lengths(sorted_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start index and length of each run of equal values in a sorted array."""
    if sorted_keys.size == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate(([True], sorted_keys[1:] != sorted_keys[:-1])))
    counts = np.diff(np.append(starts, sorted_keys.size))
    return starts, counts


def _max_counts_into(out: np.ndarray, seq: np.ndarray, ids: np.ndarray, n_seqs: int,
                     want_counts: bool = False) -> np.ndarray | None:
    """``out[id] = max(out[id], count of id within one sequence)`` over sequences 0..n_seqs-1.

    With ``want_counts``, also returns per position the count of its id in its sequence.
    """
    k = out.size
    key = seq * k + ids
    # A direct count costs ~1 ns a cell against ~100 ns an element to sort: worth it up to
    # ~30 cells per position, within a memory cap.
    if n_seqs * k <= min(_DENSE_CELLS, max(32 * ids.size, 1 << 16)):
        cells = np.bincount(key, minlength=n_seqs * k)
        np.maximum(out, cells.reshape(n_seqs, k).max(axis=0), out=out)
        return cells[key] if want_counts else None
    order = np.argsort(key) if want_counts else None
    sorted_key = key[order] if want_counts else np.sort(key)
    starts, counts = run_lengths(sorted_key)
    np.maximum.at(out, sorted_key[starts] % k, counts)
    if not want_counts:
        return None
    per_position = np.empty(key.size, dtype=np.int64)
    per_position[order] = np.repeat(counts, counts)
    return per_position


def _stream_max_counts(tok: np.ndarray, lengths: np.ndarray, tables: _Tables, maxc: list[np.ndarray],
                       volume: int) -> None:
    """Update ``maxc[n-1][id]`` with the max count of each table n-gram in one of these sequences.

    Counting per (sequence, n-gram) needs a sort, the main cost; it is skipped wherever it
    cannot change the maximum. An n-gram occurs in a sequence at most as often as its
    (n-1)-gram prefix, so each position carries an upper ``bound`` on its count (exact where it
    was counted, else inherited from the prefix). A position whose bound does not exceed the
    max found so far cannot raise it; a bound of 1 is exact. All positions of one (sequence,
    n-gram) share prefix, bound and current max, so they are skipped or counted together and
    the counts stay exact. Once the first chunks have set the maxima, few positions are sorted.
    """
    seq, rem = positions(lengths)
    n_orders = len(maxc)
    pos = np.flatnonzero(tables.present[tok])
    ids = tok[pos].astype(np.int64)
    if ids.size == 0:
        return
    bound = _max_counts_into(maxc[0], seq[pos], ids, lengths.size, want_counts=True)
    for n in range(2, n_orders + 1):
        keep = rem[pos] >= n
        pos, ids, bound = pos[keep], ids[keep], bound[keep]
        hit, ids = tables.find(n, ids * tables.base + tok[pos + n - 1], volume)
        pos, bound = pos[hit], bound[hit]
        if ids.size == 0:
            return  # no longer n-gram can match either
        out = maxc[n - 1]
        best = out[ids]
        out[ids[(bound == 1) & (best == 0)]] = 1
        todo = np.flatnonzero((bound > 1) & (bound > best))
        if todo.size:
            counted = _max_counts_into(out, seq[pos[todo]], ids[todo], lengths.size, want_counts=n < n_orders)
            if counted is not None:
                bound[todo] = counted


def clipped_sums(seq: np.ndarray, ids: np.ndarray, mx: np.ndarray, k: int, n_seqs: int) -> np.ndarray:
    """Per hypothesis: sum over its distinct n-grams of ``min(count, mx)``.

    ``mx`` is aligned with the positions: the max reference count of the n-gram starting there.
    """
    if ids.size == 0:
        return np.zeros(n_seqs, dtype=np.int64)
    key = seq * k + ids
    order = np.argsort(key, kind="stable")
    starts, counts = run_lengths(key[order])
    first = order[starts]
    clipped = np.minimum(counts, mx[first])
    # float64 sums of integers are exact far beyond any corpus size (2**53).
    return np.bincount(seq[first], weights=clipped, minlength=n_seqs).astype(np.int64)


class HypCounts:
    """Clipped counts of a batch of hypotheses against one reference set, per order.

    ``num[h, n-1]`` is the clipped match count of hypothesis ``h`` at order ``n``; ``ref_len[h]``
    its closest reference length. ``clipped_ngrams(h, n)`` gives the per-n-gram clipped counts
    of one hypothesis (only needed for nltk's smoothing methods 5 and 7).
    """

    def __init__(self, hyps: Sequence[Sequence[Token]], num: np.ndarray, ref_len: np.ndarray,
                 levels: list | None, mx: list | None, starts: np.ndarray | None, seq: np.ndarray | None,
                 clipped_fn: Callable[[int, int], dict] | None = None) -> None:
        self.hyps = hyps
        self.num = num
        self.ref_len = ref_len
        self._levels, self._mx, self._starts, self._seq = levels, mx, starts, seq
        self._clipped_fn = clipped_fn

    def clipped_ngrams(self, h: int, n: int) -> dict[tuple, int]:
        if self._clipped_fn is not None:
            return self._clipped_fn(h, n)
        pos, _ = self._levels[n - 1]
        mine = self._seq[pos] == h
        hyp = self.hyps[h]
        start = int(self._starts[h])
        counts: Counter = Counter()
        best: dict[tuple, int] = {}
        for p, m in zip((pos[mine] - start).tolist(), self._mx[n - 1][mine].tolist()):
            gram = tuple(hyp[p:p + n])
            counts[gram] += 1
            best[gram] = m
        return {g: min(c, best[g]) for g, c in counts.items() if min(c, best[g]) > 0}


# --------------------------------------------------------------------------------------------
# A reference set, encoded once.

class BleuReference:
    """One reference set for many BLEU queries, with nltk's semantics.

    Holds the references as one int32 array (4 bytes a token) and their sorted lengths. When the
    set is small enough (tokens x ``max_n`` <= 2e7, or ``precompute=True``) the max count of every
    reference n-gram up to order ``max_n`` is computed once, so that each query is a lookup;
    otherwise every query streams the references once, following only the n-grams its
    hypotheses contain (exact, and memory bounded by the hypotheses plus one chunk).

    With ``store=False`` nothing is encoded up front: each query encodes the references chunk
    by chunk with the hypotheses' vocabulary and forgets them, so memory does not grow with the
    reference set at all (what :func:`corpus_bleu` uses for a single query).

    ``corpus_bleu(hyps)`` equals nltk's ``corpus_bleu([refs] * len(hyps), hyps)``;
    ``sentence_bleu(hyp)`` equals nltk's ``sentence_bleu(refs, hyp)``;
    ``sentence_scores(hyps)`` gives the latter for many hypotheses in one pass.
    """

    def __init__(self, references: Sequence[Sequence[Token]], max_n: int = 4,
                 precompute: bool | None = None, store: bool = True) -> None:
        if len(references) == 0:
            raise ValueError("BLEU needs at least one reference")
        self.references = references
        self.max_n = int(max_n)
        self._lengths = np.fromiter(map(len, references), dtype=np.int64, count=len(references))
        self._sorted_lengths = np.unique(self._lengths)
        self._vocab: dict | None = None
        self._tok: np.ndarray | None = None
        if store:
            self._vocab = {t: i for i, t in enumerate(dict.fromkeys(chain.from_iterable(references)))}
            self._tok, _ = encode(references, self._vocab, len(self._vocab))  # id len(vocab): unseen
        if precompute is None:
            precompute = self.n_tokens * self.max_n <= _PRECOMPUTE_MAX
        self._tables: _Tables | None = None
        self._maxc: list[np.ndarray] = []
        if precompute and store and self.max_n >= 1:
            self._precompute()

    def __len__(self) -> int:
        return len(self._lengths)

    @property
    def n_tokens(self) -> int:
        return int(self._lengths.sum())

    @property
    def fingerprint(self) -> str:
        """Short hash of the reference tokens and their order (for :func:`bleu_signature`)."""
        if self._vocab is None or self._tok is None:
            return BleuReference(self.references, 1, precompute=False).fingerprint
        h = hashlib.sha256()
        # Ids are assigned in order of first appearance, so ids + vocabulary pin the sequences.
        h.update(repr(list(self._vocab)).encode())
        h.update(self._lengths.tobytes())
        h.update(self._tok.tobytes())
        return h.hexdigest()[:12]

    def _precompute(self) -> None:
        assert self._vocab is not None and self._tok is not None
        seq, rem = positions(self._lengths)
        self._tables, levels = build_tables(self._tok, rem, self.max_n, len(self._vocab) + 1)
        for n, (pos, ids) in enumerate(levels, 1):
            out = np.zeros(self._tables.size(n), dtype=np.int64)
            _max_counts_into(out, seq[pos], ids, len(self._lengths))
            self._maxc.append(out)

    def _chunks(self, vocab: dict, unk: int):
        """Yield (tokens, lengths) of consecutive groups of references of ~_CHUNK_TOKENS tokens."""
        ends = np.cumsum(self._lengths)
        i, t0 = 0, 0
        while i < self._lengths.size:
            j = max(int(np.searchsorted(ends, t0 + _CHUNK_TOKENS, side="right")), i + 1)
            t1 = int(ends[j - 1])
            if self._tok is not None:
                yield self._tok[t0:t1], self._lengths[i:j]
            else:
                yield encode(self.references[i:j], vocab, unk)[0], self._lengths[i:j]
            i, t0 = j, t1

    def counts(self, hypotheses: Sequence[Sequence[Token]], n_orders: int) -> HypCounts:
        """Clipped counts of every hypothesis at orders 1..n_orders against this set."""
        if self._vocab is not None:
            vocab = self._vocab
        else:  # tokens the hypotheses lack cannot match: they all become the one unseen id
            vocab = {t: i for i, t in enumerate(dict.fromkeys(chain.from_iterable(hypotheses)))}
        base = len(vocab) + 1  # id len(vocab) = "unseen"
        tok, lengths = encode(hypotheses, vocab, base - 1)
        seq, rem = positions(lengths)
        starts = np.cumsum(lengths) - lengths
        n_h = len(hypotheses)
        num = np.zeros((n_h, n_orders), dtype=np.int64)
        mx_levels: list[np.ndarray] = []
        if self._tables is not None and n_orders <= self.max_n:
            # Look the hypotheses' n-grams up in the precomputed reference tables.
            levels = list(_lookup(tok, rem, self._tables, n_orders))
            for n, (pos, ids) in enumerate(levels, 1):
                mx = self._maxc[n - 1][ids]
                mx_levels.append(mx)
                num[:, n - 1] = clipped_sums(seq[pos], ids, mx, self._tables.size(n), n_h)
        else:
            # Tables of the hypotheses' n-grams; stream the references through them.
            tables, levels = build_tables(tok, rem, n_orders, base)
            maxc = [np.zeros(tables.size(n), dtype=np.int64) for n in range(1, n_orders + 1)]
            for ref_tok, ref_lengths in self._chunks(vocab, base - 1):
                _stream_max_counts(ref_tok, ref_lengths, tables, maxc, volume=self.n_tokens)
            for n, (pos, ids) in enumerate(levels, 1):
                mx = maxc[n - 1][ids]
                mx_levels.append(mx)
                num[:, n - 1] = clipped_sums(seq[pos], ids, mx, tables.size(n), n_h)
        ref_len = closest_lengths(self._sorted_lengths, lengths)
        return HypCounts(hypotheses, num, ref_len, levels, mx_levels, starts, seq)

    def _smoothing_args(self, smoothing_function: Any, counts: HypCounts, h: int) -> tuple[Any, Any]:
        """(references, hypothesis) to hand to the smoothing function for hypothesis ``h``."""
        if is_nltk_method(smoothing_function, "method5", "method7"):
            return synthetic_reference(counts.clipped_ngrams(h, 5)), counts.hyps[h]
        return self.references, counts.hyps[h]

    def corpus_bleu(self, hypotheses: Sequence[Sequence[Token]], weights: Weights = (0.25, 0.25, 0.25, 0.25),
                    smoothing_function: Smoothing | None = None, auto_reweigh: bool = False) -> float | list[float]:
        """nltk's ``corpus_bleu([refs] * len(hypotheses), hypotheses, ...)``, exactly."""
        n_orders = max(len(w) for w in weights_list(weights)[0])
        counts = self.counts(hypotheses, orders_to_count(smoothing_function, n_orders))
        hyp_lens = [len(h) for h in hypotheses]
        totals = [sum(max(1, n_tok - n + 1) for n_tok in hyp_lens) for n in range(1, n_orders + 1)]
        matches = counts.num[:, :n_orders].sum(axis=0).tolist()
        refs, hyp = (self._smoothing_args(smoothing_function, counts, len(hypotheses) - 1)
                     if len(hypotheses) else (None, None))
        return compute_bleu(matches, totals, sum(hyp_lens), int(counts.ref_len.sum()), weights,
                            smoothing_function, auto_reweigh, references=refs, hypothesis=hyp)

    def sentence_scores(self, hypotheses: Sequence[Sequence[Token]], weights: Weights = (0.25, 0.25, 0.25, 0.25),
                        smoothing_function: Smoothing | None = None,
                        auto_reweigh: bool = False) -> list[float | list[float]]:
        """nltk's ``sentence_bleu(refs, h, ...)`` for every ``h``, counting the references once."""
        n_orders = max(len(w) for w in weights_list(weights)[0])
        counts = self.counts(hypotheses, orders_to_count(smoothing_function, n_orders))
        out = []
        for h, hyp in enumerate(hypotheses):
            n_tok = len(hyp)
            totals = [max(1, n_tok - n + 1) for n in range(1, n_orders + 1)]
            refs, hyp_arg = self._smoothing_args(smoothing_function, counts, h)
            out.append(compute_bleu(counts.num[h, :n_orders].tolist(), totals, n_tok, int(counts.ref_len[h]),
                                    weights, smoothing_function, auto_reweigh, references=refs,
                                    hypothesis=hyp_arg))
        return out

    def sentence_bleu(self, hypothesis: Sequence[Token], weights: Weights = (0.25, 0.25, 0.25, 0.25),
                      smoothing_function: Smoothing | None = None, auto_reweigh: bool = False) -> float | list[float]:
        """nltk's ``sentence_bleu(refs, hypothesis, ...)``, exactly."""
        return self.sentence_scores([hypothesis], weights, smoothing_function, auto_reweigh)[0]


# --------------------------------------------------------------------------------------------
# Plain-Python counting for small groups (one short reference per hypothesis, say).

def _ngram_counts(seq: Sequence[Token], n: int) -> Counter:
    # zip over shifted slices is ~3x faster than nltk.util.ngrams and gives the same tuples.
    return Counter(zip(*(seq[i:] for i in range(n)))) if len(seq) >= n else Counter()


class SmallGroup:
    """Clipped counts of a few hypotheses against a few references, with Counters."""

    def __init__(self, references: Sequence[Sequence[Token]]) -> None:
        self.references = references
        self._ref_counts: dict[int, list[Counter]] = {}

    def _refs(self, n: int) -> list[Counter]:
        if n not in self._ref_counts:
            self._ref_counts[n] = [_ngram_counts(r, n) for r in self.references]
        return self._ref_counts[n]

    def clipped_ngrams(self, hyp: Sequence[Token], n: int) -> dict[tuple, int]:
        refs = self._refs(n)
        out = {}
        for gram, c in _ngram_counts(hyp, n).items():
            m = min(c, max(rc[gram] for rc in refs))
            if m:
                out[gram] = m
        return out

    def counts(self, hypotheses: Sequence[Sequence[Token]], n_orders: int) -> HypCounts:
        num = np.array([[sum(self.clipped_ngrams(h, n).values()) for n in range(1, n_orders + 1)]
                        for h in hypotheses], dtype=np.int64).reshape(len(hypotheses), n_orders)
        ref_len = np.array([closest_ref_length(self.references, len(h)) for h in hypotheses], dtype=np.int64)
        return HypCounts(hypotheses, num, ref_len, None, None, None, None,
                          clipped_fn=lambda h, n: self.clipped_ngrams(hypotheses[h], n))

