"""Token datasets: transposition, split leakage, determinism, the reader."""

from __future__ import annotations

import random
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from conftest import Part, write_midi
from melodylm.dataset import SPLITS, Dataset, TokenizeConfig, split_of, tokenize
from melodylm.errors import DataError, UserError
from melodylm.midi import content_hash, note_array


def build(inputs, out: Path, **options) -> dict:
    options.setdefault("workers", 1)
    return tokenize(TokenizeConfig(inputs=[str(i) for i in inputs], out_dir=str(out), **options), progress=False)


def shape_hashes(ds: Dataset, split: str) -> list[str]:
    """Transposition-invariant hash of every stored sequence of a split, from its tokens."""
    sp, tok = ds.split(split), ds.tokenizer
    out = []
    for i in range(len(sp)):
        score = tok.decode_score(tok.decode_ids(sp.tune(i)[1:-1]))
        out.append(content_hash(note_array(score.tracks[0]), score.ticks_per_quarter, relative_pitch=True))
    return out


def split_by_content(data_dir: Path) -> dict[str, str]:
    """content hash -> split of every ok tune in a dataset's manifest."""
    rows = Dataset(data_dir).manifest()
    return {r["hash"]: r["split"] for r in rows if r["status"] == "ok"}


def write_transposed(src: Path, dst: Path, semitones: int) -> None:
    import symusic

    score = symusic.Score(str(src))
    for tr in score.tracks:
        tr.shift_pitch(semitones, inplace=True)
    score.dump_midi(str(dst))


# --- transposition -------------------------------------------------------------------------------
@pytest.mark.slow
def test_only_train_tunes_get_transposed_copies(make_dataset):
    ds = Dataset(make_dataset(transpose=(-2, 3)))
    manifest = ds.manifest()
    train = ds.split("train")
    assert set(train.index["transpose"].tolist()) == {-2, -1, 0, 1, 2, 3}
    for split in ("val", "test"):
        sp = ds.split(split)
        assert len(sp) > 0
        assert (sp.index["transpose"] == 0).all(), split
    # every transposed copy comes from a train tune, and each train tune has one per shift
    copies = defaultdict(list)
    for row in train.index:
        assert manifest[row["source"]]["split"] == "train"
        copies[int(row["source"])].append(int(row["transpose"]))
    assert all(sorted(k) == [-2, -1, 0, 1, 2, 3] for k in copies.values())
    assert ds.stats["tunes"]["train"] == len(copies)
    assert ds.stats["sequences"]["train"] == len(train) == 6 * len(copies)


def test_transposed_copies_hold_the_shifted_notes(make_dataset):
    ds = Dataset(make_dataset(transpose=(-2, 3)))
    tok, train = ds.tokenizer, ds.split("train")
    src_row = int(train.index["source"][0])
    rows = {int(r["transpose"]): i for i, r in enumerate(train.index) if r["source"] == src_row}
    notes = {k: note_array(tok.decode_score(tok.decode_ids(train.tune(i)[1:-1])).tracks[0]) for k, i in rows.items()}
    for k, n in notes.items():
        assert np.array_equal(n[:, :2], notes[0][:, :2])
        assert np.array_equal(n[:, 2], notes[0][:, 2] + k)


def test_out_of_range_notes_dropped_and_counted(tmp_path):
    # pitches 104..108 (the top of the piano range): +3 loses the notes above 105
    path = write_midi(tmp_path / "in" / "high.mid", [Part([(i, 1, p) for i, p in enumerate([104, 105, 106, 107, 108])])])
    build([path], tmp_path / "out", split=(1.0, 0.0, 0.0), transpose=(0, 3))
    ds = Dataset(tmp_path / "out")
    (rec,) = ds.manifest()
    assert rec["transposed_copies"] == 3
    assert rec["transpose_dropped_notes"] == 1 + 2 + 3
    by_shift = {int(r["transpose"]): int(r["n_notes"]) for r in ds.split("train").index}
    assert by_shift == {0: 5, 1: 4, 2: 3, 3: 2}


def test_no_val_or_test_tune_nor_its_transposition_in_train(make_dataset):
    ds = Dataset(make_dataset(transpose=(-2, 3)))
    train = set(shape_hashes(ds, "train"))
    for split in ("val", "test"):
        held_out = shape_hashes(ds, split)
        assert held_out and not train & set(held_out), split
    # the manifest's hashes agree: no content is in two splits
    rows = [r for r in ds.manifest() if r["status"] == "ok"]
    splits_of = defaultdict(set)
    for r in rows:
        splits_of[r["melody"]["shape_hash"]].add(r["split"])
    assert all(len(s) == 1 for s in splits_of.values())


# --- split leakage and determinism ---------------------------------------------------------------
@pytest.fixture(scope="module")
def with_duplicates(corpus_slice, tmp_path_factory) -> Path:
    """The corpus slice plus, for 12 tunes, a renamed copy and a copy transposed up 5 semitones."""
    folder = tmp_path_factory.mktemp("dups")
    files = sorted(corpus_slice.glob("*.mid"))
    for f in files:
        shutil.copy(f, folder / f.name)
    for i, f in enumerate(files[:12]):
        shutil.copy(f, folder / f"copy_{i:02d}.mid")
        write_transposed(f, folder / f"zz_up5_{i:02d}.mid", 5)
    return folder


def test_copies_and_transposed_duplicates_share_a_split(with_duplicates, tmp_path):
    build([with_duplicates], tmp_path / "out", split=(0.34, 0.33, 0.33))
    rows = {Path(r["path"]).name: r for r in Dataset(tmp_path / "out").manifest()}
    originals = sorted(n for n in rows if not n.startswith(("copy_", "zz_up5_")))
    seen = set()
    for i, name in enumerate(originals[:12]):
        trio = [rows[name], rows[f"copy_{i:02d}.mid"], rows[f"zz_up5_{i:02d}.mid"]]
        assert len({r["split"] for r in trio}) == 1, name
        assert trio[1]["hash"] == trio[0]["hash"] and trio[1]["duplicate_of"] == trio[0]["path"]
        assert trio[2]["melody"]["shape_hash"] == trio[0]["melody"]["shape_hash"]
        seen.add(trio[0]["split"])
    assert len(seen) > 1  # the 12 tunes do not all fall in one split by chance


@pytest.mark.slow
def test_splits_do_not_depend_on_file_names_or_order(corpus_slice, tmp_path):
    build([corpus_slice], tmp_path / "a", split=(0.5, 0.25, 0.25))
    renamed = tmp_path / "renamed"
    renamed.mkdir()
    files = sorted(corpus_slice.glob("*.mid"))
    names = [f"tune_{i:03d}.mid" for i in range(len(files))]
    random.Random(1).shuffle(names)  # new names, so a new order as well
    for f, n in zip(files, names):
        shutil.copy(f, renamed / n)
    build([renamed], tmp_path / "b", split=(0.5, 0.25, 0.25))
    a, b = split_by_content(tmp_path / "a"), split_by_content(tmp_path / "b")
    assert a == b and len(a) > 40
    assert len(set(a.values())) == 3
    # listing the files one by one, reversed, changes nothing either
    build(list(reversed(files)), tmp_path / "c", split=(0.5, 0.25, 0.25))
    assert split_by_content(tmp_path / "c") == a


def test_split_is_a_function_of_seed_and_key():
    fr = (0.8, 0.1, 0.1)
    keys = [f"{i:016x}" for i in range(3000)]
    got = [split_of(k, 0, fr) for k in keys]
    assert got == [split_of(k, 0, fr) for k in keys]
    share = {s: got.count(s) / len(got) for s in SPLITS}
    assert share["train"] == pytest.approx(0.8, abs=0.03) and share["val"] == pytest.approx(0.1, abs=0.02)
    assert got != [split_of(k, 1, fr) for k in keys]
    assert {split_of(k, 0, (1.0, 0.0, 0.0)) for k in keys} == {"train"}


def folder_bytes(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


@pytest.mark.slow
def test_tokenizing_twice_gives_identical_folders(corpus_slice, tmp_path):
    opts = dict(split=(0.8, 0.1, 0.1), transpose=(-1, 1), subword="bpe", vocab_size=800)
    build([corpus_slice], tmp_path / "one", workers=1, **opts)
    build([corpus_slice], tmp_path / "two", workers=2, **opts)
    one, two = folder_bytes(tmp_path / "one"), folder_bytes(tmp_path / "two")
    assert sorted(one) == sorted(["COMPLETE", "manifest.jsonl", "stats.json", "tokenizer.json"]
                                 + [f"{s}{ext}" for s in SPLITS + ("train.fim",) for ext in (".bin", ".index.npy")])
    assert [n for n in one if one[n] != two[n]] == []


# --- building and reading --------------------------------------------------------------------------
def test_stats_and_index_agree(tiny_dataset):
    ds = Dataset(tiny_dataset)
    for split in SPLITS:
        sp = ds.split(split)
        assert ds.stats["tokens"][split] == len(sp.tokens) == int(sp.index["length"].sum())
        starts = np.concatenate([[0], np.cumsum(sp.index["length"])[:-1]]) if len(sp) else []
        assert np.array_equal(sp.index["start"], starts)
        for i in range(len(sp)):
            tune = sp.tune(i)
            assert tune[0] == ds.tokenizer.bos_id and tune[-1] == ds.tokenizer.eos_id
            assert ds.tokenizer.count_notes(tune[1:-1]) == sp.index["n_notes"][i]
    assert sum(ds.stats["tunes"].values()) == ds.stats["ok"] == len(ds.manifest())


def test_base_tunes_and_detokenize(tiny_dataset, tmp_path):
    import symusic

    ds = Dataset(tiny_dataset)
    tunes = ds.base_tunes("val")
    assert len(tunes) == len(ds.split("val"))
    out = ds.detokenize("val", 0, tmp_path / "sub" / "tune.mid")
    score = symusic.Score(str(out))
    assert len(score.tracks) == 1 and len(score.tracks[0].notes) == ds.tokenizer.count_notes(tunes[0]) > 0
    with pytest.raises(UserError, match="out of range"):
        ds.detokenize("val", len(tunes), tmp_path / "x.mid")
    with pytest.raises(UserError, match="choose one of"):
        ds.split("dev")


def test_reader_rejects_missing_partial_and_foreign_folders(tmp_path, tiny_dataset):
    with pytest.raises(DataError, match="not found"):
        Dataset(tmp_path / "nothing")
    partial = tmp_path / "partial"
    shutil.copytree(tiny_dataset, partial)
    (partial / "COMPLETE").unlink()
    with pytest.raises(DataError, match="incomplete"):
        Dataset(partial)
    (tmp_path / "foreign").mkdir()
    with pytest.raises(DataError, match="not a dataset folder"):
        Dataset(tmp_path / "foreign")


def test_force_replaces_and_failed_build_keeps_the_old_dataset(tmp_path, corpus_slice):
    files = sorted(corpus_slice.glob("*.mid"))[:5]
    out = tmp_path / "out"
    build(files, out)
    before = folder_bytes(out)
    with pytest.raises(UserError, match="not empty"):
        build(files, out)
    junk = tmp_path / "junk.mid"
    junk.write_text("not midi")
    with pytest.raises(UserError, match="no usable tune"):
        build([junk], out, force=True)
    assert folder_bytes(out) == before  # the failed build left the old dataset alone
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]  # nor temporary folders
    build(files[:3], out, force=True)
    assert Dataset(out).stats["files"] == 3


def test_no_train_tune_is_a_clear_error(tmp_path, corpus_slice):
    files = sorted(corpus_slice.glob("*.mid"))[:3]
    with pytest.raises(UserError, match=r"all 3 usable tune\(s\) fell in the val/test splits"):
        build(files, tmp_path / "out", split=(0.0001, 0.5, 0.4999))
    assert not (tmp_path / "out").exists()
    build(files, tmp_path / "out", split=(1.0, 0.0, 0.0))


def test_bad_files_never_stop_the_run(tmp_path, corpus_slice):
    src = tmp_path / "in"
    src.mkdir()
    good = sorted(corpus_slice.glob("*.mid"))[:4]
    for f in good:
        shutil.copy(f, src / f.name)
    (src / "empty.mid").write_bytes(b"")
    (src / "text.mid").write_text("hello, I am not a MIDI file\n")
    (src / "cut.mid").write_bytes(good[0].read_bytes()[:40])
    write_midi(src / "drums.mid", [Part([(0, 1, 36), (1, 1, 38)], is_drum=True)])
    write_midi(src / "long.mid", [Part([(i * 0.5, 0.5, 50 + i % 12) for i in range(400)], name="m")])
    s = build([src], tmp_path / "out", max_notes=300, split=(1.0, 0.0, 0.0))
    assert (s["files"], s["ok"], s["skipped"], s["failed"]) == (9, 4, 2, 3)
    rows = {Path(r["path"]).name: r for r in Dataset(tmp_path / "out").manifest()}
    assert rows["empty.mid"]["reason"] == "empty file (0 bytes)"
    assert rows["text.mid"]["reason"].startswith("not a MIDI file")
    assert rows["cut.mid"]["reason"].startswith("corrupt MIDI")
    assert (rows["drums.mid"]["status"], rows["drums.mid"]["reason"]) == ("skipped", "drums only")
    assert rows["long.mid"]["status"] == "skipped" and "--max-notes 300" in rows["long.mid"]["reason"]
    assert all(rows[f.name]["status"] == "ok" for f in good)
    assert all(r["split"] is None and r["n_tokens"] == 0 for r in rows.values() if r["status"] != "ok")
    assert s["reasons"] == {"empty file": 1, "not a MIDI file": 1, "corrupt MIDI": 1, "drums only": 1, "too many notes": 1}


def test_config_is_validated():
    for bad in (dict(scheme="Octuple"), dict(melody="track:"), dict(split=(0.5, 0.5, 0.5)), dict(split=(0, 0.5, 0.5)),
                dict(transpose=(3, -3)), dict(transpose=(0, 30)), dict(subword="wordpiece"), dict(workers=-1),
                dict(max_notes=0), dict(max_file_mb=0), dict(controls="tempo"), dict(controls=""),
                dict(fim_rate=1.5), dict(fim_rate=-0.1), dict(fim_order="mps"), dict(fim_suffix_bars=0)):
        with pytest.raises(UserError):
            TokenizeConfig(**bad).validate()
    TokenizeConfig(melody="track:3", transpose=(-5, 6), subword="unigram").validate()
