"""Reading MIDI and choosing the melody, on multi-track files built in code."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import Part, scale, write_midi
from melodylm.dataset import TokenizeConfig, tokenize
from melodylm.midi import content_hash, load_melody, note_array, polyphony_ratio, skyline, transpose
from melodylm.tokenizer import MelodyTokenizer

TPQ = 480

DRUMS = Part([(b * 0.5, 0.25, 42) for b in range(16)] + [(b, 0.25, 36) for b in range(8)], name="Drums",
             is_drum=True)
BASS = Part(scale(low=36), name="Bass", program=33)
PAD = Part([(b, 2.0, p) for b in range(0, 8, 2) for p in (76, 79, 84)], name="Strings", program=48)


def pitches(mel) -> list[int]:
    return note_array(mel.score.tracks[0])[:, 2].tolist()


def test_melody_chosen_by_track_name(tmp_path):
    # the named track is neither the highest nor the first
    path = write_midi(tmp_path / "f.mid", [BASS, PAD, Part(scale(low=55), name="Lead Vocal"), DRUMS])
    mel = load_melody(path)
    assert mel.status == "ok"
    assert mel.info["track"] == 2 and mel.info["track_name"] == "Lead Vocal"
    assert "named" in mel.info["why"]
    assert pitches(mel) == [p for _, _, p in scale(low=55)]


def test_melody_is_highest_mostly_monophonic_track(tmp_path):
    # Strings (chords) are highest but polyphonic; the flute is the highest monophonic track
    flute = Part(scale(low=67, step=0.5, dur=0.5, n=16), name="Flute", program=73)
    oboe = Part(scale(low=60, step=0.5, dur=0.5, n=16), name="Oboe", program=68)
    path = write_midi(tmp_path / "f.mid", [BASS, oboe, PAD, flute])
    mel = load_melody(path)
    assert mel.info["track"] == 3
    assert mel.info["why"] == "highest mostly-monophonic track"
    assert polyphony_ratio(note_array(mel.score.tracks[0])) == 0
    assert mel.info["dropped_tracks"] == [0, 1, 2]
    assert mel.info["dropped_track_notes"] == len(BASS.notes) + 16 + len(PAD.notes)
    assert mel.score.tracks[0].program == 73


def test_drums_are_never_the_melody(tmp_path):
    # the drum track is the highest and monophonic-looking (hi-hat at 42 above the bass)
    hats = Part([(b * 0.5, 0.25, 90) for b in range(16)], name="Hats", is_drum=True)
    path = write_midi(tmp_path / "f.mid", [hats, BASS])
    for mode in ("auto", "skyline", "all"):
        mel = load_melody(path, mode)
        assert mel.status == "ok", mode
        assert max(pitches(mel)) < 90, mode
        assert 0 in mel.info["dropped_tracks"], mode


def test_drum_only_file_is_skipped_with_reason(tmp_path):
    path = write_midi(tmp_path / "drums.mid", [DRUMS])
    for mode in ("auto", "skyline", "all", "track:0"):
        mel = load_melody(path, mode)
        assert (mel.status, mel.reason) == ("skipped", "drums only"), mode
        assert mel.score is None


def test_track_n_takes_that_track(tmp_path):
    path = write_midi(tmp_path / "f.mid", [Part(scale(low=72), name="Melody"), BASS, DRUMS])
    mel = load_melody(path, "track:1")
    assert mel.info["track"] == 1
    assert pitches(mel) == [p for _, _, p in BASS.notes]
    assert mel.info["dropped_tracks"] == [0, 2]
    missing = load_melody(path, "track:7")
    assert missing.status == "skipped" and "track 7" in missing.reason
    drums = load_melody(path, "track:2")
    assert (drums.status, drums.reason) == ("skipped", "track 2 is a drum track; pick a pitched one with --melody: "
                                                       "track:0 'Melody' (8 notes), track:1 'Bass' (8 notes)")


def test_skyline_drops_lower_overlapping_notes():
    notes = np.array([
        [0, 480, 60], [0, 480, 64], [0, 480, 67],  # chord: only 67 survives
        [480, 960, 62],                             # long low note ...
        [960, 480, 70],                             # ... cut short by a higher one
        [1200, 240, 65],                            # starts under the sounding 70: dropped
        [1440, 480, 72],
    ], dtype=np.int64)
    line, dropped = skyline(notes)
    assert dropped == 3
    assert line.tolist() == [[0, 480, 67], [480, 480, 62], [960, 480, 70], [1440, 480, 72]]
    assert polyphony_ratio(line) == 0


def skyline_reference(notes: np.ndarray) -> tuple[list[list[int]], int]:
    """The skyline rule written plainly: walk the notes by onset, the highest sounding note wins."""
    line: list[list[int]] = []
    dropped = 0
    for t, d, p in sorted(notes.tolist(), key=lambda n: (n[0], n[2])):
        if d <= 0:
            dropped += 1
        elif line and t == line[-1][0]:  # same onset: the higher note replaces the lower one
            line[-1] = [t, d, p] if p > line[-1][2] else line[-1]
            dropped += 1
        elif line and t < line[-1][0] + line[-1][1] and p <= line[-1][2]:  # under a sounding note
            dropped += 1
        else:
            if line and t < line[-1][0] + line[-1][1]:
                line[-1][1] = t - line[-1][0]  # a higher note cuts the sounding one
            line.append([t, d, p])
    return line, dropped


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 12), st.integers(50, 60)), max_size=30),
       st.booleans())
def test_skyline_matches_the_rule(raw, spaced):
    if spaced:  # mostly already-monophonic lines, which take the fast path
        raw = [(i * 12 + t % 3, d + 1, p) for i, (t, d, p) in enumerate(raw)]  # may overlap by 1..3
    notes = np.array(raw, dtype=np.int64).reshape(-1, 3)
    notes = notes[np.lexsort((notes[:, 2], notes[:, 0]))]
    line, dropped = skyline(notes)
    want, want_dropped = skyline_reference(notes)
    assert line.tolist() == want and dropped == want_dropped
    assert polyphony_ratio(line) == 0


def test_skyline_mode_merges_tracks_and_counts_drops(tmp_path):
    high = Part([(0, 1, 72), (2, 1, 74)], name="a")
    low = Part([(0, 1, 60), (1, 1, 62), (2, 1, 64), (3, 1, 65)], name="b")
    mel = load_melody(write_midi(tmp_path / "f.mid", [low, high]), "skyline")
    assert pitches(mel) == [72, 62, 74, 65]
    assert mel.info["dropped_notes"] == 2
    assert mel.info["dropped_tracks"] == []


def test_all_keeps_chords_and_remi_writes_chord_tokens(tmp_path):
    triads = Part([(b, 1, p) for b in range(0, 8, 2) for p in (60, 64, 67)], name="Piano")
    tune = Part([(b + 1, 1, 72 + b) for b in range(0, 8, 2)], name="Whistle")
    path = write_midi(tmp_path / "f.mid", [triads, tune])
    mel = load_melody(path, "all")
    assert mel.n_notes == 16 and mel.info["dropped_notes"] == 0
    tok = MelodyTokenizer()
    tokens = [tok.token_str(i) for i in tok.encode_score(mel.score)]
    assert sum(t.startswith("Chord_") for t in tokens) == 4
    assert tok.count_notes(tok.encode_score(mel.score)) == 16
    # auto takes the monophonic whistle: no chords
    auto = load_melody(path, "auto")
    assert auto.info["track_name"] == "Whistle"
    assert not any(tok.token_str(i).startswith("Chord_") for i in tok.encode_score(auto.score))


def test_all_removes_duplicate_notes(tmp_path):
    a = Part([(0, 1, 60), (1, 1, 62)], name="a")
    b = Part([(0, 1, 60), (1, 1, 64)], name="b")  # same onset and pitch as a's first note
    mel = load_melody(write_midi(tmp_path / "f.mid", [a, b]), "all")
    assert sorted(pitches(mel)) == [60, 62, 64]
    assert mel.info["dropped_notes"] == 1


def test_melody_keeps_tempo_time_and_resolution(tmp_path):
    path = write_midi(tmp_path / "f.mid", [Part(scale(), name="tune")], tpq=96, time_signature=(6, 8), tempo=90)
    mel = load_melody(path)
    assert mel.score.ticks_per_quarter == 96
    assert [(t.numerator, t.denominator) for t in mel.score.time_signatures] == [(6, 8)]
    assert mel.score.tempos[0].qpm == pytest.approx(90)


def test_transpose_drops_and_counts_out_of_range_notes(tmp_path):
    mel = load_melody(write_midi(tmp_path / "f.mid", [Part(scale(low=96, n=8), name="m")]))
    src = note_array(mel.score.tracks[0])
    up, dropped = transpose(mel.score, 3, (21, 109))
    kept = src[src[:, 2] + 3 < 109]
    assert dropped == len(src) - len(kept) > 0
    assert note_array(up.tracks[0]).tolist() == (kept + [0, 0, 3]).tolist()
    assert note_array(mel.score.tracks[0]).tolist() == src.tolist()  # the input is untouched
    same, none = transpose(mel.score, 0, (21, 109))
    assert none == 0 and note_array(same.tracks[0]).tolist() == src.tolist()


def test_content_hash_ignores_resolution_and_start_shape_hash_ignores_key():
    notes = np.array([[0, 480, 60], [480, 240, 62], [720, 240, 64]], dtype=np.int64)
    coarse = notes.copy()
    coarse[:, :2] //= 5  # the same melody at 96 ticks per quarter
    shifted = notes + [960, 0, 0]
    up = notes + [0, 0, 5]
    h = content_hash(notes, 480)
    assert content_hash(coarse, 96) == h
    assert content_hash(shifted, 480) == h
    assert content_hash(up, 480) != h
    assert content_hash(up, 480, relative_pitch=True) == content_hash(notes, 480, relative_pitch=True)
    assert content_hash(notes[:2], 480) != h


@pytest.mark.parametrize("content, reason", [
    (b"", "empty file"),
    (b"this is not a MIDI file at all\n", "not a MIDI file"),
    (b"RIFF\x00\x00\x00\x00RMIDdata", "RIFF"),
])
def test_unreadable_files_fail_with_reason(tmp_path, content, reason):
    path = tmp_path / "bad.mid"
    path.write_bytes(content)
    mel = load_melody(path)
    assert mel.status == "failed" and reason in mel.reason and mel.score is None


def test_truncated_file_fails_with_reason(tmp_path):
    good = write_midi(tmp_path / "good.mid", [Part(scale(n=40), name="m")])
    data = good.read_bytes()
    bad = tmp_path / "cut.mid"
    for cut in (10, 30, len(data) // 2, len(data) - 3):
        bad.write_bytes(data[:cut])
        mel = load_melody(bad)
        assert mel.status == "failed" and mel.reason.startswith("corrupt MIDI"), (cut, mel.reason)
    bad.write_bytes(data[:14])  # a header and nothing else
    assert (load_melody(bad).status, load_melody(bad).reason) == ("skipped", "no notes")


def test_limits_skip_absurd_files(tmp_path):
    path = write_midi(tmp_path / "long.mid", [Part(scale(n=50, low=40), name="m")])
    assert load_melody(path, max_notes=49).status == "skipped"
    assert "--max-notes 49" in load_melody(path, max_notes=49).reason
    assert load_melody(path, max_beats=20).reason.endswith("(limit --max-beats 20)")
    assert "--max-file-mb" in load_melody(path, max_file_mb=1e-5).reason
    assert load_melody(path, max_notes=50).status == "ok"


def test_missing_file_fails_with_reason(tmp_path):
    mel = load_melody(tmp_path / "nope.mid")
    assert mel.status == "failed" and mel.reason.startswith("cannot read file")


def test_manifest_records_chosen_and_dropped_tracks(tmp_path):
    src = tmp_path / "in"
    write_midi(src / "band.mid", [BASS, Part(scale(low=60), name="Melody"), PAD, DRUMS])
    chords = Part([(0, 1, 60), (0, 1, 64), (1, 1, 62), (1, 1, 65), (2, 1, 67)], name="Piano")
    write_midi(src / "piano.mid", [chords])
    write_midi(src / "kit.mid", [DRUMS])
    tokenize(TokenizeConfig(inputs=[str(src)], out_dir=str(tmp_path / "out"), workers=1), progress=False)
    rows = {r["path"].rsplit("/", 1)[1]: r for r in map(json.loads, open(tmp_path / "out" / "manifest.jsonl"))}
    band = rows["band.mid"]["melody"]
    assert (band["track"], band["track_name"]) == (1, "Melody")
    assert band["dropped_tracks"] == [0, 2, 3]
    assert band["dropped_track_notes"] == len(BASS.notes) + len(PAD.notes) + len(DRUMS.notes)
    assert band["dropped_notes"] == 0
    assert rows["piano.mid"]["melody"]["dropped_notes"] == 2
    assert rows["piano.mid"]["n_notes"] == 3
    assert (rows["kit.mid"]["status"], rows["kit.mid"]["reason"]) == ("skipped", "drums only")


def _score_with_signatures(sigs: list[tuple[int, int, int]], tpq: int = TPQ):
    import symusic

    score = symusic.Score(tpq)
    for t, num, den in sigs:
        score.time_signatures.append(symusic.TimeSignature(t, num, den))
    return score


def test_bar_lines_follow_time_signatures_at_bar_lines():
    from itertools import islice

    from melodylm.midi import bar_lines, bar_start, bar_start_before

    # two bars of 3/4 then 6/8 (3 quarter notes a bar too) then 2/4; 4/4 when there is none
    score = _score_with_signatures([(0, 3, 4), (2 * 3 * TPQ, 2, 4)])
    assert list(islice(bar_lines(score), 5)) == [0, 1440, 2880, 3840, 4800]
    assert bar_start(score, 3) == 3840 and bar_start_before(score, 3839) == 2880
    assert bar_start_before(score, 3840) == 3840 and bar_start_before(score, 0) == 0
    assert list(islice(bar_lines(_score_with_signatures([])), 3)) == [0, 4 * TPQ, 8 * TPQ]
    # a signature inside a bar waits for the next bar line; an invalid one is ignored
    odd = _score_with_signatures([(0, 4, 4), (TPQ, 3, 4), (0, 0, 4)])
    assert list(islice(bar_lines(odd), 3)) == [0, 4 * TPQ, 7 * TPQ]


def test_time_signature_and_beats_per_bar():
    from melodylm.midi import beats_per_bar, time_signature_at

    score = _score_with_signatures([(0, 6, 8), (4 * TPQ, 2, 4)])
    assert time_signature_at(score) == (6, 8) and time_signature_at(score, 4 * TPQ) == (2, 4)
    assert time_signature_at(_score_with_signatures([(TPQ, 3, 4)]), 0) == (3, 4)  # first one if none yet
    assert time_signature_at(_score_with_signatures([])) == (4, 4)
    assert beats_per_bar(6, 8) == 3.0 and beats_per_bar(4, 4) == 4.0


def test_score_notes_and_crop_from(tmp_path):
    import symusic

    from melodylm.midi import crop_from, notes_in_beats, score_notes

    f = write_midi(tmp_path / "two.mid", [Part([(0, 1, 60), (5, 1, 64)], name="Tune", program=40),
                                          Part([(0, 1, 48), (6, 2, 50)], name="Bass")], time_signature=(3, 4))
    score = symusic.Score(str(f))
    notes = score_notes(score)
    assert notes.tolist() == [[0, TPQ, 48], [0, TPQ, 60], [5 * TPQ, TPQ, 64], [6 * TPQ, 2 * TPQ, 50]]
    assert notes_in_beats(notes, TPQ)[3].tolist() == [6.0, 2.0, 50.0]
    assert score_notes(symusic.Score(TPQ)).shape == (0, 3)
    # from beat 5 on: the crop starts at the bar line before it (beat 3), keeping bar positions
    out, moved = crop_from(score, notes[notes[:, 0] >= 5 * TPQ], 5 * TPQ)
    assert moved.tolist() == [[2 * TPQ, TPQ, 64], [3 * TPQ, 2 * TPQ, 50]]
    assert len(out.tracks) == 1 and out.tracks[0].name == "Tune" and out.tracks[0].program == 40
    assert score_notes(out).tolist() == moved.tolist()
    assert [(s.time, s.numerator, s.denominator) for s in out.time_signatures] == [(0, 3, 4)]
    assert score_notes(score).tolist() == notes.tolist()  # the input is untouched


def test_crop_keeps_the_velocity_of_the_notes(tmp_path):
    import symusic

    from melodylm.midi import crop_from, score_notes

    score = symusic.Score(TPQ)
    track = symusic.Track(name="t")
    for k in range(8):
        track.notes.append(symusic.Note(k * TPQ, TPQ, 60 + k, 100))
    score.tracks.append(track)
    notes = score_notes(score)
    out, _ = crop_from(score, notes[4:], 4 * TPQ)
    assert {n.velocity for n in out.tracks[0].notes} == {100} and len(out.tracks[0].notes) == 4


# ---------------------------------------------------------------------------- pop files: names, silence

def test_track_by_name_case_insensitive_exact_then_part(tmp_path):
    from conftest import pop_song

    path = pop_song(tmp_path / "pop.mid")
    for key in ("Lead Vocal", "lead vocal", "  LEAD VOCAL ", "vocal"):
        mel = load_melody(path, f"track:{key}")
        assert mel.status == "ok" and mel.info["track"] == 3 and mel.info["track_name"] == "Lead Vocal", key
    piano = load_melody(path, "track:piano")
    assert piano.info["track"] == 2 and piano.info["dropped_notes"] > 0  # chords reduced to their top line
    assert load_melody(path, "track:3").info["track"] == 3  # digits stay an index


def test_unknown_or_ambiguous_track_name_lists_the_tracks(tmp_path):
    from conftest import pop_song

    path = pop_song(tmp_path / "pop.mid", extra=[Part(scale(0, 8, low=72), name="Guitar 1"),
                                                 Part(scale(0, 8, low=60), name="Guitar 2")])
    unknown = load_melody(path, "track:sax")
    assert unknown.status == "skipped" and "\n" not in unknown.reason
    assert unknown.reason.startswith("no track is named 'sax'; tracks: track:0 'Drums' (drums, 80 notes), "
                                     "track:1 'Bass' (40 notes), ")
    assert "track:3 'Lead Vocal' (32 notes)" in unknown.reason and "track:5 'Guitar 2' (8 notes)" in unknown.reason
    ambiguous = load_melody(path, "track:guitar")
    assert ambiguous.status == "skipped"
    assert ambiguous.reason == ("track name 'guitar' is ambiguous (2 tracks match); pick one by index: "
                                "track:4 'Guitar 1' (8 notes), track:5 'Guitar 2' (8 notes)")
    assert load_melody(path, "track:guitar 2").info["track"] == 5  # an exact name is not ambiguous


def test_same_name_twice_takes_the_pitched_one_with_notes(tmp_path):
    import symusic

    from melodylm.midi import ChosenMelody, select_melody

    keys_drums = Part([(0, 0.5, 42)], name="Keys", is_drum=True)
    path = write_midi(tmp_path / "f.mid", [keys_drums, BASS, Part(scale(low=72), name="keys")])
    assert load_melody(path, "track:KEYS").info["track"] == 2
    # symusic drops a file's empty tracks when reading; a score built in code may still hold one
    score = symusic.Score(TPQ)
    score.tracks.append(symusic.Track(name="Vox"))
    score.tracks.append(symusic.Score(str(path)).tracks[1])
    mel = select_melody(score, "track:vox", ChosenMelody(path="x"))
    assert mel.status == "skipped" and mel.reason.startswith("track 0 'Vox' has no notes; tracks: track:0 'Vox'")


def test_drum_track_names_the_pitched_tracks(tmp_path):
    from conftest import pop_song

    path = pop_song(tmp_path / "pop.mid", extra=[Part([(0, 1, 60)], name="Synth", program=80)])
    for mode in ("track:0", "track:drums"):
        mel = load_melody(path, mode)
        assert mel.status == "skipped"
        assert mel.reason == ("track 0 is a drum track; pick a pitched one with --melody: track:1 'Bass' (40 notes), "
                              "track:2 'Piano' (60 notes), track:3 'Lead Vocal' (32 notes), "
                              "track:4 'Synth' (1 note)")


def test_check_melody_mode():
    from melodylm.errors import UserError
    from melodylm.midi import check_melody_mode

    for ok in ("auto", "skyline", "all", "track:2", "track:Lead Vocal"):
        check_melody_mode(ok)
        TokenizeConfig(inputs=["x"], melody=ok).validate()
    for bad in ("track:", "track: ", "melody", "Track:1"):
        with pytest.raises(UserError, match="--melody.*track:NAME"):
            check_melody_mode(bad)
        with pytest.raises(UserError, match="--melody"):
            TokenizeConfig(inputs=["x"], melody=bad).validate()


def test_tokenize_takes_the_track_named(tmp_path):
    from conftest import pop_song

    pop_song(tmp_path / "in" / "a.mid")
    write_midi(tmp_path / "in" / "b.mid", [Part(scale(low=60), name="Flute")])
    out = tmp_path / "data"
    tokenize(TokenizeConfig(inputs=[str(tmp_path / "in")], out_dir=str(out), melody="track:bass",
                            split=(1.0, 0.0, 0.0), workers=1), progress=False)
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    by_name = {r["path"].rsplit("/", 1)[-1]: r for r in rows}
    assert by_name["a.mid"]["melody"]["track_name"] == "Bass"
    assert by_name["b.mid"]["status"] == "skipped" and "no track is named 'bass'" in by_name["b.mid"]["reason"]


def test_trim_silence_cuts_whole_empty_bars_only(tmp_path):
    import symusic

    from conftest import pop_song
    from melodylm.midi import bar_index, score_notes, trim_silence

    mel = load_melody(pop_song(tmp_path / "pop.mid"), "auto")
    assert mel.info["track_name"] == "Lead Vocal"
    assert bar_index(mel.score, 48 * TPQ) == 12 and bar_index(mel.score, 48 * TPQ - 1) == 11
    out, start = trim_silence(mel.score)
    assert start == 48 * TPQ and score_notes(out)[0, 0] == 0 and len(score_notes(out)) == 32
    assert [(t.numerator, t.denominator, t.time) for t in out.time_signatures] == [(4, 4, 0)]
    assert len(out.tempos) == 1 and out.tempos[0].time == 0 and abs(out.tempos[0].qpm - 120) < 1e-3
    # from bar 15 on: the bar line itself, not the first note after it
    later, start = trim_silence(mel.score, 56 * TPQ)
    assert start == 56 * TPQ and len(score_notes(later)) == 24
    # a pickup in the first bar and a melody from beat 0 come back unchanged
    pickup = write_midi(tmp_path / "pickup.mid", [Part(scale(2, 8), name="Tune")], time_signature=(3, 4))
    score = symusic.Score(str(pickup))
    same, start = trim_silence(score)
    assert start == 0 and same is score
    with pytest.raises(ValueError):
        trim_silence(score, 100 * TPQ)


def test_score_from_moves_the_signatures_in_force(tmp_path):
    import symusic

    from melodylm.midi import bar_lines, score_from, score_notes

    score = _score_with_signatures([(0, 3, 4), (2 * 3 * TPQ, 2, 4)])
    score.tempos.append(symusic.Tempo(0, 90))
    score.key_signatures.append(symusic.KeySignature(0, 2, 0))
    track = symusic.Track(name="t")
    for k in range(10):
        track.notes.append(symusic.Note(k * TPQ, TPQ, 60 + k, 77))
    score.tracks.append(track)
    out = score_from(score, 3 * TPQ)  # bar 2 of 3/4; 2/4 starts one bar later
    assert [(t.time, t.numerator, t.denominator) for t in out.time_signatures] == [(0, 3, 4), (3 * TPQ, 2, 4)]
    assert [(k.time, k.key) for k in out.key_signatures] == [(0, 2)] and out.tempos[0].time == 0
    assert score_notes(out)[:, 2].tolist() == list(range(63, 70)) and {n.velocity for n in out.tracks[0].notes} == {77}
    assert list(zip(range(3), bar_lines(out))) == [(0, 0), (1, 3 * TPQ), (2, 5 * TPQ)]
    assert score_notes(score_from(score, 0)).tolist() == score_notes(score).tolist()


def test_meter_changes_in_bars():
    from melodylm.midi import meter_changes

    # 3/4 for two bars, 2/4 from bar 3; a signature inside a bar waits for the next bar line
    assert meter_changes(_score_with_signatures([(0, 3, 4), (2 * 3 * TPQ, 2, 4)])) == [(1, 3, 4), (3, 2, 4)]
    assert meter_changes(_score_with_signatures([(0, 4, 4), (TPQ, 3, 4)])) == [(1, 4, 4), (2, 3, 4)]
    assert meter_changes(_score_with_signatures([])) == [(1, 4, 4)]
    # two inside one bar: the later one holds from the next bar line, as bar_lines counts
    assert meter_changes(_score_with_signatures([(0, 4, 4), (TPQ, 3, 4), (2 * TPQ, 2, 4)])) == [(1, 4, 4), (2, 2, 4)]
    assert meter_changes(_score_with_signatures([(0, 2, 4), (4 * TPQ, 2, 4)])) == [(1, 2, 4)]  # no change
    assert meter_changes(_score_with_signatures([(4 * TPQ, 3, 4)])) == [(1, 4, 4), (2, 3, 4)]


def test_scoring_commands_take_the_track_named(tmp_path, capsys):
    from conftest import pop_song
    from melodylm.cli import main
    from melodylm.melody_sets import load_set

    pop_song(tmp_path / "smp" / "a.mid")
    pop_song(tmp_path / "ref" / "b.mid")
    assert [len(it.notes) for it in load_set(tmp_path / "smp", melody="track:lead vocal")] == [32]
    assert [len(it.notes) for it in load_set(tmp_path / "smp", melody="track:BASS")] == [40]
    smp, ref = str(tmp_path / "smp"), str(tmp_path / "ref")
    for argv in (["bleu", smp, "--reference", ref], ["copies", smp, "--reference", ref], ["metrics", smp]):
        assert main([*argv, "--melody", "track:Bass", "--json"]) == 0, argv
        capsys.readouterr()
        assert main([*argv, "--melody", "track:sax"]) == 2
        errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("melodylm: error:")]
        assert len(errors) == 1 and "no track is named 'sax'; tracks: track:0 'Drums'" in errors[0]
        assert main([*argv, "--melody", "top"]) == 2
        assert "--melody 'top': use auto, skyline, all, track:N" in capsys.readouterr().err
    copies = main(["copies", smp, "--reference", ref, "--melody", "track:bass", "--json"])
    assert copies == 0 and json.loads(capsys.readouterr().out.splitlines()[-1])["longest"]["notes"] == 40
