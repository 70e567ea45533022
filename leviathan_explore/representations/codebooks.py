"""The generator's stage 1 alone: k digit codebooks summed, projected to D.

Leviathan without its seed projection and spline modes: id ``i`` is written in base
``b = ceil(V^(1/k))`` (the generator's digits), ``z = sum_j C_j[i_j]`` and ``e = z W``. With
k = 2 this is the quotient-remainder embedding of Shi et al. (2020), summed rather than
multiplied. Whether the spline stages add anything over this is what it is here to test.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import integer_base
from .base import Representation


class CodebookRepresentation(Representation):
    """e(i) = (C_1[i_1] + ... + C_k[i_k]) W, codebooks [k, b, d_seed], W [d_seed, D]."""

    LOOKUP_STAGES = ("codebooks",)
    STAGE_OF = {"codebooks": "codebooks", "projection": "projection"}

    def __init__(self, cfg):
        super().__init__(cfg.vocab_size, cfg.d_model)
        lev = cfg.leviathan
        self.k, self.d_seed = lev.k, lev.d_seed
        self.base = integer_base(cfg.vocab_size, lev.k)
        self.init_std, self.codebook_std = cfg.init_std, lev.codebook_init_std
        self.register_buffer("place_values", torch.tensor([self.base ** (self.k - 1 - j) for j in range(self.k)]),
                             persistent=False)
        self.codebooks = nn.Parameter(torch.empty(self.k, self.base, self.d_seed))   # C_j: [k, b, d_seed]
        self.projection = nn.Parameter(torch.empty(self.d_seed, cfg.d_model))      # W: [d_seed, D]
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            nn.init.normal_(self.codebooks, 0.0, self.codebook_std)
            # z has variance k * codebook_std^2: scale W so that e starts at ~init_std
            nn.init.normal_(self.projection, 0.0, self.init_std / (self.codebook_std * math.sqrt(self.k * self.d_seed)))

    @staticmethod
    def stage_params(cfg) -> dict[str, int]:
        lev = cfg.leviathan
        b = integer_base(cfg.vocab_size, lev.k)
        return {"codebooks": lev.k * b * lev.d_seed, "projection": lev.d_seed * cfg.d_model}

    def digits(self, ids: torch.Tensor) -> torch.Tensor:
        return (ids.long().unsqueeze(-1) // self.place_values) % self.base                # [..., k]

    def seed(self, ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(self.k, device=ids.device)
        return self.codebooks[positions, self.digits(ids)].sum(-2)                         # [..., d_seed]

    def embed_ids(self, ids: torch.Tensor) -> torch.Tensor:
        return self.seed(ids) @ self.projection

    def stages(self, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.seed(ids)
        return {"digits [k]": self.digits(ids), "seed z [d_seed]": z, "embedding [D]": z @ self.projection}
