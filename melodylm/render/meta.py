"""What a sampled MIDI file keeps from its prompt: title, key signature, tempo and meter.

The tokenizer's decoder writes none of these: a prompt in two flats came back with no key
signature, and "The Enchanted Valley" came back named after its instrument.
"""

from __future__ import annotations


def copy_meta(prompt_score, sample_score, split_tick: int | None = None):
    """A copy of ``sample_score`` carrying the prompt's title, key signatures, tempos and meter.

    Times are scaled from the prompt's resolution to the sample's. The prompt's events replace
    the sample's before ``split_tick`` (sample ticks; default: where the prompt's notes end);
    the sample's own events from it on are kept, so a change the model made survives, also one
    on the bar line where the prompt ends (a model's 2/2 there was lost when it was not).
    Track names (the title a MIDI file carries) and programs are copied track by track.
    """
    import symusic

    out = sample_score.copy()
    scale = int(out.ticks_per_quarter) / int(prompt_score.ticks_per_quarter)
    if split_tick is None:
        ends = [n.end for tr in prompt_score.tracks for n in tr.notes]
        split_tick = round(max(ends, default=0) * scale)

    def merged(prompt_events, sample_events, make):
        mine = [make(round(int(e.time) * scale), e) for e in prompt_events if round(int(e.time) * scale) < split_tick]
        later = [e.copy() for e in sample_events if int(e.time) >= split_tick]
        return mine + later if mine else [e.copy() for e in sample_events]

    keys = merged(prompt_score.key_signatures, out.key_signatures,
                  lambda t, e: symusic.KeySignature(t, int(e.key), int(e.tonality)))
    tempos = merged(prompt_score.tempos, out.tempos, lambda t, e: symusic.Tempo(t, float(e.qpm)))
    meters = merged(prompt_score.time_signatures, out.time_signatures,
                    lambda t, e: symusic.TimeSignature(t, int(e.numerator), int(e.denominator)))
    out.key_signatures.clear()
    out.tempos.clear()
    out.time_signatures.clear()
    for lst, events in ((out.key_signatures, keys), (out.tempos, tempos), (out.time_signatures, meters)):
        for e in sorted(events, key=lambda e: int(e.time)):
            lst.append(e)
    for src, dst in zip(prompt_score.tracks, out.tracks):
        if src.name:
            dst.name = src.name
        dst.program = src.program
    return out
