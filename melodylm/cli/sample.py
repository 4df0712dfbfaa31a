"""``melodylm sample``: melodies from a checkpoint, from scratch or continuing a MIDI prompt."""

from __future__ import annotations

import sys

from melodylm.cli.common import add_command, print_json
from melodylm.controls import GUIDANCE, KEY_TRIES


def register_sample(sub):
    p = add_command(sub, "sample", "generate melodies from a checkpoint, from scratch or continuing a MIDI prompt",
                    "melodylm sample --prompt tune.mid --prompt-bars 4 --max-bars 8 --n 4 --seed 1 --plot "
                    "-o samples/mine")
    p.add_argument("--checkpoint", default=None, metavar="CKPT",
                   help="checkpoint file or run folder (default: the newest ./checkpoints/*/best.pt, else the "
                        "shipped model)")
    p.add_argument("--prompt", default=None, metavar="MIDI", help="MIDI file to continue (default: start from nothing)")
    p.add_argument("-o", "--out", default=None, metavar="OUT_DIR",
                   help="output folder (default: samples/<run>-<date>-<time>); must be empty unless --force")
    p.add_argument("--n", type=int, default=1, help="samples, generated in one batch (default 1)")
    p.add_argument("--max-tokens", type=int, default=1024, help="new tokens per sample at most (default 1024)")
    p.add_argument("--max-notes", type=int, default=None, help="new notes per sample at most")
    p.add_argument("--max-bars", type=int, default=None, help="new bars per sample at most (REMI)")
    p.add_argument("--temperature", type=float, default=1.0, help="softmax temperature, > 0 (default 1.0)")
    p.add_argument("--top-k", type=int, default=0, help="sample among the k likeliest tokens; 0 = all, 1 = greedy")
    p.add_argument("--top-p", type=float, default=1.0,
                   help="nucleus: the likeliest tokens holding this mass (default 1)")
    p.add_argument("--seed", type=int, default=0, help="random seed; same seed and flags give the same files on CPU")
    keep = p.add_mutually_exclusive_group()
    keep.add_argument("--keep-prompt", dest="keep_prompt", action="store_true", default=True,
                      help="write prompt and continuation (default)")
    keep.add_argument("--continuation-only", dest="keep_prompt", action="store_false",
                      help="write the continuation alone, from the bar where it starts")
    p.add_argument("--prompt-start-bar", type=int, default=None, metavar="N",
                   help="begin the prompt at bar N of its file (from 1; `melodylm inspect` shows the bars); "
                        "empty bars before the melody are skipped in any case")
    p.add_argument("--prompt-bars", type=int, default=None, metavar="N",
                   help="use N bars of the prompt (from where it begins)")
    p.add_argument("--prompt-notes", type=int, default=None, metavar="N",
                   help="use N notes of the prompt (from where it begins)")
    p.add_argument("--melody", default="auto",
                   help="how to pick the prompt's melody: auto | skyline | all | track:N | track:NAME "
                        "(`melodylm inspect` lists the tracks)")
    p.add_argument("--fill", default=None, metavar="A:B",
                   help="write bars A..B of the prompt anew (from 1, inclusive), seeing the bars before and after")
    p.add_argument("--key", default=None, help='ask for a key, e.g. "D minor" (a prompt is moved into it first)')
    p.add_argument("--meter", default=None, help="ask for a meter, e.g. 6/8")
    p.add_argument("--style", default=None, help="ask for a style the model was trained on, e.g. oneills1850")
    p.add_argument("--guidance", type=float, default=GUIDANCE, metavar="W",
                   help=f"how hard asked controls steer: classifier-free guidance weight, 0 = off "
                        f"(default {GUIDANCE:g})")
    p.add_argument("--key-tries", type=int, default=KEY_TRIES, metavar="N",
                   help=f"with --key: draw a melody again while its notes do not estimate as that key, up to N "
                        f"draws in all (default {KEY_TRIES}; 1 keeps the model's first draw)")
    p.add_argument("--no-constraint", action="store_true",
                   help="sample any token, even where the grammar forbids it (research; files may lose notes)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps (default auto)")
    p.add_argument("--plot", action="store_true", help="also write a piano-roll PNG per sample")
    p.add_argument("--audio", action="store_true", help="also write a WAV per sample (SoundFont synthesizer)")
    p.add_argument("--score", action="store_true", help="also write sheet music per sample: SVG and MusicXML")
    p.add_argument("--program", type=int, default=0, metavar="N",
                   help="General MIDI instrument of --audio, 0..127 (default 0, piano; 40 violin, 73 flute)")
    p.add_argument("--force", action="store_true", help="write into a non-empty OUT_DIR (replaces earlier samples)")
    p.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    return p


def run_sample(args) -> int:
    from melodylm.outputs import SampleJob, sample_to_folder

    flags = {k: v for k, v in vars(args).items() if k != "debug"}  # kept in every sidecar
    r = sample_to_folder(SampleJob(
        checkpoint=args.checkpoint, prompt=args.prompt, out_dir=args.out, n=args.n, max_tokens=args.max_tokens,
        max_notes=args.max_notes, max_bars=args.max_bars, temperature=args.temperature, top_k=args.top_k,
        top_p=args.top_p, seed=args.seed, constrain=not args.no_constraint, keep_prompt=args.keep_prompt,
        melody=args.melody, prompt_bars=args.prompt_bars, prompt_notes=args.prompt_notes,
        prompt_start_bar=args.prompt_start_bar, device=args.device,
        plot=args.plot, audio=args.audio, score=args.score, program=args.program,
        force=args.force, flags=flags, fill=args.fill, key=args.key, meter=args.meter,
        style=args.style, guidance=args.guidance, key_tries=args.key_tries))
    if r["dropped_pitches"]:
        d = r["dropped_pitches"]
        print(f"melodylm: {args.prompt}: {len(d)} prompt note(s) outside the model's pitch range were dropped "
              f"(pitches {', '.join(map(str, sorted(set(d))))})", file=sys.stderr)
    if r.get("prompt_trimmed_beats"):
        print(f"melodylm: {args.prompt}: the prompt begins at bar {r['prompt_start_bar']}, where its melody "
              f"starts ({r['prompt_trimmed_beats']:g} beats of silence left out)", file=sys.stderr)
    print(r["signature"], file=sys.stderr)
    for s in r["samples"]:
        print(f"wrote {s['file']}: {s['n_notes']} notes ({s['new_notes']} new, {s['new_tokens']} tokens, stopped at "
              f"{s['stop']}), {s['invalid_tokens']} invalid tokens", file=sys.stderr)
    if args.json:
        print_json(r)
    return 0
