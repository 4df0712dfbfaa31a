"""`melodylm render`: files written per input, one line per bad file with the others rendered, bad flags."""

from __future__ import annotations

import sys
import wave

import pytest

from conftest import CORPUS, Part, scale, write_midi
from melodylm.cli import main

pytest.importorskip("verovio")
pytest.importorskip("tinysoundfont")


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main(["render", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_every_format_is_written_per_file(tmp_path, capsys):
    tune = write_midi(tmp_path / "tune.mid", [Part(scale(n=8), name="Scale Tune")], tempo=120)
    corpus = sorted(CORPUS.glob("*.mid"))[:1]
    code, out, err = _run(capsys, tune, *corpus, "-o", tmp_path / "out")
    assert code == 0, err
    for stem in ["tune"] + [c.stem for c in corpus]:
        for ext in ("wav", "svg", "png", "musicxml"):
            f = tmp_path / "out" / f"{stem}.{ext}"
            assert f.stat().st_size > 500, f
    with wave.open(str(tmp_path / "out" / "tune.wav")) as w:
        assert abs(w.getnframes() / w.getframerate() - 4.0) <= 0.5  # 8 beats at 120 bpm, ±1 beat
    assert "Scale Tune" in (tmp_path / "out" / "tune.svg").read_text()
    assert len(out.strip().splitlines()) == 1 + len(corpus) and err == ""


def test_formats_and_program_choose_what_is_written(tmp_path, capsys):
    tune = write_midi(tmp_path / "tune.mid", [Part(scale(n=4))])
    code, _, err = _run(capsys, tune, "-o", tmp_path / "out", "--formats", "wav,musicxml", "--program", "73")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["tune.musicxml", "tune.wav"]


def test_bad_files_are_one_line_each_and_the_others_render(tmp_path, capsys):
    good = write_midi(tmp_path / "good.mid", [Part(scale())])
    drums = write_midi(tmp_path / "drums.mid", [Part(scale(), is_drum=True)])
    corrupt = tmp_path / "corrupt.mid"
    corrupt.write_bytes(b"MThd\x00\x00\x00\x06\x00\x01garbage")
    other = write_midi(tmp_path / "other.mid", [Part(scale(low=67))])
    code, out, err = _run(capsys, corrupt, good, drums, other, "-o", tmp_path / "out", "--formats", "svg")
    assert code == 2
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.svg", "other.svg"]
    lines = err.strip().splitlines()
    assert len(lines) == 3  # one per bad file, then the summary
    assert lines[0].startswith(f"melodylm: error: {corrupt}") and "corrupt" in lines[0]
    assert lines[1].startswith(f"melodylm: error: {drums}") and "drums only" in lines[1]
    assert "rendered 2 of 4 files" in lines[2]
    assert "Traceback" not in err and len(out.strip().splitlines()) == 2


@pytest.mark.parametrize("flags, needle", [
    (["--formats", "mp3"], "--formats mp3"),
    (["--formats", ""], "--formats"),
    (["--program", "200"], "--program 200"),
    (["--program", "-1"], "--program -1"),
    (["--program", "piano"], "--program"),
])
def test_bad_options_are_one_line_and_nothing_is_written(tmp_path, capsys, flags, needle):
    tune = write_midi(tmp_path / "tune.mid", [Part(scale(n=4))])
    code, out, err = _run(capsys, tune, "-o", tmp_path / "out", *flags)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and needle in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_out_that_is_a_file_is_one_line(tmp_path, capsys):
    tune = write_midi(tmp_path / "tune.mid", [Part(scale(n=4))])
    (tmp_path / "taken").write_text("x")
    code, _, err = _run(capsys, tune, "-o", tmp_path / "taken")
    assert code == 2 and "not a folder" in err and len(err.strip().splitlines()) == 1


def test_missing_extra_names_the_extra(tmp_path, capsys, monkeypatch):
    tune = write_midi(tmp_path / "tune.mid", [Part(scale(n=4))])
    monkeypatch.setitem(sys.modules, "verovio", None)  # `import verovio` raises ImportError
    code, _, err = _run(capsys, tune, "-o", tmp_path / "out", "--formats", "svg")
    assert code == 2 and "melodylm[render]" in err and len(err.strip().splitlines()) == 1
