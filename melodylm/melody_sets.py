"""Sets of melodies for scoring: a spec (MIDI files, a folder, ``DATA_DIR:split``) -> a :class:`MelodySet`.

A *set* is named by a spec:

* a MIDI file or a folder of MIDI files (searched recursively), e.g. ``samples/gpt-20250101-1200``;
* ``DATA_DIR:split`` for a token dataset made by ``melodylm tokenize``, e.g. ``data/default:train``
  (a dataset folder without ``:split`` means its training split).

Every melody becomes a :class:`MelodyItem`: its notes in beats and its base tokens. Base tokens
are miditok's, never subword ids, and samples are re-tokenized with the *reference's* tokenizer
(:func:`load_pair`), so both sides of a BLEU score share one vocabulary. A MIDI file written by
``melodylm sample`` has a JSON sidecar whose ``continuation_start_beat`` says where the model's
notes begin; notes before it (the prompt) are dropped, so that a prompt copied from a real tune
does not count. :mod:`melodylm.reports` turns sets into BLEU, copy and music-statistics reports.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np

from melodylm.errors import UserError
from melodylm.midi import beats_per_bar, crop_from, notes_in_beats, score_notes, time_signature_at

__all__ = ["MelodyItem", "MelodySet", "Spec", "file_position", "load_pair", "load_set", "newest_samples"]


@dataclass
class MelodyItem:
    """One melody of a set.

    ``notes`` is an (N, 3) float array of (onset, duration, pitch), onsets and durations in beats
    (quarter notes), sorted by onset; for a sample with a kept prompt, only the continuation,
    shifted to start in the bar where it begins. ``tokens`` are the base tokens of those notes
    under the reference's tokenizer (``None`` when the set was loaded without a tokenizer).
    """

    name: str
    notes: np.ndarray
    beats_per_bar: float = 4.0
    tokens: np.ndarray | None = None
    # Where ``notes`` sit in the item's own file (non-zero for a continuation): notes of the file
    # before them, and the beat and bar (0-based) of the file where their beat 0 lies.
    start_note: int = 0
    start_beat: float = 0.0
    start_bar: int = 0


class MelodySet(list):
    """A list of :class:`MelodyItem` that remembers where it came from.

    Attributes:
        source: the spec it was loaded from.
        tokenizer: the :class:`MelodyTokenizer` its tokens come from (or None).
        held_out: spec of real melodies of the same collection that are not in this set (a
            dataset's test split for its train split), the default human baseline; else None.
        skipped: ``(name, reason)`` for every file that gave no melody.
    """

    def __init__(self, items=(), source: str = "", tokenizer=None, held_out: str | None = None,
                 skipped: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(items)
        self.source = source
        self.tokenizer = tokenizer
        self.held_out = held_out
        self.skipped = list(skipped)


Spec = Union[str, Path, Sequence]


# --------------------------------------------------------------------------------------------
# Loading sets.

def _is_dataset_dir(p: Path) -> bool:
    return p.is_dir() and (p / "tokenizer.json").is_file() and (p / "stats.json").is_file()


def _parse_spec(spec: str | Path) -> tuple[str, Path, str]:
    """("dataset", folder, split) or ("midi", path, "")."""
    from melodylm.dataset import SPLITS

    text = str(spec)
    p = Path(text)
    if p.exists():
        return ("dataset", p, "train") if _is_dataset_dir(p) else ("midi", p, "")
    head, sep, tail = text.rpartition(":")
    if sep and head and tail in SPLITS:
        return "dataset", Path(head), tail
    raise UserError(f"{text}: no such file or folder (expected MIDI files, a folder of them, "
                    f"or DATA_DIR:split such as data/default:train)")


def _same_tokens(a, b) -> bool:
    """Whether two tokenizers give the same base tokens (subwords do not matter here)."""
    return a is b or (a is not None and b is not None and a.settings == b.settings)


def _encode(tokenizer, score) -> np.ndarray:
    """Base tokens of a one-track score, as the dataset builder makes them."""
    from melodylm.midi import transpose

    in_range, _ = transpose(score, 0, tuple(tokenizer.settings.pitch_range))
    if not any(len(t.notes) for t in in_range.tracks):
        return np.zeros(0, dtype=np.int64)
    return tokenizer.encode_score(in_range)


def _decoder(tok):
    """``tok.decode_score`` for many tunes, without miditok's per-token id -> string look-ups.

    miditok fills a sequence's token strings from its ids one vocabulary call at a time (~40% of
    decoding a folk tune); for an untrained single-vocabulary tokenizer the string of id ``i`` is
    ``base_vocab[i]``, so we hand the strings over and miditok skips that step. Same scores as
    ``decode_score`` (tested); other tokenizers use ``decode_score`` itself.
    """
    base = tok.base
    if getattr(base, "is_trained", True) or base.is_multi_voc or base.one_token_stream:
        return lambda ids: tok.decode_score(np.asarray(ids).tolist())
    from miditok import TokSequence

    vocab = tok.base_vocab
    special = {tok.pad_id_base, tok.bos_id_base, tok.eos_id_base}

    def decode(ids):
        kept = [i for i in np.asarray(ids).tolist() if i not in special]
        return base.decode([TokSequence(ids=kept, tokens=[vocab[i] for i in kept])])

    return decode


def _dataset_set(folder: Path, split: str, tokenizer) -> MelodySet:
    """A dataset split (its untransposed tunes) from the stored tokens, decoded to notes."""
    from melodylm.dataset import Dataset

    ds = Dataset(folder)
    sp = ds.split(split)
    tok = ds.tokenizer
    retokenize = tokenizer is not None and not _same_tokens(tokenizer, tok)
    manifest = ds.manifest()
    decode = _decoder(tok)
    items, seen = [], {}
    for i in sp.originals().tolist():
        base = tok.decode_ids(sp.tune(i)[1:-1])
        score = decode(base)
        ticks = score_notes(score)
        source = int(sp.index[i]["source"])
        stem = Path(manifest[source]["path"]).stem if 0 <= source < len(manifest) else f"{split}_{i}"
        seen[stem] = seen.get(stem, 0) + 1
        name = stem if seen[stem] == 1 else f"{stem}#{seen[stem]}"
        tokens = _encode(tokenizer, score) if retokenize else np.asarray(base, dtype=np.int64)
        items.append(MelodyItem(name, notes_in_beats(ticks, int(score.ticks_per_quarter)),
                                beats_per_bar(*time_signature_at(score)), tokens))
    other = "val" if split == "test" else "test"
    held_out = f"{folder}:{other}" if len(ds.split(other).originals()) else None
    return MelodySet(items, f"{folder}:{split}", tokenizer if retokenize else tok, held_out)


def _read_sidecar(midi: Path) -> tuple[float, str | None]:
    """(beat where the model's notes start, problem with the sidecar or None)."""
    side = midi.with_suffix(".json")
    if not side.is_file():
        return 0.0, None
    try:
        d = json.loads(side.read_text())
        start = float(d.get("continuation_start_beat") or 0.0)
    except (OSError, ValueError, TypeError, AttributeError) as e:
        return 0.0, f"sidecar {side.name} ignored ({type(e).__name__})"
    options = d.get("options") if isinstance(d.get("options"), dict) else {}
    if options.get("keep_prompt") is False:
        return 0.0, None  # the file holds the continuation alone already
    return max(start, 0.0), None


def _start_in_file(score, notes_before: int, tick: int) -> dict:
    """MelodyItem's ``start_*`` fields for notes cropped from the bar holding ``tick``."""
    from melodylm.midi import bar_lines

    bar, shift = -1, 0
    for line in bar_lines(score):
        if line > tick:
            break
        bar, shift = bar + 1, line
    return {"start_note": notes_before, "start_beat": shift / int(score.ticks_per_quarter), "start_bar": bar}


def file_position(item: MelodyItem, note: int) -> dict:
    """Where note ``note`` of ``item`` sits in the item's own file: note number (from 0, as the
    other note fields), bar and beat in the bar (both from 1, beats in quarter notes), and beat
    from the file's start (from 0). Bars past the item's start are counted in its first meter."""
    beat = float(item.notes[note, 0])
    bar, in_bar = divmod(beat, item.beats_per_bar)
    return {"note": item.start_note + int(note), "bar": item.start_bar + int(bar) + 1,
            "beat": round(in_bar + 1, 6), "file_beat": round(item.start_beat + beat, 6)}


def _midi_set(path: Path, tokenizer, melody: str, continuation_only: bool) -> MelodySet:
    from melodylm.dataset import find_midi_files
    from melodylm.midi import load_melody

    files = [Path(f) for f in find_midi_files([str(path)])]
    if not files:
        raise UserError(f"{path}: no MIDI files (.mid, .midi) found")
    root = path if path.is_dir() else path.parent
    items, skipped = [], []
    for f in files:
        name = str(f.relative_to(root).with_suffix(""))
        mel = load_melody(f, melody)
        if mel.status != "ok":
            skipped.append((name, mel.reason))
            continue
        score = mel.score
        start, problem = _read_sidecar(f) if continuation_only else (0.0, None)
        if problem:
            skipped.append((name, problem + "; all notes used"))
        tpq = int(score.ticks_per_quarter)
        ticks = score_notes(score)
        if start > 0:
            n_file = len(ticks)
            ticks = ticks[ticks[:, 0] >= start * tpq - 0.5]
            if not len(ticks):
                skipped.append((name, f"no notes from continuation_start_beat {start:g} on"))
                continue
            at = _start_in_file(score, n_file - len(ticks), int(ticks[0, 0]))
            # The kept notes start in the bar where the continuation begins, so the re-tokenized
            # continuation reads like the same bars of the full file.
            score, ticks = crop_from(score, ticks, int(ticks[0, 0]))
        else:
            at = {}
        tokens = _encode(tokenizer, score) if tokenizer is not None else None
        items.append(MelodyItem(name, notes_in_beats(ticks, tpq), beats_per_bar(*time_signature_at(score)), tokens,
                                **at))
    return MelodySet(items, str(path), tokenizer, None, skipped)


def load_set(spec: Spec, tokenizer=None, melody: str = "auto", continuation_only: bool = True) -> MelodySet:
    """Load a set of melodies (see the module docstring for specs).

    Args:
        spec: a MIDI file or folder, ``DATA_DIR:split``, a list of such specs (concatenated), or a
            list of :class:`MelodyItem` (returned as a set).
        tokenizer: tokenizer for the tokens of MIDI files (None: no tokens). For a dataset, the
            stored tokens are used when this tokenizer makes the same base tokens as the
            dataset's (or is None); otherwise the tunes are re-tokenized with it.
        melody: how to pick the melody of a MIDI file (``auto``, ``skyline``, ``all``, ``track:N``,
            ``track:NAME``).
        continuation_only: drop the notes before a sidecar's ``continuation_start_beat``.

    Returns:
        A :class:`MelodySet` (a list of :class:`MelodyItem`), in file / dataset order.

    Raises:
        UserError: a spec that names nothing, a folder without MIDI files, a missing dataset, a bad
            ``melody``.
    """
    if isinstance(spec, MelodySet):
        return spec
    from melodylm.midi import check_melody_mode

    check_melody_mode(melody)
    if isinstance(spec, (list, tuple)):
        if all(isinstance(x, MelodyItem) for x in spec):
            return MelodySet(spec, "<items>", tokenizer)
        parts = [load_set(s, tokenizer, melody, continuation_only) for s in spec]
        held = {p.held_out for p in parts}
        return MelodySet([it for p in parts for it in p], ",".join(p.source for p in parts),
                         parts[0].tokenizer if parts else tokenizer,
                         held.pop() if len(held) == 1 else None, [s for p in parts for s in p.skipped])
    kind, path, split = _parse_spec(spec)
    if kind == "dataset":
        return _dataset_set(path, split, tokenizer)
    return _midi_set(path, tokenizer, melody, continuation_only)


def newest_samples(root: str | Path = "samples") -> Path:
    """The folder under ``root`` whose newest MIDI file is the newest (what ``melodylm sample`` wrote last)."""
    from melodylm.dataset import MIDI_SUFFIXES

    root = Path(root)
    newest: dict[Path, float] = {}
    if root.is_dir():
        for f in root.rglob("*"):
            if f.suffix.lower() in MIDI_SUFFIXES and f.is_file():
                newest[f.parent] = max(newest.get(f.parent, 0.0), f.stat().st_mtime)
    if not newest:
        raise UserError(f"no samples found: ./{root} holds no folder of MIDI files; run `melodylm sample` "
                        "first or name the samples (a MIDI file or folder)")
    return max(newest, key=lambda d: (newest[d], str(d)))


def load_pair(samples: Spec, reference: Spec, melody: str = "auto", need_tokens: bool = True
              ) -> tuple[MelodySet, MelodySet]:
    """(samples, reference) loaded so that both can be compared: the reference's tokenizer
    tokenizes the samples (a MIDI reference gets the default tokenizer). Sets already loaded
    are used as they are. Raises UserError for an empty set or tokens that do not match.
    """
    from melodylm.tokenizer import MelodyTokenizer

    ref_tok = None
    if need_tokens and not isinstance(reference, (list, tuple)) and _parse_spec(reference)[0] == "midi":
        ref_tok = MelodyTokenizer()  # a MIDI reference: both sides get the default tokenization
    ref = load_set(reference, ref_tok, melody)
    tok = ref.tokenizer if ref.tokenizer is not None else (MelodyTokenizer() if need_tokens else None)
    smp = load_set(samples, tok if need_tokens else None, melody)
    if not smp:
        why = "; ".join(f"{n}: {r}" for n, r in smp.skipped[:3])
        raise UserError(f"{smp.source}: no usable melody among the samples" + (f" ({why})" if why else ""))
    if not ref:
        raise UserError(f"{ref.source}: the reference holds no melody")
    if need_tokens:
        for s in (ref, smp):
            if any(it.tokens is None for it in s):
                raise UserError(f"{s.source}: melodies without tokens; load them with the reference's tokenizer")
        if smp.tokenizer is not None and ref.tokenizer is not None and not _same_tokens(smp.tokenizer, ref.tokenizer):
            raise UserError("samples and reference were tokenized differently: BLEU over tokens needs one "
                            "tokenization (load the samples with the reference's tokenizer, or use --unit pitch)")
    return smp, ref
