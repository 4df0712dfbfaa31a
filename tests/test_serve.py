"""The playground's JSON API through FastAPI's test client: answers, errors, limits, determinism, traversal."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the playground needs its extra: pip install 'melodylm[serve]'")
pytest.importorskip("multipart", reason="the playground needs python-multipart (extra 'serve')")

from fastapi.testclient import TestClient  # noqa: E402

from conftest import REPO, Part, write_midi  # noqa: E402
from melodylm.serve import Limits, create_app  # noqa: E402
from melodylm.serve.jobs import FileStore, GenerationQueue, QueueFull, RenderJobs  # noqa: E402

SHIPPED = REPO / "checkpoints" / "pretrained" / "model.pt"
pytestmark = pytest.mark.skipif(not SHIPPED.is_file(), reason="the shipped model checkpoints/pretrained/model.pt is missing")
TUNE = "0001-0050_0001.mid"  # The Enchanted Valley
SMALL = {"n": "2", "max_bars": "1", "seed": "5"}  # a few tokens per sample: fast on a loaded CPU


def fake_render(midi_path, out_dir, formats=("wav",), program=0, split_tick=None, stem=None):
    """Writes one small file per format, named as render_file names them (tests the jobs, not the renderer)."""
    out = {}
    for fmt in formats:
        p = Path(out_dir) / f"{stem or Path(midi_path).stem}.{fmt}"
        p.write_bytes(f"{fmt} of {Path(midi_path).name} split {split_tick}".encode())
        out[fmt] = p
    return out


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    app = create_app(out_dir=tmp_path_factory.mktemp("served"), render=fake_render, cwd=tmp_path_factory.mktemp("cwd"),
                     limits=Limits(max_upload_bytes=20_000))
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def melody(tmp_path_factory):
    notes = [(i * 0.5, 0.5, p) for i, p in enumerate([62, 64, 66, 67, 69, 71, 73, 74] * 2)]
    return write_midi(tmp_path_factory.mktemp("midi") / "my tune.mid", [Part(notes, name="fiddle")],
                      time_signature=(2, 4)).read_bytes()


def post(client, data=None, prompt: bytes | None = None, name="tune.mid"):
    files = {"prompt": (name, prompt, "audio/midi")} if prompt is not None else None
    return client.post("/api/sample", data=data or {}, files=files)


def wait_ready(client, status_url: str, timeout: float = 30) -> dict:
    end = time.time() + timeout
    while time.time() < end:
        files = client.get(status_url).json()["files"]
        if "pending" not in files.values():
            return files
        time.sleep(0.05)
    raise AssertionError(f"renders still pending after {timeout} s: {files}")


def test_page_and_assets_are_served_by_the_package(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for asset in ("/static/app.js", "/static/style.css"):
        assert asset in page.text
        assert client.get(asset).status_code == 200
    for text in (page.text, client.get("/static/app.js").text, client.get("/static/style.css").text):
        # the only absolute URL in the assets is the SVG namespace name, which is never fetched
        assert text.replace("http://www.w3.org/2000/svg", "").count("http") == 0


def test_checkpoints_and_tunes(client):
    ck = client.get("/api/checkpoints").json()["checkpoints"]
    assert ck[0] == {"name": "pretrained", "file": "model.pt", "run": "pretrained", "default": True}
    tunes = client.get("/api/tunes", params={"q": "enchanted valley"}).json()["tunes"]
    assert tunes[0] == {"file": TUNE, "title": "The Enchanted Valley", "notes": 121}
    assert client.get("/api/tunes", params={"q": "no such tune zzz"}).json()["tunes"] == []


def test_runs_under_checkpoints_are_listed(tmp_path):
    import shutil

    (tmp_path / "checkpoints" / "myrun").mkdir(parents=True)
    shutil.copy(SHIPPED, tmp_path / "checkpoints" / "myrun" / "best.pt")
    with TestClient(create_app(out_dir=tmp_path / "out", render=None, cwd=tmp_path)) as c:
        names = [x["name"] for x in c.get("/api/checkpoints").json()["checkpoints"]]
        assert names == ["pretrained", "myrun"]
        r = post(c, {**SMALL, "n": "1", "checkpoint": "myrun"})
        assert r.status_code == 200, r.text
        assert "myrun/best.pt" in r.json()["signature"]


def test_sample_from_nothing_writes_midi_and_renders_in_background(client):
    r = post(client, SMALL)
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["samples"]) == 2 and body["signature"].startswith("melodylm ")
    s = body["samples"][0]
    assert set(s) >= {"midi", "audio", "score", "musicxml", "pianoroll", "notes"}
    assert client.get(s["midi"]).content[:4] == b"MThd"
    assert not s["has_prompt"] and s["notes"]
    files = wait_ready(client, body["status"])
    assert files["sample_000.wav"] == files["sample_001.svg"] == files["sample_001.png"] == "ready"
    assert client.get(s["audio"]).content == b"wav of sample_000.mid split None"
    assert client.get(s["audio"]).headers["content-type"] == "audio/wav"


def test_same_inputs_and_seed_give_the_same_midi_bytes(client, melody):
    data = {**SMALL, "prompt_bars": "2", "temperature": "1.1", "top_p": "0.9"}
    a, b = (post(client, data, melody, name="my tune.mid").json() for _ in range(2))
    c = post(client, {**data, "seed": "6"}, melody, name="my tune.mid").json()
    mids = [[client.get(s["midi"]).content for s in x["samples"]] for x in (a, b, c)]
    assert mids[0] == mids[1] and mids[0] != mids[2]
    assert a["signature"] == b["signature"] and "my_tune.mid bars:2" in a["signature"]
    assert a["samples"][0]["has_prompt"] and a["samples"][0]["continuation_start_beat"] == 4.0  # 2 bars of 2/4


def test_tune_of_the_corpus_is_a_prompt(client):
    r = post(client, {**SMALL, "tune": TUNE, "prompt_bars": "2"})
    assert r.status_code == 200, r.text
    assert f"prompt {TUNE} bars:2" in r.json()["signature"]
    files = wait_ready(client, r.json()["status"])
    assert files["sample_000.wav"] == "ready"
    split = client.get(r.json()["samples"][0]["audio"]).content.decode().split()[-1]
    assert int(split) > 0  # the renderer is told where the continuation starts


BAD_FIELDS = [
    ({"n": "0"}, "--n 0: must be at least 1"),
    ({"n": "two"}, "n 'two': must be an integer"),
    ({"temperature": "0"}, "--temperature 0.0: must be a positive number"),
    ({"temperature": "nan"}, "--temperature nan: must be a positive number"),
    ({"top_p": "1.5"}, "--top-p 1.5: must be in (0, 1]"),
    ({"max_bars": "-1"}, "--max-bars -1: must not be negative"),
    ({"prompt_bars": "2"}, "--prompt-bars/--prompt-notes need --prompt MIDI"),
    ({"tune": TUNE, "prompt_bars": "0"}, "--prompt-bars 0: must be at least 1"),
    ({"n": "9"}, "n 9: this server makes at most 8 samples per request"),
    ({"max_tokens": "5000"}, "max_tokens 5000: this server allows at most 1024 per sample"),
    ({"n": "8", "max_tokens": "1000"}, "n 8 x max_tokens 1000: more than this server's 4096 tokens per request"),
    ({"max_bars": "65"}, "max_bars 65: this server generates at most 64 bars"),
    ({"checkpoint": "../secret"}, "checkpoint '../secret': not one of pretrained"),
    ({"tune": "../../setup.cfg"}, "tune '../../setup.cfg': not a file of the embedded corpus"),
    ({"tune": "nope.mid"}, "tune 'nope.mid': not a file of the embedded corpus"),
    ({"colour": "red"}, "unknown field 'colour'"),
]


@pytest.mark.parametrize("fields, message", BAD_FIELDS, ids=[next(iter(f)) + "=" + next(iter(f.values())) for f, _ in BAD_FIELDS])
def test_bad_parameters_are_one_line_400(client, fields, message):
    r = post(client, fields)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err.startswith(message) and "\n" not in err


def test_prompt_and_tune_together_is_an_error(client, melody):
    r = post(client, {"tune": TUNE}, melody)
    assert r.status_code == 400 and r.json()["error"].startswith("prompt and tune:")


def _bad_uploads(tmp: Path) -> dict[str, tuple[bytes, str]]:
    good = write_midi(tmp / "g.mid", [Part([(0, 1, 60), (1, 1, 62)])]).read_bytes()
    drums = write_midi(tmp / "d.mid", [Part([(0, 1, 36), (1, 1, 38)], is_drum=True)]).read_bytes()
    silent = write_midi(tmp / "s.mid", [Part([], name="empty")]).read_bytes()
    return {
        "not-midi": (b"This is a text file, not music.\n", "not a MIDI file"),
        "empty": (b"", "empty file (0 bytes)"),
        "corrupt": (good[:30], "corrupt MIDI"),
        "drum-only": (drums, ""),
        "no-notes": (silent, ""),
    }


@pytest.mark.parametrize("kind", ["not-midi", "empty", "corrupt", "drum-only", "no-notes"])
def test_bad_uploads_are_one_line_400(client, tmp_path, kind):
    data, words = _bad_uploads(tmp_path)[kind]
    r = post(client, {"n": "1", "max_bars": "1"}, data, name=f"{kind}.mid")
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err.startswith("--prompt ") or err.startswith("prompt ")
    assert f"{kind}.mid" in err and words in err and "\n" not in err


def test_upload_over_the_limit_is_413(client):
    r = post(client, {"n": "1"}, b"MThd" + b"\0" * 200_000)
    assert r.status_code == 413 and r.json()["error"] == "request too large: uploads are limited to 20 kB"
    r = post(client, {"n": "1"}, b"MThd" + b"\0" * 20_001)  # over the file limit, within the form's room
    assert r.status_code == 413 and "prompt: 20 kB is over the upload limit of 20 kB" in r.json()["error"]


def test_only_files_the_server_wrote_are_served(client, melody):
    body = post(client, {"n": "1", "max_bars": "1"}, melody).json()
    bid = body["batch"]
    assert client.get(f"/files/{bid}/sample_000.mid").status_code == 200
    assert client.get(f"/files/{bid}/sample_000.json").json()["signature"] == body["signature"]
    for path in [f"/files/{bid}/prompt/my_tune.mid",  # the upload: written, but not by the server's renders
                 f"/files/{bid}/%2e%2e/%2e%2e/setup.cfg", f"/files/{bid}/..%2f..%2fsetup.cfg",
                 f"/files/{bid}/%252e%252e%252fsetup.cfg", f"/files/%2e%2e/{bid}/sample_000.mid",
                 f"/files/{bid}/sample_000.mid%00.txt", f"/files/{bid}/nosuch.wav", "/files/0000/sample_000.mid",
                 "/static/..%2fapp.py", "/static/%2e%2e%2f%2e%2e%2fsetup.cfg", "/static/__init__.py",
                 "/api/batches/..%2f..", "/etc/passwd"]:
        r = client.get(path)
        assert r.status_code == 404, path
        assert r.json() == {"error": "not found"}, path


def test_render_failure_is_shown_as_its_line(tmp_path):
    def broken(midi_path, out_dir, **kw):
        raise RuntimeError("the SoundFont\nis missing")

    with TestClient(create_app(out_dir=tmp_path, render=broken, cwd=tmp_path)) as c:
        body = post(c, {"n": "1", "max_bars": "1"}).json()
        files = wait_ready(c, body["status"])
        assert files["sample_000.wav"] == "error: the SoundFont is missing"
        assert c.get(body["samples"][0]["audio"]).status_code == 404


def test_queue_full_is_503_and_requests_queue(tmp_path):
    app = create_app(out_dir=tmp_path, render=None, cwd=tmp_path, limits=Limits(max_waiting=1))
    pg, release = app.state.playground, threading.Event()
    real = pg.sample

    def slow(req, batch):
        release.wait(30)
        return real(req, batch)

    pg.sample = slow
    results: list[int] = []
    with TestClient(app) as c:
        threads = [threading.Thread(target=lambda: results.append(post(c, {"n": "1", "max_bars": "1"}).status_code))
                   for _ in range(2)]
        for t in threads:
            t.start()
        end = time.time() + 10
        while app.state.queue.in_flight < 2 and time.time() < end:
            time.sleep(0.01)
        r = post(c, {"n": "1"})
        assert r.status_code == 503 and r.json()["error"].startswith("the server is busy")
        release.set()
        for t in threads:
            t.join(60)
        assert results == [200, 200]


def test_server_survives_a_hundred_bad_requests(client, tmp_path):
    uploads = list(_bad_uploads(tmp_path).values())
    for i in range(100):
        kind = i % 4
        if kind == 0:
            r = post(client, {"n": str(-i)})
        elif kind == 1:
            r = post(client, {"n": "1"}, uploads[i % len(uploads)][0], name=f"bad{i}.mid")
        elif kind == 2:
            r = client.post("/api/sample", content=b"--x\r\nnot a form", headers={"content-type": "multipart/form-data; boundary=x"})
        else:
            r = client.get(f"/files/{i}/..%2f{i}")
        assert 400 <= r.status_code < 500, (i, r.status_code, r.text)
        assert set(r.json()) == {"error"}
    assert post(client, {"n": "1", "max_bars": "1"}).status_code == 200


def test_generation_queue_counts_and_refuses():
    q, gate = GenerationQueue(max_waiting=0), threading.Event()
    fut = q.submit(gate.wait, 10)
    with pytest.raises(QueueFull):
        q.submit(lambda: None)
    gate.set()
    fut.result(10)
    time.sleep(0.05)
    assert q.in_flight == 0
    assert q.submit(lambda: 7).result(10) == 7
    q.shutdown()


def test_file_store_forgets_old_batches(tmp_path):
    store = FileStore(tmp_path, keep=2)
    first = store.new_batch()
    (first.folder / "a.mid").write_bytes(b"x")
    store.add(first, "a.mid", first.folder / "a.mid")
    assert store.lookup(first.id, "a.mid") == first.folder / "a.mid"
    store.new_batch(), store.new_batch()
    assert store.lookup(first.id, "a.mid") is None and not first.folder.exists()


def test_render_jobs_record_returned_paths(tmp_path):
    store = FileStore(tmp_path)
    batch = store.new_batch()
    midi = batch.folder / "x.mid"
    midi.write_bytes(b"MThd")
    jobs = RenderJobs(store, fake_render)
    assert jobs.submit(batch, midi, "x", ("wav", "svg")) == ["x.wav", "x.svg"]
    end = time.time() + 10
    while "pending" in batch.state.values() and time.time() < end:
        time.sleep(0.01)
    assert store.lookup(batch.id, "x.svg").read_bytes() == b"svg of x.mid split None"
    jobs.shutdown()

