"""Tests for melodylm.generate: one loop for every architecture, the grammar, limits, prompts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import Part, scale, write_midi
from melodylm.errors import UserError
from melodylm.generate import bar_start, generate, load_prompt, validate_options, write_samples
from melodylm.models import MODELS, ModelConfig, build_model, size_preset
from melodylm.tokenizer import MelodyTokenizer, TokenizerSettings
from melodylm.sampling import filter_logits, generate_ids, pick_tokens
from melodylm.tokenizer.grammar import Grammar

ARCHS = sorted(MODELS)
SCHEMES = ("REMI", "TSD", "MIDILike", "Structured")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads only add noise on a shared machine
    yield
    torch.set_num_threads(threads)


_TOKS: dict[str, MelodyTokenizer] = {}


def sample_ids(model, tok, **kwargs) -> list[np.ndarray]:
    """The new model ids of each sequence, as train.py logs a sample."""
    return [s.ids for s in generate_ids(model, tok, **kwargs)]


def tokenizer(scheme: str = "REMI") -> MelodyTokenizer:
    if scheme not in _TOKS:
        _TOKS[scheme] = MelodyTokenizer(TokenizerSettings(scheme=scheme))
    return _TOKS[scheme]


def tiny(arch: str, tok: MelodyTokenizer, seed: int = 0, **overrides):
    """An untrained tiny model over the tokenizer's vocabulary, in eval mode."""
    torch.manual_seed(seed)
    cfg = {**size_preset(arch, "tiny"), "vocab_size": tok.vocab_size, "pad_id": tok.pad_id, "dropout": 0.0,
           **overrides}
    return build_model(ModelConfig(**cfg)).eval()


@pytest.fixture(scope="module")
def prompt_file(tmp_path_factory):
    """Eight bars of 4/4 quarter notes (31 notes): the last note of bar 2 is held over the bar line."""
    notes = scale(0, 32, low=60, step=1.0, dur=1.0)
    notes[7] = (7.0, 2.0, notes[7][2])  # crosses into bar 3, where the first beat stays empty
    del notes[8]
    return write_midi(tmp_path_factory.mktemp("prompt") / "p.mid", [Part(notes, name="melody")])


def onsets_never_go_back(score) -> bool:
    """miditok's REMI/TSD decoders append notes in token order: time order means no step back."""
    on = [n.time for tr in score.tracks for n in tr.notes]
    return all(a <= b for a, b in zip(on, on[1:]))


def type_graph_errors(tok: MelodyTokenizer, base_ids) -> int:
    """Our own check: consecutive base tokens whose types miditok's graph does not allow."""
    graph = tok.base.tokens_types_graph
    names = [tok.base_vocab[i].split("_")[0] for i in base_ids]
    return sum(b not in graph[a] for a, b in zip(names, names[1:]))


# ------------------------------------------------------------------ one loop, every architecture

@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("with_prompt", [False, True])
def test_every_arch_gives_valid_midi(arch, with_prompt, prompt_file, tmp_path) -> None:
    tok = tokenizer()
    model = tiny(arch, tok)
    samples = generate(model, prompt_file if with_prompt else None, n=3, tokenizer=tok, max_tokens=120,
                       seed=1, prompt_bars=2)
    assert len(samples) == 3
    files = write_samples(samples, tmp_path)
    import symusic

    for s, f in zip(samples, files):
        assert s.invalid_tokens == 0
        assert tok.base.tokens_errors(_tokseq(s.base_ids)) == 0
        assert type_graph_errors(tok, s.base_ids) == 0
        assert s.new_notes > 0 and s.n_notes > 0
        assert s.new_tokens <= 120
        assert symusic.Score(str(f)).note_num() == s.n_notes  # the file holds what we counted
        assert not set(s.ids.tolist()) & {tok.pad_id, tok.bos_id, tok.eos_id}
        assert onsets_never_go_back(s.score)
        if with_prompt:
            assert s.n_notes == 8 + s.new_notes  # 2 bars of quarter notes, every model note kept
            assert s.continuation_start_beat == 8.0


def _tokseq(base_ids):
    from miditok import TokSequence

    return TokSequence(ids=[int(i) for i in base_ids])


@pytest.mark.parametrize("scheme", SCHEMES)
def test_constraint_gives_zero_errors_and_unconstrained_does_not(scheme, prompt_file) -> None:
    tok = tokenizer(scheme)
    model = tiny("gpt", tok, seed=3)
    on = generate(model, prompt_file, n=4, tokenizer=tok, max_tokens=150, seed=2, prompt_bars=2)
    off = generate(model, prompt_file, n=4, tokenizer=tok, max_tokens=150, seed=2, prompt_bars=2, constrain=False)
    assert [s.invalid_tokens for s in on] == [0, 0, 0, 0]
    assert all(type_graph_errors(tok, s.base_ids) == 0 for s in on)
    assert all(s.new_notes > 0 for s in on)
    if scheme != "MIDILike":  # MIDILike's decoder appends a note at its NoteOff
        assert all(onsets_never_go_back(s.score) for s in on)
    # the check can fail: an untrained model left alone breaks the grammar all the time
    assert sum(s.invalid_tokens for s in off) > 0
    assert sum(type_graph_errors(tok, s.base_ids) for s in off) > 0


def test_unconstrained_ends_only_where_a_sequence_can_end(prompt_file) -> None:
    """With the grammar, the end token never follows a pitch that waits for its duration."""
    tok = tokenizer("REMI")
    model = tiny("lstm", tok, seed=5)
    for s in generate(model, None, n=6, tokenizer=tok, max_tokens=60, seed=9):
        last = tok.base_vocab[int(s.base_ids[-1])].split("_")[0]
        assert last in {"Duration", "Rest", "TimeSig"}, last
        assert tok.base_vocab[int(s.base_ids[0])] == "Bar_None"  # REMI starts with a bar


def test_subword_pieces_are_checked_through_their_base_tokens(corpus_files) -> None:
    from melodylm.midi import load_melody

    base = MelodyTokenizer(TokenizerSettings(scheme="REMI"))
    seqs = [base.encode_score(load_melody(f).score) for f in corpus_files[:400:20]]
    base.train_subwords(seqs, "bpe", vocab_size=base.base_vocab_size + 150)
    tok = base
    g = Grammar(tok)
    multi = [i for i in range(tok.vocab_size) if len(tok.decode_ids([i])) > 1]
    assert multi and all(bool(g.piece_ok[i]) for i in multi[:50])  # merges of real data are valid pieces
    model = tiny("gpt", tok, seed=1)
    samples = generate(model, corpus_files[0], n=4, tokenizer=tok, max_tokens=100, seed=4, prompt_bars=2)
    assert [s.invalid_tokens for s in samples] == [0] * 4
    assert all(type_graph_errors(tok, s.base_ids) == 0 for s in samples)
    off = generate(model, corpus_files[0], n=4, tokenizer=tok, max_tokens=100, seed=4, prompt_bars=2,
                   constrain=False)
    assert sum(s.invalid_tokens for s in off) > 0


# ------------------------------------------------------------------ determinism, cache, greedy

def test_same_seed_same_bytes_other_seed_other_tokens(prompt_file, tmp_path) -> None:
    tok = tokenizer()
    model = tiny("gpt", tok)
    a = generate(model, prompt_file, n=3, tokenizer=tok, max_tokens=80, seed=7, prompt_bars=2)
    b = generate(model, prompt_file, n=3, tokenizer=tok, max_tokens=80, seed=7, prompt_bars=2)
    c = generate(model, prompt_file, n=3, tokenizer=tok, max_tokens=80, seed=8, prompt_bars=2)
    fa, fb = write_samples(a, tmp_path / "a"), write_samples(b, tmp_path / "b")
    for x, y in zip(fa, fb):
        assert x.read_bytes() == y.read_bytes()
        assert x.with_suffix(".json").read_bytes() == y.with_suffix(".json").read_bytes()
    assert [s.ids.tolist() for s in a] != [s.ids.tolist() for s in c]
    assert len({tuple(s.ids.tolist()) for s in a}) > 1  # samples of one batch differ


@pytest.mark.parametrize("constrain", [True, False])
def test_gpt_cache_and_no_cache_give_the_same_greedy_tokens(constrain) -> None:
    tok = tokenizer()
    model = tiny("gpt", tok, block_size=96).double()
    prompt = [tok.base.vocab[t] for t in ("Bar_None", "TimeSig_4/4", "Position_0", "Pitch_60", "Duration_1.0.24")]
    kw = dict(top_k=1, constrain=constrain, ignore_eos=True)
    cached = sample_ids(model, tok, n=2, max_new_tokens=80, prompt=prompt, **kw)
    plain = sample_ids(model, tok, n=2, max_new_tokens=80, prompt=prompt, use_cache=False, **kw)
    assert len(cached[0]) == 80
    assert [x.tolist() for x in cached] == [x.tolist() for x in plain]


@pytest.mark.parametrize("arch", ARCHS)
def test_sampled_batch_with_early_ends_matches_the_no_cache_path(arch) -> None:
    """Sequences end at different steps and leave the batch; state and no-cache paths agree."""
    tok = tokenizer()
    model = tiny(arch, tok, seed=3, block_size=128).double()
    runs = [generate_ids(model, tok, n=8, max_new_tokens=100, generator=torch.Generator().manual_seed(5),
                             max_notes=4, use_cache=cache) for cache in (True, False)]
    assert [s.ids.tolist() for s in runs[0]] == [s.ids.tolist() for s in runs[1]]
    assert [s.stop for s in runs[0]] == [s.stop for s in runs[1]]
    assert len({len(s.ids) for s in runs[0]}) >= 4 and "max_notes" in {s.stop for s in runs[0]}


@pytest.mark.parametrize("arch", ARCHS)
def test_top_k_1_is_greedy_argmax_of_forward(arch) -> None:
    tok = tokenizer()
    model = tiny(arch, tok, seed=2).double()
    got = sample_ids(model, tok, n=1, max_new_tokens=20, top_k=1, constrain=False, ignore_eos=True)[0].tolist()
    seq = [tok.bos_id]
    with torch.no_grad():
        for _ in range(20):
            logits = model(torch.tensor([seq]))[0][0, -1]
            logits[tok.eos_id] = float("-inf")
            seq.append(int(logits.argmax()))
    assert got == seq[1:]


def test_tiny_top_p_keeps_only_the_argmax() -> None:
    tok = tokenizer()
    model = tiny("gpt", tok, seed=4)
    greedy = sample_ids(model, tok, n=3, max_new_tokens=40, top_k=1)
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        nucleus = sample_ids(model, tok, n=3, max_new_tokens=40, top_p=1e-9, temperature=5.0, generator=g)
        assert [x.tolist() for x in nucleus] == [x.tolist() for x in greedy]


def test_filter_logits_top_k_and_top_p_by_brute_force() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 12, generator=g)
    for k in (1, 3, 12):
        kept = torch.isfinite(filter_logits(logits, top_k=k))
        assert (kept.sum(1) == k).all()
    for p in (0.1, 0.5, 0.9):
        kept = torch.isfinite(filter_logits(logits, top_p=p))
        probs = torch.softmax(logits, -1)
        for row in range(50):
            order = probs[row].argsort(descending=True).tolist()
            need = next(i for i in range(12) if probs[row, order[: i + 1]].sum() >= p) + 1
            assert set(torch.nonzero(kept[row]).flatten().tolist()) == set(order[:need])
    hot = filter_logits(logits, temperature=0.5)
    torch.testing.assert_close(hot, logits * 2)


def test_pick_tokens_samples_the_distribution() -> None:
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05, 0.0])
    logits = probs.log().expand(40000, 5)
    g = torch.Generator().manual_seed(1)
    got = torch.bincount(pick_tokens(logits, generator=g), minlength=5).float() / 40000
    torch.testing.assert_close(got, probs, atol=0.01, rtol=0)
    assert pick_tokens(logits[:3], top_k=1).tolist() == [0, 0, 0]


# ------------------------------------------------------------------ limits

def test_max_notes_gives_exactly_that_many_new_notes(prompt_file) -> None:
    tok = tokenizer()
    model = tiny("gpt", tok, seed=1)
    samples = generate(model, prompt_file, n=6, tokenizer=tok, max_notes=5, max_tokens=400, seed=3, prompt_bars=1)
    assert sum(s.stop == "max_notes" for s in samples) >= 3
    for s in samples:
        assert s.invalid_tokens == 0 and s.new_notes <= 5
        assert (s.new_notes == 5) == (s.stop == "max_notes")
    for s in generate(model, prompt_file, n=4, tokenizer=tok, max_notes=5, max_tokens=400, seed=3, prompt_bars=1,
                      constrain=False):
        assert s.new_notes <= 5


def test_max_bars_and_max_tokens(prompt_file) -> None:
    tok = tokenizer()
    model = tiny("lstm", tok, seed=1)
    bar = tok.base.vocab["Bar_None"]
    for s in generate(model, prompt_file, n=4, tokenizer=tok, max_bars=2, max_tokens=500, seed=5, prompt_bars=1):
        new = s.base_ids[-len(s.ids):] if len(s.ids) else []
        assert int(np.sum(np.asarray(new) == bar)) <= 2
        assert s.invalid_tokens == 0
        assert s.stop in ("max_bars", "eos")
    for s in generate(model, prompt_file, n=4, tokenizer=tok, max_tokens=7, seed=5, prompt_bars=1):
        assert s.new_tokens <= 7 and s.invalid_tokens == 0
    with pytest.raises(UserError, match="--max-bars"):
        generate(tiny("gpt", tokenizer("TSD")), None, tokenizer=tokenizer("TSD"), max_bars=2)


def test_midilike_closes_every_note_before_the_end() -> None:
    tok = tokenizer("MIDILike")
    model = tiny("gpt", tok, seed=2)
    for s in generate(model, None, n=4, tokenizer=tok, max_tokens=40, seed=1):
        names = [tok.base_vocab[i] for i in s.base_ids]
        on = sum(n.startswith("NoteOn") for n in names)
        off = sum(n.startswith("NoteOff") for n in names)
        assert on == off == s.n_notes > 0 and s.invalid_tokens == 0


# ------------------------------------------------------------------ prompts and output

def test_prompt_cut_by_bars_and_notes(prompt_file) -> None:
    tok = tokenizer()
    p = load_prompt(prompt_file, tok, bars=2)
    assert p.n_notes == 8 and p.beats == 8.0  # the held note is cut at the bar line
    assert p.cut == "bars:2" and p.time_signature == (4, 4) and p.tempo == pytest.approx(120.0)
    assert load_prompt(prompt_file, tok, notes=5).n_notes == 5
    three = load_prompt(prompt_file, tok, bars=3)
    assert three.n_notes == 11 and three.beats == 12.0
    whole = load_prompt(prompt_file, tok)
    assert whole.n_notes == 31 and whole.beats == 32.0
    assert bar_start(p.score, 3) == 3 * 4 * int(p.score.ticks_per_quarter)


def test_prompt_in_three_four_cuts_at_its_bar_lines(tmp_path) -> None:
    f = write_midi(tmp_path / "waltz.mid", [Part(scale(0, 12, step=1.0))], time_signature=(3, 4), tempo=90)
    p = load_prompt(f, tokenizer(), bars=2)
    assert p.n_notes == 6 and p.beats == 6.0 and p.time_signature == (3, 4)
    assert p.tempo == pytest.approx(90.0, abs=1e-3)  # MIDI stores microseconds per beat


def test_prompt_notes_outside_the_pitch_range_are_reported(tmp_path) -> None:
    f = write_midi(tmp_path / "wide.mid", [Part([(0, 1, 10), (1, 1, 60), (2, 1, 62), (3, 1, 120)])])
    p = load_prompt(f, tokenizer())
    assert p.dropped_pitches == [10, 120] and p.n_notes == 2


@pytest.mark.parametrize("notes,match", [([], "no notes"), ([(0, 1, 5)], "pitch range")])
def test_prompt_without_usable_notes_is_a_user_error(tmp_path, notes, match) -> None:
    f = write_midi(tmp_path / "empty.mid", [Part(notes)])
    with pytest.raises(UserError, match=match):
        load_prompt(f, tokenizer())
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"not midi at all")
    with pytest.raises(UserError, match="not a MIDI file"):
        load_prompt(bad, tokenizer())


def test_continuation_only_holds_the_new_notes_from_their_bar(prompt_file) -> None:
    from collections import Counter

    tok = tokenizer()
    model = tiny("gpt", tok, seed=6)
    kw = dict(n=4, tokenizer=tok, max_tokens=60, seed=11, prompt_bars=3)
    keep = generate(model, prompt_file, keep_prompt=True, **kw)
    cont = generate(model, prompt_file, keep_prompt=False, **kw)
    prompt = Counter((n.time, n.duration, n.pitch) for n in keep[0].score.tracks[0].notes
                     if n.time + n.duration <= 12 * int(keep[0].score.ticks_per_quarter))
    assert sum(prompt.values()) == 11
    assert sum(k.new_notes > 0 for k in keep) >= 2
    for k, c in zip(keep, cont):
        assert k.ids.tolist() == c.ids.tolist()
        assert k.n_notes == 11 + c.n_notes == 11 + k.new_notes
        if not k.new_notes:
            continue
        tpq = int(k.score.ticks_per_quarter)
        new = Counter((n.time, n.duration, n.pitch) for n in k.score.tracks[0].notes) - prompt
        shift = min(t for t, _, _ in new) - min(n.time for n in c.score.tracks[0].notes)
        assert shift % (4 * tpq) == 0 and 0 <= shift <= 12 * tpq  # moved back by whole bars
        assert sorted((t - shift, d, p) for t, d, p in new.elements()) == \
            sorted((n.time, n.duration, n.pitch) for n in c.score.tracks[0].notes)
        assert k.continuation_start_beat == 12.0
        assert c.continuation_start_beat == 12.0 - shift / tpq


def test_validate_options_table() -> None:
    bad = [dict(n=0), dict(temperature=0.0), dict(temperature=-1.0), dict(temperature=float("nan")),
           dict(top_k=-1), dict(top_p=0.0), dict(top_p=1.5), dict(max_tokens=-1), dict(max_notes=-2),
           dict(max_bars=-3), dict(prompt_bars=0), dict(prompt_notes=0)]
    for options in bad:
        with pytest.raises(UserError):
            validate_options(**options)
    validate_options(n=1, temperature=0.5, top_k=0, top_p=1.0, max_tokens=0)


def test_generated_ids_keep_their_old_contract() -> None:
    """train.py logs a sample through generate_ids: new ids, end token excluded, one array per sequence."""
    tok = tokenizer()
    model = tiny("bilstm", tok)
    out = sample_ids(model, tok, n=2, max_new_tokens=30, generator=torch.Generator().manual_seed(0))
    assert len(out) == 2 and all(x.dtype == np.int64 and len(x) <= 30 for x in out)
    assert all(tok.eos_id not in x.tolist() for x in out)
    seqs = generate_ids(model, tok, n=2, max_new_tokens=0)
    assert [len(s.ids) for s in seqs] == [0, 0] and {s.stop for s in seqs} == {"max_tokens"}


class ScriptedModel:
    """A stand-in model whose logits favour a fixed list of tokens, one step after another.

    At step ``t`` the token ``script[t]`` gets a logit of 50 and Bar tokens 20 (every other id
    0), so a draw takes the scripted token unless the grammar forbids it, and a Bar next.
    """

    def __init__(self, tok: MelodyTokenizer, script: list[str]) -> None:
        self.V, self.script = tok.vocab_size, [tok.base_vocab.index(t) for t in script]
        self.bars = [i for i, t in enumerate(tok.base_vocab) if t.startswith("Bar")]

    def _logits(self, state: dict) -> torch.Tensor:
        out = torch.zeros(state["n"], self.V)
        out[:, self.bars] = 20.0
        if state["t"] < len(self.script):
            out[:, self.script[state["t"]]] = 50.0
        return out

    def init_state(self, n: int, device) -> dict:
        return {"n": n, "t": 0}

    def prefill(self, idx: torch.Tensor, state: dict):
        return self._logits({"n": idx.size(0), "t": 0}), {"n": idx.size(0), "t": 0}

    def decode(self, idx: torch.Tensor, state: dict):
        state = {"n": idx.size(0), "t": state["t"] + 1}
        return self._logits(state), state


def test_a_rest_over_the_bar_limit_does_not_end_a_sample(tmp_path) -> None:
    """`Pitch_85 Duration_10.1.4` then a 12-beat rest in 2/4 ends past bar 8: that rest is redrawn.

    The long note's end is 5 bars on, and REMI's Rest counts from there: before the fix the rest
    made the bar count jump past max_bars=8 and the sample stopped "max_bars" after 2 tokens.
    """
    tok = tokenizer()
    f = write_midi(tmp_path / "two.mid", [Part(scale(0, 8, step=0.5))], time_signature=(2, 4))
    prompt = load_prompt(f, tok)
    model = ScriptedModel(tok, ["Pitch_85", "Duration_10.1.4", "Rest_12.0.2"])
    out = generate_ids(model, tok, n=1, max_new_tokens=40, prompt=tok.encode_ids(prompt.base_ids).tolist(),
                       max_bars=8, generator=torch.Generator().manual_seed(0))[0]
    names = [tok.token_str(i) for i in tok.decode_ids(out.ids)]
    assert names[:2] == ["Pitch_85", "Duration_10.1.4"] and "Rest_12.0.2" not in names
    assert len(names) > 2 and names[2].startswith("Bar")
    assert out.stop == "max_bars" and names.count("Bar_None") == 8  # it ends where a ninth bar would begin
    # unconstrained sampling keeps the raw behaviour: the rest is drawn and crosses the limit
    raw = generate_ids(model, tok, n=1, max_new_tokens=40, prompt=tok.encode_ids(prompt.base_ids).tolist(),
                       max_bars=8, constrain=False, generator=torch.Generator().manual_seed(0))[0]
    assert len(raw.ids) == 2 and raw.stop == "max_bars"


def test_notes_have_one_velocity_with_or_without_the_prompt(prompt_file) -> None:
    tok = tokenizer()
    model = tiny("gpt", tok, seed=6)
    kw = dict(n=2, tokenizer=tok, max_tokens=60, seed=11, prompt_bars=3)
    keep = generate(model, prompt_file, keep_prompt=True, **kw)
    cont = generate(model, prompt_file, keep_prompt=False, **kw)
    velocities = {n.velocity for s in keep + cont for n in s.score.tracks[0].notes}
    assert velocities == {100}  # miditok decodes melodies without Velocity tokens at 100
