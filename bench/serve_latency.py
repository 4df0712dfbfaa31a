"""Playground latency: from pressing Generate to playable audio, and where the time goes.

Posts what the page posts (4 samples of 8 bars from the shipped model, from nothing) to the app
through FastAPI's test client, then polls the batch as the page does. Prints, per round and as a
median: the answer (piano rolls can be drawn), the first and last WAV ready, the last SVG ready;
and the split of the answer into decoding (``generate``) and the rest; and each render job's time
per sample (audio, sheet music + MusicXML, piano-roll PNG each run in their own thread).

    python bench/serve_latency.py [--rounds 3] [--n 4] [--bars 8] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def one_round(client, fields: dict[str, str]) -> dict[str, float]:
    t0 = time.perf_counter()
    r = client.post("/api/sample", data=fields)
    r.raise_for_status()
    body = r.json()
    out = {"answer": time.perf_counter() - t0, "decode": body["decode_seconds"]}
    while True:
        files = client.get(body["status"]).json()["files"]
        now = time.perf_counter() - t0
        wav = [v for k, v in files.items() if k.endswith(".wav")]
        svg = [v for k, v in files.items() if k.endswith(".svg")]
        if "first_audio" not in out and "ready" in wav:
            out["first_audio"] = now
        if "all_audio" not in out and all(v != "pending" for v in wav):
            out["all_audio"] = now
        if "all_scores" not in out and all(v != "pending" for v in svg):
            out["all_scores"] = now
        if all(v != "pending" for v in files.values()):  # piano-roll PNGs too, before the next round decodes
            break
        time.sleep(0.01)
    secs = client.get(body["status"]).json()["seconds"]
    for ext in ("wav", "svg", "png"):  # each group's job time per sample (svg includes its musicxml)
        times = [v for k, v in secs.items() if k.endswith("." + ext)]
        out[f"render_{ext}"] = sum(times) / len(times) if times else float("nan")
    errors = {k: v for k, v in files.items() if v.startswith("error")}
    if errors:
        raise SystemExit(f"rendering failed: {errors}")
    out["batch"] = body["batch"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--bars", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads for decoding (the server's default: 1)")
    args = ap.parse_args()

    import torch
    from fastapi.testclient import TestClient

    from melodylm.serve import create_app

    with tempfile.TemporaryDirectory() as out_dir:
        app = create_app(out_dir=out_dir, torch_threads=args.threads)
        with TestClient(app) as client:
            app.state.playground.warm()  # the server does this at start-up; a first request would wait for it
            rows = []
            for k in range(args.rounds):
                fields = {"n": str(args.n), "max_bars": str(args.bars), "seed": str(args.seed + k)}
                rows.append(one_round(client, fields))
                r = rows[-1]
                print(f"round {k}: answer {r['answer']:.2f} s (decode {r['decode']:.2f} s), first audio "
                      f"{r['first_audio']:.2f} s, all audio {r['all_audio']:.2f} s, all scores {r['all_scores']:.2f} s")
    med = {k: statistics.median(r[k] for r in rows) for k in ("answer", "decode", "first_audio", "all_audio", "all_scores")}
    print(f"\nmedian of {args.rounds} rounds, {args.n} samples x {args.bars} bars, shipped model, "
          f"{args.threads} torch threads, {torch.get_num_threads()} used:")
    print(f"  Generate -> piano rolls (answer)  {med['answer']:.2f} s   (decoding {med['decode']:.2f} s, "
          f"the rest {med['answer'] - med['decode']:.2f} s)")
    print(f"  Generate -> first playable audio  {med['first_audio']:.2f} s")
    print(f"  Generate -> all audio             {med['all_audio']:.2f} s")
    print(f"  Generate -> all sheet music       {med['all_scores']:.2f} s")
    print("  render job per sample (one thread per kind, beside each other): " + ", ".join(
        f"{k} {statistics.median(r['render_' + k] for r in rows) * 1000:.0f} ms" for k in ("wav", "svg", "png")))


if __name__ == "__main__":
    main()
