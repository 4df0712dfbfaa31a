"""Steering samples: refilling bars of a prompt (--fill) and asking for a key, meter or style."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from conftest import Part, scale, write_midi
from melodylm.checkpoint import save_checkpoint
from melodylm.cli import main
from melodylm.errors import UserError
from melodylm.generate import generate, load_prompt
from melodylm.infill import bar_starts, count_bars
from melodylm.midi import score_notes
from melodylm.models import MODELS, ModelConfig, build_model, size_preset
from melodylm.tokenizer import MelodyTokenizer

pytestmark = pytest.mark.usefixtures("torch_one_thread")

CONTROLS = [{"key": "C major", "meter": "4/4", "style": "reels"},
            {"key": "D minor", "meter": "6/8", "style": "jigs"},
            {"key": "G major", "meter": "3/4", "style": "waltzes"}]


def steer_tokenizer() -> MelodyTokenizer:
    tok = MelodyTokenizer()
    tok.set_extra(CONTROLS)
    return tok


def tiny(arch: str, tok: MelodyTokenizer, seed: int = 0):
    torch.manual_seed(seed)
    cfg = ModelConfig(**{**size_preset(arch, "tiny"), "vocab_size": tok.vocab_size, "pad_id": tok.pad_id,
                         "dropout": 0.0})
    return build_model(cfg).eval()


@pytest.fixture(scope="module")
def tune(tmp_path_factory) -> Path:
    """Eight bars of 4/4: a rising line of quarter notes, with a held note over the bar 4|5 line."""
    notes = scale(0, 32, low=60, step=1.0, dur=1.0)
    notes[15] = (15.0, 2.0, notes[15][2])
    del notes[16]
    return write_midi(tmp_path_factory.mktemp("tune") / "tune.mid", [Part(notes, name="melody")])


def rows(score) -> set[tuple[int, int, int]]:
    return {tuple(r) for r in score_notes(score).tolist()}


# ------------------------------------------------------------------ infilling

@pytest.mark.slow
@pytest.mark.parametrize("arch", sorted(MODELS))
def test_fill_keeps_every_note_outside_the_span(arch, tune) -> None:
    tok = steer_tokenizer()
    model = tiny(arch, tok)
    prompt = load_prompt(tune, tok)
    original = tok.decode_score(prompt.base_ids)
    starts = bar_starts(original, 1 << 30)
    t_a, t_b1 = int(starts[2]), int(starts[5])  # bars 3..5
    samples = generate(model, prompt, n=4, tokenizer=tok, fill="3:5", seed=3, temperature=1.3, top_p=0.95,
                       max_tokens=200)
    outside = {r for r in rows(original) if not t_a <= r[0] < t_b1}
    assert len(outside) == len(rows(original)) - 12 + 1  # bar 4's last note is held into bar 5: 11 in the span
    for s in samples:
        got = rows(s.score)
        assert {r for r in got if not t_a <= r[0] < t_b1} == outside  # same onset, duration, pitch
        assert s.new_notes >= 1 and s.stop in ("eos", "max_tokens")
        assert all(t_a <= r[0] < t_b1 for r in got - outside)
        assert count_bars(s.score) == count_bars(original)
        assert s.invalid_tokens == 0
        assert [(t.numerator, t.denominator) for t in s.score.time_signatures] == [(4, 4)]
        assert s.continuation_start_beat == t_a / int(original.ticks_per_quarter)
        assert s.info["options"]["fill"] == "3:5"
    assert len({tuple(map(tuple, score_notes(s.score).tolist())) for s in samples}) > 1  # sampled, not fixed


@pytest.mark.slow
def test_fill_is_seeded_and_works_at_the_edges(tune, tmp_path) -> None:
    tok = steer_tokenizer()
    model = tiny("gpt", tok, seed=1)
    a = generate(model, tune, n=2, tokenizer=tok, fill="1:2", seed=5, max_tokens=150)
    b = generate(model, tune, n=2, tokenizer=tok, fill="1:2", seed=5, max_tokens=150)
    assert [s.ids.tolist() for s in a] == [s.ids.tolist() for s in b]
    last = generate(model, tune, n=2, tokenizer=tok, fill="7:8", seed=5, max_tokens=150)
    prompt = load_prompt(tune, tok)
    original = tok.decode_score(prompt.base_ids)
    t7 = int(bar_starts(original, 1 << 30)[6])
    for s in last:
        assert {r for r in rows(s.score) if r[0] < t7} == {r for r in rows(original) if r[0] < t7}
    for s in a:
        t3 = int(bar_starts(original, 1 << 30)[2])
        assert {r for r in rows(s.score) if r[0] >= t3} == {r for r in rows(original) if r[0] >= t3}
        out = tmp_path / "x.mid"
        s.score.dump_midi(str(out))
        assert count_bars(type(s.score)(str(out))) >= 1


def test_fill_in_six_eight_keeps_the_time_signature(tmp_path) -> None:
    path = write_midi(tmp_path / "jig.mid", [Part(scale(0, 24, low=62, step=0.5, dur=0.5))], time_signature=(6, 8))
    tok = steer_tokenizer()
    for seed in range(3):
        s = generate(tiny("gpt", tok, seed), path, n=2, tokenizer=tok, fill="2:3", seed=seed, max_tokens=120)
        for x in s:
            assert {(t.numerator, t.denominator) for t in x.score.time_signatures} == {(6, 8)}
            assert x.info["controls"]["meter"] in ("6/8", None) or x.info["controls"]["meters"] == ["6/8"]


@pytest.mark.parametrize("kwargs,needle", [
    ({"fill": "9:9"}, "the tune has 8 bar(s)"),
    ({"fill": "3"}, "A:B"),
    ({"fill": "2:3", "constrain": False}, "--no-constraint"),
    ({"fill": "2:3", "keep_prompt": False}, "--continuation-only"),
    ({"fill": "2:3", "max_bars": 2}, "--max-bars"),
])
def test_fill_flag_errors(tune, kwargs, needle) -> None:
    tok = steer_tokenizer()
    with pytest.raises(UserError, match=None) as e:
        generate(tiny("gpt", tok), tune, tokenizer=tok, **kwargs)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_fill_needs_a_prompt_and_a_model_with_sentinels(tune) -> None:
    tok = steer_tokenizer()
    with pytest.raises(UserError, match="needs --prompt"):
        generate(tiny("gpt", tok), None, tokenizer=tok, fill="1:2")
    plain = tok.without_extra()
    with pytest.raises(UserError, match="no infill tokens"):
        generate(tiny("gpt", plain), tune, tokenizer=plain, fill="1:2")


# ------------------------------------------------------------------ controls

class ControlProbe(nn.Module):
    """A fake model whose next pitch is set by the control tokens it has read.

    Every id has logit 0, except the Pitch of ``pitch_of[control id]`` (the last such control
    read), which gets +30: the sampled pitches tell which controls reached the model's context.
    """

    def __init__(self, tok: MelodyTokenizer, pitch_of: dict[int, int]):
        super().__init__()
        self.V, self.max_context = tok.vocab_size, None
        self.config = type("C", (), {"arch": "probe"})()
        self.pitch_id = {c: tok.base_vocab.index(f"Pitch_{p}") for c, p in pitch_of.items()}
        self.inputs: list[list[int]] = []

    def _logits(self, seen: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(seen.size(0), self.V)
        for b in range(seen.size(0)):
            hits = [self.pitch_id[int(i)] for i in seen[b].tolist() if int(i) in self.pitch_id]
            if hits:
                out[b, hits[-1]] = 30.0
        return out

    def init_state(self, n, device):
        return torch.zeros(n, 0, dtype=torch.long)

    def prefill(self, idx, state):
        self.inputs.extend(idx.tolist())
        seen = torch.cat([state, idx], dim=1)
        return self._logits(seen), seen

    def decode(self, idx, state):
        seen = torch.cat([state, idx], dim=1)
        return self._logits(seen), seen


@pytest.mark.parametrize("kind,values", [("key", ("C major", "D minor")), ("meter", ("4/4", "6/8")),
                                         ("style", ("reels", "jigs"))])
def test_each_control_changes_the_sampling_distribution(kind, values) -> None:
    from melodylm.controls import control_tokens

    tok = steer_tokenizer()
    ids = [tok.extra.id(control_tokens({kind: v})[0]) for v in values]
    probe = ControlProbe(tok, {ids[0]: 60, ids[1]: 70})
    pitches = []
    for v in values:
        s = generate(probe, None, n=3, tokenizer=tok, max_notes=4, seed=0, **{kind: v})
        pitches.append({int(p) for x in s for p in score_notes(x.score)[:, 2]})
        assert all(x.info["controls"]["asked"] == {kind: v} for x in s)
    assert pitches == [{60}, {70}]
    # the controls follow BOS in key, meter, style order
    probe.inputs.clear()
    generate(probe, None, n=1, tokenizer=tok, max_notes=1, key="D minor", meter="6/8", style="jigs")
    assert probe.inputs[0] == tok.head_ids({"key": "D minor", "meter": "6/8", "style": "jigs"}).tolist()
    assert probe.inputs[0][1:] == [tok.extra.id(t) for t in ("Key_D_minor", "Meter_6/8", "Style_jigs")]


class GuidanceProbe(ControlProbe):
    """Pitch 60 gets logit 2 always; pitch 62 gets 1.5 after the control, 0 without it."""

    def _logits(self, seen: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(seen.size(0), self.V)
        p60, p62 = (self.pitch_id[c] for c in sorted(self.pitch_id))
        for b in range(seen.size(0)):
            out[b, p60] = 2.0
            out[b, p62] = 1.5 if any(int(i) in self.pitch_id for i in seen[b].tolist()) else 0.0
        return out


def test_guidance_pushes_towards_what_the_control_adds() -> None:
    tok = steer_tokenizer()
    key = tok.extra.id("Key_D_minor")
    probe = GuidanceProbe(tok, {key: 60, key + 10**6: 62})  # second entry only names pitch 62
    first = {}
    for w in (0.0, 1.0):
        probe.inputs.clear()
        s = generate(probe, None, n=2, tokenizer=tok, max_notes=1, top_k=1, key="D minor", guidance=w,
                     key_tries=1)  # one draw: what one guided batch reads
        first[w] = {int(p) for x in s for p in score_notes(x.score)[:, 2]}
        assert s[0].info["options"]["guidance"] == w
        # guided: a second batch read the same prompt without its control token
        assert probe.inputs == ([[tok.bos_id, key]] * 2 + ([[tok.bos_id]] * 2 if w else []))
    # greedy: 60 (logit 2 > 1.5) unguided; guided, 62 gets 1.5 + 1.0 * (1.5 - 0) = 3 > 2
    assert first == {0.0: {60}, 1.0: {62}}
    # without an asked control there is nothing to guide: one batch, the plain samples
    probe.inputs.clear()
    s = generate(probe, None, n=1, tokenizer=tok, max_notes=1, top_k=1, guidance=2.0)
    assert probe.inputs == [[tok.bos_id]] and s[0].info["options"]["guidance"] == 0.0
    with pytest.raises(UserError, match="--guidance -1"):
        generate(probe, None, n=1, tokenizer=tok, key="D minor", guidance=-1.0)


def test_key_with_a_prompt_moves_the_prompt_first(tune) -> None:
    tok = steer_tokenizer()
    model = tiny("gpt", tok)
    plain = generate(model, tune, n=1, tokenizer=tok, max_notes=3)[0]
    asked = generate(model, tune, n=1, tokenizer=tok, max_notes=3, key="G major")[0]
    p = asked.info["prompt"]
    assert p["transposed"] == -5 and p["key"] is not None  # the scale from C reads as C major: C -> G is -5
    before = [int(p) for p in score_notes(plain.score)[:20, 2]]  # the prompt's first notes
    after = [int(p) for p in score_notes(asked.score)[:20, 2]]
    assert [b - 5 for b in before] == after
    c = asked.info["controls"]
    assert c["asked"] == {"key": "G major"} and c["meter"] == "4/4" and c["key"] is not None


class CoinProbe(ControlProbe):
    """Pitches 60 (C) and 66 (F#) get logit 30 each: every draw is one of the two, at even odds."""

    def _logits(self, seen: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(seen.size(0), self.V)
        out[:, sorted(self.pitch_id.values())] = 30.0
        return out


def test_key_tries_redraw_only_the_samples_out_of_key() -> None:
    tok = steer_tokenizer()
    probe = CoinProbe(tok, {-1: 60, -2: 66})

    def pitches(key, **kw):
        s = generate(probe, None, n=8, tokenizer=tok, max_notes=1, seed=5, key=key, **kw)
        return [int(score_notes(x.score)[0, 2]) for x in s], [x.info["controls"]["tries"] for x in s], s

    # One C reads as C major, one F# as F# major: the first draws are a mix, each drawn once.
    first, tries, s = pitches("C major", key_tries=1)
    assert sorted(set(first)) == [60, 66] and tries == [1] * 8
    assert [x.info["controls"]["key"] for x in s] == ["C major" if p == 60 else "F# major" for p in first]
    # With redraws every sample comes out in C major; those in key at once keep their first draw.
    kept, tries, s = pitches("C major", key_tries=8)
    assert kept == [60] * 8 and s[0].info["options"]["key_tries"] == 8
    assert [t for p, t in zip(first, tries) if p == 60] == [1] * first.count(60)
    assert all(t > 1 for p, t in zip(first, tries) if p == 66)
    assert pitches("C major", key_tries=8)[1] == tries  # seeded: the same draws again
    # No draw is ever in D minor: each keeps the one that fits it best (C is D minor's 7th, rated
    # 3.17 against F#'s 2.60): those whose first draw was F# kept a later C.
    kept, tries, _ = pitches("D minor", key_tries=3)
    assert kept == [60] * 8 and tries == [3] * 8 and 66 in first
    # A budget of 10 draws of max_tokens each: the first two samples out of key are drawn once more.
    _, tries, _ = pitches("C major", key_tries=8, max_tokens=16, token_budget=160)
    misses = [i for i, p in enumerate(first) if p == 66]
    assert tries == [2 if i in misses[:2] else 1 for i in range(8)]
    with pytest.raises(UserError, match="--key-tries 0"):
        generate(probe, None, n=1, tokenizer=tok, key="C major", key_tries=0)


def test_unknown_control_values_list_the_known_ones() -> None:
    tok = steer_tokenizer()
    model = tiny("gpt", tok)
    with pytest.raises(UserError, match="known: C major, G major, D minor"):
        generate(model, None, tokenizer=tok, key="B major")
    with pytest.raises(UserError, match="known: 3/4, 4/4, 6/8"):
        generate(model, None, tokenizer=tok, meter="5/4")
    with pytest.raises(UserError, match="known: jigs, reels, waltzes"):
        generate(model, None, tokenizer=tok, style="polkas")


def _checkpoint(tok: MelodyTokenizer, path: Path) -> Path:
    cfg = ModelConfig(**size_preset("gpt", "tiny"), vocab_size=tok.vocab_size, pad_id=tok.pad_id)
    torch.manual_seed(0)
    return save_checkpoint(path, {"model_config": asdict(cfg), "model": build_model(cfg).state_dict(),
                                  "tokenizer": tok.to_dict(), "train_config": {"data_dir": None}})


def test_cli_old_checkpoint_samples_and_refuses_controls(tune, tmp_path, capsys) -> None:
    old = _checkpoint(steer_tokenizer().without_extra(), tmp_path / "old.pt")
    assert main(["sample", "--checkpoint", str(old), "--max-notes", "4", "--device", "cpu", "-o",
                 str(tmp_path / "a"), "--json"]) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert r["samples"][0]["controls"]["asked"] == {}
    for flags in (["--key", "D minor"], ["--meter", "6/8"], ["--style", "jigs"], ["--fill", "1:2"]):
        code = main(["sample", "--checkpoint", str(old), "--prompt", str(tune), "--device", "cpu",
                     "-o", str(tmp_path / "b"), *flags])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1, (flags, err)
        assert ("this model has no controls" if flags[0] != "--fill" else "no infill tokens") in err[0]


def test_cli_fill_and_controls_end_to_end(tune, tmp_path, capsys) -> None:
    ckpt = _checkpoint(steer_tokenizer(), tmp_path / "steer.pt")
    out = tmp_path / "s"
    assert main(["sample", "--checkpoint", str(ckpt), "--prompt", str(tune), "--fill", "5:8", "--n", "2",
                 "--seed", "2", "--temperature", "0.9", "--top-p", "0.9", "--key", "C major", "--style", "reels",
                 "--device", "cpu", "-o", str(out), "--json"]) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(r["files"]) == 2
    side = json.loads((out / "sample_000.json").read_text())
    assert side["controls"]["asked"] == {"key": "C major", "style": "reels"}
    assert set(side["controls"]) == {"asked", "key", "meter", "meters", "tries"}
    assert 1 <= side["controls"]["tries"] <= 4 and side["options"]["key_tries"] == 4
    assert side["options"]["fill"] == "5:8" and r["samples"][0]["controls"] == side["controls"]
    for flags, needle in ((["--key", "H minor"], "unknown key"), (["--key-tries", "0"], "--key-tries 0")):
        code = main(["sample", "--checkpoint", str(ckpt), *flags, "--device", "cpu", "-o", str(tmp_path / "bad")])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and needle in err[0]
