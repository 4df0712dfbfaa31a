"""Tokens of melodies: what the models read and write.

- :mod:`~melodylm.tokenizer.core`: :class:`MelodyTokenizer`, miditok base tokens built from
  :class:`TokenizerSettings`, serialized to a dict that names its format (checkpoints and
  datasets carry it);
- :mod:`~melodylm.tokenizer.subwords`: optional sentencepiece pieces over the base tokens;
- :mod:`~melodylm.tokenizer.grammar`: :class:`~melodylm.tokenizer.grammar.Grammar`, which model
  id may follow which (imports torch, so it is not imported here);
- :mod:`~melodylm.tokenizer.miditok_adapter`: the only reader of miditok's private members.

Data flow: MIDI -> :mod:`melodylm.midi` (one melody) -> ``encode_score`` (base ids) ->
``encode_ids`` (model ids) -> model -> ``decode_ids`` -> ``decode_score`` -> MIDI.
"""

from melodylm.tokenizer.core import (CHAR_BASE, FORMAT, FORMAT_VERSION, SCHEMES, SPECIAL, SUBWORDS, MelodyTokenizer,
                                     TokenizerSettings, may_hold_chords)

__all__ = ["CHAR_BASE", "FORMAT", "FORMAT_VERSION", "SCHEMES", "SPECIAL", "SUBWORDS", "MelodyTokenizer",
           "TokenizerSettings", "may_hold_chords"]
