"""Fill in the middle: cutting at bars counted in time, rearranging, and splicing a middle back."""

from __future__ import annotations

import numpy as np
import pytest
import symusic

from conftest import Part, write_midi
from melodylm.errors import UserError
from melodylm.infill import (FIM_RATE, Sentinels, notes_of, _sub_score, bar_starts, check_span, choose_span,
                             count_bars, fill_prompt, fim_parts, left_only, parse_span,
                             rearrange, splice, training_sequence)
from melodylm.tokenizer import MelodyTokenizer

S = Sentinels(suffix=1000, middle=1001, end=1002)


@pytest.fixture(scope="module")
def tok():
    return MelodyTokenizer()  # REMI with rests and time signatures, as `melodylm tokenize` builds it


@pytest.fixture(scope="module")
def tunes(tok, corpus_files):
    files = corpus_files[:: max(1, len(corpus_files) // 6)][:6]
    return [tok.encode_score(symusic.Score(str(f))) for f in files]


def new_middle(tok, base_ids, span, shift=2, extra_bars=0):
    """Middle tokens of the same tune with the span's notes moved ``shift`` semitones (and, with
    ``extra_bars``, one more note that many bars after the span's end)."""
    score = tok.decode_score(base_ids)
    notes = notes_of(score)
    parts = fim_parts(tok, base_ids, span)
    t_a, t_b1 = parts.bar_ticks
    pre = notes[notes[:, 0] < t_a]
    mid = notes[(notes[:, 0] >= t_a) & (notes[:, 0] < t_b1)].copy()
    mid[:, 2] += shift
    if extra_bars:
        starts = bar_starts(score, t_b1 + 1)
        bar = int(np.searchsorted(starts, t_b1)) + extra_bars - 1
        mid = np.concatenate([mid, [[bar_starts(score, t_b1 * 4)[bar], 12, 70]]])
    ids = tok.encode_score(_sub_score(score, np.concatenate([pre, mid])))
    return ids[len(parts.prefix):], mid


def test_cut_is_the_tunes_own_tokens_and_original_middle_splices_back(tok, tunes):
    for ids in tunes:
        n = count_bars(tok.decode_score(ids))
        for span in [(1, 2), (n // 2, n // 2 + 1), (n - 1, n), (2, n - 1)]:
            p = fim_parts(tok, ids, span)
            k = len(p.prefix) + len(p.middle)
            assert np.array_equal(np.concatenate([p.prefix, p.middle]), ids[:k])
            assert tok.token_str(int(p.suffix[0])) == "Bar_None" if len(p.suffix) else span[1] == n
            _, back = splice(tok, ids, span, p.middle)
            assert np.array_equal(back, ids)


def test_new_middle_keeps_every_note_outside_the_span(tok, tunes):
    for ids in tunes:
        n = count_bars(tok.decode_score(ids))
        span = (n // 3, n // 3 + 3)
        middle, mid_notes = new_middle(tok, ids, span)
        assert not np.array_equal(middle, fim_parts(tok, ids, span).middle)
        score, back = splice(tok, ids, span, middle)
        old, new = notes_of(tok.decode_score(ids)), notes_of(score)
        t_a, t_b1 = fim_parts(tok, ids, span).bar_ticks
        outside = lambda x: x[(x[:, 0] < t_a) | (x[:, 0] >= t_b1)]  # noqa: E731
        assert np.array_equal(outside(old), outside(new))  # onset, duration, pitch
        inside = new[(new[:, 0] >= t_a) & (new[:, 0] < t_b1)]
        assert np.array_equal(inside, mid_notes)
        assert count_bars(score) == n
        assert np.array_equal(bar_starts(score, t_b1), bar_starts(tok.decode_score(ids), t_b1))
        assert np.array_equal(notes_of(tok.decode_score(back)), new)  # the returned ids are the score


def test_bars_are_counted_in_time_across_rests(tmp_path, tok):
    # 4/4; a rest over bars 2-3 leaves no Bar token for them; bar 4 and 5 hold notes.
    notes = [(0, 1, 60), (1, 1, 62), (12, 1, 64), (13, 1, 65), (16, 2, 67), (18, 2, 69)]
    path = write_midi(tmp_path / "rest.mid", [Part(notes)])
    ids = tok.encode_score(symusic.Score(str(path)))
    assert sum(tok.token_str(int(i)) == "Bar_None" for i in ids) < 5
    assert count_bars(tok.decode_score(ids)) == 5
    p = fim_parts(tok, ids, (4, 4))
    assert tok.count_notes(p.prefix) == 2 and tok.count_notes(p.middle) == 2 and tok.count_notes(p.suffix) == 2
    empty = fim_parts(tok, ids, (2, 3))
    assert len(empty.middle) == 0 and tok.count_notes(empty.suffix) == 4
    _, back = splice(tok, ids, (2, 3), empty.middle)
    assert np.array_equal(back, ids)


def test_a_middle_that_does_not_fill_the_span_exactly_is_refused(tok, tunes):
    ids = tunes[0]
    n = count_bars(tok.decode_score(ids))
    span = (2, 3)
    over, _ = new_middle(tok, ids, span, shift=0, extra_bars=1)
    with pytest.raises(ValueError, match="exactly 2 bar"):
        splice(tok, ids, span, over)
    assert n > 3


def test_a_middle_in_another_meter_is_refused(tmp_path, tok):
    # 4/4, one note per bar; the middle of bars 2..3 is written in 3/4: its notes start inside the
    # span's time, but its bar lines are not the tune's.
    path = write_midi(tmp_path / "m.mid", [Part([(4 * i, 1, 60 + i) for i in range(5)])])
    ids = tok.encode_score(symusic.Score(str(path)))
    score = tok.decode_score(ids)
    p = fim_parts(tok, ids, (2, 3))
    t_a = p.bar_ticks[0]
    beat = int(score.ticks_per_quarter)
    notes = np.array([[0, beat, 60], [t_a, beat, 61], [t_a + 3 * beat, beat, 62]])
    waltz = _sub_score(score, notes)
    waltz.time_signatures.append(symusic.TimeSignature(t_a, 3, 4))
    middle = tok.encode_score(waltz)[len(p.prefix):]
    assert "TimeSig_3/4" in [tok.token_str(int(i)) for i in middle]
    with pytest.raises(ValueError, match="bar lines"):
        splice(tok, ids, (2, 3), middle)


def test_rearrange_left_only_and_prompt(tok, tunes):
    ids = tunes[1]
    p = fim_parts(tok, ids, (3, 6))
    head = [tok.bos_id, 2000, 2001]
    seq, mask = rearrange(p, S, head)
    assert len(seq) == len(head) + len(p.prefix) + len(p.suffix) + len(p.middle) + 3
    assert list(seq[:3]) == head and seq[-1] == S.end
    assert np.array_equal(seq[mask], p.middle)
    left, lmask = left_only(p, head)
    assert np.array_equal(left[lmask], seq[mask]) and S.suffix not in left
    assert np.array_equal(left[~lmask], np.concatenate([head, p.prefix]))
    prompt = fill_prompt(p, S, head)
    assert prompt[-1] == S.middle and np.array_equal(seq[:len(prompt)], prompt)
    assert np.array_equal(seq[len(prompt):-1], p.middle)


def test_suffix_first_order(tok, tunes):
    p = fim_parts(tok, tunes[1], (3, 6))
    head = [tok.bos_id, 2000]
    spm = Sentinels(S.suffix, S.middle, S.end, "spm")
    seq, mask = rearrange(p, spm, head)
    want = np.concatenate([head, [S.suffix], p.suffix, [S.middle], p.prefix, p.middle, [S.end]])
    assert np.array_equal(seq, want) and np.array_equal(seq[mask], p.middle)
    prompt = fill_prompt(p, spm, head)
    assert np.array_equal(prompt, want[:len(want) - 1 - len(p.middle)])  # ends with the prefix
    left, lmask = left_only(p, head)
    assert np.array_equal(left[lmask], seq[mask])  # the same middle tokens in both orders


def test_subword_parts_are_encoded_alone(tok, tunes):
    sub = MelodyTokenizer(tok.settings)
    sub.train_subwords(tunes, "bpe", tok.base_vocab_size + 30)
    p = fim_parts(tok, tunes[2], (2, 5))
    seq, mask = rearrange(p, Sentinels(*(sub.vocab_size + i for i in range(3))), [sub.bos_id], sub.encode_ids)
    assert np.array_equal(sub.decode_ids(seq[mask]), p.middle)
    left, lmask = left_only(p, [sub.bos_id], sub.encode_ids)
    assert np.array_equal(left[lmask], seq[mask])


def test_choose_span_seeded_bounded_and_at_its_rate():
    a = [choose_span(16, np.random.default_rng(3)) for _ in range(3)]
    assert a[0] == a[1] == a[2]
    rng = np.random.default_rng(0)
    spans = [choose_span(n, rng, max_bars=4) for n in range(2, 2000)]
    chosen = [(s, n) for s, n in zip(spans, range(2, 2000)) if s is not None]
    assert abs(len(chosen) / len(spans) - FIM_RATE) < 0.03
    assert all(1 <= s[0] <= s[1] <= n and s[1] - s[0] < min(4, n - 1) for s, n in chosen)
    assert {s[1] - s[0] + 1 for s, n in chosen} == {1, 2, 3, 4}
    assert choose_span(1, rng, rate=1.0) is None and choose_span(8, rng, rate=0.0) is None
    # the stream of draws does not depend on the outcome
    r1, r2 = np.random.default_rng(5), np.random.default_rng(5)
    choose_span(1, r1), choose_span(50, r2)
    assert r1.random() == r2.random()


def test_span_flags():
    assert parse_span("5:8") == (5, 8) and parse_span(" 3 : 3 ") == (3, 3)
    for bad in ["8:5", "0:2", "5", "a:b", "5-8"]:
        with pytest.raises(UserError, match="--fill"):
            parse_span(bad)
    check_span((5, 8), 8)
    with pytest.raises(UserError, match="the tune has 6 bar"):
        check_span((5, 8), 6)


def test_training_sequence_seeded_with_controls_and_spans(tok, tunes):
    from melodylm.controls import ExtraVocab, control_tokens

    vocab = ExtraVocab.build(tok.vocab_size, {"key": ["G minor"], "meter": ["2/4"], "style": ["x"]})
    c = {"key": "G minor", "key_source": "file", "meter": "2/4", "style": "x"}
    a = training_sequence(tok, tunes[0], c, vocab, np.random.default_rng([1, 2]))
    b = training_sequence(tok, tunes[0], c, vocab, np.random.default_rng([1, 2]))
    assert np.array_equal(a[0], b[0]) and a[1] == b[1]
    rng = np.random.default_rng(0)
    seen_fim = seen_plain = 0
    for _ in range(12):
        ids, span = training_sequence(tok, tunes[0], c, vocab, rng)
        assert ids[0] == tok.bos_id
        names = [vocab.name(int(i)) for i in ids[vocab.is_extra(ids)]]
        controls = [t for t in names if t not in ("FILL_SUFFIX", "FILL_MIDDLE", "FILL_END")]
        assert controls == [t for t in control_tokens(c) if t in controls]  # kept ones, in order
        assert [vocab.name(int(i)) for i in ids[1:1 + len(controls)]] == controls  # right after BOS
        if span is None:
            seen_plain += 1
            assert ids[-1] == tok.eos_id and np.array_equal(vocab.strip(ids)[1:-1], tunes[0])
        else:
            seen_fim += 1
            parts = fim_parts(tok, tunes[0], span)
            assert ids[-1] == vocab.id("FILL_END")
            assert np.array_equal(ids[len(ids) - 1 - len(parts.middle):-1], parts.middle)
    assert seen_fim and seen_plain
    plain, span = training_sequence(tok, tunes[0], c, vocab, rng, fim_rate=0.0, control_dropout=0.0)
    assert span is None and list(plain[1:4]) == list(vocab.prefix_ids(c))


def test_suffix_can_be_cut_to_its_first_bars(tok, tunes):
    ids = tunes[3]
    n = count_bars(tok.decode_score(ids))
    full = fim_parts(tok, ids, (2, 3))
    for k in (0, 1, 2):
        short = fim_parts(tok, ids, (2, 3), suffix_bars=k)
        assert np.array_equal(short.prefix, full.prefix) and np.array_equal(short.middle, full.middle)
        assert count_bars(tok.decode_score(short.suffix)) <= k
        assert np.array_equal(short.suffix, full.suffix[:len(short.suffix)]) or k == 0
    assert np.array_equal(fim_parts(tok, ids, (2, 3), suffix_bars=n).suffix, full.suffix)
