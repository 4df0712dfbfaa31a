"""Hugging Face interop: a melodylm GPT checkpoint <-> a ``transformers`` GPT-2 folder.

melodylm's GPT is the GPT-2 block (pre-norm LayerNorm with eps 1e-5, exact GELU, learned
positions, fused q/k/v, tied embeddings by default), so its weights map one to one onto
``GPT2LMHeadModel``. Two differences are bridged here: ``nn.Linear`` stores ``(out, in)`` where
GPT-2's ``Conv1D`` stores ``(in, out)`` (transposed), and a model trained with ``bias=False``
gets zero biases (GPT-2 always has them; zeros compute the same function).

An export folder holds::

    config.json          GPT2Config: AutoModelForCausalLM.from_pretrained(folder) loads it
    model.safetensors    the weights (the output layer left out when tied, as transformers does)
    tokenizer.json       the miditok tokenizer, loadable with miditok's own API
    subwords.model       the sentencepiece model, only when the checkpoint uses subwords
    melodylm.json        what the checkpoint knew beyond the weights (training config, data)
    README.md            a model card

Only ``safetensors`` is needed here (the ``hf`` extra); config files are plain JSON, so exporting
does not import ``transformers``.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

from melodylm.errors import CheckpointError, UserError
from melodylm.extras import require
from melodylm.hf_card import model_card
from melodylm.controls import ExtraVocab
from melodylm.tokenizer import MelodyTokenizer, TokenizerSettings

EXPORT_FORMAT = "melodylm.hf-export"
EXPORT_VERSION = 1
SUBWORDS_FILE = "subwords.model"
LN_EPS = 1e-5  # melodylm's LayerNorm epsilon (GPT-2's too)
# ModelConfig fields that have a GPT-2 counterpart (window: bi-LSTM only; pad_id: from the tokenizer).
GPT2_FIELDS = {"arch", "vocab_size", "block_size", "n_layer", "n_head", "n_embd", "dropout", "bias", "window",
               "tie_weights", "pad_id"}
# GPT2Config defaults, used to read a config.json that leaves a key out the way transformers would.
GPT2_DEFAULTS: dict[str, Any] = {
    "vocab_size": 50257, "n_positions": 1024, "n_embd": 768, "n_layer": 12, "n_head": 12, "n_inner": None,
    "activation_function": "gelu_new", "resid_pdrop": 0.1, "embd_pdrop": 0.1, "attn_pdrop": 0.1,
    "layer_norm_epsilon": 1e-5, "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False,
    "reorder_and_upcast_attn": False, "add_cross_attention": False, "tie_word_embeddings": True,
}


class ExportError(UserError):
    """A checkpoint that has no Hugging Face counterpart, or a folder that cannot be written."""


class ForeignModelError(UserError):
    """A Hugging Face folder whose model or tokenizer melodylm cannot represent."""


# --- weights -------------------------------------------------------------------------------------
def _layer_keys(i: int) -> list[tuple[str, bool]]:
    """(key under ``transformer.h.{i}.``, stored transposed in GPT-2) for one block."""
    return [("ln_1.weight", False), ("ln_1.bias", False), ("attn.c_attn.weight", True), ("attn.c_attn.bias", False),
            ("attn.c_proj.weight", True), ("attn.c_proj.bias", False), ("ln_2.weight", False),
            ("ln_2.bias", False), ("mlp.c_fc.weight", True), ("mlp.c_fc.bias", False),
            ("mlp.c_proj.weight", True), ("mlp.c_proj.bias", False)]


def _all_keys(n_layer: int) -> list[tuple[str, bool]]:
    keys = [("transformer.wte.weight", False), ("transformer.wpe.weight", False)]
    for i in range(n_layer):
        keys += [(f"transformer.h.{i}.{k}", t) for k, t in _layer_keys(i)]
    return keys + [("transformer.ln_f.weight", False), ("transformer.ln_f.bias", False)]


def to_hf_state(state: dict, mcfg: dict) -> dict:
    """melodylm GPT ``state_dict`` -> GPT-2 tensors (contiguous, unshared, as safetensors wants)."""
    import torch

    expected = {k for k, _ in _all_keys(mcfg["n_layer"])} | {"lm_head.weight"}
    unknown = sorted(set(state) - expected)
    if unknown:
        raise ExportError(f"the checkpoint's model has weights GPT-2 lacks ({unknown[0]}"
                          f"{f' and {len(unknown) - 1} more' if len(unknown) > 1 else ''}): it cannot be exported "
                          "as GPT2LMHeadModel")
    out = {}
    for key, transposed in _all_keys(mcfg["n_layer"]):
        if key in state:
            t = state[key].detach()
            out[key] = (t.t() if transposed else t).contiguous().clone()
        elif key.endswith(".bias") and not mcfg.get("bias", False):
            weight = state[key[: -len("bias")] + "weight"]
            # LayerNorm weight (C,) and Linear weight (out, in) both give the bias length first
            out[key] = torch.zeros(weight.shape[0], dtype=weight.dtype)
        else:
            raise ExportError(f"the checkpoint's model lacks {key}: incomplete GPT weights")
    if not mcfg.get("tie_weights", True):
        out["lm_head.weight"] = state["lm_head.weight"].detach().contiguous().clone()
    return out


def from_hf_state(tensors: dict, n_layer: int, tied: bool) -> tuple[dict, bool]:
    """GPT-2 tensors -> (melodylm ``state_dict``, whether any bias is non-zero)."""
    state: dict = {}
    norm = {}
    for k, v in tensors.items():
        if not k.startswith(("transformer.", "lm_head.")):  # original GPT-2 files have no prefix
            k = "transformer." + k
        if k.endswith((".attn.bias", ".attn.masked_bias")):  # causal-mask buffers of old files
            continue
        norm[k] = v
    missing = [k for k, _ in _all_keys(n_layer) if k not in norm]
    if missing:
        raise ForeignModelError(f"model.safetensors lacks {missing[0]}: not a GPT-2 model of {n_layer} layers")
    for key, transposed in _all_keys(n_layer):
        t = norm.pop(key)
        state[key] = (t.t() if transposed else t).contiguous()
    if tied:
        norm.pop("lm_head.weight", None)
        state["lm_head.weight"] = state["transformer.wte.weight"]
    elif "lm_head.weight" in norm:
        state["lm_head.weight"] = norm.pop("lm_head.weight").contiguous()
    else:
        raise ForeignModelError("config.json says the output layer is not tied, but model.safetensors lacks "
                                "lm_head.weight")
    if norm:
        raise ForeignModelError(f"model.safetensors holds weights melodylm's GPT lacks ({sorted(norm)[0]})")
    has_bias = any(bool(v.abs().max() > 0) for k, v in state.items() if k.endswith(".bias"))
    if not has_bias:
        state = {k: v for k, v in state.items() if not k.endswith(".bias")}
    return state, has_bias


def gpt2_config(mcfg: dict, tok: MelodyTokenizer) -> dict:
    """The ``config.json`` of a GPT2LMHeadModel that computes what the melodylm GPT does."""
    from melodylm import __version__

    return {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
        "vocab_size": mcfg["vocab_size"], "n_positions": mcfg["block_size"], "n_ctx": mcfg["block_size"],
        "n_embd": mcfg["n_embd"], "n_layer": mcfg["n_layer"], "n_head": mcfg["n_head"], "n_inner": None,
        "activation_function": "gelu",  # exact GELU (nn.GELU()), not GPT-2's tanh approximation
        "resid_pdrop": mcfg["dropout"], "embd_pdrop": mcfg["dropout"],
        "attn_pdrop": 0.0,  # melodylm applies no dropout to attention weights
        "layer_norm_epsilon": LN_EPS, "initializer_range": 0.02,
        "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False,
        "summary_type": "cls_index", "summary_use_proj": True, "summary_activation": None,
        "summary_proj_to_labels": True, "summary_first_dropout": 0.1,
        "tie_word_embeddings": bool(mcfg.get("tie_weights", True)),
        # GPT-2's defaults (50256) lie outside a melody vocabulary; these are the tokenizer's own
        "bos_token_id": tok.bos_id, "eos_token_id": tok.eos_id, "pad_token_id": tok.pad_id,
        "use_cache": True, "torch_dtype": "float32", "melodylm_version": __version__,
    }


# --- tokenizer -----------------------------------------------------------------------------------
def save_miditok(tok: MelodyTokenizer, out_dir: Path) -> list[Path]:
    """Write ``tokenizer.json`` (miditok's own format) and, with subwords, the sentencepiece model."""
    mine = {k: v for k, v in tok.to_dict().items() if k != "sp_model"}
    mine["subwords_file"] = SUBWORDS_FILE if tok.sp_model else None
    tok.base.save(out_dir / "tokenizer.json", additional_attributes={"melodylm": mine})
    written = [out_dir / "tokenizer.json"]
    if tok.sp_model:
        (out_dir / SUBWORDS_FILE).write_bytes(tok.sp_model)
        written.append(out_dir / SUBWORDS_FILE)
    return written


def _settings_from_miditok(cfg, scheme: str) -> TokenizerSettings:
    """The melodylm settings a plain miditok config corresponds to (checked by the vocabulary after)."""
    return TokenizerSettings(
        scheme=scheme, pitch_range=tuple(cfg.pitch_range),
        beat_res=tuple((int(a), int(b), int(r)) for (a, b), r in cfg.beat_res.items()),
        use_velocities=bool(cfg.use_velocities), num_velocities=int(cfg.num_velocities) if cfg.use_velocities else 8,
        use_rests=bool(cfg.use_rests), use_chords=bool(cfg.use_chords),
        use_time_signatures=bool(cfg.use_time_signatures),
        time_signatures=tuple((int(d), tuple(int(n) for n in nums)) for d, nums in cfg.time_signature_range.items()),
    )


def load_miditok(folder: str | Path) -> MelodyTokenizer:
    """A MelodyTokenizer from a folder's miditok ``tokenizer.json`` (and ``subwords.model``)."""
    import miditok

    folder = Path(folder)
    path = folder / "tokenizer.json"
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ForeignModelError(f"{folder} has no tokenizer.json: melodylm needs the miditok tokenizer the "
                                "model was trained with") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ForeignModelError(f"{path} is not valid JSON") from None
    scheme = raw.get("tokenization")
    if not isinstance(scheme, str) or not hasattr(miditok, scheme):
        raise ForeignModelError(f"{path} is not a miditok tokenizer (no known 'tokenization' class)")
    try:
        mt = getattr(miditok, scheme)(params=path)
    except Exception as e:  # miditok raises many kinds on a broken file
        raise ForeignModelError(f"{path}: miditok cannot load it ({type(e).__name__}: {str(e)[:100]})") from None
    if getattr(mt, "is_trained", False):
        raise ForeignModelError(f"{path} uses miditok's own trained vocabulary (BPE/Unigram); melodylm reads "
                                "base tokens, optionally with its sentencepiece subwords")
    mine = raw.get("melodylm") or {}
    subword, sp_model = mine.get("subword", "none"), None
    if subword != "none":
        sp_path = folder / (mine.get("subwords_file") or SUBWORDS_FILE)
        if not sp_path.is_file():
            raise ForeignModelError(f"{path} uses {subword} subwords but {sp_path.name} is missing beside it")
        sp_model = sp_path.read_bytes()
    try:
        settings = (TokenizerSettings.from_dict(mine["settings"]) if "settings" in mine
                    else _settings_from_miditok(mt.config, scheme))
        # control tokens and fill sentinels (if any) ride along, so the ids stay the model's ids
        tok = MelodyTokenizer(settings, subword, sp_model, extra=ExtraVocab.from_tokenizer_dict(mine))
    except UserError as e:
        raise ForeignModelError(f"{path}: {e}") from None
    theirs = sorted(mt.vocab, key=mt.vocab.get)
    if tok.base_vocab != theirs:
        diff = next((i for i, (a, b) in enumerate(zip(tok.base_vocab, theirs)) if a != b),
                    min(len(theirs), len(tok.base_vocab)))
        got = theirs[diff] if diff < len(theirs) else "(end)"
        raise ForeignModelError(f"{path}: a miditok vocabulary melodylm cannot rebuild ({len(theirs)} tokens; "
                                f"token {diff} is {got!r}); melodylm supports its own tokenizer settings only")
    return tok


# --- export --------------------------------------------------------------------------------------
def _prepare(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ExportError(f"-o {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise ExportError(f"-o {out} is not empty: choose another folder or pass --force")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def export_hf(checkpoint: str | Path, out_dir: str | Path, force: bool = False) -> dict:
    """Write a GPT checkpoint as a Hugging Face folder (see the module docstring); return a summary.

    ``AutoModelForCausalLM.from_pretrained(out_dir)`` then gives the same logits as melodylm's
    model (tests check 1e-4 in fp32). LSTM and bi-LSTM checkpoints are refused.
    """
    from melodylm import checkpoint as ckpts

    ckpt = ckpts.load_checkpoint(checkpoint)
    mcfg, path = ckpts.model_config(ckpt), ckpts.checkpoint_path(ckpt)
    if mcfg.get("arch") != "gpt":
        raise ExportError(f"{path} is a {mcfg.get('arch')} model: --format hf exports GPT checkpoints "
                          "only (Hugging Face has no causal LM class for an LSTM)")
    extra = sorted(set(mcfg) - GPT2_FIELDS)
    if extra:
        raise ExportError(f"{path}: model setting {extra[0]}={mcfg[extra[0]]!r} has no GPT-2 counterpart")
    safetensors_torch = require("safetensors.torch", "hf", "export --format hf")
    tok = MelodyTokenizer.from_dict(ckpts.tokenizer_dict(ckpt))
    tensors = to_hf_state(ckpt["model"], mcfg)
    out = Path(out_dir)
    _prepare(out, force)
    safetensors_torch.save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(gpt2_config(mcfg, tok), indent=2) + "\n")
    save_miditok(tok, out)
    meta = {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "source": path,
            "source_hash": ckpts.file_hash(path), "model_config": mcfg}
    for key in ("train_config", "data_fingerprint", "step", "best_val_loss", "data_stats", "evaluation", "versions"):
        if key in ckpt:
            meta[key] = ckpt[key]
    (out / "melodylm.json").write_text(json.dumps(meta, indent=1, default=str) + "\n")
    (out / "README.md").write_text(model_card(ckpt, tok, out.name))
    n_params = sum(t.numel() for t in tensors.values())
    return {"out_dir": str(out), "files": sorted(p.name for p in out.iterdir()), "parameters": n_params,
            "checkpoint": path}


# --- import --------------------------------------------------------------------------------------
def _read_config(folder: Path) -> dict:
    path = folder / "config.json"
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ForeignModelError(f"{folder} has no config.json: not a Hugging Face model folder") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ForeignModelError(f"{path} is not valid JSON") from None
    if not isinstance(raw, dict):
        raise ForeignModelError(f"{path} is not a model config")
    kind = raw.get("model_type")
    if kind != "gpt2":
        raise ForeignModelError(f"{path} describes a {kind!r} model; melodylm imports the GPT-2 models it "
                                "exports (model_type 'gpt2')")
    cfg = {**GPT2_DEFAULTS, **raw}
    checks = [
        (cfg["activation_function"] == "gelu", f"activation_function {cfg['activation_function']!r} (melodylm's "
                                               "GPT uses exact GELU, 'gelu')"),
        (math.isclose(float(cfg["layer_norm_epsilon"]), LN_EPS, rel_tol=1e-6),
         f"layer_norm_epsilon {cfg['layer_norm_epsilon']} (melodylm uses {LN_EPS})"),
        (cfg["n_inner"] in (None, 4 * cfg["n_embd"]), f"n_inner {cfg['n_inner']} (melodylm's MLP is 4 x n_embd)"),
        (cfg["scale_attn_weights"] and not cfg["scale_attn_by_inverse_layer_idx"],
         "attention scaling other than 1/sqrt(head size)"),
        (not cfg["add_cross_attention"], "cross-attention"),
        (cfg["n_embd"] % cfg["n_head"] == 0, f"n_embd {cfg['n_embd']} not divisible by n_head {cfg['n_head']}"),
    ]
    for ok, what in checks:
        if not ok:
            raise ForeignModelError(f"{path}: a GPT-2 with {what}, which melodylm's GPT cannot represent")
    return cfg


def import_hf(src_dir: str | Path, out: str | Path, force: bool = False) -> Path:
    """Turn an exported folder (a GPT-2 + a miditok tokenizer) back into a melodylm checkpoint.

    ``out`` is a run folder (gets ``best.pt``) or a ``.pt`` file. The result loads with
    ``melodylm sample``/``evaluate``; a round trip export -> import gives identical weights.
    """
    import torch

    from melodylm.checkpoint import build_payload, save_checkpoint
    from melodylm.models import ModelConfig, build_model

    src = Path(src_dir)
    if not src.is_dir():
        raise ForeignModelError(f"{src} is not a folder: pass the folder written by `melodylm export --format hf`")
    cfg = _read_config(src)
    tok = load_miditok(src)
    if tok.vocab_size != cfg["vocab_size"]:
        raise ForeignModelError(f"{src}: the model has {cfg['vocab_size']} tokens but its tokenizer has "
                                f"{tok.vocab_size}")
    safetensors_torch = require("safetensors.torch", "hf", "import-hf")
    weights = src / "model.safetensors"
    if not weights.is_file():
        raise ForeignModelError(f"{src} has no model.safetensors (melodylm reads safetensors weights only)")
    try:
        tensors = safetensors_torch.load_file(str(weights))
    except Exception as e:  # a truncated or foreign file
        raise ForeignModelError(f"{weights} cannot be read ({type(e).__name__}: {str(e)[:100]})") from None
    tied = bool(cfg["tie_word_embeddings"])
    state, has_bias = from_hf_state(tensors, int(cfg["n_layer"]), tied)
    meta = _read_meta(src)
    mcfg = ModelConfig(arch="gpt", vocab_size=int(cfg["vocab_size"]), block_size=int(cfg["n_positions"]),
                       n_layer=int(cfg["n_layer"]), n_head=int(cfg["n_head"]), n_embd=int(cfg["n_embd"]),
                       dropout=float(cfg["resid_pdrop"]), bias=has_bias, tie_weights=tied, pad_id=tok.pad_id,
                       **{k: v for k, v in meta.get("model_config", {}).items() if k == "window"})
    model = build_model(mcfg)
    try:
        model.load_state_dict({k: v.to(torch.float32) for k, v in state.items()})
    except RuntimeError as e:
        raise ForeignModelError(f"{weights}: weights do not fit config.json ({str(e).splitlines()[-1][:120]})") from None
    target = Path(out)
    target = target if target.suffix == ".pt" else target / "best.pt"
    if target.exists() and not force:
        raise UserError(f"{target} already exists: choose another -o or pass --force")
    # The payload the trainer writes as best.pt, with what the export kept of the original run.
    payload = build_payload(
        model_config=asdict(mcfg), model=model.state_dict(), tokenizer=tok.to_dict(),
        train_config=dict(meta.get("train_config") or {"arch": "gpt", "data_dir": ""}),
        data_fingerprint=meta.get("data_fingerprint") or "", step=int(meta.get("step") or 0),
        best_val=float("nan") if meta.get("best_val_loss") is None else float(meta["best_val_loss"]),
        data_stats={"notes": {}, "tokens": {}, **(meta.get("data_stats") or {})})
    payload["imported_from"] = {"format": "hf", "path": str(src)}
    if "evaluation" in meta:
        payload["evaluation"] = meta["evaluation"]
    return save_checkpoint(target, payload)


def _read_meta(src: Path) -> dict:
    """``melodylm.json`` of an export (absent for a folder made by other tools)."""
    path = src / "melodylm.json"
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CheckpointError(f"{path} is not valid JSON") from None
    return meta if isinstance(meta, dict) and meta.get("format") == EXPORT_FORMAT else {}


__all__ = ["ExportError", "ForeignModelError", "export_hf", "from_hf_state", "gpt2_config", "import_hf",
           "load_miditok", "save_miditok", "to_hf_state"]
