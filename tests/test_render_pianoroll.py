"""Piano rolls (colours by onset, note names, bars, legend) and the metadata a sample keeps from its prompt."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import TPQ, Part, write_midi

pytest.importorskip("matplotlib")

from melodylm.render.common import read_melody  # noqa: E402
from melodylm.render.meta import copy_meta  # noqa: E402
from melodylm.render.pianoroll import (CONTINUATION_COLOUR, PROMPT_COLOUR, pianoroll_array,  # noqa: E402
                                       pianoroll_figure, save_pianoroll)

# A prompt of 8 quarter notes whose last note (beat 7) lasts 2 beats, and a model note at 7.5
# that starts under it: it is the model's, so it takes the continuation colour.
PROMPT = [(i, 1, 60 + i) for i in range(7)] + [(7, 2, 67)]
MODEL = [(7.5, 1, 72), (9, 1, 71), (10, 2, 69)]


def _colours(fig) -> list[str]:
    """One colour per drawn note (the note collections are named after their legend label)."""
    from matplotlib.colors import to_hex

    out = []
    for c in fig.axes[0].collections:
        if c.get_gid() not in ("beats", "bars"):
            out += [to_hex(c.get_facecolor()[0]).upper()] * len(c.get_paths())
    return out


@pytest.fixture
def sample_score(tmp_path):
    path = write_midi(tmp_path / "sample.mid", [Part(PROMPT + MODEL)])
    return read_melody(path)


def test_without_a_split_every_note_has_one_colour_and_a_fitting_legend(sample_score):
    fig = pianoroll_figure(sample_score, single_label="generated")
    assert set(_colours(fig)) == {CONTINUATION_COLOUR.upper()}
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["generated"]


def test_notes_are_coloured_by_onset_at_the_split(sample_score):
    fig = pianoroll_figure(sample_score, split_tick=int(7.5 * TPQ))
    colours = _colours(fig)
    assert colours.count(PROMPT_COLOUR.upper()) == len(PROMPT)
    assert colours.count(CONTINUATION_COLOUR.upper()) == len(MODEL)  # the note under the prompt's last note too
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["prompt", "continuation"]


def test_axes_name_pitches_and_count_bars_and_beats(sample_score):
    fig = pianoroll_figure(sample_score)
    ax = fig.axes[0]
    fig.canvas.draw()
    names = [t.get_text() for t in ax.get_yticklabels()]
    assert {"C4", "G4", "C5"} <= set(names) and not any(n.replace(".", "").isdigit() for n in names)
    beats = [t for t in ax.texts if t.get_gid() == "beat"]
    assert [t.get_text() for t in beats] == ["1", "2", "3", "4"] * 3  # 12 beats of 4/4
    assert [t.get_position()[0] for t in beats] == list(range(12))
    bar_lines = next(c for c in ax.collections if c.get_gid() == "bars")
    assert sorted(seg[0][0] for seg in bar_lines.get_segments()) == [0, 4, 8]


def test_array_and_png_show_the_same_picture(sample_score, tmp_path):
    img = pianoroll_array(sample_score, split_tick=int(7.5 * TPQ))
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    for colour in (PROMPT_COLOUR, CONTINUATION_COLOUR):
        rgb = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)])
        assert (np.abs(img.astype(int) - rgb).sum(axis=2) < 10).sum() > 50
    png = save_pianoroll(sample_score, tmp_path / "roll.png", split_tick=int(7.5 * TPQ))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_copy_meta_keeps_the_prompts_title_key_tempo_and_meter():
    import symusic

    prompt = symusic.Score(TPQ)
    prompt.key_signatures.append(symusic.KeySignature(0, -2, 0))  # two flats
    prompt.tempos.append(symusic.Tempo(0, 100.0))
    prompt.time_signatures.append(symusic.TimeSignature(0, 3, 4))
    tr = symusic.Track(name="The Enchanted Valley", program=73)
    tr.notes.append(symusic.Note(0, TPQ * 3, 70, 90))
    prompt.tracks.append(tr)
    # What the decoder gives: another resolution, its instrument as the name, no key, 4/4 at 120.
    sample = symusic.Score(8)
    sample.tempos.append(symusic.Tempo(0, 120.0))
    sample.time_signatures.append(symusic.TimeSignature(0, 4, 4))
    sample.time_signatures.append(symusic.TimeSignature(48, 2, 4))  # the model's own change, later
    st = symusic.Track(name="Acoustic Grand Piano", program=0)
    st.notes.append(symusic.Note(0, 24, 70, 90))
    st.notes.append(symusic.Note(24, 8, 72, 90))
    sample.tracks.append(st)

    out = copy_meta(prompt, sample)
    assert out.tracks[0].name == "The Enchanted Valley" and out.tracks[0].program == 73
    assert [(k.time, k.key, k.tonality) for k in out.key_signatures] == [(0, -2, 0)]
    assert [round(t.qpm) for t in out.tempos] == [100]
    assert [(t.time, t.numerator, t.denominator) for t in out.time_signatures] == [(0, 3, 4), (48, 2, 4)]
    assert len(out.tracks[0].notes) == 2 and sample.tracks[0].name == "Acoustic Grand Piano"  # a copy
