"""A walk through the mistakes users make on the command line, and the safety of existing outputs.

Every mistake ends as one line on stderr that names the problem (and, where the message is ours to
word, what to do instead), exit code 2, no traceback, nothing written; ``--debug`` lets the
exception through so Python prints its traceback. No command replaces an existing dataset, run or
samples folder without ``--force``. Most cases call :func:`melodylm.cli.main` in this process;
two run the real ``python -m melodylm`` for the exit code and the absence of a traceback.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, Part, scale, write_midi
from melodylm.cli import main
from melodylm.errors import UserError

CORPORA = REPO / "corpora"
TRAIN = ["--size", "tiny", "--batch-size", "2", "--max-steps", "2", "--eval-interval", "2", "--device", "cpu",
         "--no-progress", "--set", "eval_batches=1", "--set", "sample_tokens=0"]


@pytest.fixture(scope="module")
def work(corpus_files, tmp_path_factory) -> Path:
    """A folder with a dozen tunes, two tiny datasets, a 2-step run and some bad inputs."""
    import torch

    from melodylm.dataset import TokenizeConfig, tokenize
    from melodylm.train import TrainConfig, train

    w = tmp_path_factory.mktemp("cli_errors")
    (w / "in").mkdir()
    step = max(1, len(corpus_files) // 12)
    for f in corpus_files[::step][:12]:
        shutil.copy(f, w / "in" / f.name)
    tokenize(TokenizeConfig(inputs=[str(w / "in")], out_dir=str(w / "data"), split=(0.7, 0.15, 0.15), workers=1),
             progress=False)
    tokenize(TokenizeConfig(inputs=sorted(str(f) for f in (w / "in").iterdir())[:4], out_dir=str(w / "tsd"),
                            scheme="TSD", split=(1.0, 0.0, 0.0), workers=1), progress=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: one thread is faster on shared cores
    try:
        train(TrainConfig(data_dir=str(w / "data"), out_dir=str(w / "run"), arch="gpt", size="tiny", max_steps=2,
                          eval_interval=2, eval_batches=1, batch_size=2, sample_tokens=0, device="cpu"),
              progress=False)
    finally:
        torch.set_num_threads(threads)
    shutil.copytree(w / "data", w / "partial")
    (w / "partial" / "COMPLETE").unlink()  # what a build killed before its last step would leave
    (w / "samples").mkdir()
    for f in sorted((w / "in").iterdir())[:2]:
        shutil.copy(f, w / "samples" / f.name)
    (w / "nomidi").mkdir()
    (w / "nomidi" / "readme.txt").write_text("no MIDI here\n")
    (w / "notmidi.mid").write_text("X:1\nT:an ABC tune named .mid\nK:G\nGAB|\n")
    (w / "empty.mid").write_bytes(b"")
    write_midi(w / "drums.mid", [Part(scale(n=8, low=36), name="Kit", is_drum=True)])
    return w


def snapshot(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


S = ["sample", "--checkpoint", "run", "--max-tokens", "8", "-o", "new_samples"]
B = ["bleu", "samples", "--reference", "data:train"]

# (argv, words naming the problem, words saying what to do; None where the message is worded in a
# module this file does not cover and says only what is wrong)
CASES = [
    # a path that does not exist
    (["tokenize", "nowhere", "-o", "new_data"], "input 'nowhere' does not exist", None),
    (["train", "nowhere", "-o", "new_run", *TRAIN], "dataset folder nowhere not found", "run `melodylm tokenize`"),
    (["evaluate", "nowhere.pt", "data"], "checkpoint nowhere.pt not found", None),
    (["sample", "--checkpoint", "nowhere", "-o", "new_samples"], "checkpoint nowhere not found", None),
    (["bleu", "nowhere", "--reference", "data:train"], "nowhere: no such file or folder", "expected MIDI files"),
    # a folder without MIDI files
    (["tokenize", "nomidi", "-o", "new_data"], "no MIDI files", "(.mid/.midi)"),
    # the wrong kind of folder (or file) where a dataset is expected
    (["train", str(CORPORA), "-o", "new_run", *TRAIN], "holds MIDI files, not a token dataset",
     f"run `melodylm tokenize {CORPORA} -o DATA_DIR`"),
    # (`evaluate run in` scores a folder of MIDI files with the checkpoint's tokenizer since #13: no longer an error)
    (B[:2] + ["--reference", "in:train"], "in holds MIDI files", "`melodylm tokenize in -o DATA_DIR`"),
    (["train", "nomidi", "-o", "new_run", *TRAIN], "nomidi is not a dataset folder", "`melodylm tokenize`"),
    (["train", "run", "-o", "new_run", *TRAIN], "run is a training run", "pass the folder made by `melodylm tokenize`"),
    (["train", "run/best.pt", "-o", "new_run", *TRAIN], "run/best.pt is a file, not a dataset folder",
     "pass the folder made by `melodylm tokenize`"),
    (["detokenize", "nomidi", "-o", "tune.mid"], "not a dataset folder", "`melodylm tokenize`"),
    # a build that never finished is not a dataset
    (["train", "partial", "-o", "new_run", *TRAIN], "partial is an incomplete dataset", "`melodylm tokenize --force`"),
    (["evaluate", "run", "partial"], "partial is an incomplete dataset", "`melodylm tokenize --force`"),
    # checkpoint and dataset that do not belong together, or swapped
    (["evaluate", "run", "tsd", "--split", "train", "--device", "cpu", "--no-progress"],
     "was trained with another tokenizer than dataset tsd", "evaluate on the dataset it was trained on"),
    (["evaluate", "data", "data"], "data holds no best.pt, last.pt or model.pt", None),
    (["sample", "--checkpoint", "data/tokenizer.json", "-o", "new_samples"], "not a checkpoint", None),
    # bad --weights for bleu
    (B + ["--weights", "abc"], "--weights 'abc'", "expected custom, bleu4, uniform:N or numbers"),
    (B + ["--weights", "uniform:0"], "--weights 'uniform:0'", "a positive order like uniform:4"),
    (B + ["--weights", "0.5,-0.5"], "--weights '0.5,-0.5'", "must not be negative"),
    (B + ["--weights", ""], "--weights ''", "expected custom, bleu4"),
    # flags out of range
    (["tokenize", "in", "-o", "new_data", "--split", "0.5,0.5,0.5"], "--split", "fractions that sum to 1"),
    (["tokenize", "in", "-o", "new_data", "--split", "a,b,c"], "--split 'a,b,c'", "3 comma-separated numbers"),
    (["tokenize", "in", "-o", "new_data", "--transpose", "5:1"], "--transpose", "LOW <= HIGH"),
    (["tokenize", "in", "-o", "new_data", "--transpose", "up"], "--transpose 'up'", "expected LOW:HIGH"),
    (["tokenize", "in", "-o", "new_data", "--workers", "-1"], "--workers", "must be >= 0"),
    (["tokenize", "in", "-o", "new_data", "--max-notes", "0"], "--max-notes", "must be positive"),
    (["tokenize", "in", "-o", "new_data", "--max-file-mb", "0"], "--max-file-mb", "must be positive"),
    (S + ["--temperature", "0"], "--temperature 0.0", "must be a positive number"),
    (S + ["--top-p", "2"], "--top-p 2.0", "must be in (0, 1]"),
    (S + ["--n", "0"], "--n 0", "must be at least 1"),
    (["train", "data", "-o", "new_run", *TRAIN, "--lr", "-1"], "--lr", "must be a positive number"),
    (["train", "data", "-o", "new_run", *TRAIN, "--max-steps", "0"], "--max-steps", "must be >= 1"),
    (["evaluate", "run", "data", "--baseline-order", "1"], "--baseline-order", "0 (none) or >= 2"),
    # a prompt that cannot be read, or holds no melody
    (S + ["--prompt", "notmidi.mid"], "--prompt notmidi.mid: not a MIDI file", None),
    (S + ["--prompt", "empty.mid"], "--prompt empty.mid: empty file (0 bytes)", None),
    (S + ["--prompt", "nowhere.mid"], "--prompt nowhere.mid: cannot read file", None),
    (S + ["--prompt", "nomidi"], "--prompt nomidi: cannot read file: it is a folder", None),
    (S + ["--prompt", "drums.mid"], "--prompt drums.mid: drums only", None),
    # what argparse catches
    (["frobnicate"], "invalid choice: 'frobnicate'", "(see `melodylm -h`)"),
    (["--frobnicate"], "unrecognized arguments: --frobnicate", "(see `melodylm -h`)"),
    (["tokenize", "in", "--frob"], "unrecognized arguments: --frob", "(see `melodylm tokenize -h`)"),
    (["train", "data", "--frob", "1", *TRAIN], "unrecognized arguments: --frob 1", "(see `melodylm train -h`)"),
    (["corpus", "import", "in", "-o", "new_corpus", "--frob"], "unrecognized arguments: --frob",
     "(see `melodylm corpus import -h`)"),
    (["tokenize", "in", "--workers", "two"], "argument --workers: invalid int value: 'two'",
     "(see `melodylm tokenize -h`)"),
    (["sample", "--n"], "argument --n: expected one argument", "(see `melodylm sample -h`)"),
    # an output path that is a file
    (["train", "data", "-o", "data/train.bin", *TRAIN], "data/train.bin: Not a directory", "check the path"),
    (["tokenize", "in", "-o", "notmidi.mid"], "notmidi.mid exists and is not a folder", None),
]


def case_id(case) -> str:
    argv = list(case[0])
    for prefix in (S, B):  # shared heads would make ids that differ only past the cut
        if argv[:len(prefix)] == prefix:
            argv = [prefix[0], *argv[len(prefix):]]
    for i in range(len(argv)):
        if argv[i:i + len(TRAIN)] == TRAIN:
            del argv[i:i + len(TRAIN)]
            break
    return " ".join(a if len(a) < 30 else "..." + a[-12:] for a in argv)[:60]


@pytest.mark.parametrize("argv, problem, fix", CASES, ids=[case_id(c) for c in CASES])
def test_a_mistake_is_one_line_exit_2_and_debug_raises(work, capsys, monkeypatch, argv, problem, fix):
    monkeypatch.chdir(work)
    before = snapshot(work)
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith("melodylm: error: "), err
    assert problem in err and (fix is None or fix in err), err
    assert "Traceback" not in err
    assert snapshot(work) == before  # a failed command leaves nothing behind
    with pytest.raises((UserError, OSError)):
        main([*argv, "--debug"])
    capsys.readouterr()
    assert snapshot(work) == before


@pytest.mark.slow
def test_real_process_exit_codes_and_tracebacks(work):
    """The same mistake in a real process: exit 2 and one line; with --debug, Python's traceback."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    argv = [sys.executable, "-m", "melodylm", "train", str(CORPORA), "-o", "new_run", "--no-progress"]
    procs = [subprocess.Popen(argv + extra, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for extra in ([], ["--debug"])]
    (out, err), (dout, derr) = (p.communicate(timeout=300) for p in procs)
    plain, debug = procs
    assert plain.returncode == 2 and out == "" and "Traceback" not in err
    assert err.splitlines() == [f"melodylm: error: {CORPORA} holds MIDI files, not a token dataset: run "
                                f"`melodylm tokenize {CORPORA} -o DATA_DIR` and pass DATA_DIR instead"]
    assert debug.returncode == 1 and dout == ""
    assert derr.startswith("Traceback (most recent call last):")
    assert derr.strip().splitlines()[-1].startswith("melodylm.errors.DataError: ")
    assert not (work / "new_run").exists()


def test_no_command_prints_help_and_exits_0(capsys):
    assert main([]) == 0
    assert "tokenize" in capsys.readouterr().out


# --- existing outputs -----------------------------------------------------------------------------------
def folder_bytes(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_no_command_replaces_an_existing_folder_without_force(work, tmp_path, capsys):
    ds, run, smp = tmp_path / "ds", tmp_path / "run", tmp_path / "smp"
    shutil.copytree(work / "data", ds)
    shutil.copytree(work / "run", run)
    shutil.copytree(work / "samples", smp)
    before = {d: folder_bytes(d) for d in (ds, run, smp)}
    sample = ["sample", "--checkpoint", str(work / "run"), "--max-tokens", "8"]
    refused = [
        (["tokenize", str(work / "in"), "-o", str(ds), "--workers", "1", "--no-progress"], "pass --force"),
        (["train", str(work / "data"), "-o", str(ds), *TRAIN], "--force to start over"),
        (["train", str(work / "data"), "-o", str(run), *TRAIN], "pass --resume to continue it or --force"),
        ([*sample, "-o", str(smp)], "(use --force)"),
        ([*sample, "-o", str(ds)], "(use --force)"),
        (["corpus", "import", str(work / "in"), "-o", str(ds), "--no-progress"], "pass --force"),
        (["demo", "-o", str(ds), "--no-progress"], "pass --force"),
        (["demo", "-o", str(run), "--no-progress"], "pass --force"),
    ]
    for argv, fix in refused:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and fix in err, (argv, err)
    assert {d: folder_bytes(d) for d in (ds, run, smp)} == before

    # --force does replace: a new dataset, new samples beside the files that were not samples
    assert main(["tokenize", str(work / "samples"), "-o", str(ds), "--workers", "1", "--no-progress", "--force",
                 "--split", "1,0,0"]) == 0
    assert (ds / "COMPLETE").is_file() and len((ds / "manifest.jsonl").read_text().splitlines()) == 2
    assert main([*sample, "-o", str(smp), "--force"]) == 0
    assert sorted(folder_bytes(smp)) == sorted([*before[smp], "sample_000.mid", "sample_000.json"])
    capsys.readouterr()


def test_a_failed_tokenize_leaves_the_old_dataset_and_no_partial_folder(work, tmp_path, capsys):
    ds = tmp_path / "ds"
    shutil.copytree(work / "data", ds)
    before = folder_bytes(ds)
    # nothing usable: the build fails after reading every file, with --force given
    assert main(["tokenize", str(work / "nomidi"), str(work / "notmidi.mid"), str(work / "empty.mid"), "-o", str(ds),
                 "--force", "--workers", "1", "--no-progress"]) == 2
    assert "no usable tune among 2 file(s)" in capsys.readouterr().err
    assert folder_bytes(ds) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


# --- the command table and the help -----------------------------------------------------------------------
def test_every_command_of_the_table_is_in_the_help_and_runs_its_module(capsys):
    from melodylm.cli import COMMANDS

    assert main([]) == 0
    out = capsys.readouterr().out
    for name, command in COMMANDS.items():
        assert name in out
        assert command.module.startswith("melodylm.cli.")
        assert command.register.__module__ == command.run.__module__ == command.module


def test_train_help_lists_what_resume_honours_and_init(capsys):
    with pytest.raises(SystemExit):
        main(["train", "-h"])
    out = capsys.readouterr().out
    assert "--init CKPT" in out
    assert "--resume continues the run in -o exactly: it honours --max-steps" in " ".join(out.split())


def test_the_library_does_not_import_the_command_line():
    """demo and the output helpers call the library; nothing under the CLI imports back into it."""
    code = ("import sys, melodylm.demo, melodylm.outputs, melodylm.dataset, melodylm.corpus; "
            "assert not [m for m in sys.modules if m.startswith('melodylm.cli')], 'cli imported'; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_evaluate_prints_aligned_labels_without_a_space_before_the_colon(work, capsys, monkeypatch):
    monkeypatch.chdir(work)
    assert main(["evaluate", "run", "data", "--split", "train", "--device", "cpu", "--no-progress",
                 "--baseline-order", "2"]) == 0
    err = capsys.readouterr().err
    assert "  model:      " in err and "  2-gram KN:  " in err and " :" not in err


def test_train_flags_match_the_names_config_messages_use():
    """The parser's table and TrainConfig's flag names (used in its error messages) agree."""
    from melodylm.cli.training import TRAIN_FLAGS
    from melodylm.train_config import FLAGS

    table = {key: flags for flags, key, _, _ in TRAIN_FLAGS}
    for key, flags in table.items():
        assert FLAGS[key] in flags, key
    assert set(FLAGS) - set(table) <= {"data_dir", "compile"}
