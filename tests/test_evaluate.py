"""Held-out scoring: every token once, sliding windows against full context, bits per note by
hand, the n-gram baseline beside it, and the CLI."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import Part, scale, write_midi
from melodylm.checkpoint import save_checkpoint
from melodylm.cli import main
from melodylm.dataset import Dataset, TokenizeConfig, tokenize
from melodylm.evaluate import evaluate, token_logprobs
from melodylm.models import ModelConfig, build_model, size_preset
from melodylm.train import TrainConfig, train

LN2 = math.log(2)


pytestmark = pytest.mark.usefixtures("torch_one_thread")


class ContextProbe(nn.Module):
    """A fake model that tells, through its scores, how much context each prediction had.

    At window position ``j`` (``j + 1`` tokens of context) every token but id 0 gets
    log-probability ``-log(V + j)``: token 0 takes the logit ``log(j + 1)``, all others 0.
    """

    def __init__(self, vocab: int, max_context: int | None):
        super().__init__()
        self.vocab, self.max_context = vocab, max_context
        self.windows: list[int] = []

    def forward(self, idx, targets=None):
        b, t = idx.shape
        if self.max_context is not None:
            assert t <= self.max_context, "a window longer than the model's context"
        self.windows.extend([t] * b)
        logits = torch.zeros(b, t, self.vocab)
        logits[:, :, 0] = torch.log(torch.arange(1, t + 1, dtype=torch.float32))
        return logits, None

    def context_of(self, lp: np.ndarray) -> np.ndarray:
        return np.rint(np.exp(-lp) - self.vocab + 1).astype(int)


@pytest.mark.parametrize("n_tokens,ctx", [(10, 16), (17, 16), (18, 16), (100, 16), (101, 8), (333, 32), (50, 2),
                                          (50, 1)])
def test_every_token_is_scored_once_with_at_least_half_a_window(n_tokens, ctx):
    rng = np.random.default_rng(n_tokens + ctx)
    seq = rng.integers(1, 40, size=n_tokens)  # never token 0, the probe's marker
    probe = ContextProbe(40, ctx)
    lp, ok = token_logprobs(probe, seq, "cpu", batch_windows=3)
    assert lp.shape == ok.shape == (n_tokens - 1,)
    context = probe.context_of(lp)
    i = np.arange(n_tokens - 1)  # target i is seq[i + 1], predicted from seq[:i + 1]
    assert np.all(context >= 1)  # scored: an unscored slot would read as log-probability 0
    assert np.all(context <= np.minimum(i + 1, ctx))
    # the first window scores its prefix fully, every later token keeps at least half a window
    assert np.all(context >= np.minimum(i + 1, max(1, ctx // 2)))
    # the model never saw more windows than needed: scoring is close to n / (ctx / 2) windows
    assert len(probe.windows) <= 1 + math.ceil(max(0, n_tokens - 1 - ctx) / max(1, ctx // 2)) + 1


def test_unbounded_models_score_the_whole_tune_at_once():
    seq = np.arange(1, 300) % 37 + 1
    probe = ContextProbe(40, None)
    lp, _ = token_logprobs(probe, seq, "cpu")
    assert probe.windows == [len(seq) - 1]
    assert np.array_equal(probe.context_of(lp), np.arange(1, len(seq)))


@torch.no_grad()
def reference_logprobs(model, seq: np.ndarray) -> np.ndarray:
    """Every target scored with the longest context the model takes: the ``ctx`` tokens before it."""
    ids = torch.as_tensor(seq, dtype=torch.long)
    ctx = model.max_context or len(ids)
    head = ids[:min(ctx, len(ids) - 1)]  # targets 1..ctx: a causal model scores them in one pass
    lp = F.log_softmax(model(head[None])[0][0].float(), dim=-1)
    out = lp.gather(1, ids[1:len(head) + 1, None])[:, 0].tolist()
    if len(ids) > ctx + 1:  # later targets: one window of exactly ctx tokens each, scored at its end
        x = ids.unfold(0, ctx, 1)[1:len(ids) - ctx]  # windows ending just before targets ctx+1..
        lp = F.log_softmax(model(x)[0][:, -1].float(), dim=-1)
        out += lp.gather(1, ids[ctx + 1:, None])[:, 0].tolist()
    return np.array(out)


@pytest.fixture(scope="module")
def trained_gpt(tiny_dataset, tmp_path_factory):
    """A GPT with a short context (16) trained a little, so context matters to its predictions."""
    out = tmp_path_factory.mktemp("eval") / "gpt"
    train(TrainConfig(data_dir=str(tiny_dataset), out_dir=str(out), arch="gpt", size="tiny", batch_size=8,
                      max_steps=30, eval_interval=30, eval_batches=1, sample_tokens=0, learning_rate=3e-3,
                      warmup_steps=3, device="cpu", model={"block_size": 16, "dropout": 0.0}), progress=False)
    return out


def test_sliding_windows_match_full_context(trained_gpt, tiny_dataset):
    from melodylm.checkpoint import load_model

    model, _, _ = load_model(trained_gpt / "best.pt")
    assert model.max_context == 16
    sp = Dataset(tiny_dataset).split("val")
    tune = sp.tune(0)
    assert len(tune) > 100
    # a tune that fits the context: exactly the full-context scores
    short = tune[:12]
    got, _ = token_logprobs(model, short, "cpu")
    assert np.allclose(got, reference_logprobs(model, short), atol=1e-5)
    # a longer one: every token keeps >= 8 of the 16 tokens of context, so totals stay close
    got, ok = token_logprobs(model, tune, "cpu")
    ref = reference_logprobs(model, tune)
    assert np.allclose(got[:15], ref[:15], atol=1e-5)  # the first window is full context
    assert abs(got.sum() - ref.sum()) / abs(ref.sum()) < 0.03
    assert not np.allclose(got, ref, atol=1e-5), "context should matter to a trained model"
    # accuracy flags agree with the log-probabilities: a correct token is the argmax
    with torch.no_grad():
        logits = model(torch.as_tensor(short[:-1])[None])[0][0]
    assert np.array_equal(token_logprobs(model, short, "cpu")[1], (logits.argmax(-1).numpy() == short[1:]))


@pytest.fixture(scope="module")
def hand_dataset(tmp_path_factory) -> tuple[Path, int]:
    """Two short synthetic tunes (5 and 3 notes), all in the training split."""
    root = tmp_path_factory.mktemp("hand")
    write_midi(root / "midi" / "a.mid", [Part(scale(n=5))])
    write_midi(root / "midi" / "b.mid", [Part(scale(n=3, low=67, dur=2.0, step=2.0))])
    out = root / "data"
    tokenize(TokenizeConfig(inputs=[str(root / "midi")], out_dir=str(out), split=(1.0, 0.0, 0.0), workers=1),
             progress=False)
    return out, 8


def uniform_checkpoint(data: Path, path: Path, arch: str = "gpt") -> Path:
    """A model whose every prediction is uniform over the vocabulary: all weights zero."""
    tok = Dataset(data).tokenizer
    cfg = ModelConfig(**size_preset(arch, "tiny"), vocab_size=tok.vocab_size, pad_id=tok.pad_id)
    model = build_model(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    return save_checkpoint(path, {"model_config": asdict(cfg), "model": model.state_dict(),
                                  "tokenizer": tok.to_dict(), "train_config": {"data_dir": str(data)}})


@pytest.mark.parametrize("arch", ["gpt", "lstm"])
def test_bits_per_note_by_hand(hand_dataset, tmp_path, arch):
    data, notes = hand_dataset
    ds = Dataset(data)
    sp = ds.split("train")
    assert len(sp) == 2 and int(sp.index["n_notes"].sum()) == notes
    v = ds.tokenizer.vocab_size
    n_tok = sum(len(sp.tune(i)) - 1 for i in range(len(sp)))  # every token after BOS, EOS included
    ckpt = uniform_checkpoint(data, tmp_path / "uniform.pt", arch)
    r = evaluate(ckpt, split="train", device="cpu", baseline_order=3, progress=False)  # data_dir from the checkpoint
    assert r["tokens"] == n_tok and r["notes"] == notes and r["tunes"] == 2
    assert r["loss"] == pytest.approx(math.log(v), rel=1e-6)
    assert r["bits_per_token"] == pytest.approx(math.log2(v), rel=1e-6)
    assert r["bits_per_note"] == pytest.approx(n_tok * math.log2(v) / notes, rel=1e-6)
    assert r["perplexity"] == pytest.approx(v, rel=1e-5)
    b = r["baseline"]
    assert b["order"] == 3 and "signature" in b
    # the baseline scores the same tokens and notes: its bits per note / bits per token = tokens / notes
    assert b["bits_per_note"] / b["bits_per_token"] == pytest.approx(n_tok / notes, rel=1e-9)
    # trained and scored on the same two tunes, a 3-gram beats a uniform guess by far
    assert b["bits_per_note"] < r["bits_per_note"] / 2


def test_evaluate_real_split_counts_every_tune(trained_gpt, tiny_dataset):
    r = evaluate(trained_gpt / "best.pt", tiny_dataset, split="val", device="cpu", baseline_order=0, progress=False)
    sp = Dataset(tiny_dataset).split("val")
    rows = sp.originals()
    assert r["tunes"] == len(rows) > 0
    assert r["tokens"] == sum(len(sp.tune(i)) - 1 for i in rows)
    assert r["notes"] == int(sp.index["n_notes"][rows].sum())
    assert "baseline" not in r
    assert 0 <= r["accuracy"] <= 1 and r["bits_per_note"] > r["bits_per_token"] > 0
    assert r["perplexity"] == pytest.approx(math.exp(r["loss"]))


def test_cli_evaluate_json(trained_gpt, tiny_dataset, capsys):
    assert main(["evaluate", str(trained_gpt), str(tiny_dataset), "--split", "val", "--device", "cpu",
                 "--baseline-order", "3", "--json", "--no-progress"]) == 0
    cap = capsys.readouterr()
    r = json.loads(cap.out.strip().splitlines()[-1])
    for key in ("loss", "perplexity", "bits_per_token", "bits_per_note", "accuracy", "baseline"):
        assert key in r, key
    assert r["baseline"]["order"] == 3 and r["baseline"]["bits_per_note"] > 0
    assert "bits/note" in cap.err and "3-gram KN" in cap.err


def test_tokenizer_mismatch_is_a_one_line_error(trained_gpt, hand_dataset, tmp_path, capsys):
    other = tmp_path / "tsd"
    tokenize(TokenizeConfig(inputs=[str(hand_dataset[0].parent / "midi")], out_dir=str(other), scheme="TSD",
                            split=(1.0, 0.0, 0.0), workers=1), progress=False)
    assert main(["evaluate", str(trained_gpt / "best.pt"), str(other), "--split", "train", "--device", "cpu",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("melodylm: error: ") and "tokenizer" in err[0], err
    assert main(["evaluate", str(tmp_path / "nothing.pt"), "--no-progress"]) == 2
    assert "not found" in capsys.readouterr().err
