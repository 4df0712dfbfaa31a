"""Output folders: refusing to overwrite, building out of sight, naming and replacing samples.

Every command that writes a folder (``tokenize``, ``corpus import``, ``sample``, ``demo``) goes
through :func:`check_out_dir` first, so none replaces an existing folder without ``--force``
and a mistake is found before any work is done. A dataset is built in a hidden sibling folder
(:func:`staging_dir`) and swapped into place only when complete (:func:`publish_dir`), so a
failed or interrupted build leaves the old folder untouched. Data code: no torch here.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from melodylm.controls import GUIDANCE, KEY_TRIES
from melodylm.errors import UserError

SAMPLES_ROOT = Path("samples")  # default parent of sample folders, relative to the current folder
# What writing a sample leaves: MIDI, sidecar, piano roll, audio, sheet music.
SAMPLE_SUFFIXES = (".mid", ".json", ".png", ".wav", ".svg", ".musicxml")


def check_out_dir(out: str | Path, force: bool,
                  fix: str = "pass --force to replace it, or choose another -o") -> bool:
    """Refuse ``out`` if it is a file, or a non-empty folder without ``force``.

    ``fix`` ends the refusal and says what ``--force`` would do there. Returns whether ``out``
    is a folder that already holds something (to be replaced by the caller). Writes nothing.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"output {out} exists and is not a folder: choose another -o")
    busy = out.is_dir() and any(out.iterdir())
    if busy and not force:
        raise UserError(f"output folder {out} is not empty ({fix})")
    return busy


def staging_dir(out: str | Path) -> Path:
    """A fresh, empty hidden sibling of ``out`` to build in; :func:`publish_dir` moves it into place."""
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
    except OSError as e:
        raise UserError(f"cannot write to {out.parent}: {e.strerror or e}") from None
    return tmp


def publish_dir(tmp: str | Path, out: str | Path) -> None:
    """Swap the finished folder ``tmp`` into ``out``; an older ``out`` is removed only after that."""
    tmp, out = Path(tmp), Path(out)
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def replace_dir(out: str | Path, force: bool) -> Path:
    """An empty folder ``out``: refused if it holds something and not ``force``, else emptied."""
    out = Path(out)
    if check_out_dir(out, force):
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def default_samples_dir(checkpoint: str | Path, root: str | Path = SAMPLES_ROOT, now: float | None = None) -> Path:
    """``samples/<run>-<date>-<time>`` for a checkpoint file or run folder, numbered if taken.

    ``<run>`` is the run folder's name (the checkpoint file's folder), or ``model``.
    """
    ckpt = Path(checkpoint)
    run = (ckpt.name if ckpt.is_dir() else ckpt.parent.name) or "model"
    base = Path(root) / f"{run}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(now))}"
    out, k = base, 1
    while out.exists():
        out, k = Path(f"{base}-{k}"), k + 1
    return out


def clear_samples(out: str | Path, stem: str = "sample") -> list[Path]:
    """Delete the files an earlier batch of samples left in ``out`` (``<stem>_NNN`` + :data:`SAMPLE_SUFFIXES`).

    Other files in the folder stay. Returns the deleted paths.
    """
    gone = []
    for old in sorted(Path(out).glob(f"{stem}_[0-9][0-9][0-9].*")):
        if old.suffix in SAMPLE_SUFFIXES and old.is_file():
            old.unlink()
            gone.append(old)
    return gone


# --- a batch of samples into a folder (``melodylm sample``, the demo) ----------------------------
@dataclass
class SampleJob:
    """What ``melodylm sample`` does: which model, prompt and options, and where the files go."""

    checkpoint: str | None = None  # file or run folder; None: the shipped model, else the newest run
    prompt: str | None = None  # MIDI file to continue; None: start from nothing
    out_dir: str | None = None  # None: samples/<run>-<date>-<time>
    n: int = 1
    max_tokens: int | None = 1024
    max_notes: int | None = None
    max_bars: int | None = None
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0
    constrain: bool = True
    keep_prompt: bool = True
    melody: str = "auto"
    prompt_bars: int | None = None
    prompt_notes: int | None = None
    prompt_start_bar: int | None = None  # the prompt's file bar (from 1) to begin at
    device: str = "auto"
    plot: bool = False  # also a piano-roll PNG per sample
    audio: bool = False  # also a WAV per sample (the render extra)
    score: bool = False  # also sheet music per sample: SVG and MusicXML (the render extra)
    program: int = 0  # General MIDI instrument of the WAV (0 = piano)
    force: bool = False  # write into a non-empty out_dir, replacing the samples there
    flags: dict = field(default_factory=dict)  # the command line as given, kept in every sidecar
    fill: str | None = None  # bars "A:B" of the prompt to write anew
    key: str | None = None  # controls asked for (models trained with them)
    meter: str | None = None
    style: str | None = None
    guidance: float = GUIDANCE  # classifier-free guidance weight for asked controls
    key_tries: int = KEY_TRIES  # draws in all for a sample whose notes are not in the asked key


def check_render_options(plot: bool = False, audio: bool = False, score: bool = False, program: int = 0) -> None:
    """Before the model runs: a bad ``--program`` or a missing engine for ``--plot/--audio/--score`` is one line.

    The engines' imports are only looked up (nothing heavy loads); a missing one raises
    :class:`melodylm.extras.MissingExtraError` naming what to install.
    """
    from melodylm.extras import require

    if not 0 <= int(program) <= 127:
        raise UserError(f"--program {program}: must be a General MIDI program 0..127 (0 = piano)")
    if plot:
        require("matplotlib", "render", "--plot (piano rolls)")
    if audio:
        from melodylm.render.audio import find_soundfont

        require("tinysoundfont", "render", "--audio (wav)")
        find_soundfont()
    if score:
        require("verovio", "render", "--score (sheet music)")


def sample_to_folder(job: SampleJob) -> dict:
    """Generate ``job.n`` samples and write them (MIDI, JSON sidecar; PNG, WAV, SVG if asked) into one folder.

    Everything a user can get wrong is checked before the model runs, the output folder
    included. With ``force``, the samples an earlier batch left there are deleted first (other
    files stay). Returns the summary: ``files``, ``n_notes``, ``invalid_tokens``, ``out_dir``,
    ``signature``, ``dropped_pitches`` (prompt notes outside the model's range) and
    ``samples`` (per sample: ``file``, ``n_notes``, ``new_notes``, ``new_tokens``, ``stop``,
    ``invalid_tokens``).
    """
    from melodylm.device import pick_device
    from melodylm.generate import find_default_checkpoint, generate, signature, validate_options, write_samples

    validate_options(job.n, job.temperature, job.top_k, job.top_p, job.max_tokens, job.max_notes,
                     job.max_bars, job.prompt_bars, job.prompt_notes, job.prompt_start_bar, key_tries=job.key_tries)
    ckpt = job.checkpoint or find_default_checkpoint()
    if ckpt is None:
        raise UserError("no checkpoint: train one (`melodylm train`) or pass --checkpoint CKPT")
    if job.prompt is None and (job.prompt_bars or job.prompt_notes or job.prompt_start_bar):
        raise UserError("--prompt-bars/--prompt-notes/--prompt-start-bar need --prompt MIDI")
    check_render_options(job.plot, job.audio, job.score, job.program)
    if job.out_dir is not None:
        check_out_dir(job.out_dir, job.force, fix="use --force")
    samples = generate(ckpt, job.prompt, job.n, max_tokens=job.max_tokens, max_notes=job.max_notes,
                       max_bars=job.max_bars, temperature=job.temperature, top_k=job.top_k, top_p=job.top_p,
                       seed=job.seed, constrain=job.constrain, keep_prompt=job.keep_prompt, melody=job.melody,
                       prompt_bars=job.prompt_bars, prompt_notes=job.prompt_notes,
                       prompt_start_bar=job.prompt_start_bar, device=pick_device(job.device),
                       fill=job.fill, key=job.key, meter=job.meter, style=job.style, guidance=job.guidance,
                       key_tries=job.key_tries)
    info = samples[0].info
    if job.out_dir is None:
        out = default_samples_dir(info["checkpoint"] or "model")
    else:
        out = Path(job.out_dir)
        if job.force and out.is_dir():
            clear_samples(out)
    files = write_samples(samples, out, plot=job.plot, extra={"flags": job.flags}, audio=job.audio, score=job.score,
                          program=job.program)
    prompt = info.get("prompt") or {}
    return {
        "files": [str(f) for f in files], "n_notes": [s.n_notes for s in samples],
        "invalid_tokens": [s.invalid_tokens for s in samples], "out_dir": str(out),
        "signature": signature(samples[0]), "dropped_pitches": list(prompt.get("dropped_pitches") or []),
        "prompt_start_bar": prompt.get("start_bar"), "prompt_trimmed_beats": prompt.get("trimmed_beats"),
        "samples": [{"file": str(f), "n_notes": s.n_notes, "new_notes": s.new_notes, "new_tokens": s.new_tokens,
                     "stop": s.stop, "invalid_tokens": s.invalid_tokens, "controls": s.info.get("controls")}
                    for f, s in zip(files, samples)],
    }
