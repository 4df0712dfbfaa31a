"""`melodylm tokenize --tokenizer SOURCE`: new files with an existing tokenizer, ids identical."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import Part, scale, write_midi
from melodylm.checkpoint import tokenizer_difference
from melodylm.cli import main
from melodylm.dataset import Dataset, TokenizeConfig, tokenize
from melodylm.errors import UserError
from melodylm.tokenizer_source import load_tokenizer


@pytest.fixture(scope="module")
def new_files(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("mine")
    for i in range(6):
        write_midi(folder / f"t{i}.mid", [Part(scale(0, 16 + 4 * i, low=55 + i, step=0.5, dur=0.5))],
                   time_signature=(6, 8) if i % 2 else (4, 4))
    return folder


@pytest.fixture(scope="module")
def subword_checkpoint(make_dataset, tmp_path_factory) -> Path:
    """A checkpoint whose tokenizer has learned subwords: the case where rebuilding one would differ."""
    from dataclasses import asdict

    import torch

    from melodylm.checkpoint import save_checkpoint
    from melodylm.models import ModelConfig, build_model

    tok = Dataset(make_dataset(subword="bpe", vocab_size=700)).tokenizer
    cfg = ModelConfig(arch="gpt", n_layer=1, n_head=1, n_embd=8, block_size=16, vocab_size=tok.vocab_size)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "run" / "best.pt"
    return save_checkpoint(path, {"model_config": asdict(cfg), "model": build_model(cfg).state_dict(),
                                  "tokenizer": tok.to_dict(), "train_config": {"data_dir": "x"}})


def test_dataset_gets_the_checkpoints_tokenizer(subword_checkpoint, new_files, tmp_path) -> None:
    out = tmp_path / "data"
    tokenize(TokenizeConfig(inputs=[str(new_files)], out_dir=str(out), split=(1, 0, 0), workers=1,
                            tokenizer=str(subword_checkpoint)), progress=False)
    data, ckpt_tok = Dataset(out), load_tokenizer(subword_checkpoint)
    assert data.tokenizer.fingerprint() == ckpt_tok.fingerprint()
    assert tokenizer_difference(data.tokenizer.to_dict(), ckpt_tok.to_dict()) is None
    # the stored ids are the checkpoint tokenizer's encoding of each file
    tune = data.split("train").tune(0)
    assert tune[0] == ckpt_tok.bos_id and tune[-1] == ckpt_tok.eos_id
    # its control head: the values the checkpoint knows (this folder's style is new to it: left out)
    head = ckpt_tok.head_length(tune)
    assert head > 1 and all(ckpt_tok.extra.name(int(i)).startswith(("Key_", "Meter_")) for i in tune[1:head])
    body = tune[head:-1]
    assert np.array_equal(ckpt_tok.encode_ids(ckpt_tok.decode_ids(body)), body)
    assert data.stats["config"]["tokenizer"] == str(subword_checkpoint)
    # a run folder, the dataset itself and its tokenizer.json name the same tokenizer
    for source in (subword_checkpoint.parent, out, out / "tokenizer.json"):
        assert load_tokenizer(source).fingerprint() == ckpt_tok.fingerprint()


def test_cli_flag_and_its_errors(subword_checkpoint, new_files, tmp_path, capsys) -> None:
    assert main(["tokenize", str(new_files), "-o", str(tmp_path / "d"), "--split", "1,0,0", "--workers", "1",
                 "--tokenizer", str(subword_checkpoint.parent), "--no-progress"]) == 0
    vocab = load_tokenizer(subword_checkpoint).vocab_size  # 700 pieces and the control/fill tokens after them
    assert vocab > 700 and f"vocabulary {vocab};" in capsys.readouterr().err
    for extra in (["--scheme", "TSD"], ["--subword", "bpe"], ["--velocities"]):
        assert main(["tokenize", str(new_files), "-o", str(tmp_path / "e"), "--tokenizer",
                     str(subword_checkpoint), *extra]) == 2
        assert "--tokenizer takes the scheme" in capsys.readouterr().err
    for bad in (tmp_path / "nothing", new_files):
        assert main(["tokenize", str(new_files), "-o", str(tmp_path / "f"), "--tokenizer", str(bad),
                     "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "--tokenizer" in err
    assert not (tmp_path / "f").exists()


def test_unreadable_json_sources(tmp_path) -> None:
    (tmp_path / "other.json").write_text('{"hello": 1}')
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(UserError, match="neither a melodylm nor a miditok tokenizer file"):
        load_tokenizer(tmp_path / "other.json")
    with pytest.raises(UserError, match="not valid JSON"):
        load_tokenizer(tmp_path / "broken.json")
