"""Exporting a Leviathan model to a table model and to a Hugging Face Llama checkpoint."""

from __future__ import annotations

import json
import os

import pytest
import torch

from leviathan_explore.config import LeviathanConfig, ModelConfig
from leviathan_explore.export import export_hf_llama, export_table_model
from leviathan_explore.model import TransformerLM
from leviathan_explore.params import count_params

GEN = LeviathanConfig(k=3, d_seed=8, n_modes=2, n_knots=6, rank=4)


def require_transformers():
    """transformers is a hard test dependency: without it these tests fail, they never skip."""
    try:
        import transformers
    except ImportError as exc:
        pytest.fail(f"transformers cannot be imported ({exc}); it is a test dependency: "
                    f"pip install -c constraints.txt -e '.[dev]'", pytrace=False)
    return transformers


def leviathan_model(seed: int = 0, **overrides) -> TransformerLM:
    torch.manual_seed(seed)
    cfg = ModelConfig(**{**dict(vocab_size=320, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2,
                                max_seq_len=32, token_repr="leviathan", leviathan=GEN), **overrides})
    model = TransformerLM(cfg)
    with torch.no_grad():  # move the weights off their initial values so that copying is checked
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model.eval()


def test_table_model_has_identical_logits_and_the_generator_table():
    model = leviathan_model()
    ids = torch.randint(0, 320, (3, 11))
    table_model = export_table_model(model)
    assert table_model.cfg.token_repr == "table" and not table_model.cfg.tie_embeddings
    assert not table_model.training
    model.generator.use_table_cache = False  # compare against the generator itself
    with torch.no_grad():
        torch.testing.assert_close(table_model(ids), model(ids), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(table_model.embed_tokens.weight, model.generator.table())
    # independent weights: training the export leaves the source alone
    with torch.no_grad():
        table_model.lm_head.weight.zero_()
    assert model.lm_head.weight.abs().sum() > 0


def test_parameter_counts_of_source_and_export(tmp_path):
    model = leviathan_model()
    info = export_hf_llama(model, tmp_path / "hf")
    V, D = 320, 32
    assert info["source_params"]["total"] == count_params(model.cfg).total
    assert info["exported_params"]["total"] == count_params(model.cfg.replace(token_repr="table")).total
    assert info["exported_params"]["embedding"] == V * D
    assert info["exported_params"]["total"] - info["source_params"]["total"] == V * D - info["source_params"]["generator"]


def test_hugging_face_llama_loads_the_export_and_gives_the_same_logits(tmp_path):
    transformers = require_transformers()
    model = leviathan_model()
    out = tmp_path / "hf"
    export_hf_llama(model, out)
    assert sorted(os.listdir(out)) == ["config.json", "model.safetensors"]  # no temporary files left
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "llama" and config["vocab_size"] == 320 and config["num_key_value_heads"] == 2
    hf = transformers.LlamaForCausalLM.from_pretrained(out, local_files_only=True).eval()
    ids = torch.randint(0, 320, (2, 12))
    with torch.no_grad():
        ours, theirs = model(ids), hf(ids).logits
    torch.testing.assert_close(theirs, ours, rtol=1e-4, atol=1e-5)

    # generation: transformers' greedy decoding continues the prompt as our argmax loop does
    prompt = ids[:1, :5]
    with torch.no_grad():
        generated = hf.generate(prompt, max_new_tokens=6, do_sample=False, pad_token_id=0)
        seq = prompt
        for _ in range(6):
            seq = torch.cat([seq, model(seq)[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(generated, seq)


def test_dense_tied_model_exports_too(tmp_path):
    transformers = require_transformers()
    torch.manual_seed(0)
    model = TransformerLM(ModelConfig(vocab_size=100, d_model=16, n_layers=1, n_heads=2, max_seq_len=16,
                                      tie_embeddings=True)).eval()
    export_hf_llama(model, tmp_path / "tied")
    hf = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "tied", local_files_only=True).eval()
    ids = torch.randint(0, 100, (1, 9))
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, model(ids), rtol=1e-4, atol=1e-5)


def test_export_refuses_a_file_as_the_output_folder(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(FileExistsError, match="not a directory"):
        export_hf_llama(leviathan_model(), path)
    with pytest.raises(TypeError, match="TransformerLM"):
        export_table_model(torch.nn.Linear(2, 2))
