"""melodylm.metrics.bleu against nltk 3.10: same numbers (|delta| <= 1e-12), same types.

Tables of (inputs, options) on random token data with a small vocabulary (so that n-grams
match), very short and empty hypotheses, repeated halves (like AABB tunes, so counts > 1
matter), every smoothing method, zero weights, 9-gram weights, lists of weights and
auto_reweigh; each counting strategy of the fast path is forced in turn.
"""

from __future__ import annotations

import glob
import math
import random
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nltk.translate import bleu_score as nltk_bleu

from melodylm.errors import UserError
from melodylm.metrics import bleu
from melodylm.metrics.bleu import engine, nltk_compat

SMOOTH = nltk_bleu.SmoothingFunction()
CUSTOM = (0, 1 / 12, 1 / 12, 1 / 6, 1 / 6, 1 / 6, 1 / 6, 1 / 12, 1 / 12)
WEIGHTS = {
    "bleu4": (0.25, 0.25, 0.25, 0.25),
    "custom9": CUSTOM,
    "zeros": (1, 0, 0, 0, 0, 0),
    "trigram-only": (0, 0, 1),
    "list": [(0.5, 0.5), (0.25, 0.25, 0.25, 0.25), CUSTOM],
}
# Each forces one counting strategy:
# (chunk tokens, direct-table budget, dense-count cells, numpy threshold, precompute cap).
KNOBS = {
    "default": (1 << 19, 1 << 24, 1 << 21, 50_000, 20_000_000),
    "tiny-chunks-direct": (16, 1 << 24, 1 << 21, 0, 0),
    "tiny-chunks-sorted": (16, 0, 0, 0, 0),
    "precomputed-bsearch": (64, 50, 50, 0, 10**9),
}


@pytest.fixture(params=list(KNOBS))
def knobs(request, monkeypatch):
    chunk, direct, dense, numpy_min, precompute = KNOBS[request.param]
    monkeypatch.setattr(engine, "_CHUNK_TOKENS", chunk)
    monkeypatch.setattr(engine, "_DIRECT_MAX", direct)
    monkeypatch.setattr(engine, "_DENSE_CELLS", dense)
    monkeypatch.setattr(nltk_compat, "_NUMPY_MIN_WORK", numpy_min)
    monkeypatch.setattr(engine, "_PRECOMPUTE_MAX", precompute)
    return request.param


def _seq(rng: random.Random, n: int, vocab: int = 4) -> list[int]:
    s = [rng.randrange(vocab) for _ in range(n)]
    if n >= 8 and rng.random() < 0.5:
        s = s[: n // 2] * 2  # a repeated half: n-grams occur several times in one sequence
    return s


def _outcome(fn):
    """The value, or the exception type (nltk raises for e.g. method6 on short input)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - we compare exception types with nltk's
            return type(exc)


def _assert_same(expected, got) -> None:
    if isinstance(expected, type) or isinstance(got, type):
        assert expected is got
        return
    assert type(got) is type(expected)  # nltk gives int 0 without matches, lists for lists
    if isinstance(expected, list):
        assert len(got) == len(expected)
        for e, g in zip(expected, got):
            _assert_same(e, g)
    else:
        assert abs(got - expected) <= 1e-12


@pytest.mark.parametrize("method", range(8))
@pytest.mark.parametrize("weights", list(WEIGHTS))
def test_corpus_bleu_matches_nltk(method, weights, knobs):
    rng = random.Random(f"{method}-{weights}-{knobs}")
    sf = getattr(SMOOTH, f"method{method}")
    w = WEIGHTS[weights]
    for trial in range(2):
        refs = [_seq(rng, rng.randint(0, 40)) for _ in range(rng.randint(1, 10))]
        hyps = [_seq(rng, rng.choice([0, 1, 2, 3, 5, 9, 20, 40])) for _ in range(rng.randint(1, 6))]
        shared = [refs] * len(hyps)
        mixed = [rng.choice([refs, [_seq(rng, rng.randint(1, 25))]]) for _ in hyps]
        for lor in (shared, mixed):
            for ar in (False, True):
                _assert_same(_outcome(lambda: nltk_bleu.corpus_bleu(lor, hyps, w, sf, ar)),
                             _outcome(lambda: bleu.corpus_bleu(lor, hyps, w, sf, ar)))


@pytest.mark.parametrize("method", range(8))
def test_sentence_bleu_and_reference_object_match_nltk(method, knobs):
    rng = random.Random(f"s{method}-{knobs}")
    sf = getattr(SMOOTH, f"method{method}")
    for trial in range(3):
        refs = [_seq(rng, rng.randint(1, 40)) for _ in range(rng.randint(1, 8))]
        hyps = [_seq(rng, rng.choice([0, 1, 2, 4, 7, 15, 30])) for _ in range(5)]
        ref_obj = bleu.BleuReference(refs, max_n=4)
        for w in (WEIGHTS["bleu4"], CUSTOM, WEIGHTS["list"]):
            expected = [_outcome(lambda: nltk_bleu.sentence_bleu(refs, h, w, sf)) for h in hyps]
            for h, e in zip(hyps, expected):
                _assert_same(e, _outcome(lambda: bleu.sentence_bleu(refs, h, w, sf)))
                _assert_same(e, _outcome(lambda: ref_obj.sentence_bleu(h, w, sf)))
            if not any(isinstance(e, type) for e in expected):
                _assert_same(expected, ref_obj.sentence_scores(hyps, w, sf))
            _assert_same(_outcome(lambda: nltk_bleu.corpus_bleu([refs] * len(hyps), hyps, w, sf)),
                         _outcome(lambda: ref_obj.corpus_bleu(hyps, w, sf)))


def test_custom_smoothing_parameters_and_callables():
    rng = random.Random(7)
    refs = [_seq(rng, 30) for _ in range(6)]
    hyps = [_seq(rng, n) for n in (3, 12, 30)]
    custom = nltk_bleu.SmoothingFunction(epsilon=0.01, alpha=3, k=2)

    def floor(p_n, references, hypothesis, hyp_len):  # any callable with nltk's signature
        return [p if p.numerator else 1e-3 for p in p_n]

    for sf in (custom.method1, custom.method4, custom.method6, custom.method7, floor):
        _assert_same(_outcome(lambda: nltk_bleu.corpus_bleu([refs] * 3, hyps, CUSTOM, sf)),
                     _outcome(lambda: bleu.corpus_bleu([refs] * 3, hyps, CUSTOM, sf)))


def test_nltk_doc_examples_with_word_tokens():
    hyp1 = "It is a guide to action which ensures that the military always obeys the commands of the party".split()
    ref1a = "It is a guide to action that ensures that the military will forever heed Party commands".split()
    ref1b = "It is the guiding principle which guarantees the military forces always being under the command of the Party".split()
    ref1c = "It is the practical guide for the army always to heed the directions of the party".split()
    hyp2 = "he read the book because he was interested in world history".split()
    ref2a = "he was interested in world history because he read the book".split()
    lor, hyps = [[ref1a, ref1b, ref1c], [ref2a]], [hyp1, hyp2]
    w = [(0.5, 0.5), (0.333, 0.333, 0.334), (0.25, 0.25, 0.25, 0.25), (0.2, 0.2, 0.2, 0.2, 0.2)]
    _assert_same(nltk_bleu.corpus_bleu(lor, hyps, w), bleu.corpus_bleu(lor, hyps, w))
    assert int(bleu.corpus_bleu(lor, hyps) * 1e4) == 5920  # nltk's doctest: 0.5920...
    assert int(bleu.sentence_bleu([ref1a, ref1b, ref1c], hyp1) * 1e4) == 5045  # 0.5045...


def test_zero_matches_empty_input_and_errors():
    # No unigram match: the int 0, or a list of int 0.
    assert bleu.corpus_bleu([[[1, 2, 3]]], [[4, 5]]) == 0
    assert type(bleu.corpus_bleu([[[1, 2, 3]]], [[4, 5]])) is int
    assert bleu.corpus_bleu([[[1, 2, 3]]], [[4, 5]], [(1,), (0.5, 0.5)]) == [0, 0]
    # Empty hypotheses only: 0 as well.
    assert bleu.corpus_bleu([[[1, 2]], [[1]]], [[], []]) == nltk_bleu.corpus_bleu([[[1, 2]], [[1]]], [[], []])
    # No hypotheses at all: nltk divides by zero; so do we.
    assert _outcome(lambda: bleu.corpus_bleu([], [])) is _outcome(lambda: nltk_bleu.corpus_bleu([], []))
    with pytest.raises(ValueError):
        bleu.corpus_bleu([[[1]]], [[1], [2]])
    with pytest.raises(ValueError):
        bleu.corpus_bleu([[]], [[1]])


def test_method0_warns_like_nltk():
    with pytest.warns(UserWarning, match="0 counts of 4-gram"):
        bleu.corpus_bleu([[[1, 2, 3, 4, 5]]], [[1, 2, 3, 5, 4]])


@pytest.mark.slow
def test_many_references_fast_path_equals_nltk():
    # Enough work to take the numpy path with the default knobs, several chunks of references.
    rng = random.Random(11)
    refs = [_seq(rng, rng.randint(20, 80), vocab=6) for _ in range(200)]
    hyps = [_seq(rng, rng.randint(0, 80), vocab=6) for _ in range(8)]
    for sf in (None, SMOOTH.method5):
        _assert_same(nltk_bleu.corpus_bleu([refs] * 8, hyps, [CUSTOM, WEIGHTS["bleu4"]], sf),
                     bleu.corpus_bleu([refs] * 8, hyps, [CUSTOM, WEIGHTS["bleu4"]], sf))


@settings(max_examples=80, deadline=None)
@given(
    refs=st.lists(st.lists(st.integers(0, 3), max_size=25), min_size=1, max_size=6),
    hyps=st.lists(st.lists(st.integers(0, 3), max_size=25), min_size=1, max_size=4),
    method=st.integers(0, 7),
    n=st.integers(1, 9),
)
def test_property_shared_references(refs, hyps, method, n):
    sf = getattr(SMOOTH, f"method{method}")
    w = (1 / n,) * n
    _assert_same(_outcome(lambda: nltk_bleu.corpus_bleu([refs] * len(hyps), hyps, w, sf)),
                 _outcome(lambda: bleu.BleuReference(refs, n, precompute=False).corpus_bleu(hyps, w, sf)))


@pytest.mark.parametrize("method", [0, 1, 2, 3, 4, 5, 7])
def test_self_bleu_is_mean_over_leave_one_out(method):
    rng = random.Random(method)
    hyps = [_seq(rng, rng.randint(0, 30)) for _ in range(7)] + [[0, 1, 2, 3]] * 2  # a duplicate pair
    sf = getattr(SMOOTH, f"method{method}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = [nltk_bleu.sentence_bleu(hyps[:i] + hyps[i + 1:], h, CUSTOM, sf) for i, h in enumerate(hyps)]
        got = bleu.self_bleu(hyps, CUSTOM, sf, per_hypothesis=True)
        mean = bleu.self_bleu(hyps, CUSTOM, sf)
    _assert_same(expected, got)
    assert abs(mean - sum(expected) / len(expected)) <= 1e-12
    with pytest.raises(ValueError):
        bleu.self_bleu([[1, 2]])


def _oneills_pitches(limit: int) -> list[list[int]]:
    files = sorted(glob.glob(str(Path(__file__).resolve().parents[1] / "corpora" / "oneills1850" / "*.mid")))
    if len(files) < 40:
        pytest.skip("corpora/oneills1850 not generated yet")
    symusic = pytest.importorskip("symusic")
    seqs = []
    for f in files[:limit]:
        notes = sorted((n.time, n.pitch) for t in symusic.Score(f).tracks for n in t.notes)
        seqs.append([p for _, p in notes])
    return seqs


@pytest.mark.slow
def test_real_tunes_match_nltk():
    tunes = _oneills_pitches(100)
    refs, hyps = tunes[:80], [t[: len(t) // 2] for t in tunes[80:92]]
    for sf in (None, SMOOTH.method7):
        _assert_same(_outcome(lambda: nltk_bleu.corpus_bleu([refs] * len(hyps), hyps, [CUSTOM, WEIGHTS["bleu4"]], sf)),
                     bleu.corpus_bleu([refs] * len(hyps), hyps, [CUSTOM, WEIGHTS["bleu4"]], sf))
    ref_obj = bleu.BleuReference(refs, 9)
    _assert_same([nltk_bleu.sentence_bleu(refs, h, CUSTOM) for h in hyps[:5]],
                 ref_obj.sentence_scores(hyps[:5], CUSTOM))


def test_random_like_is_seeded_and_follows_the_references():
    refs = [["C", "D", "E", "C"], ["E", "F", "G"], ["G", "A", "G", "F", "E", "C"]]
    bigrams = {(a, b) for r in refs for a, b in zip(r, r[1:])}
    first = {r[0] for r in refs}
    out = bleu.random_like(refs, [6, 0, 12, 1], seed=3)
    assert [len(s) for s in out] == [6, 0, 12, 1]
    assert out == bleu.random_like(refs, [6, 0, 12, 1], seed=3)
    assert out != bleu.random_like(refs, [6, 0, 12, 1], seed=4)
    enders = {r[-1] for r in refs} - {a for a, _ in bigrams}  # tokens never followed by anything
    for s in out:
        assert not s or s[0] in first
        for a, b in zip(s, s[1:]):
            assert (a, b) in bigrams or a in enders
    flat = bleu.random_like(refs, [200], seed=0, order=0)[0]
    assert set(flat) <= {t for r in refs for t in r} and len(set(flat)) > 3
    with pytest.raises(ValueError):
        bleu.random_like(refs, [3], order=2)


@pytest.mark.parametrize("spec, expected", [
    ("custom", CUSTOM),
    ("bleu4", (0.25, 0.25, 0.25, 0.25)),
    ("uniform:3", (1 / 3, 1 / 3, 1 / 3)),
    ("0,1/12,1/12,1/6,1/6,1/6,1/6,1/12,1/12", CUSTOM),
    ("0.5, 0.5", (0.5, 0.5)),
])
def test_parse_weights(spec, expected):
    weights, note = bleu.parse_weights(spec)
    assert weights == expected and note is None


def test_parse_weights_normalises_and_rejects():
    weights, note = bleu.parse_weights("1,1,2")
    assert weights == (0.25, 0.25, 0.5) and "normalised" in note
    for bad in ("", "a,b", "1,-1", "0,0", "uniform:0", "1/0"):
        with pytest.raises(UserError, match="--weights"):
            bleu.parse_weights(bad)


def test_signature_and_fingerprint():
    refs = [[1, 2, 3], [4, 5]]
    fp = bleu.reference_fingerprint(refs)
    assert fp == bleu.BleuReference(refs).fingerprint
    assert fp != bleu.reference_fingerprint([[1, 2, 3], [5, 4]])
    sig = bleu.bleu_signature(CUSTOM, SMOOTH.method3, "token", fp, 2)
    assert sig.startswith("weights:0,1/12,1/12,1/6,1/6,1/6,1/6,1/12,1/12|smooth:3|unit:token|")
    assert f"|ref:{fp}|nrefs:2|melodylm:" in sig
    assert "|smooth:0|" in bleu.bleu_signature((0.25,) * 4, None, "note", fp, 2)


def test_package_exports_are_lazy_and_torch_free():
    code = ("import sys, melodylm; assert 'nltk' not in sys.modules; "
            "from melodylm import corpus_bleu, sentence_bleu; "
            "import melodylm.metrics.bleu as b; assert corpus_bleu is b.corpus_bleu; "
            "assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


# --- numpy inputs, as a user of the nltk drop-ins would pass them -----------------------------

def test_3d_numpy_references_score_each_hypothesis_against_its_own():
    np = pytest.importorskip("numpy")
    rng = np.random.default_rng(0)
    hyps = rng.integers(0, 5, (4, 12))
    refs = hyps[:, None, :].copy()  # each hypothesis identical to its single reference
    assert nltk_bleu.corpus_bleu(refs, hyps.tolist()) == 1.0
    _assert_same(nltk_bleu.corpus_bleu(refs, hyps.tolist()), bleu.corpus_bleu(refs, hyps.tolist()))
    for method in range(8):
        sf = getattr(SMOOTH, f"method{method}")
        other = rng.integers(0, 4, (6, 3, 15))
        h = rng.integers(0, 4, (6, 15)).tolist()
        _assert_same(_outcome(lambda: nltk_bleu.corpus_bleu(other, h, CUSTOM, sf)),
                     _outcome(lambda: bleu.corpus_bleu(other, h, CUSTOM, sf)))


@pytest.mark.parametrize("method", range(8))
def test_2d_numpy_hypotheses_score_like_nltk(method, knobs):
    np = pytest.importorskip("numpy")
    rng = np.random.default_rng(method)
    sf = getattr(SMOOTH, f"method{method}")
    refs = rng.integers(0, 4, (5, 20))
    hyps = rng.integers(0, 4, (3, 12))
    for lor in ([refs] * 3, np.stack([refs] * 3)):
        for w in (WEIGHTS["bleu4"], WEIGHTS["list"]):
            _assert_same(_outcome(lambda: nltk_bleu.corpus_bleu(lor, hyps, w, sf)),
                         _outcome(lambda: bleu.corpus_bleu(lor, hyps, w, sf)))
    ref_obj = bleu.BleuReference(refs, max_n=4)
    _assert_same(_outcome(lambda: nltk_bleu.corpus_bleu([refs] * 3, hyps, CUSTOM, sf)),
                 _outcome(lambda: ref_obj.corpus_bleu(hyps, CUSTOM, sf)))
    _assert_same(_outcome(lambda: nltk_bleu.sentence_bleu(refs, hyps[0], CUSTOM, sf)),
                 _outcome(lambda: bleu.sentence_bleu(refs, hyps[0], CUSTOM, sf)))


def test_self_bleu_of_a_2d_numpy_array_equals_nltk_leave_one_out():
    np = pytest.importorskip("numpy")
    hyps = np.random.default_rng(5).integers(0, 4, (6, 14))
    rows = hyps.tolist()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = [nltk_bleu.sentence_bleu(rows[:i] + rows[i + 1:], h, CUSTOM) for i, h in enumerate(rows)]
        _assert_same(expected, bleu.self_bleu(hyps, CUSTOM, per_hypothesis=True))


@pytest.mark.parametrize("weights", [[(0.25,) * 4], [CUSTOM], ((0.5, 0.5),), [(0.5, 0.5), (1,)]])
def test_weight_lists_return_what_nltk_returns(weights):
    refs = [[1, 2, 3, 4, 1, 2]]
    for hyp in ([1, 2, 3, 4], [5, 6], [1, 2, 5, 6, 3, 4]):
        expected = _outcome(lambda: nltk_bleu.sentence_bleu(refs, hyp, weights))
        _assert_same(expected, _outcome(lambda: bleu.sentence_bleu(refs, hyp, weights)))
        _assert_same(expected, _outcome(lambda: bleu.BleuReference(refs).sentence_bleu(hyp, weights)))
        _assert_same(_outcome(lambda: nltk_bleu.corpus_bleu([refs, refs], [hyp, hyp], weights)),
                     _outcome(lambda: bleu.corpus_bleu([refs, refs], [hyp, hyp], weights)))
    assert bleu.sentence_bleu([[1, 2, 3, 4]], [1, 2, 3, 4], [(0.25,) * 4]) == 1.0
    assert type(bleu.sentence_bleu(refs, [5, 6], [(0.25,) * 4])) is int


# --- compute_bleu: the score from sufficient statistics ---------------------------------------

def _nltk_statistics(list_of_references, hypotheses, n_orders):
    """(matches, totals, hyp_len, ref_len) as nltk's own corpus_bleu sums them."""
    matches, totals = [0] * n_orders, [0] * n_orders
    for refs, hyp in zip(list_of_references, hypotheses):
        for n in range(1, n_orders + 1):
            p = nltk_bleu.modified_precision(refs, hyp, n)
            matches[n - 1] += p.numerator
            totals[n - 1] += p.denominator
    hyp_len = sum(len(h) for h in hypotheses)
    ref_len = sum(nltk_bleu.closest_ref_length(r, len(h)) for r, h in zip(list_of_references, hypotheses))
    return matches, totals, hyp_len, ref_len


_DOC_HYP = "the cat sat on the mat with the hat".split()
_DOC_REFS = ["the cat sat on a mat with a hat".split(), "a cat was on the mat".split()]
COMPUTE_CASES = [
    # (name, list of references, hypotheses, weights, smoothing method, auto_reweigh)
    ("exact", [[[1, 2, 3, 4, 5]]], [[1, 2, 3, 4, 5]], (0.25,) * 4, 0, False),
    ("no-unigram", [[[1, 2, 3]]], [[4, 5, 6]], (0.25,) * 4, 0, False),
    ("no-unigram-list", [[[1, 2, 3]]], [[4, 5, 6]], [(1,), (0.5, 0.5)], 3, False),
    ("short-brevity", [[[1, 2, 3, 4, 5, 6, 7, 8]]], [[1, 2, 3, 4]], (0.5, 0.5), 0, False),
    ("longer-hyp", [[[1, 2, 3]]], [[1, 2, 3, 1, 2, 3]], (0.5, 0.5), 0, False),
    ("words", [_DOC_REFS], [_DOC_HYP], (0.25,) * 4, 0, False),
    ("words-method1", [_DOC_REFS], [_DOC_HYP], (0.25,) * 4, 1, False),
    ("words-method2", [_DOC_REFS], [_DOC_HYP], (0.25,) * 4, 2, False),
    ("zero-4gram-method3", [[[1, 2, 3, 4, 5]]], [[1, 2, 3, 5, 4]], (0.25,) * 4, 3, False),
    ("zero-4gram-method4", [[[1, 2, 3, 4, 5]]], [[1, 2, 3, 5, 4]], (0.25,) * 4, 4, False),
    ("method5", [_DOC_REFS], [_DOC_HYP], (0.25,) * 4, 5, False),
    ("method6", [_DOC_REFS], [_DOC_HYP], (0.25,) * 4, 6, False),
    ("method7", [_DOC_REFS], [_DOC_HYP], CUSTOM, 7, False),
    ("custom9-corpus", [[[0, 1, 2, 3, 0, 1, 2, 3, 4]], [[3, 2, 1, 0] * 3]],
     [[0, 1, 2, 3, 0, 1, 2], [3, 2, 1, 0, 3, 2, 1, 0, 3]], CUSTOM, 0, False),
    ("weights-list", [[[0, 1, 2, 3, 0, 1]], [[3, 2, 1]]], [[0, 1, 2, 3], [3, 2, 1, 1]],
     [(0.5, 0.5), (0.25,) * 4, CUSTOM], 1, False),
    ("one-tuple-in-a-list", [[[1, 2, 3, 4]]], [[1, 2, 3, 4]], [(0.25,) * 4], 0, False),
    ("auto-reweigh", [[[1, 2, 3]]], [[1, 2, 3]], (0.25,) * 4, 0, True),
    ("zero-weights", [[[1, 2, 3, 4, 1, 2]]], [[1, 2, 4, 3]], (1, 0, 0, 0, 0, 0), 0, False),
]


@pytest.mark.parametrize("name, lor, hyps, weights, method, auto_reweigh", COMPUTE_CASES,
                         ids=[c[0] for c in COMPUTE_CASES])
def test_compute_bleu_matches_nltk_on_a_table(name, lor, hyps, weights, method, auto_reweigh):
    sf = getattr(SMOOTH, f"method{method}")
    n_orders = max(len(w) for w in (weights if isinstance(weights, list) else [weights]))
    matches, totals, hyp_len, ref_len = _nltk_statistics(lor, hyps, n_orders)
    expected = _outcome(lambda: nltk_bleu.corpus_bleu(lor, hyps, weights, sf, auto_reweigh))
    got = _outcome(lambda: bleu.compute_bleu(matches, totals, hyp_len, ref_len, weights, sf, auto_reweigh,
                                             references=lor[-1], hypothesis=hyps[-1]))
    _assert_same(expected, got)
    # Counts of more orders than the weights use are ignored, as nltk counts no further.
    _assert_same(got, _outcome(lambda: bleu.compute_bleu(matches + [0, 0], totals + [1, 1], hyp_len, ref_len,
                                                         weights, sf, auto_reweigh, references=lor[-1],
                                                         hypothesis=hyps[-1])))


def test_compute_bleu_by_hand_and_its_errors():
    assert bleu.compute_bleu([4, 3, 2, 1], [4, 3, 2, 1], 4, 4) == 1.0
    # Precisions 1/2 at both orders, hypothesis half the reference length: BP = e^(1 - 2).
    assert abs(bleu.compute_bleu([2, 1], [4, 2], 4, 8, (0.5, 0.5)) - 0.5 * math.exp(-1)) <= 1e-15
    assert bleu.compute_bleu([0, 0], [3, 2], 3, 3, (0.5, 0.5)) == 0
    assert type(bleu.compute_bleu([0, 0], [3, 2], 3, 3, (0.5, 0.5))) is int
    assert bleu.compute_bleu([3, 2], [3, 2], 3, 3, [(1,), (0.5, 0.5)]) == [1.0, 1.0]
    with pytest.raises(ValueError, match="orders"):
        bleu.compute_bleu([1, 1], [1, 1], 2, 2, (0.25,) * 4)
    with pytest.raises(ValueError, match="references="):
        bleu.compute_bleu([2, 1], [3, 2], 3, 3, (0.5, 0.5), SMOOTH.method5)
    from melodylm.metrics import compute_bleu

    assert compute_bleu is bleu.compute_bleu
