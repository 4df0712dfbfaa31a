"""The tokenizer: miditok base tokens plus optional sentencepiece subwords, saved as one JSON-able dict.

:class:`MelodyTokenizer` is what datasets and checkpoints carry. It rebuilds the miditok
tokenizer from a handful of melody-friendly settings (not miditok's own config dump, whose keys
are tuples), checks that the rebuilt vocabulary is the one it was saved with, and optionally maps
base-token sequences to sentencepiece subword ids (:mod:`melodylm.tokenizer.subwords`).
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from melodylm.controls import ExtraVocab, known_values
from melodylm.errors import DataError, UserError
import melodylm.tokenizer.miditok_adapter as miditok_adapter
import melodylm.tokenizer.subwords as subwords
from melodylm.tokenizer.subwords import CHAR_BASE, SUBWORDS

FORMAT = "melodylm.tokenizer"
FORMAT_VERSION = 1
# Single-vocabulary miditok tokenizations (CPWord, Octuple, MuMIDI use several vocabularies).
SCHEMES = ("REMI", "TSD", "MIDILike", "Structured")
SPECIAL = ("PAD", "BOS", "EOS")


@dataclass
class TokenizerSettings:
    """Melody-friendly miditok settings. Every field is saved in ``tokenizer.json``."""

    scheme: str = "REMI"
    pitch_range: tuple[int, int] = (21, 109)  # piano range, half-open like miditok's
    # positions per beat: 24 holds 32nd notes and triplets exactly; longer notes are coarser
    beat_res: tuple[tuple[int, int, int], ...] = ((0, 4, 24), (4, 12, 4))
    use_velocities: bool = False  # melodies rarely carry meaningful velocity
    num_velocities: int = 8
    use_rests: bool = True
    use_chords: bool = True
    # Without them REMI assumes 4/4 bars: 24 quarter notes in 3/4 encode to 6 Bar tokens instead
    # of 8 (miditok 3.1.0, a synthetic scale through encode_score).
    use_time_signatures: bool = True
    time_signatures: tuple[tuple[int, tuple[int, ...]], ...] = (
        (8, (3, 6, 9, 12)), (4, (1, 2, 3, 4, 5, 6)), (2, (1, 2, 3, 4)))

    @classmethod
    def from_dict(cls, d: dict) -> "TokenizerSettings":
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise DataError(f"tokenizer settings have unknown keys {sorted(unknown)}")
        d = dict(d)
        if "pitch_range" in d:
            d["pitch_range"] = tuple(d["pitch_range"])
        if "beat_res" in d:
            d["beat_res"] = tuple(tuple(x) for x in d["beat_res"])
        if "time_signatures" in d:
            d["time_signatures"] = tuple((int(k), tuple(v)) for k, v in d["time_signatures"])
        return cls(**d)

    def miditok_config(self):
        from miditok import TokenizerConfig

        if self.scheme == "Structured" and (self.use_rests or self.use_chords):
            # Structured has no rest or chord tokens; miditok would turn them off silently.
            pass
        return TokenizerConfig(
            pitch_range=tuple(self.pitch_range),
            beat_res={(a, b): r for a, b, r in self.beat_res},
            num_velocities=self.num_velocities if self.use_velocities else 1,
            use_velocities=self.use_velocities,
            use_rests=self.use_rests and self.scheme != "Structured",
            use_chords=self.use_chords and self.scheme != "Structured",
            use_time_signatures=self.use_time_signatures and self.scheme != "Structured",
            use_tempos=False,
            use_programs=False,
            # Without Program tokens every track decodes as program 0; miditok's MIDILike decoder
            # builds a pitch table per listed program (129 by default, ~15 ms per tune). The
            # vocabulary and the tokens do not depend on this list when use_programs is off.
            programs=[0],
            special_tokens=list(SPECIAL),
            time_signature_range={k: list(v) for k, v in self.time_signatures},
        )


def may_hold_chords(score, beat_res: int) -> bool:
    """Whether miditok's chord detection could find a chord in ``score``.

    miditok groups notes whose onsets lie within one grid step (1/``beat_res`` beat, after
    quantising onsets by at most half a step) and needs three of them for a chord. If every three
    consecutive onsets of every track span more than three steps of the coarsest beat in the
    score, no group can reach three notes. The beat is taken as the longest of a quarter note and
    the beats of all time signatures, so the test errs towards running the detection.
    """
    tpq = int(score.ticks_per_quarter)
    dens = [int(ts.denominator) for ts in score.time_signatures if ts.denominator > 0]
    beat = tpq * 4 / min(dens + [4])
    limit = 3 * beat / beat_res
    for track in score.tracks:
        if len(track.notes) < 3:
            continue
        onsets = np.sort(track.notes.numpy()["time"].astype(np.int64))
        if np.any(onsets[2:] - onsets[:-2] <= limit):
            return True
    return False


@dataclass
class MelodyTokenizer:
    """Base tokens from miditok, optionally compressed into sentencepiece subwords.

    ``extra`` (:class:`melodylm.controls.ExtraVocab`) holds the control tokens and
    fill-in-the-middle sentinels, appended after the tokenizer's own ids (base tokens or pieces,
    :attr:`core_vocab_size` of them); ``None`` for a tokenizer without them, such as every one
    saved before controls existed, which then behaves exactly as it always did.
    """

    settings: TokenizerSettings = field(default_factory=TokenizerSettings)
    subword: str = "none"
    sp_model: bytes | None = None  # serialized sentencepiece model when subword != "none"
    base_vocab: list[str] | None = None  # saved so a different miditok version is caught
    extra: ExtraVocab | None = None

    def __post_init__(self) -> None:
        import miditok

        if self.settings.scheme not in SCHEMES:
            raise UserError(f"unknown tokenization {self.settings.scheme!r}; choose one of {', '.join(SCHEMES)}")
        cls = getattr(miditok, self.settings.scheme)
        self.base = cls(self.settings.miditok_config())
        miditok_adapter.check(self.base)
        vocab = self.base.vocab
        inv = sorted(vocab, key=vocab.get)
        if self.base_vocab is not None and list(self.base_vocab) != inv:
            raise DataError("the tokenizer's vocabulary differs from the one it was saved with "
                            "(another miditok version?); re-run `melodylm tokenize`")
        self.base_vocab = inv
        self._base_ids = {t: i for i, t in enumerate(inv)}
        self.pad_id_base, self.bos_id_base, self.eos_id_base = (vocab[f"{s}_None"] for s in SPECIAL)
        self._bar_ids = np.array([i for t, i in vocab.items() if t.startswith("Bar_")], dtype=np.int64)
        self._note_ids = np.array(sorted(i for t, i in vocab.items() if t.startswith(("Pitch_", "NoteOn_"))),
                                  dtype=np.int64)
        self._sp = None
        if self.subword != "none":
            if self.sp_model is None:
                raise DataError(f"subword tokenizer {self.subword!r} has no sentencepiece model")
            self._load_sp(self.sp_model)
        if self.extra is not None and self.extra.offset != self.core_vocab_size:
            raise DataError(f"the tokenizer's extra tokens start at id {self.extra.offset}, not after its "
                            f"{self.core_vocab_size} own ids: re-run `melodylm tokenize`")

    # --- vocabulary ---------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """Size of the id space the model sees: subword pieces or base tokens, then the extras."""
        return self.extra.size if self.extra is not None else self.core_vocab_size

    @property
    def core_vocab_size(self) -> int:
        """Ids the tokenizer itself encodes (subword pieces, or base tokens), without extras."""
        return self._sp.get_piece_size() if self._sp is not None else len(self.base_vocab)

    @property
    def base_vocab_size(self) -> int:
        return len(self.base_vocab)

    @property
    def pad_id(self) -> int:
        return self._sp.piece_to_id(self._char(self.pad_id_base)) if self._sp is not None else self.pad_id_base

    @property
    def bos_id(self) -> int:
        return self._sp.piece_to_id(self._char(self.bos_id_base)) if self._sp is not None else self.bos_id_base

    @property
    def eos_id(self) -> int:
        return self._sp.piece_to_id(self._char(self.eos_id_base)) if self._sp is not None else self.eos_id_base

    # --- controls and fill-in-the-middle sentinels ---------------------------------------------
    def set_extra(self, controls_list, sentinels: bool = True, fim_order: str = "psm",
                  fim_suffix_bars: int = 4) -> ExtraVocab:
        """Give the tokenizer control tokens for the values seen in ``controls_list`` (dicts as
        :func:`melodylm.controls.derive_controls` makes them) and, with ``sentinels``, the
        fill-in-the-middle sentinels and their order. Call it after :meth:`train_subwords`: extras
        follow the pieces.
        """
        known = known_values(controls_list)
        self.extra = ExtraVocab.build(self.core_vocab_size, known, sentinels, cut=any(known.values()),
                                      fim_order=fim_order, fim_suffix_bars=fim_suffix_bars)
        return self.extra

    @property
    def has_controls(self) -> bool:
        return self.extra is not None and self.extra.has_controls

    @property
    def has_infill(self) -> bool:
        return self.extra is not None and self.extra.has_infill

    def strip(self, ids) -> np.ndarray:
        """Model ids without control tokens and sentinels (unchanged for a tokenizer without extras)."""
        ids = np.asarray(ids, dtype=np.int64)
        return ids if self.extra is None else self.extra.strip(ids)

    def prefix_ids(self, controls: dict) -> np.ndarray:
        """Ids of the control tokens of ``controls`` (absent ones left out), to follow BOS.

        Empty for an empty dict; a value this tokenizer does not know raises KeyError (check user
        requests with :func:`melodylm.controls.resolve_request` first).
        """
        if self.extra is None:
            if any(controls.get(k) for k in ("key", "meter", "style")):
                raise KeyError("this tokenizer has no control tokens")
            return np.zeros(0, dtype=np.int64)
        return self.extra.prefix_ids(controls)

    def head_ids(self, controls: dict | None = None) -> np.ndarray:
        """``BOS`` and the control tokens: how every sequence starts."""
        return np.concatenate([[self.bos_id], self.prefix_ids(controls or {})]).astype(np.int64)

    def head_length(self, ids) -> int:
        """Length of the head (BOS and the control tokens after it) of a sequence of model ids."""
        ids = np.asarray(ids, dtype=np.int64)
        if not len(ids) or ids[0] != self.bos_id:
            return 0
        if self.extra is None:
            return 1
        n = 1
        while n < len(ids) and ids[n] >= self.extra.offset and self.extra.name(int(ids[n])).startswith(
                ("Key_", "Meter_", "Style_")):
            n += 1
        return n

    def without_extra(self) -> "MelodyTokenizer":
        """The same tokenizer with no control tokens or sentinels (what a model trained before them has)."""
        return MelodyTokenizer(self.settings, self.subword, self.sp_model, list(self.base_vocab))

    def token_str(self, base_id: int) -> str:
        return self.base_vocab[base_id]

    def count_notes(self, base_ids) -> int:
        """Number of notes in a base-token sequence (Pitch / NoteOn tokens)."""
        return int(np.isin(np.asarray(base_ids), self._note_ids).sum())

    # --- MIDI <-> base tokens -------------------------------------------------------------------
    def encode_score(self, score) -> np.ndarray:
        """Base-token ids of a one-track melody score (no BOS/EOS)."""
        cfg = self.base.config
        # Chord detection is ~40% of miditok's encode time and finds nothing in a melody whose
        # onsets are spread out: skip it then (same tokens, checked against plain miditok in tests).
        skip_chords = cfg.use_chords and not may_hold_chords(score, miditok_adapter.first_beat_res(self.base))
        if skip_chords:
            cfg.use_chords = False
        try:
            seq = self.base.encode(score)
        finally:
            if skip_chords:
                cfg.use_chords = True
        if isinstance(seq, list):  # miditok returns one sequence per track
            seq = seq[0] if seq else None
        if seq is None:
            return np.zeros(0, dtype=np.int64)
        return np.asarray(seq.ids, dtype=np.int64)

    def decode_score(self, base_ids, tempo: float | None = None):
        """A symusic Score from base-token ids; specials are removed first."""
        from miditok import TokSequence
        import symusic

        base_ids = np.asarray(base_ids, dtype=np.int64)
        specials = [self.pad_id_base, self.bos_id_base, self.eos_id_base]
        ids = base_ids[~np.isin(base_ids, specials)].tolist()
        seq = TokSequence(ids=ids)
        self.base.complete_sequence(seq)
        score = self.base.decode([seq]) if not self.base.one_token_stream else self.base.decode(seq)
        if tempo is not None:
            score.tempos.clear()
            score.tempos.append(symusic.Tempo(0, float(tempo)))
        return score

    # --- subwords -----------------------------------------------------------------------------
    @property
    def _specials(self) -> tuple[int, int, int]:
        return (self.pad_id_base, self.bos_id_base, self.eos_id_base)

    def _char(self, base_id: int) -> str:
        return subwords.to_char(base_id)

    def _load_sp(self, model: bytes) -> None:
        self._sp, self._pieces = subwords.load(model)

    def train_subwords(self, sequences, kind: str, vocab_size: int, seed: int = 0) -> None:
        """Learn sentencepiece subwords over base-token sequences (the training split)."""
        model = subwords.train(sequences, kind, vocab_size, self.base_vocab_size, self._specials,
                               self._bar_ids, seed)
        self.subword, self.sp_model = kind, model
        self._load_sp(self.sp_model)

    def encode_ids(self, base_ids) -> np.ndarray:
        """Model ids of a base sequence: subword ids, or the base ids themselves."""
        base_ids = np.asarray(base_ids, dtype=np.int64)
        if self._sp is None:
            return base_ids
        return subwords.encode(self._sp, base_ids, self._bar_ids)

    def decode_ids(self, ids) -> np.ndarray:
        """Base ids of model ids (inverse of :meth:`encode_ids`); unknown pieces and extras are dropped."""
        ids = self.strip(ids)
        if self._sp is None:
            return ids
        return subwords.decode(self._pieces, ids)

    # --- serialization ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        import miditok

        d = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "settings": asdict(self.settings),
            "subword": self.subword,
            "sp_model": base64.b64encode(self.sp_model).decode() if self.sp_model else None,
            "base_vocab": self.base_vocab,
            "miditok_version": miditok.__version__ if hasattr(miditok, "__version__") else None,
        }
        if self.extra is not None:  # absent, not null, so older tokenizers keep their fingerprint
            d["extra"] = self.extra.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "MelodyTokenizer":
        if d.get("format") != FORMAT:
            raise DataError("not a melodylm tokenizer")
        if d.get("version") != FORMAT_VERSION:
            raise DataError(f"tokenizer format version {d.get('version')} is not supported "
                            f"(this melodylm reads version {FORMAT_VERSION})")
        sp = base64.b64decode(d["sp_model"]) if d.get("sp_model") else None
        return cls(TokenizerSettings.from_dict(d["settings"]), d.get("subword", "none"), sp, d.get("base_vocab"),
                   ExtraVocab.from_tokenizer_dict(d))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict()))

    @classmethod
    def load(cls, path: str | Path) -> "MelodyTokenizer":
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise DataError(f"{path} not found: is this a dataset folder made by `melodylm tokenize`?") from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise DataError(f"{path} is not valid JSON: re-run `melodylm tokenize`") from None
        return cls.from_dict(d)

    def fingerprint(self, extras: bool = True) -> str:
        """Hash of the tokenizer; with ``extras=False`` of the tokenizer without its extras, the
        same for a dataset tokenized with controls and a model trained on plain tokens of it."""
        d = self.to_dict()
        if not extras:
            d.pop("extra", None)
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


__all__ = ["CHAR_BASE", "FORMAT", "FORMAT_VERSION", "SCHEMES", "SPECIAL", "SUBWORDS", "MelodyTokenizer",
           "TokenizerSettings", "may_hold_chords"]
