"""Turn a trained Leviathan model into a plain table model and a Hugging Face Llama checkpoint.

At inference the generator is a fixed function of the token id, so its whole
output ``generator.table()`` [V, D] can stand in for it: ``export_table_model``
builds the dense ``TransformerLM`` with that table as ``embed_tokens`` and every
other weight copied, and ``export_hf_llama`` writes it as ``model.safetensors`` +
``config.json`` for ``transformers.LlamaForCausalLM.from_pretrained``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from .model import TransformerLM, hf_llama_config, to_hf_llama_state_dict
from .params import real_param_count

# The files of a Hugging Face model folder (``from_pretrained`` reads them), not a run directory's.
HF_WEIGHTS_FILE, HF_CONFIG_FILE = "model.safetensors", "config.json"


@torch.no_grad()
def export_table_model(model: TransformerLM) -> TransformerLM:
    """A table model whose logits equal ``model``'s: ``embed_tokens = generator.table()``.

    A table model is returned as an independent copy. The result is on the same
    device and in the same train/eval mode as ``model``; the head stays untied.
    """
    if not isinstance(model, TransformerLM):
        raise TypeError(f"export_table_model needs a TransformerLM, got {type(model).__name__}")
    cfg = model.cfg.replace(token_repr="table", tie_embeddings=model.cfg.tie_embeddings
                            if model.cfg.token_repr == "table" else False)
    device = next(model.parameters()).device
    with torch.device("meta"):
        table_model = TransformerLM(cfg)  # no initialisation cost: every weight is loaded below
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("generator.")}
    if model.cfg.token_repr == "leviathan":
        state["embed_tokens.weight"] = model.generator.table()
    table_model.load_state_dict({k: v.detach().clone() for k, v in state.items()}, assign=True)
    if cfg.tie_embeddings:
        table_model.lm_head.weight = table_model.embed_tokens.weight
    return table_model.to(device).train(model.training)


def _atomic_write(path: Path, write) -> None:
    """Write ``path`` through a temporary file in the same folder, then rename it into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def export_hf_llama(model: TransformerLM, out_dir: str | os.PathLike) -> dict[str, Any]:
    """Write ``model`` (Leviathan or table) as a Hugging Face Llama checkpoint in ``out_dir``.

    Files: ``model.safetensors`` (float32 weights under ``LlamaForCausalLM`` names)
    and ``config.json``. Returns the paths and both parameter counts: the model as
    trained (``source_params``) and as exported (``exported_params``).
    """
    from safetensors.torch import save_file

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a directory; give a directory for the checkpoint")
    out.mkdir(parents=True, exist_ok=True)
    table_model = export_table_model(model)
    state = {k: v.detach().float().cpu().contiguous() for k, v in to_hf_llama_state_dict(table_model).items()}
    config = {**hf_llama_config(table_model.cfg), "architectures": ["LlamaForCausalLM"],
              "model_type": "llama", "torch_dtype": "float32"}
    weights_path, config_path = out / HF_WEIGHTS_FILE, out / HF_CONFIG_FILE
    _atomic_write(weights_path, lambda p: save_file(state, p, metadata={"format": "pt"}))
    _atomic_write(config_path, lambda p: Path(p).write_text(json.dumps(config, indent=2) + "\n"))
    return {
        "weights": str(weights_path),
        "config": str(config_path),
        "source_params": real_param_count(model).to_dict(),
        "exported_params": real_param_count(table_model).to_dict(),
    }
