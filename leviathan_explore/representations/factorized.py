"""ALBERT's factorised embedding: a V x E table, then an E x D projection (Lan et al. 2020)."""

from __future__ import annotations

import math

import torch
from torch import nn

from .base import Representation


class FactorizedTable(Representation):
    """e(i) = T[i] P, with T [V, E] and P [E, D]; E = ``cfg.factorized_dim``."""

    LOOKUP_STAGES = ("table",)
    STAGE_OF = {"rows": "table", "projection": "projection"}

    def __init__(self, cfg):
        super().__init__(cfg.vocab_size, cfg.d_model)
        self.dim = cfg.factorized_dim
        self.init_std = cfg.init_std
        self.rows = nn.Parameter(torch.empty(cfg.vocab_size, self.dim))      # T: [V, E]
        self.projection = nn.Parameter(torch.empty(self.dim, cfg.d_model))  # P: [E, D]
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            nn.init.normal_(self.rows, 0.0, 1.0)
            nn.init.normal_(self.projection, 0.0, self.init_std / math.sqrt(self.dim))  # e ~ N(0, init_std^2)

    @staticmethod
    def stage_params(cfg) -> dict[str, int]:
        return {"table": cfg.vocab_size * cfg.factorized_dim, "projection": cfg.factorized_dim * cfg.d_model}

    def embed_ids(self, ids: torch.Tensor) -> torch.Tensor:
        return self.rows[ids] @ self.projection

    def stages(self, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        row = self.rows[ids.long()]
        return {"table row [E]": row, "embedding [D]": row @ self.projection}
