"""Tests for melodylm.models: one interface, three architectures, tiny sizes."""

from __future__ import annotations

import pytest
import torch

from melodylm.models import GPT, MODELS, MelodyModel, ModelConfig, build_model, size_preset

ARCHS = sorted(MODELS)
VOCAB = 48


@pytest.fixture(autouse=True, scope="module")
def _cpu_settings():
    # A bidirectional LSTM backward can produce denormal floats that make CPU kernels crawl.
    # Tiny models gain nothing from threads, and spinning threads crawl on a busy machine.
    threads = torch.get_num_threads()
    torch.set_flush_denormal(True)
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    torch.set_flush_denormal(False)


def tiny(arch: str, **overrides) -> MelodyModel:
    """A tiny model in eval mode (no dropout), float64 so cached and batched paths compare tightly."""
    torch.manual_seed(0)
    config = ModelConfig(**{**size_preset(arch, "tiny"), "vocab_size": VOCAB, "dropout": 0.0, **overrides})
    return build_model(config).double().eval()


def tokens(B: int, T: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (B, T), generator=torch.Generator().manual_seed(seed))


def state_tensors(state) -> list[torch.Tensor]:
    if isinstance(state, torch.Tensor):
        return [state]
    if isinstance(state, dict):
        state = list(state.values())
    return [t for s in state for t in state_tensors(s)]


# ---------------------------------------------------------------- causality


@pytest.mark.parametrize("arch", ARCHS)
def test_causal(arch: str) -> None:
    model = tiny(arch)
    idx = tokens(2, 24)
    t = 10
    changed = idx.clone()
    changed[:, t + 1 :] = (changed[:, t + 1 :] + 7) % VOCAB
    with torch.no_grad():
        a, _ = model(idx)
        b, _ = model(changed)
    torch.testing.assert_close(a[:, : t + 1], b[:, : t + 1])
    assert not torch.allclose(a[:, t + 1 :], b[:, t + 1 :]), "later tokens should matter to later positions"


def test_bilstm_sees_exactly_its_window() -> None:
    model = tiny("bilstm")
    W = model.config.window
    idx = tokens(2, 24)
    t = 20
    outside = idx.clone()
    outside[:, : t - W + 1] = (outside[:, : t - W + 1] + 5) % VOCAB  # everything before the window
    oldest = idx.clone()
    oldest[:, t - W + 1] = (oldest[:, t - W + 1] + 5) % VOCAB  # the first token inside it
    with torch.no_grad():
        base = model(idx)[0][:, t]
        torch.testing.assert_close(model(outside)[0][:, t], base)
        assert not torch.allclose(model(oldest)[0][:, t], base)


# ------------------------------------------------- generation matches forward


def run_generation(model: MelodyModel, seq: torch.Tensor, chunks: list[int]):
    """Feed ``seq`` as a prefill of ``chunks[0]`` tokens, further prefills of the other chunk
    sizes, then one decode per remaining token; yield (position, logits, state) after each call."""
    state = model.init_state(seq.size(0), seq.device)
    pos = 0
    for n in chunks:
        logits, state = model.prefill(seq[:, pos : pos + n], state)
        pos += n
        yield pos - 1, logits, state
    while pos < seq.size(1):
        logits, state = model.decode(seq[:, pos : pos + 1], state)
        pos += 1
        yield pos - 1, logits, state


@pytest.mark.parametrize("arch", ["lstm", "bilstm"])
def test_generation_matches_forward_recurrent(arch: str) -> None:
    model = tiny(arch)
    seq = tokens(3, 90)  # longer than block_size: recurrent models have no limit
    with torch.no_grad():
        full, _ = model(seq)
    steps = 0
    for t, logits, _ in run_generation(model, seq, chunks=[5, 1, 13, 2]):
        torch.testing.assert_close(logits, full[:, t])
        steps += 1
    assert steps == 4 + 90 - 21


def test_generation_matches_forward_gpt_within_block() -> None:
    model = tiny("gpt")
    T = model.config.block_size
    seq = tokens(3, T)
    with torch.no_grad():
        full, _ = model(seq)
    # Chunks of several tokens appended to a filled cache exercise the explicit attention mask.
    for t, logits, state in run_generation(model, seq, chunks=[5, 1, 7, 3]):
        torch.testing.assert_close(logits, full[:, t])
        assert torch.equal(state["tokens"], seq[:, : t + 1])


@pytest.mark.parametrize("chunks", [[3, 4], [50], [33, 70]])
def test_generation_gpt_slides_past_block_size(chunks: list[int]) -> None:
    model = tiny("gpt")
    block, keep = model.config.block_size, model.slide_keep
    seq = tokens(2, 4 * block + 5)
    slid = False
    for t, logits, state in run_generation(model, seq, chunks=chunks):
        window = state["tokens"]
        n = window.size(1)
        assert n <= block
        # The cache holds the most recent tokens, and never fewer than slide_keep once full.
        assert torch.equal(window, seq[:, t + 1 - n : t + 1])
        if t + 1 > block:
            slid = True
            assert n >= min(keep, t + 1)
        with torch.no_grad():
            expected = model(window)[0][:, -1]
        torch.testing.assert_close(logits, expected)
    assert slid


@pytest.mark.parametrize("bias", [True, False])
def test_gpt_decode_is_bit_identical_to_a_one_token_prefill(bias: bool) -> None:
    # decode has its own single-token path; seeded samples stay the same only if its logits and
    # cache equal the module path's exactly, also in float32 and after the cache slides.
    torch.manual_seed(0)
    model = build_model(ModelConfig(**{**size_preset("gpt", "tiny"), "vocab_size": VOCAB, "dropout": 0.0,
                                       "bias": bias, "n_head": 4})).eval()
    seq = tokens(3, 3 * model.config.block_size)
    fast, slow = model.init_state(3, "cpu"), model.init_state(3, "cpu")
    _, fast = model.prefill(seq[:, :5], fast)
    _, slow = model.prefill(seq[:, :5], slow)
    for t in range(5, seq.size(1)):
        a, fast = model.decode(seq[:, t : t + 1], fast)
        b, slow = model.prefill(seq[:, t : t + 1], slow)
        assert torch.equal(a, b), f"token {t}"
        n = fast["tokens"].size(1)
        assert torch.equal(fast["tokens"], slow["tokens"])
        assert torch.equal(fast["kv"][:, :, :, :, :n], slow["kv"][:, :, :, :, :n])


def test_gpt_decode_in_training_mode_uses_dropout() -> None:
    model = tiny("gpt", dropout=0.5).train()
    seq = tokens(2, 6)
    _, state = model.prefill(seq[:, :5], model.init_state(2, "cpu"))
    copy = {k: v.clone() for k, v in state.items()}
    torch.manual_seed(1)
    a, _ = model.decode(seq[:, 5:], state)
    torch.manual_seed(2)
    b, _ = model.decode(seq[:, 5:], copy)
    assert not torch.equal(a, b)


def test_gpt_long_prompt_equals_forward_on_its_window() -> None:
    model = tiny("gpt")
    seq = tokens(2, 3 * model.config.block_size)
    logits, state = model.prefill(seq, model.init_state(2, "cpu"))
    window = seq[:, -model.slide_keep :]
    assert torch.equal(state["tokens"], window)
    with torch.no_grad():
        torch.testing.assert_close(logits, model(window)[0][:, -1])


@pytest.mark.parametrize("arch", ARCHS)
def test_state_is_batch_first_and_reorderable(arch: str) -> None:
    model = tiny(arch)
    seq = tokens(3, 12)
    logits, state = model.prefill(seq[:, :11], model.init_state(3, "cpu"))
    assert all(t.size(0) == 3 for t in state_tensors(state))
    assert not logits.requires_grad
    order = torch.tensor([2, 0])

    def pick(s):
        if isinstance(s, torch.Tensor):
            return s[order].clone()
        if isinstance(s, dict):
            return {k: pick(v) for k, v in s.items()}
        return type(s)(pick(v) for v in s)

    picked = pick(state)
    expected, _ = model.decode(seq[:, 11:], state)
    got, _ = model.decode(seq[order, 11:], picked)
    torch.testing.assert_close(got, expected[order])


def test_gpt_forward_rejects_more_than_block_size() -> None:
    model = tiny("gpt")
    assert model.max_context == model.config.block_size
    with pytest.raises(ValueError, match="block_size"):
        model(tokens(1, model.config.block_size + 1))


@pytest.mark.parametrize("arch", ["lstm", "bilstm"])
def test_recurrent_models_have_no_context_limit(arch: str) -> None:
    model = tiny(arch)
    assert model.max_context is None
    logits, _ = model(tokens(1, 3 * model.config.block_size))
    assert logits.shape == (1, 3 * model.config.block_size, VOCAB)


# ------------------------------------------------------------------ training


@pytest.mark.parametrize("arch", ARCHS)
def test_loss_ignores_minus_one(arch: str) -> None:
    model = tiny(arch)
    idx = tokens(2, 16)
    targets = tokens(2, 16, seed=2)
    logits, loss = model(idx, targets)
    masked = targets.clone()
    masked[:, 8:] = -1
    _, partial = model(idx, masked)
    expected = torch.nn.functional.cross_entropy(logits[:, :8].reshape(-1, VOCAB), targets[:, :8].reshape(-1))
    torch.testing.assert_close(partial, expected)
    assert loss is not None and not torch.isclose(loss, partial)
    assert model(idx)[1] is None


@pytest.mark.parametrize("arch", ARCHS)
def test_every_parameter_gets_a_gradient(arch: str) -> None:
    # DDP fails on parameters that take no part in the loss.
    model = tiny(arch, bias=True).train()
    idx = tokens(2, 16)
    _, loss = model(idx[:, :-1], idx[:, 1:])
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


@pytest.mark.parametrize("arch", ARCHS)
def test_tiny_model_overfits_one_batch(arch: str) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(**size_preset(arch, "tiny"), vocab_size=VOCAB, dropout=0.0))
    idx = tokens(4, 25)
    x, y = idx[:, :-1], idx[:, 1:]
    opt = model.configure_optimizers(0.0, 1e-2, (0.9, 0.99), "cpu")
    losses = []
    for _ in range(250):  # each arch needs 30-120 steps
        _, loss = model(x, y)
        losses.append(loss.item())
        if losses[-1] < 0.1:
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    assert losses[0] > 3.0  # about ln(48) at initialisation
    assert losses[-1] < 0.1, f"loss still {losses[-1]:.3f} after {len(losses)} steps"


# ----------------------------------------------------- optimiser and registry


@pytest.mark.parametrize("arch", ARCHS)
def test_configure_optimizers_decays_matrices_only(arch: str) -> None:
    model = tiny(arch, bias=True)
    opt = model.configure_optimizers(0.1, 3e-4, (0.9, 0.95), "cpu")
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert decay["params"] and all(p.dim() >= 2 for p in decay["params"])
    assert no_decay["params"] and all(p.dim() < 2 for p in no_decay["params"])
    ids = [id(p) for g in opt.param_groups for p in g["params"]]
    assert len(ids) == len(set(ids)) and set(ids) == {id(p) for p in model.parameters()}
    assert opt.param_groups[0]["lr"] == 3e-4 and opt.param_groups[0]["betas"] == (0.9, 0.95)
    assert opt.defaults["fused"]  # the fused kernel exists for CPU since torch 2.4


@pytest.mark.parametrize("arch", ARCHS)
def test_registry_and_presets(arch: str) -> None:
    counts = []
    for size in ("tiny", "small", "base"):
        config = ModelConfig(**size_preset(arch, size))
        model = build_model(config)
        assert type(model) is MODELS[arch] and isinstance(model, MelodyModel)
        assert model.config is config
        counts.append(model.num_params())
    assert counts == sorted(counts)
    assert counts[0] < 100_000  # tiny: a training step in milliseconds
    assert 1_000_000 < counts[1] < 6_000_000  # small: a few million parameters


def test_registry_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown arch"):
        build_model(ModelConfig(arch="rnn"))
    with pytest.raises(ValueError, match="unknown size"):
        size_preset("gpt", "huge")
    with pytest.raises(ValueError, match="divisible"):
        build_model(ModelConfig(arch="gpt", n_embd=30, n_head=4))


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("tie", [True, False])
def test_num_params(arch: str, tie: bool) -> None:
    model = tiny(arch, tie_weights=tie)
    C = model.config.n_embd
    unique = {id(p): p.numel() for p in model.parameters()}
    total = sum(unique.values())
    assert model.num_params(non_embedding=False) == total
    assert (model.lm_head.weight is next(m for m in model.modules() if isinstance(m, torch.nn.Embedding)).weight) == tie
    lookup = 0 if tie else VOCAB * C  # an untied token table only looks vectors up
    if arch == "gpt":
        lookup += model.config.block_size * C  # position table
    assert model.num_params() == total - lookup


# --------------------------------------------------- reference: Hugging Face GPT-2


@pytest.mark.slow
def test_gpt_matches_huggingface_gpt2() -> None:
    transformers = pytest.importorskip("transformers")
    config = ModelConfig(arch="gpt", vocab_size=VOCAB, block_size=16, n_layer=2, n_head=4, n_embd=32,
                         dropout=0.0, bias=True)
    torch.manual_seed(0)
    ours = GPT(config).eval()
    hf_config = transformers.GPT2Config(
        vocab_size=VOCAB, n_positions=16, n_embd=32, n_layer=2, n_head=4,
        activation_function="gelu",  # exact erf GELU, like nn.GELU()
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=1e-5,
        bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )
    hf = transformers.GPT2LMHeadModel(hf_config).eval()
    # Our Linear layers store (out, in); GPT-2's Conv1D stores (in, out).
    transposed = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
    hf_state = hf.state_dict()
    ours_state = ours.state_dict()
    with torch.no_grad():
        for name, tensor in ours_state.items():
            if name == "lm_head.weight":
                continue  # tied to transformer.wte.weight
            source = hf_state[name]
            tensor.copy_(source.t() if name.endswith(transposed) else source)
    idx = tokens(2, 16)
    targets = torch.cat([idx[:, 1:], torch.full((2, 1), -1)], dim=1)
    with torch.no_grad():
        logits, loss = ours(idx, targets)
        ref = hf(input_ids=idx, labels=idx)
    torch.testing.assert_close(logits, ref.logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(loss, ref.loss, rtol=1e-5, atol=1e-5)
