"""The wheel and the sdist carry the embedded corpus and the shipped model (built for real)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "corpora" / "oneills1850"
MODEL = REPO / "checkpoints" / "pretrained" / "model.pt"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def source_copy(tmp_path_factory) -> Path:
    """The files git would ship (tracked and untracked, not ignored), so no stale build/ leaks in."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs a git checkout")
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    dst = tmp_path_factory.mktemp("src")
    for rel in filter(None, listed):
        if (REPO / rel).is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dst / rel)
    return dst


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_wheel_holds_corpus_and_model(source_copy, tmp_path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source_copy), "--no-deps", "-q", "-w", str(tmp_path)],
                   check=True, capture_output=True)
    (wheel,) = tmp_path.glob("melodylm-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        bundled = "melodylm/_bundled/"
        mids = {n.rsplit("/", 1)[1] for n in names if n.startswith(bundled + "corpora/oneills1850/") and n.endswith(".mid")}
        assert mids == {f.name for f in CORPUS.glob("*.mid")} and len(mids) > 1000
        some = sorted(CORPUS.glob("*.mid"))[7]
        assert z.read(f"{bundled}corpora/oneills1850/{some.name}") == some.read_bytes()
        assert _sha(z.read(f"{bundled}checkpoints/pretrained/model.pt")) == _sha(MODEL.read_bytes())
        for extra in ("corpora/README.md", "corpora/oneills1850/MANIFEST.tsv", "checkpoints/pretrained/README.md"):
            assert bundled + extra in names
        assert "melodylm/resources.py" in names and not any(n.startswith(("tests/", "bench/")) for n in names)
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    for extra in ("music21", "serve", "hf", "bench", "render"):
        assert f"Provides-Extra: {extra}" in meta


def test_sdist_holds_what_the_wheel_build_needs(source_copy, tmp_path) -> None:
    pytest.importorskip("build")
    subprocess.run([sys.executable, "-m", "build", "--sdist", "--no-isolation", "-o", str(tmp_path), str(source_copy)],
                   check=True, capture_output=True)
    (sdist,) = tmp_path.glob("melodylm-*.tar.gz")
    with tarfile.open(sdist) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    assert {"setup.py", "setup.cfg", "MANIFEST.in", "checkpoints/pretrained/model.pt", "corpora/README.md",
            "corpora/oneills1850/MANIFEST.tsv"} <= names
    assert sum(n.startswith("corpora/oneills1850/") and n.endswith(".mid") for n in names) == len(list(CORPUS.glob("*.mid")))
