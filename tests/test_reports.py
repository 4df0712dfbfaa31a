"""melodylm.reports: loading sets, BLEU beside baselines, copies and music statistics.

Sets are built in code: the shared tiny dataset (``tiny_dataset``), its tunes written back to
MIDI, transposed copies, synthetic scales and random notes, each with a sidecar written here.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from nltk.translate.bleu_score import SmoothingFunction
from nltk.translate.bleu_score import corpus_bleu as nltk_corpus_bleu
from nltk.translate.bleu_score import sentence_bleu as nltk_sentence_bleu

from conftest import Part, scale, write_midi
from melodylm.dataset import Dataset
from melodylm.errors import UserError
from melodylm.metrics.bleu import CUSTOM_WEIGHTS, corpus_bleu, matched_lengths, random_like
from melodylm.metrics.music import METRICS
from melodylm.reports import (MelodyItem, bleu_report, copy_report, load_pair, load_set, metrics_report,
                              newest_samples, sequences)


@pytest.fixture(scope="module")
def ds(tiny_dataset) -> Dataset:
    return Dataset(tiny_dataset)


@pytest.fixture(scope="module")
def reference(tiny_dataset):
    """The tiny dataset's training split, loaded once for the module."""
    return load_set(f"{tiny_dataset}:train")


@pytest.fixture(scope="module")
def test_tunes_dir(ds, tmp_path_factory) -> Path:
    """The test split written back to MIDI (a 'samples' folder of real held-out tunes)."""
    out = tmp_path_factory.mktemp("test_tunes")
    for i in range(len(ds.split("test"))):
        ds.detokenize("test", i, out / f"t{i:02d}.mid")
    return out


def _transposed(src: Path, dst: Path, semitones: int) -> Path:
    import symusic

    score = symusic.Score(str(src))
    for track in score.tracks:
        for note in track.notes:
            note.pitch += semitones
    score.dump_midi(str(dst))
    return dst


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nltk warns for zero n-gram counts
        return fn(*args, **kwargs)


# --- loading ---------------------------------------------------------------------------------

def test_load_dataset_split_matches_stored_tokens_and_decoded_notes(ds, tiny_dataset, reference):
    from melodylm.midi import note_array

    sp = ds.split("train")
    assert len(reference) == len(sp.originals()) > 0
    assert reference.held_out == f"{tiny_dataset}:test"
    assert reference.tokenizer is not None
    assert len({it.name for it in reference}) == len(reference)
    for item, base in zip(reference, ds.base_tunes("train")):
        np.testing.assert_array_equal(item.tokens, base)
        score = ds.tokenizer.decode_score(base)  # the library's own decoder
        ticks = note_array(score.tracks[0])
        tpq = score.ticks_per_quarter
        np.testing.assert_allclose(item.notes, np.c_[ticks[:, :2] / tpq, ticks[:, 2]])
        ts = score.time_signatures[0]
        assert item.beats_per_bar == ts.numerator * 4 / ts.denominator


def test_load_midi_folder_retokenizes_like_the_dataset(ds, tiny_dataset, tmp_path):
    for i in range(3):
        ds.detokenize("train", i, tmp_path / "sub" / f"s{i}.mid")
    (tmp_path / "notes.txt").write_text("not midi")
    items = load_set(tmp_path, tokenizer=ds.tokenizer)
    assert [it.name for it in items] == [f"sub/s{i}" for i in range(3)]
    for it, base in zip(items, ds.base_tunes("train")[:3]):
        np.testing.assert_array_equal(it.tokens, base)
    assert all(it.tokens is None for it in load_set(tmp_path))  # no tokenizer, no tokens


def test_sidecar_continuation_cut_and_bar_shift(ds, tmp_path):
    notes = scale(n=16, low=60, step=1.0, dur=1.0)  # 4/4, one note a beat, beats 0..15
    write_midi(tmp_path / "s" / "x.mid", [Part(notes)])
    (tmp_path / "s" / "x.json").write_text(json.dumps({"continuation_start_beat": 5.5}))
    cut = load_set(tmp_path / "s", tokenizer=ds.tokenizer)[0]
    # Notes from beat 6 on are kept; the bar holding beat 6 starts at beat 4: shifted by 4.
    np.testing.assert_allclose(cut.notes[:, 0], np.arange(6, 16) - 4)
    np.testing.assert_allclose(cut.notes[:, 2], [p for _, _, p in notes[6:]])
    assert cut.beats_per_bar == 4
    # Its tokens are those of a file holding just the shifted continuation.
    write_midi(tmp_path / "direct" / "y.mid", [Part([(t - 4, d, p) for t, d, p in notes[6:]])])
    direct = load_set(tmp_path / "direct", tokenizer=ds.tokenizer)[0]
    np.testing.assert_array_equal(cut.tokens, direct.tokens)
    assert ds.tokenizer.count_notes(cut.tokens) == 10

    whole = load_set(tmp_path / "s", tokenizer=ds.tokenizer, continuation_only=False)[0]
    assert len(whole.notes) == 16
    # A file written with the continuation alone is not cut again.
    (tmp_path / "s" / "x.json").write_text(json.dumps({"continuation_start_beat": 5.5,
                                                       "options": {"keep_prompt": False}}))
    assert len(load_set(tmp_path / "s")[0].notes) == 16


def test_sidecar_past_the_end_and_bad_files_are_skipped_with_a_reason(tmp_path):
    write_midi(tmp_path / "a.mid", [Part(scale(n=8))])
    (tmp_path / "a.json").write_text(json.dumps({"continuation_start_beat": 100}))
    write_midi(tmp_path / "b.mid", [Part(scale(n=8))])
    (tmp_path / "c.mid").write_bytes(b"garbage")
    s = load_set(tmp_path)
    assert [it.name for it in s] == ["b"]
    reasons = dict(s.skipped)
    assert "continuation_start_beat" in reasons["a"] and "MIDI" in reasons["c"]


@pytest.mark.parametrize("spec", ["/no/such/folder", "/no/such/data:train"])
def test_bad_specs_are_user_errors(spec):
    with pytest.raises(UserError):
        load_set(spec)


def test_empty_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no MIDI files"):
        load_set(tmp_path)


def test_newest_samples(tmp_path):
    with pytest.raises(UserError, match="no samples"):
        newest_samples(tmp_path / "samples")
    old = write_midi(tmp_path / "samples" / "run-1" / "sample_000.mid", [Part(scale())])
    new = write_midi(tmp_path / "samples" / "run-2" / "sample_000.mid", [Part(scale())])
    os.utime(old, (2e9, 2e9))
    os.utime(new, (1e9, 1e9))
    assert newest_samples(tmp_path / "samples") == old.parent


# --- BLEU ----------------------------------------------------------------------------------------

def test_bleu_equals_corpus_bleu_on_the_same_sequences(ds, tiny_dataset, reference, test_tunes_dir):
    r = bleu_report(test_tunes_dir, reference, weights="custom", per_sample=True)
    smp, _ = load_pair(test_tunes_dir, reference)
    hyps = [it.tokens.tolist() for it in smp]
    refs = [b.tolist() for b in ds.base_tunes("train")]
    expected = _quiet(corpus_bleu, [refs] * len(hyps), hyps, CUSTOM_WEIGHTS)
    assert r["bleu"] == pytest.approx(expected, abs=1e-12)
    assert r["n_samples"] == len(hyps) and r["n_references"] == len(refs)
    assert [row["name"] for row in r["per_sample"]] == [it.name for it in smp]
    assert r["signature"].startswith("weights:0,1/12,1/12,1/6,1/6,1/6,1/6,1/12,1/12|smooth:0|unit:token|")
    assert r["signature"].endswith("|seed:0") and f"nrefs:{len(refs)}" in r["signature"]
    assert r["note"] is None


def test_bleu_baselines_are_what_they_claim(ds, tiny_dataset, reference, test_tunes_dir):
    r = bleu_report(test_tunes_dir, reference, weights="bleu4", seed=3)
    smp, _ = load_pair(test_tunes_dir, reference)
    hyps = sequences(smp, "token")
    lengths = [len(h) for h in hyps]
    refs = sequences(reference, "token")
    w = (0.25,) * 4
    held = sequences(load_set(f"{tiny_dataset}:test"), "token")
    human = matched_lengths(held, lengths, seed=3)
    assert r["human_source"] == f"{tiny_dataset}:test"
    assert r["baselines"]["human"] == pytest.approx(_quiet(corpus_bleu, [refs] * len(human), human, w), abs=1e-12)
    rand = random_like(refs, lengths, seed=3)
    assert r["baselines"]["random"] == pytest.approx(_quiet(corpus_bleu, [refs] * len(rand), rand, w), abs=1e-12)
    assert bleu_report(test_tunes_dir, reference, weights="bleu4", human="none")["baselines"]["human"] is None


def test_matched_lengths_same_count_and_lengths():
    pool = [list(range(n)) for n in (5, 30, 12, 40, 8)]
    lengths = [10, 3, 25, 7, 7, 35, 2]  # more than the pool: it is reused
    out = matched_lengths(pool, lengths, seed=1)
    assert [len(x) for x in out] == lengths
    assert all(x == list(range(len(x))) for x in out)  # prefixes of pool sequences
    # A length longer than every sequence gets the longest one whole.
    assert matched_lengths(pool, [99], seed=0) == [pool[3]]


def test_pitch_unit_against_nltk_with_smoothing():
    rng = np.random.default_rng(0)

    def item(name, pitches):
        n = len(pitches)
        return MelodyItem(name, np.c_[np.arange(n), np.ones(n), pitches].astype(float), 4.0, None)

    refs = [item(f"r{i}", 60 + rng.integers(0, 8, 30)) for i in range(6)]
    hyps = [item(f"h{i}", 60 + rng.integers(0, 8, 20 + i)) for i in range(3)]
    r = bleu_report(hyps, refs, weights="bleu4", smoothing=1, unit="pitch")
    ref_seqs = [list(map(int, x.notes[:, 2])) for x in refs]
    hyp_seqs = [list(map(int, x.notes[:, 2])) for x in hyps]
    sf = SmoothingFunction().method1
    assert r["bleu"] == pytest.approx(nltk_corpus_bleu([ref_seqs] * 3, hyp_seqs, smoothing_function=sf), abs=1e-12)
    # Self-BLEU: each sample against the other two, never itself (itself would give 1).
    mine = [nltk_sentence_bleu(hyp_seqs[:i] + hyp_seqs[i + 1:], hyp_seqs[i], smoothing_function=sf) for i in range(3)]
    assert r["self_bleu"] == pytest.approx(math.fsum(mine) / 3, abs=1e-12)
    assert r["self_bleu"] < 1
    assert r["baselines"]["human"] is None  # a list of melodies has no held-out split


def test_interval_unit_is_transposition_invariant(ds, reference, test_tunes_dir, tmp_path):
    for f in sorted(test_tunes_dir.glob("*.mid")):
        _transposed(f, tmp_path / f.name, 2)
    a = bleu_report(test_tunes_dir, reference, unit="interval")
    b = bleu_report(tmp_path, reference, unit="interval")
    assert a["bleu"] == pytest.approx(b["bleu"], abs=1e-12)
    assert bleu_report(test_tunes_dir, reference, unit="pitch")["bleu"] != \
        pytest.approx(bleu_report(tmp_path, reference, unit="pitch")["bleu"], abs=1e-9)


@pytest.mark.parametrize("kwargs, match", [
    ({"weights": "0,0"}, "--weights"), ({"weights": "x"}, "--weights"), ({"weights": "1,-1"}, "--weights"),
    ({"smoothing": 8}, "--smoothing"), ({"smoothing": -1}, "--smoothing"), ({"unit": "bar"}, "--unit"),
])
def test_bleu_option_errors(kwargs, match, reference):
    with pytest.raises(UserError, match=match):
        bleu_report([], reference, **kwargs)


def test_normalised_weights_carry_a_note(reference, test_tunes_dir):
    r = bleu_report(test_tunes_dir, reference, weights="0,1,1,2", unit="pitch")
    assert r["weights"] == [0, 0.25, 0.25, 0.5] and "normalised" in r["note"]


# --- copies ---------------------------------------------------------------------------------------

def test_copy_of_a_training_tune_is_found_whole(ds, reference, tmp_path):
    k = 2
    ds.detokenize("train", k, tmp_path / "copied.mid")
    rng = np.random.default_rng(5)
    write_midi(tmp_path / "random.mid", [Part([(0.5 * i, 0.5, int(p)) for i, p in enumerate(rng.integers(40, 90, 64))])])
    c = copy_report(tmp_path, reference, min_notes=16)
    rows = {row["name"]: row for row in c["per_sample"]}
    copied = rows["copied"]
    assert copied["notes"] == len(reference[k].notes) == copied["sample_notes"]
    assert copied["reference"] == reference[k].name
    assert copied["sample_note"] == copied["reference_note"] == 0
    assert rows["random"]["notes"] < 16
    assert c["n_copied"] == 1 and c["copied_share"] == 0.5 and c["longest"]["name"] == "copied"


def test_interval_copies_see_through_transposition(ds, reference, tmp_path):
    ds.detokenize("train", 1, tmp_path / "orig.mid")
    _transposed(tmp_path / "orig.mid", tmp_path / "up3.mid", 3)
    (tmp_path / "orig.mid").unlink()
    n = len(reference[1].notes)
    by_interval = copy_report(tmp_path, reference, unit="interval")["per_sample"][0]
    assert by_interval["notes"] == n and by_interval["reference"] == reference[1].name
    assert copy_report(tmp_path, reference, unit="note")["per_sample"][0]["notes"] < n


def test_copy_option_errors(reference):
    with pytest.raises(UserError, match="--unit"):
        copy_report([], reference, unit="pitch")
    with pytest.raises(UserError, match="--min-notes"):
        copy_report([], reference, min_notes=0)


# --- music statistics ------------------------------------------------------------------------------

def test_metrics_report(reference, test_tunes_dir, tmp_path):
    m = metrics_report(test_tunes_dir, reference, plot=tmp_path / "d.png")
    assert set(m["samples"]) == set(m["reference"]) == set(m["comparison"]) == set(METRICS)
    assert m["n_samples"] == len(list(test_tunes_dir.glob("*.mid"))) and m["n_references"] == len(reference)
    for name, c in m["comparison"].items():
        assert c["oa"] is None or 0 <= c["oa"] <= 1 + 1e-9, name
        assert c["kl"] is None or c["kl"] >= 0, name
    assert all(name in m["table"] for name in METRICS) and "OA" in m["table"]
    assert (tmp_path / "d.png").stat().st_size > 0
    json.dumps(m, allow_nan=False)  # no NaN reaches the report
    alone = metrics_report(test_tunes_dir)
    assert alone["reference"] is None and alone["comparison"] is None and "OA" not in alone["table"]
    with pytest.raises(UserError, match="--plot"):
        metrics_report(test_tunes_dir, plot=tmp_path / "x.png")


def test_a_set_against_itself_overlaps_fully(reference):
    m = metrics_report(reference, reference)
    assert all(c["oa"] is None or c["oa"] == pytest.approx(1.0) for c in m["comparison"].values())
