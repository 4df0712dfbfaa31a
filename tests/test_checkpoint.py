"""Checkpoints: safe to load (no pickled code runs), clear errors for damaged or foreign files,
and one file is enough to rebuild the model and its tokenizer."""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from melodylm.checkpoint import FORMAT_VERSION, load_checkpoint, load_model, save_checkpoint
from melodylm.dataset import Dataset
from melodylm.errors import CheckpointError
from melodylm.models import ModelConfig, build_model, size_preset
from melodylm.train import TrainConfig, train


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def run_dir(tiny_dataset, tmp_path_factory) -> Path:
    """A finished two-step run of a tiny GPT."""
    out = tmp_path_factory.mktemp("ckpt") / "run"
    train(TrainConfig(data_dir=str(tiny_dataset), out_dir=str(out), arch="gpt", size="tiny", batch_size=4,
                      max_steps=2, eval_interval=1, eval_batches=1, sample_tokens=0, device="cpu"), progress=False)
    return out


class CodeOnLoad:
    """Unpickling this object calls ``open(marker, "w")``: proof that the payload ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_checkpoints_load_with_weights_only(run_dir):
    for name in ("best.pt", "last.pt"):
        raw = torch.load(run_dir / name, map_location="cpu", weights_only=True)
        assert raw["format"] == "melodylm.checkpoint" and raw["format_version"] == FORMAT_VERSION
        for key in ("model_config", "model", "tokenizer", "train_config", "data_fingerprint", "versions", "step"):
            assert key in raw, (name, key)
        assert raw["versions"]["torch"] == str(torch.__version__)
    last = load_checkpoint(run_dir / "last.pt")
    assert {"optimizer", "trainer"} <= last.keys() and last["step"] == 2
    # a run folder resolves to its best.pt
    assert Path(load_checkpoint(run_dir)["path"]).name == "best.pt"


def test_pickled_code_is_refused_and_never_runs(run_dir, tmp_path):
    good = torch.load(run_dir / "best.pt", map_location="cpu", weights_only=True)
    evil_path = tmp_path / "evil.pt"
    torch.save({**good, "extra": CodeOnLoad(tmp_path / "ran")}, evil_path)

    # the control: an unsafe load would run the payload
    control = tmp_path / "control.pt"
    torch.save({"x": CodeOnLoad(tmp_path / "ran_unsafely")}, control)
    torch.load(control, weights_only=False)
    assert (tmp_path / "ran_unsafely").exists()

    for loader in (load_checkpoint, load_model):
        with pytest.raises(CheckpointError, match="refused.*pickled Python object"):
            loader(evil_path)
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize("damage", ["half", "empty", "garbage", "one_byte_short"])
def test_damaged_files_get_a_clear_error(run_dir, tmp_path, damage):
    data = (run_dir / "last.pt").read_bytes()
    cut = {"half": data[:len(data) // 2], "empty": b"", "garbage": b"not a checkpoint at all\n" * 50,
           "one_byte_short": data[:-1]}[damage]
    path = tmp_path / "damaged.pt"
    path.write_bytes(cut)
    with pytest.raises(CheckpointError, match="truncated or not a checkpoint") as e:
        load_checkpoint(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_other_format_version_and_foreign_files(run_dir, tmp_path):
    good = torch.load(run_dir / "best.pt", map_location="cpu", weights_only=True)
    newer = tmp_path / "newer.pt"
    torch.save({**good, "format_version": FORMAT_VERSION + 1}, newer)
    with pytest.raises(CheckpointError, match=f"format {FORMAT_VERSION + 1}.*reads format {FORMAT_VERSION}"):
        load_checkpoint(newer)

    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, foreign)
    with pytest.raises(CheckpointError, match="not a melodylm checkpoint"):
        load_checkpoint(foreign)

    partial = tmp_path / "partial.pt"
    torch.save({k: v for k, v in good.items() if k != "tokenizer"}, partial)
    with pytest.raises(CheckpointError, match="lacks 'tokenizer'"):
        load_checkpoint(partial)

    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="no best.pt"):
        load_checkpoint(tmp_path)

    mismatched = tmp_path / "mismatched.pt"
    torch.save({**good, "model_config": {**good["model_config"], "n_embd": 48}}, mismatched)
    with pytest.raises(CheckpointError, match="do not match its config"):
        load_model(mismatched)


@pytest.mark.parametrize("arch", ["lstm", "bilstm", "gpt"])
def test_a_checkpoint_alone_rebuilds_model_and_tokenizer(tiny_dataset, tmp_path, arch):
    tok = Dataset(tiny_dataset).tokenizer
    cfg = ModelConfig(**size_preset(arch, "tiny"), vocab_size=tok.vocab_size, pad_id=tok.pad_id)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    path = save_checkpoint(tmp_path / "alone" / "model.pt",
                           {"model_config": asdict(cfg), "model": model.state_dict(), "tokenizer": tok.to_dict()})
    idx = torch.randint(0, tok.vocab_size, (2, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = model(idx)[0]

    # nothing else beside the file: no dataset, no config
    lonely = tmp_path / "elsewhere" / "m.pt"
    lonely.parent.mkdir()
    shutil.move(path, lonely)
    loaded, tok2, ckpt = load_model(lonely)
    assert not loaded.training
    with torch.no_grad():
        got = loaded(idx)[0]
    assert torch.equal(got, want)
    assert tok2.to_dict() == tok.to_dict() and tok2.fingerprint() == tok.fingerprint()
    assert tok2.vocab_size == tok.vocab_size and (tok2.bos_id, tok2.eos_id) == (tok.bos_id, tok.eos_id)


def test_trained_checkpoint_rebuilds_the_trained_model(run_dir, tiny_dataset):
    model, tok, ckpt = load_model(run_dir / "best.pt")
    assert tok.fingerprint() == Dataset(tiny_dataset).tokenizer.fingerprint()
    raw = torch.load(run_dir / "best.pt", map_location="cpu", weights_only=True)
    state = model.state_dict()
    assert state.keys() == raw["model"].keys()
    assert all(torch.equal(state[k], raw["model"][k]) for k in state)
    # the loaded weights are the trained ones, not the run's initialisation (the trainer seeds with seed + rank)
    torch.manual_seed(ckpt["train_config"]["seed"])
    fresh = build_model(ModelConfig(**ckpt["model_config"]))
    assert any(not torch.equal(state[k], v) for k, v in fresh.state_dict().items())


# --- the schema's accessors, and files written before the trainer state grew --------------------
def test_accessors_read_trained_bare_and_shipped_checkpoints(run_dir, tiny_dataset, tmp_path):
    from melodylm import checkpoint as ck

    last = load_checkpoint(run_dir / "last.pt")
    assert ck.checkpoint_path(last) == str(run_dir / "last.pt")
    assert ck.architecture(last) == "gpt" and ck.model_config(last)["arch"] == "gpt"
    assert ck.trained_on(last) == str(tiny_dataset) and ck.train_config(last)["max_steps"] == 2
    assert ck.data_fingerprint(last) == Dataset(tiny_dataset).fingerprint()
    assert ck.saved_step(last) == 2 and ck.has_trainer_state(last)
    tr = ck.trainer_state(last)
    assert tr["step"] == 2 and [h["step"] for h in tr["history"]] == [1, 2] and tr["elapsed"] > 0
    assert not ck.has_trainer_state(load_checkpoint(run_dir / "best.pt"))
    # a file with only what sampling needs: no training config, no dataset
    bare = tmp_path / "bare.pt"
    save_checkpoint(bare, {k: last[k] for k in ("model_config", "model", "tokenizer")})
    bare_ckpt = load_checkpoint(bare)
    assert ck.train_config(bare_ckpt) == {} and ck.trained_on(bare_ckpt) is None
    assert ck.data_fingerprint(bare_ckpt) is None and ck.saved_step(bare_ckpt) is None
    shipped = Path(__file__).resolve().parents[1] / "checkpoints" / "pretrained" / "model.pt"
    if shipped.is_file():
        model, tok, s = load_model(shipped)
        assert ck.architecture(s) == model.config.arch and tok.vocab_size == ck.model_config(s)["vocab_size"]


def test_a_last_pt_from_before_the_trainer_state_grew_resumes(tiny_dataset, tmp_path):
    """last.pt files written before train_loss, step_s and eval_s were saved still resume."""
    out = tmp_path / "old"
    cfg = dict(data_dir=str(tiny_dataset), out_dir=str(out), arch="lstm", size="tiny", batch_size=4,
               eval_interval=1, eval_batches=1, sample_tokens=0, device="cpu")
    train(TrainConfig(**cfg, max_steps=2), progress=False)
    raw = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
    for key in ("train_loss", "step_s", "eval_s"):
        del raw["trainer"][key]
    torch.save(raw, out / "last.pt")
    from melodylm.checkpoint import trainer_state

    old = trainer_state(load_checkpoint(out / "last.pt"))
    assert old["train_loss"] == raw["trainer"]["history"][-1]["train_loss"] and old["eval_s"] == 0.0
    s = train(TrainConfig(**cfg, max_steps=3), resume=True, progress=False)
    assert s["steps"] == 3 and load_checkpoint(out / "last.pt")["trainer"]["step_s"] > 0


def test_tokenizer_difference_names_what_differs(tiny_dataset):
    from melodylm.checkpoint import tokenizer_difference

    tok = Dataset(tiny_dataset).tokenizer.to_dict()
    assert tokenizer_difference(tok, dict(tok)) is None
    assert tokenizer_difference(tok, {**tok, "miditok_version": "0.0"}) is None
    other = {**tok, "settings": {**tok["settings"], "scheme": "TSD"}}
    assert tokenizer_difference(tok, other) == f"scheme {tok['settings']['scheme']!r} vs 'TSD'"
