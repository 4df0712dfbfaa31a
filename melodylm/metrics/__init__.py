"""Scores for generated melodies: nltk-exact BLEU, copy detection, melodic statistics.

Names are loaded on first use, so importing one submodule does not pull in the others
(``bleu`` needs nltk, ``music`` may need matplotlib).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "bleu": ("BleuReference", "CUSTOM_WEIGHTS", "bleu_signature", "compute_bleu", "corpus_bleu",
             "matched_lengths", "parse_weights", "random_like", "reference_fingerprint", "self_bleu",
             "sentence_bleu"),
    "copy": ("CopyIndex", "Match", "longest_match_summary"),
    "music": ("METRICS", "Note", "compare_sets", "kl_divergence", "melody_metrics", "overlapping_area",
              "plot_distributions", "set_metrics", "summary_table"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
