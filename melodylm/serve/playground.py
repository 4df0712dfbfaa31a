"""What the playground does, without HTTP: checkpoints to choose from, corpus tunes, one sampling request.

The web routes only parse a request into :class:`SampleRequest` and call :meth:`Playground.sample`;
validation is :func:`melodylm.generate.validate_options`, the one ``melodylm sample`` uses, plus
this server's per-request limits.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from melodylm.controls import GUIDANCE
from melodylm.errors import UserError
from melodylm.serve.jobs import Batch, FileStore, RenderJobs

# The shipped model of the repository, and the folder where `melodylm train` runs are kept.
SHIPPED_NAME = "pretrained"
# Form fields that steer a sample, passed to `generate` as `melodylm sample` passes its flags.
STEERING = ("fill", "key", "meter", "style")


@dataclass
class Limits:
    """Per-request and per-server limits; each default is small enough for 2 CPU cores."""

    max_upload_bytes: int = 4 * 1024 * 1024  # MIDI melodies are a few kB; 4 MB holds any real song file
    max_samples: int = 8  # n per request
    max_tokens: int = 1024  # new tokens per sample (`melodylm sample` default); 8 bars of REMI take ~100-200
    max_total_tokens: int = 4096  # n * max_tokens per request
    max_bars: int = 64  # bars to generate per sample
    max_waiting: int = 4  # requests waiting behind the running one before 503


@dataclass
class SampleRequest:
    """One ``POST /api/sample``: parsed, not yet validated."""

    n: int = 1
    prompt_bars: int | None = None
    max_bars: int | None = 8
    max_tokens: int | None = None  # None: the server's per-sample limit
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    checkpoint: str | None = None
    tune: str | None = None  # a file name of the embedded corpus
    prompt_file: Path | None = None  # an upload, saved by the server
    prompt_name: str = ""
    fill: str | None = None  # bars "A:B" of the prompt to write anew (``melodylm sample --fill``)
    key: str | None = None  # controls of models trained with them: "D minor", "6/8", a style name
    meter: str | None = None
    style: str | None = None
    guidance: float = GUIDANCE  # ``melodylm sample --guidance``


def _parse(name: str, raw: str | None, kind: type, default: Any) -> Any:
    if raw is None or str(raw).strip() == "":
        return default
    try:
        return kind(str(raw).strip())
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise UserError(f"{name} {str(raw)[:40]!r}: must be {what}") from None


def parse_request(fields: dict[str, str | None]) -> SampleRequest:
    """Form fields (strings; empty means default) -> :class:`SampleRequest`, or :class:`UserError`."""
    known = {"n", "prompt_bars", "max_bars", "max_tokens", "temperature", "top_p", "seed", "checkpoint", "tune",
             "guidance", *STEERING}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise UserError(f"unknown field {unknown[0]!r}: use {', '.join(sorted(known))} and the file 'prompt'")
    text = {k: (fields.get(k) or "").strip()[:80] or None for k in STEERING}
    return SampleRequest(
        n=_parse("n", fields.get("n"), int, 1),
        prompt_bars=_parse("prompt_bars", fields.get("prompt_bars"), int, None),
        # A fill sets its own bars (`melodylm sample` refuses --fill with --max-bars): no default then.
        max_bars=_parse("max_bars", fields.get("max_bars"), int, None if text["fill"] else 8),
        max_tokens=_parse("max_tokens", fields.get("max_tokens"), int, None),
        temperature=_parse("temperature", fields.get("temperature"), float, 1.0),
        top_p=_parse("top_p", fields.get("top_p"), float, 1.0),
        seed=_parse("seed", fields.get("seed"), int, 0),
        checkpoint=(fields.get("checkpoint") or "").strip() or None,
        tune=(fields.get("tune") or "").strip() or None,
        guidance=_parse("guidance", fields.get("guidance"), float, GUIDANCE),
        **text,
    )


def check_limits(req: SampleRequest, limits: Limits) -> int:
    """Raise :class:`UserError` past this server's limits; return the per-sample token limit to use."""
    if req.n > limits.max_samples:
        raise UserError(f"n {req.n}: this server makes at most {limits.max_samples} samples per request")
    max_tokens = limits.max_tokens if req.max_tokens is None else req.max_tokens
    if max_tokens > limits.max_tokens:
        raise UserError(f"max_tokens {max_tokens}: this server allows at most {limits.max_tokens} per sample")
    if req.n * max_tokens > limits.max_total_tokens:
        raise UserError(f"n {req.n} x max_tokens {max_tokens}: more than this server's "
                        f"{limits.max_total_tokens} tokens per request; ask for fewer samples or tokens")
    if req.max_bars is not None and req.max_bars > limits.max_bars:
        raise UserError(f"max_bars {req.max_bars}: this server generates at most {limits.max_bars} bars")
    return max_tokens


def safe_name(name: str, default: str = "prompt") -> str:
    """A file name made of letters, digits, ``-_.`` only (for an uploaded prompt's name in the signature)."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(str(name)).stem).strip("._")[:60]
    return (stem or default) + ".mid"


def list_checkpoints(extra: str | Path | None = None, cwd: str | Path | None = None) -> dict[str, Path]:
    """Name -> checkpoint file: ``extra`` (``serve --checkpoint``) first, the shipped model, then each
    run under ``./checkpoints`` with a ``best.pt`` (newest first). The first entry is the default."""
    from melodylm.resources import shipped_model

    cwd = Path(cwd or Path.cwd())
    found: dict[str, Path] = {}
    if extra is not None:
        p = Path(extra)
        p = p / "best.pt" if p.is_dir() else p
        if not p.is_file():
            raise UserError(f"--checkpoint {extra}: no such checkpoint file")
        found[p.parent.name if p.name in ("best.pt", "model.pt", "last.pt") else p.stem] = p.resolve()
    for shipped in (shipped_model(), cwd / "checkpoints" / SHIPPED_NAME / "model.pt"):  # package data or checkout
        if shipped is not None and shipped.is_file() and shipped.resolve() not in found.values():
            found.setdefault(SHIPPED_NAME, shipped.resolve())
    runs = sorted((p for p in (cwd / "checkpoints").glob("*/best.pt") if p.is_file()),
                  key=lambda p: (-p.stat().st_mtime, str(p)))
    for p in runs:
        if p.resolve() not in found.values():
            found.setdefault(p.parent.name, p.resolve())
    return found


def list_tunes(corpus: Path, query: str = "", limit: int = 50) -> list[dict[str, Any]]:
    """Tunes of an imported corpus folder (its ``MANIFEST.tsv``) whose title or file holds every word of ``query``."""
    from melodylm.corpus import MANIFEST_NAME, read_manifest

    manifest = Path(corpus) / MANIFEST_NAME
    if not manifest.is_file():
        return []
    words = query.lower().split()
    out = []
    for row in read_manifest(manifest):
        if row.get("status") != "ok":
            continue
        text = f"{row['title']} {row['file']}".lower()
        if all(w in text for w in words):
            out.append({"file": row["file"], "title": row["title"], "notes": int(row.get("n_notes") or 0)})
            if len(out) >= limit:
                break
    return out


def note_rows(score) -> list[list[float]]:
    """``[onset_beat, duration_beats, pitch]`` of every note, for the page's piano roll."""
    from melodylm.midi import note_array

    tpq = float(score.ticks_per_quarter)
    rows = []
    for tr in score.tracks:
        rows.extend([round(t / tpq, 4), round(d / tpq, 4), int(p)] for t, d, p in note_array(tr).tolist())
    return sorted(rows)


def model_controls(tok) -> dict[str, Any]:
    """A tokenizer's steering for the page: ``values`` (known key, meter and style values), ``fill``
    (whether bars can be refilled) and for each one it lacks, ``reasons``: why, in one line."""
    from melodylm.controls import KINDS

    extra = tok.extra if tok.has_controls else None
    values = {k: extra.values(k) if extra is not None else [] for k in KINDS}
    reasons: dict[str, str] = {}
    for k in KINDS:
        if extra is None:
            reasons[k] = "this model has no controls: train on a dataset tokenized with controls"
        elif not values[k]:
            reasons[k] = f"this model was trained without a {k} control"
    fill = bool(tok.has_infill) and tok.settings.scheme == "REMI"
    if not tok.has_infill:
        reasons["fill"] = ("this model has no infill tokens: train it on a dataset tokenized with "
                           "fill-in-the-middle")
    elif not fill:
        reasons["fill"] = f"bars are followed in REMI tokens only, not {tok.settings.scheme}"
    return {"values": values, "fill": fill, "reasons": reasons}


def fill_beats(sample) -> list[float] | None:
    """``[start, end]`` in quarter notes of the bars a fill wrote (``None`` for other samples)."""
    from melodylm.infill import bar_starts, parse_span
    from melodylm.midi import score_notes

    span = (sample.info.get("options") or {}).get("fill")
    if not span:
        return None
    a, b = parse_span(span)
    notes = score_notes(sample.score)
    end = int((notes[:, 0] + notes[:, 1]).max()) if len(notes) else 0
    starts = bar_starts(sample.score, end)
    tpq = float(sample.score.ticks_per_quarter)
    stop = starts[b] if b < len(starts) else starts[-1]
    return [round(float(starts[a - 1]) / tpq, 6), round(float(stop) / tpq, 6)]


@dataclass
class Playground:
    """Loaded models, the corpus, the file store and the render jobs behind one server."""

    checkpoints: dict[str, Path]
    store: FileStore
    renders: RenderJobs | None
    corpus: Path
    limits: Limits = field(default_factory=Limits)
    device: str = "cpu"
    program: int = 0
    formats: tuple[tuple[str, ...], ...] = (("wav",), ("svg", "musicxml"), ("png",))  # in the order they render
    refresh: Callable[[], dict[str, Path]] | None = None
    _models: dict[str, tuple[Any, Any, str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def checkpoint_list(self) -> list[dict[str, Any]]:
        """The checkpoints a request may name (runs trained since start-up included); the first is the default."""
        if self.refresh is not None:
            for name, path in self.refresh().items():
                self.checkpoints.setdefault(name, path)
        return [{"name": k, "file": p.name, "run": p.parent.name, "default": i == 0}
                for i, (k, p) in enumerate(self.checkpoints.items())]

    def model(self, name: str | None):
        """(model, tokenizer, hash) of a checkpoint name, loaded once and kept."""
        from melodylm.checkpoint import file_hash, load_model

        if not self.checkpoints:
            raise UserError("no checkpoint: train one (`melodylm train`) or start the server with --checkpoint CKPT")
        name = name or next(iter(self.checkpoints))
        if name not in self.checkpoints:
            self.checkpoint_list()
        if name not in self.checkpoints:
            raise UserError(f"checkpoint {name[:60]!r}: not one of {', '.join(self.checkpoints)}")
        with self._lock:
            if name not in self._models:
                path = self.checkpoints[name]
                model, tok, _ = load_model(path, self.device)
                self._models[name] = (model, tok, file_hash(path))
            return name, self._models[name]

    def warm(self) -> None:
        """Load the default model and import the renderers, so the first Generate does not wait for them."""
        try:
            self.model(None)
            import melodylm.render  # noqa: F401  (verovio, the synthesizer and matplotlib load here)
        except Exception:  # a missing model or extra is reported by the request that needs it
            pass

    def prompt_path(self, req: SampleRequest) -> Path | None:
        """The MIDI file to continue: the upload, a corpus tune, or none."""
        if req.prompt_file is not None and req.tune:
            raise UserError("prompt and tune: give an uploaded file or a corpus tune, not both")
        if req.tune:
            tune = Path(req.tune).name
            path = self.corpus / tune
            if tune != req.tune or not tune.endswith(".mid") or not path.is_file():
                raise UserError(f"tune {req.tune[:60]!r}: not a file of the embedded corpus (see /api/tunes)")
            return path
        return req.prompt_file

    def sample(self, req: SampleRequest, batch: Batch) -> dict[str, Any]:
        """Generate, write the MIDI files, schedule audio and sheet music, and return the API's answer."""
        from melodylm.generate import generate, signature, validate_options, write_samples

        max_tokens = check_limits(req, self.limits)
        validate_options(req.n, req.temperature, 0, req.top_p, max_tokens, None, req.max_bars, req.prompt_bars)
        prompt = self.prompt_path(req)
        if prompt is None and req.prompt_bars:
            raise UserError("--prompt-bars/--prompt-notes need --prompt MIDI")
        name, (model, tok, digest) = self.model(req.checkpoint)
        t0 = time.perf_counter()
        samples = generate(model, prompt, req.n, tokenizer=tok, max_tokens=max_tokens, max_bars=req.max_bars,
                           temperature=req.temperature, top_p=req.top_p, seed=req.seed,
                           prompt_bars=req.prompt_bars, device=self.device, fill=req.fill, key=req.key,
                           meter=req.meter, style=req.style, guidance=req.guidance,
                           token_budget=self.limits.max_total_tokens)
        for s in samples:
            s.info.update(checkpoint=str(self.checkpoints[name]), checkpoint_hash=digest)
        decode_s = time.perf_counter() - t0
        files = write_samples(samples, batch.folder, extra={"served": {"checkpoint": name, "tune": req.tune}})
        return self._answer(batch, samples, files, signature(samples[0]), decode_s, name)

    def _answer(self, batch: Batch, samples, files: list[Path], sig: str, decode_s: float, name: str) -> dict:
        url = f"/files/{batch.id}/"
        out = []
        for s, mid in zip(samples, files):
            self.store.add(batch, mid.name, mid)
            self.store.add(batch, mid.with_suffix(".json").name, mid.with_suffix(".json"))
            has_prompt = bool(s.info.get("prompt"))
            split = round(s.continuation_start_beat * int(s.score.ticks_per_quarter)) if has_prompt else None
            ts = next(((int(t.numerator), int(t.denominator)) for t in s.score.time_signatures), (4, 4))
            out.append({
                "midi": url + mid.name, "audio": url + f"{mid.stem}.wav", "score": url + f"{mid.stem}.svg",
                "musicxml": url + f"{mid.stem}.musicxml", "pianoroll": url + f"{mid.stem}.png",
                "sidecar": url + mid.with_suffix(".json").name, "notes": note_rows(s.score),
                "has_prompt": has_prompt, "continuation_start_beat": s.continuation_start_beat,
                "time_signature": list(ts), "n_notes": s.n_notes, "new_notes": s.new_notes,
                "new_tokens": s.new_tokens, "stop": s.stop, "_split_tick": split,
                "controls": s.info.get("controls"), "fill_beats": fill_beats(s),
            })
        if self.renders is not None:
            for group in self.formats:  # every sample's audio first: it is what the page waits for
                for row, mid in zip(out, files):
                    self.renders.submit(batch, mid, mid.stem, group, program=self.program,
                                        split_tick=row["_split_tick"])
        for row in out:
            row.pop("_split_tick")
        return {"samples": out, "signature": sig, "checkpoint": name, "batch": batch.id,
                "status": f"/api/batches/{batch.id}", "decode_seconds": round(decode_s, 3)}

    def controls(self, name: str | None) -> dict[str, Any]:
        """What a checkpoint can be steered by: its known key, meter and style values, and fill."""
        name, (_, tok, _) = self.model(name)
        return {"checkpoint": name, **model_controls(tok)}

    def batch_state(self, batch: Batch) -> dict[str, Any]:
        """Each file's state (``ready``, ``pending`` or ``error: one line``) and its render job's seconds."""
        return {"batch": batch.id, "files": dict(batch.state), "seconds": dict(batch.seconds)}
