"""The README.md model card of a Hugging Face export: data, recipe, scores, licence, usage."""

from __future__ import annotations

import math
from typing import Any

from melodylm.tokenizer import MelodyTokenizer

# The dataset of the shipped model (`make pretrained`): a checkpoint trained on data with its fingerprint
# gets these two paragraphs in its card.
EMBEDDED_CORPUS = ("the corpora embedded in melodylm's repository, converted from the ABC transcriptions bundled "
                   "with music21: O'Neill's *Music of Ireland* (1903, 2,009 Irish traditional melodies) and the "
                   "Essen folk song collection (8,514 songs, mostly German), each training tune also transposed "
                   "by -3..+3 semitones")
EMBEDDED_LICENCE = ("O'Neill's 1903 book is in the public domain; music21 distributes the ABC encodings \"with the "
                    "permission of the encoders\", some possibly with restrictions on commercial use. The Essen "
                    "collection is distributed by music21 with permission for non-commercial use only. The same "
                    "applies to models trained on them: research and teaching, not commercial use.")
RECIPE_KEYS = ("arch", "size", "batch_size", "grad_accum", "learning_rate", "min_lr_ratio", "warmup_steps",
               "lr_decay_steps", "weight_decay", "beta1", "beta2", "grad_clip", "max_steps", "max_time", "seed",
               "precision")


def _embedded_fingerprint() -> str | None:
    """Dataset fingerprint the shipped model records (its `make pretrained` dataset)."""
    from melodylm.checkpoint import load_checkpoint
    from melodylm.errors import UserError
    from melodylm.resources import shipped_model

    path = shipped_model()
    if path is None:
        return None
    try:
        return load_checkpoint(path).get("data_fingerprint")
    except UserError:
        return None


def _scores(ckpt: dict[str, Any]) -> list[str]:
    lines = []
    ev = ckpt.get("evaluation")
    if isinstance(ev, dict) and ev.get("bits_per_note") is not None:
        lines.append(f"- {ev.get('split', 'test')} split of `{ev.get('data_dir', '?')}`: "
                     f"**{ev['bits_per_note']:.3f} bits/note** (as recorded in the checkpoint)")
    stats = ckpt.get("data_stats") or {}
    val = ckpt.get("best_val_loss")
    notes, tokens = (stats.get("notes") or {}).get("val"), (stats.get("tokens") or {}).get("val")
    if val is not None and notes and tokens:
        bpn = val / math.log(2) * tokens / notes
        lines.append(f"- best validation loss {val:.4f} nats/token = about {bpn:.3f} bits/note on the validation "
                     f"windows seen in training ({notes:,} notes, {tokens:,} tokens in that split)")
    if not lines:
        lines.append("- no scores recorded in the checkpoint; `melodylm evaluate CKPT DATA --split test` measures "
                     "test bits/note")
    return lines


def _usage(tok: MelodyTokenizer, name: str) -> str:
    sub = tok.sp_model is not None
    decode = (
        "import sentencepiece as spm\n"
        "sp = spm.SentencePieceProcessor(model_file=f\"{folder}/subwords.model\")\n"
        "# each subword piece spells base token ids as characters chr(0x4E00 + id)\n"
        "chars = \"\".join(sp.id_to_piece(i) for i in ids if i != sp.unk_id())\n"
        "base = [ord(c) - 0x4E00 for c in chars]\n") if sub else "base = ids  # model ids are miditok token ids\n"
    return (
        "```python\n"
        "import torch\n"
        "from miditok import " + tok.settings.scheme + "\n"
        "from transformers import AutoModelForCausalLM\n\n"
        f"folder = \"{name}\"\n"
        "model = AutoModelForCausalLM.from_pretrained(folder).eval()\n"
        f"tokenizer = {tok.settings.scheme}(params=f\"{{folder}}/tokenizer.json\")\n"
        "cfg = model.config\n"
        "out = model.generate(torch.tensor([[cfg.bos_token_id]]), do_sample=True, top_p=0.95,\n"
        "                     max_new_tokens=512, eos_token_id=cfg.eos_token_id, "
        "pad_token_id=cfg.pad_token_id)\n"
        "ids = [i for i in out[0].tolist() if i not in (cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id)]\n"
        + decode +
        "tokenizer.decode([base]).dump_midi(\"sample.mid\")\n"
        "```\n\n"
        "Without melodylm's grammar constraint, an unconstrained sample can hold token sequences miditok "
        "skips while decoding; `melodylm sample` constrains them. "
        f"`melodylm import-hf {name} -o checkpoints/NAME` turns this folder back into a melodylm checkpoint.\n")


def model_card(ckpt: dict[str, Any], tok: MelodyTokenizer, name: str) -> str:
    """Markdown with a YAML header that the Hugging Face Hub reads."""
    from melodylm import __version__

    m, tc = ckpt["model_config"], ckpt.get("train_config") or {}
    n = sum(v.numel() for k, v in ckpt["model"].items() if not (k == "lm_head.weight" and m.get("tie_weights", True)))
    fp = ckpt.get("data_fingerprint")
    embedded = fp is not None and fp == _embedded_fingerprint()
    stats = ckpt.get("data_stats") or {}
    counts = ", ".join(f"{s} {stats['notes'][s]:,} notes / {stats['tokens'][s]:,} tokens"
                       for s in ("train", "val", "test") if s in stats.get("notes", {}) and s in stats.get("tokens", {}))
    st = tok.settings
    sub = f", {tok.subword} subwords ({tok.vocab_size} pieces, sentencepiece)" if tok.sp_model else ""
    recipe = ", ".join(f"{k} {tc[k]}" for k in RECIPE_KEYS if k in tc and tc[k] not in (0, 0.0, "", None))
    corpus = EMBEDDED_CORPUS if embedded else f"the token dataset `{tc.get('data_dir', '?')}` (fingerprint {fp})"
    licence = (EMBEDDED_LICENCE if embedded else
               "Not recorded in the checkpoint: the licence of the training data applies; add it here.")
    return "\n".join([
        "---",
        "library_name: transformers",
        "license: other",
        "tags: [music, midi, symbolic-music, melody, miditok, melodylm]",
        "pipeline_tag: text-generation",
        "---",
        "",
        f"# {name}: a melody language model ({tok.settings.scheme} tokens)",
        "",
        f"A GPT-2 ({m['n_layer']} layers, {m['n_head']} heads, {m['n_embd']} wide, {m['block_size']}-token "
        f"context, {n / 1e6:.2f}M parameters, exact GELU, LayerNorm eps 1e-5"
        f"{', tied embeddings' if m.get('tie_weights', True) else ''}) trained with melodylm {__version__} to "
        "predict the next token of a one-track melody. Exported from the melodylm checkpoint "
        f"`{ckpt.get('path', '?')}` (step {ckpt.get('step', '?')}); its logits equal melodylm's to 1e-4 in fp32.",
        "",
        "## Data",
        "",
        f"- corpus: {corpus}",
        f"- dataset fingerprint: `{fp}`" + (f"; {counts}" if counts else ""),
        f"- tokenizer: miditok {st.scheme}, pitches {st.pitch_range[0]}..{st.pitch_range[1] - 1}, "
        f"{'velocities, ' if st.use_velocities else ''}{'rests, ' if st.use_rests else ''}"
        f"{'time signatures, ' if st.use_time_signatures else ''}{tok.base_vocab_size} base tokens{sub}; "
        f"specials PAD {tok.pad_id}, BOS {tok.bos_id}, EOS {tok.eos_id}. Each tune is BOS ... EOS.",
        "",
        "## Recipe",
        "",
        f"{recipe or 'not recorded'}.",
        "",
        "## Scores",
        "",
        *_scores(ckpt),
        "",
        "## Licence of the data",
        "",
        licence,
        "",
        "## Use it with transformers and miditok",
        "",
        _usage(tok, name),
    ])
