"""Corpus import: ABC splitting, tie handling, exact MIDI timing, manifest, CLI, embedded corpus."""

from __future__ import annotations

from pathlib import Path

import mido
import pytest

from melodylm.corpus import (
    MANIFEST_COLUMNS,
    MANIFEST_NAME,
    TICKS_PER_BEAT,
    TuneNotes,
    read_manifest,
    split_abc,
    write_midi,
)
from melodylm.errors import UserError

REPO = Path(__file__).resolve().parents[1]
EMBEDDED = REPO / "corpora" / "oneills1850"

HEADER = "% a file header that every tune needs\nL:1/8\n\n"
# Two tunes share X:1 (they must not overwrite each other); the third has a tuplet music21
# cannot parse; the fourth must survive it.
MULTI = HEADER + """X:1
T:First
M:2/4
K:G
GABc|d4|]

X:1
T:Second Same Number
M:3/4
K:D
DEF GAB|A6|]

X:2
T:Broken
M:2/4
K:G
(0GAB|c4|]

X:3
T:Fourth
M:6/8
K:Am
ABc dcB|A6|]
"""


def _notes(path: Path) -> list[tuple[int, int, int]]:
    """(onset, end, pitch) in ticks of every note of a MIDI file, read back with mido."""
    mid = mido.MidiFile(str(path))
    now, sounding, out = 0, {}, []
    for msg in mido.merge_tracks(mid.tracks):
        now += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            sounding[msg.note] = now
        elif msg.type in ("note_off", "note_on"):
            out.append((sounding.pop(msg.note), now, msg.note))
    return sorted(out)


def _meta(path: Path) -> dict[str, mido.MetaMessage]:
    return {m.type: m for m in mido.MidiFile(str(path)).tracks[0] if m.is_meta}


def _import_text(tmp_path: Path, text: str, name: str = "tunes.abc", **kw) -> tuple[dict, list[dict]]:
    from melodylm.corpus import import_corpus

    tmp_path.mkdir(parents=True, exist_ok=True)
    src = tmp_path / name
    src.write_text(text)
    out = tmp_path / "out"
    summary = import_corpus([src], out, workers=kw.pop("workers", 1), progress=False, **kw)
    return summary, read_manifest(out / MANIFEST_NAME)


# --- pure helpers (no music21) ------------------------------------------------------------------

def test_split_abc_keeps_header_and_every_tune():
    tunes = split_abc(MULTI)
    assert len(tunes) == 4
    assert all(t.startswith(HEADER + "X:") for t in tunes)
    assert [t.count("\nX:") + t.startswith("X:") for t in tunes] == [1, 1, 1, 1]
    assert "T:Second Same Number" in tunes[1] and "T:Fourth" in tunes[3]


def test_split_abc_without_x_lines():
    assert split_abc("T:Lonely\nK:C\nCDE|\n") == ["T:Lonely\nK:C\nCDE|\n"]
    assert split_abc("  \n\n") == []


def test_write_midi_is_tick_exact(tmp_path):
    notes = [(0, 160, 60, 80), (160, 320, 62, 80), (320, 480, 64, 80), (960, 1920, 67, 90)]
    path = tmp_path / "m.mid"
    write_midi(TuneNotes("Café Tune", notes, (3, 4), "Em", 90.0), path)
    mid = mido.MidiFile(str(path))
    assert mid.ticks_per_beat == TICKS_PER_BEAT and len(mid.tracks) == 1
    assert _notes(path) == [n[:3] for n in notes]
    meta = _meta(path)
    assert meta["track_name"].name == "Cafe Tune"  # folded to ASCII for every MIDI reader
    assert (meta["time_signature"].numerator, meta["time_signature"].denominator) == (3, 4)
    assert meta["key_signature"].key == "Em"
    assert meta["set_tempo"].tempo == mido.bpm2tempo(90.0)


def test_embedded_corpus_is_complete():
    mids = sorted(EMBEDDED.glob("*.mid"))
    assert len(mids) >= 900
    rows = read_manifest(EMBEDDED / MANIFEST_NAME)
    assert tuple(rows[0]) == MANIFEST_COLUMNS
    for row in rows:
        assert row["status"] in ("ok", "failed"), row
        if row["status"] == "ok":
            assert (EMBEDDED / row["file"]).is_file() and int(row["n_notes"]) > 0, row
        else:
            assert row["reason"], row
    assert {r["file"] for r in rows if r["status"] == "ok"} == {p.name for p in mids}
    # spot-check one file: "The Enchanted Valley", O'Neill no. 1, 2/4 in G minor
    meta = _meta(EMBEDDED / "0001-0050_0001.mid")
    assert meta["track_name"].name == "The Enchanted Valley"
    assert (meta["time_signature"].numerator, meta["time_signature"].denominator) == (2, 4)
    assert meta["key_signature"].key == "Gm"


# --- with music21 -----------------------------------------------------------------------------

def test_multi_tune_file_survives_a_broken_tune(tmp_path):
    pytest.importorskip("music21")
    summary, rows = _import_text(tmp_path, MULTI)
    assert (summary["tunes"], summary["ok"], summary["failed"], summary["files"]) == (4, 3, 1, 3)
    assert [r["status"] for r in rows] == ["ok", "ok", "failed", "ok"]
    assert [r["index"] for r in rows] == ["1", "2", "3", "4"]
    broken = rows[2]
    assert broken["title"] == "Broken" and broken["file"] == "" and "tuplet" in broken["reason"]
    # the two X:1 tunes are two files with their own titles and notes
    out = tmp_path / "out"
    names = [r["file"] for r in rows if r["status"] == "ok"]
    assert names == ["tunes_0001.mid", "tunes_0002.mid", "tunes_0004.mid"]
    titles = [_meta(out / n)["track_name"].name for n in names]
    assert titles == ["First", "Second Same Number", "Fourth"]
    assert _notes(out / names[0])[0][2] == 67 and _notes(out / names[1])[0][2] == 62  # G4, D4


def test_ties_merge_only_same_pitch(tmp_path):
    pytest.importorskip("music21")
    # G3-A: a "tie" between different pitches (a slur in O'Neill's ABC) keeps both notes;
    # c2-c2 and the tie over the bar line B2-|B2 merge into one note each.
    tune = "X:1\nT:Ties\nM:4/4\nL:1/8\nK:C\nG3-A c2-c2|e4 B2-|B2 z2 z4|]\n"
    _, rows = _import_text(tmp_path, tune)
    assert rows[0]["n_notes"] == "5"
    e = TICKS_PER_BEAT // 2  # one eighth note
    assert _notes(tmp_path / "out" / rows[0]["file"]) == [
        (0, 3 * e, 67), (3 * e, 4 * e, 69), (4 * e, 8 * e, 72), (8 * e, 12 * e, 76), (12 * e, 16 * e, 71),
    ]


def test_triplet_rest_chord_grace_are_exact(tmp_path):
    pytest.importorskip("music21")
    tune = "X:1\nT:Exact\nM:3/4\nL:1/8\nQ:1/4=100\nK:Dm\n(3DEF G2 z2|{a}[Ac]4 z A|]\n"
    _, rows = _import_text(tmp_path, tune)
    path = tmp_path / "out" / rows[0]["file"]
    q = TICKS_PER_BEAT
    t = q // 3  # a triplet eighth: 160 ticks, exact only because 480 is divisible by 3
    assert _notes(path) == [
        (0, t, 62), (t, 2 * t, 64), (2 * t, q, 65),  # (3DEF
        (q, 2 * q, 67),  # G2, then a rest z2 of one beat
        (3 * q, 5 * q, 69), (3 * q, 5 * q, 72),  # chord [Ac]4 keeps both notes
        (q * 11 // 2, 6 * q, 69),  # after the rest z (an eighth)
    ]
    assert "dropped 1 grace notes" in rows[0]["reason"]
    meta = _meta(path)
    assert (meta["time_signature"].numerator, meta["time_signature"].denominator) == (3, 4)
    assert meta["key_signature"].key == "Dm"
    assert meta["set_tempo"].tempo == mido.bpm2tempo(100)


def test_melody_is_first_part_with_notes(tmp_path):
    pytest.importorskip("music21")
    tune = "X:1\nT:Voices\nM:2/4\nL:1/8\nK:C\nV:1\nx4|x4|\nV:2\nCDEF|G4|]\n"
    _, rows = _import_text(tmp_path, tune)
    assert [n[2] for n in _notes(tmp_path / "out" / rows[0]["file"])] == [60, 62, 64, 65, 67]


def test_midi_source_round_trips_exactly(tmp_path):
    pytest.importorskip("music21")
    from melodylm.corpus import import_corpus

    notes = [(0, 180, 72, 80), (180, 240, 69, 80), (240, 400, 67, 80), (400, 480, 65, 80), (960, 1440, 64, 80)]
    src = tmp_path / "src"
    src.mkdir()
    write_midi(TuneNotes("Dotted", notes, (2, 4), "F", 120.0), src / "dotted.mid")
    import_corpus([src], tmp_path / "out", workers=1, progress=False)
    (row,) = read_manifest(tmp_path / "out" / MANIFEST_NAME)
    assert (row["source"], row["title"]) == ("src/dotted.mid", "Dotted")
    assert _notes(tmp_path / "out" / row["file"]) == [n[:3] for n in notes]


def test_parallel_import_matches_serial(tmp_path):
    pytest.importorskip("music21")
    _, serial = _import_text(tmp_path / "a", MULTI)
    _, parallel = _import_text(tmp_path / "b", MULTI, workers=2)
    drop_source = lambda rows: [{k: v for k, v in r.items() if k != "source"} for r in rows]  # noqa: E731
    assert drop_source(serial) == drop_source(parallel)
    for row in serial:
        if row["file"]:
            a, b = tmp_path / "a" / "out" / row["file"], tmp_path / "b" / "out" / row["file"]
            assert a.read_bytes() == b.read_bytes()


def test_duplicate_tunes_are_named(tmp_path):
    pytest.importorskip("music21")
    text = "X:1\nT:One\nM:2/4\nL:1/8\nK:G\nGABc|]\n\nX:2\nT:One again\nM:2/4\nL:1/8\nK:G\nGABc|]\n"
    summary, rows = _import_text(tmp_path, text)
    assert summary["duplicates"] == 1
    assert rows[0]["reason"] == "" and rows[1]["reason"] == "same notes as tunes_0001.mid"


def test_force_replaces_previous_import_only(tmp_path):
    pytest.importorskip("music21")
    from melodylm.corpus import import_corpus

    _import_text(tmp_path, MULTI)
    out = tmp_path / "out"
    (out / "mine.txt").write_text("not ours")
    src = tmp_path / "small.abc"
    src.write_text("X:1\nT:Small\nK:C\nCDE|]\n")
    with pytest.raises(UserError, match="--force"):
        import_corpus([src], out, workers=1, progress=False)
    import_corpus([src], out, workers=1, progress=False, force=True)
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST_NAME, "mine.txt", "small_0001.mid"]


def test_missing_source_and_unknown_format(tmp_path):
    pytest.importorskip("music21")
    from melodylm.corpus import import_corpus

    with pytest.raises(UserError, match="no such file"):
        import_corpus([tmp_path / "nope.abc"], tmp_path / "out", progress=False)
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(UserError, match="unknown format"):
        import_corpus([tmp_path / "notes.txt"], tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_music21_corpus_path():
    pytest.importorskip("music21")
    from melodylm.corpus import music21_corpus_path

    assert len(list(music21_corpus_path("oneills1850").glob("*.abc"))) >= 30
    with pytest.raises(UserError, match="essenFolksong"):
        music21_corpus_path("no_such_collection")


def test_cli_refuses_non_empty_dir(tmp_path, capsys):
    pytest.importorskip("music21")
    from melodylm.cli import main

    src = tmp_path / "t.abc"
    src.write_text("X:1\nT:T\nK:C\nCDE|]\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.mid").write_bytes(b"")
    assert main(["corpus", "import", str(src), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--force" in err and str(out) in err
    assert sorted(p.name for p in out.iterdir()) == ["keep.mid"]
    assert main(["corpus", "import", str(src), "-o", str(out), "--force", "--no-progress", "--workers", "1"]) == 0
    assert (out / "t_0001.mid").is_file()


@pytest.mark.parametrize("fields, added", [
    ("K:G\n", True),  # neither L: nor M:: the standard's 1/8
    ("M:2/4\nK:G\n", False),  # music21 derives the unit from M: itself
    ("L:1/4\nK:G\n", False),
])
def test_default_unit_length(fields, added):
    from melodylm.corpus import default_unit_length

    tune = "X:1\nT:T\n" + fields + "GABc|\n"
    assert default_unit_length(tune) == (tune.replace("K:G", "L:1/8\nK:G") if added else tune)


def test_missing_music21_is_a_user_error(tmp_path, monkeypatch):
    import sys

    from melodylm.corpus import import_corpus, music21_corpus_path

    monkeypatch.setitem(sys.modules, "music21", None)  # makes `import music21` raise ImportError
    with pytest.raises(UserError, match=r"pip install 'melodylm\[music21\]'"):
        music21_corpus_path("oneills1850")
    with pytest.raises(UserError, match="needs the Python package .music21., which is not installed"):
        import_corpus([tmp_path], tmp_path / "out", progress=False)


def test_latin1_abc_file(tmp_path):
    pytest.importorskip("music21")
    from melodylm.corpus import import_corpus

    src = tmp_path / "old.abc"
    src.write_bytes("X:1\nT:Séan Ó Duibhir\nM:2/4\nL:1/8\nK:G\nGABc|]\n".encode("latin-1"))
    import_corpus([src], tmp_path / "out", workers=1, progress=False)
    (row,) = read_manifest(tmp_path / "out" / MANIFEST_NAME)
    assert row["title"] == "Séan Ó Duibhir" and row["source"] == src.as_posix()
    assert _meta(tmp_path / "out" / row["file"])["track_name"].name == "Sean O Duibhir"
