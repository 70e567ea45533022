"""The LLaMA-style decoder: HF Llama equivalence, loss, initialisation, input checks."""

import math

import pytest
import torch
import torch.nn.functional as F

from leviathan_explore.config import ConfigError, LeviathanConfig, ModelConfig
from leviathan_explore.generator import TokenIdError
from leviathan_explore.model import (
    TransformerLM, chunked_cross_entropy, from_hf_llama_state_dict, hf_llama_config, to_hf_llama_state_dict,
)

TINY_LEV = LeviathanConfig(k=3, d_seed=8, n_modes=2, n_knots=6, rank=4)


def require_transformers():
    """transformers is a hard test dependency: without it these tests fail, they never skip."""
    try:
        import transformers
    except ImportError as exc:
        pytest.fail(f"transformers cannot be imported ({exc}); it is a test dependency: "
                    f"pip install -c constraints.txt -e '.[dev]'", pytrace=False)
    return transformers


def tiny(**kw) -> ModelConfig:
    base = dict(vocab_size=97, d_model=32, n_layers=2, n_heads=4, ffn_multiple_of=16, max_seq_len=64,
                leviathan=TINY_LEV)
    base.update(kw)
    return ModelConfig(**base)


@pytest.mark.parametrize("kw", [dict(), dict(n_kv_heads=2), dict(tie_embeddings=True), dict(n_kv_heads=1, n_layers=3)])
def test_logits_match_transformers_llama(kw):
    transformers = require_transformers()
    torch.manual_seed(0)
    cfg = tiny(**kw)
    ours = TransformerLM(cfg).eval()
    with torch.no_grad():  # non-trivial norm weights, so a misplaced weight would show
        for name, p in ours.named_parameters():
            if p.dim() == 1:
                p.copy_(1 + 0.1 * torch.randn_like(p))
    hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(**hf_llama_config(cfg))).eval()
    missing, unexpected = hf.load_state_dict(to_hf_llama_state_dict(ours), strict=False)
    assert not unexpected
    assert all("rotary" in m or (cfg.tie_embeddings and m == "lm_head.weight") for m in missing)
    ids = torch.randint(0, cfg.vocab_size, (2, 17))
    with torch.no_grad():
        ref = hf(input_ids=ids).logits
        out = ours(ids)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    # and back again
    back = from_hf_llama_state_dict(hf.state_dict(), cfg).eval()
    with torch.no_grad():
        torch.testing.assert_close(back(ids), ref, rtol=1e-5, atol=1e-5)


def test_loss_equals_cross_entropy_of_logits():
    torch.manual_seed(0)
    model = TransformerLM(tiny())
    ids = torch.randint(0, 97, (3, 11))
    targets = torch.randint(0, 97, (3, 11))
    logits = model(ids)
    ref = F.cross_entropy(logits.view(-1, 97), targets.view(-1))
    torch.testing.assert_close(model(ids, targets), ref, rtol=1e-5, atol=1e-6)
    per_token = model(ids, targets, reduction="none")
    assert per_token.shape == (3, 11)
    torch.testing.assert_close(per_token.mean(), ref, rtol=1e-5, atol=1e-6)


def test_chunked_cross_entropy_matches_values_and_gradients():
    torch.manual_seed(0)
    h = torch.randn(50, 16, requires_grad=True)
    w = torch.randn(300, 16, requires_grad=True)
    t = torch.randint(0, 300, (50,))
    ref = F.cross_entropy(h @ w.T, t)
    gh, gw = torch.autograd.grad(ref, (h, w))
    out = chunked_cross_entropy(h, w, t, chunk_size=7)
    ch, cw = torch.autograd.grad(out, (h, w))
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ch, gh, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(cw, gw, rtol=1e-5, atol=1e-6)


def test_leviathan_model_trains_end_to_end_and_reaches_generator():
    torch.manual_seed(0)
    model = TransformerLM(tiny(token_repr="leviathan"))
    ids = torch.randint(0, 97, (2, 9))
    model(ids, ids).backward()
    assert all(p.grad is not None for p in model.parameters())
    assert not hasattr(model, "embed_tokens")


def test_initialisation_scales():
    torch.manual_seed(0)
    cfg = tiny(d_model=128, n_layers=8, n_heads=4, vocab_size=4000)
    model = TransformerLM(cfg)
    assert abs(model.embed_tokens.weight.std().item() - 0.02) < 0.002
    assert abs(model.layers[0].self_attn.q_proj.weight.std().item() - 0.02) < 0.002
    expected = 0.02 / math.sqrt(2 * 8)
    assert abs(model.layers[0].mlp.down_proj.weight.std().item() - expected) < 0.1 * expected
    assert abs(model.layers[3].self_attn.o_proj.weight.std().item() - expected) < 0.1 * expected
    assert torch.equal(model.norm.weight, torch.ones(128))


def test_tied_model_shares_the_table():
    model = TransformerLM(tiny(tie_embeddings=True))
    assert model.lm_head.weight is model.embed_tokens.weight


@pytest.mark.parametrize("bad", [torch.tensor([[0, 97]]), torch.tensor([[-1, 0]]), torch.tensor([[0.0, 1.0]])])
@pytest.mark.parametrize("repr_", ["table", "leviathan"])
def test_out_of_range_ids_raise_at_the_boundary(bad, repr_):
    model = TransformerLM(tiny(token_repr=repr_))
    with pytest.raises(TokenIdError):
        model(bad)


def test_out_of_range_targets_raise():
    model = TransformerLM(tiny())
    with pytest.raises(TokenIdError):
        model(torch.zeros(1, 4, dtype=torch.long), torch.full((1, 4), 500))


@pytest.mark.parametrize("kw,field", [
    (dict(d_model=30, n_heads=4), "n_heads"), (dict(d_model=12, n_heads=4), "n_heads"),
    (dict(vocab_size=0), "vocab_size"), (dict(n_kv_heads=3), "n_kv_heads"), (dict(n_layers=-1), "n_layers"),
    (dict(token_repr="lookup"), "token_repr"), (dict(token_repr="leviathan", tie_embeddings=True), "tie_embeddings"),
    (dict(d_model=64.0), "d_model"), (dict(norm_eps=0.0), "norm_eps"),
])
def test_bad_model_config_names_the_field(kw, field):
    with pytest.raises(ConfigError) as exc:
        tiny(**kw)
    assert exc.value.field == field


def test_config_round_trips_through_dict():
    cfg = tiny(token_repr="leviathan", n_kv_heads=2)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError):
        ModelConfig.from_dict({**cfg.to_dict(), "wdith": 3})


def test_bf16_autocast_forward_close_to_float32():
    torch.manual_seed(0)
    model = TransformerLM(tiny(token_repr="leviathan"))
    ids = torch.randint(0, 97, (2, 12))
    ref = model(ids, ids)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(ids, ids)
    assert abs(out.item() - ref.item()) < 0.05
