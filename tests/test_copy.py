"""melodylm.metrics.copy against a brute-force longest common run."""

from __future__ import annotations

import random

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from melodylm.metrics import copy as copy_mod
from melodylm.metrics.copy import CopyIndex, Match, longest_match_summary


def _brute(train, sample) -> tuple[int, int]:
    """(longest run, first sample offset reaching it) by trying every pair of starts."""
    best, at = 0, -1
    for so in range(len(sample)):
        for tune in train:
            for to in range(len(tune)):
                n = 0
                while so + n < len(sample) and to + n < len(tune) and sample[so + n] == tune[to + n]:
                    n += 1
                if n > best:
                    best, at = n, so
    return best, at


def _check(train, samples) -> None:
    index = CopyIndex(train)
    for sample, m in zip(samples, index.longest_matches(samples)):
        length, at = _brute(train, sample)
        assert m.length == length
        if length == 0:
            assert m == Match(0, -1, -1, -1)
        else:
            assert m.sample_offset == at  # the first of equally long runs
            assert list(train[m.tune][m.train_offset:m.train_offset + length]) == \
                list(sample[m.sample_offset:m.sample_offset + length])
        assert index.longest_match(sample) == m


@settings(max_examples=150, deadline=None)
@given(
    train=st.lists(st.lists(st.integers(0, 2), max_size=14), max_size=5),
    samples=st.lists(st.lists(st.integers(0, 3), max_size=14), min_size=1, max_size=4),
)
def test_matches_brute_force(train, samples):
    _check(train, samples)


def test_repetitive_tunes_and_tuple_items():
    rng = random.Random(3)
    phrases = [[(rng.choice([60, 62, 64]), rng.choice([1, 2])) for _ in range(6)] for _ in range(3)]
    # AABB-like tunes built from few phrases: long repeated runs stress the suffix sorting.
    train = [sum((rng.choice(phrases) for _ in range(4)), []) for _ in range(12)]
    samples = [sum((rng.choice(phrases) for _ in range(3)), [])[rng.randrange(5):] for _ in range(6)]
    samples.append([(61, 1), (60, 1), (62, 2)])  # items never seen in training, then seen ones
    _check(train, samples)


def test_no_match_across_tune_boundaries():
    index = CopyIndex([[1, 2, 3], [4, 5, 6]])
    assert index.longest_match([2, 3, 4, 5]).length == 2
    assert index.longest_match([]) == Match(0, -1, -1, -1)
    assert CopyIndex([]).longest_match([1, 2]) == Match(0, -1, -1, -1)


def test_suffix_array_matches_sorting():
    rng = np.random.default_rng(0)
    for _ in range(100):
        text = rng.integers(0, 3, int(rng.integers(1, 50)))
        text[-1] = 9
        expected = sorted(range(text.size), key=lambda i: text[i:].tolist())
        assert copy_mod._suffix_array(text).tolist() == expected


def test_longest_match_summary():
    train = [list(range(40)), [7, 7, 7]]
    samples = [list(range(5, 25)), [100, 7, 7, 101], list(range(30, 40)) + [0, 1]]
    report = longest_match_summary(samples, CopyIndex(train), threshold=16)
    assert report["lengths"] == [20, 2, 10]
    assert report["copied_share"] == 1 / 3
    assert report["max_length"] == 20 and report["median_length"] == 10
    assert report["matches"][0] == {"length": 20, "tune": 0, "train_offset": 5, "sample_offset": 0}
    assert report["matches"][1]["tune"] == 1
