"""A LLaMA-style decoder with a pluggable token representation.

Semantics follow Hugging Face ``modeling_llama.py`` exactly (RMSNorm computed in
float32 then cast back before the weight, rotary embeddings in the
"rotate-half" layout, SwiGLU as ``down(silu(gate(x)) * up(x))``, no biases),
and module names are HF's without the ``model.`` prefix, so dense weights map
one-to-one (``to_hf_llama_state_dict`` / ``from_hf_llama_state_dict``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .generator import LeviathanGenerator, TokenIdError, check_token_ids
from .loss import chunked_cross_entropy  # noqa: F401 - part of the model's public surface


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(dtype)


def rotary_cos_sin(seq_len: int, head_dim: int, theta: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin [T, head_dim] in float32, HF layout: the frequencies repeated twice."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64, device=device).float() / head_dim))
    freqs = torch.outer(torch.arange(seq_len, device=device, dtype=torch.float32), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, H, T, hd]; cos/sin [T, hd]."""
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return x * cos + rotate_half(x) * sin


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads, self.n_kv, self.hd = cfg.n_heads, cfg.kv_heads, cfg.head_dim
        self.q_proj = nn.Linear(cfg.d_model, self.n_heads * self.hd, bias=False)
        self.k_proj = nn.Linear(cfg.d_model, self.n_kv * self.hd, bias=False)
        self.v_proj = nn.Linear(cfg.d_model, self.n_kv * self.hd, bias=False)
        self.o_proj = nn.Linear(self.n_heads * self.hd, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_heads, self.hd).transpose(1, 2)  # [B, H, T, hd]
        k = self.k_proj(x).view(B, T, self.n_kv, self.hd).transpose(1, 2)     # [B, Hkv, T, hd]
        v = self.v_proj(x).view(B, T, self.n_kv, self.hd).transpose(1, 2)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if self.n_kv != self.n_heads:  # grouped-query heads: HF's repeat_kv
            rep = self.n_heads // self.n_kv
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # flash attention on GPUs
        return self.o_proj(y.transpose(1, 2).reshape(B, T, self.n_heads * self.hd))


class SwiGLU(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.d_model, cfg.ffn_dim, bias=False)
        self.up_proj = nn.Linear(cfg.d_model, cfg.ffn_dim, bias=False)
        self.down_proj = nn.Linear(cfg.ffn_dim, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.mlp = SwiGLU(cfg)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


class TransformerLM(nn.Module):
    """ids [B, T] -> logits [B, T, V], or the next-token loss when ``targets`` is given."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        if cfg.token_repr == "table":
            self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.d_model)
        elif cfg.token_repr == "leviathan":
            self.generator = LeviathanGenerator(cfg.vocab_size, cfg.d_model, cfg.leviathan)
        else:  # a neighbour of the generator (representations/)
            from .representations import build_representation

            self.represent = build_representation(cfg)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.reset_parameters()
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight

    def reset_parameters(self) -> None:
        std = self.cfg.init_std
        residual_std = std / math.sqrt(2 * max(1, self.cfg.n_layers))
        for name, p in self.named_parameters():
            if name.startswith(("generator.", "represent.")):
                continue
            if name.endswith(("o_proj.weight", "down_proj.weight")):
                nn.init.normal_(p, 0.0, residual_std)
            elif p.dim() >= 2:
                nn.init.normal_(p, 0.0, std)
            else:
                nn.init.ones_(p)  # RMSNorm weights
        if self.cfg.token_repr == "leviathan":
            self.generator.reset_parameters()
        elif self.cfg.token_repr != "table":
            self.represent.reset_parameters()

    # ---- forward ----------------------------------------------------------------------
    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """ids [B, T] -> token representations [B, T, D] entering the residual stream."""
        if self.cfg.token_repr == "table":
            check_token_ids(ids, self.cfg.vocab_size)
            # nn.Embedding takes int32/int64 only
            return self.embed_tokens(ids if ids.dtype in (torch.int32, torch.int64) else ids.long())
        if self.cfg.token_repr == "leviathan":
            return self.generator(ids)
        return self.represent(ids)

    @property
    def token_representation(self) -> nn.Module:
        """The module that turns ids into input vectors (table, generator or a neighbour)."""
        return {"table": lambda: self.embed_tokens, "leviathan": lambda: self.generator}.get(
            self.cfg.token_repr, lambda: self.represent)()

    def hidden_states(self, ids: torch.Tensor) -> torch.Tensor:
        """ids [B, T] -> final-normed hidden states [B, T, D]."""
        if not isinstance(ids, torch.Tensor):
            raise TokenIdError(f"token ids must be a torch.Tensor of integers, got {type(ids).__name__}")
        if ids.dim() != 2:
            raise ValueError(f"ids must have shape [batch, seq], got {tuple(ids.shape)}")
        x = self.embed(ids)
        if torch.is_autocast_enabled(x.device.type):
            x = x.to(torch.get_autocast_dtype(x.device.type))
        cos, sin = rotary_cos_sin(ids.shape[1], self.cfg.head_dim, self.cfg.rope_theta, ids.device)
        for layer in self.layers:
            x = layer(x, cos, sin)
        return self.norm(x)

    def forward(self, ids: torch.Tensor, targets: torch.Tensor | None = None,
                reduction: str = "mean") -> torch.Tensor:
        h = self.hidden_states(ids)
        if targets is None:
            return self.lm_head(h)
        if not isinstance(targets, torch.Tensor) or targets.shape != ids.shape:
            raise ValueError(f"targets shape {tuple(getattr(targets, 'shape', ()))} must equal ids shape {tuple(ids.shape)}")
        check_token_ids(targets, self.cfg.vocab_size)
        loss = chunked_cross_entropy(h.reshape(-1, h.shape[-1]), self.lm_head.weight,
                                     targets.reshape(-1).long(), reduction=reduction)
        return loss.view(targets.shape) if reduction == "none" else loss


# ---- Hugging Face Llama weight mapping ------------------------------------------------------

def hf_llama_config(cfg: ModelConfig) -> dict[str, Any]:
    """The ``transformers.LlamaConfig`` keyword arguments of a dense configuration."""
    if cfg.token_repr != "table":
        raise ValueError("only a table model maps to Llama; export a Leviathan model to a table first")
    return dict(
        vocab_size=cfg.vocab_size, hidden_size=cfg.d_model, intermediate_size=cfg.ffn_dim,
        num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.kv_heads, head_dim=cfg.head_dim, hidden_act="silu",
        max_position_embeddings=cfg.max_seq_len, rms_norm_eps=cfg.norm_eps, rope_theta=cfg.rope_theta,
        tie_word_embeddings=cfg.tie_embeddings, attention_bias=False, mlp_bias=False,
        initializer_range=cfg.init_std,
    )


def to_hf_llama_state_dict(model: TransformerLM) -> dict[str, torch.Tensor]:
    """Our dense weights under HF ``LlamaForCausalLM`` names."""
    if model.cfg.token_repr != "table":
        raise ValueError("only a table model maps to Llama; export a Leviathan model to a table first")
    out = {}
    for name, t in model.state_dict().items():
        out[name if name.startswith("lm_head.") else f"model.{name}"] = t
    if model.cfg.tie_embeddings:
        out.pop("lm_head.weight", None)
    return out


def from_hf_llama_state_dict(state: dict[str, torch.Tensor], cfg: ModelConfig) -> TransformerLM:
    """Build a dense ``TransformerLM`` from HF ``LlamaForCausalLM`` weights."""
    model = TransformerLM(cfg)
    ours = {}
    for name, t in state.items():
        if name.endswith("rotary_emb.inv_freq"):
            continue
        ours[name[len("model."):] if name.startswith("model.") else name] = t
    if cfg.tie_embeddings:
        ours.setdefault("lm_head.weight", ours["embed_tokens.weight"])
    missing, unexpected = model.load_state_dict(ours, strict=False)
    if missing or unexpected:
        raise ValueError(f"state dict does not match the configuration: missing {missing}, unexpected {unexpected}")
    return model
