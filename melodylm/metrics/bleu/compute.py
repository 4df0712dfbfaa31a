"""BLEU from sufficient statistics, with exactly nltk 3.10's arithmetic.

:func:`compute_bleu` is the last step of nltk's ``corpus_bleu``, written as a pure function of
counts (like sacrebleu's ``compute_bleu``): per n-gram order the clipped matches and the
totals, the hypothesis length and the closest reference length. The counting engine
(:mod:`melodylm.metrics.bleu.engine`) and the baselines hand their counts to it, so every
score in melodylm goes through this one function. What it keeps from nltk:

* nltk's ``Fraction`` with unnormalised numerator and denominator, because the smoothing
  methods read ``.numerator`` and ``.denominator`` (method 3 turns ``0/den`` into
  ``1/(2*den)``; a normalised ``0/1`` would give ``1/2``);
* every order up to the longest weight tuple, also where a weight is zero (method0 warns and
  methods 3 to 7 change their result with the number of orders);
* the early ``0`` (an ``int``) when there is no unigram match;
* one tuple of weights gives one score, a list of tuples a list of scores, except that a list
  holding one tuple gives a plain score (nltk tests ``len(weights) == 1``);
* the smoothing function is nltk's own (any callable with nltk's signature works).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Union

from nltk.translate.bleu_score import Fraction as NltkFraction
from nltk.translate.bleu_score import SmoothingFunction

__all__ = ["brevity_penalty", "closest_ref_length", "compute_bleu"]

Token = Hashable
Weights = Union[Sequence[float], Sequence[Sequence[float]]]
Smoothing = Callable[..., list]


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


def weights_list(weights: Weights) -> tuple[list, bool]:
    """nltk's test for "one tuple or a list of tuples": returns (list of tuples, single?).

    ``single`` is nltk's ``len(weights) == 1``: a list holding one tuple gives a plain score
    (``1.0``, or the int ``0``), not a one-element list.
    """
    try:
        weights[0][0]  # type: ignore[index]
    except (TypeError, IndexError):
        return [weights], True
    out = list(weights)  # type: ignore[arg-type]
    return out, len(out) == 1


def is_nltk_method(smoothing_function: Any, *names: str) -> bool:
    """True for a bound method of a plain nltk ``SmoothingFunction`` named in ``names``."""
    owner = getattr(smoothing_function, "__self__", None)
    func = getattr(smoothing_function, "__func__", None)
    # Exact type: a subclass may override a method that method7 calls.
    return type(owner) is SmoothingFunction and any(func is getattr(SmoothingFunction, n) for n in names)


def orders_to_count(smoothing_function: Any, n_orders: int) -> int:
    """How many n-gram orders the counts must cover: nltk's methods 5 and 7 also read 5-grams."""
    return max(n_orders, 5) if is_nltk_method(smoothing_function, "method5", "method7") else n_orders


def compute_bleu(
    matches: Sequence[int],
    totals: Sequence[int],
    hyp_len: int,
    ref_len: int,
    weights: Weights = (0.25, 0.25, 0.25, 0.25),
    smoothing_function: Smoothing | None = None,
    auto_reweigh: bool = False,
    *,
    references: Any = None,
    hypothesis: Any = None,
) -> float | list[float]:
    """BLEU from sufficient statistics, equal to nltk's ``corpus_bleu`` on the same corpus.

    Args:
        matches: per order n = 1, 2, ...: clipped n-gram matches summed over the corpus (for
            each hypothesis and n-gram, ``min(count in the hypothesis, max count in one of
            its references)``). At least as many orders as the longest weight tuple; later
            orders are ignored, as nltk counts no further.
        totals: per order: n-grams of the hypotheses, counted as nltk does,
            ``max(1, len(hypothesis) - n + 1)`` summed over the hypotheses.
        hyp_len: total hypothesis length.
        ref_len: total of the closest reference lengths (:func:`closest_ref_length`).
        weights: one tuple of n-gram weights, or a list of tuples.
        smoothing_function: ``SmoothingFunction().methodN`` or any callable with its signature.
        auto_reweigh: nltk's uniform re-weighting when ``hyp_len < 4`` and the weights are
            the default ``(0.25, 0.25, 0.25, 0.25)``.
        references, hypothesis: what nltk hands the smoothing function: the last hypothesis
            of the corpus and its references. Only nltk's methods 5, 6 and 7 read them.

    Returns:
        The score; the int ``0`` when no unigram matches (before any smoothing, as nltk);
        a list of scores for a list of two or more weight tuples.

    Raises:
        ValueError: fewer orders of counts than weights, or smoothing method 5, 6 or 7
            without ``references`` and ``hypothesis``.
    """
    weights_all, single = weights_list(weights)
    n_orders = max(len(w) for w in weights_all)
    if len(matches) < n_orders or len(totals) < n_orders:
        raise ValueError(f"weights of {n_orders} orders need counts for {n_orders} orders, "
                         f"got {len(matches)} matches and {len(totals)} totals")
    matches, totals = list(matches)[:n_orders], list(totals)[:n_orders]
    bp = brevity_penalty(ref_len, hyp_len)
    p_n = [NltkFraction(int(a), int(b), _normalize=False) for a, b in zip(matches, totals)]
    if not matches or matches[0] == 0:
        return 0 if single else [0] * len(weights_all)
    if not smoothing_function:
        smoothing_function = SmoothingFunction().method0
    elif (references is None or hypothesis is None) and is_nltk_method(
            smoothing_function, "method5", "method6", "method7"):
        raise ValueError("nltk's smoothing methods 5, 6 and 7 read the last hypothesis and its "
                         "references: pass references= and hypothesis=")
    p_n = smoothing_function(p_n, references=references, hypothesis=hypothesis, hyp_len=hyp_len)
    scores = []
    for weight in weights_all:
        if auto_reweigh and hyp_len < 4 and weight == (0.25, 0.25, 0.25, 0.25):
            weight = (1 / hyp_len,) * hyp_len
        log_sum = math.fsum(w * math.log(p) for w, p in zip(weight, p_n) if p > 0)
        scores.append(bp * math.exp(log_sum))
    return scores[0] if single else scores
