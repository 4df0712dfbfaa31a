"""Piano-roll pictures of melodies (numpy arrays for TensorBoard, PNG files for reports).

Notes come from :func:`melodylm.midi.score_notes`; notes from ``split_beat`` on (a sample's
continuation) are drawn in another colour than the prompt.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from melodylm.midi import notes_in_beats, score_notes

PROMPT_RGB = (70, 110, 200)
NEW_RGB = (220, 90, 60)


def pianoroll_array(score, split_beat: float | None = None, px_per_beat: int = 8, max_beats: float = 256) -> np.ndarray:
    """An RGB (H, W, 3) uint8 piano roll; notes from ``split_beat`` on are drawn in another colour."""
    notes = notes_in_beats(score_notes(score), int(score.ticks_per_quarter))
    if not len(notes):
        return np.full((16, 16, 3), 255, dtype=np.uint8)
    lo, hi = int(notes[:, 2].min()) - 2, int(notes[:, 2].max()) + 2
    end = min(max_beats, float((notes[:, 0] + notes[:, 1]).max()))
    h, w = (hi - lo + 1) * 4, max(16, int(np.ceil(end * px_per_beat)) + 1)
    img = np.full((h, w, 3), 255, dtype=np.uint8)
    for beat in range(0, int(end) + 1, 4):
        img[:, min(w - 1, beat * px_per_beat)] = (225, 225, 225)
    for on, dur, p in notes:
        if on >= end:
            continue
        x0, x1 = int(on * px_per_beat), max(int(on * px_per_beat) + 1, int((on + dur) * px_per_beat) - 1)
        y = (hi - int(p)) * 4
        colour = NEW_RGB if split_beat is not None and on >= split_beat else PROMPT_RGB
        img[y:y + 3, x0:min(x1, w)] = colour
    return img


def save_pianoroll(score, path: str | Path, split_beat: float | None = None, title: str = "") -> Path:
    """Write a piano-roll PNG with pitch and beat axes (matplotlib, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    notes = notes_in_beats(score_notes(score), int(score.ticks_per_quarter))
    fig, ax = plt.subplots(figsize=(10, 3), dpi=100)
    for on, dur, p in notes:
        c = np.array(NEW_RGB if split_beat is not None and on >= split_beat else PROMPT_RGB) / 255
        ax.add_patch(plt.Rectangle((on, p - 0.4), dur, 0.8, color=c))
    if len(notes):
        ax.set_xlim(0, float((notes[:, 0] + notes[:, 1]).max()) + 0.5)
        ax.set_ylim(notes[:, 2].min() - 2, notes[:, 2].max() + 2)
    if split_beat is not None:
        ax.axvline(split_beat, color="0.4", lw=1, ls="--")
    ax.set_xlabel("beats")
    ax.set_ylabel("MIDI pitch")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
