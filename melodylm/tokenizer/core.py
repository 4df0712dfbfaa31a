"""miditok base tokens plus optional sentencepiece subwords, saved as one JSON-able dict.

:class:`MelodyTokenizer` is what datasets and checkpoints carry. It rebuilds the miditok
tokenizer from a handful of melody-friendly settings (not miditok's own config dump, whose keys
are tuples), checks that the rebuilt vocabulary is the one it was saved with, and optionally maps
base-token sequences to sentencepiece subword ids.

Subwords: every base token id ``i`` is written as the character ``chr(CHAR_BASE + i)`` and each
bar is one sentencepiece sentence, so learned merges never cross a bar line. Only REMI has Bar
tokens: with TSD, MIDILike and Structured a whole tune is one sentence and pieces may span bars.
Decoding subword ids gives back exactly the base tokens.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from melodylm.errors import DataError, UserError

FORMAT = "melodylm.tokenizer"
FORMAT_VERSION = 1
# Single-vocabulary miditok tokenizations (CPWord, Octuple, MuMIDI use several vocabularies).
SCHEMES = ("REMI", "TSD", "MIDILike", "Structured")
SUBWORDS = ("none", "bpe", "unigram")
SPECIAL = ("PAD", "BOS", "EOS")
CHAR_BASE = 0x4E00  # CJK ideographs: one script, no normalisation surprises, no whitespace


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
    use_time_signatures: bool = True  # without them REMI assumes 4/4 bars (field notes)
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
    """Base tokens from miditok, optionally compressed into sentencepiece subwords."""

    settings: TokenizerSettings = field(default_factory=TokenizerSettings)
    subword: str = "none"
    sp_model: bytes | None = None  # serialized sentencepiece model when subword != "none"
    base_vocab: list[str] | None = None  # saved so a different miditok version is caught

    def __post_init__(self) -> None:
        import miditok

        if self.settings.scheme not in SCHEMES:
            raise UserError(f"unknown tokenization {self.settings.scheme!r}; choose one of {', '.join(SCHEMES)}")
        cls = getattr(miditok, self.settings.scheme)
        self.base = cls(self.settings.miditok_config())
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

    # --- vocabulary ---------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """Size of the id space the model sees (subword pieces, or base tokens)."""
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
        skip_chords = cfg.use_chords and not may_hold_chords(score, self.base._first_beat_res)
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
    def _char(self, base_id: int) -> str:
        return chr(CHAR_BASE + int(base_id))

    def _bars(self, base_ids: np.ndarray) -> list[np.ndarray]:
        """Split a base sequence before every Bar token (merges never cross a bar)."""
        cuts = np.flatnonzero(np.isin(base_ids, self._bar_ids))
        cuts = cuts[cuts > 0]
        return [p for p in np.split(base_ids, cuts) if len(p)]

    def _load_sp(self, model: bytes) -> None:
        import sentencepiece as spm

        self._sp = spm.SentencePieceProcessor(model_proto=model)
        unk = self._sp.unk_id()
        # piece text per id, "" for the unknown piece, so decoding is a table look-up
        self._pieces = ["" if i == unk else self._sp.id_to_piece(i) for i in range(self._sp.get_piece_size())]

    def train_subwords(self, sequences, kind: str, vocab_size: int, seed: int = 0) -> None:
        """Learn sentencepiece subwords over base-token sequences (the training split)."""
        import io
        import sentencepiece as spm

        if kind not in SUBWORDS[1:]:
            raise UserError(f"--subword must be one of {', '.join(SUBWORDS)}")
        n_base = self.base_vocab_size
        if vocab_size <= n_base:
            raise UserError(f"--vocab-size {vocab_size} must exceed the {n_base} base tokens")

        def sentences():
            # Every base token once on its own, so each is a piece even if training data lacks it.
            for i in range(n_base):
                if i not in (self.pad_id_base, self.bos_id_base, self.eos_id_base):
                    yield self._char(i)
            for seq in sequences:
                for bar in self._bars(np.asarray(seq)):
                    yield "".join(self._char(i) for i in bar)

        specials = [self._char(i) for i in (self.pad_id_base, self.bos_id_base, self.eos_id_base)]
        buf = io.BytesIO()
        spm.set_random_generator_seed(seed)  # a process-wide setting: TrainerSpec has no seed field
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=sentences(), model_writer=buf, model_type=kind,
                vocab_size=vocab_size, character_coverage=1.0, normalization_rule_name="identity",
                add_dummy_prefix=False, remove_extra_whitespaces=False, split_by_whitespace=False,
                split_by_unicode_script=False, max_sentencepiece_length=16, byte_fallback=False,
                user_defined_symbols=specials, unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1,
                hard_vocab_limit=False, num_threads=1,
                max_sentence_length=1 << 16, minloglevel=2, train_extremely_large_corpus=False,
            )
        except RuntimeError as e:
            raise UserError(f"sentencepiece could not learn {vocab_size} subwords: {e}") from None
        self.subword, self.sp_model = kind, buf.getvalue()
        self._load_sp(self.sp_model)

    def _text(self, base_ids: np.ndarray) -> str:
        """The base ids as one string of ``chr(CHAR_BASE + id)`` characters."""
        return (np.asarray(base_ids, dtype=np.int64) + CHAR_BASE).astype("<u4").tobytes().decode("utf-32-le")

    def encode_ids(self, base_ids) -> np.ndarray:
        """Model ids of a base sequence: subword ids, or the base ids themselves."""
        base_ids = np.asarray(base_ids, dtype=np.int64)
        if self._sp is None:
            return base_ids
        text = self._text(base_ids)
        cuts = np.flatnonzero(np.isin(base_ids, self._bar_ids))
        bounds = [0, *cuts[cuts > 0].tolist(), len(text)]
        out: list[int] = []
        for a, b in zip(bounds[:-1], bounds[1:]):  # one call per bar: faster than a batched call here
            if b > a:
                out.extend(self._sp.encode(text[a:b]))
        return np.asarray(out, dtype=np.int64)

    def decode_ids(self, ids) -> np.ndarray:
        """Base ids of model ids (inverse of :meth:`encode_ids`); unknown pieces are dropped."""
        ids = np.asarray(ids, dtype=np.int64)
        if self._sp is None:
            return ids
        table = self._pieces
        chars = "".join([table[i] for i in ids.tolist() if 0 <= i < len(table)])
        return np.frombuffer(chars.encode("utf-32-le"), dtype="<u4").astype(np.int64) - CHAR_BASE

    # --- serialization ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        import miditok

        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "settings": asdict(self.settings),
            "subword": self.subword,
            "sp_model": base64.b64encode(self.sp_model).decode() if self.sp_model else None,
            "base_vocab": self.base_vocab,
            "miditok_version": miditok.__version__ if hasattr(miditok, "__version__") else None,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "MelodyTokenizer":
        if d.get("format") != FORMAT:
            raise DataError("not a melodylm tokenizer")
        if d.get("version") != FORMAT_VERSION:
            raise DataError(f"tokenizer format version {d.get('version')} is not supported "
                            f"(this melodylm reads version {FORMAT_VERSION})")
        sp = base64.b64decode(d["sp_model"]) if d.get("sp_model") else None
        return cls(TokenizerSettings.from_dict(d["settings"]), d.get("subword", "none"), sp, d.get("base_vocab"))

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

    def fingerprint(self) -> str:
        return hashlib.sha1(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]
