"""Keys: names and signatures, transposition, and the key estimator against music21."""

from __future__ import annotations

import numpy as np
import pytest

from melodylm.errors import UserError
from melodylm.keys import (KK_MAJOR, KK_MINOR, Key, all_keys, estimate_key, key_from_signature, parse_key,
                           semitones_to)

MAJOR = (0, 2, 4, 5, 7, 9, 11)
HARMONIC_MINOR = (0, 2, 3, 5, 7, 8, 11)


@pytest.mark.parametrize("text, tonic, mode, fifths", [
    ("D minor", 2, "minor", -1), ("Dm", 2, "minor", -1), ("d min", 2, "minor", -1), ("D_minor", 2, "minor", -1),
    ("Key_D_minor", 2, "minor", -1), ("Bb major", 10, "major", -2), ("B♭ major", 10, "major", -2),
    ("B♭", 10, "major", -2), ("B-flat major", 10, "major", -2), ("Bbm", 10, "minor", -5),
    ("F# minor", 6, "minor", 3), ("F♯m", 6, "minor", 3), ("G", 7, "major", 1), ("GM", 7, "major", 1),
    ("Gb major", 6, "major", -6), ("F# major", 6, "major", 6), ("C# major", 1, "major", 7),
    ("A# minor", 10, "minor", 7), ("Fb major", 4, "major", 4),  # no 8-flat signature: respelt as E
])
def test_parse_key(text, tonic, mode, fifths):
    k = parse_key(text)
    assert (k.tonic, k.mode, k.fifths) == (tonic, mode, fifths)


@pytest.mark.parametrize("text", ["H major", "D dorian", "", "Bbb", "minor", "D minor please"])
def test_parse_key_rejects_with_accepted_forms(text):
    with pytest.raises(UserError, match="Bb major"):
        parse_key(text)


def test_enharmonic_spellings_compare_equal():
    assert parse_key("Gb major") == parse_key("F# major")
    assert parse_key("Gb major").name == "Gb major" and parse_key("F# major").name == "F# major"
    assert hash(parse_key("Db")) == hash(parse_key("C#"))


def test_names_round_trip_and_default_spelling():
    for k in all_keys():
        assert parse_key(k.name) == k and parse_key(k.pretty) == k
        assert parse_key(k.name).fifths == k.fifths
        assert -6 <= k.fifths <= 6
        assert key_from_signature(k.fifths, k.mode) == k
    assert Key(10, "major").pretty == "B♭ major" and Key(3, "minor").name == "Eb minor"
    assert Key(6, "major").name == "F# major" and Key(1, "major").name == "Db major"


def test_key_from_signature_numbers_and_symusic():
    import symusic

    assert key_from_signature(0) == Key(0, "major")
    assert key_from_signature(0, "minor") == Key(9, "minor")
    assert key_from_signature(-2, "minor").name == "G minor"
    assert key_from_signature(3).name == "A major"
    assert key_from_signature(symusic.KeySignature(0, -2, 1)).name == "G minor"
    assert key_from_signature(symusic.KeySignature(0, 2, 0)).name == "D major"
    with pytest.raises(ValueError):
        key_from_signature(8)


@pytest.mark.parametrize("a, b, n", [
    ("C major", "D major", 2), ("C major", "B major", -1), ("C major", "F# major", -6), ("C major", "G major", -5),
    ("D minor", "A minor", -5), ("A minor", "E minor", -5), ("G major", "Bb major", 3), ("Bb major", "Bb major", 0),
    ("D minor", "G major", 5),
])
def test_semitones_to(a, b, n):
    assert semitones_to(parse_key(a), parse_key(b)) == n
    assert -6 <= n <= 5


def test_profiles_are_music21s_krumhansl_kessler():
    from music21.analysis.discrete import KrumhanslKessler

    kk = KrumhanslKessler()
    assert list(KK_MAJOR) == pytest.approx(kk.getWeights("major"))
    assert list(KK_MINOR) == pytest.approx(kk.getWeights("minor"))


@pytest.mark.parametrize("tonic", range(12))
@pytest.mark.parametrize("mode, steps", [("major", MAJOR), ("minor", HARMONIC_MINOR)])
def test_scales_land_in_their_key(tonic, mode, steps):
    # Scale up and down with a long tonic at each end, as a melody in that key would stress it.
    pitches = [60 + tonic + s for s in steps] + [72 + tonic] + [60 + tonic + s for s in reversed(steps)]
    durations = [2.0] + [1.0] * (len(pitches) - 2) + [2.0]
    assert estimate_key(pitches, durations) == Key(tonic, mode)


def test_durations_weigh_the_histogram():
    # C-E-G arpeggio held long, with quick A-minor passing notes: durations decide.
    pitches = [60, 64, 67, 69, 72, 69, 64, 57]
    assert estimate_key(pitches, [4, 4, 4, 0.25, 4, 0.25, 4, 0.25]) == Key(0, "major")
    assert estimate_key(pitches, [0.25, 1, 0.25, 4, 0.25, 4, 1, 4]) == Key(9, "minor")


def test_estimate_key_edge_cases():
    with pytest.raises(ValueError):
        estimate_key([], [])
    assert estimate_key([62, 66, 69], [0, 0, 0]) == estimate_key([62, 66, 69])  # zero lengths: counts
    assert isinstance(estimate_key(np.arange(60, 72)), Key)  # flat histogram still answers


def test_agrees_with_music21_on_corpus_tunes(corpus_files):
    """Our estimate against music21's ``analyze('krumhansl')`` on O'Neill tunes.

    Measured on 50 tunes taken at even steps through the corpus: 50/50 agree with music21, and
    44/50 match the key signature written in the file (both estimators miss the same 6). 20 tunes
    keep this test to a few seconds; the threshold leaves room for one disagreement.
    """
    import music21
    import symusic

    files = corpus_files[:: max(1, len(corpus_files) // 20)][:20]
    agree = file_agree = 0
    for f in files:
        notes = symusic.Score(str(f)).tracks[0].notes.numpy()
        ours = estimate_key(notes["pitch"], notes["duration"])
        m21 = music21.converter.parse(str(f)).analyze("krumhansl")
        agree += ours == Key(m21.tonic.pitchClass, m21.mode)
        file_agree += ours == key_from_signature(symusic.Score(str(f)).key_signatures[0])
    assert agree >= 19
    assert file_agree >= 15  # 88% on the 50-tune sample


def test_other_profiles_agree_with_music21():
    """``profiles=`` swaps the weights: with music21's Temperley-Kostka-Payne weights the estimate is
    music21's ``analyze('temperley')``. On 30 random 10-note melodies all 30 agree, and 17 of them
    get another key than Krumhansl-Kessler's, so the weights are really in use."""
    import music21
    from music21.analysis.discrete import TemperleyKostkaPayne

    tkp = TemperleyKostkaPayne()
    profiles = (tkp.getWeights("major"), tkp.getWeights("minor"))
    rng = np.random.default_rng(0)
    agree = differ_from_kk = 0
    for _ in range(30):
        pitches, durations = rng.integers(60, 72, size=10), rng.choice([0.5, 1.0, 1.5, 2.0], size=10)
        stream = music21.stream.Stream()
        for p, d in zip(pitches, durations):
            stream.append(music21.note.Note(int(p), quarterLength=float(d)))
        m21 = stream.analyze("temperley")
        ours = estimate_key(pitches, durations, profiles)
        agree += ours == Key(m21.tonic.pitchClass, m21.mode)
        differ_from_kk += ours != estimate_key(pitches, durations)
    assert agree == 30
    assert differ_from_kk >= 10
    with pytest.raises(ValueError, match="12 weights"):
        estimate_key([60, 64, 67], None, ((1.0,) * 7, (1.0,) * 7))
