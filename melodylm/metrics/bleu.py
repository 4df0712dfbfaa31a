"""BLEU with exactly nltk 3.10's semantics, counting every reference only once.

``nltk.translate.bleu_score.corpus_bleu`` recounts every reference for every hypothesis and
every n-gram order, so its cost grows as hypotheses x references x orders: with 9-gram weights,
200 melodies take ~90 s against 500 reference tunes and ~7 minutes against 2,000 (BENCHMARKS.md). The scores themselves
only need, for every n-gram a hypothesis contains, the largest number of times one reference
contains it. We count that once per reference set, in numpy, and then do exactly what nltk does:

* clipped counts: ``min(count in hypothesis, max over references of count in that reference)``;
* denominators ``max(1, number of hypothesis n-grams)``, summed over the corpus;
* the closest reference length per hypothesis, ties going to the shorter one;
* nltk's ``Fraction`` with unnormalised numerator and denominator, because the smoothing
  methods read ``.numerator`` and ``.denominator`` (method 3 turns ``0/den`` into
  ``1/(2*den)``; a normalised ``0/1`` would give ``1/2``);
* every order up to the longest weight tuple, also where a weight is zero (method0 warns and
  method3 to 7 change their result with the number of orders);
* the early ``0`` (an ``int``) when there is no unigram match;
* the smoothing function is nltk's own (any callable with nltk's signature works), called with
  the last hypothesis and its references, as nltk does.

How the counting works. Tokens become small integers; an n-gram gets a dense id from the pair
``(id of its (n-1)-gram prefix, last token)``, which is an exact int64 key (no hashing, no
collisions). An n-gram can only occur in a hypothesis if its prefix does, so while streaming the
references we follow, per position, only the prefixes that the hypotheses contain: memory is
bounded by the hypotheses plus one chunk of references, whatever the number of references.

Two ways to use it:

* :func:`corpus_bleu` / :func:`sentence_bleu` are drop-in replacements for nltk's. When every
  hypothesis is given the same reference list object (``[refs] * len(hyps)``), the references
  are counted once for all hypotheses.
* :class:`BleuReference` holds an encoded reference set for many queries, including per-sample
  scores (:meth:`BleuReference.sentence_scores`) in one pass.

The parity tests (``tests/test_bleu.py``) compare against nltk to 1e-12 on tables of inputs.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from fractions import Fraction as _Rational
from itertools import chain, repeat
from typing import Any, Union

import numpy as np
from nltk.translate.bleu_score import Fraction as NltkFraction
from nltk.translate.bleu_score import SmoothingFunction

__all__ = [
    "BleuReference",
    "CUSTOM_WEIGHTS",
    "bleu_signature",
    "brevity_penalty",
    "closest_ref_length",
    "corpus_bleu",
    "parse_weights",
    "random_like",
    "reference_fingerprint",
    "self_bleu",
    "sentence_bleu",
]

Token = Hashable
Weights = Union[Sequence[float], Sequence[Sequence[float]]]
Smoothing = Callable[..., list]

# The weights used for melodies: nothing for single notes, most for 4- to 7-grams (1- to 9-grams).
CUSTOM_WEIGHTS: tuple[float, ...] = (0, 1 / 12, 1 / 12, 1 / 6, 1 / 6, 1 / 6, 1 / 6, 1 / 12, 1 / 12)

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

# Below this many (reference tokens x hypotheses) a group is counted in plain Python: numpy's
# per-call overhead would cost more than it saves (typical machine translation: one short
# reference per hypothesis).
_NUMPY_MIN_WORK = 50_000

# Reference sets with at most this many (tokens x orders) get their n-gram tables built once,
# so that every later query is only a lookup; larger ones are streamed for each query.
_PRECOMPUTE_MAX = 20_000_000

# A token that equals nothing a hypothesis contains: separates the n-grams of the small
# reference we hand to nltk's smoothing method 5 (see _synthetic_reference).
_NEVER = object()


# --------------------------------------------------------------------------------------------
# nltk's pieces, written out so that they work on numbers we counted ourselves.

def closest_ref_length(references: Sequence[Sequence[Token]], hyp_len: int) -> int:
    """Length of the reference closest to ``hyp_len``; on a tie the shorter (as nltk)."""
    return min((len(r) for r in references), key=lambda n: (abs(n - hyp_len), n))


def brevity_penalty(closest_ref_len: int, hyp_len: int) -> float:
    """nltk's brevity penalty: ``1`` if the hypothesis is longer, ``0`` if it is empty."""
    if hyp_len > closest_ref_len:
        return 1
    if hyp_len == 0:
        return 0
    return math.exp(1 - closest_ref_len / hyp_len)


def _closest_lengths(sorted_lengths: np.ndarray, hyp_lens: np.ndarray) -> np.ndarray:
    """Vectorised :func:`closest_ref_length` against sorted unique reference lengths."""
    j = np.searchsorted(sorted_lengths, hyp_lens)  # first reference length >= hypothesis length
    upper = sorted_lengths[np.minimum(j, sorted_lengths.size - 1)]
    lower = sorted_lengths[np.maximum(j - 1, 0)]
    # The shorter neighbour wins ties, which is nltk's (distance, length) ordering.
    take_lower = (j > 0) & ((j == sorted_lengths.size) | (hyp_lens - lower <= upper - hyp_lens))
    return np.where(take_lower, lower, upper)


def _is_nltk_method(smoothing_function: Any, *names: str) -> bool:
    """True for a bound method of a plain nltk ``SmoothingFunction`` named in ``names``."""
    owner = getattr(smoothing_function, "__self__", None)
    func = getattr(smoothing_function, "__func__", None)
    # Exact type: a subclass may override a method that method7 calls.
    return type(owner) is SmoothingFunction and any(func is getattr(SmoothingFunction, n) for n in names)


def _synthetic_reference(clipped: dict[tuple, int]) -> list[list[Any]]:
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


def _weights_list(weights: Weights) -> tuple[list, bool]:
    """nltk's test for "one tuple or a list of tuples": returns (list of tuples, single?).

    ``single`` is nltk's ``len(weights) == 1``: a list holding one tuple gives a plain score
    (``1.0``, or the int ``0``), not a one-element list.
    """
    try:
        weights[0][0]  # type: ignore[index]
    except (TypeError, IndexError):
        return [weights], True
    weights_list = list(weights)  # type: ignore[arg-type]
    return weights_list, len(weights_list) == 1


def _score(
    numerators: Sequence[int],
    denominators: Sequence[int],
    hyp_len: int,
    ref_len: int,
    weights: list,
    single: bool,
    smoothing_function: Smoothing | None,
    auto_reweigh: bool,
    references: Any,
    hypothesis: Any,
) -> float | list[float]:
    """The part of nltk's ``corpus_bleu`` after counting, statement for statement in effect."""
    bp = brevity_penalty(ref_len, hyp_len)
    p_n = [NltkFraction(int(a), int(b), _normalize=False) for a, b in zip(numerators, denominators)]
    # nltk returns the int 0 (not 0.0) when nothing matches, before smoothing.
    if not numerators or numerators[0] == 0:
        return 0 if single else [0] * len(weights)
    if not smoothing_function:
        smoothing_function = SmoothingFunction().method0
    p_n = smoothing_function(p_n, references=references, hypothesis=hypothesis, hyp_len=hyp_len)
    scores = []
    for weight in weights:
        if auto_reweigh and hyp_len < 4 and weight == (0.25, 0.25, 0.25, 0.25):
            weight = (1 / hyp_len,) * hyp_len
        log_sum = math.fsum(w * math.log(p) for w, p in zip(weight, p_n) if p > 0)
        scores.append(bp * math.exp(log_sum))
    return scores[0] if single else scores


# --------------------------------------------------------------------------------------------
# Counting. Sequences are encoded as one int32 array ``tok`` plus their lengths.

def _encode(seqs: Sequence[Sequence[Token]], vocab: dict, unk: int) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated token ids (tokens not in ``vocab`` become ``unk``) and the lengths."""
    lengths = np.fromiter(map(len, seqs), dtype=np.int64, count=len(seqs))
    total = int(lengths.sum())
    # map(dict.get, tokens, repeat(unk)) runs in C: ~50 ns a token.
    tok = np.fromiter(map(vocab.get, chain.from_iterable(seqs), repeat(unk)), dtype=np.int32, count=total)
    return tok, lengths


def _positions(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


def _build(tok: np.ndarray, rem: np.ndarray, n_orders: int, base: int) -> tuple[_Tables, list]:
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


def _run_lengths(sorted_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
    starts, counts = _run_lengths(sorted_key)
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
    seq, rem = _positions(lengths)
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


def _clipped_sums(seq: np.ndarray, ids: np.ndarray, mx: np.ndarray, k: int, n_seqs: int) -> np.ndarray:
    """Per hypothesis: sum over its distinct n-grams of ``min(count, mx)``.

    ``mx`` is aligned with the positions: the max reference count of the n-gram starting there.
    """
    if ids.size == 0:
        return np.zeros(n_seqs, dtype=np.int64)
    key = seq * k + ids
    order = np.argsort(key, kind="stable")
    starts, counts = _run_lengths(key[order])
    first = order[starts]
    clipped = np.minimum(counts, mx[first])
    # float64 sums of integers are exact far beyond any corpus size (2**53).
    return np.bincount(seq[first], weights=clipped, minlength=n_seqs).astype(np.int64)


class _HypCounts:
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
            self._tok, _ = _encode(references, self._vocab, len(self._vocab))  # id len(vocab): unseen
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
        seq, rem = _positions(self._lengths)
        self._tables, levels = _build(self._tok, rem, self.max_n, len(self._vocab) + 1)
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
                yield _encode(self.references[i:j], vocab, unk)[0], self._lengths[i:j]
            i, t0 = j, t1

    def counts(self, hypotheses: Sequence[Sequence[Token]], n_orders: int) -> _HypCounts:
        """Clipped counts of every hypothesis at orders 1..n_orders against this set."""
        if self._vocab is not None:
            vocab = self._vocab
        else:  # tokens the hypotheses lack cannot match: they all become the one unseen id
            vocab = {t: i for i, t in enumerate(dict.fromkeys(chain.from_iterable(hypotheses)))}
        base = len(vocab) + 1  # id len(vocab) = "unseen"
        tok, lengths = _encode(hypotheses, vocab, base - 1)
        seq, rem = _positions(lengths)
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
                num[:, n - 1] = _clipped_sums(seq[pos], ids, mx, self._tables.size(n), n_h)
        else:
            # Tables of the hypotheses' n-grams; stream the references through them.
            tables, levels = _build(tok, rem, n_orders, base)
            maxc = [np.zeros(tables.size(n), dtype=np.int64) for n in range(1, n_orders + 1)]
            for ref_tok, ref_lengths in self._chunks(vocab, base - 1):
                _stream_max_counts(ref_tok, ref_lengths, tables, maxc, volume=self.n_tokens)
            for n, (pos, ids) in enumerate(levels, 1):
                mx = maxc[n - 1][ids]
                mx_levels.append(mx)
                num[:, n - 1] = _clipped_sums(seq[pos], ids, mx, tables.size(n), n_h)
        ref_len = _closest_lengths(self._sorted_lengths, lengths)
        return _HypCounts(hypotheses, num, ref_len, levels, mx_levels, starts, seq)

    def _smoothing_args(self, smoothing_function: Any, counts: _HypCounts, h: int) -> tuple[Any, Any]:
        """(references, hypothesis) to hand to the smoothing function for hypothesis ``h``."""
        if _is_nltk_method(smoothing_function, "method5", "method7"):
            return _synthetic_reference(counts.clipped_ngrams(h, 5)), counts.hyps[h]
        return self.references, counts.hyps[h]

    def corpus_bleu(self, hypotheses: Sequence[Sequence[Token]], weights: Weights = (0.25, 0.25, 0.25, 0.25),
                    smoothing_function: Smoothing | None = None, auto_reweigh: bool = False) -> float | list[float]:
        """nltk's ``corpus_bleu([refs] * len(hypotheses), hypotheses, ...)``, exactly."""
        weights_list, single = _weights_list(weights)
        n_orders = max(len(w) for w in weights_list)
        need = max(n_orders, 5) if _is_nltk_method(smoothing_function, "method5", "method7") else n_orders
        counts = self.counts(hypotheses, need)
        hyp_lens = [len(h) for h in hypotheses]
        dens = [sum(max(1, n_tok - n + 1) for n_tok in hyp_lens) for n in range(1, n_orders + 1)]
        nums = counts.num[:, :n_orders].sum(axis=0).tolist()
        refs, hyp = (self._smoothing_args(smoothing_function, counts, len(hypotheses) - 1)
                     if len(hypotheses) else (None, None))
        return _score(nums, dens, sum(hyp_lens), int(counts.ref_len.sum()), weights_list, single,
                      smoothing_function, auto_reweigh, refs, hyp)

    def sentence_scores(self, hypotheses: Sequence[Sequence[Token]], weights: Weights = (0.25, 0.25, 0.25, 0.25),
                        smoothing_function: Smoothing | None = None,
                        auto_reweigh: bool = False) -> list[float | list[float]]:
        """nltk's ``sentence_bleu(refs, h, ...)`` for every ``h``, counting the references once."""
        weights_list, single = _weights_list(weights)
        n_orders = max(len(w) for w in weights_list)
        need = max(n_orders, 5) if _is_nltk_method(smoothing_function, "method5", "method7") else n_orders
        counts = self.counts(hypotheses, need)
        out = []
        for h, hyp in enumerate(hypotheses):
            n_tok = len(hyp)
            dens = [max(1, n_tok - n + 1) for n in range(1, n_orders + 1)]
            refs, hyp_arg = self._smoothing_args(smoothing_function, counts, h)
            out.append(_score(counts.num[h, :n_orders].tolist(), dens, n_tok, int(counts.ref_len[h]),
                              weights_list, single, smoothing_function, auto_reweigh, refs, hyp_arg))
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


class _SmallGroup:
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

    def counts(self, hypotheses: Sequence[Sequence[Token]], n_orders: int) -> _HypCounts:
        num = np.array([[sum(self.clipped_ngrams(h, n).values()) for n in range(1, n_orders + 1)]
                        for h in hypotheses], dtype=np.int64).reshape(len(hypotheses), n_orders)
        ref_len = np.array([closest_ref_length(self.references, len(h)) for h in hypotheses], dtype=np.int64)
        return _HypCounts(hypotheses, num, ref_len, None, None, None, None,
                          clipped_fn=lambda h, n: self.clipped_ngrams(hypotheses[h], n))


# --------------------------------------------------------------------------------------------
# The nltk-compatible functions.

def corpus_bleu(
    list_of_references: Sequence[Sequence[Sequence[Token]]],
    hypotheses: Sequence[Sequence[Token]],
    weights: Weights = (0.25, 0.25, 0.25, 0.25),
    smoothing_function: Smoothing | None = None,
    auto_reweigh: bool = False,
) -> float | list[float]:
    """Corpus BLEU, identical to ``nltk.translate.bleu_score.corpus_bleu`` (nltk 3.10).

    Args:
        list_of_references: for each hypothesis, its list of reference sequences. Pass the same
            list object for every hypothesis (``[refs] * len(hypotheses)``) to have it counted
            once; hypotheses are also grouped by reference-list identity in general.
        hypotheses: token sequences (any hashable tokens).
        weights: one tuple of n-gram weights, or a list of tuples (then a list of scores).
        smoothing_function: ``SmoothingFunction().methodN`` or any callable with its signature.
        auto_reweigh: nltk's uniform re-weighting for corpora shorter than 4 tokens.

    Returns:
        The score (``0`` as an int when no unigram matches, as nltk), or a list of scores.
    """
    if len(list_of_references) != len(hypotheses):
        raise ValueError("The number of hypotheses and their reference(s) should be the same")
    weights_list, single = _weights_list(weights)
    n_orders = max(len(w) for w in weights_list)
    need = max(n_orders, 5) if _is_nltk_method(smoothing_function, "method5", "method7") else n_orders

    # Group hypotheses by the identity of their reference list: each list is counted once.
    # The list below keeps every reference list alive while we group: iterating a numpy array
    # makes a new view per row, and a freed view's id() is reused by the next one, which
    # would merge the references of different hypotheses.
    all_refs = list(list_of_references)
    groups: dict[int, list[int]] = {}
    for i, refs in enumerate(all_refs):
        if len(refs) == 0:
            raise ValueError(f"hypothesis {i} has no reference")
        groups.setdefault(id(refs), []).append(i)

    nums = np.zeros(n_orders, dtype=np.int64)
    ref_total = 0
    last_counts: tuple[_HypCounts, int, Any] | None = None
    for members in groups.values():
        refs = all_refs[members[0]]
        hyps = [hypotheses[i] for i in members]
        work = len(hyps) * sum(map(len, refs))
        counter: BleuReference | _SmallGroup
        counter = (BleuReference(refs, need, precompute=False, store=False) if work >= _NUMPY_MIN_WORK
                   else _SmallGroup(refs))
        counts = counter.counts(hyps, need)
        nums += counts.num[:, :n_orders].sum(axis=0)
        ref_total += int(counts.ref_len.sum())
        if members[-1] == len(hypotheses) - 1:
            last_counts = (counts, len(members) - 1, refs)

    hyp_lens = [len(h) for h in hypotheses]
    dens = [sum(max(1, n_tok - n + 1) for n_tok in hyp_lens) for n in range(1, n_orders + 1)]
    refs_arg = hyp_arg = None
    if last_counts is not None:
        counts, h, refs_arg = last_counts
        hyp_arg = hypotheses[-1]
        if _is_nltk_method(smoothing_function, "method5", "method7"):
            refs_arg = _synthetic_reference(counts.clipped_ngrams(h, 5))
    return _score(nums.tolist(), dens, sum(hyp_lens), ref_total, weights_list, single,
                  smoothing_function, auto_reweigh, refs_arg, hyp_arg)


def sentence_bleu(
    references: Sequence[Sequence[Token]],
    hypothesis: Sequence[Token],
    weights: Weights = (0.25, 0.25, 0.25, 0.25),
    smoothing_function: Smoothing | None = None,
    auto_reweigh: bool = False,
) -> float | list[float]:
    """Sentence BLEU, identical to ``nltk.translate.bleu_score.sentence_bleu`` (nltk 3.10).

    For many hypotheses against one reference set use :meth:`BleuReference.sentence_scores`.
    """
    return corpus_bleu([references], [hypothesis], weights, smoothing_function, auto_reweigh)


# --------------------------------------------------------------------------------------------
# Baselines.

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
    weights_list, single = _weights_list(weights)
    n_orders = max(len(w) for w in weights_list)
    need = max(n_orders, 5) if _is_nltk_method(smoothing_function, "method5", "method7") else n_orders

    vocab = {t: i for i, t in enumerate(dict.fromkeys(chain.from_iterable(hypotheses)))}
    base = len(vocab) + 1
    tok, lengths = _encode(hypotheses, vocab, base - 1)
    seq, rem = _positions(lengths)
    starts = np.cumsum(lengths) - lengths
    tables, levels = _build(tok, rem, need, base)
    num = np.zeros((n_h, need), dtype=np.int64)
    mx_levels = []
    for n, (pos, ids) in enumerate(levels, 1):
        k = tables.size(n)
        s = seq[pos]
        key = s * k + ids
        key.sort()
        first, counts = _run_lengths(key)
        owner, gid = key[first] // k, key[first] % k
        # For every id: best count and its owner, and the second best (0 if one owner only).
        order = np.lexsort((-counts, gid))
        gid_s, cnt_s, own_s = gid[order], counts[order], owner[order]
        g_first, _ = _run_lengths(gid_s)
        top1 = np.zeros(k, dtype=np.int64)
        top1_owner = np.full(k, -1, dtype=np.int64)
        top2 = np.zeros(k, dtype=np.int64)
        top1[gid_s[g_first]] = cnt_s[g_first]
        top1_owner[gid_s[g_first]] = own_s[g_first]
        second = g_first + 1
        has_second = second < gid_s.size
        has_second[has_second] = gid_s[second[has_second]] == gid_s[g_first[has_second]]
        top2[gid_s[g_first[has_second]]] = cnt_s[second[has_second]]
        mx = np.where(top1_owner[ids] == s, top2[ids], top1[ids])
        mx_levels.append(mx)
        num[:, n - 1] = _clipped_sums(s, ids, mx, k, n_h)
    counts_obj = _HypCounts(hypotheses, num, np.zeros(n_h, dtype=np.int64), levels, mx_levels, starts, seq)

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
            ref_len = int(_closest_lengths(others, np.array([n_tok]))[0])
        dens = [max(1, n_tok - n + 1) for n in range(1, n_orders + 1)]
        if _is_nltk_method(smoothing_function, "method5", "method7"):
            refs_arg: Any = _synthetic_reference(counts_obj.clipped_ngrams(h, 5))
        else:
            refs_arg = [x for i, x in enumerate(hypotheses) if i != h]
        scores.append(_score(num[h, :n_orders].tolist(), dens, n_tok, ref_len, weights_list, single,
                             smoothing_function, False, refs_arg, hyp))
    if per_hypothesis:
        return scores
    if single:
        return math.fsum(scores) / n_h
    return [math.fsum(s[j] for s in scores) / n_h for j in range(len(weights_list))]


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
    tok, ref_lengths = _encode(references, index, -1)
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
    _, rem = _positions(ref_lengths)
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


# --------------------------------------------------------------------------------------------
# Reproducibility: weights from a flag, and a signature for every printed score.

_NAMED_WEIGHTS = {"custom": CUSTOM_WEIGHTS, "bleu4": (0.25, 0.25, 0.25, 0.25)}


def parse_weights(spec: str) -> tuple[tuple[float, ...], str | None]:
    """Read a ``--weights`` value: ``custom``, ``bleu4``, ``bleuN``, ``uniform:N`` or a list.

    ``custom`` is (0, 1/12, 1/12, 1/6, 1/6, 1/6, 1/6, 1/12, 1/12) over 1- to 9-grams. A list is
    comma-separated numbers, fractions allowed (``0,1/12,1/12,1/6``). Weights must be
    non-negative with at least one positive; if they do not sum to 1 they are normalised.

    Returns:
        (weights, note): ``note`` says what was normalised, else None.

    Raises:
        UserError: a value that cannot be read (message names ``--weights``).
    """
    from melodylm.errors import UserError

    text = spec.strip().lower()
    if text in _NAMED_WEIGHTS:
        return _NAMED_WEIGHTS[text], None
    n_text = text[len("uniform:"):] if text.startswith("uniform:") else text[4:] if text.startswith("bleu") else None
    if n_text is not None:
        if not n_text.isdigit() or int(n_text) < 1:
            raise UserError(f"--weights {spec!r}: expected a positive order like uniform:4 or bleu4")
        n = int(n_text)
        return (1 / n,) * n, None
    try:
        parts = [_Rational(p.strip()) for p in text.split(",")]
    except (ValueError, ZeroDivisionError):
        raise UserError(f"--weights {spec!r}: expected custom, bleu4, uniform:N or numbers like "
                        f"0,1/12,1/12,1/6") from None
    if any(p < 0 for p in parts):
        raise UserError(f"--weights {spec!r}: weights must not be negative")
    total = sum(parts)
    if total == 0:
        raise UserError(f"--weights {spec!r}: at least one weight must be positive")
    if total == 1:
        return tuple(float(p) for p in parts), None
    normalised = tuple(float(p / total) for p in parts)
    note = f"--weights summed to {float(total):g}; normalised to {_format_weights(normalised)}"
    return normalised, note


def _format_weights(weights: Sequence[float]) -> str:
    """Weights as short fractions where exact (1/12), else repr."""
    out = []
    for w in weights:
        r = _Rational(w).limit_denominator(1000)
        out.append(str(r) if float(r) == float(w) else repr(float(w)))
    return ",".join(out)


def reference_fingerprint(references: Sequence[Sequence[Token]] | BleuReference) -> str:
    """Short content hash of a reference set: same tokens in the same order, same hash."""
    if isinstance(references, BleuReference):
        return references.fingerprint
    return BleuReference(references, max_n=1, precompute=False).fingerprint


def bleu_signature(weights: Sequence[float], smoothing: int | str | Callable | None, unit: str,
                   reference_fingerprint: str, n_refs: int) -> str:
    """A sacrebleu-like line that says how a score was made.

    Example: ``weights:0,1/12,1/12,1/6,1/6,1/6,1/6,1/12,1/12|smooth:0|unit:token|ref:3f9a...|
    nrefs:2000|melodylm:0.1.0``. ``smoothing`` is an nltk method number, a name, a
    ``SmoothingFunction().methodN`` or None (no smoothing, 0).
    """
    from melodylm import __version__

    if smoothing is None:
        smooth = "0"
    elif callable(smoothing):
        name = getattr(smoothing, "__name__", type(smoothing).__name__)
        is_nltk = _is_nltk_method(smoothing, *(f"method{i}" for i in range(8)))
        smooth = name[len("method"):] if is_nltk else name
    else:
        smooth = str(smoothing)
    return (f"weights:{_format_weights(weights)}|smooth:{smooth}|unit:{unit}|"
            f"ref:{reference_fingerprint}|nrefs:{n_refs}|melodylm:{__version__}")
