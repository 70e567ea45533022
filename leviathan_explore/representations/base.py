"""What every representation module shares: id checks, the whole-vocabulary table, stage names."""

from __future__ import annotations

import torch
from torch import nn

from ..generator import check_token_ids


class Representation(nn.Module):
    """ids [...] -> [..., d_model]; subclasses define ``embed_ids``, ``stages`` and ``stage_params``."""

    LOOKUP_STAGES: tuple[str, ...] = ()

    def __init__(self, vocab_size: int, d_model: int):
        super().__init__()
        self.vocab_size, self.d_model = vocab_size, d_model

    def embed_ids(self, ids: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        check_token_ids(ids, self.vocab_size)
        return self.embed_ids(ids.long())

    @torch.no_grad()
    def table(self, chunk_size: int = 8192) -> torch.Tensor:
        """The whole vocabulary [V, D] in float32."""
        device = next(self.parameters()).device
        out = torch.empty(self.vocab_size, self.d_model, dtype=torch.float32, device=device)
        for start in range(0, self.vocab_size, chunk_size):
            ids = torch.arange(start, min(start + chunk_size, self.vocab_size), device=device)
            out[start:start + len(ids)] = self.embed_ids(ids).float()
        return out

    def stage_parameters(self) -> dict[str, int]:
        """Real parameter counts by stage (the analytic ``stage_params`` must equal it)."""
        out: dict[str, int] = {}
        for name, p in self.named_parameters():
            out[self.STAGE_OF[name]] = out.get(self.STAGE_OF[name], 0) + p.numel()
        return out
