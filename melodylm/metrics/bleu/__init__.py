"""BLEU with exactly nltk 3.10's semantics, fast on large reference sets, with baselines and signatures.

How a score is made::

    token sequences ──> engine (clipped n-gram counts, closest reference lengths, in numpy)
                    ──> compute_bleu (counts -> score, nltk's arithmetic and smoothing)
    baselines: self_bleu, random_like, matched_lengths   (what a score is compared with)
    signature: parse_weights (the --weights flag), bleu_signature (how a number was made)

Modules:

* :mod:`~melodylm.metrics.bleu.compute`: :func:`compute_bleu`, a pure function of sufficient
  statistics (per-order matches and totals, hypothesis and reference length), like sacrebleu's;
* :mod:`~melodylm.metrics.bleu.engine`: the counting engine and :class:`BleuReference`, one
  encoded reference set for many queries (corpus and per-sample scores);
* :mod:`~melodylm.metrics.bleu.nltk_compat`: :func:`corpus_bleu` and :func:`sentence_bleu`,
  drop-in replacements for nltk's (same numbers to 1e-12, same return types);
* :mod:`~melodylm.metrics.bleu.baselines`: :func:`self_bleu`, :func:`random_like`,
  :func:`matched_lengths`;
* :mod:`~melodylm.metrics.bleu.signature`: :data:`CUSTOM_WEIGHTS`, :func:`parse_weights`,
  :func:`reference_fingerprint`, :func:`bleu_signature`.

The parity tests (``tests/test_bleu.py``) compare against nltk to 1e-12 on tables of inputs.
"""

from melodylm.metrics.bleu.baselines import matched_lengths, random_like, self_bleu
from melodylm.metrics.bleu.compute import brevity_penalty, closest_ref_length, compute_bleu
from melodylm.metrics.bleu.engine import BleuReference
from melodylm.metrics.bleu.nltk_compat import corpus_bleu, sentence_bleu
from melodylm.metrics.bleu.signature import CUSTOM_WEIGHTS, bleu_signature, parse_weights, reference_fingerprint

__all__ = [
    "BleuReference",
    "CUSTOM_WEIGHTS",
    "bleu_signature",
    "brevity_penalty",
    "closest_ref_length",
    "compute_bleu",
    "corpus_bleu",
    "matched_lengths",
    "parse_weights",
    "random_like",
    "reference_fingerprint",
    "self_bleu",
    "sentence_bleu",
]
