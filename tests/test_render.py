"""Rendering: WAV through a SoundFont, sheet music through verovio, piano rolls, batch errors, extras."""

from __future__ import annotations

import re
import sys
import wave
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from conftest import CORPUS, TPQ, Part, scale, write_midi

pytest.importorskip("verovio")
pytest.importorskip("tinysoundfont")

from melodylm.render import MissingExtraError, RenderError, render_file, render_files  # noqa: E402
from melodylm.render.common import read_melody  # noqa: E402


def _read_wav(path) -> tuple[np.ndarray, int]:
    with wave.open(str(path)) as w:
        assert w.getsampwidth() == 2 and w.getnchannels() == 1
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64) / 32768, w.getframerate()


def _count(svg: str, cls: str) -> int:
    return len(re.findall(rf'<g\b[^>]*class="{cls}"', svg))


# A known tune in 3/4, 4 bars: 3 quarters | F4 for 4 beats (dotted half tied to a quarter) |
# (tie) quarter rest, G4 | two eighths, a quarter, a quarter rest. 9 note heads, 2 rests, 1 tie.
KNOWN = [(0, 1, 60), (1, 1, 62), (2, 1, 64), (3, 4, 65), (8, 1, 67), (9, 0.5, 69), (9.5, 0.5, 71), (10, 1, 72)]


@pytest.fixture
def known_tune(tmp_path):
    return write_midi(tmp_path / "known.mid", [Part(KNOWN, name="Known Tune")], time_signature=(3, 4), tempo=90)


def test_wav_lasts_as_the_file_says_and_is_not_silent(tmp_path, known_tune):
    # 11 beats at 90 bpm; a second file at 180 bpm must last half as long (tempo from the file).
    fast = write_midi(tmp_path / "fast.mid", [Part(KNOWN)], time_signature=(3, 4), tempo=180)
    for path, bpm in ((known_tune, 90), (fast, 180)):
        out = render_file(path, tmp_path / "out", formats=("wav",))
        audio, sr = _read_wav(out["wav"])
        beat = 60 / bpm
        assert abs(len(audio) / sr - 11 * beat) <= beat
        assert np.sqrt(np.mean(audio ** 2)) > 0.01  # about -40 dBFS: clearly audible
        # every beat that holds a note has sound in it
        for onset, _, _ in KNOWN:
            seg = audio[int((onset * beat + 0.05) * sr): int((onset * beat + 0.15) * sr)]
            assert np.abs(seg).max() > 0.01


def test_program_picks_the_instrument(tmp_path, known_tune):
    piano = _read_wav(render_file(known_tune, tmp_path / "a", ("wav",), program=0)["wav"])[0]
    violin = _read_wav(render_file(known_tune, tmp_path / "b", ("wav",), program=40)["wav"])[0]
    n = min(len(piano), len(violin))
    assert not np.allclose(piano[:n], violin[:n], atol=1e-3)
    with pytest.raises(RenderError, match="--program 200"):
        render_file(known_tune, tmp_path / "c", ("wav",), program=200)


def test_svg_has_the_notes_and_bars_of_a_known_tune(tmp_path, known_tune):
    out = render_file(known_tune, tmp_path, formats=("svg", "musicxml"))
    svg = out["svg"].read_text()
    assert _count(svg, "measure") == 4
    assert _count(svg, "note") == 9
    assert _count(svg, "rest") == 2
    assert _count(svg, "tie") == 1
    assert "Known Tune" in svg
    root = ET.parse(out["musicxml"]).getroot()
    assert len(root.findall(".//measure")) == 4
    assert len(root.findall(".//note/pitch")) == 9
    assert [t.get("type") for t in root.findall(".//note/tie")] == ["start", "stop"]


def test_key_and_meter_are_engraved_as_the_file_says(tmp_path):
    import symusic

    path = write_midi(tmp_path / "flats.mid", [Part(scale(n=12, step=0.5, dur=0.5, low=58))], time_signature=(6, 8))
    score = symusic.Score(str(path))
    score.key_signatures.append(symusic.KeySignature(0, -2, 1))  # two flats, G minor
    score.dump_midi(str(path))
    out = render_file(path, tmp_path, formats=("svg", "musicxml"))
    root = ET.parse(out["musicxml"]).getroot()
    assert root.findtext(".//key/fifths") == "-2" and root.findtext(".//key/mode") == "minor"
    assert (root.findtext(".//time/beats"), root.findtext(".//time/beat-type")) == ("6", "8")
    svg = out["svg"].read_text()
    key_sig = re.search(r'class="keySig".*?</g>\s*</g>', svg, re.S) or re.search(r'class="keySig".*?</g>', svg, re.S)
    assert key_sig and key_sig[0].count('class="keyAccid"') == 2
    assert _count(svg, "meterSig") == 1
    # Bb and Eb are in the key: the written pitches carry no accidental sign
    assert not root.findall(".//accidental")


def test_key_is_estimated_when_the_file_has_none(tmp_path):
    d_major = [(i, 1, p) for i, p in enumerate([62, 64, 66, 67, 69, 71, 73, 74, 73, 69, 66, 62])]
    path = write_midi(tmp_path / "d.mid", [Part(d_major)])
    root = ET.fromstring(render_file(path, tmp_path, formats=("musicxml",))["musicxml"].read_bytes())
    assert root.findtext(".//key/fifths") == "2"


def test_triplets_where_the_grid_has_them(tmp_path):
    third = 1 / 3
    notes = [(0, third, 60), (third, third, 62), (2 * third, third, 64), (1, 0.5, 65), (1.5, 0.5, 67), (2, 2, 69)]
    path = write_midi(tmp_path / "trip.mid", [Part(notes)], time_signature=(2, 4))
    out = render_file(path, tmp_path, formats=("svg", "musicxml"))
    root = ET.parse(out["musicxml"]).getroot()
    assert len(root.findall(".//time-modification")) == 3
    assert [t.get("type") for t in root.findall(".//tuplet")] == ["start", "stop"]
    assert _count(out["svg"].read_text(), "tuplet") == 1
    assert len(root.findall(".//measure")) == 2


def test_split_is_marked_in_the_sheet_music(tmp_path, known_tune):
    from melodylm.render.sheet import render_sheet

    score = read_melody(known_tune)
    out = render_sheet(score, svg_path=tmp_path / "s.svg", musicxml_path=tmp_path / "s.musicxml", split_tick=8 * TPQ)
    root = ET.parse(out["musicxml"]).getroot()
    coloured = [n for n in root.findall(".//note") if n.get("color") and n.find("pitch") is not None]
    assert len(coloured) == 4  # G4, A4, B4, C5 start at or after beat 8
    assert [w.text for w in root.findall(".//words")] == ["continuation"]
    assert "continuation" in out["svg"].read_text()


def test_long_tune_renders_fully_in_one_svg(tmp_path, monkeypatch):
    from melodylm.render import sheet

    path = write_midi(tmp_path / "long.mid", [Part([(i, 1, 60 + (i * 5) % 17) for i in range(240)])])
    # A short page forces verovio to make several pages; they must all land in the one SVG.
    monkeypatch.setitem(sheet.VEROVIO_OPTIONS, "pageHeight", 800)
    stacked = []
    real = sheet.stack_pages
    monkeypatch.setattr(sheet, "stack_pages", lambda pages: stacked.append(len(pages)) or real(pages))
    svg = render_file(path, tmp_path, formats=("svg",))["svg"].read_text()
    assert stacked and stacked[0] > 1
    assert _count(svg, "measure") == 60 and _count(svg, "note") == 240
    ET.fromstring(svg)  # still one well-formed document


def test_corpus_tune_has_a_bar_per_bar_and_every_note(tmp_path):
    files = sorted(CORPUS.glob("*.mid"))
    if not files:
        pytest.skip("embedded corpus missing")
    path = files[len(files) // 3]
    score = read_melody(path)
    notes = score.tracks[0].notes
    ts = score.time_signatures[0]
    bar = ts.numerator * score.ticks_per_quarter * 4 // ts.denominator
    end = max(n.end for n in notes)
    svg = render_file(path, tmp_path, formats=("svg",))["svg"].read_text()
    assert _count(svg, "measure") == -(-end // bar)
    assert _count(svg, "note") >= len(notes)  # ties across bars add heads, nothing is lost


def test_bad_files_are_one_line_each_and_the_others_render(tmp_path, known_tune):
    drums = write_midi(tmp_path / "drums.mid", [Part(scale(), is_drum=True)])
    corrupt = tmp_path / "corrupt.mid"
    corrupt.write_bytes(b"MThd\x00\x00\x00\x06\x00\x01garbage")
    empty = tmp_path / "empty.mid"
    empty.write_bytes(b"")
    other = write_midi(tmp_path / "other.mid", [Part(scale())])
    seen = []
    report = render_files([corrupt, known_tune, drums, empty, other, tmp_path / "missing.mid"], tmp_path / "out",
                          formats=("svg", "png"), progress=seen.append)
    assert set(report.written) == {str(known_tune), str(other)}
    assert all(p.stat().st_size > 0 for paths in report.written.values() for p in paths.values())
    assert set(report.errors) == {str(corrupt), str(drums), str(empty), str(tmp_path / "missing.mid")}
    for src, msg in report.errors.items():
        assert "\n" not in msg and msg.startswith(src)
    assert "drums only" in report.errors[str(drums)] and "corrupt" in report.errors[str(corrupt)]
    assert len(seen) == 6 and len(report.lines()) == 6


def test_unknown_format_is_a_user_error(tmp_path, known_tune):
    with pytest.raises(RenderError, match="--formats mp3"):
        render_file(known_tune, tmp_path, formats="mp3")


@pytest.mark.parametrize("module, fmt, hint", [("verovio", "svg", "melodylm[render]"),
                                               ("tinysoundfont", "wav", "tinysoundfont")])
def test_missing_extra_names_what_to_install(tmp_path, known_tune, monkeypatch, module, fmt, hint):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    with pytest.raises(MissingExtraError, match=re.escape(hint)):
        render_files([known_tune], tmp_path, formats=(fmt,))


def test_missing_soundfont_names_the_extra(tmp_path, known_tune, monkeypatch):
    from melodylm.render import audio

    monkeypatch.delenv("MELODYLM_SOUNDFONT", raising=False)
    monkeypatch.setattr(audio.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(audio, "SYSTEM_SOUNDFONTS", ())
    with pytest.raises(MissingExtraError, match=re.escape("melodylm[render]")):
        render_file(known_tune, tmp_path, formats=("wav",))


@pytest.mark.parametrize("name", ["0051-0100_0013.mid", "0811-0899_0060.mid", "0101-0200_0001.mid",
                                  "0550-0625_0051.mid", "1710-1750_0032.mid"])
def test_musicxml_reads_back_as_the_midi_notes_in_music21(tmp_path, name):
    # An independent reader: music21 parses our MusicXML; with ties merged, every note must have
    # the MIDI file's onset, pitch and length (16th triplets: in 6/8 in 0811-0899_0060, followed by
    # two 16ths in one beat of 2/4 in 1710-1750_0032).
    music21 = pytest.importorskip("music21")
    from melodylm.render.musicxml import to_musicxml

    path = CORPUS / name
    if not path.exists():
        pytest.skip(f"{path} missing")
    score = read_melody(path)
    tpq = score.ticks_per_quarter
    parsed = music21.converter.parseData(to_musicxml(score), format="musicxml").stripTies().flatten().notes
    got = [(round(float(n.offset), 3), n.pitch.midi, round(float(n.quarterLength), 3)) for n in parsed]
    want = [(round(n.time / tpq, 3), n.pitch, round(n.duration / tpq, 3)) for n in score.tracks[0].notes]
    assert got == want


def test_upbeat_bar_when_asked(tmp_path):
    from melodylm.render.musicxml import to_musicxml

    # 3/4 with a one-beat upbeat and a full last bar: 1 + 3 + 3 + 3 beats, 1 beat past a bar line.
    notes = [(0, 1, 67)] + [(1 + i, 1, 60 + i) for i in range(6)] + [(7, 3, 72)]
    score = read_melody(write_midi(tmp_path / "up.mid", [Part(notes)], time_signature=(3, 4)))
    plain = ET.fromstring(to_musicxml(score))
    assert len(plain.findall(".//measure")) == 4 and plain.find(".//measure").get("number") == "1"
    up = ET.fromstring(to_musicxml(score, pickup="auto"))
    measures = up.findall(".//measure")
    assert (measures[0].get("number"), measures[0].get("implicit")) == ("0", "yes")
    assert [sum(int(d.text) for d in m.findall("note/duration")) for m in measures] == [24, 72, 72, 72]


@pytest.mark.parametrize("name, title", [("Acoustic Grand Piano", None), ("violin", None), ("melody", None),
                                         ("The Enchanted Valley", "The Enchanted Valley")])
def test_an_instrument_name_is_not_a_title(tmp_path, name, title):
    path = write_midi(tmp_path / "t.mid", [Part(KNOWN, name=name)], time_signature=(3, 4))
    xml = render_file(path, tmp_path, formats=("musicxml",))["musicxml"]
    assert ET.parse(xml).getroot().findtext(".//work-title") == title


def test_a_sample_made_from_nothing_has_no_instrument_title(tmp_path):
    """The decoder names a sample's track after its instrument; its sheet music has no title then."""
    from conftest import REPO
    from melodylm.generate import generate

    shipped = REPO / "checkpoints" / "pretrained" / "model.pt"
    if not shipped.is_file():
        pytest.skip("the shipped model checkpoints/pretrained/model.pt is missing")
    sample = generate(shipped, None, 1, max_bars=2, seed=1)[0]
    assert sample.score.tracks[0].name == "Acoustic Grand Piano"  # what the decoder writes
    sample.score.dump_midi(str(tmp_path / "sample_000.mid"))
    out = render_file(tmp_path / "sample_000.mid", tmp_path, formats=("svg", "musicxml"))
    assert ET.parse(out["musicxml"]).getroot().findtext(".//work-title") is None
    assert "Acoustic Grand Piano" not in out["svg"].read_text()
