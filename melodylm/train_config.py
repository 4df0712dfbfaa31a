"""What a training run is: :class:`TrainConfig` with its checks, config files and ``--set``, and the
rules for ``--resume`` (what it honours, what it refuses) and ``--init`` (fine-tuning a checkpoint).

Nothing here runs a model: :mod:`melodylm.train` calls these before it builds one, so every
mistake is a one-line error before anything is written.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from melodylm import checkpoint as ckpts
from melodylm.checkpoint import load_checkpoint
from melodylm.controls import CONTROL_DROPOUT
from melodylm.dataset import DEFAULT_DATA_DIR
from melodylm.errors import UserError
from melodylm.models import MODELS, ModelConfig, size_preset
from melodylm.models.base import check_types

# What `train --resume` may change: when and how to stop, how often to evaluate and log, and
# where and how fast to run. Everything else (data, model, optimizer, schedule, seed) is the
# run's own; asking for another value is refused rather than ignored.
RESUME_HONOURS = ("max_steps", "max_epochs", "max_time", "patience", "eval_interval", "log_interval",
                  "sample_tokens", "device", "precision", "compile")
RESUME_HELP = ("--resume continues the run in -o exactly: it honours --max-steps, --max-epochs, --max-time "
               "(seconds from now), --patience, --eval-interval, --device, --precision, --compile and "
               "--set log_interval/sample_tokens, and refuses any other setting or another dataset; "
               "to fine-tune a checkpoint's weights on new data, start a new run with --init CKPT")

# The flag a key has on the command line; other keys are set with `--set key=value`.
FLAGS = {"data_dir": "DATA_DIR", "out_dir": "-o", "learning_rate": "--lr", "arch": "--arch", "size": "--size",
         "batch_size": "--batch-size", "grad_accum": "--grad-accum", "max_steps": "--max-steps",
         "max_epochs": "--max-epochs", "max_time": "--max-time", "eval_interval": "--eval-interval",
         "patience": "--patience", "seed": "--seed", "block_size": "--block-size", "device": "--device",
         "precision": "--precision", "compile": "--compile", "init": "--init"}


def setting(key: str) -> str:
    """How a message names a key: ``max_steps (--max-steps)``, or the bare key without a flag."""
    return f"{key} ({FLAGS[key]})" if key in FLAGS else key


@dataclass
class TrainConfig:
    """Everything a training run does. Loadable from TOML/JSON; unknown keys are an error."""

    data_dir: str = str(DEFAULT_DATA_DIR)
    out_dir: str = ""  # run folder; default checkpoints/<arch>-<date>-<time>
    init: str = ""  # checkpoint whose weights (and model config) a new run starts from: fine-tuning
    arch: str = "gpt"  # lstm | bilstm | gpt
    size: str = "small"  # tiny | small | base preset; model fields below override it
    model: dict = field(default_factory=dict)  # ModelConfig overrides, e.g. {"n_layer": 4}
    batch_size: int = 32  # sequences per micro-batch (per process)
    grad_accum: int = 1  # micro-batches per optimizer step
    learning_rate: float = 1e-3
    min_lr_ratio: float = 0.1  # cosine decays to learning_rate * min_lr_ratio
    warmup_steps: int = 100
    # With max_time and lr_decay_steps 0 the schedule follows the clock instead: warmup ends at
    # warmup_frac of the time budget (or after warmup_steps, if sooner) and the cosine at its end.
    warmup_frac: float = 0.05
    lr_decay_steps: int = 0  # 0 = max_steps (or max_time, see above); set it to resume into a longer run exactly
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0  # 0 = off
    max_steps: int = 2000
    max_epochs: float = 0.0  # > 0: stop after this many passes over the training tokens
    max_time: float = 0.0  # > 0: stop after this many seconds of training, final evaluation included
    eval_interval: int = 200
    eval_batches: int = 20  # fixed validation windows, the same at every evaluation
    patience: int = 0  # > 0: stop after this many evaluations without a better val loss
    sample_tokens: int = 256  # tokens of the piano-roll sample logged at each evaluation; 0 = off
    log_interval: int = 10
    seed: int = 1337
    # Datasets with controls or infilling (see melodylm.sequences): read the training tunes
    # rearranged for infilling in place of their plain form (off: plain continuation only), and
    # drop each control of a window's head at this rate (controls.CONTROL_DROPOUT says why 0.5).
    infill: bool = True
    control_dropout: float = CONTROL_DROPOUT
    # Windows of tunes whose key control is minor are drawn this many times as often (1: every
    # token as often as any other). The shipped model's second stage rerun at 2 (minor tunes are
    # 20.6% of its training sequences): 8-bar samples in the asked key, 24 a key, went 21 -> 31 of
    # 48 for A and E minor and 79 -> 69 of 96 for G, D, F and Bb major; it moves the prior, it
    # does not keep a key better, so the recipe leaves it at 1.
    minor_weight: float = 1.0
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    compile: bool = False

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """A config from keys (model keys may sit at the top level); remembers which keys were given."""
        names = {f.name for f in fields(cls)}
        model_names = {f.name for f in fields(ModelConfig)} - {"arch", "vocab_size", "pad_id"}
        if not isinstance(d.get("model", {}), dict):
            raise UserError(f"model must be a table of model keys, got {d['model']!r}")
        out: dict[str, Any] = {"model": dict(d.get("model", {}))}
        for k, v in d.items():
            if k == "model":
                continue
            if k in names:
                out[k] = v
            elif k in model_names:
                out["model"][k] = v
            else:
                raise UserError(f"unknown config key {k!r}; valid keys: {', '.join(sorted(names | model_names))}")
        bad = set(out["model"]) - model_names
        if bad:
            raise UserError(f"unknown model key(s) {sorted(bad)}; valid: {', '.join(sorted(model_names))}")
        cfg = cls(**out)
        # Resume refuses what it cannot honour, so it must know what was asked, not only the values:
        # `--batch-size 32` on a run of batch 16 is a request even though 32 is the default.
        cfg.given = frozenset(k for k in d if k in names) | ({"model"} if out["model"] else set())
        return cfg

    def asked(self) -> set[str]:
        """The keys the user set: those given to :meth:`from_dict`, else those off their default."""
        given = getattr(self, "given", None)
        if given is not None:
            return set(given)
        defaults = TrainConfig()
        return {f.name for f in fields(self) if getattr(self, f.name) != getattr(defaults, f.name)}

    def validate(self) -> None:
        """Check every key's type and range; a problem is a one-line UserError naming the key."""
        try:
            check_types(self)
        except (TypeError, ValueError) as e:
            key = str(e).split(" ", 1)[0]
            raise UserError(f"{setting(key)} {str(e).split(' ', 1)[1]}") from None
        choices = {"arch": tuple(MODELS), "size": ("tiny", "small", "base"), "precision": ("auto", "fp32", "bf16", "fp16")}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise UserError(f"--{key} {getattr(self, key)!r}: choose one of {', '.join(allowed)}")
        at_least_one = ("batch_size", "grad_accum", "eval_interval", "eval_batches", "log_interval", "max_steps")
        at_least_zero = ("warmup_steps", "lr_decay_steps", "patience", "sample_tokens", "seed", "max_epochs",
                         "max_time", "weight_decay", "grad_clip")
        for key in at_least_one:
            if getattr(self, key) < 1:
                raise UserError(f"{setting(key)} must be >= 1, got {getattr(self, key)!r}")
        for key in at_least_zero:
            if getattr(self, key) < 0:
                raise UserError(f"{setting(key)} must be >= 0, got {getattr(self, key)!r}")
        if not (self.minor_weight > 0 and math.isfinite(self.minor_weight)):
            raise UserError(f"{setting('minor_weight')} must be a positive number, got {self.minor_weight!r}")
        if self.learning_rate <= 0:
            raise UserError(f"{setting('learning_rate')} must be a positive number, got {self.learning_rate!r}")
        for key, high in (("min_lr_ratio", "1]"), ("beta1", "1)"), ("beta2", "1)"), ("warmup_frac", "1)"),
                          ("control_dropout", "1]")):
            v = getattr(self, key)
            if not (0 <= v <= 1 if high == "1]" else 0 <= v < 1):
                raise UserError(f"{setting(key)} must be in [0, {high}, got {v!r}")
        if not self.init:  # with --init the model config comes from that checkpoint
            try:
                ModelConfig(**{**size_preset(self.arch, self.size), **self.model, "arch": self.arch})
            except (TypeError, ValueError) as e:
                raise UserError(f"bad model setting: {e}") from None


def load_config_file(path: str | Path) -> dict:
    """A TOML or JSON file of TrainConfig keys (a [model] table is allowed)."""
    path = Path(path)
    try:
        text = path.read_bytes()
    except OSError as e:
        raise UserError(f"--config {path}: {e.strerror or e}") from None
    try:
        if path.suffix == ".json":
            return json.loads(text)
        try:
            import tomllib
        except ImportError:  # Python < 3.11
            import tomli as tomllib
        return tomllib.loads(text.decode())
    except Exception as e:
        raise UserError(f"--config {path} is not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {e}") from None


def parse_set(items: list[str]) -> dict:
    """``--set key=value`` pairs; values are parsed as JSON when they can be (numbers, booleans)."""
    out = {}
    for item in items:
        if "=" not in item:
            raise UserError(f"--set {item!r}: expected key=value")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            out[k.strip()] = v
    return out




# --- what the run is: config, data and model, checked before anything is written -----------------------
def resume_config(asked: TrainConfig, last: dict, out: Path) -> TrainConfig:
    """The run's own config with what resume honours taken from ``asked``; anything else asked is refused."""
    if asked.init:
        raise UserError("--init starts a new run from a checkpoint's weights; it cannot be combined with --resume")
    saved_dict = ckpts.train_config(last)
    saved = TrainConfig.from_dict(saved_dict)
    if "warmup_frac" not in saved_dict and saved.max_time > 0 and saved.lr_decay_steps == 0:
        saved.lr_decay_steps = saved.max_steps  # a run from before clock schedules keeps its step schedule
    keys = asked.asked()
    hint = (f": --resume continues {out} exactly as it started; to train its weights with other settings, "
            f"start a new run with --init {out / 'last.pt'}")
    for key in sorted(keys - set(RESUME_HONOURS) - {"out_dir", "data_dir", "model", "init"}):
        if getattr(asked, key) != getattr(saved, key):
            raise UserError(f"{setting(key)} {getattr(asked, key)!r} differs from the run's "
                            f"{getattr(saved, key)!r}{hint}")
    run_model = ckpts.model_config(last)
    for key, value in sorted(asked.model.items()):
        if run_model.get(key) != value:
            raise UserError(f"model setting {setting(key)} {value!r} differs from the run's {run_model.get(key)!r}{hint}")
    if "data_dir" in keys:
        saved.data_dir = asked.data_dir  # honoured when it holds the same data (see check_resume_data)
    for key in RESUME_HONOURS:
        if key in keys:
            setattr(saved, key, getattr(asked, key))
    if "max_time" in keys and asked.max_time > 0:
        # Seconds from now: the run's budget becomes what it has trained plus this.
        saved.max_time = ckpts.trainer_state(last)["elapsed"] + asked.max_time
    saved.out_dir, saved.device, saved.precision = str(out), asked.device, asked.precision
    return saved


def check_resume_data(cfg: TrainConfig, last: dict, fingerprint: str) -> None:
    """A resumed run trains on the data it started with (the same files in another folder will do)."""
    if ckpts.data_fingerprint(last) == fingerprint:
        return
    out = Path(cfg.out_dir)
    was = ckpts.trained_on(last)
    if was and Path(was).resolve() != Path(cfg.data_dir).resolve():
        raise UserError(f"--resume: {cfg.data_dir} is not the dataset {out} was trained on ({was}); resume without "
                        f"DATA_DIR, or fine-tune on it in a new run with --init {out / 'last.pt'}")
    raise UserError(f"--resume: the dataset {cfg.data_dir} changed since the run started (fingerprint differs); "
                    f"start a new run, or fine-tune on it with --init {out / 'last.pt'}")


def load_init(cfg: TrainConfig) -> dict:
    """The ``--init`` checkpoint; its model config wins, so asking for another shape is refused."""
    init = load_checkpoint(cfg.init)
    mc = ckpts.model_config(init)
    keys = cfg.asked()
    if "arch" in keys and cfg.arch != mc["arch"]:
        raise UserError(f"--init {cfg.init} is a {mc['arch']} model: drop --arch {cfg.arch} (the model comes "
                        "from the checkpoint)")
    if "size" in keys and cfg.size != ckpts.train_config(init).get("size"):
        raise UserError(f"--init {cfg.init}: the model's shape comes from the checkpoint: drop --size {cfg.size}")
    for key, value in sorted(cfg.model.items()):
        if key != "dropout" and mc.get(key) != value:
            raise UserError(f"--init {cfg.init}: model setting {setting(key)} {value!r} differs from the "
                            f"checkpoint's {mc.get(key)!r}; only dropout can change when fine-tuning")
    cfg.arch = mc["arch"]
    cfg.size = ckpts.train_config(init).get("size") or cfg.size  # what config.json and the start line report
    return init


def check_init_tokenizer(cfg: TrainConfig, init: dict, tokenizer) -> None:
    """Fine-tuning needs the tokens to mean what they meant when the checkpoint was trained."""
    diff = ckpts.tokenizer_difference(ckpts.tokenizer_dict(init), tokenizer.to_dict())
    if diff:
        raise UserError(f"--init {cfg.init}: dataset {cfg.data_dir} has another tokenizer than the checkpoint "
                        f"(checkpoint vs dataset: {diff}); tokenize the files with the checkpoint's settings")


def model_config(cfg: TrainConfig, tokenizer, last: dict | None, init: dict | None) -> ModelConfig:
    """The run's model: from the resumed run, from the ``--init`` checkpoint, or preset + overrides."""
    if last is not None:
        mcfg = ModelConfig(**ckpts.model_config(last))
    elif init is not None:
        mcfg = ModelConfig(**{**ckpts.model_config(init), **{k: v for k, v in cfg.model.items() if k == "dropout"}})
    else:
        try:
            mcfg = ModelConfig(**{**size_preset(cfg.arch, cfg.size), **cfg.model, "arch": cfg.arch,
                                  "vocab_size": tokenizer.vocab_size, "pad_id": tokenizer.pad_id})
        except (TypeError, ValueError) as e:
            raise UserError(f"bad model setting: {e}") from None
    if mcfg.vocab_size != tokenizer.vocab_size:
        raise UserError(f"the run's model has {mcfg.vocab_size} tokens but dataset {cfg.data_dir} has "
                        f"{tokenizer.vocab_size}: resume with the dataset it was trained on")
    return mcfg
