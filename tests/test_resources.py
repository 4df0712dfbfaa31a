"""Package data and defaults: where the corpus and the model come from, info, extras, any folder."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from melodylm import resources
from melodylm.cli import main
from melodylm.extras import EXTRAS, MissingExtraError, available, require

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def installed(tmp_path, monkeypatch, corpus_files):
    """melodylm as a wheel installs it: package data only (a few tunes), no checkout nearby."""
    bundle = tmp_path / "site" / "_bundled"
    corpus = bundle / "corpora" / "oneills1850"
    corpus.mkdir(parents=True)
    for f in corpus_files[::40]:
        shutil.copy(f, corpus / f.name)
    model = bundle / "checkpoints" / "pretrained"
    model.mkdir(parents=True)
    shutil.copy(REPO / "checkpoints" / "pretrained" / "model.pt", model / "model.pt")
    monkeypatch.setattr(resources, "BUNDLED", bundle)
    monkeypatch.setattr(resources, "REPO_ROOT", tmp_path / "no-checkout")
    here = tmp_path / "empty"
    here.mkdir()
    monkeypatch.chdir(here)
    return bundle


def test_from_source_both_come_from_the_checkout() -> None:
    if (resources.BUNDLED).exists():
        pytest.skip("running from an installed wheel")
    loc = resources.locations()
    assert loc["corpus"] == {"path": str(REPO / "corpora" / "oneills1850"), "from": "repository checkout"}
    assert loc["model"] == {"path": str(REPO / "checkpoints" / "pretrained" / "model.pt"), "from": "repository checkout"}


def test_package_data_wins_and_missing_is_none(installed, monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(resources, "REPO_ROOT", REPO)  # a checkout nearby does not shadow package data
    assert resources.corpus_dir() == installed / "corpora" / "oneills1850"
    assert resources.locations()["model"]["from"] == "package data"
    monkeypatch.setattr(resources, "BUNDLED", tmp_path / "gone")
    monkeypatch.setattr(resources, "REPO_ROOT", tmp_path / "gone")
    assert resources.corpus_dir() is None and resources.shipped_model() is None
    assert resources.find_default_checkpoint() is None
    assert resources.locations()["corpus"] == {"path": None, "from": "missing"}


def test_newest_run_then_shipped_model(installed, tmp_path) -> None:
    import os

    shipped = installed / "checkpoints" / "pretrained" / "model.pt"
    assert resources.find_default_checkpoint() == shipped
    runs = Path("checkpoints")
    for name, age in (("a", 50), ("b", 10)):
        (runs / name).mkdir(parents=True)
        (runs / name / "best.pt").write_bytes(b"x")
        os.utime(runs / name / "best.pt", (1e9 - age, 1e9 - age))
    (runs / "pretrained").mkdir()
    (runs / "pretrained" / "model.pt").write_bytes(b"x")  # not a run: no best.pt
    assert resources.find_default_checkpoint().resolve() == (runs / "b" / "best.pt").resolve()
    assert resources.find_default_checkpoint(tmp_path) == shipped  # another folder, no runs


def test_card_commands_from_an_empty_folder(installed, capsys) -> None:
    """tokenize, train, sample and evaluate on the defaults, with nothing but package data."""
    assert main(["tokenize", "--split", "0.6,0.2,0.2", "--workers", "1", "--no-progress"]) == 0
    assert sorted(p.name for p in Path("data/default").iterdir())[:2] == ["COMPLETE", "manifest.jsonl"]
    manifest = Path("data/default/manifest.jsonl").read_text()
    assert str(installed) in manifest  # read from the package data
    assert main(["sample", "--max-tokens", "8", "--json", "--device", "cpu"]) == 0  # no run yet: shipped model
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["out_dir"].startswith("samples/pretrained-")
    assert main(["train", "--size", "tiny", "--max-steps", "2", "--eval-interval", "2", "--set", "batch_size=2",
                 "--set", "sample_tokens=0", "--device", "cpu", "--no-progress", "-o", "checkpoints/mine"]) == 0
    assert main(["sample", "--max-tokens", "8", "--json", "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["out_dir"].startswith("samples/mine-")
    assert main(["evaluate", "--baseline-order", "0", "--json", "--no-progress", "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert Path(result["checkpoint"]).resolve() == Path("checkpoints/mine/best.pt").resolve()


def test_evaluate_without_any_checkpoint_is_one_line(installed, monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setattr(resources, "BUNDLED", tmp_path / "gone")
    assert main(["evaluate", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "no checkpoint" in err


def test_tokenize_without_the_corpus_says_so(installed, monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setattr(resources, "BUNDLED", tmp_path / "gone")
    assert main(["tokenize", "--no-progress"]) == 2
    assert "embedded corpus" in capsys.readouterr().err


def test_info_and_version(capsys) -> None:
    from melodylm.info import format_info, info

    d = info()
    assert d["melodylm"] == __import__("melodylm").__version__
    assert set(d["extras"]) == set(EXTRAS) and d["device"]["auto"]
    assert d["versions"]["torch"] and d["corpus"]["path"] and d["model"]["path"]
    text = format_info(d)
    assert f"corpus: {d['corpus']['path']} ({d['corpus']['from']})" in text
    assert main(["info", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == d["model"]
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"melodylm {d['melodylm']}"


# --- extras -----------------------------------------------------------------------------------------
def test_require_names_the_extra(monkeypatch) -> None:
    assert require("json", "hf") is json
    monkeypatch.setitem(sys.modules, "verovio", None)  # `import verovio` raises ImportError
    with pytest.raises(MissingExtraError, match=r"^sheet music needs the Python package 'verovio', which is not "
                                                r"installed: run `pip install 'melodylm\[render\]'`$"):
        require("verovio", "render", "sheet music")
    monkeypatch.setitem(sys.modules, "tinysoundfont", None)  # installed apart, without pyaudio
    with pytest.raises(MissingExtraError, match=r"run `pip install --no-deps 'tinysoundfont>=0.3.7,<0.4'`$"):
        require("tinysoundfont", "render", "audio (wav)")
    with pytest.raises(ValueError, match="unknown extra"):
        require("json", "nope")


@pytest.mark.parametrize("module, run", [
    ("music21", lambda: __import__("melodylm.corpus", fromlist=["_music21"])._music21()),
    ("fastapi", lambda: __import__("melodylm.serve.app", fromlist=["_need_web"])._need_web()),
    ("verovio", lambda: __import__("melodylm.render.sheet", fromlist=["engrave"]).engrave("<score-partwise/>")),
])
def test_every_feature_names_its_extra_the_same_way(monkeypatch, module, run) -> None:
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(MissingExtraError, match=rf"needs the Python package '{module}', which is not installed: "
                                                r"run `pip install 'melodylm\[\w+\]'`$"):
        run()


def test_require_tells_a_broken_install_apart(tmp_path, monkeypatch) -> None:
    (tmp_path / "brokenmod.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(MissingExtraError, match="brokenmod is installed but cannot import 'no_such_dependency_xyz'"):
        require("brokenmod", "serve")


def test_extras_match_setup_cfg() -> None:
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    declared = set(cfg["options.extras_require"]) - {"test"}
    assert declared == set(EXTRAS)
    assert available("hf") in (True, False)
