"""``TrainConfig``: every setting a training run needs, validated at the boundary.

A run's ``config.json`` is ``TrainConfig.to_dict()``; together with the data
directory it rebuilds the model and the exact data order (the order is a pure
function of ``seed``, ``batch_size``, ``seq_len`` and ``grad_accum``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..config import PRESETS, ConfigError, require_float, require_int
from ..params import MATCHES as PARAM_MATCHES

ARCHS = ("dense", "leviathan")
MATCHES = (None, *PARAM_MATCHES)
MATCH_BYS = ("depth", "width", "ffn")
DEVICES = ("auto", "cpu", "cuda")

# Keys ``config.json`` holds next to the settings (derived, for readers): ignored by from_dict.
DERIVED_KEYS = ("model_config", "world_size")

# Settings whose change would make a resumed run differ from the uninterrupted one.
RESUME_CRITICAL = ("arch", "preset", "match", "match_by", "model", "batch_size", "seq_len", "grad_accum",
                   "seed", "lr", "min_lr_ratio", "warmup_steps", "weight_decay", "grad_clip", "tie_embeddings")


@dataclass
class TrainConfig:
    """One training run.

    ``batch_size`` is the global number of sequences per optimizer step per micro-batch;
    with ``grad_accum`` micro-batches a step sees ``batch_size * grad_accum * seq_len``
    tokens. Under ``torchrun`` each rank takes its slice of every micro-batch.
    ``seq_len=None`` uses the preset's ``max_seq_len``; ``warmup_steps=None`` uses
    5% of ``steps``; ``match=None`` means "isoparam" for Leviathan and nothing for dense.
    ``tie_embeddings`` ties the dense model's table to its head; for Leviathan (always
    untied) it selects the tied dense model as the reference that ``match`` matches.
    ``match="backbone"`` (the paper's revision) is the same-body Leviathan, whose
    reference is always the tied dense model.
    """

    arch: str = "dense"
    preset: str = "cpu-tiny"
    match: str | None = None
    match_by: str = "depth"
    model: dict[str, Any] = field(default_factory=dict)
    steps: int = 300
    batch_size: int = 16
    seq_len: int | None = None
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int | None = None
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    grad_accum: int = 1
    eval_every: int = 50
    eval_batches: int = 8
    checkpoint_every: int = 100
    log_every: int = 10
    device: str = "auto"
    compile: bool = False
    seed: int = 0
    data_dir: str = ""
    out_dir: str = ""
    resume: bool = False
    tie_embeddings: bool = False
    keep_checkpoints: int = 2
    progress: bool = True

    def __post_init__(self) -> None:
        if self.arch == "leviathan" and self.match is None:
            self.match = "isoparam"
        self.validate()

    # ---- derived ---------------------------------------------------------------------
    @property
    def effective_seq_len(self) -> int:
        if self.seq_len is not None:
            return self.seq_len
        return int(PRESETS[self.preset].get("max_seq_len", 512))

    @property
    def effective_warmup_steps(self) -> int:
        return self.warmup_steps if self.warmup_steps is not None else max(1, self.steps // 20)

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.grad_accum * self.effective_seq_len

    # ---- validation --------------------------------------------------------------------
    def validate(self) -> "TrainConfig":
        if self.arch not in ARCHS:
            raise ConfigError("arch", self.arch, f"must be one of {list(ARCHS)}")
        if self.preset not in PRESETS:
            raise ConfigError("preset", self.preset, f"must be one of {sorted(PRESETS)}")
        if self.match not in MATCHES:
            raise ConfigError("match", self.match, f"must be one of {list(PARAM_MATCHES)} or none")
        if self.arch == "dense" and self.match is not None:
            raise ConfigError("match", self.match, "applies to --arch leviathan only; leave it unset for dense")
        if self.match_by not in MATCH_BYS:
            raise ConfigError("match_by", self.match_by, f"must be one of {list(MATCH_BYS)}")
        if not isinstance(self.model, dict):
            raise ConfigError("model", self.model, "must be a dict of ModelConfig overrides")
        require_int("steps", self.steps, 1)
        require_int("batch_size", self.batch_size, 1)
        if self.seq_len is not None:
            require_int("seq_len", self.seq_len, 1, 1_048_576)
        require_float("lr", self.lr)
        require_float("min_lr_ratio", self.min_lr_ratio, strict=False)
        if self.min_lr_ratio > 1:
            raise ConfigError("min_lr_ratio", self.min_lr_ratio, "must be in [0, 1]")
        if self.warmup_steps is not None:
            require_int("warmup_steps", self.warmup_steps, 0)
        require_float("weight_decay", self.weight_decay, strict=False)
        require_float("grad_clip", self.grad_clip, strict=False)  # 0 disables clipping
        require_int("grad_accum", self.grad_accum, 1)
        require_int("eval_every", self.eval_every, 1)
        require_int("eval_batches", self.eval_batches, 1)
        require_int("checkpoint_every", self.checkpoint_every, 1)
        require_int("log_every", self.log_every, 1)
        require_int("seed", self.seed, 0)
        require_int("keep_checkpoints", self.keep_checkpoints, 1)
        if self.device not in DEVICES:
            raise ConfigError("device", self.device, f"must be one of {list(DEVICES)}")
        for name in ("compile", "resume", "tie_embeddings", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(name, getattr(self, name), "must be true or false")
        return self

    # ---- (de)serialisation ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        if not isinstance(d, dict):
            raise ConfigError("train config", d, "must be a JSON object")
        d = {k: v for k, v in d.items() if k not in DERIVED_KEYS}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(unknown[0], d[unknown[0]], f"is not a training setting; allowed: {sorted(known)}")
        return cls(**d)

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)
