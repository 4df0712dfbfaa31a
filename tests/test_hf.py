"""Hugging Face export/import: logits parity with transformers, exact round trips, and the errors."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from melodylm.checkpoint import load_checkpoint, load_model, save_checkpoint
from melodylm.cli import main
from melodylm.hf import ExportError, ForeignModelError, export_hf, import_hf, load_miditok
from melodylm.models import ModelConfig, build_model
from melodylm.tokenizer import MelodyTokenizer

transformers = pytest.importorskip("transformers")
pytest.importorskip("safetensors")


def make_checkpoint(path: Path, tok: MelodyTokenizer, seed: int = 0, **model) -> Path:
    """A randomly initialised model through the registry, saved as train.py saves best.pt.

    Biases and LayerNorm gains are randomised too, so a mapping that drops or transposes one
    of them cannot pass."""
    torch.manual_seed(seed)
    cfg = ModelConfig(**{"arch": "gpt", "n_layer": 2, "n_head": 2, "n_embd": 16, "block_size": 24, "dropout": 0.1,
                         "vocab_size": tok.vocab_size, "pad_id": tok.pad_id, **model})
    net = build_model(cfg)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("bias") or ".ln_" in name:
                p.normal_(0.0, 0.3)
    payload = {"model_config": asdict(cfg), "model": net.state_dict(), "tokenizer": tok.to_dict(),
               "train_config": {"arch": cfg.arch, "data_dir": "data/default", "max_steps": 3, "seed": seed},
               "data_fingerprint": "0123456789abcdef", "step": 3, "best_val_loss": 1.5,
               "data_stats": {"notes": {"train": 100, "val": 30, "test": 20},
                              "tokens": {"train": 300, "val": 90, "test": 60}}}
    return save_checkpoint(path, payload)


@pytest.fixture(scope="module")
def tok() -> MelodyTokenizer:
    return MelodyTokenizer()


@pytest.fixture(scope="module")
def ids(tok) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, tok.vocab_size, (3, 24), generator=g)


def melodylm_logits(ckpt: Path, ids: torch.Tensor) -> torch.Tensor:
    model, _, _ = load_model(ckpt)
    with torch.no_grad():
        return model.logits(ids)


def hf_logits(folder: Path, ids: torch.Tensor) -> tuple[str, torch.Tensor]:
    model = transformers.AutoModelForCausalLM.from_pretrained(str(folder)).eval()
    with torch.no_grad():
        return type(model).__name__, model(ids).logits


@pytest.mark.parametrize("model", [dict(), dict(bias=True), dict(tie_weights=False, bias=True)],
                         ids=["default", "bias", "untied"])
def test_transformers_gives_the_same_logits(tmp_path, tok, ids, model) -> None:
    ckpt = make_checkpoint(tmp_path / "m.pt", tok, **model)
    export_hf(ckpt, tmp_path / "hf")
    name, theirs = hf_logits(tmp_path / "hf", ids)
    assert name == "GPT2LMHeadModel"
    torch.testing.assert_close(theirs, melodylm_logits(ckpt, ids), rtol=0, atol=1e-4)
    # and back: an identical model, so identical logits
    back = import_hf(tmp_path / "hf", tmp_path / "run")
    assert back == tmp_path / "run" / "best.pt"
    assert torch.equal(melodylm_logits(back, ids), melodylm_logits(ckpt, ids))
    a, b = load_checkpoint(ckpt), load_checkpoint(back)
    assert a["model_config"] == b["model_config"]
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    for key in ("train_config", "data_fingerprint", "step", "best_val_loss", "data_stats"):
        assert b[key] == a[key], key


def test_export_folder_files_card_and_miditok(tmp_path, tok) -> None:
    import miditok

    ckpt = make_checkpoint(tmp_path / "m.pt", tok)
    summary = export_hf(ckpt, tmp_path / "hf")
    assert summary["files"] == ["README.md", "config.json", "melodylm.json", "model.safetensors", "tokenizer.json"]
    cfg = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert (cfg["bos_token_id"], cfg["eos_token_id"], cfg["pad_token_id"]) == (tok.bos_id, tok.eos_id, tok.pad_id)
    assert cfg["activation_function"] == "gelu" and cfg["n_positions"] == 24
    # miditok's own API reads the tokenizer, with the vocabulary the model was trained on
    theirs = miditok.REMI(params=tmp_path / "hf" / "tokenizer.json")
    assert sorted(theirs.vocab, key=theirs.vocab.get) == tok.base_vocab
    card = (tmp_path / "hf" / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: transformers")
    for needed in ("## Data", "## Recipe", "## Scores", "## Licence of the data", "AutoModelForCausalLM",
                   "max_steps 3", "0123456789abcdef", "bits/note"):
        assert needed in card, needed
    assert "licence of the training data applies" in card  # not the embedded corpus's fingerprint
    with pytest.raises(ExportError, match="not empty"):
        export_hf(ckpt, tmp_path / "hf")
    export_hf(ckpt, tmp_path / "hf", force=True)


def test_card_of_a_model_on_the_shipped_models_data_names_its_corpora_and_licence(tmp_path, tok) -> None:
    from melodylm.resources import shipped_model

    if shipped_model() is None:
        pytest.skip("no shipped model")
    ckpt = make_checkpoint(tmp_path / "m.pt", tok)
    payload = load_checkpoint(ckpt)
    payload["data_fingerprint"] = load_checkpoint(shipped_model())["data_fingerprint"]
    save_checkpoint(ckpt, payload)
    export_hf(ckpt, tmp_path / "hf")
    card = (tmp_path / "hf" / "README.md").read_text()
    assert "O'Neill" in card and "Essen" in card and "public domain" in card and "non-commercial" in card


def test_the_shipped_lstm_is_refused_in_one_line(tmp_path, capsys) -> None:
    from melodylm.resources import shipped_model

    if shipped_model() is None:
        pytest.skip("no shipped model")
    assert main(["export", str(shipped_model()), "-o", str(tmp_path / "hf")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "lstm" in err[0] and "GPT" in err[0]


def test_subword_checkpoint_ships_its_sentencepiece_model(tmp_path, make_dataset, ids) -> None:
    from melodylm.dataset import Dataset

    sub_tok = Dataset(make_dataset(subword="bpe", vocab_size=700)).tokenizer
    ckpt = make_checkpoint(tmp_path / "m.pt", sub_tok)
    export_hf(ckpt, tmp_path / "hf")
    assert (tmp_path / "hf" / "subwords.model").read_bytes() == sub_tok.sp_model
    back = load_miditok(tmp_path / "hf")
    # 700 pieces, then the control and fill tokens: the fingerprint covers both
    assert back.fingerprint() == sub_tok.fingerprint() and back.core_vocab_size == 700
    assert back.vocab_size == sub_tok.vocab_size > 700
    ids = ids % sub_tok.vocab_size
    _, theirs = hf_logits(tmp_path / "hf", ids)
    torch.testing.assert_close(theirs, melodylm_logits(ckpt, ids), rtol=0, atol=1e-4)
    imported = import_hf(tmp_path / "hf", tmp_path / "back.pt")
    assert torch.equal(melodylm_logits(imported, ids), melodylm_logits(ckpt, ids))


def test_lstm_checkpoints_are_refused_in_one_line(tmp_path, tok, capsys) -> None:
    for arch in ("lstm", "bilstm"):
        ckpt = make_checkpoint(tmp_path / f"{arch}.pt", tok, arch=arch)
        with pytest.raises(ExportError, match=f"is a {arch} model: --format hf exports GPT checkpoints only"):
            export_hf(ckpt, tmp_path / arch)
    assert main(["export", str(tmp_path / "lstm.pt"), "--format", "hf", "-o", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "lstm" in err
    assert not (tmp_path / "x").exists()


def test_unknown_model_settings_are_refused(tmp_path, tok) -> None:
    ckpt = load_checkpoint(make_checkpoint(tmp_path / "m.pt", tok))
    ckpt["model_config"]["norm"] = "rms"  # a block change GPT-2 cannot express
    path = save_checkpoint(tmp_path / "rms.pt", {k: v for k, v in ckpt.items() if k not in ("format", "path")})
    with pytest.raises(ExportError, match="norm='rms' has no GPT-2 counterpart"):
        export_hf(path, tmp_path / "hf")


@pytest.fixture
def exported(tmp_path, tok) -> Path:
    export_hf(make_checkpoint(tmp_path / "m.pt", tok), tmp_path / "hf")
    return tmp_path / "hf"


def _edit_config(folder: Path, **changes) -> None:
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(changes)
    (folder / "config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize("changes, message", [
    (dict(model_type="llama", architectures=["LlamaForCausalLM"]), "describes a 'llama' model"),
    (dict(activation_function="gelu_new"), "activation_function 'gelu_new'"),
    (dict(layer_norm_epsilon=1e-6), "layer_norm_epsilon"),
    (dict(n_inner=24), "n_inner 24"),
    (dict(scale_attn_by_inverse_layer_idx=True), "attention scaling"),
    (dict(vocab_size=99), "the model has 99 tokens but its tokenizer has"),
])
def test_foreign_configs_are_one_line_errors(exported, tmp_path, capsys, changes, message) -> None:
    _edit_config(exported, **changes)
    with pytest.raises(ForeignModelError, match=message):
        import_hf(exported, tmp_path / "out")
    assert main(["import-hf", str(exported), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("melodylm: error:")
    assert not (tmp_path / "out").exists()


def test_import_errors_for_missing_and_foreign_files(exported, tmp_path) -> None:
    (exported / "tokenizer.json").rename(exported / "kept.json")
    with pytest.raises(ForeignModelError, match="has no tokenizer.json"):
        import_hf(exported, tmp_path / "out")
    raw = json.loads((exported / "kept.json").read_text())
    raw["melodylm"] = {}
    raw["config"]["pitch_range"] = [30, 90]  # a miditok tokenizer melodylm did not make: still readable
    (exported / "tokenizer.json").write_text(json.dumps(raw))
    with pytest.raises(ForeignModelError, match="the model has .* tokens but its tokenizer has"):
        import_hf(exported, tmp_path / "out")
    import miditok

    miditok.REMI(miditok.TokenizerConfig(use_programs=True)).save(exported / "tokenizer.json")  # plain miditok
    with pytest.raises(ForeignModelError, match="vocabulary melodylm cannot rebuild"):
        import_hf(exported, tmp_path / "out")
    (exported / "config.json").unlink()
    with pytest.raises(ForeignModelError, match="has no config.json"):
        import_hf(exported, tmp_path / "out")


def test_missing_hf_extra_names_it(tmp_path, tok, monkeypatch) -> None:
    from melodylm.extras import MissingExtraError

    ckpt = make_checkpoint(tmp_path / "m.pt", tok)
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    monkeypatch.setitem(sys.modules, "safetensors", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'melodylm\[hf\]'"):
        export_hf(ckpt, tmp_path / "hf")


def test_imported_checkpoint_samples_and_evaluates(tmp_path, tiny_dataset, capsys) -> None:
    from melodylm.dataset import Dataset

    data_tok = Dataset(tiny_dataset).tokenizer
    ckpt = make_checkpoint(tmp_path / "m.pt", data_tok)
    assert main(["export", str(ckpt), "-o", str(tmp_path / "hf")]) == 0
    assert main(["import-hf", str(tmp_path / "hf"), "-o", str(tmp_path / "run")]) == 0
    capsys.readouterr()
    assert main(["sample", "--checkpoint", str(tmp_path / "run"), "--max-tokens", "20", "-o", str(tmp_path / "s"),
                 "--device", "cpu"]) == 0
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["sample_000.json", "sample_000.mid"]
    assert main(["evaluate", str(tmp_path / "run"), str(tiny_dataset), "--baseline-order", "0", "--json",
                 "--no-progress", "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["bits_per_note"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("source", ["gpt-round-trip", "shipped"])
def test_fine_tune_with_init_on_new_files(tmp_path, corpus_slice, capsys, tok, source) -> None:
    """export a GPT -> import-hf -> tokenize new files with its tokenizer -> train --init; and the same
    from the shipped model (an LSTM, which has no Hugging Face form) without the round trip."""
    from melodylm.resources import shipped_model

    if source == "shipped":
        start = shipped_model()
        if start is None:
            pytest.skip("the shipped model is not here")
    else:
        gpt = make_checkpoint(tmp_path / "gpt.pt", tok)
        assert main(["export", str(gpt), "-o", str(tmp_path / "hf")]) == 0
        assert main(["import-hf", str(tmp_path / "hf"), "-o", str(tmp_path / "imported")]) == 0
        start = tmp_path / "imported" / "best.pt"
        assert torch.equal(melodylm_logits(start, torch.arange(40).view(2, 20)),
                           melodylm_logits(gpt, torch.arange(40).view(2, 20)))
    assert main(["tokenize", str(corpus_slice), "-o", str(tmp_path / "data"), "--tokenizer", str(start),
                 "--split", "0.8,0.1,0.1", "--workers", "1", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["train", str(tmp_path / "data"), "--init", str(start), "--max-steps", "2", "--eval-interval",
                 "2", "--set", "batch_size=2", "--set", "eval_batches=1", "--set", "sample_tokens=0", "--device",
                 "cpu", "--no-progress", "-o", str(tmp_path / "tuned"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["steps"] == 2
    tuned = load_checkpoint(tmp_path / "tuned" / "best.pt")
    assert tuned["model_config"] == load_checkpoint(start)["model_config"]
