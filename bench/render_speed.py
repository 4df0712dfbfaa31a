"""Render speed: `melodylm render` (WAV, SVG, PNG) on 32-bar folk tunes, beside what a user would pick.

Usage: python bench/render_speed.py [--tunes 5] [--repeats 5]

Data: the first ``--tunes`` O'Neill tunes (corpora/oneills1850) that span 31-32 bars.
Compared on the same files, repeats interleaved so that every engine sees the same machine load,
each from MIDI file to WAV file at 22,050 Hz with the same SoundFont (pretty_midi's TimGM6mb.sf2):

* ours: ``melodylm.render.render_file(..., formats=("wav",))``: read, choose the melody,
  tinysoundfont, 16-bit WAV.
* pretty_midi + fluidsynth: ``PrettyMIDI(path).fluidsynth(fs, sf2_path)`` then the same WAV
  writer (needs ``pip install pyfluidsynth`` and Debian's ``libfluidsynth3``; skipped otherwise).
* fluidsynth CLI: ``fluidsynth -ni -F out.wav -r 22050 SF2 MID``, process start included as a
  user pays it (Debian's ``fluidsynth``; skipped when not on PATH).
* pretty_midi sine: ``PrettyMIDI(path).synthesize(fs)``, the no-SoundFont fallback (sine waves).

Also timed, ours only: sheet music (MusicXML + verovio SVG) and the piano roll PNG. Reported:
median wall and CPU seconds per tune over all tunes x repeats, seconds of music per wall second,
ratio to ours, and the load average (the machine is shared: wall times grow with the load).
Imports happen before the clock starts.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from melodylm.render import render_file  # noqa: E402
from melodylm.render.audio import SAMPLE_RATE, find_soundfont, write_wav  # noqa: E402
from melodylm.render.common import read_melody  # noqa: E402

CORPUS = Path(__file__).resolve().parents[1] / "corpora" / "oneills1850"


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the fluidsynth CLI runs as one)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def tunes_of_32_bars(n: int) -> list[Path]:
    """The first ``n`` corpus files whose melody spans more than 31 and at most 32 bars."""
    out = []
    for path in sorted(CORPUS.glob("*.mid")):
        score = read_melody(path)
        ts = score.time_signatures[0]
        bar = ts.numerator * score.ticks_per_quarter * 4 // ts.denominator
        end = max(note.end for note in score.tracks[0].notes)
        if 31 * bar < end <= 32 * bar:
            out.append(path)
            if len(out) == n:
                break
    return out


def engines(sf2: Path) -> dict:
    """name -> callable(midi_path, out_dir); only the ones installed here."""
    import numpy as np

    def ours(path, out):
        render_file(path, out, formats=("wav",))

    found = {"ours (tinysoundfont)": ours}
    try:
        import pretty_midi
    except ImportError:
        pretty_midi = None
    try:
        import fluidsynth  # noqa: F401  pyfluidsynth, which pretty_midi's fluidsynth() needs
        have_fluid = pretty_midi is not None
    except (ImportError, OSError):  # OSError: pyfluidsynth installed but libfluidsynth missing
        have_fluid = False
    if have_fluid:
        def pm_fluid(path, out):
            audio = pretty_midi.PrettyMIDI(str(path)).fluidsynth(fs=SAMPLE_RATE, synthesizer=str(sf2))
            write_wav(Path(out) / "pm.wav", audio / max(1e-9, float(np.abs(audio).max())), SAMPLE_RATE)

        found["pretty_midi + fluidsynth"] = pm_fluid
    exe = shutil.which("fluidsynth")
    if exe:
        def cli(path, out):
            subprocess.run([exe, "-ni", "-q", "-g", "0.6", "-r", str(SAMPLE_RATE), "-F", str(Path(out) / "cli.wav"),
                            str(sf2), str(path)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        found["fluidsynth CLI"] = cli
    if pretty_midi is not None:
        def pm_sine(path, out):
            audio = pretty_midi.PrettyMIDI(str(path)).synthesize(fs=SAMPLE_RATE)
            write_wav(Path(out) / "sine.wav", audio / max(1e-9, float(np.abs(audio).max())), SAMPLE_RATE)

        found["pretty_midi sine (no SoundFont)"] = pm_sine
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tunes", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    load0 = os.getloadavg()
    sf2 = find_soundfont()
    files = tunes_of_32_bars(args.tunes)
    seconds = {f: read_melody(f).to("second").end() for f in files}
    runs = engines(sf2)

    def sheet(path, out):
        render_file(path, out, formats=("svg", "musicxml"))

    def roll(path, out):
        render_file(path, out, formats=("png",))

    runs.update({"ours: sheet music (musicxml+svg)": sheet, "ours: piano roll (png)": roll})
    times: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    with tempfile.TemporaryDirectory() as tmp:
        for name, fn in runs.items():  # warm-up: imports, SoundFont cache, fonts
            fn(files[0], tmp)
        for _ in range(args.repeats):
            for f in files:
                for name, fn in runs.items():
                    c0, t0 = cpu_seconds(), time.perf_counter()
                    fn(f, tmp)
                    times[name].append(time.perf_counter() - t0)
                    cpu[name].append(cpu_seconds() - c0)
    audio_s = statistics.median(seconds.values())
    print(f"# {len(files)} tunes of 32 bars (median {audio_s:.1f} s of music), {args.repeats} repeats, "
          f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, SoundFont {sf2.name}")
    base = statistics.median(times["ours (tinysoundfont)"])
    print(f"load average before: {' '.join(f'{x:.1f}' for x in load0)}, after: "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} (wall times grow with it; CPU times much less)")
    print(f"{'engine':34s} {'median s/tune':>13s} {'CPU s/tune':>10s} {'x real time':>11s} {'vs ours':>8s}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:34s} {med:13.3f} {statistics.median(cpu[name]):10.3f} {audio_s / med:11.0f} {med / base:7.2f}x")


if __name__ == "__main__":
    main()
