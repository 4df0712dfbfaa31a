"""Reproducible BLEU numbers: the ``--weights`` flag, a reference fingerprint, a signature line.

Like sacrebleu, every printed score carries a signature that says how it was made (weights,
smoothing, unit, reference set, melodylm version), so two numbers can be checked for
comparability.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction as _Rational

from melodylm.metrics.bleu.compute import Token, is_nltk_method
from melodylm.metrics.bleu.engine import BleuReference

__all__ = ["CUSTOM_WEIGHTS", "bleu_signature", "parse_weights", "reference_fingerprint"]

# The weights used for melodies: nothing for single notes, most for 4- to 7-grams (1- to 9-grams).
CUSTOM_WEIGHTS: tuple[float, ...] = (0, 1 / 12, 1 / 12, 1 / 6, 1 / 6, 1 / 6, 1 / 6, 1 / 12, 1 / 12)

_NAMED_WEIGHTS = {"custom": CUSTOM_WEIGHTS, "bleu4": (0.25, 0.25, 0.25, 0.25)}


def parse_weights(spec: str) -> tuple[tuple[float, ...], str | None]:
    """Read a ``--weights`` value: ``custom``, ``bleu4``, ``bleuN``, ``uniform:N`` or a list.

    ``custom`` is (0, 1/12, 1/12, 1/6, 1/6, 1/6, 1/6, 1/12, 1/12) over 1- to 9-grams. A list is
    comma-separated numbers, fractions allowed (``0,1/12,1/12,1/6``). Weights must be
    non-negative with at least one positive; if they do not sum to 1 they are normalised.

    Returns:
        (weights, note): ``note`` says what was normalised, else None.

    Raises:
        UserError: a value that cannot be read (message names ``--weights``).
    """
    from melodylm.errors import UserError

    text = spec.strip().lower()
    if text in _NAMED_WEIGHTS:
        return _NAMED_WEIGHTS[text], None
    n_text = text[len("uniform:"):] if text.startswith("uniform:") else text[4:] if text.startswith("bleu") else None
    if n_text is not None:
        if not n_text.isdigit() or int(n_text) < 1:
            raise UserError(f"--weights {spec!r}: expected a positive order like uniform:4 or bleu4")
        n = int(n_text)
        return (1 / n,) * n, None
    try:
        parts = [_Rational(p.strip()) for p in text.split(",")]
    except (ValueError, ZeroDivisionError):
        raise UserError(f"--weights {spec!r}: expected custom, bleu4, uniform:N or numbers like "
                        f"0,1/12,1/12,1/6") from None
    if any(p < 0 for p in parts):
        raise UserError(f"--weights {spec!r}: weights must not be negative")
    total = sum(parts)
    if total == 0:
        raise UserError(f"--weights {spec!r}: at least one weight must be positive")
    if total == 1:
        return tuple(float(p) for p in parts), None
    normalised = tuple(float(p / total) for p in parts)
    note = f"--weights summed to {float(total):g}; normalised to {_format_weights(normalised)}"
    return normalised, note


def _format_weights(weights: Sequence[float]) -> str:
    """Weights as short fractions where exact (1/12), else repr."""
    out = []
    for w in weights:
        r = _Rational(w).limit_denominator(1000)
        out.append(str(r) if float(r) == float(w) else repr(float(w)))
    return ",".join(out)


def reference_fingerprint(references: Sequence[Sequence[Token]] | BleuReference) -> str:
    """Short content hash of a reference set: same tokens in the same order, same hash."""
    if isinstance(references, BleuReference):
        return references.fingerprint
    return BleuReference(references, max_n=1, precompute=False).fingerprint


def bleu_signature(weights: Sequence[float], smoothing: int | str | Callable | None, unit: str,
                   reference_fingerprint: str, n_refs: int) -> str:
    """A sacrebleu-like line that says how a score was made.

    Example: ``weights:0,1/12,1/12,1/6,1/6,1/6,1/6,1/12,1/12|smooth:0|unit:token|ref:3f9a...|
    nrefs:2000|melodylm:0.1.0``. ``smoothing`` is an nltk method number, a name, a
    ``SmoothingFunction().methodN`` or None (no smoothing, 0).
    """
    from melodylm import __version__

    if smoothing is None:
        smooth = "0"
    elif callable(smoothing):
        name = getattr(smoothing, "__name__", type(smoothing).__name__)
        is_nltk = is_nltk_method(smoothing, *(f"method{i}" for i in range(8)))
        smooth = name[len("method"):] if is_nltk else name
    else:
        smooth = str(smoothing)
    return (f"weights:{_format_weights(weights)}|smooth:{smooth}|unit:{unit}|"
            f"ref:{reference_fingerprint}|nrefs:{n_refs}|melodylm:{__version__}")
