"""Sentencepiece subwords over miditok base tokens.

Every base token id ``i`` is written as the character ``chr(CHAR_BASE + i)`` and each bar is one
sentencepiece sentence, so learned merges never cross a bar line. Only REMI has Bar tokens: with
TSD, MIDILike and Structured a whole tune is one sentence and pieces may span bars. Decoding
subword ids gives back exactly the base tokens. :class:`~melodylm.tokenizer.MelodyTokenizer`
holds the trained model; these functions are the sentencepiece side of it.
"""

from __future__ import annotations

import io
from collections.abc import Iterable

import numpy as np

from melodylm.errors import UserError

SUBWORDS = ("none", "bpe", "unigram")
CHAR_BASE = 0x4E00  # CJK ideographs: one script, no normalisation surprises, no whitespace


def to_char(base_id: int) -> str:
    """The character that stands for one base token."""
    return chr(CHAR_BASE + int(base_id))


def to_text(base_ids) -> str:
    """Base ids as one string of ``chr(CHAR_BASE + id)`` characters."""
    return (np.asarray(base_ids, dtype=np.int64) + CHAR_BASE).astype("<u4").tobytes().decode("utf-32-le")


def from_text(text: str) -> np.ndarray:
    """Base ids of a string made by :func:`to_text`."""
    return np.frombuffer(text.encode("utf-32-le"), dtype="<u4").astype(np.int64) - CHAR_BASE


def bar_cuts(base_ids: np.ndarray, bar_ids: np.ndarray) -> list[int]:
    """Indices where a new sentence starts: before every Bar token but the first one."""
    cuts = np.flatnonzero(np.isin(base_ids, bar_ids))
    return cuts[cuts > 0].tolist()


def split_bars(base_ids: np.ndarray, bar_ids: np.ndarray) -> list[np.ndarray]:
    """A base sequence cut before every Bar token (merges never cross a bar)."""
    return [p for p in np.split(base_ids, bar_cuts(base_ids, bar_ids)) if len(p)]


def load(model: bytes):
    """A sentencepiece processor of a serialized model, and the piece text of every id ("" for unknown)."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_proto=model)
    unk = sp.unk_id()
    # piece text per id, so decoding is a table look-up
    pieces = ["" if i == unk else sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    return sp, pieces


def train(sequences: Iterable, kind: str, vocab_size: int, n_base: int, specials: tuple[int, ...],
          bar_ids: np.ndarray, seed: int = 0) -> bytes:
    """Learn ``vocab_size`` sentencepiece pieces over base-token sequences; returns the serialized model.

    ``n_base``: base vocabulary size (every base token but ``specials`` is a piece of its own, even if
    the sequences lack it); ``specials``: PAD, BOS, EOS base ids, kept as single pieces.
    """
    import sentencepiece as spm

    if kind not in SUBWORDS[1:]:
        raise UserError(f"--subword must be one of {', '.join(SUBWORDS)}")
    if vocab_size <= n_base:
        raise UserError(f"--vocab-size {vocab_size} must exceed the {n_base} base tokens")

    def sentences():
        for i in range(n_base):
            if i not in specials:
                yield to_char(i)
        for seq in sequences:
            for bar in split_bars(np.asarray(seq), bar_ids):
                yield "".join(to_char(i) for i in bar)

    buf = io.BytesIO()
    spm.set_random_generator_seed(seed)  # a process-wide setting: TrainerSpec has no seed field
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=sentences(), model_writer=buf, model_type=kind,
            vocab_size=vocab_size, character_coverage=1.0, normalization_rule_name="identity",
            add_dummy_prefix=False, remove_extra_whitespaces=False, split_by_whitespace=False,
            split_by_unicode_script=False, max_sentencepiece_length=16, byte_fallback=False,
            user_defined_symbols=[to_char(i) for i in specials], unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1,
            hard_vocab_limit=False, num_threads=1,
            max_sentence_length=1 << 16, minloglevel=2, train_extremely_large_corpus=False,
        )
    except RuntimeError as e:
        raise UserError(f"sentencepiece could not learn {vocab_size} subwords: {e}") from None
    return buf.getvalue()


def encode(sp, base_ids: np.ndarray, bar_ids: np.ndarray) -> np.ndarray:
    """Subword ids of a base sequence, one sentencepiece call per bar."""
    text = to_text(base_ids)
    bounds = [0, *bar_cuts(base_ids, bar_ids), len(text)]
    out: list[int] = []
    for a, b in zip(bounds[:-1], bounds[1:]):  # one call per bar: faster than a batched call here
        if b > a:
            out.extend(sp.encode(text[a:b]))
    return np.asarray(out, dtype=np.int64)


def decode(pieces: list[str], ids: np.ndarray) -> np.ndarray:
    """Base ids of subword ids; ids outside the table and the unknown piece are dropped."""
    return from_text("".join([pieces[i] for i in ids.tolist() if 0 <= i < len(pieces)]))
