"""`evaluate` beyond a dataset split: bits per note split by token kind, MIDI files as data, and
the middle bars scored given both sides and given the left side only (--infill)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import Part, scale, write_midi
from melodylm.checkpoint import save_checkpoint
from melodylm.cli import main
from melodylm.dataset import Dataset, TokenizeConfig, tokenize
from melodylm.errors import UserError
from melodylm.evaluate import evaluate, token_kind_shares, token_logprobs
from melodylm.infill import count_bars, fim_parts
from melodylm.models import ModelConfig, build_model, size_preset
from melodylm.tokenizer import MelodyTokenizer

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def tunes(tmp_path_factory) -> Path:
    """Three synthetic tunes of 4 to 6 bars, in 4/4 and 3/4."""
    root = tmp_path_factory.mktemp("tunes") / "midi"
    write_midi(root / "a.mid", [Part(scale(0, 16, low=60))])
    write_midi(root / "b.mid", [Part(scale(0, 12, low=67, step=1.0, dur=1.0))], time_signature=(3, 4))
    write_midi(root / "c.mid", [Part(scale(0, 24, low=62, step=1.0, dur=0.5))])
    return root


def _dataset(tunes: Path, out: Path, **kw) -> Path:
    tokenize(TokenizeConfig(inputs=[str(tunes)], out_dir=str(out), split=(1.0, 0.0, 0.0), workers=1, **kw),
             progress=False)
    return out


def _checkpoint(data: Path, path: Path, tok: MelodyTokenizer | None = None, seed: int = 0) -> Path:
    """A random tiny GPT over the dataset's tokenizer (or ``tok``), naming the dataset."""
    tok = tok or Dataset(data).tokenizer
    torch.manual_seed(seed)
    cfg = ModelConfig(**size_preset("gpt", "tiny"), vocab_size=tok.vocab_size, pad_id=tok.pad_id, dropout=0.0)
    model = build_model(cfg)
    return save_checkpoint(path, {"model_config": asdict(cfg), "model": model.state_dict(),
                                  "tokenizer": tok.to_dict(), "train_config": {"data_dir": str(data)}})


@pytest.fixture(scope="module")
def plain(tunes, tmp_path_factory) -> tuple[Path, Path]:
    data = _dataset(tunes, tmp_path_factory.mktemp("plain") / "data", controls="none", fim_rate=0.0)
    return data, _checkpoint(data, data.parent / "gpt.pt")


@pytest.fixture(scope="module")
def steer(tunes, tmp_path_factory) -> tuple[Path, Path]:
    data = _dataset(tunes, tmp_path_factory.mktemp("steer") / "data")
    return data, _checkpoint(data, data.parent / "gpt.pt")


# ------------------------------------------------------------------ bits split by token kind

def test_kind_shares_sum_to_one_and_split_pieces_evenly(corpus_files) -> None:
    tok = MelodyTokenizer()
    shares = token_kind_shares(tok)
    assert np.allclose(shares.sum(axis=1), 1.0)
    assert shares[tok.base_vocab.index("Pitch_60"), 0] == 1.0
    assert shares[tok.base_vocab.index("Position_0"), 1] == 1.0
    assert shares[tok.base_vocab.index("Duration_1.0.24"), 2] == 1.0
    assert shares[tok.base_vocab.index("Bar_None"), 3] == 1.0 and shares[tok.eos_id, 3] == 1.0
    from melodylm.midi import load_melody

    seqs = [tok.encode_score(load_melody(f).score) for f in corpus_files[:6]]
    tok.train_subwords(seqs, "bpe", tok.vocab_size + 40)
    shares = token_kind_shares(tok)
    assert np.allclose(shares.sum(axis=1), 1.0)
    for i in range(tok.vocab_size):
        base = tok.decode_ids([i])
        if len(base) > 1:
            kinds = [tok.token_str(int(b)).split("_")[0] for b in base]
            assert shares[i, 0] == pytest.approx(sum(k == "Pitch" for k in kinds) / len(base))


def test_pitch_rhythm_and_other_bits_add_up_to_the_total(plain) -> None:
    data, ckpt = plain
    r = evaluate(ckpt, data, split="train", device="cpu", baseline_order=0, progress=False)
    parts = r["pitch_bits_per_note"] + r["rhythm_bits_per_note"] + r["other_bits_per_note"]
    assert parts == pytest.approx(r["bits_per_note"], rel=1e-9)
    assert r["rhythm_bits_per_note"] == pytest.approx(r["onset_bits_per_note"] + r["duration_bits_per_note"])
    assert min(r["pitch_bits_per_note"], r["onset_bits_per_note"], r["duration_bits_per_note"],
               r["other_bits_per_note"]) > 0


def test_kind_bits_by_hand_for_a_uniform_model(plain, tmp_path) -> None:
    data, _ = plain
    tok = Dataset(data).tokenizer
    cfg = ModelConfig(**size_preset("gpt", "tiny"), vocab_size=tok.vocab_size, pad_id=tok.pad_id)
    model = build_model(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    ckpt = save_checkpoint(tmp_path / "u.pt", {"model_config": asdict(cfg), "model": model.state_dict(),
                                                "tokenizer": tok.to_dict(), "train_config": {}})
    r = evaluate(ckpt, data, split="train", device="cpu", baseline_order=0, progress=False)
    sp = Dataset(data).split("train")
    names = [tok.token_str(int(i)).split("_")[0] for j in range(len(sp)) for i in sp.tune(j)[1:]]
    per_token = math.log2(tok.vocab_size)
    assert r["pitch_bits_per_note"] == pytest.approx(names.count("Pitch") * per_token / r["notes"])
    rhythm = sum(names.count(k) for k in ("Position", "Duration", "Rest"))
    assert r["rhythm_bits_per_note"] == pytest.approx(rhythm * per_token / r["notes"])
    assert r["duration_bits_per_note"] == pytest.approx(names.count("Duration") * per_token / r["notes"])
    other = sum(names.count(k) for k in ("Bar", "TimeSig", "EOS"))
    assert r["other_bits_per_note"] == pytest.approx(other * per_token / r["notes"])


# ------------------------------------------------------------------ MIDI files as data

def test_midi_files_score_as_the_dataset_made_of_them(plain, tunes) -> None:
    data, ckpt = plain
    on_data = evaluate(ckpt, data, split="train", device="cpu", baseline_order=0, progress=False)
    on_midi = evaluate(ckpt, tunes, device="cpu", baseline_order=0, progress=False)
    for k in ("tunes", "tokens", "notes", "bits_per_note", "pitch_bits_per_note"):
        assert on_midi[k] == pytest.approx(on_data[k], rel=1e-9), k
    one = evaluate(ckpt, [tunes / "a.mid", tunes / "b.mid"], device="cpu", baseline_order=3, progress=False)
    assert one["tunes"] == 2 and one["split"] == "midi" and "baseline" not in one


def test_midi_data_errors_are_one_line(plain, tmp_path, capsys) -> None:
    _, ckpt = plain
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.mid").write_bytes(b"not midi")
    for data, needle in ((tmp_path / "empty", "no MIDI files"), (tmp_path / "nope.mid", "not found"),
                         (tmp_path / "bad.mid", "gave a melody")):
        assert main(["evaluate", str(ckpt), str(data), "--device", "cpu", "--no-progress"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], err


# ------------------------------------------------------------------ --infill

def test_infill_scores_the_same_middle_tokens_both_ways(steer, tunes) -> None:
    data, ckpt = steer
    r = evaluate(ckpt, data, split="train", device="cpu", baseline_order=0, progress=False, infill="2:3")
    f = r["infill"]
    assert f["tunes"] == 3 and f["skipped"] == 0 and f["span"] == "2:3"
    assert f["both_sides_bits_per_note"] > 0 and f["left_only_bits_per_note"] > 0
    # left side only: the middle's tokens come right after the prefix, as in the plain tune
    from melodylm.checkpoint import load_model

    model, tok, _ = load_model(ckpt)
    sp = Dataset(data).split("train")
    nats = notes = 0.0
    for i in sp.originals():
        seq = sp.tune(i)
        h = tok.head_length(seq)
        parts = fim_parts(tok, tok.decode_ids(seq[h:-1]), (2, 3))
        start = h + len(parts.prefix)
        assert np.array_equal(seq[start:start + len(parts.middle)], parts.middle)
        end = start + len(parts.middle)
        lp, _ = token_logprobs(model, seq[:end], "cpu")  # the same windows as the left-only sequence
        nats -= float(lp[start - 1:end - 1].sum())
        notes += tok.count_notes(parts.middle)
    assert f["left_only_bits_per_note"] == pytest.approx(nats / math.log(2) / notes, rel=1e-5)
    assert f["notes"] == notes
    # tunes too short for the span are skipped, not errors
    g = evaluate(ckpt, data, split="train", device="cpu", baseline_order=0, progress=False, infill="5:5")
    g = g["infill"]
    assert g["skipped"] >= 1 and g["tunes"] + g["skipped"] + g["no_right_side"] == 3
    # a span that reaches a tune's last bar has no right side: counted apart, not scored
    n_bars = [count_bars(tok.decode_score(tok.decode_ids(sp.tune(i)[tok.head_length(sp.tune(i)):-1])))
              for i in sp.originals()]
    last = min(n_bars)
    e = evaluate(ckpt, data, split="train", device="cpu", baseline_order=0, progress=False, infill=f"{last}:{last}")
    assert e["infill"]["no_right_side"] == sum(n == last for n in n_bars) >= 1


def test_cli_infill_text_json_and_errors(steer, plain, tunes, capsys) -> None:
    data, ckpt = steer
    assert main(["evaluate", str(ckpt), str(tunes), "--infill", "1:2", "--device", "cpu", "--no-progress",
                 "--json"]) == 0
    cap = capsys.readouterr()
    r = json.loads(cap.out.strip().splitlines()[-1])
    assert set(r["infill"]) >= {"both_sides_bits_per_note", "left_only_bits_per_note"}
    assert "given both sides" in cap.err and "pitch +" in cap.err
    assert r["pitch_bits_per_note"] + r["rhythm_bits_per_note"] + r["other_bits_per_note"] == pytest.approx(
        r["bits_per_note"])
    for ck, flag, needle in ((plain[1], "1:2", "no infill tokens"), (ckpt, "2", "A:B"),
                             (ckpt, "40:41", "no tune has notes")):
        assert main(["evaluate", str(ck), str(tunes), "--infill", flag, "--device", "cpu", "--no-progress"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], err
    with pytest.raises(UserError):
        evaluate(plain[1], tunes, device="cpu", progress=False, infill="1:1")
