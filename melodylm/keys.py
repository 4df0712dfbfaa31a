"""Musical keys: names, key signatures, transposition, and key estimation from notes.

Estimation is the Krumhansl-Schmuckler algorithm with the Krumhansl-Kessler key profiles
(the probe-tone ratings of Krumhansl & Kessler 1982, "Tracing the dynamic changes in perceived
tonal organization in a spatial representation of musical keys", Psychological Review 89(4),
also given in Krumhansl 1990, "Cognitive Foundations of Musical Pitch"): the notes' pitch
classes are counted weighted by duration, and the key whose rotated profile correlates best
(Pearson) with that histogram wins. The same profile values are music21's
``analysis.discrete.KrumhanslKessler`` weights, which the tests check.

Spelling: a key is stored as a tonic pitch class and a mode; its key signature (``fifths``,
sharps positive, flats negative) picks the spelling of its name. When a key has two spellings the
default is the signature with fewer accidentals, and for the six-accidental tie F# major and
E♭ minor. A parsed name keeps the spelling it was given
("Gb major" keeps -6 flats) but compares equal to its enharmonic twin.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from melodylm.errors import UserError

MODES = ("major", "minor")

# Krumhansl & Kessler (1982) probe-tone ratings, index 0 = the tonic, then chromatic steps up.
KK_MAJOR = (6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88)
KK_MINOR = (6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17)
KRUMHANSL_KESSLER = (KK_MAJOR, KK_MINOR)  # the (major, minor) pair the estimator uses by default

# Tonic names along the circle of fifths, index ``fifths + 7`` (-7 = seven flats).
_MAJOR_NAMES = ("Cb", "Gb", "Db", "Ab", "Eb", "Bb", "F", "C", "G", "D", "A", "E", "B", "F#", "C#")
_MINOR_NAMES = ("Ab", "Eb", "Bb", "F", "C", "G", "D", "A", "E", "B", "F#", "C#", "G#", "D#", "A#")
_LETTER_PC = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_ACCIDENTAL = {"": 0, "#": 1, "♯": 1, "sharp": 1, "b": -1, "♭": -1, "flat": -1}
_MODE_WORDS = {"": "major", "major": "major", "maj": "major", "minor": "minor", "min": "minor", "m": "minor"}
_KEY_RE = re.compile(
    r"^\s*(?:key[_ ])?([a-g])[\s_-]*(#|♯|b|♭|sharp|flat)?[\s_-]*(major|maj|minor|min|m)?\s*$", re.IGNORECASE)
ACCEPTED_FORMS = '"D minor", "Dm", "D min", "Bb major", "B♭", "B-flat major", "F# minor", "F♯m", "D_minor"'


def _default_fifths(tonic: int, mode: str) -> int:
    """Key signature of a tonic and mode with the fewest accidentals (ties: F# major, E♭ minor)."""
    # A major key on pitch class p has (7 * p) mod 12 sharps, modulo 12; minor is its relative major.
    major_pc = tonic if mode == "major" else (tonic + 3) % 12
    f = (7 * major_pc) % 12
    if f > 6:
        f -= 12  # 7..11 sharps -> 5..1 flats; 6 stays: F# major
    if f == 6 and mode == "minor":
        f = -6  # D# minor (6 sharps) -> E♭ minor (6 flats)
    return f


@dataclass(frozen=True)
class Key:
    """A key: tonic pitch class (0 = C .. 11 = B) and mode. ``fifths`` only picks the spelling."""

    tonic: int
    mode: str
    fifths: int = field(default=None, compare=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if not 0 <= int(self.tonic) < 12:
            raise ValueError(f"tonic must be a pitch class 0..11, got {self.tonic!r}")
        object.__setattr__(self, "tonic", int(self.tonic))
        if self.fifths is None:
            object.__setattr__(self, "fifths", _default_fifths(self.tonic, self.mode))
        elif not -7 <= int(self.fifths) <= 7 or key_from_signature(int(self.fifths), self.mode).tonic != self.tonic:
            raise ValueError(f"{self.fifths} fifths is not a signature of tonic {self.tonic} {self.mode}")

    @property
    def tonic_name(self) -> str:
        """ASCII tonic name in this key's spelling, e.g. ``"Bb"`` or ``"F#"``."""
        names = _MAJOR_NAMES if self.mode == "major" else _MINOR_NAMES
        return names[self.fifths + 7]

    @property
    def name(self) -> str:
        """ASCII name, e.g. ``"D minor"``, ``"Bb major"`` (safe in file names, tokens, JSON)."""
        return f"{self.tonic_name} {self.mode}"

    @property
    def pretty(self) -> str:
        """Name with musical accidentals, e.g. ``"B♭ major"``."""
        t = self.tonic_name
        return f"{t[0]}{t[1:].replace('b', '♭').replace('#', '♯')} {self.mode}"

    def __str__(self) -> str:
        return self.name


def all_keys() -> list[Key]:
    """The 24 keys in a fixed order: C major .. B major, then C minor .. B minor."""
    return [Key(t, m) for m in MODES for t in range(12)]


def parse_key(text: str) -> Key:
    """A key from a name such as ``"D minor"``, ``"Bb major"``, ``"B♭"``, ``"F#m"`` or ``"D_minor"``.

    A bare tonic means major. Raises :class:`UserError` listing the accepted forms.
    """
    m = _KEY_RE.match(str(text))
    if m is None:
        raise UserError(f"unknown key {text!r}: write a tonic A-G, an optional accidental and a mode, "
                        f"e.g. {ACCEPTED_FORMS}")
    letter, acc, mode_word = m.group(1).upper(), (m.group(2) or "").lower(), (m.group(3) or "")
    # "m" alone means minor, but "M" or "maj" means major; "Bbm" reads as B-flat minor.
    mode = "major" if mode_word == "M" else _MODE_WORDS[mode_word.lower()]
    tonic = (_LETTER_PC[letter] + _ACCIDENTAL[acc]) % 12
    spelled = letter + {1: "#", -1: "b", 0: ""}[_ACCIDENTAL[acc]]
    names = _MAJOR_NAMES if mode == "major" else _MINOR_NAMES
    fifths = names.index(spelled) - 7 if spelled in names else None  # e.g. "Fb major" has no signature
    return Key(tonic, mode, fifths)


def key_from_signature(signature, mode: str | None = None) -> Key:
    """The key of a key signature.

    ``signature`` is a number of fifths (-7..7, sharps positive) with ``mode`` ``"major"`` or
    ``"minor"`` (default major), or an object with ``key`` (fifths) and ``tonality`` (0 major,
    1 minor) such as a symusic ``KeySignature``; ``mode`` then overrides its tonality.
    """
    if hasattr(signature, "key") and hasattr(signature, "tonality"):
        fifths = int(signature.key)
        if mode is None:
            mode = "minor" if int(signature.tonality) else "major"
    else:
        fifths = int(signature)
    mode = mode or "major"
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not -7 <= fifths <= 7:
        raise ValueError(f"a key signature has -7..7 fifths, got {fifths}")
    major_pc = (7 * fifths) % 12
    tonic = major_pc if mode == "major" else (major_pc - 3) % 12
    key = Key.__new__(Key)  # bypass the signature check in __post_init__, which calls this function
    object.__setattr__(key, "tonic", tonic)
    object.__setattr__(key, "mode", mode)
    object.__setattr__(key, "fifths", fifths)
    return key


def pitch_class_histogram(pitches, durations=None) -> np.ndarray:
    """Twelve duration-weighted pitch-class counts (plain counts when ``durations`` is None)."""
    pcs = np.asarray(pitches, dtype=np.int64) % 12
    w = np.ones(len(pcs)) if durations is None else np.asarray(durations, dtype=np.float64)
    if len(w) != len(pcs):
        raise ValueError(f"{len(pcs)} pitches but {len(w)} durations")
    return np.bincount(pcs, weights=w, minlength=12).astype(np.float64)


def key_correlations(histogram, profiles=KRUMHANSL_KESSLER) -> np.ndarray:
    """Pearson correlation of a pitch-class histogram with each of the 24 keys of :func:`all_keys`.

    ``profiles`` is a (major, minor) pair of twelve weights from the tonic up (default
    Krumhansl-Kessler), e.g. another profile of music21's ``analysis.discrete`` to compare judges.
    """
    h = np.asarray(histogram, dtype=np.float64)
    rows = []
    for prof in profiles:
        p = np.asarray(prof, dtype=np.float64)
        if p.shape != (12,):
            raise ValueError(f"a key profile has 12 weights, got {p.shape}")
        # The profile for tonic t gives pitch class pc the rating of degree (pc - t) mod 12.
        rows.extend(np.roll(p, t) for t in range(12))
    P = np.stack(rows)  # (24, 12)
    hc = h - h.mean()
    Pc = P - P.mean(axis=1, keepdims=True)
    denom = np.linalg.norm(Pc, axis=1) * np.linalg.norm(hc)
    if denom.min() == 0:
        return np.zeros(24)  # a flat histogram (e.g. one chromatic scale) favours no key
    return Pc @ hc / denom


def key_scores(pitches, durations=None, profiles=KRUMHANSL_KESSLER) -> np.ndarray:
    """Correlation of a set of notes with each of the 24 keys of :func:`all_keys` (duration-weighted;
    notes counted instead when every duration is zero; ``profiles`` as for :func:`key_correlations`).
    Raises ``ValueError`` without notes."""
    if len(pitches) == 0:
        raise ValueError("cannot estimate the key of no notes")
    h = pitch_class_histogram(pitches, durations)
    if h.sum() <= 0:  # all durations zero: fall back to counting notes
        h = pitch_class_histogram(pitches)
    return key_correlations(h, profiles)


def estimate_key(pitches, durations=None, profiles=KRUMHANSL_KESSLER) -> Key:
    """Most likely key of a set of notes (Krumhansl-Schmuckler with Krumhansl-Kessler profiles).

    ``pitches`` are MIDI numbers, ``durations`` the notes' lengths in any unit (ticks, beats);
    ``profiles`` replaces the Krumhansl-Kessler (major, minor) weights. Ties go to the first key in
    :func:`all_keys` order. Raises ``ValueError`` without notes.
    """
    return all_keys()[int(np.argmax(key_scores(pitches, durations, profiles)))]


def semitones_to(from_key: Key, to_key: Key) -> int:
    """Smallest transposition (-6..+5 semitones) moving ``from_key``'s tonic onto ``to_key``'s.

    Modes are not converted: D minor to G major moves the tonic D to G (+5), so the result is in
    G minor; pick a target of the same mode for a plain transposition.
    """
    return (to_key.tonic - from_key.tonic + 6) % 12 - 6
