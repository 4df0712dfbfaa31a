"""Held-out scoring: every token of every tune exactly once, with as much context as the model allows.

Reports nats per token, perplexity, bits per token, token accuracy and **bits per note**: the
total bits of a tune (its end token included) divided by its number of notes. Bits per note is
the figure that can be compared across tokenizers and architectures; per-token numbers reward
tokenizations with many easy structure tokens.

Beside it, the yardstick: an interpolated Kneser-Ney n-gram model trained on the same training
split and scored on the same tunes.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from melodylm.checkpoint import architecture, checkpoint_path, load_model, trained_on
from melodylm.dataset import Dataset
from melodylm.errors import UserError

LN2 = math.log(2)


@torch.no_grad()
def token_logprobs(model, seq: np.ndarray, device, batch_windows: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Log-probability (nats) and argmax-correctness of tokens 1..T-1 of ``seq`` (seq[0] is BOS).

    Models with a bounded context (``max_context``) are scored with overlapping windows: each
    window after the first scores only its second half, so every token is scored once and with
    at least half a window of context.
    """
    ids = torch.as_tensor(np.asarray(seq, dtype=np.int64))
    n = len(ids) - 1
    ctx = model.max_context
    if ctx is None or len(ids) <= ctx:
        x, y = ids[:-1][None].to(device), ids[1:][None].to(device)
        logits, _ = model(x)
        lp = F.log_softmax(logits.float(), dim=-1)[0]
        tgt = y[0]
        return lp.gather(1, tgt[:, None])[:, 0].cpu().numpy(), (lp.argmax(-1) == tgt).cpu().numpy()
    stride = max(1, ctx // 2)
    out_lp = np.zeros(n)
    out_ok = np.zeros(n, dtype=bool)
    starts = list(range(0, n - ctx + 1, stride))
    if starts[-1] != n - ctx:
        starts.append(n - ctx)
    scored_until = 0
    plan = []
    for s in starts:
        first = 0 if s == 0 else scored_until - s  # score only targets not scored yet
        plan.append((s, first))
        scored_until = s + ctx
    for b in range(0, len(plan), batch_windows):
        chunk = plan[b:b + batch_windows]
        x = torch.stack([ids[s:s + ctx] for s, _ in chunk]).to(device)
        y = torch.stack([ids[s + 1:s + 1 + ctx] for s, _ in chunk]).to(device)
        logits, _ = model(x)
        lp = F.log_softmax(logits.float(), dim=-1)
        got = lp.gather(2, y[..., None])[..., 0].cpu().numpy()
        ok = (lp.argmax(-1) == y).cpu().numpy()
        for row, (s, first) in enumerate(chunk):
            out_lp[s + first:s + ctx] = got[row, first:]
            out_ok[s + first:s + ctx] = ok[row, first:]
    return out_lp, out_ok


def summarise(total_nats: float, n_tokens: int, n_notes: int, n_correct: int | None = None) -> dict:
    loss = total_nats / max(1, n_tokens)
    out = {"loss": loss, "perplexity": math.exp(min(loss, 700)), "bits_per_token": loss / LN2,
           "bits_per_note": total_nats / LN2 / max(1, n_notes)}
    if n_correct is not None:
        out["accuracy"] = n_correct / max(1, n_tokens)
    return out


# nltk's default discount (0.1) makes higher orders *worse* on melody tokens (order 5: 5.29 bits
# per note on O'Neill against 3.81 with 0.75); a yardstick should be strong, so we use the
# customary 0.75 and print it in the signature.
BASELINE_DISCOUNT = 0.75


def ngram_baseline(data: Dataset, split: str, order: int = 5, discount: float = BASELINE_DISCOUNT) -> dict:
    """Kneser-Ney n-gram of the given order trained on the training split, scored on ``split``."""
    from melodylm.ngram import KneserNey

    train = data.split("train")
    lm = KneserNey(order=order, discount=discount, vocab_size=data.tokenizer.vocab_size)
    lm.fit(train.tune(i)[1:-1].tolist() for i in range(len(train)))
    sp = data.split(split)
    rows = sp.originals()
    all_lps = lm.logprobs_many([sp.tune(i)[1:-1].tolist() for i in rows])  # tokens and the end of each tune
    total = -float(sum(float(np.sum(lp)) for lp in all_lps))
    n_tok = sum(len(lp) for lp in all_lps)
    n_notes = int(sum(int(sp.index[i]["n_notes"]) for i in rows))
    res = summarise(total, n_tok, n_notes)
    res.update(order=order, discount=discount, signature=lm.signature)
    return res


# Token kinds for the split of bits per note. Pitch: which note; rhythm: when it starts (onset)
# and how long it lasts (duration; NoteOff ends a MIDILike note); other: bars, time signatures,
# chords, velocities, controls, sentinels and the end token.
PITCH_TYPES = ("Pitch", "NoteOn", "PitchDrum")
ONSET_TYPES = ("Position", "TimeShift", "Rest")
DURATION_TYPES = ("Duration", "NoteOff", "DrumOff")
KINDS = ("pitch", "onset", "duration", "other")


def token_kind_shares(tok) -> np.ndarray:
    """``(V, 4)`` share of each model id's bits that goes to pitch, onset, duration and other tokens.

    A base token is one kind. A subword piece stands for several base tokens and its bits are
    split evenly among them (a piece ``Position Pitch Duration`` gives a third to pitch and two
    thirds to rhythm): one prediction cannot be taken apart, so that is a convention, the same
    for every model. Control tokens, sentinels and specials are "other". Each row sums to 1.
    """
    def kind(base_id: int) -> int:
        t = tok.token_str(int(base_id)).split("_")[0]
        return 0 if t in PITCH_TYPES else 1 if t in ONSET_TYPES else 2 if t in DURATION_TYPES else 3

    shares = np.zeros((tok.vocab_size, len(KINDS)))
    for i in range(tok.vocab_size):
        base = tok.decode_ids([i]) if i < tok.core_vocab_size else []
        if len(base) == 0:
            shares[i, 3] = 1.0
        else:
            for b in base:
                shares[i, kind(b)] += 1.0 / len(base)
    return shares


def _dataset_tunes(data, tok, split: str, checkpoint: str) -> list[tuple[np.ndarray, int]]:
    """``(model ids, notes)`` of a dataset split's original tunes, read for ``tok``'s model."""
    try:
        read = data.reader_for(tok)  # a model without controls reads a controlled dataset's tunes without them
    except UserError:
        raise UserError(f"checkpoint {checkpoint} was trained with another tokenizer than dataset {data.dir}: "
                        "evaluate on the dataset it was trained on (or re-tokenize with the same settings)") from None
    sp = data.split(split)
    if len(sp) == 0:
        raise UserError(f"split {split!r} of {data.dir} is empty: tokenize with a non-zero --split fraction")
    return [(read(sp.tune(i)), int(sp.index[i]["n_notes"])) for i in sp.originals()]


def midi_tunes(paths: list[str], tok) -> tuple[list[tuple[np.ndarray, int]], dict[str, int]]:
    """``(model ids, notes)`` of MIDI files (or the files in folders), tokenized as the dataset
    code does (melody selection, pitch range) with ``tok``; and a count of files left out, by reason."""
    from melodylm.dataset import find_midi_files, tokenize_files

    files = find_midi_files([str(p) for p in paths])
    if not files:
        raise UserError(f"no MIDI files in {', '.join(map(str, paths))}")
    tunes, left_out = [], {}
    for rec in tokenize_files(files, tok):
        if "ids" in rec:
            tunes.append((np.asarray(rec["ids"], dtype=np.int64), int(rec["n_notes"])))
        else:
            left_out[rec["reason"]] = left_out.get(rec["reason"], 0) + 1
    if not tunes:
        raise UserError(f"none of the {len(files)} MIDI file(s) gave a melody: " + "; ".join(left_out)[:300])
    return tunes, left_out


def score_tunes(model, tunes, dev, shares: np.ndarray, progress: bool = False) -> dict:
    """Bits per note (and per token) of every token of every tune, split by token kind
    (``pitch``, ``onset``, ``duration``, ``other``; ``rhythm`` is onset plus duration)."""
    from tqdm import tqdm

    total, n_tok, n_notes, n_ok = 0.0, 0, 0, 0
    by_kind = np.zeros(len(KINDS))
    for ids, notes in tqdm(tunes, desc="evaluate", unit="tune", disable=not progress, file=sys.stderr):
        lp, ok = token_logprobs(model, ids, dev)
        total -= float(lp.sum())
        by_kind -= lp @ shares[np.asarray(ids[1:], dtype=np.int64)]
        n_tok += len(lp)
        n_ok += int(ok.sum())
        n_notes += notes
    res = summarise(total, n_tok, n_notes, n_ok)
    for k, nats in zip(KINDS, by_kind):
        res[f"{k}_bits_per_note"] = float(nats) / LN2 / max(1, n_notes)
    res["rhythm_bits_per_note"] = res["onset_bits_per_note"] + res["duration_bits_per_note"]
    res.update(tunes=len(tunes), tokens=n_tok, notes=n_notes)
    return res


def infill_scores(model, tok, tunes, span: tuple[int, int], dev, progress: bool = False) -> dict:
    """Bits per note of bars ``span`` of each tune given both sides and given the left side only.

    Both score the same middle tokens (FILL_END excluded): once in the model's fill-in-the-middle
    layout with the suffix, once right after the prefix. The suffix is shortened for a bounded
    context as ``melodylm sample --fill`` does. Tunes with fewer than B bars or no note in the span
    are skipped, and so are tunes with no note after bar B: they have no right side to see
    (``no_right_side`` counts them).
    """
    from tqdm import tqdm

    from melodylm.generate import fitted_parts
    from melodylm.infill import Sentinels, left_only, rearrange

    if not tok.has_infill:
        raise UserError("--infill: this model has no infill tokens (FILL_SUFFIX, FILL_MIDDLE, FILL_END); "
                        "train it on a dataset tokenized with fill-in-the-middle")
    sentinels = Sentinels.from_vocab(tok.extra)
    both = left = 0.0
    n_notes = n_tunes = skipped = no_right = 0
    for ids, _ in tqdm(tunes, desc=f"infill {span[0]}:{span[1]}", unit="tune", disable=not progress,
                       file=sys.stderr):
        h = tok.head_length(ids)
        base = tok.decode_ids(ids[h:-1])
        try:
            parts = fitted_parts(tok, base, span, getattr(model, "max_context", None))
        except UserError:  # fewer than B bars
            skipped += 1
            continue
        notes = tok.count_notes(parts.middle)
        if notes == 0:
            skipped += 1
            continue
        if not len(parts.suffix):
            no_right += 1
            continue
        both += _masked_nats(model, *rearrange(parts, sentinels, ids[:h], tok.encode_ids), dev)
        left += _masked_nats(model, *left_only(parts, ids[:h], tok.encode_ids), dev)
        n_notes += notes
        n_tunes += 1
    if not n_tunes:
        raise UserError(f"--infill {span[0]}:{span[1]}: no tune has notes in those bars and after them")
    return {"span": f"{span[0]}:{span[1]}", "tunes": n_tunes, "skipped": skipped, "no_right_side": no_right,
            "notes": n_notes,
            "both_sides_bits_per_note": both / LN2 / n_notes, "left_only_bits_per_note": left / LN2 / n_notes}


def _masked_nats(model, seq: np.ndarray, mask: np.ndarray, dev) -> float:
    """Nats of the tokens of ``seq`` where ``mask`` is True (never its first token, BOS)."""
    lp, _ = token_logprobs(model, seq, dev)
    return -float(lp[mask[1:]].sum())


def _is_dataset(path) -> bool:
    return (Path(path) / "tokenizer.json").is_file()


def evaluate(checkpoint: str | Path | None, data_dir: str | Path | list | None = None, split: str = "test",
             device: str = "auto", baseline_order: int = 5, progress: bool = True,
             infill: str | tuple[int, int] | None = None) -> dict:
    """Score a checkpoint on a dataset split, or on MIDI files or folders; returns the metrics.

    ``data_dir``: a dataset folder (default: the one the checkpoint names), or MIDI files and
    folders (one path or a list), tokenized with the checkpoint's own tokenizer; the n-gram
    baseline needs a dataset's training split and is left out for MIDI files. ``infill``: bars
    ``"A:B"`` also scored given both sides and given the left side only (:func:`infill_scores`).
    ``checkpoint=None`` takes the newest ``./checkpoints/*/best.pt``, else the shipped model.
    """
    from melodylm.device import pick_device
    from melodylm.infill import parse_span
    from melodylm.resources import find_default_checkpoint

    checkpoint = checkpoint or find_default_checkpoint()
    if checkpoint is None:
        raise UserError("no checkpoint: train one (`melodylm train`) or pass CKPT")

    span = parse_span(infill, "--infill") if isinstance(infill, str) else infill
    dev = pick_device(device)
    model, tok, ckpt = load_model(checkpoint, dev)
    if data_dir is None:
        data_dir = trained_on(ckpt)
        if not data_dir:
            raise UserError("this checkpoint does not name its dataset: pass DATA_DIR")
    paths = list(data_dir) if isinstance(data_dir, (list, tuple)) else [data_dir]
    data, left_out = None, {}
    if len(paths) == 1 and _is_dataset(paths[0]):
        data = Dataset(paths[0])
        tunes = _dataset_tunes(data, tok, split, checkpoint_path(ckpt))
        label = str(paths[0])
    else:
        for p in paths:
            if not Path(p).exists():
                raise UserError(f"DATA {p} not found: give a dataset folder, MIDI files or folders of them")
        tunes, left_out = midi_tunes(paths, tok)
        label = ", ".join(map(str, paths)) if len(paths) <= 2 else f"{paths[0]} and {len(paths) - 1} more"
        split = "midi"
    res = score_tunes(model, tunes, dev, token_kind_shares(tok), progress)
    res.update(split=split, arch=architecture(ckpt), checkpoint=checkpoint_path(ckpt), data_dir=label)
    if left_out:
        res["left_out"] = left_out
    if span is not None:
        res["infill"] = infill_scores(model, tok, tunes, span, dev, progress)
    if baseline_order and data is not None:
        res["baseline"] = ngram_baseline(data, split, baseline_order)
    return res
