"""Controls: a tune's key, meter and style, the tokens that carry them, and the ids of extra tokens.

Each tune gets a controls dict, stored in the dataset manifest::

    {"key": "D minor", "key_source": "file", "meter": "6/8", "meter_source": "file",
     "style": "oneills1850"}

``key`` comes from the file's first key signature when it has one and the notes agree with it
(``key_source: "file"``), else from the notes (Krumhansl-Schmuckler, :mod:`melodylm.keys`,
``key_source: "estimated"``, with the overruled signature's key as ``file_key``); ``meter``
is the first time signature (MIDI's 4/4 when the file has none, ``meter_source: "default"``);
``style`` is a label per input folder.

A sequence starts ``BOS Key_D_minor Meter_6/8 Style_oneills1850`` then the tune. The order is
fixed (:data:`KINDS`), so a control that is absent (dropped in training, or not asked for at
sampling) is simply left out and the remaining tokens are still unambiguous.

Extra ids: control tokens and the fill-in-the-middle sentinels are appended after the model
vocabulary the tokenizer already has (its base tokens, or its sentencepiece pieces): id
``offset + i`` for the ``i``-th entry of :attr:`ExtraVocab.tokens`, where ``offset`` is the
tokenizer's vocabulary size without extras. Sentinels come first, then keys in
:func:`melodylm.keys.all_keys` order, meters, then styles, each restricted to the values seen in
training. Base ids, subword ids, PAD/BOS/EOS keep their numbers, so a tokenizer dict without an
``"extra"`` entry (every checkpoint made before controls) is a model with no controls and no
infilling: :meth:`ExtraVocab.from_tokenizer_dict` returns ``None`` for it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from melodylm.errors import DataError, UserError
from melodylm.infill import FIM_ORDERS
from melodylm.keys import Key, all_keys, key_from_signature, key_scores, parse_key

KINDS = ("key", "meter", "style")
PREFIXES = {"key": "Key_", "meter": "Meter_", "style": "Style_"}
SENTINELS = ("FILL_SUFFIX", "FILL_MIDDLE", "FILL_END")
# Marks a training window that keeps its tune's head but continues inside the tune. Without it a
# cut at a bar line reads "BOS controls Bar TimeSig Position_0 Pitch", exactly like the tune's
# first bar, so what the model learns of a tune's opening (where the controls matter most, with
# no notes before to go by) mixes with every later bar. Sampling never writes it.
CUT = "WINDOW_CUT"
# Each control is dropped independently with this probability in training. At 0.5 all 2^3 = 8
# subsets of (key, meter, style) are equally frequent (12.5% each), so the model learns every
# combination a user may ask for, including none. A default chosen by that argument, not tuned.
CONTROL_DROPOUT = 0.5
# Classifier-free guidance weight of sampling when a control is asked (melodylm.sampling.generate_ids).
# Shipped model, 8 samples of 8 bars from nothing per key for G, D, A minor, E minor, F, Bb
# (bench/steer_adherence.py, seed 1): 24/48 in the asked key at 0, 31/48 at 1, 34/48 at 2, 35/48 at 3;
# meters 16/16 at every weight. 2 takes most of the gain with the least push away from the model.
# After its second stage was retrained for infilling: 21, 36, 34 and 34 of 48; 1 and 2 differ by two
# samples of 48, within the noise of 8 samples a key, so 2 stays.
GUIDANCE = 2.0
# Draws a sample asked for a key may take in all: one redrawn while its new notes do not estimate
# as the asked key (melodylm.generate.keep_in_key). Shipped model, 24 samples of 8 bars from nothing
# for each of G, D, A minor, E minor, F and Bb (seed 2): 100, 129, 139, 141 of 144 in key after 1, 2,
# 3, 4 draws (144 after 6). Four is past 97%, at 1.44 draws per sample on average.
KEY_TRIES = 4
# The file's key signature names the key only when the notes do not contradict it. Measured on every
# 4th file of the embedded corpora (music21's ABC converted to MIDI): the signature's key is the
# Krumhansl-Kessler estimate for 85.7% of O'Neill's tunes (E dorian written with two sharps reads as
# D major) and 58.5% of Essen's, where 2,126 of 2,129 signatures say major (49 "G major" tunes
# estimate as G minor). Labels the estimator disagrees with teach "--key E minor" to write D major,
# and adherence is judged by the same estimator. 0.02 keeps the file's key when it is a near tie.
KEY_SIGNATURE_MARGIN = 0.02
_STYLE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_METER_RE = re.compile(r"^\s*(\d{1,2})\s*/\s*(\d{1,2})\s*$")


# --- deriving a tune's controls ----------------------------------------------------------------
def key_name(key: Key) -> str:
    """Canonical name of a key for tokens and manifests: enharmonic twins share one name."""
    return Key(key.tonic, key.mode).name


def derive_controls(score, style: str) -> dict:
    """Controls of a one-melody symusic Score (see the module docstring for the fields)."""
    out: dict = {"key": None, "key_source": None, "meter": "4/4", "meter_source": "default", "style": style}
    notes = [tr.notes.numpy() for tr in score.tracks if len(tr.notes)]
    file_key = None
    if len(score.key_signatures):
        file_key = key_from_signature(min(score.key_signatures, key=lambda k: k.time))
    if notes:
        pitches = np.concatenate([n["pitch"] for n in notes])
        durations = np.concatenate([n["duration"] for n in notes])
        key, source = key_of_notes(pitches, durations, file_key)
        out["key"], out["key_source"] = key_name(key), source
        if source == "estimated" and file_key is not None:
            out["file_key"] = key_name(file_key)  # the signature the notes overruled
    elif file_key is not None:
        out["key"], out["key_source"] = key_name(file_key), "file"
    if len(score.time_signatures):
        ts = min(score.time_signatures, key=lambda t: t.time)
        out["meter"], out["meter_source"] = f"{int(ts.numerator)}/{int(ts.denominator)}", "file"
    return out


def key_of_notes(pitches, durations, file_key: Key | None) -> tuple[Key, str]:
    """A tune's key and where it came from: ``(key, "file")`` or ``(key, "estimated")``.

    The file's key is kept when its Krumhansl-Kessler correlation is within
    :data:`KEY_SIGNATURE_MARGIN` of the best key's; otherwise the notes' estimate wins. A key
    signature fixes a set of pitches, not a tonic or a mode, and the signatures of these corpora
    are often not the tune's key (see :data:`KEY_SIGNATURE_MARGIN`).
    """
    r = key_scores(pitches, durations)
    keys = all_keys()
    best = keys[int(np.argmax(r))]
    if file_key is not None:
        i = next(j for j, k in enumerate(keys) if k == file_key)
        if r[i] >= r.max() - KEY_SIGNATURE_MARGIN:
            return file_key, "file"
    return best, "estimated"


def transpose_controls(controls: dict, semitones: int) -> dict:
    """Controls of a copy transposed by ``semitones`` (only the key moves)."""
    out = dict(controls)
    if controls.get("key"):
        k = parse_key(controls["key"])
        out["key"] = key_name(Key((k.tonic + semitones) % 12, k.mode))
    return out


def parse_style_args(items: list[str]) -> dict[str, str]:
    """``--style NAME=FOLDER`` flags as ``{resolved folder: NAME}``; bad forms are a UserError."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, folder = item.partition("=")
        if not sep or not folder:
            raise UserError(f"--style {item!r}: write NAME=FOLDER, e.g. --style jigs=corpora/jigs")
        check_style_name(name, flag="--style")
        out[str(Path(folder).resolve())] = name
    return out


def check_style_name(name: str, flag: str = "--style") -> str:
    """A style label usable in a token name (letters, digits, ``_ . -``), or a UserError."""
    if not _STYLE_RE.match(name):
        raise UserError(f"{flag} {name!r}: a style name has 1-64 letters, digits, '_', '.' or '-' "
                        "and starts with a letter or digit")
    return name


def style_for(path: str, inputs: list[str], styles: dict[str, str] | None = None) -> str:
    """Style label of a file: the ``--style`` folder it lies under (deepest wins), else the name of
    the input folder it was found in, else (a file given directly) its parent folder's name.

    Folder names that are not valid style names have their other characters replaced by ``_``.
    """
    p = Path(path).resolve()
    best = None
    for folder, name in (styles or {}).items():
        f = Path(folder)
        if (p == f or f in p.parents) and (best is None or len(f.parts) > len(best[0].parts)):
            best = (f, name)
    if best is not None:
        return best[1]
    for inp in inputs:
        f = Path(inp).resolve()
        if f.is_dir() and f in p.parents:
            return _safe_style(f.name)
    return _safe_style(p.parent.name)


def _safe_style(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_.-]", "_", name).lstrip("_.-")[:64]
    return s or "unnamed"


# --- control tokens ------------------------------------------------------------------------------
def parse_meter(text: str) -> str:
    """A meter as ``"N/D"`` from user text such as ``"6/8"`` or ``" 3 / 4"``, or a UserError."""
    m = _METER_RE.match(str(text))
    if m is None or int(m.group(1)) == 0 or int(m.group(2)) not in (1, 2, 4, 8, 16, 32):
        raise UserError(f"--meter {text!r}: write a time signature such as 6/8, 3/4 or 4/4")
    return f"{int(m.group(1))}/{int(m.group(2))}"


def control_tokens(controls: dict) -> list[str]:
    """Token names of the controls present, in :data:`KINDS` order (absent ones are left out)."""
    out = []
    for kind in KINDS:
        value = controls.get(kind)
        if value:
            if kind == "key":
                value = key_name(parse_key(value)).replace(" ", "_")
            out.append(PREFIXES[kind] + str(value))
    return out


def token_controls(names) -> dict:
    """The controls named by control token names (the inverse of :func:`control_tokens`); other
    names are ignored. ``["Key_D_minor", "Meter_6/8"]`` -> ``{"key": "D minor", "meter": "6/8"}``."""
    out = {}
    for name in names:
        for kind in KINDS:
            if name.startswith(PREFIXES[kind]):
                value = name[len(PREFIXES[kind]):]
                out[kind] = value.replace("_", " ") if kind == "key" else value
    return out


def drop_controls(controls: dict, rng: np.random.Generator, rate: float = CONTROL_DROPOUT) -> dict:
    """A copy of ``controls`` with each of key, meter, style removed independently at ``rate``.

    One ``rng.random(3)`` draw per call, in :data:`KINDS` order, so a seeded generator gives the
    same drops whatever the values are.
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"control dropout must be in [0, 1], got {rate}")
    u = rng.random(len(KINDS))
    return {k: (None if k in KINDS and u[KINDS.index(k)] < rate else v) for k, v in controls.items()}


def known_values(controls_list) -> dict[str, list[str]]:
    """Values of each control seen in a list of controls dicts, in a fixed order per kind."""
    seen: dict[str, set] = {k: set() for k in KINDS}
    for c in controls_list:
        for k in KINDS:
            if c.get(k):
                seen[k].add(key_name(parse_key(c[k])) if k == "key" else str(c[k]))
    order = {k.name: i for i, k in enumerate(all_keys())}
    return {
        "key": sorted(seen["key"], key=order.__getitem__),
        "meter": sorted(seen["meter"], key=lambda m: (int(m.split("/")[1]), int(m.split("/")[0]))),
        "style": sorted(seen["style"]),
    }


@dataclass(frozen=True)
class ExtraVocab:
    """Ids of the sentinels and control tokens, appended after a tokenizer's own vocabulary."""

    offset: int  # the tokenizer's vocabulary size without extras: first extra id
    tokens: tuple[str, ...]
    # Layout of a fill-in-the-middle sequence: its order (melodylm.infill.FIM_ORDERS) and how many
    # bars after the gap its suffix holds. Tokenizers saved before these were choices were trained
    # prefix-suffix-middle with 4-bar suffixes.
    fim_order: str = "psm"
    fim_suffix_bars: int = 4

    @classmethod
    def build(cls, offset: int, known: dict[str, list[str]], sentinels: bool = True, cut: bool = False,
              fim_order: str = "psm", fim_suffix_bars: int = 4) -> "ExtraVocab":
        """Sentinels (when ``sentinels``), the window cut mark (when ``cut``), then control tokens
        of the ``known`` values."""
        names = list(SENTINELS) if sentinels else []
        if cut:
            names.append(CUT)
        for kind in KINDS:
            for value in known.get(kind, []):
                names.extend(control_tokens({kind: value}))
        return cls(int(offset), tuple(names), fim_order, int(fim_suffix_bars))

    def __post_init__(self) -> None:
        if len(set(self.tokens)) != len(self.tokens):
            raise DataError("extra tokens are not unique")
        if self.fim_order not in FIM_ORDERS:
            raise DataError(f"unknown fill-in-the-middle order {self.fim_order!r}: re-run `melodylm tokenize`")
        if int(self.fim_suffix_bars) < 1:
            raise DataError(f"fill-in-the-middle suffix of {self.fim_suffix_bars} bars: re-run `melodylm tokenize`")
        object.__setattr__(self, "_ids", {t: self.offset + i for i, t in enumerate(self.tokens)})

    @property
    def size(self) -> int:
        """Total id space: the tokenizer's vocabulary plus the extras (the model's vocab_size)."""
        return self.offset + len(self.tokens)

    def id(self, name: str) -> int:
        """Id of an extra token; KeyError if this vocabulary does not have it."""
        return self._ids[name]  # type: ignore[attr-defined]

    def has(self, name: str) -> bool:
        return name in self._ids  # type: ignore[attr-defined]

    def name(self, i: int) -> str:
        """Token name of an extra id."""
        if not self.offset <= i < self.size:
            raise KeyError(i)
        return self.tokens[i - self.offset]

    def is_extra(self, ids) -> np.ndarray:
        """Boolean mask of the ids that are extras (controls or sentinels)."""
        return np.asarray(ids, dtype=np.int64) >= self.offset

    def strip(self, ids) -> np.ndarray:
        """``ids`` without extras: what the tokenizer's own ``decode_ids`` may be given."""
        ids = np.asarray(ids, dtype=np.int64)
        return ids[ids < self.offset]

    def values(self, kind: str) -> list[str]:
        """Known values of one control kind, as users write them (``"D minor"``, ``"6/8"``)."""
        return [token_controls([t])[kind] for t in self.tokens if t.startswith(PREFIXES[kind])]

    @property
    def has_controls(self) -> bool:
        return any(t.startswith(tuple(PREFIXES.values())) for t in self.tokens)

    @property
    def has_infill(self) -> bool:
        return all(self.has(s) for s in SENTINELS)

    def prefix_ids(self, controls: dict) -> np.ndarray:
        """Ids of a controls dict's tokens (absent controls left out), to follow BOS.

        A training tune whose value is not in this vocabulary raises KeyError: the vocabulary is
        built from the same manifest, so that is a bug, not a user mistake.
        """
        return np.asarray([self.id(t) for t in control_tokens(controls)], dtype=np.int64)

    def to_dict(self) -> dict:
        d = {"offset": self.offset, "tokens": list(self.tokens)}
        # absent at the old values (psm, 4 bars), so older tokenizers keep their fingerprint
        if self.fim_order != "psm":
            d["fim_order"] = self.fim_order
        if self.fim_suffix_bars != 4:
            d["fim_suffix_bars"] = int(self.fim_suffix_bars)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ExtraVocab":
        try:
            return cls(int(d["offset"]), tuple(str(t) for t in d["tokens"]), str(d.get("fim_order", "psm")),
                       int(d.get("fim_suffix_bars", 4)))
        except (KeyError, TypeError, ValueError):
            raise DataError("the tokenizer's extra tokens are malformed: re-run `melodylm tokenize`") from None

    @classmethod
    def from_tokenizer_dict(cls, d: dict) -> "ExtraVocab | None":
        """Extras saved in a tokenizer dict under ``"extra"``; ``None`` for tokenizers without them."""
        extra = d.get("extra")
        return None if not extra else cls.from_dict(extra)


def resolve_request(requested: dict, vocab: ExtraVocab | None) -> dict:
    """Check ``--key/--meter/--style`` values against a model's known ones; return a controls dict.

    ``requested`` maps kinds to user text or ``None``. Unknown values, and any control asked of a
    model without controls, are a one-line UserError listing what is known.
    """
    asked = {k: v for k, v in requested.items() if v is not None}
    unknown_kinds = set(asked) - set(KINDS)
    if unknown_kinds:
        raise ValueError(f"unknown control kinds {sorted(unknown_kinds)}")
    if not asked:
        return {}
    if vocab is None or not vocab.has_controls:
        flags = " ".join(f"--{k}" for k in KINDS if k in asked)
        raise UserError(f"this model has no controls: drop {flags}, or train on a dataset tokenized with controls")
    out: dict = {}
    for kind in KINDS:
        if kind not in asked:
            continue
        text = asked[kind]
        value = {"key": lambda t: key_name(parse_key(t)), "meter": parse_meter,
                 "style": lambda t: check_style_name(t.strip())}[kind](text)
        if not vocab.has(control_tokens({kind: value})[0]):
            known = vocab.values(kind)
            listed = ", ".join(known) if known else "none (this model was trained without it)"
            raise UserError(f"--{kind} {text!r} is not known to this model; known: {listed}")
        out[kind] = value
    return out


def crop_keeping_head(seq, head_len: int, start: int, length: int) -> np.ndarray:
    """``length`` ids of a sequence for a training window that always sees its head.

    ``seq[:head_len]`` (BOS and controls) followed by ``seq[start:]``, cut to ``length``; ``start``
    is clamped to at least ``head_len``. Windows that start inside a tune would otherwise never see
    its controls: a median O'Neill tune is 330 REMI tokens, longer than a 256-token context.
    """
    seq = np.asarray(seq)
    start = max(int(start), int(head_len))
    return np.concatenate([seq[:head_len], seq[start:start + max(0, length - head_len)]])
