"""nltk's ``corpus_bleu`` and ``sentence_bleu``, same numbers and types, counting each reference list once.

Drop-in replacements for ``nltk.translate.bleu_score`` (nltk 3.10): hypotheses that share one
reference list object (``[refs] * len(hyps)``) are counted together by the numpy engine
(:class:`~melodylm.metrics.bleu.engine.BleuReference`); small groups (one short reference per
hypothesis, as in machine translation) are counted with Counters. Lists, tuples and numpy
arrays are all accepted, as nltk accepts them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from melodylm.metrics.bleu.compute import (Smoothing, Token, Weights, compute_bleu, is_nltk_method,
                                           orders_to_count, weights_list)
from melodylm.metrics.bleu.engine import BleuReference, HypCounts, SmallGroup, synthetic_reference

__all__ = ["corpus_bleu", "sentence_bleu"]

# Below this many (reference tokens x hypotheses) a group is counted in plain Python: numpy's
# per-call overhead would cost more than it saves (typical machine translation: one short
# reference per hypothesis).
_NUMPY_MIN_WORK = 50_000


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
    n_orders = max(len(w) for w in weights_list(weights)[0])
    need = orders_to_count(smoothing_function, n_orders)

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

    matches = np.zeros(n_orders, dtype=np.int64)
    ref_total = 0
    last_counts: tuple[HypCounts, int, Any] | None = None
    for members in groups.values():
        refs = all_refs[members[0]]
        hyps = [hypotheses[i] for i in members]
        work = len(hyps) * sum(map(len, refs))
        counter: BleuReference | SmallGroup
        counter = (BleuReference(refs, need, precompute=False, store=False) if work >= _NUMPY_MIN_WORK
                   else SmallGroup(refs))
        counts = counter.counts(hyps, need)
        matches += counts.num[:, :n_orders].sum(axis=0)
        ref_total += int(counts.ref_len.sum())
        if members[-1] == len(hypotheses) - 1:
            last_counts = (counts, len(members) - 1, refs)

    hyp_lens = [len(h) for h in hypotheses]
    totals = [sum(max(1, n_tok - n + 1) for n_tok in hyp_lens) for n in range(1, n_orders + 1)]
    refs_arg = hyp_arg = None
    if last_counts is not None:
        counts, h, refs_arg = last_counts
        hyp_arg = hypotheses[-1]
        if is_nltk_method(smoothing_function, "method5", "method7"):
            refs_arg = synthetic_reference(counts.clipped_ngrams(h, 5))
    return compute_bleu(matches.tolist(), totals, sum(hyp_lens), ref_total, weights, smoothing_function,
                        auto_reweigh, references=refs_arg, hypothesis=hyp_arg)


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

