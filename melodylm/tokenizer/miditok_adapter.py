"""The only place that reads miditok's private members.

miditok keeps the tables that turn Position, Duration and Rest tokens into ticks, and its parser
of time-signature tokens, behind underscore names. The grammar and the tokenizer need them to
follow time exactly as miditok's decoder does, so they read them through these functions, and
:func:`check` (run by the tests for every tokenization) fails with one clear message naming
what a new miditok version renamed or removed. Written against miditok 3.1.0.
"""

from __future__ import annotations

# Private members used, and the tokenizations that must have them (None: all of them).
PRIVATE_MEMBERS: dict[str, tuple[str, ...] | None] = {
    "_first_beat_res": None,  # positions per beat of the first beat range (chord detection grid)
    "_tpb_per_ts": None,  # ticks per beat for each time-signature denominator
    "_tpb_tokens_to_ticks": None,  # per ticks-per-beat: Duration token value -> ticks
    "_tpb_rests_to_ticks": None,  # per ticks-per-beat: Rest token value -> ticks
    "_parse_token_time_signature": None,  # "3/4" -> (3, 4)
    "_compute_ticks_per_pos": ("REMI",),  # ticks per Position step, for tokenizations with Positions
}


class MiditokChanged(RuntimeError):
    """The installed miditok no longer has a private member melodylm relies on."""


def check(base) -> None:
    """Raise :class:`MiditokChanged` if the miditok tokenizer ``base`` lacks a member we read."""
    import miditok

    scheme = type(base).__name__
    missing = [name for name, schemes in PRIVATE_MEMBERS.items()
               if (schemes is None or scheme in schemes) and not hasattr(base, name)]
    if missing:
        version = getattr(miditok, "__version__", None) or _installed_version()
        raise MiditokChanged(
            f"miditok {version} {scheme} has no {', '.join(missing)}: melodylm reads these private members "
            f"(written against miditok 3.1.0); install miditok==3.1.0 or update melodylm/tokenizer/miditok_adapter.py")


def _installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("miditok")
    except PackageNotFoundError:
        return "(unknown version)"


def first_beat_res(base) -> int:
    """Positions per beat in miditok's first beat range (the grid chord detection uses)."""
    return int(base._first_beat_res)


def ticks_per_beat_by_denominator(base) -> dict[int, int]:
    """Ticks per beat for every time-signature denominator the tokenizer knows."""
    return {int(d): int(t) for d, t in base._tpb_per_ts.items()}


def ticks_per_position(base, ticks_per_beat: int) -> int:
    """Ticks of one Position step at ``ticks_per_beat``."""
    return int(base._compute_ticks_per_pos(ticks_per_beat))


def duration_ticks(base, ticks_per_beat: int) -> dict[str, int]:
    """Duration token value (``beats.positions.resolution``) -> ticks, at ``ticks_per_beat``."""
    return base._tpb_tokens_to_ticks[ticks_per_beat]


def rest_ticks(base, ticks_per_beat: int) -> dict[str, int]:
    """Rest token value -> ticks, at ``ticks_per_beat``."""
    return base._tpb_rests_to_ticks[ticks_per_beat]


def parse_time_signature(base, value: str) -> tuple[int, int]:
    """(numerator, denominator) of a TimeSig token's value, such as ``"3/4"``."""
    num, den = base._parse_token_time_signature(value)
    return int(num), int(den)
