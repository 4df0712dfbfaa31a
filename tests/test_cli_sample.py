"""`melodylm sample` end to end: a tiny trained checkpoint, files, sidecars, summaries, errors."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

import melodylm
from conftest import Part, scale, write_midi
from melodylm import generate as gen_module
from melodylm.cli import main


@pytest.fixture(scope="module")
def checkpoint(tiny_dataset, tmp_path_factory) -> Path:
    """A GPT trained for a few steps on the tiny REMI dataset: the run folder."""
    from melodylm.train import TrainConfig, train

    out = tmp_path_factory.mktemp("run") / "gpt-tiny"
    train(TrainConfig(data_dir=str(tiny_dataset), arch="gpt", size="tiny", max_steps=5, eval_interval=5,
                      sample_tokens=0, batch_size=4, out_dir=str(out), device="cpu"), progress=False)
    assert (out / "best.pt").is_file()
    return out


@pytest.fixture(scope="module")
def prompt(tmp_path_factory) -> Path:
    return write_midi(tmp_path_factory.mktemp("prompt") / "tune.mid", [Part(scale(0, 24, step=0.5, dur=0.5))],
                      time_signature=(3, 4), tempo=100)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["sample", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
def test_same_seed_gives_byte_identical_files(checkpoint, prompt, tmp_path, capsys) -> None:
    args = ["--checkpoint", checkpoint, "--prompt", prompt, "--prompt-bars", "2", "--n", "3", "--seed", "4",
            "--max-bars", "4", "--max-tokens", "200", "--device", "cpu"]
    assert run(capsys, *args, "-o", tmp_path / "a")[0] == 0
    assert run(capsys, *args, "-o", tmp_path / "b")[0] == 0
    other = [("5" if a == "4" and args[i - 1] == "--seed" else a) for i, a in enumerate(args)]
    assert run(capsys, *other, "-o", tmp_path / "c")[0] == 0
    a = sorted((tmp_path / "a").glob("*.mid"))
    assert [f.name for f in a] == ["sample_000.mid", "sample_001.mid", "sample_002.mid"]
    for f in a:
        assert f.read_bytes() == (tmp_path / "b" / f.name).read_bytes()
    assert [f.read_bytes() for f in a] != [(tmp_path / "c" / f.name).read_bytes() for f in a]


def test_sidecar_and_json_summary(checkpoint, prompt, tmp_path, capsys) -> None:
    from melodylm.checkpoint import file_hash

    out = tmp_path / "s"
    code, stdout, err = run(capsys, "--checkpoint", checkpoint, "--prompt", prompt, "--prompt-bars", "2", "--n", "2",
                            "--seed", "1", "--top-k", "20", "--top-p", "0.9", "--temperature", "0.8",
                            "--max-notes", "6", "-o", out, "--json", "--plot", "--device", "cpu")
    assert code == 0
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["out_dir"] == str(out)
    assert summary["files"] == [str(out / "sample_000.mid"), str(out / "sample_001.mid")]
    assert summary["invalid_tokens"] == [0, 0]
    import symusic

    for f, n in zip(summary["files"], summary["n_notes"]):
        side = json.loads(Path(f).with_suffix(".json").read_text())
        assert symusic.Score(f).note_num() == n == side["n_notes"]
        assert Path(f).with_suffix(".png").stat().st_size > 1000
        assert side["checkpoint_hash"] == file_hash(checkpoint / "best.pt")
        assert Path(side["checkpoint"]) == checkpoint / "best.pt"
        assert side["melodylm_version"] == melodylm.__version__
        assert side["options"]["seed"] == 1 and side["options"]["top_k"] == 20 and side["options"]["top_p"] == 0.9
        assert side["options"]["temperature"] == 0.8 and side["options"]["max_notes"] == 6
        assert side["flags"]["plot"] is True and side["flags"]["prompt_bars"] == 2
        p = side["prompt"]
        assert p["file"] == str(prompt) and p["notes"] == 12 and p["beats"] == 6.0 and p["cut"] == "bars:2"
        assert p["time_signature"] == "3/4" and abs(p["tempo"] - 100) < 1e-3
        assert side["continuation_start_beat"] == 6.0
        assert side["n_notes"] == 12 + side["new_notes"] and side["new_notes"] <= 6
        assert side["invalid_tokens"] == 0 and side["stop"] in ("eos", "max_notes", "max_tokens")
        assert side["signature"].startswith("melodylm ") and "seed 1" in side["signature"]
    assert "wrote" in err and "invalid tokens" in err


@pytest.mark.slow
def test_continuation_only_against_keep_prompt(checkpoint, prompt, tmp_path, capsys) -> None:
    base = ["--checkpoint", checkpoint, "--prompt", prompt, "--prompt-bars", "2", "--seed", "3", "--n", "2",
            "--max-tokens", "80", "--json"]
    _, keep, _ = run(capsys, *base, "-o", tmp_path / "k")
    _, cont, _ = run(capsys, *base, "--continuation-only", "-o", tmp_path / "c")
    keep, cont = json.loads(keep.splitlines()[-1]), json.loads(cont.splitlines()[-1])
    assert [k - 12 for k in keep["n_notes"]] == cont["n_notes"]
    side = json.loads((tmp_path / "c" / "sample_000.json").read_text())
    assert side["options"]["keep_prompt"] is False and side["continuation_start_beat"] <= 6.0


def test_unconstrained_reports_its_invalid_tokens(checkpoint, tmp_path, capsys) -> None:
    code, out, _ = run(capsys, "--checkpoint", checkpoint, "--no-constraint", "--n", "4", "--seed", "2",
                       "--max-tokens", "120", "--temperature", "2", "-o", tmp_path / "u", "--json")
    assert code == 0
    assert sum(json.loads(out.splitlines()[-1])["invalid_tokens"]) > 0


@pytest.mark.parametrize("flags,needle", [
    (["--n", "0"], "--n"),
    (["--temperature", "0"], "--temperature"),
    (["--temperature", "-1"], "--temperature"),
    (["--top-p", "0"], "--top-p"),
    (["--top-p", "1.5"], "--top-p"),
    (["--top-k", "-1"], "--top-k"),
    (["--max-tokens", "-1"], "--max-tokens"),
    (["--max-notes", "-1"], "--max-notes"),
    (["--max-bars", "-2"], "--max-bars"),
    (["--prompt-bars", "2"], "--prompt"),
    (["--n", "two"], "--n"),
    (["--keep-prompt", "--continuation-only"], "not allowed"),
    (["--melody", "nonsense", "--prompt", "PROMPT"], "melody"),
    (["--prompt", "MISSING"], "cannot read"),
    (["--prompt", "NOTMIDI"], "not a MIDI file"),
    (["--prompt", "EMPTY"], "no notes"),
    (["--checkpoint", "MISSING"], "not found"),
    (["--device", "tpu"], "--device"),
])
def test_bad_input_is_one_line_and_exit_2(checkpoint, prompt, tmp_path, capsys, flags, needle) -> None:
    (tmp_path / "bad.mid").write_bytes(b"hello")
    empty = write_midi(tmp_path / "empty.mid", [Part([])])
    subst = {"PROMPT": str(prompt), "MISSING": str(tmp_path / "nope.mid"), "NOTMIDI": str(tmp_path / "bad.mid"),
             "EMPTY": str(empty)}
    flags = [subst.get(f, f) for f in flags]
    if "--checkpoint" not in flags:
        flags += ["--checkpoint", str(checkpoint)]
    code, out, err = run(capsys, *flags, "-o", tmp_path / "out")
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("melodylm: error:") and needle in err
    assert not (tmp_path / "out").exists()


def test_non_empty_out_dir_needs_force(checkpoint, tmp_path, capsys) -> None:
    out = tmp_path / "o"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, _, err = run(capsys, "--checkpoint", checkpoint, "--max-tokens", "20", "-o", out)
    assert code == 2 and "--force" in err
    for n in (3, 1):  # a second, smaller batch replaces the first one's files
        assert run(capsys, "--checkpoint", checkpoint, "--max-tokens", "20", "--n", n, "-o", out, "--force")[0] == 0
    assert sorted(f.name for f in out.iterdir()) == ["notes.txt", "sample_000.json", "sample_000.mid"]


def test_default_checkpoint_and_out_dir(checkpoint, tmp_path, capsys, monkeypatch) -> None:
    import shutil

    from melodylm import resources

    monkeypatch.setattr(resources, "BUNDLED", tmp_path / "nowhere")
    monkeypatch.setattr(resources, "REPO_ROOT", tmp_path / "nowhere")
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "--max-tokens", "10")
    assert code == 2 and "--checkpoint" in err and len(err.strip().splitlines()) == 1
    for name, age in (("old-run", 100), ("new-run", 0), ("no-best", -50)):
        d = tmp_path / "checkpoints" / name
        d.mkdir(parents=True)
        if name != "no-best":
            shutil.copy(checkpoint / "best.pt", d / "best.pt")
            os.utime(d / "best.pt", (time.time() - age, time.time() - age))
    code, out, _ = run(capsys, "--max-tokens", "10", "--json")
    assert code == 0
    summary = json.loads(out.splitlines()[-1])
    assert Path(summary["out_dir"]).parent == Path("samples")
    assert Path(summary["out_dir"]).name.startswith("new-run-")
    side = json.loads(Path(summary["files"][0]).with_suffix(".json").read_text())
    assert Path(side["checkpoint"]).parent.name == "new-run"
    # the run just trained wins over the shipped model (issue 11, item 6); without runs, the shipped one
    shipped = tmp_path / "repo" / "checkpoints" / "pretrained"
    shipped.mkdir(parents=True)
    shutil.copy(checkpoint / "best.pt", shipped / "model.pt")
    monkeypatch.setattr(resources, "REPO_ROOT", tmp_path / "repo")
    assert gen_module.find_default_checkpoint().resolve() == (tmp_path / "checkpoints" / "new-run" / "best.pt").resolve()
    shutil.rmtree(tmp_path / "checkpoints")
    assert gen_module.find_default_checkpoint().resolve() == (shipped / "model.pt").resolve()


def test_prompt_out_of_range_pitches_are_reported(checkpoint, tmp_path, capsys) -> None:
    f = write_midi(tmp_path / "wide.mid", [Part([(0, 1, 10), (1, 1, 60), (2, 1, 62), (3, 1, 64)])])
    code, _, err = run(capsys, "--checkpoint", checkpoint, "--prompt", f, "--max-tokens", "10", "-o", tmp_path / "w")
    assert code == 0
    assert "1 prompt note(s) outside the model's pitch range were dropped (pitches 10)" in err


# ---------------------------------------------------------------------------- pop prompts (#11 item 7)

@pytest.fixture(scope="module")
def pop(tmp_path_factory) -> Path:
    """Drums, bass and piano from beat 0; the 'Lead Vocal' line enters at beat 48 (bar 13) for 8 bars."""
    from conftest import pop_song

    return pop_song(tmp_path_factory.mktemp("pop") / "pop.mid")


def _first_onset(midi: Path) -> int:
    import symusic

    return min(n.time for tr in symusic.Score(str(midi)).tracks for n in tr.notes)


def test_leading_silence_is_trimmed_and_recorded(checkpoint, pop, tmp_path, capsys) -> None:
    from conftest import POP_MELODY

    for cut, notes in ((["--prompt-bars", "4"], 16), (["--prompt-notes", "24"], 24)):
        out = tmp_path / cut[0].strip("-")
        code, _, err = run(capsys, "--checkpoint", checkpoint, "--prompt", pop, *cut, "--max-tokens", "40",
                           "--seed", "1", "-o", out)
        assert code == 0, err
        assert "the prompt begins at bar 13, where its melody starts (48 beats of silence left out)" in err
        side = json.loads((out / "sample_000.json").read_text())
        p = side["prompt"]
        assert p["start_bar"] == 13 and p["trimmed_beats"] == 48.0 and p["notes"] == notes
        assert p["cut"] == f"from_bar:13,{cut[0][len('--prompt-'):]}:{cut[1]}" and "from_bar:13" in side["signature"]
        assert side["continuation_start_beat"] == notes and side["options"]["prompt_start_bar"] is None
        assert _first_onset(out / "sample_000.mid") == 0  # no empty bars before the prompt
    import symusic

    first = [n.pitch for n in symusic.Score(str(tmp_path / "prompt-bars" / "sample_000.mid")).tracks[0].notes][:16]
    assert first == [67 + POP_MELODY[i % 8] for i in range(16)]


def test_prompt_start_bar(checkpoint, pop, tmp_path, capsys) -> None:
    from conftest import POP_MELODY

    from melodylm.generate import load_prompt
    from melodylm.midi import score_notes
    from melodylm.tokenizer import MelodyTokenizer

    tok = MelodyTokenizer()
    later = load_prompt(pop, tok, start_bar=15, bars=2)
    assert (later.start_bar, later.trimmed_beats, later.cut, later.n_notes) == (15, 0.0, "from_bar:15,bars:2", 8)
    assert score_notes(later.score)[:, 2].tolist() == [67 + POP_MELODY[i % 8] for i in range(8, 16)]
    assert score_notes(later.score)[0, 0] == 0 and later.beats == 8.0
    early = load_prompt(pop, tok, start_bar=3, notes=4)  # bars 3..12 are silent in the melody
    assert (early.start_bar, early.trimmed_beats, early.n_notes) == (13, 40.0, 4)
    bass = load_prompt(pop, tok, melody="track:BASS", start_bar=2, bars=1)
    assert (bass.start_bar, bass.trimmed_beats, score_notes(bass.score)[:, 2].tolist()) == (2, 0.0, [41, 41])
    out = tmp_path / "s"
    code, _, err = run(capsys, "--checkpoint", checkpoint, "--prompt", pop, "--prompt-start-bar", "17",
                       "--prompt-bars", "2", "--max-tokens", "30", "-o", out)
    assert code == 0 and "silence left out" not in err
    side = json.loads((out / "sample_000.json").read_text())
    assert side["prompt"]["start_bar"] == 17 and side["prompt"]["notes"] == 8
    assert side["options"]["prompt_start_bar"] == 17 and side["flags"]["prompt_start_bar"] == 17


def test_a_prompt_from_bar_one_is_not_moved(corpus_files) -> None:
    from melodylm.generate import load_prompt
    from melodylm.midi import load_melody, score_notes
    from melodylm.tokenizer import MelodyTokenizer

    tok = MelodyTokenizer()
    for f in corpus_files[:20]:
        p = load_prompt(f, tok, bars=2)
        assert (p.start_bar, p.trimmed_beats, p.cut) == (1, 0.0, "bars:2"), f.name
        kept, full = score_notes(p.score), score_notes(load_melody(f).score)
        assert kept[:, [0, 2]].tolist() == full[: len(kept), [0, 2]].tolist()  # durations end at the cut


@pytest.mark.parametrize("flags,line", [
    (["--prompt-start-bar", "21"], "--prompt-start-bar 21: the melody of POP ends in bar 20 "
                                   "(`melodylm inspect POP` shows its bars)"),
    (["--prompt-start-bar", "0"], "--prompt-start-bar 0: must be at least 1"),
    (["--melody", "track:sax"], "--prompt POP: no track is named 'sax'; tracks: track:0 'Drums' (drums, 80 notes), "
                                "track:1 'Bass' (40 notes), track:2 'Piano' (60 notes), "
                                "track:3 'Lead Vocal' (32 notes)"),
    (["--melody", "track:0"], "--prompt POP: track 0 is a drum track; pick a pitched one with --melody: "
                              "track:1 'Bass' (40 notes), track:2 'Piano' (60 notes), track:3 'Lead Vocal' (32 notes)"),
    (["--melody", "track:"], "--melody 'track:': use auto, skyline, all, track:N"),
])
def test_pop_prompt_mistakes_are_one_line(checkpoint, pop, tmp_path, capsys, flags, line) -> None:
    code, _, err = run(capsys, "--checkpoint", checkpoint, "--prompt", pop, *flags, "-o", tmp_path / "o")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("melodylm: error: " + line.replace("POP", str(pop)))
    assert not (tmp_path / "o").exists()


def test_prompt_start_bar_needs_a_prompt(checkpoint, tmp_path, capsys) -> None:
    code, _, err = run(capsys, "--checkpoint", checkpoint, "--prompt-start-bar", "2", "-o", tmp_path / "o")
    assert code == 2 and "--prompt-start-bar need --prompt" in err
