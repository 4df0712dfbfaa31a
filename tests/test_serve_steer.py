"""The playground's steering through the test client: fill bars, key/meter/style, and models without them."""

from __future__ import annotations

from dataclasses import asdict

import pytest

pytest.importorskip("fastapi", reason="the playground needs its extra: pip install 'melodylm[serve]'")
pytest.importorskip("multipart", reason="the playground needs python-multipart (extra 'serve')")

import symusic  # noqa: E402
import torch  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from conftest import REPO, Part, scale, write_midi  # noqa: E402
from melodylm.checkpoint import save_checkpoint  # noqa: E402
from melodylm.infill import bar_starts  # noqa: E402
from melodylm.midi import score_notes  # noqa: E402
from melodylm.models import ModelConfig, build_model, size_preset  # noqa: E402
from melodylm.serve import create_app  # noqa: E402
from melodylm.tokenizer import MelodyTokenizer  # noqa: E402

SHIPPED = REPO / "checkpoints" / "pretrained" / "model.pt"
pytestmark = [pytest.mark.skipif(not SHIPPED.is_file(), reason="the shipped model checkpoints/pretrained/model.pt "
                                                                  "is missing"),
              pytest.mark.usefixtures("torch_one_thread")]
CONTROLS = [{"key": "C major", "meter": "4/4", "style": "reels"},
            {"key": "D minor", "meter": "6/8", "style": "jigs"}]


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    """A server offering the shipped model (trained with controls and infilling), ``steer``, a tiny
    untrained GPT whose tokenizer has control tokens and the fill sentinels, and ``plain``, one
    made as every checkpoint was before controls existed (no extra tokens)."""
    cwd = tmp_path_factory.mktemp("cwd")
    for name, controls in (("steer", CONTROLS), ("plain", None)):
        tok = MelodyTokenizer()
        if controls:
            tok.set_extra(controls)
        cfg = ModelConfig(**size_preset("gpt", "tiny"), vocab_size=tok.vocab_size, pad_id=tok.pad_id)
        torch.manual_seed(0)
        save_checkpoint(cwd / "checkpoints" / name / "best.pt",
                        {"model_config": asdict(cfg), "model": build_model(cfg).state_dict(),
                         "tokenizer": tok.to_dict(), "train_config": {"data_dir": None}})
    with TestClient(create_app(out_dir=cwd / "out", render=None, cwd=cwd)) as c:
        yield c


@pytest.fixture(scope="module")
def tune(tmp_path_factory) -> bytes:
    """Eight bars of 4/4: a rising line of quarter notes."""
    path = tmp_path_factory.mktemp("tune") / "tune.mid"
    return write_midi(path, [Part(scale(0, 32, low=60, step=1.0, dur=1.0), name="melody")]).read_bytes()


def post(client, data, prompt: bytes | None = None):
    files = {"prompt": ("tune.mid", prompt, "audio/midi")} if prompt is not None else None
    return client.post("/api/sample", data=data, files=files)


def rows(midi: bytes) -> set[tuple[int, int, int]]:
    return {tuple(r) for r in score_notes(symusic.Score.from_midi(midi)).tolist()}


def test_controls_list_the_known_values_or_say_why_not(client):
    steer = client.get("/api/controls", params={"checkpoint": "steer"}).json()
    assert steer == {"checkpoint": "steer", "fill": True, "reasons": {},
                     "values": {"key": ["C major", "D minor"], "meter": ["4/4", "6/8"], "style": ["jigs", "reels"]}}
    shipped = client.get("/api/controls").json()  # the default: the shipped model
    assert shipped["checkpoint"] == "pretrained" and shipped["fill"] is True and shipped["reasons"] == {}
    assert {"G major", "D major", "A minor", "E minor", "F major", "Bb major"} <= set(shipped["values"]["key"])
    assert {"6/8", "3/4"} <= set(shipped["values"]["meter"]) and shipped["values"]["style"] == ["essen", "oneills1850"]
    plain = client.get("/api/controls", params={"checkpoint": "plain"}).json()
    assert plain["checkpoint"] == "plain" and plain["fill"] is False
    assert plain["values"] == {"key": [], "meter": [], "style": []}
    assert set(plain["reasons"]) == {"key", "meter", "style", "fill"}
    assert plain["reasons"]["key"].startswith("this model has no controls")
    assert "no infill tokens" in plain["reasons"]["fill"]
    r = client.get("/api/controls", params={"checkpoint": "nope"})
    assert r.status_code == 400 and r.json()["error"].startswith("checkpoint 'nope': not one of")


def test_fill_keeps_the_notes_outside_the_bars(client, tune):
    r = post(client, {"checkpoint": "steer", "fill": "3:5", "n": "2", "seed": "3", "max_tokens": "300"}, tune)
    assert r.status_code == 200, r.text
    score = symusic.Score.from_midi(tune)
    tpq = score.ticks_per_quarter
    starts = bar_starts(score, 1 << 30) / tpq
    a, b1 = float(starts[2]), float(starts[5])  # bars 3..5 in quarter notes: 8 and 20
    outside = sorted([t / tpq, d / tpq, p] for t, d, p in rows(tune) if not a <= t / tpq < b1)
    assert len(outside) == 32 - 12
    for s in r.json()["samples"]:
        # The answer's notes are the sample's score (onset, duration, pitch in quarter notes). Its MIDI
        # file may read back otherwise where a new note of the same pitch overlaps a kept one.
        assert [n for n in s["notes"] if not a <= n[0] < b1] == outside
        assert all(a <= n[0] < b1 for n in s["notes"] if n not in outside)
        assert s["fill_beats"] == [a, b1] and s["continuation_start_beat"] == a and s["has_prompt"]
    assert "steer/best.pt" in r.json()["signature"]


def test_asked_controls_come_back_in_the_answer(client):
    r = post(client, {"checkpoint": "steer", "key": "d minor", "meter": " 6 / 8 ", "style": "jigs", "n": "1",
                      "max_bars": "1", "max_tokens": "64"})
    assert r.status_code == 200, r.text
    assert r.json()["samples"][0]["controls"]["asked"] == {"key": "D minor", "meter": "6/8", "style": "jigs"}
    r = post(client, {"checkpoint": "steer", "key": "d minor", "guidance": "0.5", "n": "1", "max_bars": "1",
                      "max_tokens": "64"})
    assert r.status_code == 200, r.text
    assert '"guidance": 0.5' in client.get(r.json()["samples"][0]["midi"].replace(".mid", ".json")).text


def test_key_redraws_stay_inside_the_request_token_bound(client):
    # 8 x 512 tokens is the whole 4,096 of a request: no room to draw a sample again
    r = post(client, {"checkpoint": "steer", "key": "D minor", "n": "8", "max_bars": "1", "max_tokens": "512"})
    assert r.status_code == 200, r.text
    assert [s["controls"]["tries"] for s in r.json()["samples"]] == [1] * 8
    # 2 x 64 tokens leaves room for every redraw the default allows (4 draws a sample)
    r = post(client, {"checkpoint": "steer", "key": "D minor", "n": "2", "max_bars": "1", "max_tokens": "64"})
    tries = [s["controls"]["tries"] for s in r.json()["samples"]]
    keys = [s["controls"]["key"] for s in r.json()["samples"]]
    assert all(t == 4 or k == "D minor" for t, k in zip(tries, keys)) and all(1 <= t <= 4 for t in tries)


STEER_ERRORS = [
    ({"checkpoint": "steer", "key": "E major"}, False,
     "--key 'E major' is not known to this model; known: C major, D minor"),
    ({"checkpoint": "steer", "style": "polkas"}, False,
     "--style 'polkas' is not known to this model; known: jigs, reels"),
    ({"checkpoint": "steer", "meter": "7/9"}, False, "--meter '7/9': write a time signature such as 6/8"),
    ({"checkpoint": "steer", "key": "D minor", "guidance": "-1"}, False, "--guidance -1.0: must be 0 (off)"),
    ({"checkpoint": "steer", "key": "D minor", "guidance": "lots"}, False, "guidance 'lots': must be a number"),
    ({"checkpoint": "plain", "key": "D minor"}, False, "this model has no controls: drop --key"),
    ({"checkpoint": "plain", "meter": "6/8", "style": "jigs"}, False, "this model has no controls: drop --meter --style"),
    ({"checkpoint": "plain", "fill": "2:3"}, True, "--fill: this model has no infill tokens"),
    ({"checkpoint": "steer", "fill": "3:5"}, False, "--fill needs --prompt MIDI"),
    ({"checkpoint": "steer", "fill": "3:50"}, True, "--fill 3:50: the tune has 8 bar(s), numbered 1..8"),
    ({"checkpoint": "steer", "fill": "5:3"}, True, "--fill '5:3': give bars as A:B with 1 <= A <= B"),
    ({"checkpoint": "steer", "fill": "3:5", "max_bars": "4"}, True, "--fill sets the bars to write: drop --max-bars"),
]


def _id(fields: dict) -> str:
    return "-".join(f"{k}={v}" for k, v in fields.items() if k != "checkpoint")


@pytest.mark.parametrize("fields, with_prompt, message", STEER_ERRORS, ids=[_id(f) for f, _, _ in STEER_ERRORS])
def test_steering_errors_are_those_of_sample(client, tune, fields, with_prompt, message):
    r = post(client, {"n": "1", **fields}, tune if with_prompt else None)
    assert r.status_code == 400, r.text
    assert r.json()["error"].startswith(message) and set(r.json()) == {"error"}
