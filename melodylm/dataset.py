"""Token datasets on disk: building them from MIDI (``melodylm tokenize``) and reading them back.

A dataset folder holds::

    tokenizer.json       the MelodyTokenizer (enough to rebuild it)
    {split}.bin          all tunes of a split as one flat array of model ids, each tune BOS ... EOS
    {split}.index.npy    one row per tune: start, length, n_notes, source (manifest row), transpose
    train.fim.bin        (with infilling) a share of the training tunes rearranged for infilling,
    train.fim.index.npy  each standing in for the train row named by its ``source`` in training
    manifest.jsonl       one object per input file: what became of it, its controls
    stats.json           counts, tokens per split, settings
    COMPLETE             written last; a folder without it is a partial, failed build

With controls (the default) every sequence starts ``BOS Key_* Meter_* Style_*`` and the
tokenizer carries the control tokens of the values seen in the training split, transposed copies
included (:mod:`melodylm.controls`, :mod:`melodylm.sequences`). ``--controls none --fim-rate 0``
gives a plain dataset, token for token what melodylm wrote before controls existed.

Splits are a pure function of the seed and each tune's transposition-invariant content hash,
so they do not depend on file order, and a tune (or a transposed copy of it) never lands in two
splits. Data code never imports torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from melodylm import __version__
from melodylm.controls import derive_controls, style_for, transpose_controls
from melodylm.errors import DataError, UserError
from melodylm.infill import FIM_ORDER, FIM_ORDERS, FIM_RATE, FIM_SUFFIX_BARS
from melodylm.midi import MAX_BEATS, MAX_FILE_MB, MAX_NOTES, check_melody_mode, load_melody, transpose
from melodylm.outputs import check_out_dir, publish_dir, staging_dir
from melodylm.resources import BUNDLED, corpus_dir
from melodylm.sequences import (fim_cut, head_for, parse_control_kinds, select_controls, tune_rng, write_fim,
                                write_split)
from melodylm.tokenizer import SCHEMES, SUBWORDS, MelodyTokenizer, TokenizerSettings

SPLITS = ("train", "val", "test")
MIDI_SUFFIXES = (".mid", ".midi", ".smf", ".kar")
INDEX_DTYPE = np.dtype([("start", "<i8"), ("length", "<i4"), ("n_notes", "<i4"),
                        ("source", "<i4"), ("transpose", "<i2")])
DATASET_VERSION = 1
# The embedded corpus: package data in an installed wheel, corpora/ of the checkout from source.
DEFAULT_CORPUS = corpus_dir() or BUNDLED / "corpora" / "oneills1850"
DEFAULT_DATA_DIR = Path("data") / "default"
FILE_TIMEOUT_S = 300  # seconds one file may take in a worker before it is recorded as failed


@dataclass
class TokenizeConfig:
    """Everything ``melodylm tokenize`` does is decided here."""

    inputs: list[str] = field(default_factory=list)  # files and folders; empty = embedded corpus
    out_dir: str = str(DEFAULT_DATA_DIR)
    scheme: str = "REMI"
    melody: str = "auto"  # auto | skyline | track:N | all
    velocities: bool = False
    split: tuple[float, float, float] = (0.9, 0.05, 0.05)
    seed: int = 0
    transpose: tuple[int, int] = (0, 0)  # inclusive semitone range for the training split
    subword: str = "none"
    vocab_size: int = 1000
    workers: int = 0  # 0 = all cores
    max_notes: int = MAX_NOTES
    max_file_mb: float = MAX_FILE_MB
    max_beats: int = MAX_BEATS
    # Control tokens at the head of each sequence: all | none | a comma list of key, meter, style.
    controls: str = "all"
    styles: dict = field(default_factory=dict)  # {resolved folder: style name} from --style NAME=FOLDER
    # Share of training tunes (and transposed copies) also stored rearranged for infilling, read
    # by training in place of the plain tune; 0 = no infilling. infill.FIM_RATE explains the default.
    fim_rate: float = FIM_RATE
    fim_order: str = FIM_ORDER  # psm | spm: infill.FIM_ORDERS
    fim_suffix_bars: int = FIM_SUFFIX_BARS  # bars after a training span kept as its suffix
    force: bool = False
    tokenizer: str = ""  # reuse the tokenizer of a checkpoint, run, dataset or HF export; "" = a new one

    def validate(self) -> None:
        if self.tokenizer and (self.scheme != "REMI" or self.velocities or self.subword != "none"):
            raise UserError("--tokenizer takes the scheme, velocities and subwords from its source: "
                            "drop --scheme, --velocities and --subword")
        if self.scheme not in SCHEMES:
            raise UserError(f"--scheme {self.scheme!r} is not supported; choose one of {', '.join(SCHEMES)}")
        check_melody_mode(self.melody)
        if len(self.split) != 3 or any(x < 0 for x in self.split) or not 0.999 < sum(self.split) < 1.001:
            raise UserError("--split needs three non-negative fractions that sum to 1, e.g. 0.9,0.05,0.05")
        if self.split[0] <= 0:
            raise UserError("--split: the training fraction must be positive")
        lo, hi = self.transpose
        if lo > hi or lo < -24 or hi > 24:
            raise UserError("--transpose LOW:HIGH needs -24 <= LOW <= HIGH <= 24")
        if self.subword not in SUBWORDS:
            raise UserError(f"--subword must be one of {', '.join(SUBWORDS)}")
        if self.workers < 0:
            raise UserError("--workers must be >= 0 (0 = all cores)")
        for name in ("max_notes", "max_beats"):
            if getattr(self, name) <= 0:
                raise UserError(f"--{name.replace('_', '-')} must be positive")
        if self.max_file_mb <= 0:
            raise UserError("--max-file-mb must be positive")
        parse_control_kinds(self.controls)
        if not 0.0 <= self.fim_rate <= 1.0:
            raise UserError(f"--fim-rate {self.fim_rate}: give a share between 0 and 1 (0 = no infilling)")
        if self.fim_order not in FIM_ORDERS:
            raise UserError(f"--fim-order {self.fim_order!r}: choose one of {', '.join(FIM_ORDERS)}")
        if self.fim_suffix_bars < 1:
            raise UserError(f"--fim-suffix-bars {self.fim_suffix_bars}: give at least 1 bar")


# --- finding inputs ------------------------------------------------------------------------------
def find_midi_files(inputs: list[str]) -> list[str]:
    """MIDI files under the given files/folders, recursively, sorted, without duplicates."""
    out: list[str] = []
    for inp in inputs:
        p = Path(inp)
        if p.is_dir():
            out.extend(str(f) for f in p.rglob("*") if f.is_file() and f.suffix.lower() in MIDI_SUFFIXES)
        elif p.is_file():
            out.append(str(p))
        else:
            raise UserError(f"input {inp!r} does not exist")
    return sorted(dict.fromkeys(out))


def _refuse_scores(inputs: list[str]) -> None:
    """Point score files (ABC, MusicXML, Humdrum) to ``melodylm corpus import`` when no MIDI comes with them.

    They are not read here: symusic 0.6 parses ABC, but reads only the first tune of a
    multi-tune file (1 of the 313 tunes of music21's ``essenFolksong/altdeu10.abc``) and prints
    its parser's warnings on stdout. ``corpus import`` splits such files tune by tune.
    """
    from melodylm.corpus import SUFFIXES

    score_suffixes = {s for s, kind in SUFFIXES.items() if kind != "midi"}
    for inp in inputs:
        p = Path(inp)
        if p.is_file() and p.suffix.lower() in score_suffixes:
            found = [p]
        elif p.is_dir() and not any(f.suffix.lower() in MIDI_SUFFIXES for f in p.rglob("*") if f.is_file()):
            found = [f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in score_suffixes]
        else:
            continue
        if found:
            kinds = "/".join(sorted({f.suffix.lower().lstrip(".") for f in found}))
            raise UserError(f"{inp}: {len(found)} score file(s) ({kinds}) and no MIDI files: convert them with "
                            f"`melodylm corpus import {inp} -o corpora/NAME`, then `melodylm tokenize corpora/NAME`")


def split_of(key: str, seed: int, fractions: tuple[float, float, float]) -> str:
    """Deterministic split of a tune from its content key: independent of file order."""
    h = hashlib.sha1(f"{seed}:{key}".encode()).digest()
    u = int.from_bytes(h[:8], "little") / 2.0**64
    acc = 0.0
    for name, frac in zip(SPLITS, fractions):
        acc += frac
        if u < acc:
            return name
    return SPLITS[0] if fractions[0] else "train"


# --- per-file work (runs in worker processes) ----------------------------------------------------
_W: dict = {}


def _init_worker(tok_dict: dict, cfg: dict) -> None:
    import warnings

    warnings.filterwarnings("ignore")
    _W["tok"] = MelodyTokenizer.from_dict(tok_dict)
    _W["cfg"] = TokenizeConfig(**cfg)


def _read_tune(path: str, tok: MelodyTokenizer, melody: str, max_notes: int = MAX_NOTES,
               max_file_mb: float = MAX_FILE_MB, max_beats: int = MAX_BEATS):
    """``(record, score, base ids)`` of one file; ``score`` is None when the file is not usable
    (the record's status and reason say why). Notes outside the pitch range move by octaves."""
    rec: dict = {"path": path, "status": "ok", "reason": "", "split": None, "n_notes": 0, "n_tokens": 0,
                 "hash": None}
    mel = load_melody(path, melody, max_notes=max_notes, max_file_mb=max_file_mb, max_beats=max_beats)
    if mel.status != "ok":
        rec.update(status=mel.status, reason=mel.reason)
        return rec, None, None
    lo, hi = tok.settings.pitch_range
    score = mel.score
    pitches = score.tracks[0].notes.numpy()["pitch"]
    if ((pitches < lo) | (pitches >= hi)).any():
        score, out_of_range = transpose(mel.score, 0, (lo, hi))
        mel.info["out_of_range_notes"] = out_of_range
    if not score.tracks[0].notes:
        rec.update(status="skipped", reason=f"all notes outside the pitch range {lo}..{hi - 1}")
        return rec, None, None
    ids = tok.encode_score(score)
    n_notes = tok.count_notes(ids)
    if n_notes == 0:
        rec.update(status="skipped", reason="no notes left after tokenization")
        return rec, None, None
    rec.update(n_notes=n_notes, n_tokens=int(len(ids)), hash=mel.info["hash"], melody=mel.info)
    return rec, score, ids


@dataclass
class _Seq:
    """One sequence of a split before it is written: base ids, controls, maybe its infilling cut."""

    ids: np.ndarray
    n_notes: int
    row: int = 0  # manifest row
    transpose: int = 0
    controls: dict = field(default_factory=dict)
    fim: object = None  # infill.FimParts when this training tune is also stored rearranged


def _process(path: str) -> tuple[dict, list[_Seq]]:
    """Read, pick the melody, assign the split, tokenize, derive controls (and transpose train tunes)."""
    tok: MelodyTokenizer = _W["tok"]
    cfg: TokenizeConfig = _W["cfg"]
    seqs: list[_Seq] = []
    try:
        rec, score, ids = _read_tune(path, tok, cfg.melody, cfg.max_notes, cfg.max_file_mb, cfg.max_beats)
        if score is None:
            return rec, seqs
        lo, hi = tok.settings.pitch_range
        split = split_of(rec["melody"]["shape_hash"], cfg.seed, cfg.split)
        controls = derive_controls(score, style_for(path, cfg.inputs, cfg.styles))
        rec.update(split=split, controls=controls)
        seqs.append(_Seq(ids.astype(np.int32), rec["n_notes"], controls=controls))
        if split == "train" and cfg.transpose != (0, 0):
            dropped = 0
            for k in range(cfg.transpose[0], cfg.transpose[1] + 1):
                if k == 0:
                    continue
                t_score, d = transpose(score, k, (lo, hi))
                dropped += d
                if not t_score.tracks[0].notes:
                    continue
                t_ids = tok.encode_score(t_score)
                t_notes = tok.count_notes(t_ids)
                if t_notes:
                    seqs.append(_Seq(t_ids.astype(np.int32), t_notes, transpose=k,
                                     controls=transpose_controls(controls, k)))
            rec["transposed_copies"] = len(seqs) - 1
            rec["transpose_dropped_notes"] = dropped
        if split == "train" and cfg.fim_rate > 0:
            spans = []
            for sq in seqs:
                span, sq.fim = fim_cut(tok, sq.ids.astype(np.int64), cfg.fim_rate,
                                       tune_rng(cfg.seed, rec["hash"], sq.transpose), cfg.fim_suffix_bars)
                if span is not None:
                    spans.append([sq.transpose, *span])
            rec["fim_spans"] = spans  # [transpose, first bar, last bar] of each rearranged copy
    except Exception as e:  # a bad file must never stop the run or lose another file
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        rec = {"path": path, "status": "failed", "reason": f"{type(e).__name__}: {msg[:200]}", "split": None,
               "n_notes": 0, "n_tokens": 0, "hash": None}
        seqs = []
    return rec, seqs


def tokenize_files(files: list[str], tokenizer: MelodyTokenizer, melody: str = "auto",
                   style: str | None = None) -> list[dict]:
    """Tokenize MIDI files with a given tokenizer (a checkpoint's), in this process.

    One dict per file: the manifest fields (``path``, ``status``, ``reason``, ``n_notes``, ...),
    and for usable files ``ids``, the model ids ``BOS controls tune EOS``, and ``controls``. The
    head holds the file's key and meter when the tokenizer knows those values, and ``style``
    when given and known; a tokenizer without controls gives ``BOS tune EOS``.
    """
    out = []
    for path in files:
        try:
            rec, score, ids = _read_tune(str(path), tokenizer, melody)
        except Exception as e:  # one unreadable file is reported, not fatal
            rec, score = {"path": str(path), "status": "failed", "reason": f"{type(e).__name__}: {e}"[:200],
                          "n_notes": 0}, None
        if score is not None:
            controls = derive_controls(score, style or "")
            if not style:
                controls["style"] = None
            rec["controls"] = controls
            head = head_for(tokenizer, controls, ("key", "meter", "style"))
            rec["ids"] = np.concatenate([head, tokenizer.encode_ids(ids), [tokenizer.eos_id]]).astype(np.int64)
        out.append(rec)
    return out


# --- building a dataset ----------------------------------------------------------------------
def tokenize(cfg: TokenizeConfig, progress: bool = True) -> dict:
    """Build a token dataset from MIDI files (see module docstring). Returns the summary."""
    cfg.validate()
    corpus = corpus_dir()  # looked up now: package data, else the checkout's corpora/
    inputs = cfg.inputs or [str(corpus)]
    if not cfg.inputs and corpus is None:
        raise UserError("the embedded corpus (corpora/oneills1850) is missing from this install: "
                        "pass MIDI files or folders")
    _refuse_scores(inputs)
    files = find_midi_files(inputs)
    if not files:
        raise UserError(f"no MIDI files (.mid/.midi) found in {', '.join(inputs)}")
    cfg = replace(cfg, inputs=inputs)  # workers name styles after the input folders
    out = Path(cfg.out_dir)
    check_out_dir(out, cfg.force)
    tmp = staging_dir(out)  # built out of sight: a failed build leaves an older dataset as it was
    try:
        summary = _build(cfg, files, tmp, progress)
        (tmp / "COMPLETE").write_text(f"melodylm {__version__}\n")
        publish_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    summary["out_dir"] = str(out)
    return summary


def _run_files(cfg: TokenizeConfig, tok: MelodyTokenizer, files: list[str], progress: bool):
    from tqdm import tqdm

    workers = cfg.workers or os.cpu_count() or 1
    workers = max(1, min(workers, len(files)))
    init_args = (tok.to_dict(), asdict(cfg))
    bar = tqdm(total=len(files), desc="tokenize", unit="file", disable=not progress, file=sys.stderr)
    try:
        # Only an explicit --workers 1 reads files in this process (simplest to debug); otherwise,
        # even with one core, a worker process keeps a crash or hang in the MIDI reader to one file.
        if cfg.workers == 1:
            _init_worker(*init_args)
            for f in files:
                yield _process(f)
                bar.update()
        else:
            yield from _run_pool(files, workers, init_args, bar)
    finally:
        bar.close()


def _run_pool(files: list[str], workers: int, init_args, bar):
    """Process files in a pool; if a worker dies (a crash inside a C library), retry file by file."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    chunk = max(1, min(64, len(files) // (workers * 8) or 1))
    batches = [files[i:i + chunk] for i in range(0, len(files), chunk)]
    done = 0
    while done < len(batches):
        # A dead worker breaks the whole pool: the batch waited on is then retried file by file
        # and a fresh pool takes the rest (not one process per file for the rest of the run).
        ex = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=init_args)
        try:
            futs = [ex.submit(_process_batch, b) for b in batches[done:]]
            for fut in futs:
                try:
                    results = fut.result()
                except BrokenProcessPool:
                    results = [_process_isolated(f, init_args) for f in batches[done]]
                    done += 1
                    for r in results:
                        yield r
                        bar.update()
                    break
                done += 1
                for r in results:
                    yield r
                    bar.update()
        finally:
            # on Ctrl-C or an error, queued batches are dropped rather than run to the end
            ex.shutdown(wait=True, cancel_futures=True)


def _process_batch(paths: list[str]):
    """Files in a worker process, each under an alarm of FILE_TIMEOUT_S seconds.

    The alarm keeps its default action, so it kills the worker even inside C++ code that never
    returns to Python; the pool then retries the batch file by file (see :func:`_run_pool`).
    """
    import signal

    alarm = hasattr(signal, "SIGALRM")
    if alarm:
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
    out = []
    for p in paths:
        if alarm:
            signal.alarm(FILE_TIMEOUT_S)
        out.append(_process(p))
    if alarm:
        signal.alarm(0)
    return out


def _process_isolated(path: str, init_args):
    """One file in its own process, so a crash loses only that file."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    t0 = time.monotonic()
    try:
        with ProcessPoolExecutor(1, mp_context=ctx, initializer=_init_worker, initargs=init_args) as ex:
            return ex.submit(_process_batch, [path]).result()[0]
    except BrokenProcessPool:
        if time.monotonic() - t0 >= FILE_TIMEOUT_S:
            reason = f"gave up after {FILE_TIMEOUT_S} s reading this file (a hang in the MIDI reader?)"
        else:
            reason = "the MIDI reader crashed on this file"
        return ({"path": path, "status": "failed", "reason": reason,
                 "split": None, "n_notes": 0, "n_tokens": 0, "hash": None}, [])
    except Exception as e:
        return ({"path": path, "status": "failed", "reason": f"{type(e).__name__}: {e}"[:200],
                 "split": None, "n_notes": 0, "n_tokens": 0, "hash": None}, [])


def _build(cfg: TokenizeConfig, files: list[str], tmp: Path, progress: bool) -> dict:
    t0 = time.time()
    if cfg.tokenizer:  # reused as it is: vocabulary, subwords and extras; heads only where it has them
        from melodylm.tokenizer_source import load_tokenizer

        tok = load_tokenizer(cfg.tokenizer)
        cfg = replace(cfg, controls=cfg.controls if tok.has_controls else "none",
                      fim_rate=cfg.fim_rate if tok.has_infill else 0.0)
        if tok.has_infill:  # rearranged as the reused tokenizer's model was trained and fills
            cfg = replace(cfg, fim_order=tok.extra.fim_order, fim_suffix_bars=tok.extra.fim_suffix_bars)
    else:
        tok = MelodyTokenizer(TokenizerSettings(scheme=cfg.scheme, use_velocities=cfg.velocities))
    kinds = parse_control_kinds(cfg.controls)
    records: list[dict] = []
    per_split: dict[str, list[_Seq]] = {s: [] for s in SPLITS}
    first_by_hash: dict[str, str] = {}
    for rec, seqs in _run_files(cfg, tok, files, progress):
        row = len(records)
        if rec.get("hash"):
            if rec["hash"] in first_by_hash:
                rec["duplicate_of"] = first_by_hash[rec["hash"]]
            else:
                first_by_hash[rec["hash"]] = rec["path"]
        records.append(rec)
        for sq in seqs:
            sq.row = row
            per_split[rec["split"]].append(sq)
    if not per_split["train"]:
        # nothing is written in this case, so the message itself says what became of the files
        n_ok = sum(r["status"] == "ok" for r in records)
        if n_ok:
            raise UserError(f"all {n_ok} usable tune(s) fell in the val/test splits: add files or use --split 1,0,0")
        why = ", ".join(f"{n} {k}" for k, n in sorted(_reasons(records).items(), key=lambda kv: -kv[1])[:4])
        raise UserError(f"no usable tune among {len(files)} file(s) ({why})")
    if cfg.subword != "none":
        tok.train_subwords((sq.ids for sq in per_split["train"]), cfg.subword, cfg.vocab_size, cfg.seed)
    if not cfg.tokenizer and (kinds or cfg.fim_rate > 0):  # extras after the pieces; values seen in training
        tok.set_extra([select_controls(sq.controls, kinds) for sq in per_split["train"]], sentinels=cfg.fim_rate > 0,
                      fim_order=cfg.fim_order, fim_suffix_bars=cfg.fim_suffix_bars)
    tok.save(tmp / "tokenizer.json")
    dtype = np.uint16 if tok.vocab_size < 2**16 else np.uint32
    tokens_per_split = {split: write_split(tmp, split, per_split[split], tok, kinds, dtype, INDEX_DTYPE) for split in SPLITS}
    n_fim, fim_tokens = write_fim(tmp, per_split["train"], tok, kinds, dtype, INDEX_DTYPE) if cfg.fim_rate > 0 else (0, 0)
    with open(tmp / "manifest.jsonl", "w") as f:
        for rec in records:
            f.write(json.dumps(rec, sort_keys=True) + "\n")
    counts = {s: sum(r["status"] == s for r in records) for s in ("ok", "skipped", "failed")}
    stats = {
        "melodylm_version": __version__,
        "dataset_version": DATASET_VERSION,
        "files": len(records),
        **counts,
        "tunes": {s: int(sum(sq.transpose == 0 for sq in per_split[s])) for s in SPLITS},
        "sequences": {s: len(per_split[s]) for s in SPLITS},
        "tokens": tokens_per_split,
        "notes": {s: int(sum(sq.n_notes for sq in per_split[s])) for s in SPLITS},
        "vocab_size": tok.vocab_size,
        "base_vocab_size": tok.base_vocab_size,
        "dtype": np.dtype(dtype).name,
        "config": {k: v for k, v in asdict(cfg).items() if k not in ("inputs", "out_dir", "workers", "force", "styles")},
        "tokenizer": tok.fingerprint(),
    }
    if kinds or cfg.fim_rate > 0:
        stats["controls"] = list(kinds)
        stats["known"] = {k: tok.extra.values(k) for k in kinds}
        stats["styles"] = sorted(set(cfg.styles.values()))
        stats["fim"] = {"rate": cfg.fim_rate, "sequences": n_fim, "tokens": fim_tokens}
    (tmp / "stats.json").write_text(json.dumps(stats, indent=1, sort_keys=True))
    return {"files": len(records), **counts, "tokens": tokens_per_split,
            "tunes": stats["tunes"], "vocab_size": tok.vocab_size, "reasons": _reasons(records),
            "controls": stats.get("known", {}), "fim_sequences": n_fim,
            "warnings": empty_split_warnings(stats["tunes"], cfg.split), "seconds": round(time.time() - t0, 2)}


def empty_split_warnings(tunes: dict[str, int], fractions: tuple[float, float, float]) -> list[str]:
    """A warning for each split that was asked for (fraction > 0) but holds no tune.

    Small collections end up there: with 12 tunes and 5% each for val and test, a split is
    empty about half the time. Training then validates on its own data and ``evaluate`` fails.
    """
    empty = [name for name, frac in zip(SPLITS, fractions) if frac > 0 and not tunes.get(name)]
    if not empty:
        return []
    total = sum(tunes.get(s, 0) for s in SPLITS)
    names = " and ".join(empty)
    return [f"the {names} split{'s' if len(empty) > 1 else ''} {'are' if len(empty) > 1 else 'is'} empty "
            f"({total} tunes in all, --split {','.join(f'{f:g}' for f in fractions)}): give "
            f"{'them' if len(empty) > 1 else 'it'} a larger share, e.g. --split 0.8,0.1,0.1, or add more files"]


def _reasons(records: list[dict]) -> dict[str, int]:
    """How many files were skipped or failed, per reason (details such as limits cut off)."""
    reasons: dict[str, int] = {}
    for r in records:
        if r["status"] != "ok":
            key = r["reason"].split(":")[0].split(" (")[0]
            reasons[key] = reasons.get(key, 0) + 1
    return reasons


# --- reading a dataset -------------------------------------------------------------------------
class Split:
    """One split: a memory-mapped token array and its per-tune index."""

    def __init__(self, data_dir: Path, name: str, dtype: str):
        self.name = name
        path = data_dir / f"{name}.bin"
        self.index = np.load(data_dir / f"{name}.index.npy", allow_pickle=False)
        size = path.stat().st_size
        self.tokens = np.memmap(path, dtype=dtype, mode="r") if size else np.zeros(0, dtype=dtype)

    def __len__(self) -> int:
        return len(self.index)

    def tune(self, i: int) -> np.ndarray:
        """Model ids of tune ``i`` including BOS and EOS."""
        row = self.index[i]
        return np.asarray(self.tokens[row["start"]:row["start"] + row["length"]], dtype=np.int64)

    def originals(self) -> np.ndarray:
        """Row numbers of the untransposed tunes."""
        return np.flatnonzero(self.index["transpose"] == 0)


def _extras_by_name(ours: MelodyTokenizer, theirs: MelodyTokenizer):
    """Reader mapping ``ours``' extra ids to ``theirs``' ids of the same name (dropping unknown ones)."""
    table = np.arange(ours.vocab_size, dtype=np.int64)
    if ours.extra is not None:
        for i, name in enumerate(ours.extra.tokens):
            table[ours.extra.offset + i] = theirs.extra.id(name) if theirs.extra.has(name) else -1

    def read(ids) -> np.ndarray:
        out = table[np.asarray(ids, dtype=np.int64)]
        return out[out >= 0]
    return read


class Dataset:
    """A dataset folder made by :func:`tokenize`, checked on open."""

    def __init__(self, data_dir: str | Path):
        self.dir = Path(data_dir)
        if self.dir.exists() and not self.dir.is_dir():  # e.g. a checkpoint or a MIDI file
            raise DataError(f"{self.dir} is a file, not a dataset folder: pass the folder made by `melodylm tokenize`")
        if not self.dir.is_dir():
            raise DataError(f"dataset folder {self.dir} not found: run `melodylm tokenize` first "
                            f"(or `melodylm tokenize -o {self.dir}`)")
        if not (self.dir / "COMPLETE").exists():
            if (self.dir / "tokenizer.json").exists():
                raise DataError(f"{self.dir} is an incomplete dataset (an interrupted build?): "
                                "re-run `melodylm tokenize --force`")
            # a folder of MIDI files (a corpus) is the usual mistake: say how to make a dataset of it
            near = (f for pattern in ("*", "*/*") for f in self.dir.glob(pattern))
            if any(f.suffix.lower() in MIDI_SUFFIXES for f in near):
                raise DataError(f"{self.dir} holds MIDI files, not a token dataset: run "
                                f"`melodylm tokenize {self.dir} -o DATA_DIR` and pass DATA_DIR instead")
            if any(self.dir.glob("*.pt")):
                raise DataError(f"{self.dir} is a training run (it holds checkpoints), not a dataset folder: "
                                "pass the folder made by `melodylm tokenize`")
            raise DataError(f"{self.dir} is not a dataset folder made by `melodylm tokenize`")
        try:
            self.stats = json.loads((self.dir / "stats.json").read_text())
        except (OSError, json.JSONDecodeError):
            raise DataError(f"{self.dir}/stats.json is missing or broken: re-run `melodylm tokenize --force`") from None
        if self.stats.get("dataset_version") != DATASET_VERSION:
            raise DataError(f"{self.dir} has dataset format {self.stats.get('dataset_version')}; this melodylm "
                            f"reads {DATASET_VERSION}: re-run `melodylm tokenize --force`")
        self.tokenizer = MelodyTokenizer.load(self.dir / "tokenizer.json")
        self._splits: dict[str, Split] = {}

    def split(self, name: str) -> Split:
        if name not in SPLITS:
            raise UserError(f"--split {name!r}: choose one of {', '.join(SPLITS)}")
        if name not in self._splits:
            try:
                self._splits[name] = Split(self.dir, name, self.stats["dtype"])
            except (OSError, ValueError) as e:
                raise DataError(f"{self.dir}: cannot read split {name!r} ({e}); re-run `melodylm tokenize --force`") from None
        return self._splits[name]

    def manifest(self) -> list[dict]:
        with open(self.dir / "manifest.jsonl") as f:
            return [json.loads(line) for line in f]

    def fingerprint(self) -> str:
        """Hash of the tokenizer and token arrays: which data a model was trained on."""
        h = hashlib.sha1()
        h.update((self.dir / "tokenizer.json").read_bytes())
        names = list(SPLITS) + (["train.fim"] if (self.dir / "train.fim.bin").exists() else [])
        for s in names:
            h.update((self.dir / f"{s}.index.npy").read_bytes())
            with open(self.dir / f"{s}.bin", "rb") as f:
                for block in iter(lambda: f.read(1 << 22), b""):
                    h.update(block)
        return h.hexdigest()[:16]

    def fim(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(tokens, index)`` of the training tunes rearranged for infilling, or None without them.

        The index's ``source`` is the training row each sequence stands in for.
        """
        path = self.dir / "train.fim.bin"
        if not path.exists():
            return None
        index = np.load(self.dir / "train.fim.index.npy", allow_pickle=False)
        dtype = self.stats["dtype"]
        tokens = np.memmap(path, dtype=dtype, mode="r") if path.stat().st_size else np.zeros(0, dtype=dtype)
        return tokens, index

    def reader_for(self, tokenizer: MelodyTokenizer):
        """A function turning this dataset's stored sequences into ``tokenizer``'s model ids.

        The identity when the tokenizers are the same. When both have the same base tokens and the
        model has control tokens of its own (trained on other or more tunes: the shipped model's
        styles and meters are O'Neill's and Essen's), each control token is mapped by name to the
        model's, and one the model never saw (a style it does not know) is left out, as an
        unasked control. For a model trained without controls
        (``tokenizer`` has no extras) on a dataset that has them, the control tokens are dropped:
        a held-out tune ``BOS controls tune EOS`` becomes ``BOS tune EOS``, exactly the plain
        tokens (not for ``train.fim.bin``, whose order is rearranged). Anything else is a UserError.
        """
        ours = self.tokenizer
        if ours.fingerprint() == tokenizer.fingerprint():
            return lambda ids: np.asarray(ids, dtype=np.int64)
        if tokenizer.extra is None and ours.fingerprint(extras=False) == tokenizer.fingerprint():
            return ours.strip
        if tokenizer.extra is not None and ours.fingerprint(extras=False) == tokenizer.fingerprint(extras=False):
            return _extras_by_name(ours, tokenizer)
        raise UserError(f"dataset {self.dir} was tokenized with another tokenizer than the model's: "
                        "evaluate on the dataset it was trained on (or re-tokenize with the same settings)")

    def base_tunes(self, split: str, originals_only: bool = True) -> list[np.ndarray]:
        """Base-token sequences (no BOS/EOS, subwords undone) of a split."""
        sp = self.split(split)
        rows = sp.originals() if originals_only else range(len(sp))
        tok = self.tokenizer
        return [tok.decode_ids(sp.tune(i)[1:-1]) for i in rows]

    def detokenize(self, split: str, index: int, out: str | Path) -> Path:
        """Write tune ``index`` of ``split`` back to a MIDI file."""
        sp = self.split(split)
        if not 0 <= index < len(sp):
            raise UserError(f"--index {index} is out of range: split {split!r} has {len(sp)} tunes (0..{len(sp) - 1})")
        base = self.tokenizer.decode_ids(sp.tune(index)[1:-1])
        score = self.tokenizer.decode_score(base)
        out = Path(out)
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            score.dump_midi(str(out))
        except OSError as e:
            raise UserError(f"cannot write {out}: {e.strerror or e}") from None
        return out
