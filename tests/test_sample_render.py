"""`melodylm sample --audio --score --plot`: a playable WAV and readable sheet music beside each sample,
and sampled MIDI files that keep the prompt's key signature, title, tempo and meter."""

from __future__ import annotations

import json
import re
import sys
import wave
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, Part, scale, write_midi
from melodylm.cli import main

pytest.importorskip("verovio")
pytest.importorskip("tinysoundfont")

SHIPPED = REPO / "checkpoints" / "pretrained" / "model.pt"
TITLE = "The Enchanted Valley"
TEMPO = 100.0
pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def flat_prompt(tmp_path_factory) -> Path:
    """Four bars of 3/4 in B flat major (two flats in the key signature), titled, at 100 bpm."""
    import symusic

    path = tmp_path_factory.mktemp("prompt") / "valley.mid"
    notes = scale(n=12, low=58, steps=(0, 2, 4, 5, 7, 9, 11, 12))  # Bb3 C4 D4 Eb4 F4 G4 A4 Bb4 ...
    write_midi(path, [Part(notes, name=TITLE)], time_signature=(3, 4), tempo=TEMPO)
    score = symusic.Score(str(path))
    score.key_signatures.append(symusic.KeySignature(0, -2, 0))
    score.dump_midi(str(path))
    return path


@pytest.fixture(scope="module")
def sampled(flat_prompt, tmp_path_factory) -> Path:
    if not SHIPPED.is_file():
        pytest.skip("shipped model missing")
    out = tmp_path_factory.mktemp("samples") / "s"
    code = main(["sample", "--checkpoint", str(SHIPPED), "--prompt", str(flat_prompt), "--prompt-bars", "2",
                 "--max-bars", "3", "--n", "2", "--seed", "3", "--device", "cpu", "--audio", "--score", "--plot",
                 "--program", "73", "-o", str(out)])
    assert code == 0
    return out


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64) / 32768, w.getframerate()


def test_every_sample_has_a_playable_wav_of_its_length(sampled):
    import symusic

    mids = sorted(sampled.glob("sample_*.mid"))
    assert len(mids) == 2
    for mid in mids:
        score = symusic.Score(str(mid))
        beats = score.end() / score.ticks_per_quarter
        audio, sr = _read_wav(mid.with_suffix(".wav"))
        beat = 60 / TEMPO
        assert abs(len(audio) / sr - beats * beat) <= beat  # the file's length, ±1 beat
        assert np.sqrt(np.mean(audio ** 2)) > 0.01  # not silent
        assert mid.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"


def test_every_sample_has_sheet_music_with_its_notes_key_and_title(sampled):
    import symusic

    for mid in sorted(sampled.glob("sample_*.mid")):
        n_notes = symusic.Score(str(mid)).note_num()
        root = ET.parse(mid.with_suffix(".musicxml")).getroot()
        heads = root.findall(".//note/pitch/..")
        tied_on = [n for n in heads if n.find("tie[@type='stop']") is not None]
        assert len(heads) - len(tied_on) == n_notes  # each MIDI note once, ties merged
        svg = mid.with_suffix(".svg").read_text()
        assert len(re.findall(r'<g\b[^>]*class="note"', svg)) == len(heads)
        assert root.findtext(".//key/fifths") == "-2" and root.findtext(".//work-title") == TITLE
        assert TITLE in svg and "continuation" in svg
        ET.fromstring(svg)  # well-formed


def test_sample_files_keep_the_prompts_key_title_tempo_and_meter(sampled):
    import symusic

    for mid in sorted(sampled.glob("sample_*.mid")):
        score = symusic.Score(str(mid))
        assert [(k.time, k.key, k.tonality) for k in score.key_signatures] == [(0, -2, 0)]
        assert [t.name for t in score.tracks] == [TITLE]
        assert round(score.tempos[0].qpm) == round(TEMPO)
        assert (score.time_signatures[0].numerator, score.time_signatures[0].denominator) == (3, 4)


def test_split_tick_is_where_the_models_notes_start(sampled):
    import symusic

    for mid in sorted(sampled.glob("sample_*.mid")):
        side = json.loads(mid.with_suffix(".json").read_text())
        onsets = [n.time for n in symusic.Score(str(mid)).tracks[0].notes]
        split = side["split_tick"]
        assert split is not None and split in onsets
        assert sum(t >= split for t in onsets) == side["n_notes"] - side["prompt"]["notes"]


def test_force_replaces_the_rendered_files_of_an_earlier_batch(tmp_path):
    from melodylm.outputs import clear_samples

    for ext in ("mid", "json", "png", "wav", "svg", "musicxml"):
        (tmp_path / f"sample_000.{ext}").write_text("x")
    (tmp_path / "notes.txt").write_text("mine")
    assert len(clear_samples(tmp_path)) == 6 and [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("flags, module, needle", [
    (["--score"], "verovio", "melodylm[render]"),
    (["--audio"], "tinysoundfont", "tinysoundfont"),
    (["--program", "200", "--audio"], None, "--program 200"),
])
def test_render_mistakes_are_one_line_before_the_model_runs(tmp_path, capsys, monkeypatch, flags, module, needle):
    if module:
        monkeypatch.setitem(sys.modules, module, None)  # `import module` raises ImportError

    def no_model(*a, **k):
        raise AssertionError("the model ran before the options were checked")

    monkeypatch.setattr("melodylm.generate.generate", no_model)
    code = main(["sample", "--checkpoint", str(SHIPPED), "-o", str(tmp_path / "out"), *flags])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_demo_report_puts_audio_and_sheet_music_beside_each_piano_roll(tmp_path):
    from melodylm.demo import _sample_lines

    mid = tmp_path / "samples" / "sample_000.mid"
    mid.parent.mkdir()
    for ext in ("mid", "png", "svg", "wav"):
        mid.with_suffix(f".{ext}").write_text("x")
    text = "\n".join(_sample_lines(tmp_path, mid, mid.with_suffix(".png")))
    assert "| ![piano roll](samples/sample_000.png) | ![sheet music](samples/sample_000.svg) |" in text
    assert '<audio controls src="samples/sample_000.wav"></audio>' in text and "(samples/sample_000.wav)" in text
    mid.with_suffix(".svg").unlink()
    mid.with_suffix(".wav").unlink()
    text = "\n".join(_sample_lines(tmp_path, mid, mid.with_suffix(".png")))
    assert "svg" not in text and "wav" not in text and "(samples/sample_000.png)" in text


def test_a_prompt_moved_into_another_key_takes_that_keys_signature(flat_prompt):
    # The sample copies the prompt's key signature, so a prompt moved from B flat major into
    # "D minor" (to its relative major, F) must carry one flat, not the file's two.
    from melodylm.checkpoint import load_model
    from melodylm.generate import load_prompt, transpose_prompt
    from melodylm.keys import parse_key

    if not SHIPPED.is_file():
        pytest.skip("shipped model missing")
    _, tok, _ = load_model(SHIPPED, "cpu")
    moved = transpose_prompt(load_prompt(flat_prompt, tok), tok, parse_key("D minor"))
    assert moved.transposed != 0
    assert [(k.time, k.key, k.tonality) for k in moved.score.key_signatures] == [(0, -1, 0)]


def _steerable_model():
    """An untrained tiny GPT whose tokenizer has control tokens and fill sentinels (ids, not skill, matter here)."""
    import torch

    from melodylm.models import ModelConfig, build_model, size_preset
    from melodylm.tokenizer import MelodyTokenizer

    tok = MelodyTokenizer()
    tok.set_extra([{"key": "D minor", "meter": "3/4", "style": "waltzes"}])
    torch.manual_seed(0)
    cfg = ModelConfig(**{**size_preset("gpt", "tiny"), "vocab_size": tok.vocab_size, "pad_id": tok.pad_id,
                         "dropout": 0.0})
    return build_model(cfg).eval(), tok


@pytest.mark.parametrize("options, fifths", [({"fill": "2:3"}, -2), ({"key": "D minor", "max_tokens": 40}, -1)])
def test_filled_and_key_moved_samples_keep_the_title_and_the_right_signature(flat_prompt, options, fifths):
    from melodylm.generate import generate

    model, tok = _steerable_model()
    for s in generate(model, flat_prompt, n=2, tokenizer=tok, seed=1, **options):
        assert [t.name for t in s.score.tracks] == [TITLE]
        assert [(k.time, k.key) for k in s.score.key_signatures] == [(0, fifths)]
