"""MelodyTokenizer: whole-corpus MIDI -> tokens -> MIDI round trip at the grid, subwords, serialization."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import Part, scale, write_midi
from melodylm.dataset import SPLITS, Dataset, TokenizeConfig, tokenize
from melodylm.midi import load_melody, note_array, skyline
from melodylm.tokenizer import SCHEMES, MelodyTokenizer, TokenizerSettings
from melodylm.tokenizer import miditok_adapter

warnings.filterwarnings("ignore", module="miditok")

# The default grid (TokenizerSettings.beat_res): onsets and durations up to 4 beats in 1/24 beat,
# durations of 4..12 beats in 1/4 beat, longer durations clipped to 12 beats.
FINE, COARSE, FINE_UNTIL, LONGEST = 1 / 24, 1 / 4, 4.0, 12.0
EPS = 1e-9


def beats_per_quarter(score, uses_time_signatures: bool) -> np.ndarray:
    """For each time signature section: (start tick, quarters per beat). miditok's beat is 1/denominator."""
    sigs = [(ts.time, 4 / ts.denominator) for ts in score.time_signatures] if uses_time_signatures else []
    return np.array(sigs or [(0, 1.0)], dtype=np.float64)


def in_beats(notes: np.ndarray, tpq: int, sections: np.ndarray) -> np.ndarray:
    """(onset, duration) in beats relative to the first onset, and the beat length, per note."""
    beat_q = sections[np.searchsorted(sections[:, 0], notes[:, 0], side="right") - 1, 1]
    onset = (notes[:, 0] - notes[0, 0]) / tpq / beat_q
    return np.stack([onset, notes[:, 1] / tpq / beat_q, beat_q], axis=1)


def grid_mismatches(src: np.ndarray, src_tpq: int, dec: np.ndarray, dec_tpq: int, sections: np.ndarray) -> str:
    """Empty when ``dec`` holds the notes of ``src`` at the grid, else what differs."""
    if len(src) != len(dec):
        return f"{len(src)} notes in the source, {len(dec)} decoded"
    if not np.array_equal(np.sort(src[:, 2]), np.sort(dec[:, 2])):
        return "the pitches differ"
    s = in_beats(src, src_tpq, sections)
    # the decoded score keeps its time signatures at the same musical place: scale its ticks
    d = in_beats(dec, dec_tpq, sections * [dec_tpq / src_tpq, 1])
    # notes closer than a step share a decoded onset and come out ordered by pitch: order the
    # source notes the same way before comparing note by note
    order = np.lexsort((src[:, 2], np.round(s[:, 0] / FINE)))
    src, s = src[order], s[order]
    if not np.array_equal(src[:, 2], dec[:, 2]):
        return f"pitches differ at note {int(np.flatnonzero(src[:, 2] != dec[:, 2])[0])}"
    onset_err = np.abs(s[:, 0] - d[:, 0])
    if onset_err.max() > FINE / 2 + EPS:
        i = int(onset_err.argmax())
        return f"onset of note {i}: {s[i, 0]:.4f} beats in the source, {d[i, 0]:.4f} decoded"
    want = np.clip(s[:, 1], FINE, LONGEST)  # a note is never shorter than one step
    tol = np.where(want <= FINE_UNTIL, FINE / 2, COARSE / 2) + EPS
    bad = np.flatnonzero(np.abs(want - d[:, 1]) > tol)
    if len(bad):
        i = int(bad[0])
        return f"duration of note {i}: {s[i, 1]:.4f} beats in the source, {d[i, 1]:.4f} decoded"
    return ""


@pytest.fixture(scope="module")
def corpus_dataset(corpus_files, tmp_path_factory):
    """Per scheme, the whole embedded corpus tokenized once with BPE subwords."""
    built: dict[str, tuple[Path, float]] = {}

    def get(scheme: str) -> tuple[Path, float]:
        if scheme not in built:
            out = tmp_path_factory.mktemp(f"corpus_{scheme}") / "data"
            t0 = time.perf_counter()
            tokenize(TokenizeConfig(inputs=[str(corpus_files[0].parent)], out_dir=str(out), scheme=scheme,
                                    subword="bpe", workers=2), progress=False)
            built[scheme] = out, time.perf_counter() - t0
        return built[scheme]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("scheme", SCHEMES)
def test_whole_corpus_round_trip_at_grid(corpus_dataset, corpus_files, scheme):
    import symusic

    data_dir, _ = corpus_dataset(scheme)
    ds = Dataset(data_dir)
    tok = ds.tokenizer
    manifest = ds.manifest()
    assert len(manifest) == len(corpus_files)
    assert all(r["status"] == "ok" for r in manifest), [r for r in manifest if r["status"] != "ok"][:3]
    uses_ts = tok.settings.use_time_signatures and scheme != "Structured"
    checked, problems = 0, []
    for split in SPLITS:
        sp = ds.split(split)
        for row in range(len(sp)):
            seq = sp.tune(row)
            model_ids = seq[tok.head_length(seq):-1]  # after BOS and the control tokens
            base = tok.decode_ids(model_ids)
            assert np.array_equal(tok.encode_ids(base), model_ids), "subwords do not round-trip exactly"
            path = manifest[int(sp.index["source"][row])]["path"]
            src_score = symusic.Score(path)
            # the melody is the file's one track reduced to its top line (double stops lose
            # their lower note, and the manifest counts it)
            src, dropped = skyline(note_array(src_score.tracks[0]))
            assert manifest[int(sp.index["source"][row])]["melody"]["dropped_notes"] == dropped
            dec_score = tok.decode_score(base)
            dec = note_array(dec_score.tracks[0])
            why = grid_mismatches(src, src_score.ticks_per_quarter, dec, dec_score.ticks_per_quarter,
                                  beats_per_quarter(src_score, uses_ts))
            if why:
                problems.append(f"{Path(path).name}: {why}")
            checked += 1
    assert checked == len(corpus_files)
    assert not problems, f"{len(problems)} tunes off the grid, e.g. {problems[:5]}"


@pytest.mark.slow
def test_subword_pieces_never_cross_a_bar(corpus_dataset):
    """Every subword piece holds at most one Bar token, and only as its first token.

    Only REMI writes Bar tokens (miditok's TSD, MIDILike and Structured have none), so only REMI
    pieces can be cut at bar lines.
    """
    tok = Dataset(corpus_dataset("REMI")[0]).tokenizer
    bar = set(tok._bar_ids.tolist())
    assert len(bar) == 1 and tok.vocab_size > tok.base_vocab_size  # merges were learned
    crossing = []
    for piece_id in range(tok.core_vocab_size):
        base = tok.decode_ids([piece_id]).tolist()
        if any(b in bar for b in base[1:]):
            crossing.append([tok.token_str(b) for b in base])
    assert not crossing, crossing[:3]


def test_dataset_tokens_match_direct_encoding(tiny_dataset):
    """What the dataset stores is what encode_score gives for the file's melody."""
    ds = Dataset(tiny_dataset)
    manifest = ds.manifest()
    sp = ds.split("train")
    for row in range(min(len(sp), 10)):
        path = manifest[int(sp.index["source"][row])]["path"]
        direct = ds.tokenizer.encode_score(load_melody(path).score)
        seq = sp.tune(row)
        assert np.array_equal(seq[ds.tokenizer.head_length(seq):-1], direct)
        assert sp.tune(row)[0] == ds.tokenizer.bos_id and sp.tune(row)[-1] == ds.tokenizer.eos_id


# --- chord detection shortcut against plain miditok ---------------------------------------------
def plain_miditok(scheme: str):
    """miditok with the same settings, all programs listed and chord detection always on."""
    import miditok

    cfg = TokenizerSettings(scheme=scheme).miditok_config()
    cfg.programs = set(range(-1, 128))
    return getattr(miditok, scheme)(cfg)


@pytest.fixture(scope="module")
def tokenizers():
    return {s: (MelodyTokenizer(TokenizerSettings(scheme=s)), plain_miditok(s)) for s in ("REMI", "TSD", "MIDILike")}


def score_of(notes: list[tuple[int, int, int]], tpq: int, ts: tuple[int, int]):
    import symusic

    from melodylm.midi import make_track

    score = symusic.Score(tpq)
    score.time_signatures.append(symusic.TimeSignature(0, *ts))
    arr = np.array(sorted(notes), dtype=np.int64).reshape(-1, 3)
    score.tracks.append(make_track(arr))
    return score


# Single notes and chord shapes miditok knows, their onsets spread by up to two grid steps (miditok
# still finds chords spread over 1.45 steps), so both sides of the shortcut's limit are exercised.
SHAPES = [(0,), (0,), (0, 4, 7), (0, 3, 7), (0, 4, 7, 10), (0, 3, 6), (0, 5, 7)]
events = st.lists(st.tuples(st.integers(0, 400), st.integers(1, 200), st.integers(48, 72), st.sampled_from(SHAPES),
                            st.lists(st.integers(0, 40), min_size=4, max_size=4)), min_size=1, max_size=25)


@pytest.mark.slow
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=events, tpq=st.sampled_from([96, 480]), ts=st.sampled_from([(4, 4), (6, 8), (2, 2), (3, 4)]),
       spread=st.sampled_from([1, 4, 12]))
def test_chord_shortcut_gives_plain_miditok_tokens(tokenizers, events, tpq, ts, spread):
    # jitter up to two 1/24-beat steps of a quarter-note beat, at either resolution
    notes = [(t * spread + jit[k] * tpq // 480, d, root + step) for t, d, root, shape, jit in events
             for k, step in enumerate(shape)]
    score = score_of(notes, tpq, ts)
    for scheme, (ours, ref) in tokenizers.items():
        want = ref.encode(score)
        want = np.asarray((want[0] if isinstance(want, list) else want).ids)
        assert np.array_equal(ours.encode_score(score), want), scheme


def test_chords_still_detected_in_polyphony(tokenizers):
    triads = [(b * 480, 480, p) for b in range(0, 8, 2) for p in (60, 64, 67)]
    for scheme, (ours, _) in tokenizers.items():
        tokens = [ours.token_str(i) for i in ours.encode_score(score_of(triads, 480, (4, 4)))]
        assert sum(t.startswith("Chord_") for t in tokens) == 4, scheme


# --- serialization ---------------------------------------------------------------------------------
@pytest.mark.parametrize("scheme", SCHEMES)
def test_to_dict_from_dict_rebuilds_the_same_vocabulary(scheme, tmp_path):
    tok = MelodyTokenizer(TokenizerSettings(scheme=scheme))
    rng = np.random.default_rng(0)
    notes = [(int(t), 240, int(p)) for t, p in zip(np.arange(64) * 240, rng.integers(55, 80, 64))]
    seq = tok.encode_score(score_of(notes, 480, (4, 4)))
    tok.train_subwords([seq, seq[::-1].copy()], "bpe", tok.base_vocab_size + 20)
    again = MelodyTokenizer.from_dict(tok.to_dict())
    assert again.base_vocab == tok.base_vocab
    assert again.base.vocab == tok.base.vocab
    assert again.vocab_size == tok.vocab_size
    assert (again.pad_id, again.bos_id, again.eos_id) == (tok.pad_id, tok.bos_id, tok.eos_id)
    assert np.array_equal(again.encode_ids(seq), tok.encode_ids(seq))
    assert again.fingerprint() == tok.fingerprint()
    tok.save(tmp_path / "t.json")
    assert MelodyTokenizer.load(tmp_path / "t.json").to_dict() == tok.to_dict()


def test_from_dict_rejects_a_changed_vocabulary():
    from melodylm.errors import DataError

    d = MelodyTokenizer().to_dict()
    d["base_vocab"] = d["base_vocab"][::-1]
    with pytest.raises(DataError, match="vocabulary differs"):
        MelodyTokenizer.from_dict(d)


def test_subwords_round_trip_and_ignore_unknown_ids():
    tok = MelodyTokenizer()
    seqs = [tok.encode_score(score_of([(i * 240, 240, 60 + (i * k) % 12) for i in range(48)], 480, (4, 4)))
            for k in range(1, 6)]
    tok.train_subwords(seqs, "unigram", tok.base_vocab_size + 30)
    for s in seqs:
        ids = tok.encode_ids(s)
        assert len(ids) < len(s)
        assert np.array_equal(tok.decode_ids(ids), s)
    # unknown piece and out-of-range ids decode to nothing instead of garbage
    junk = np.concatenate([[tok._sp.unk_id(), tok.vocab_size + 5, -1], tok.encode_ids(seqs[0])])
    assert np.array_equal(tok.decode_ids(junk), seqs[0])


def test_count_notes_counts_pitch_tokens():
    tok = MelodyTokenizer()
    ids = tok.encode_score(score_of(scale_ticks(), 480, (4, 4)))
    assert tok.count_notes(ids) == 8


def scale_ticks() -> list[tuple[int, int, int]]:
    return [(round(t * 480), round(d * 480), p) for t, d, p in scale()]


def test_decode_score_of_written_file(tmp_path):
    """A file written by the test helper decodes back to the same notes (REMI, 3/4)."""
    path = write_midi(tmp_path / "w.mid", [Part(scale(n=12, step=0.5, dur=0.5), name="flute")], time_signature=(3, 4))
    tok = MelodyTokenizer()
    mel = load_melody(path)
    dec = tok.decode_score(tok.encode_score(mel.score))
    src = note_array(mel.score.tracks[0])
    got = note_array(dec.tracks[0])
    assert np.array_equal(got[:, 2], src[:, 2])
    assert np.allclose(got[:, :2] / dec.ticks_per_quarter, src[:, :2] / 480)
    assert [(t.numerator, t.denominator) for t in dec.time_signatures] == [(3, 4)]
    # special tokens around (and padding after) a tune are ignored
    ids = tok.encode_score(mel.score)
    padded = np.concatenate([[tok.bos_id_base], ids, [tok.eos_id_base, tok.pad_id_base, tok.pad_id_base]])
    assert note_array(tok.decode_score(padded).tracks[0]).tolist() == got.tolist()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_miditok_private_members_we_read_are_there(scheme):
    """A new miditok that renames one of its private tables fails here, naming it, not deep in sampling."""
    tok = MelodyTokenizer(TokenizerSettings(scheme=scheme))
    miditok_adapter.check(tok.base)  # raises MiditokChanged naming what is missing
    tpb = miditok_adapter.ticks_per_beat_by_denominator(tok.base)
    assert all(isinstance(d, int) for d in tpb) and tpb[4] > 0
    assert miditok_adapter.first_beat_res(tok.base) == 24  # TokenizerSettings.beat_res starts at 24 per beat
    quarter = tpb[4]
    assert miditok_adapter.duration_ticks(tok.base, quarter)["1.0.24"] == quarter
    assert miditok_adapter.parse_time_signature(tok.base, "6/8") == (6, 8)
    if scheme == "REMI":
        assert miditok_adapter.ticks_per_position(tok.base, quarter) * 24 == quarter
        assert miditok_adapter.rest_ticks(tok.base, quarter)  # rests are on by default


def test_miditok_adapter_names_a_missing_member():
    class Renamed:  # a tokenizer of a miditok that dropped its tables
        _first_beat_res = 24

    with pytest.raises(miditok_adapter.MiditokChanged, match=r"has no _tpb_per_ts.*miditok_adapter\.py"):
        miditok_adapter.check(Renamed())


# --- extras: control tokens and fill-in-the-middle sentinels ---------------------------------------
CONTROLS = [{"key": "D minor", "meter": "6/8", "style": "jigs"}, {"key": "G major", "meter": "4/4", "style": "reels"}]


@pytest.mark.parametrize("subword", ["none", "bpe"])
def test_extras_follow_the_own_ids_and_survive_the_dict(subword):
    tok = MelodyTokenizer()
    seq = tok.encode_score(score_of(scale_ticks(), 480, (4, 4)))
    if subword != "none":
        tok.train_subwords([seq, seq[::-1].copy()], subword, tok.base_vocab_size + 10)
    plain = tok.fingerprint()
    own = tok.vocab_size
    vocab = tok.set_extra(CONTROLS)
    assert vocab.offset == tok.core_vocab_size == own
    assert tok.vocab_size == own + 3 + 1 + 2 + 2 + 2  # sentinels, window cut, keys, meters, styles
    assert tok.has_controls and tok.has_infill
    again = MelodyTokenizer.from_dict(tok.to_dict())
    assert again.extra == tok.extra and again.vocab_size == tok.vocab_size
    assert again.fingerprint() == tok.fingerprint() != plain
    assert again.fingerprint(extras=False) == plain == tok.without_extra().fingerprint()
    head = tok.head_ids({"key": "G major", "meter": None, "style": "reels"})
    assert head.tolist() == [tok.bos_id, vocab.id("Key_G_major"), vocab.id("Style_reels")]
    ids = np.concatenate([head, tok.encode_ids(seq), [tok.eos_id]])
    assert tok.head_length(ids) == 3
    # decoding drops the extras, so a sequence with controls decodes to the tune
    assert np.array_equal(tok.decode_ids(ids[1:-1]), seq)
    assert np.array_equal(tok.strip(ids), np.concatenate([[tok.bos_id], tok.encode_ids(seq), [tok.eos_id]]))


def test_a_tokenizer_without_extras_is_unchanged():
    """Every tokenizer saved before controls: no "extra" key, no extra ids, the same fingerprint."""
    tok = MelodyTokenizer()
    d = tok.to_dict()
    assert "extra" not in d
    again = MelodyTokenizer.from_dict(d)
    assert again.extra is None and not again.has_controls and not again.has_infill
    assert again.vocab_size == again.core_vocab_size == again.base_vocab_size
    assert again.head_ids().tolist() == [tok.bos_id]
    assert again.head_length([tok.bos_id, 5, 6]) == 1
    with pytest.raises(KeyError):
        again.prefix_ids({"key": "D minor"})


def test_extras_that_do_not_follow_the_own_ids_are_refused():
    from melodylm.errors import DataError

    tok = MelodyTokenizer()
    tok.set_extra(CONTROLS)
    d = tok.to_dict()
    d["extra"]["offset"] += 1
    with pytest.raises(DataError, match="extra tokens start"):
        MelodyTokenizer.from_dict(d)
