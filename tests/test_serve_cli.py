"""``melodylm serve``: its help, a real start on a free port, and one-line errors (missing extra, port in use)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO, wait_for_http
from melodylm.cli import main

SHIPPED = REPO / "checkpoints" / "pretrained" / "model.pt"


def test_help_names_the_flags(capsys):
    with pytest.raises(SystemExit) as e:
        main(["serve", "-h"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--checkpoint", "--host", "--port", "--device", "127.0.0.1"):
        assert flag in out


def test_missing_web_stack_is_one_line_naming_the_extra(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "fastapi", None)  # import fastapi now raises ModuleNotFoundError
    assert main(["serve", "--port", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'fastapi'" in err[0] and "melodylm[serve]" in err[0], err


def test_bad_port_is_one_line(capsys):
    pytest.importorskip("uvicorn", reason="the playground needs its extra: pip install 'melodylm[serve]'")
    assert main(["serve", "--port", "70000"]) == 2
    assert "--port 70000" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(not SHIPPED.is_file(), reason="the shipped model checkpoints/pretrained/model.pt is missing")
def test_serve_on_a_free_port_answers_and_a_taken_port_is_refused(tmp_path):
    pytest.importorskip("uvicorn", reason="the playground needs its extra: pip install 'melodylm[serve]'")
    pytest.importorskip("fastapi", reason="the playground needs its extra: pip install 'melodylm[serve]'")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "melodylm", "serve", "--port", "0", "-o", str(tmp_path / "out")],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("melodylm playground: http://127.0.0.1:"), line
        base = line.split()[2].rstrip("/")
        port = int(base.rsplit(":", 1)[1])
        assert port > 0
        body = json.loads(wait_for_http(base + "/api/checkpoints", proc, 60, request_timeout=5))
        assert body["checkpoints"][0]["name"] == "pretrained"
        taken = subprocess.run([sys.executable, "-m", "melodylm", "serve", "--port", str(port)], cwd=tmp_path,
                               env=env, capture_output=True, text=True, timeout=120)
        err = taken.stderr.strip().splitlines()
        assert taken.returncode == 2 and len(err) == 1 and "in use" in err[0] and f"--port {port}" in err[0], err
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
