"""The playground under a real uvicorn server on 127.0.0.1 (``melodylm.serve.serve`` in a subprocess)."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the playground needs its extra: pip install 'melodylm[serve]'")
pytest.importorskip("uvicorn", reason="the playground needs uvicorn (extra 'serve')")

from conftest import REPO, wait_for_http  # noqa: E402

SHIPPED = REPO / "checkpoints" / "pretrained" / "model.pt"
pytestmark = pytest.mark.skipif(not SHIPPED.is_file(), reason="the shipped model checkpoints/pretrained/model.pt is missing")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served(out_dir: Path, timeout: float = 60):
    """Run ``serve(port=<free port>)`` in a subprocess; yield its base URL once it answers."""
    port = free_port()
    code = f"from melodylm.serve import serve; serve(port={port}, out_dir={str(out_dir)!r})"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=out_dir, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline()
        url = f"http://127.0.0.1:{port}/"
        assert line.startswith(f"melodylm playground: {url}"), line
        wait_for_http(url, proc, timeout)
        yield url.rstrip("/")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def raw_get(base: str, path: str) -> tuple[int, bytes]:
    """GET with the path sent as written: no client-side normalisation of ``..``."""
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.putrequest("GET", path, skip_accept_encoding=True)
    conn.endheaders()
    resp = conn.getresponse()
    status, body = resp.status, resp.read()
    conn.close()
    return status, body


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]] | None = None) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for k, v in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode())
    for k, (name, data) in (files or {}).items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"; filename="{name}"\r\n'
                     f"Content-Type: audio/midi\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def post_sample(base: str, fields: dict[str, str], files=None) -> tuple[int, dict]:
    body, ctype = multipart(fields, files)
    req = urllib.request.Request(base + "/api/sample", data=body, headers={"Content-Type": ctype})
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.mark.slow
def test_real_server_generates_renders_and_refuses_traversal(tmp_path):
    with served(tmp_path) as base:
        status, body = post_sample(base, {"n": "1", "max_bars": "2", "seed": "1", "tune": "0001-0050_0001.mid",
                                          "prompt_bars": "2"})
        assert status == 200, body
        s = body["samples"][0]
        assert urllib.request.urlopen(base + s["midi"]).read()[:4] == b"MThd"
        end = time.time() + 120
        while time.time() < end:
            files = json.loads(urllib.request.urlopen(base + body["status"]).read())["files"]
            if "pending" not in files.values():
                break
            time.sleep(0.1)
        if any(v.startswith("error") for v in files.values()):
            pytest.fail(f"rendering failed: {files}")
        assert urllib.request.urlopen(base + s["audio"]).read()[:4] == b"RIFF"
        assert b"<svg" in urllib.request.urlopen(base + s["score"]).read()[:2000]
        bid = body["batch"]
        for path in [f"/files/{bid}/../../setup.cfg", f"/files/{bid}/%2e%2e/%2e%2e/setup.cfg",
                     f"/files/{bid}/..%2F..%2Fsetup.cfg", "/static/../app.py", "/static/%2E%2E/app.py",
                     "/files/../../../etc/passwd", f"/files/{bid}/prompt/../sample_000.json/../../x"]:
            status, data = raw_get(base, path)
            assert status == 404, (path, status, data[:200])
        status, body = post_sample(base, {"n": "1"}, {"prompt": ("x.mid", b"not midi")})
        assert status == 400 and body["error"].startswith("--prompt ") and "not a MIDI file" in body["error"]
