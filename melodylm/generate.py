"""Prompts -> samples -> files: the generation API and what a sample holds on disk.

:func:`generate` reads a checkpoint (or takes a model), cuts and tokenizes a MIDI prompt
(:func:`load_prompt`), runs :func:`melodylm.sampling.generate_ids` under the tokenizer's
grammar, and decodes each sequence to a :class:`GeneratedMelody` (score, note counts, errors,
where the continuation starts). :func:`write_samples` writes ``sample_NNN.mid`` with a JSON
sidecar whose signature says how it was made.

Data flow::

    MIDI prompt --midi.load_melody--> one melody --tokenizer--> model ids
      --sampling.generate_ids--> GeneratedIds --build_sample--> GeneratedMelody --write_samples--> .mid + .json

Typical use::

    from melodylm.generate import generate, write_samples
    samples = generate("checkpoints/gpt-small", "tune.mid", n=4, prompt_bars=4, max_bars=8, seed=1)
    write_samples(samples, "samples/mine")
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from melodylm.controls import GUIDANCE, KEY_TRIES
from melodylm.errors import UserError
from melodylm.midi import bar_start  # noqa: F401  (re-exported: prompts are cut at bar lines)
# re-exported: the default model of sample (the newest ./checkpoints run, else the shipped model)
from melodylm.resources import find_default_checkpoint  # noqa: F401
from melodylm.sampling import GeneratedIds, generate_ids
from melodylm.tokenizer.grammar import Grammar


# ============================================================================ prompts

@dataclass
class Prompt:
    """The part of a MIDI file that conditions generation, tokenized as training data is."""

    path: str
    score: Any  # one-track symusic Score, cut and filtered
    base_ids: np.ndarray
    n_notes: int
    beats: float  # end of its last note, in quarter notes
    tempo: float  # quarter notes per minute
    time_signature: tuple[int, int]
    cut: str  # "" | "bars:N" | "notes:N"
    dropped_pitches: list[int] = field(default_factory=list)  # outside the tokenizer's range
    start_bar: int = 1  # the file's bar (from 1) where the prompt begins
    trimmed_beats: float = 0.0  # quarter notes of silence before the melody left out (a pop song's intro)
    key: str | None = None  # its key (from its key signature, else estimated), before any transposition
    transposed: int = 0  # semitones it was moved by to reach an asked key


def load_prompt(path: str | Path, tokenizer, melody: str = "auto", bars: int | None = None,
                notes: int | None = None, start_bar: int | None = None) -> Prompt:
    """Read a MIDI prompt: melody selection as in training, an optional cut, the tokenizer's pitch range.

    ``start_bar``: begin at the file's bar ``start_bar`` (from 1). Whole bars of silence before
    the melody's first note (from there on) are left out, so bars and notes count from where
    the melody plays; a pickup keeps its bar. ``bars``: keep the first ``bars`` bars (notes that
    start there, cut at the bar line); ``notes``: keep the first ``notes`` notes. Raises
    :class:`UserError` for a file that cannot be read or leaves no note.
    """
    from melodylm.midi import (bar_index, check_melody_mode, load_melody, make_track, note_array, score_notes,
                               time_signature_at, trim_silence)

    check_melody_mode(melody)
    mel = load_melody(path, melody)
    if mel.status != "ok":
        raise UserError(f"--prompt {path}: {mel.reason}")
    score = mel.score
    tpq = int(score.ticks_per_quarter)
    asked = bar_start(score, start_bar - 1) if start_bar is not None else 0
    try:
        score, begin = trim_silence(score, asked)
    except ValueError:
        last = bar_index(score, int(score_notes(score)[:, 0].max())) + 1
        raise UserError(f"--prompt-start-bar {start_bar}: the melody of {path} ends in bar {last} "
                        f"(`melodylm inspect {path}` shows its bars)") from None
    first_bar = bar_index(mel.score, begin) + 1
    track = score.tracks[0]
    arr = note_array(track)
    cut = f"from_bar:{first_bar}" if first_bar > 1 else ""
    if bars is not None:
        end = bar_start(score, bars)
        arr = arr[arr[:, 0] < end]
        arr[:, 1] = np.minimum(arr[:, 1], end - arr[:, 0])
        cut = (cut + "," if cut else "") + f"bars:{bars}"
    if notes is not None:
        arr = arr[:notes]
        cut = (cut + "," if cut else "") + f"notes:{notes}"
    lo, hi = tokenizer.settings.pitch_range
    inside = (arr[:, 2] >= lo) & (arr[:, 2] < hi)
    dropped = sorted(int(p) for p in arr[~inside, 2])
    arr = arr[inside]
    if not len(arr):
        why = f"all its notes lie outside the model's pitch range {lo}..{hi - 1}" if dropped else "no notes"
        raise UserError(f"--prompt {path}: {why}{' after the cut ' + cut if cut else ''}")
    out = score.copy()
    out.tracks[0] = make_track(arr, name=track.name, program=track.program)
    base_ids = tokenizer.encode_score(out)
    n_notes = tokenizer.count_notes(base_ids)
    if n_notes == 0:
        raise UserError(f"--prompt {path}: no notes left after tokenization")
    tempo = float(score.tempos[0].qpm) if len(score.tempos) else 120.0
    ts = time_signature_at(score, 0)
    beats = float((arr[:, 0] + arr[:, 1]).max()) / tpq
    return Prompt(str(path), out, base_ids, n_notes, beats, tempo, ts, cut, dropped, start_bar=first_bar,
                  trimmed_beats=round((begin - asked) / tpq, 6))


def transpose_prompt(prompt: Prompt, tokenizer, key) -> Prompt:
    """The prompt moved into ``key`` (a :class:`melodylm.keys.Key`) by the smallest step.

    The prompt's key is its file's key signature, else estimated from its notes. Same modes move
    tonic to tonic; otherwise the prompt goes to the relative key of its own mode (a G major
    prompt asked for D minor goes to F major), so it takes the asked key's signature and notes.
    Notes leaving the model's pitch range are dropped and reported.
    """
    from dataclasses import replace

    from melodylm.controls import derive_controls
    from melodylm.keys import Key, parse_key, semitones_to
    from melodylm.midi import transpose

    own = derive_controls(prompt.score, "prompt")["key"]
    if own is None:
        return prompt
    frm = parse_key(own)
    target = key if key.mode == frm.mode else Key((key.tonic + (3 if key.mode == "minor" else 9)) % 12, frm.mode)
    k = semitones_to(frm, target)
    if k == 0:
        return replace(prompt, key=own)
    lo, hi = tokenizer.settings.pitch_range
    score, _ = transpose(prompt.score, k, (lo, hi))
    if len(score.key_signatures):  # the signature moves with the notes: samples copy the prompt's
        import symusic

        score.key_signatures.clear()
        score.key_signatures.append(symusic.KeySignature(0, int(target.fifths), int(target.mode == "minor")))
    moved = prompt.score.tracks[0].notes.numpy()["pitch"].astype(int) + k
    dropped = sorted(int(p) for p in moved if not lo <= p < hi)
    base_ids = tokenizer.encode_score(score)
    if tokenizer.count_notes(base_ids) == 0:
        raise UserError(f"--prompt {prompt.path}: no note is left in the model's pitch range after moving it "
                        f"{k:+d} semitones into {key.name}")
    return replace(prompt, score=score, base_ids=base_ids, n_notes=tokenizer.count_notes(base_ids),
                   dropped_pitches=prompt.dropped_pitches + dropped, key=own, transposed=k)


# ============================================================================ from ids to scores

@dataclass
class GeneratedMelody:
    """One generated melody as it is written to disk (prompt kept or not), with its numbers."""

    score: Any  # symusic Score written to the MIDI file
    ids: np.ndarray  # new model ids
    base_ids: np.ndarray  # base tokens of the file: prompt (with keep_prompt) and continuation
    n_notes: int  # notes in ``score``
    new_notes: int  # notes the model added
    new_tokens: int  # model ids the model added
    invalid_tokens: int  # miditok's errors among the continuation's base tokens
    invalid_share: float  # the same per new base token
    continuation_start_beat: float  # quarter notes; notes from here on are the model's
    notes_before_start: int  # the model's notes that start before it (under the prompt's last note)
    stop: str  # eos | max_tokens | max_notes | max_bars
    info: dict = field(default_factory=dict)  # signature: checkpoint, flags, prompt, versions
    # Ticks of ``score`` where the model's first note starts (None without a prompt): pictures and sheet
    # music colour notes from here on as the model's, also those that start under the prompt's last note.
    split_tick: int | None = None


def _note_rows(score) -> list[tuple[int, int, int]]:
    """A score's notes as sorted (time, duration, pitch) tuples, to count them as a multiset."""
    from melodylm.midi import score_notes

    return sorted(tuple(r) for r in score_notes(score).tolist())


def _finish_score(tokenizer, base_ids, tempo: float, ts: tuple[int, int]):
    import symusic

    score = tokenizer.decode_score(base_ids, tempo=tempo)
    if not len(score.time_signatures):
        score.time_signatures.append(symusic.TimeSignature(0, ts[0], ts[1]))
    return score


def build_sample(tokenizer, grammar: Grammar, sampled: GeneratedIds, prompt: Prompt | None,
                 keep_prompt: bool = True) -> GeneratedMelody:
    """Decode one sequence: the MIDI score, its note counts, errors and where the continuation starts."""
    from melodylm.midi import bar_start_before, crop_from
    from melodylm.render.meta import copy_meta

    new_base = tokenizer.decode_ids(sampled.ids)
    p_base = prompt.base_ids if prompt is not None else np.zeros(0, dtype=np.int64)
    full = np.concatenate([p_base, new_base]).astype(np.int64)
    tempo = prompt.tempo if prompt else 120.0
    ts = prompt.time_signature if prompt else (4, 4)
    score = _finish_score(tokenizer, full, tempo, ts)
    invalid = grammar.errors(full) - (grammar.errors(p_base) if len(p_base) else 0)
    invalid = max(0, invalid)
    tpq = int(score.ticks_per_quarter)
    start_tick, early, split_tick = 0, 0, None
    if prompt is not None:
        # The continuation's notes are those of the whole decoded minus those of the prompt alone.
        p_notes = _note_rows(_finish_score(tokenizer, p_base, tempo, ts))
        start_tick = max((t + d for t, d, _ in p_notes), default=0)
        left = Counter(p_notes)
        new = []
        for r in _note_rows(score):
            if left[r]:
                left[r] -= 1
            else:
                new.append(r)
        early = sum(1 for t, _, _ in new if t < start_tick)
        # The decoder writes no title or key signature: a prompt in two flats came back in none.
        score = copy_meta(prompt.score, score, start_tick)
        first = min((t for t, _, _ in new), default=start_tick)
        split_tick = int(first)
        if not keep_prompt:
            shift = bar_start_before(score, min(start_tick, first))
            score, _ = crop_from(score, np.array(new, dtype=np.int64).reshape(-1, 3), min(start_tick, first))
            start_tick -= shift
            split_tick -= shift
            full = new_base
    n_notes = sum(len(tr.notes) for tr in score.tracks)
    new_base_n = len(new_base)
    return GeneratedMelody(
        score=score, ids=sampled.ids, base_ids=full, n_notes=int(n_notes),
        new_notes=int(tokenizer.count_notes(new_base)), new_tokens=int(len(sampled.ids)),
        invalid_tokens=int(invalid), invalid_share=round(invalid / new_base_n, 6) if new_base_n else 0.0,
        continuation_start_beat=round(start_tick / tpq, 6), notes_before_start=int(early), stop=sampled.stop,
        split_tick=split_tick,
    )


# ============================================================================ steering: controls and infilling

@dataclass
class FillPlan:
    """What writing bars A..B of a prompt needs: the cut tune, the model's prompt and the bars."""

    parts: Any  # melodylm.infill.FimParts of the whole prompt (its suffix possibly shortened)
    prompt_ids: list[int]  # BOS controls prefix FILL_SUFFIX suffix FILL_MIDDLE
    middle: Any  # melodylm.sampling.MiddleBars


def _time_signature_token(tokenizer, parts) -> int | None:
    """Base id of the TimeSig in force at bar A: the prefix's last, else the middle's first."""
    for ids, pick in ((parts.prefix, -1), (parts.middle, 0), (parts.suffix, 0)):
        found = [int(i) for i in ids if tokenizer.token_str(int(i)).startswith("TimeSig_")]
        if found:
            return found[pick]
    return None


def fitted_parts(tokenizer, base_ids, span: tuple[int, int], max_context: int | None = None):
    """:func:`melodylm.infill.fim_parts` with the suffix of training (the tokenizer's
    ``fim_suffix_bars`` bars after the span), halved bar by bar until its model ids fit half of a bounded context
    (``max_context``), so the bars the middle leads into stay in view beside the prefix's end.
    Raises :class:`UserError` for bars outside the tune."""
    from melodylm.infill import FIM_SUFFIX_BARS, fim_parts

    bars = tokenizer.extra.fim_suffix_bars if tokenizer.extra is not None else FIM_SUFFIX_BARS
    parts = fim_parts(tokenizer, base_ids, span, suffix_bars=bars)
    keep = min(parts.n_bars - span[1], bars)
    while max_context and keep > 1 and len(tokenizer.encode_ids(parts.suffix)) > max_context // 2:
        keep //= 2
        parts = fim_parts(tokenizer, base_ids, span, suffix_bars=keep)
    return parts


def plan_fill(tokenizer, prompt: Prompt | None, span: tuple[int, int], head: list[int],
              max_context: int | None = None) -> FillPlan:
    """Cut ``prompt`` around bars ``span`` and build the ids a sampler starts from to refill them.

    The suffix is shortened for a bounded context (``max_context``, :func:`fitted_parts`). Raises
    :class:`UserError` for a model without the sentinels, no prompt, or bars outside the tune.
    """
    from melodylm.infill import Sentinels, fill_prompt
    from melodylm.sampling import MiddleBars

    vocab = tokenizer.extra
    if not tokenizer.has_infill:
        raise UserError("--fill: this model has no infill tokens (FILL_SUFFIX, FILL_MIDDLE, FILL_END); "
                        "train it on a dataset tokenized with fill-in-the-middle")
    if prompt is None:
        raise UserError("--fill needs --prompt MIDI: the tune whose bars are written anew")
    if tokenizer.settings.scheme != "REMI":
        raise UserError(f"--fill: bars are followed in REMI tokens only, not {tokenizer.settings.scheme}")
    sentinels = Sentinels.from_vocab(vocab)
    parts = fitted_parts(tokenizer, prompt.base_ids, span, max_context)
    ids = fill_prompt(parts, sentinels, head, tokenizer.encode_ids)
    middle = MiddleBars(span[0] - 1, span[1], sentinels.end, _time_signature_token(tokenizer, parts))
    return FillPlan(parts, ids.tolist(), middle)


def build_middle_sample(tokenizer, grammar: Grammar, sampled: GeneratedIds, prompt: Prompt,
                        plan: FillPlan) -> GeneratedMelody:
    """The prompt with the plan's bars replaced by a generated middle (every other note kept)."""
    import symusic

    from melodylm.infill import splice
    from melodylm.render.meta import copy_meta

    span = plan.parts.span

    middle = tokenizer.decode_ids(sampled.ids)  # extras dropped
    try:
        score, full = splice(tokenizer, prompt.base_ids, span, middle)
    except ValueError as e:  # the grammar prevents it; kept as a clear message should it happen
        raise UserError(f"--fill {span[0]}:{span[1]}: the written bars do not fit ({e})") from None
    score.tempos.clear()
    score.tempos.append(symusic.Tempo(0, float(prompt.tempo)))
    score = copy_meta(prompt.score, score)  # the tune's title and key signature, as every sample keeps them
    invalid = max(0, grammar.errors(full) - grammar.errors(prompt.base_ids))
    t_a = plan.parts.bar_ticks[0]  # ticks of the decoded tune, which the spliced score keeps
    tpq = int(score.ticks_per_quarter)
    return GeneratedMelody(
        score=score, ids=sampled.ids, base_ids=full, n_notes=int(sum(len(tr.notes) for tr in score.tracks)),
        new_notes=int(tokenizer.count_notes(middle)), new_tokens=int(len(sampled.ids)),
        invalid_tokens=int(invalid), invalid_share=round(invalid / len(middle), 6) if len(middle) else 0.0,
        continuation_start_beat=round(t_a / tpq, 6), notes_before_start=0, stop=sampled.stop)


def outcome(tokenizer, new_base, prompt: Prompt | None) -> dict:
    """What came out: the estimated key of the new notes and the meter of their bars.

    ``meter`` is the time signature written most often in the new tokens (REMI writes one per
    bar), else the prompt's (the new notes stay in its bars); ``meters`` lists every one written.
    """
    from melodylm.keys import estimate_key
    from melodylm.midi import score_notes

    new_base = np.asarray(new_base, dtype=np.int64)
    notes = score_notes(tokenizer.decode_score(new_base)) if len(new_base) else np.zeros((0, 3))
    key = estimate_key(notes[:, 2], notes[:, 1]).name if len(notes) else None
    sigs = Counter(tokenizer.token_str(int(i))[len("TimeSig_"):] for i in new_base
                   if tokenizer.token_str(int(i)).startswith("TimeSig_"))
    ts = prompt.time_signature if prompt is not None else None
    meter = sigs.most_common(1)[0][0] if sigs else (f"{ts[0]}/{ts[1]}" if ts else None)
    return {"key": key, "meter": meter, "meters": sorted(sigs) if sigs else ([meter] if meter else [])}


def keep_in_key(samples: list, draw, build, want, tries: int, tokenizer, max_draws: int | None = None) -> list[int]:
    """Draw again, in place, each sample whose new notes do not estimate as key ``want``.

    ``draw(n=m)`` samples ``m`` more sequences (continuing the same random generator, so a seed
    still gives the same files) and ``build`` decodes one. Each round redraws only the samples still
    out of key, until every one is in it or ``tries`` draws are spent; a sample never in key keeps
    the draw whose notes correlate best with ``want`` (the estimator's score). ``max_draws`` bounds
    the draws of the whole call, the first ``len(samples)`` included. Returns each sample's draws.

    Shipped model, 24 samples of 8 bars from nothing for each of G, D, A minor, E minor, F and Bb
    (seed 2, top-p 0.95, guidance 2): 100 of 144 in key after one draw, 129 after two, 139 after
    three, 141 after four, 144 after six; the redraws at four cost 0.44 more draws per sample.
    """
    from melodylm.keys import all_keys, key_scores, parse_key
    from melodylm.midi import score_notes

    def fit(sample) -> float:
        new = tokenizer.decode_ids(sample.ids)
        notes = score_notes(tokenizer.decode_score(new)) if len(new) else np.zeros((0, 3))
        return float(key_scores(notes[:, 2], notes[:, 1])[all_keys().index(want)]) if len(notes) else -2.0

    def in_key(sample) -> bool:
        got = sample.info["controls"]["key"]
        return got is not None and parse_key(got) == want

    used, counts = len(samples), [1] * len(samples)
    for t in range(2, tries + 1):
        miss = [i for i, s in enumerate(samples) if not in_key(s)]
        if max_draws is not None:
            miss = miss[:max(0, max_draws - used)]
        if not miss:
            break
        used += len(miss)
        for i, s in zip(miss, map(build, draw(n=len(miss)))):
            if in_key(s) or fit(s) > fit(samples[i]):
                samples[i] = s
            counts[i] = t
    return counts


# ============================================================================ the public API

def validate_options(n: int = 1, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                     max_tokens: int | None = 1024, max_notes: int | None = None, max_bars: int | None = None,
                     prompt_bars: int | None = None, prompt_notes: int | None = None,
                     prompt_start_bar: int | None = None, guidance: float = 0.0, key_tries: int = 1) -> None:
    """Raise :class:`UserError` naming the flag for impossible values."""
    if not (isinstance(key_tries, int) and key_tries >= 1):
        raise UserError(f"--key-tries {key_tries}: must be a whole number of draws, at least 1")
    if not (guidance >= 0 and math.isfinite(guidance)):
        raise UserError(f"--guidance {guidance}: must be 0 (off) or a positive number")
    if n < 1:
        raise UserError(f"--n {n}: must be at least 1")
    if not (temperature > 0 and math.isfinite(temperature)):
        raise UserError(f"--temperature {temperature}: must be a positive number")
    if top_k < 0:
        raise UserError(f"--top-k {top_k}: must be 0 (off) or more")
    if not (0 < top_p <= 1):
        raise UserError(f"--top-p {top_p}: must be in (0, 1]")
    for flag, v in (("--max-tokens", max_tokens), ("--max-notes", max_notes), ("--max-bars", max_bars)):
        if v is not None and v < 0:
            raise UserError(f"{flag} {v}: must not be negative")
    for flag, v in (("--prompt-bars", prompt_bars), ("--prompt-notes", prompt_notes),
                    ("--prompt-start-bar", prompt_start_bar)):
        if v is not None and v < 1:
            raise UserError(f"{flag} {v}: must be at least 1")


def generate(checkpoint_or_model, prompt: str | Path | Prompt | None = None, n: int = 1, *,
             tokenizer=None, max_tokens: int | None = 1024, max_notes: int | None = None,
             max_bars: int | None = None, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
             seed: int = 0, constrain: bool = True, keep_prompt: bool = True, melody: str = "auto",
             prompt_bars: int | None = None, prompt_notes: int | None = None, prompt_start_bar: int | None = None,
             device: str | torch.device = "cpu", use_cache: bool = True, fill: str | tuple[int, int] | None = None,
             key: str | None = None, meter: str | None = None, style: str | None = None,
             guidance: float = GUIDANCE, key_tries: int = KEY_TRIES,
             token_budget: int | None = None) -> list[GeneratedMelody]:
    """Generate ``n`` melodies in one batch and return them as :class:`GeneratedMelody` (``.score`` is a symusic Score).

    Args:
        checkpoint_or_model: a checkpoint file or run folder, or a ``MelodyModel`` (then pass
            ``tokenizer``).
        prompt: a MIDI file (its melody is chosen by ``melody``, as for training data, and cut
            from bar ``prompt_start_bar`` and by ``prompt_bars`` / ``prompt_notes``; leading
            silence is left out), a :class:`Prompt`, or ``None`` to start from
            BOS alone. A prompt longer than the model's context is prefilled whole: the GPT keeps
            its end in its sliding cache, the LSTM reads it all, the bi-LSTM its last window.
        max_tokens, max_notes, max_bars: each sequence stops at the end token or at the first
            limit reached (``None``: no such limit; notes and bars count the continuation only).
        temperature, top_k, top_p: sampling; ``top_k=1`` is greedy.
        seed: same seed, model and options give the same tokens (and files) on the CPU.
        constrain: mask ids the tokenizer's grammar forbids, so every sample decodes.
        keep_prompt: the scores hold prompt and continuation; otherwise the continuation alone,
            moved to start at the bar where it begins.
        use_cache: ``False`` recomputes the whole context at every step (reference, benchmark).
        fill: bars ``"A:B"`` (from 1, inclusive) of the prompt to write anew, seeing the bars
            before and after; every note outside them is kept.
        key, meter, style: controls the model was trained with (``"D minor"``, ``"6/8"``, a
            style name), put after BOS; ``key`` with a prompt first moves the prompt into that key.
        guidance: classifier-free guidance weight for asked controls (0 = off; see
            :func:`melodylm.sampling.generate_ids`); nothing changes when no control is asked.
        key_tries: with ``key``, a melody whose new notes do not estimate as that key is drawn
            again, up to ``key_tries`` draws in all (:func:`keep_in_key`); 1 keeps the first draw.
        token_budget: new tokens all the draws of this call may take at most, counted as
            ``max_tokens`` per draw before it starts (a server's per-request bound); ``None``: no bound.
    """
    from melodylm.controls import resolve_request
    from melodylm.infill import parse_span
    from melodylm.keys import parse_key

    validate_options(n, temperature, top_k, top_p, max_tokens, max_notes, max_bars, prompt_bars, prompt_notes,
                     prompt_start_bar, guidance, key_tries)
    span = parse_span(fill) if isinstance(fill, str) else (tuple(fill) if fill is not None else None)
    if span is not None:
        _check_fill_options(constrain, keep_prompt, max_bars)
    dev = torch.device(device)
    model, tok, info = _model_on(checkpoint_or_model, tokenizer, dev)
    asked = resolve_request({"key": key, "meter": meter, "style": style}, tok.extra)
    if isinstance(prompt, (str, Path)):
        prompt = load_prompt(prompt, tok, melody, prompt_bars, prompt_notes, start_bar=prompt_start_bar)
    if prompt is not None and "key" in asked:
        prompt = transpose_prompt(prompt, tok, parse_key(asked["key"]))
    head = tok.head_ids(asked).tolist()
    p_ids, p_base, plan = _model_prompt(tok, prompt, span, head, getattr(model, "max_context", None))
    # Guidance needs an asked control and the cached decode (which runs its second batch).
    guided = guidance if asked and use_cache else 0.0
    uncond = [tok.bos_id] + [int(i) for i in p_ids[len(head):]] if guided else None  # the prompt without controls
    grammar = Grammar(tok, dev)
    if max_bars is not None and not grammar.has_pos:
        raise UserError(f"--max-bars: {tok.settings.scheme} tokens do not mark bars; "
                        "use --max-notes or --max-tokens")
    gen = torch.Generator(device=dev).manual_seed(int(seed))
    draw = partial(generate_ids, model, tok, max_new_tokens=max_tokens, prompt=p_ids, temperature=temperature,
                   top_k=top_k, top_p=top_p, generator=gen, device=dev, constrain=constrain, max_notes=max_notes,
                   max_bars=max_bars, use_cache=use_cache, prompt_base=p_base, grammar=grammar,
                   middle=plan.middle if plan else None, guidance=guided, unconditional=uncond)

    def build(s: GeneratedIds) -> GeneratedMelody:
        sample = (build_middle_sample(tok, grammar, s, prompt, plan) if plan is not None
                  else build_sample(tok, grammar, s, prompt, keep_prompt))
        sample.info = {"controls": {"asked": asked, **outcome(tok, tok.decode_ids(s.ids), prompt)}}
        return sample

    samples = [build(s) for s in draw(n=n)]
    tries = [1] * n
    if "key" in asked:
        draws = None if token_budget is None else (token_budget // max_tokens if max_tokens else n)
        tries = keep_in_key(samples, draw, build, parse_key(asked["key"]), key_tries, tok, draws)
    info["options"] = dict(n=n, max_tokens=max_tokens, max_notes=max_notes, max_bars=max_bars,
                           temperature=temperature, top_k=top_k, top_p=top_p, seed=seed, constrain=constrain,
                           keep_prompt=keep_prompt, melody=melody, prompt_bars=prompt_bars,
                           prompt_notes=prompt_notes, use_cache=use_cache,
                           fill=f"{span[0]}:{span[1]}" if span else None,
                           guidance=guided, key_tries=key_tries if "key" in asked else None,
                           prompt_start_bar=prompt_start_bar)
    info["prompt"] = _prompt_info(prompt, len(p_ids))
    for i, sample in enumerate(samples):
        controls = sample.info["controls"]
        if "key" in asked:
            controls["tries"] = tries[i]
        sample.info = {**info, "index": i, "controls": controls}
    return samples


def _model_on(checkpoint_or_model, tokenizer, dev: torch.device) -> tuple[Any, Any, dict[str, Any]]:
    """The model (loaded from a checkpoint, or as given with its tokenizer) on ``dev``, in eval mode,
    its tokenizer, and the sidecar's first entries: version, checkpoint and its hash, architecture."""
    from melodylm.checkpoint import checkpoint_path, file_hash, load_model
    from melodylm import __version__

    info: dict[str, Any] = {"melodylm_version": __version__}
    if isinstance(checkpoint_or_model, (str, Path)):
        model, tok, ckpt = load_model(checkpoint_or_model, dev)
        info.update(checkpoint=checkpoint_path(ckpt), checkpoint_hash=file_hash(checkpoint_path(ckpt)))
    else:
        model, tok = checkpoint_or_model, tokenizer
        if tok is None:
            raise ValueError("generate() with a model needs its tokenizer")
        model.to(dev).eval()
        info.update(checkpoint=None, checkpoint_hash=None)
    info["arch"] = getattr(model.config, "arch", type(model).__name__)
    return model, tok, info


def _model_prompt(tok, prompt: Prompt | None, span, head: list[int], max_context: int | None):
    """What the model reads first, its base tokens (the grammar's start), and the fill plan (or None)."""
    p_base = prompt.base_ids.tolist() if prompt is not None else []
    if span is not None:
        plan = plan_fill(tok, prompt, span, head, max_context)
        return plan.prompt_ids, plan.parts.prefix.tolist(), plan
    return head + (tok.encode_ids(np.asarray(p_base, dtype=np.int64)).tolist() if p_base else []), p_base, None


def _prompt_info(prompt: Prompt | None, n_ids: int) -> dict | None:
    """The sidecar's ``prompt`` entry: where the prompt came from and what was made of it."""
    if prompt is None:
        return None
    return {"file": prompt.path, "notes": prompt.n_notes, "beats": round(prompt.beats, 6), "tokens": n_ids,
            "cut": prompt.cut, "dropped_pitches": prompt.dropped_pitches, "tempo": prompt.tempo,
            "time_signature": f"{prompt.time_signature[0]}/{prompt.time_signature[1]}",
            "key": prompt.key, "transposed": prompt.transposed,
            # where in its file the prompt begins, and the silence left out before it
            "start_bar": prompt.start_bar, "trimmed_beats": prompt.trimmed_beats}


def _check_fill_options(constrain: bool, keep_prompt: bool, max_bars: int | None) -> None:
    """--fill flags that cannot go together, as one-line errors."""
    if not constrain:
        raise UserError("--fill needs the grammar (drop --no-constraint): it keeps the new notes inside the bars")
    if not keep_prompt:
        raise UserError("--fill writes the whole tune: drop --continuation-only")
    if max_bars is not None:
        raise UserError("--fill sets the bars to write: drop --max-bars")


def signature(sample: GeneratedMelody) -> str:
    """One line that says how a sample was made."""
    i, o = sample.info, sample.info.get("options", {})
    ck = f"{Path(i['checkpoint']).parent.name}/{Path(i['checkpoint']).name}:{i['checkpoint_hash']}" \
        if i.get("checkpoint") else i.get("arch", "model")
    p = i.get("prompt")
    return (f"melodylm {i.get('melodylm_version')} | {ck} | seed {o.get('seed')} | T {o.get('temperature')} "
            f"top-k {o.get('top_k')} top-p {o.get('top_p')} | "
            f"{'constrained' if o.get('constrain') else 'unconstrained'} | "
            f"prompt {Path(p['file']).name + (' ' + p['cut'] if p['cut'] else '') if p else 'none'}")


def write_samples(samples: list[GeneratedMelody], out_dir: str | Path, plot: bool = False, stem: str = "sample",
                  extra: dict | None = None, audio: bool = False, score: bool = False,
                  program: int = 0) -> list[Path]:
    """Write ``<stem>_NNN.mid`` and a JSON sidecar (``.json``) per sample, and what is asked beside it.

    The sidecar holds the signature (checkpoint and hash, options, seed, version, prompt) and
    the sample's numbers, ``continuation_start_beat`` included. ``extra`` is merged into it.
    ``plot``: a piano roll (``.png``); ``audio``: a WAV played by General MIDI ``program``;
    ``score``: sheet music (``.svg`` and ``.musicxml``), the continuation marked where it starts.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, s in enumerate(samples):
        mid = out / f"{stem}_{k:03d}.mid"
        s.score.dump_midi(str(mid))
        side = {
            "signature": signature(s), **s.info, **(extra or {}),
            "file": mid.name, "n_notes": s.n_notes, "new_notes": s.new_notes, "new_tokens": s.new_tokens,
            "invalid_tokens": s.invalid_tokens, "invalid_share": s.invalid_share,
            "continuation_start_beat": s.continuation_start_beat, "notes_before_start": s.notes_before_start,
            "stop": s.stop, "split_tick": sample_split_tick(s),
        }
        mid.with_suffix(".json").write_text(json.dumps(side, indent=1, default=str) + "\n")
        render_sample(s, mid, plot, audio, score, program)
        paths.append(mid)
    return paths


def sample_split_tick(sample: GeneratedMelody) -> int | None:
    """Ticks of ``sample.score`` where the model's notes begin; ``None`` for a sample made from nothing."""
    if sample.split_tick is not None:
        return int(sample.split_tick)
    if not sample.info.get("prompt"):
        return None
    return round(sample.continuation_start_beat * int(sample.score.ticks_per_quarter))


def render_sample(sample: GeneratedMelody, mid: Path, plot: bool = False, audio: bool = False,
                  score: bool = False, program: int = 0) -> dict[str, Path]:
    """The piano roll (``plot``), WAV (``audio``) and sheet music (``score``) of one sample beside ``mid``.

    Returns {format: path}. Needs the ``render`` extra for audio and sheet music
    (:class:`melodylm.render.MissingExtraError` names it).
    """
    split = sample_split_tick(sample)
    out: dict[str, Path] = {}
    if plot:
        from melodylm.render.pianoroll import save_pianoroll

        # The signature is too long for a picture of a short tune: the name, seed and prompt say enough.
        p, seed = sample.info.get("prompt"), sample.info.get("options", {}).get("seed")
        made = f"prompt {Path(p['file']).name}{' ' + p['cut'] if p.get('cut') else ''}" if p else "from nothing"
        out["png"] = save_pianoroll(sample.score, mid.with_suffix(".png"), split,
                                    title=f"{mid.stem} | seed {seed} | {made}", single_label="generated")
    formats = (("wav",) if audio else ()) + (("svg", "musicxml") if score else ())
    if formats:
        from melodylm.render import render_score

        # Without a prompt the decoder names the track after its instrument: the file's name is the better title.
        title = None if sample.info.get("prompt") else mid.stem
        out.update(render_score(sample.score, mid.parent, mid.stem, formats, program, split_tick=split, title=title))
    return out


__all__ = ["FillPlan", "GeneratedMelody", "Prompt", "bar_start", "build_middle_sample", "build_sample",
           "find_default_checkpoint", "fitted_parts", "generate", "load_prompt", "outcome", "plan_fill",
           "render_sample", "sample_split_tick", "signature", "transpose_prompt", "validate_options",
           "write_samples"]
