"""Sound: a General MIDI SoundFont synthesizer (TinySoundFont) renders a melody to a 16-bit WAV.

The SoundFont is the 6 MB General MIDI ``TimGM6mb.sf2`` that the ``pretty_midi`` wheel ships, so
nothing is downloaded; ``MELODYLM_SOUNDFONT`` or ``soundfont=`` points at another one. Tempo
changes come from the file (symusic converts ticks to seconds through its tempo map).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import wave
from pathlib import Path

import numpy as np

from melodylm.extras import MissingExtraError, require
from melodylm.render.common import RenderError

SAMPLE_RATE = 22_050  # plenty for a melody; a 40 s jig is 1.7 MB mono, not 7 MB of 44.1 kHz stereo
TAIL_S = 0.25  # let the last note's release ring; under a beat at any tempo below 240 bpm
# Other places a General MIDI SoundFont is found on Debian (packages timgm6mb-soundfont, fluid-soundfont-gm).
SYSTEM_SOUNDFONTS = ("/usr/share/sounds/sf2/TimGM6mb.sf2", "/usr/share/sounds/sf2/FluidR3_GM.sf2")


def find_soundfont(soundfont: str | Path | None = None) -> Path:
    """The SoundFont to use: the argument, ``$MELODYLM_SOUNDFONT``, pretty_midi's, or a Debian one."""
    given = soundfont or os.environ.get("MELODYLM_SOUNDFONT")
    if given:
        path = Path(given)
        if not path.is_file():
            raise RenderError(f"SoundFont {path}: no such file (check $MELODYLM_SOUNDFONT)")
        return path
    spec = importlib.util.find_spec("pretty_midi")  # the package's folder, without importing it
    if spec is not None and spec.submodule_search_locations:
        path = Path(list(spec.submodule_search_locations)[0]) / "TimGM6mb.sf2"
        if path.is_file():
            return path
    for p in SYSTEM_SOUNDFONTS:
        if Path(p).is_file():
            return Path(p)
    raise MissingExtraError("audio needs a General MIDI SoundFont: run `pip install 'melodylm[render]'` "
                            "(pretty_midi ships TimGM6mb.sf2) or set $MELODYLM_SOUNDFONT to an .sf2 file")


@functools.lru_cache(maxsize=2)
def _soundfont_bytes(path: str, mtime: float) -> bytes:
    # Parsing from bytes in memory is what costs; reading the 6 MB file again each time is ~5 ms.
    return Path(path).read_bytes()


def _events(score) -> tuple[np.ndarray, float]:
    """Note-on/off events in seconds as (time, is_on, pitch, velocity), offs before ons at equal times."""
    sec = score.to("second")
    arrays = [tr.notes.numpy() for tr in sec.tracks]
    if not sum(len(a["time"]) for a in arrays):
        return np.zeros((0, 4)), 0.0
    t, d, p, v = (np.concatenate([a[k] for a in arrays]).astype(np.float64)
                  for k in ("time", "duration", "pitch", "velocity"))
    ons = np.stack([t, np.ones_like(t), p, v], axis=1)
    offs = np.stack([t + d, np.zeros_like(t), p, np.zeros_like(t)], axis=1)
    ev = np.concatenate([ons, offs])
    ev = ev[np.lexsort((ev[:, 1], ev[:, 0]))]
    return ev, float((t + d).max())


def synthesize(score, program: int = 0, sample_rate: int = SAMPLE_RATE, soundfont: str | Path | None = None,
               peak: float = 0.89) -> np.ndarray:
    """Render every note of a symusic score with one GM instrument; mono float32 samples in [-1, 1].

    ``program`` is the General MIDI program (0 = Acoustic Grand Piano), applied to all notes. The
    result lasts until the last note ends plus :data:`TAIL_S`, scaled to ``peak`` (about -1 dBFS).
    """
    if not 0 <= int(program) <= 127:
        raise RenderError(f"--program {program}: must be a General MIDI program 0..127 (0 = piano)")
    tsf = require("tinysoundfont", "render", "audio (wav)")
    sf_path = find_soundfont(soundfont)
    events, end_s = _events(score)
    total = int(np.ceil((end_s + TAIL_S) * sample_rate)) + 1
    synth = tsf.Synth(samplerate=int(sample_rate))
    try:
        sfid = synth.sfload(_soundfont_bytes(str(sf_path), sf_path.stat().st_mtime))
        synth.program_select(0, sfid, 0, int(program))
    except Exception as e:  # tinysoundfont raises plain Exceptions for bad files and missing presets
        raise RenderError(f"SoundFont {sf_path}: cannot use program {program}: {e}") from None
    buf = bytearray(total * 8)  # stereo float32 frames, filled in place between events
    view = memoryview(buf)
    pos = 0
    for t, on, p, v in events.tolist():
        frame = min(total, int(round(t * sample_rate)))
        if frame > pos:
            synth.generate_simple(frame - pos, buffer=view[pos * 8:frame * 8])
            pos = frame
        if on:
            synth.noteon(0, int(p), max(1, int(v)))
        else:
            synth.noteoff(0, int(p))
    if total > pos:
        synth.generate_simple(total - pos, buffer=view[pos * 8:total * 8])
    audio = np.frombuffer(buf, dtype=np.float32).reshape(-1, 2).mean(axis=1)
    fade = min(len(audio), int(0.05 * sample_rate))  # no click where the tail is cut
    if fade:
        audio[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    top = float(np.abs(audio).max()) if len(audio) else 0.0
    return audio * (peak / top) if top > 0 else audio


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Path:
    """Write mono float samples in [-1, 1] as a 16-bit PCM WAV file (standard library ``wave``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(pcm.tobytes())
    return path


def render_wav(score, path: str | Path, program: int = 0, sample_rate: int = SAMPLE_RATE,
               soundfont: str | Path | None = None) -> Path:
    """Synthesize ``score`` and write it to ``path`` as a WAV file; returns the path."""
    return write_wav(path, synthesize(score, program, sample_rate, soundfont), sample_rate)
