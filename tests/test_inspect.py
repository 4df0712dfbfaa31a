"""`melodylm inspect`: tracks, the melody choice and why, bars, key and meter of files built in code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import POP_MELODY, TPQ, Part, pop_song, scale, write_midi
from melodylm.cli import COMMANDS, main
from melodylm.inspect_midi import format_report, inspect_file


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(["inspect", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def pop(tmp_path) -> Path:
    return pop_song(tmp_path / "pop.mid")


def test_pop_song_text_report(pop, capsys) -> None:
    code, out, err = run(capsys, pop)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == f"{pop}: 4 tracks, 20 bars (80 beats), {TPQ} ticks per beat"
    assert lines[1].startswith("meter 4/4; key ") and "(estimated from the melody's notes)" in lines[1]
    assert lines[1].endswith("tempo 120 bpm")
    table = [line.split() for line in lines[lines.index("tracks:") + 1:lines.index("tracks:") + 6]]
    assert table[0] == ["track", "name", "program", "notes", "pitches", "bars", "kind"]
    assert table[1] == ["0", "'Drums'", "0", "80", "36-38", "1-20", "drums"]
    assert table[2] == ["1", "'Bass'", "33", "40", "36-43", "1-20", "monophonic"]
    assert table[3][:6] == ["2", "'Piano'", "0", "60", "60-74", "1-20"] and table[3][6] == "polyphonic"
    assert table[4] == ["3", "'Lead", "Vocal'", "54", "32", "67-74", "13-20", "monophonic"]
    assert lines[-2] == "melody (auto): track 3 'Lead Vocal', named 'Lead Vocal'; 32 notes in bars 13-20"
    assert lines[-1].startswith("  it starts in bar 13 (beat 48); a prompt from this file starts there")


def test_pop_song_json(pop, capsys) -> None:
    from melodylm.keys import estimate_key

    code, out, _ = run(capsys, pop, "--json")
    assert code == 0 and len(out.strip().splitlines()) == 1
    r = json.loads(out)
    assert [(t["index"], t["name"], t["program"], t["notes"], t["kind"]) for t in r["tracks"]] == [
        (0, "Drums", 0, 80, "drums"), (1, "Bass", 33, 40, "monophonic"), (2, "Piano", 0, 60, "polyphonic"),
        (3, "Lead Vocal", 54, 32, "monophonic")]
    assert r["tracks"][2]["overlap"] > 0.25 and r["tracks"][1]["overlap"] == 0
    assert r["melody"] == {"track": 3, "name": "Lead Vocal", "why": "named 'Lead Vocal'", "notes": 32,
                           "first_bar": 13, "last_bar": 20, "start_beat": 48.0}
    assert (r["bars"], r["beats"], r["meters"]) == (20, 80.0, [{"meter": "4/4", "bar": 1}])
    vocal = [67 + POP_MELODY[i % 8] for i in range(32)]
    assert r["key"] == r["estimated_key"] == estimate_key(vocal, [1.0] * 32).name and r["key_source"] == "estimated"
    assert r["key_signatures"] == [] and r["tempo"] == 120.0 and r["tempo_changes"] == 0


def test_why_the_melody_was_chosen(tmp_path) -> None:
    bass = Part(scale(0, 16, low=36), name="Bass", program=33)
    chords = Part([(b, 2.0, p) for b in range(0, 16, 2) for p in (72, 76, 79)], name="Strings", program=48)
    flute = Part(scale(0, 16, low=67), name="Flute", program=73)
    r = inspect_file(write_midi(tmp_path / "a.mid", [bass, chords, flute]))
    assert (r.melody["track"], r.melody["why"]) == (2, "highest mostly-monophonic track")
    assert [t.kind for t in r.tracks] == ["monophonic", "polyphonic", "monophonic"]
    r = inspect_file(write_midi(tmp_path / "b.mid", [bass, chords, flute]), "skyline")
    assert r.melody["track"] is None and r.melody["why"] == "the top line of all pitched tracks"
    assert "melody (skyline): the top line of all pitched tracks;" in format_report(r)
    named = inspect_file(write_midi(tmp_path / "c.mid", [bass, chords, flute]), "track:STRINGS")
    assert named.melody["track"] == 1 and named.melody["why"] == "asked for with --melody track:STRINGS"


def test_key_signature_and_meter_changes_from_the_file(tmp_path) -> None:
    import symusic

    path = write_midi(tmp_path / "k.mid", [Part(scale(0, 24, low=62), name="Tune")], time_signature=(3, 4))
    score = symusic.Score(str(path))
    score.time_signatures.append(symusic.TimeSignature(6 * TPQ, 2, 4))  # from bar 3
    score.key_signatures.append(symusic.KeySignature(0, 2, 0))  # two sharps, major: D major
    score.dump_midi(str(path))
    r = inspect_file(path)
    assert r.meters == [{"meter": "3/4", "bar": 1}, {"meter": "2/4", "bar": 3}]
    assert (r.key, r.key_source, r.key_signatures) == ("D major", "file", [{"key": "D major", "bar": 1}])
    assert r.bars == 2 + (24 - 6 + 1) // 2  # two bars of 3/4, then 2/4 bars up to beat 24
    text = format_report(r)
    assert "meter 3/4, 2/4 from bar 3; key D major (key signature)" in text


def test_corpus_tune(corpus_files, capsys) -> None:
    code, out, _ = run(capsys, corpus_files[0], "--json")
    r = json.loads(out)
    assert code == 0 and len(r["tracks"]) == 1 and r["tracks"][0]["kind"] == "monophonic"
    assert r["melody"]["track"] == 0 and r["melody"]["first_bar"] == 1 and r["key_source"] == "file"


def test_no_melody_is_described_not_refused(tmp_path, capsys) -> None:
    drums = write_midi(tmp_path / "d.mid", [Part([(b, 0.25, 36) for b in range(8)], name="Kit", is_drum=True)])
    code, out, _ = run(capsys, drums)
    assert code == 0 and out.splitlines()[-1] == "melody (auto): none: drums only"
    assert "key unknown (no melody)" in out
    r = inspect_file(pop_song(tmp_path / "pop.mid"), "track:sax")
    assert r.melody is None and r.melody_reason.startswith("no track is named 'sax'; tracks: track:0 'Drums'")


@pytest.mark.parametrize("make,needle", [
    (lambda d: d / "missing.mid", "cannot read file"),
    (lambda d: (d / "t.mid").write_bytes(b"hello") and d / "t.mid", "not a MIDI file"),
    (lambda d: (d / "e.mid").write_bytes(b"") is not None and d / "e.mid", "empty file"),
    (lambda d: d, "it is a folder"),
    (lambda d: (d / "c.mid").write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0MTrk\x00\x00\x00\x09\x00")
     and d / "c.mid", "corrupt MIDI"),
])
def test_bad_files_are_one_line_exit_2(tmp_path, capsys, make, needle) -> None:
    path = make(tmp_path)
    code, out, err = run(capsys, path)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert err.startswith(f"melodylm: error: {path}: ") and needle in err


def test_bad_melody_mode_is_one_line(pop, capsys) -> None:
    code, _, err = run(capsys, pop, "--melody", "top")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--melody 'top'" in err


def test_inspect_is_a_command(capsys) -> None:
    assert COMMANDS["inspect"].module == "melodylm.cli.inspect_cmd"
    with pytest.raises(SystemExit):
        main(["-h"])
    assert "inspect" in capsys.readouterr().out
