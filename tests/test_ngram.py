"""KneserNey against nltk.lm.KneserNeyInterpolated: parity, unseen tokens, normalization."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nltk.lm import KneserNeyInterpolated
from nltk.lm.preprocessing import pad_both_ends, padded_everygram_pipeline

from melodylm.ngram import BOS, EOS, KneserNey

CORPUS = Path(__file__).resolve().parents[1] / "corpora" / "oneills1850"
TOL = 1e-12


def nltk_model(train: list[list[int]], order: int, discount: float = 0.1) -> KneserNeyInterpolated:
    """nltk's model on the same tunes; nltk only takes strings, so ids become str(id)."""
    ngrams, vocab = padded_everygram_pipeline(order, [[str(t) for t in s] for s in train])
    ref = KneserNeyInterpolated(order, discount=discount)
    ref.fit(ngrams, vocab)
    return ref


def nltk_score(ref: KneserNeyInterpolated, word, context) -> float:
    return ref.score(str(word), tuple(str(c) for c in context))


def random_tunes(rng: np.random.Generator, n_tunes: int, n_symbols: int, max_len: int) -> list[list[int]]:
    return [rng.integers(0, n_symbols, rng.integers(0, max_len + 1)).tolist() for _ in range(n_tunes)]


def distinct_bigrams(train: list[list[int]], order: int) -> int:
    """N1+(. .): the number of distinct bigrams of the padded tunes."""
    grams = set()
    for s in train:
        padded = list(pad_both_ends(s, n=order))
        grams.update(zip(padded, padded[1:]))
    return len(grams)


@pytest.mark.slow
@pytest.mark.parametrize("order", [2, 3, 4, 5])
@pytest.mark.parametrize("discount", [0.1, 0.75])
def test_score_matches_nltk_on_random_queries(order: int, discount: float) -> None:
    rng = np.random.default_rng(order)
    train = random_tunes(rng, n_tunes=25, n_symbols=6, max_len=10)
    seen = sorted({t for s in train for t in s})
    lm = KneserNey(order=order, discount=discount, vocab_size=9).fit(train)
    ref = nltk_model(train, order, discount)
    # Contexts mix seen ids, ids never seen (6..8: nltk's <UNK>), <s> and </s>, and are of
    # every length from empty to longer than order - 1 (nltk keeps the last order - 1).
    symbols = [BOS, EOS, *range(9)]
    checked = 0
    for _ in range(1500):
        context = [symbols[i] for i in rng.integers(0, len(symbols), rng.integers(0, order + 1))]
        for word in [EOS, BOS, *seen]:
            expected = nltk_score(ref, word, context)
            assert abs(lm.score(word, context) - expected) <= TOL, (word, context)
            checked += expected > 0
    assert checked > 1000  # the comparison is not just zeros against zeros


@pytest.mark.parametrize("order", [2, 3, 5])
def test_unseen_contexts_back_off_like_nltk(order: int) -> None:
    train = [[0, 1, 2, 3], [0, 2, 1, 3], [1, 1, 2]]
    lm = KneserNey(order=order, vocab_size=10).fit(train)
    ref = nltk_model(train, order)
    for context in [[3, 3, 3, 3], [9, 9, 9, 1], [EOS, 0], [1, 9], [3, 0, 2, 1]]:
        for word in [0, 1, 2, 3, EOS]:
            assert abs(lm.score(word, context) - nltk_score(ref, word, context)) <= TOL


@pytest.mark.parametrize("order", [2, 3, 4, 5])
def test_logprobs_are_nltk_scores_of_the_padded_tune(order: int) -> None:
    rng = np.random.default_rng(10 + order)
    train = random_tunes(rng, n_tunes=40, n_symbols=5, max_len=12)
    lm = KneserNey(order=order).fit(train)
    ref = nltk_model(train, order)
    for tune in random_tunes(rng, n_tunes=10, n_symbols=5, max_len=12):
        padded = [BOS] * (order - 1) + tune + [EOS]
        expected = [
            math.log(nltk_score(ref, padded[t], padded[t - order + 1 : t])) for t in range(order - 1, len(padded))
        ]
        got = lm.logprobs(tune)
        assert got.shape == (len(tune) + 1,)
        np.testing.assert_allclose(np.exp(got), np.exp(expected), rtol=0, atol=TOL)


def read_pitches(path: Path) -> list[int]:
    symusic = pytest.importorskip("symusic")
    score = symusic.Score(str(path))
    notes = sorted((n.time, n.pitch) for track in score.tracks for n in track.notes)
    return [pitch for _, pitch in notes]


@pytest.mark.skipif(not any(CORPUS.glob("*.mid")), reason="corpora/oneills1850 not generated")
@pytest.mark.parametrize("order", [2, 3, 4, 5])
def test_logprobs_match_nltk_on_real_pitch_sequences(order: int) -> None:
    files = sorted(CORPUS.glob("*.mid"))[:36]
    tunes = [read_pitches(f) for f in files]
    train, test = tunes[:30], tunes[30:]
    lm = KneserNey(order=order, vocab_size=128).fit(train)
    ref = nltk_model(train, order)
    n_compared = 0
    for tune in test:
        got = lm.logprobs(tune)
        assert np.isfinite(got).all()  # also where nltk says 0 for a pitch unseen in training
        padded = [BOS] * (order - 1) + tune + [EOS]
        for i, t in enumerate(range(order - 1, len(padded))):
            word, context = padded[t], padded[t - order + 1 : t]
            if word != EOS and str(word) not in ref.vocab:
                assert nltk_score(ref, word, context) == 0.0
                continue
            assert abs(math.exp(got[i]) - nltk_score(ref, word, context)) <= TOL
            n_compared += 1
    assert n_compared > 200


@settings(max_examples=30, deadline=None)
@given(
    train=st.lists(st.lists(st.integers(0, 4), max_size=8), min_size=1, max_size=8),
    order=st.integers(2, 5),
    query=st.lists(st.integers(0, 5), max_size=6),
)
def test_parity_on_arbitrary_small_corpora(train: list[list[int]], order: int, query: list[int]) -> None:
    lm = KneserNey(order=order, vocab_size=6).fit(train)
    ref = nltk_model(train, order)
    padded = [BOS] * (order - 1) + query + [EOS]
    got = lm.logprobs(query)
    for i, t in enumerate(range(order - 1, len(padded))):
        expected = nltk_score(ref, padded[t], padded[t - order + 1 : t])
        if expected > 0:
            assert abs(math.exp(got[i]) - expected) <= TOL
        else:  # only tokens never seen in training get nltk's 0; ours stay finite
            assert padded[t] not in {x for s in train for x in s} and np.isfinite(got[i])


def test_unseen_tokens_share_one_continuation_type_uniformly() -> None:
    train = [[0, 1, 2, 1, 0], [2, 2, 1]]
    order, vocab_size = 3, 7  # ids 3..6 never occur
    lm = KneserNey(order=order, vocab_size=vocab_size).fit(train)
    ref = nltk_model(train, order)
    n_bigrams = distinct_bigrams(train, order)
    # The lowest order gives the 4 unseen ids 1/N1+(. .) together, nltk's share for <s>.
    assert lm.score(5) == pytest.approx(1 / n_bigrams / 4, rel=1e-15)
    assert lm.score(5) == pytest.approx(ref.score(BOS) / 4, rel=1e-15)
    assert ref.score("5") == 0.0
    logp = lm.logprobs([0, 6, 3, 1])
    assert np.isfinite(logp).all()
    assert logp[1] < logp[0] and logp[2] < logp[3]
    assert lm.score(4, [0, 1]) == pytest.approx(lm.score(3, [0, 1]), rel=1e-15)


@pytest.mark.parametrize("order", [3, 4, 5])
def test_outcomes_sum_to_one_after_real_contexts(order: int) -> None:
    rng = np.random.default_rng(20 + order)
    train = random_tunes(rng, n_tunes=30, n_symbols=6, max_len=12)
    lm = KneserNey(order=order, vocab_size=9).fit(train)  # ids 6..8 unseen
    for context in [[0], [1, 2], [BOS, BOS, 3], [5, 4, 3, 2], [8, 8, 8, 8], [0, 7, 1]]:
        p = lm.probs(context)
        assert p.shape == (10,) and (p > 0).all()
        assert abs(p.sum() - 1) <= TOL, context


def test_order_two_overshoots_by_at_most_the_unseen_share() -> None:
    rng = np.random.default_rng(7)
    train = random_tunes(rng, n_tunes=30, n_symbols=6, max_len=12)
    lm = KneserNey(order=2, vocab_size=9).fit(train)
    bound = 1 / distinct_bigrams(train, 2)  # nltk gives <s> nothing to hand over at order 2
    for context in [[0], [3], [8], [BOS]]:
        excess = lm.probs(context).sum() - 1
        assert 0 < excess <= bound + TOL
    # With every id seen there is nothing to add and the sum is 1.
    assert abs(KneserNey(order=2, vocab_size=6).fit(train).probs([3]).sum() - 1) <= TOL


@pytest.mark.parametrize("order", [3, 4, 5])
def test_start_of_tune_keeps_nltk_small_overshoot(order: int) -> None:
    rng = np.random.default_rng(30 + order)
    discount = 0.1
    train = random_tunes(rng, n_tunes=30, n_symbols=6, max_len=12)
    ref = nltk_model(train, order, discount)
    start = (BOS,) * (order - 1)
    nltk_sum = math.fsum(ref.score(w, start) for w in ref.vocab)
    assert nltk_sum > 1  # nltk's own distribution, not ours, exceeds 1 here
    excess = KneserNey(order=order, discount=discount).fit(train).probs(start).sum() - 1
    assert 0 < excess <= discount**2 / len(train)


def test_logprobs_many_equals_one_by_one_and_handles_empty_tunes() -> None:
    rng = np.random.default_rng(3)
    train = random_tunes(rng, n_tunes=20, n_symbols=8, max_len=15)
    lm = KneserNey(order=4, vocab_size=10).fit(train)
    tunes = [[], [9], *random_tunes(rng, n_tunes=5, n_symbols=10, max_len=15)]
    batch = lm.logprobs_many(tunes)
    assert [len(b) for b in batch] == [len(t) + 1 for t in tunes]
    for tune, lp in zip(tunes, batch):
        np.testing.assert_array_equal(lp, lm.logprobs(tune))
    assert lm.logprobs_many([]) == []


def test_round_trip_through_npz(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    train = random_tunes(rng, n_tunes=20, n_symbols=8, max_len=15)
    lm = KneserNey(order=5, discount=0.3, vocab_size=12).fit(train)
    np.savez(tmp_path / "kn.npz", **lm.to_dict())
    with np.load(tmp_path / "kn.npz", allow_pickle=False) as data:
        back = KneserNey.from_dict(dict(data))
    assert (back.order, back.discount, back.vocab_size) == (5, 0.3, 12)
    assert back.signature == lm.signature
    tune = rng.integers(0, 12, 40).tolist()
    np.testing.assert_array_equal(back.logprobs(tune), lm.logprobs(tune))
    with pytest.raises(ValueError, match="not a KneserNey"):
        KneserNey.from_dict({**lm.to_dict(), "format": 99})


def test_refit_forgets_the_previous_corpus() -> None:
    lm = KneserNey(order=3)
    lm.fit([[0, 1, 2, 3, 4, 5, 6, 7]])
    assert lm.vocab_size == 8
    lm.fit([[0, 1, 0, 1]])
    assert lm.vocab_size == 2
    assert lm.probs([0, 1]).shape == (3,)


def test_bad_arguments_have_clear_errors() -> None:
    with pytest.raises(ValueError, match="order"):
        KneserNey(order=1)
    with pytest.raises(ValueError, match="discount"):
        KneserNey(discount=1.5)
    with pytest.raises(ValueError, match="vocab_size"):
        KneserNey(vocab_size=0)
    with pytest.raises(RuntimeError, match="not fitted"):
        KneserNey().logprobs([1, 2])
    with pytest.raises(ValueError, match="zero sequences"):
        KneserNey().fit([])
    with pytest.raises(ValueError, match=">= 0"):
        KneserNey().fit([[1, -2]])
    with pytest.raises(ValueError, match="vocab_size=4"):
        KneserNey(vocab_size=4).fit([[1, 4]])
    lm = KneserNey(order=3, vocab_size=4).fit([[0, 1, 2]])
    with pytest.raises(ValueError, match="vocab_size=4"):
        lm.logprobs([1, 7])
    with pytest.raises(ValueError, match="unknown symbol"):
        lm.score("<UNK>")
    with pytest.raises(TypeError, match="integers"):
        lm.score(1.5)
