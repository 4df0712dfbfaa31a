"""Controls: derived from tunes, turned into tokens and ids, dropped in training, checked on request."""

from __future__ import annotations

import json

import numpy as np
import pytest
import symusic

from conftest import Part, scale, write_midi
from melodylm.controls import (CONTROL_DROPOUT, SENTINELS, ExtraVocab, control_tokens, crop_keeping_head,
                               derive_controls, drop_controls, known_values, parse_meter, parse_style_args,
                               resolve_request, style_for, transpose_controls)
from melodylm.errors import DataError, UserError
from melodylm.tokenizer import MelodyTokenizer

A_MINOR = (0, 2, 3, 5, 7, 8, 11, 12)


def test_key_from_the_files_signature(corpus_files):
    score = symusic.Score(str(corpus_files[0]))
    c = derive_controls(score, "oneills1850")
    ks = score.key_signatures[0]
    assert (ks.key, ks.tonality) == (-2, 1)
    assert c == {"key": "G minor", "key_source": "file", "meter": "2/4", "meter_source": "file",
                 "style": "oneills1850"}


def test_key_estimated_without_a_signature(tmp_path):
    notes = scale(n=16, low=57, steps=A_MINOR, dur=1.0)
    notes[0] = (0.0, 3.0, 57)  # a long tonic to start
    score = symusic.Score(str(write_midi(tmp_path / "a.mid", [Part(notes)], time_signature=(3, 4))))
    assert not len(score.key_signatures)
    c = derive_controls(score, "x")
    assert (c["key"], c["key_source"], c["meter"], c["meter_source"]) == ("A minor", "estimated", "3/4", "file")


def test_notes_overrule_a_signature_they_contradict(tmp_path):
    # E minor notes (E, G, B weighted) under a one-sharp signature whose mode says major: the file
    # claims G major, the notes say E minor; a signature that matches the notes is kept.
    e_minor = [(i * 1.0, 2.0 if p in (64, 71) else 1.0, p) for i, p in enumerate([64, 66, 67, 71, 64, 69, 71, 64, 62, 64])]
    for notes, sig, want in [(e_minor, (1, 0), ("E minor", "estimated", "G major")),
                             (e_minor, (1, 1), ("E minor", "file", None))]:
        path = write_midi(tmp_path / f"{sig}.mid", [Part(notes)])
        score = symusic.Score(str(path))
        score.key_signatures.append(symusic.KeySignature(0, *sig))
        c = derive_controls(score, "x")
        assert (c["key"], c["key_source"], c.get("file_key")) == want


def test_meter_defaults_to_four_four_and_no_notes_no_key():
    c = derive_controls(symusic.Score(480), "x")
    assert (c["key"], c["key_source"], c["meter"], c["meter_source"]) == (None, None, "4/4", "default")


def test_transposed_copies_move_the_key():
    c = {"key": "D minor", "key_source": "file", "meter": "6/8", "style": "s"}
    assert transpose_controls(c, 2)["key"] == "E minor"
    assert transpose_controls(c, -4)["key"] == "Bb minor"
    assert transpose_controls(c, 4)["key"] == "F# minor"
    assert transpose_controls(c, 12) == c
    assert transpose_controls({"key": None}, 3) == {"key": None}


def test_style_from_folder_and_mapping(tmp_path):
    a = tmp_path / "my tunes" / "reels"
    a.mkdir(parents=True)
    f = a / "t.mid"
    f.write_bytes(b"")
    assert style_for(str(f), [str(tmp_path / "my tunes")]) == "my_tunes"
    assert style_for(str(f), [str(f)]) == "reels"
    styles = parse_style_args([f"reel={a}", f"mine={tmp_path / 'my tunes'}"])
    assert style_for(str(f), [str(tmp_path)], styles) == "reel"  # the deepest folder wins
    for bad in ["reel", "=x", "reel=", "two words=x", "Ünï=x"]:
        with pytest.raises(UserError, match="--style"):
            parse_style_args([bad])


def test_control_tokens_fixed_order_and_omission():
    c = {"style": "oneills1850", "meter": "6/8", "key": "Gb major", "key_source": "file"}
    assert control_tokens(c) == ["Key_F#_major", "Meter_6/8", "Style_oneills1850"]
    assert control_tokens({**c, "meter": None}) == ["Key_F#_major", "Style_oneills1850"]
    assert control_tokens({}) == []


def test_drop_controls_seeded_and_at_its_rate():
    c = {"key": "D minor", "key_source": "file", "meter": "6/8", "style": "s"}
    a = [drop_controls(c, np.random.default_rng(7)) for _ in range(3)]
    assert a[0] == a[1] == a[2]
    rng = np.random.default_rng(0)
    draws = [drop_controls(c, rng) for _ in range(4000)]
    for kind in ("key", "meter", "style"):
        share = np.mean([d[kind] is None for d in draws])
        assert abs(share - CONTROL_DROPOUT) < 0.03
    assert all(d["key_source"] == "file" for d in draws)  # bookkeeping fields are never dropped
    subsets = {tuple(d[k] is None for k in ("key", "meter", "style")) for d in draws}
    assert len(subsets) == 8
    assert drop_controls(c, rng, 0.0) == c
    assert control_tokens(drop_controls(c, rng, 1.0)) == []


def _vocab(offset=300):
    rows = [{"key": "D minor", "meter": "6/8", "style": "b"}, {"key": "G major", "meter": "2/4", "style": "a"},
            {"key": "Gb major", "meter": "12/8", "style": "a"}, {"key": None, "meter": "3/4", "style": "a"}]
    return ExtraVocab.build(offset, known_values(rows))


def test_extra_ids_follow_the_vocabulary_in_a_fixed_order():
    v = _vocab()
    assert v.tokens == (*SENTINELS, "Key_F#_major", "Key_G_major", "Key_D_minor", "Meter_2/4", "Meter_3/4",
                        "Meter_6/8", "Meter_12/8", "Style_a", "Style_b")
    assert [v.id(s) for s in SENTINELS] == [300, 301, 302]
    assert v.size == 300 + len(v.tokens) and v.name(303) == "Key_F#_major"
    assert list(v.prefix_ids({"key": "D minor", "meter": "6/8", "style": "b"})) == [305, 308, 311]
    assert list(v.prefix_ids({"key": "D minor", "style": None})) == [305]
    assert v.values("key") == ["F# major", "G major", "D minor"] and v.values("style") == ["a", "b"]
    assert ExtraVocab.from_dict(json.loads(json.dumps(v.to_dict()))) == v
    assert list(v.strip([1, 300, 2, 311])) == [1, 2] and list(v.is_extra([299, 300])) == [False, True]
    with pytest.raises(KeyError):
        v.id("Key_B_major")


def test_fill_order_is_saved_only_when_suffix_first():
    psm = _vocab()
    assert "fim_order" not in psm.to_dict()  # tokenizers from before the choice keep their fingerprint
    spm = ExtraVocab(psm.offset, psm.tokens, "spm")
    assert spm.to_dict()["fim_order"] == "spm" and ExtraVocab.from_dict(spm.to_dict()) == spm
    assert ExtraVocab.from_dict(psm.to_dict()).fim_order == "psm"
    with pytest.raises(DataError):
        ExtraVocab(psm.offset, psm.tokens, "mps")
    eight = ExtraVocab(psm.offset, psm.tokens, "spm", 8)
    assert eight.to_dict()["fim_suffix_bars"] == 8 and ExtraVocab.from_dict(eight.to_dict()).fim_suffix_bars == 8
    assert "fim_suffix_bars" not in spm.to_dict() and ExtraVocab.from_dict(psm.to_dict()).fim_suffix_bars == 4
    with pytest.raises(DataError):
        ExtraVocab(psm.offset, psm.tokens, "spm", 0)


@pytest.mark.parametrize("subword", ["none", "bpe"])
def test_extras_sit_after_base_or_subword_ids(subword, tiny_dataset):
    from melodylm.dataset import Dataset

    ds = Dataset(tiny_dataset)
    tok = ds.tokenizer.without_extra()  # the fixture's own extras are built in tokenize
    if subword == "bpe":
        tok = MelodyTokenizer(tok.settings)
        tok.train_subwords(ds.base_tunes("train")[:30], "bpe", tok.base_vocab_size + 40)
    v = ExtraVocab.build(tok.vocab_size, {"key": ["D major"], "meter": ["6/8"], "style": ["x"]})
    base = ds.base_tunes("train")[0]
    ids = np.concatenate([[tok.bos_id], v.prefix_ids({"key": "D major", "meter": "6/8", "style": "x"}),
                          tok.encode_ids(base), [tok.eos_id]])
    assert ids.max() < v.size and v.is_extra(ids).sum() == 3
    assert np.array_equal(tok.decode_ids(v.strip(ids)[1:-1]), base)
    # an old tokenizer dict (no "extra") is a model without controls
    assert ExtraVocab.from_tokenizer_dict(tok.to_dict()) is None
    assert ExtraVocab.from_tokenizer_dict({**tok.to_dict(), "extra": v.to_dict()}) == v


def test_resolve_request():
    v = _vocab()
    assert resolve_request({"key": "d min", "meter": " 6 / 8", "style": None}, v) == {"key": "D minor",
                                                                                       "meter": "6/8"}
    assert resolve_request({"key": "Gb", "style": "a"}, v) == {"key": "F# major", "style": "a"}
    assert resolve_request({}, None) == {} and resolve_request({"key": None}, None) == {}
    with pytest.raises(UserError, match=r"--key 'B major' is not known to this model; known: F# major, G major, "
                                        r"D minor"):
        resolve_request({"key": "B major"}, v)
    with pytest.raises(UserError, match="known: 2/4, 3/4, 6/8, 12/8"):
        resolve_request({"meter": "9/8"}, v)
    with pytest.raises(UserError, match="known: a, b"):
        resolve_request({"style": "c"}, v)
    with pytest.raises(UserError, match="this model has no controls: drop --key --meter"):
        resolve_request({"key": "D minor", "meter": "6/8"}, None)
    with pytest.raises(UserError, match="this model has no controls"):
        resolve_request({"style": "a"}, ExtraVocab(10, SENTINELS))
    with pytest.raises(UserError, match="Bb major"):
        resolve_request({"key": "H"}, v)


@pytest.mark.parametrize("text, ok", [("6/8", "6/8"), (" 3 / 4 ", "3/4"), ("12/8", "12/8"), ("6/7", None),
                                      ("0/4", None), ("jig", None), ("3/4/4", None)])
def test_parse_meter(text, ok):
    if ok:
        assert parse_meter(text) == ok
    else:
        with pytest.raises(UserError, match="--meter"):
            parse_meter(text)


def test_crop_keeping_head():
    seq = np.arange(100)
    assert list(crop_keeping_head(seq, 3, 50, 6)) == [0, 1, 2, 50, 51, 52]
    assert list(crop_keeping_head(seq, 3, 0, 6)) == [0, 1, 2, 3, 4, 5]
    assert list(crop_keeping_head(seq, 3, 98, 6)) == [0, 1, 2, 98, 99]
    assert list(crop_keeping_head(seq, 0, 10, 2)) == [10, 11]
