"""``TrainConfig``: every setting a training run needs, grouped by concern, validated at the boundary.

The settings fall into seven sections, one per component that uses them::

    architecture  arch, preset, match, match_by, overrides (flat: model), tie_embeddings
    optim         lr, weight_decay, grad_clip
    schedule      steps, warmup_steps, min_lr_ratio
    data          dir (flat: data_dir), batch_size, seq_len, grad_accum
    eval          every (flat: eval_every), batches (flat: eval_batches)
    checkpoint    every (flat: checkpoint_every), keep (flat: keep_checkpoints), resume
    run           out_dir, device, compile, log_every, progress, seed

Every setting also has one flat name (``cfg.lr`` is ``cfg.optim.lr``): ``TrainConfig(lr=...)``
takes the flat names, and a run's ``config.json`` is the flat ``to_dict()`` (what every
committed run and every reader of run directories knows). ``from_dict`` reads the flat
form, the nested one (``to_nested_dict()``), or a mix. Together with the data directory a
``config.json`` rebuilds the model and the exact data order (the order is a pure function
of ``seed``, ``batch_size``, ``seq_len`` and ``grad_accum``).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from ..config import PRESETS, ConfigError, require_float, require_int
from ..params import MATCHES as PARAM_MATCHES

Arch = Literal["dense", "leviathan", "factorized", "codebooks", "hashed"]  # dense, or what replaces its table
Match = Literal["isobody", "isoparam", "backbone"]
MatchBy = Literal["depth", "width", "ffn"]
Device = Literal["auto", "cpu", "cuda"]

ARCHS: tuple[str, ...] = get_args(Arch)
MATCHES = (None, *PARAM_MATCHES)
MATCH_BYS: tuple[str, ...] = get_args(MatchBy)
DEVICES: tuple[str, ...] = get_args(Device)

# Keys ``config.json`` holds next to the settings (derived, for readers): ignored by from_dict.
DERIVED_KEYS = ("model_config", "world_size")

# Settings whose change would make a resumed run differ from the uninterrupted one.
RESUME_CRITICAL = ("arch", "preset", "match", "match_by", "model", "batch_size", "seq_len", "grad_accum",
                   "seed", "lr", "min_lr_ratio", "warmup_steps", "weight_decay", "grad_clip", "tie_embeddings")


# ---- the sections ------------------------------------------------------------------------------

@dataclass
class ArchitectureSettings:
    """Which model is trained. ``match=None`` means "isoparam" for Leviathan and nothing for dense.

    ``tie_embeddings`` ties the dense model's table to its head; for Leviathan (always
    untied) it selects the tied dense model as the reference that ``match`` matches.
    ``match="backbone"`` (the paper's revision) is the same-body Leviathan, whose
    reference is always the tied dense model.
    """

    arch: Arch = "dense"
    preset: str = "cpu-tiny"
    match: Match | None = None
    match_by: MatchBy = "depth"
    overrides: dict[str, Any] = field(default_factory=dict)  # ModelConfig fields over the preset's
    tie_embeddings: bool = False


@dataclass
class OptimSettings:
    """AdamW (decay on matrices only) and gradient-norm clipping; ``grad_clip=0`` disables it."""

    lr: float = 3e-3
    weight_decay: float = 0.1
    grad_clip: float = 1.0


@dataclass
class ScheduleSettings:
    """Linear warm-up then cosine decay to ``min_lr_ratio * lr``; ``warmup_steps=None`` is 5% of ``steps``."""

    steps: int = 300
    warmup_steps: int | None = None
    min_lr_ratio: float = 0.1


@dataclass
class DataSettings:
    """The token data and how a step reads it.

    ``batch_size`` is the global number of sequences per micro-batch; with
    ``grad_accum`` micro-batches a step sees ``batch_size * grad_accum * seq_len`` tokens.
    Under ``torchrun`` each rank takes its slice of every micro-batch.
    ``seq_len=None`` uses the preset's ``max_seq_len``.
    """

    dir: str = ""
    batch_size: int = 16
    seq_len: int | None = None
    grad_accum: int = 1


@dataclass
class EvalSettings:
    """Validation every ``every`` steps (and at the last) on ``batches * batch_size`` fixed sequences."""

    every: int = 50
    batches: int = 8


@dataclass
class CheckpointSettings:
    """A checkpoint every ``every`` steps (and at the last, or on a stop); the newest ``keep`` are kept."""

    every: int = 100
    keep: int = 2
    resume: bool = False


@dataclass
class RunSettings:
    """Where the run is written and how this process runs it; ``seed`` fixes the model's
    initialisation and the data order."""

    out_dir: str = ""
    device: Device = "auto"
    compile: bool = False
    log_every: int = 10
    progress: bool = True
    seed: int = 0


SECTIONS: dict[str, type] = {"architecture": ArchitectureSettings, "optim": OptimSettings,
                             "schedule": ScheduleSettings, "data": DataSettings, "eval": EvalSettings,
                             "checkpoint": CheckpointSettings, "run": RunSettings}


class _Flat:
    """The flat name of one nested setting: ``cfg.lr`` reads and writes ``cfg.optim.lr``."""

    def __init__(self, section: str, name: str):
        self.section, self.name = section, name

    def __set_name__(self, owner: type, flat: str) -> None:
        self.flat = flat

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        return getattr(getattr(obj, self.section), self.name)

    def __set__(self, obj: Any, value: Any) -> None:
        setattr(getattr(obj, self.section), self.name, value)


# ---- the configuration ---------------------------------------------------------------------------

@dataclass(init=False)
class TrainConfig:
    """One training run: seven sections of settings (see the module docstring).

    ``TrainConfig(arch="leviathan", steps=100, lr=1e-3)`` takes the flat names; a section
    may be given whole (``optim=OptimSettings(lr=1e-3)``), flat names then apply on top.
    """

    architecture: ArchitectureSettings
    optim: OptimSettings
    schedule: ScheduleSettings
    data: DataSettings
    eval: EvalSettings
    checkpoint: CheckpointSettings
    run: RunSettings

    # The flat names, in the order of config.json.
    arch = _Flat("architecture", "arch")
    preset = _Flat("architecture", "preset")
    match = _Flat("architecture", "match")
    match_by = _Flat("architecture", "match_by")
    model = _Flat("architecture", "overrides")
    steps = _Flat("schedule", "steps")
    batch_size = _Flat("data", "batch_size")
    seq_len = _Flat("data", "seq_len")
    lr = _Flat("optim", "lr")
    min_lr_ratio = _Flat("schedule", "min_lr_ratio")
    warmup_steps = _Flat("schedule", "warmup_steps")
    weight_decay = _Flat("optim", "weight_decay")
    grad_clip = _Flat("optim", "grad_clip")
    grad_accum = _Flat("data", "grad_accum")
    eval_every = _Flat("eval", "every")
    eval_batches = _Flat("eval", "batches")
    checkpoint_every = _Flat("checkpoint", "every")
    log_every = _Flat("run", "log_every")
    device = _Flat("run", "device")
    compile = _Flat("run", "compile")
    seed = _Flat("run", "seed")
    data_dir = _Flat("data", "dir")
    out_dir = _Flat("run", "out_dir")
    resume = _Flat("checkpoint", "resume")
    tie_embeddings = _Flat("architecture", "tie_embeddings")
    keep_checkpoints = _Flat("checkpoint", "keep")
    progress = _Flat("run", "progress")

    def __init__(self, **settings: Any) -> None:
        for name, section_type in SECTIONS.items():
            given = settings.pop(name, None)
            if given is not None and not isinstance(given, section_type):
                raise TypeError(f"TrainConfig({name}=...) takes a {section_type.__name__}, got {type(given).__name__}")
            # a copy: replace() and from_dict() must not share a section with the config they came from
            setattr(self, name, dataclasses.replace(given) if given is not None else section_type())
        for flat, value in settings.items():
            if flat not in FLAT_SETTINGS:
                raise TypeError(f"TrainConfig() got an unexpected keyword argument {flat!r}")
            setattr(self, flat, value)
        if self.arch != "dense" and self.match is None:
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
    def samples_per_step(self) -> int:
        return self.batch_size * self.grad_accum

    @property
    def tokens_per_step(self) -> int:
        return self.samples_per_step * self.effective_seq_len

    # ---- validation --------------------------------------------------------------------
    def validate(self) -> "TrainConfig":
        """Raise ``ConfigError`` naming the first bad setting (by its flat name) and what is allowed."""
        if self.arch not in ARCHS:
            raise ConfigError("arch", self.arch, f"must be one of {list(ARCHS)}")
        if self.preset not in PRESETS:
            raise ConfigError("preset", self.preset, f"must be one of {sorted(PRESETS)}")
        if self.match not in MATCHES:
            raise ConfigError("match", self.match, f"must be one of {list(PARAM_MATCHES)} or none")
        if self.arch == "dense" and self.match is not None:
            raise ConfigError("match", self.match, "applies to --arch leviathan (or another representation) only; "
                                                   "leave it unset for dense")
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
        """The flat form (``config.json``): ``{"arch": ..., "lr": ..., ...}``."""
        return {flat: copy.deepcopy(getattr(self, flat)) for flat in FLAT_SETTINGS}

    def to_nested_dict(self) -> dict[str, Any]:
        """The nested form: ``{"architecture": {...}, "optim": {"lr": ...}, ...}``."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """A config from its flat or nested form (``config.json`` keys ``DERIVED_KEYS`` are ignored)."""
        return cls(**flatten_settings(d))

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)


FLAT_SETTINGS: dict[str, tuple[str, str]] = {flat: (attr.section, attr.name) for flat, attr in vars(TrainConfig).items()
                                             if isinstance(attr, _Flat)}


def flatten_settings(d: dict[str, Any], *, strict: bool = True) -> dict[str, Any]:
    """The flat settings of a flat, nested or mixed dict, unvalidated (``DERIVED_KEYS`` dropped).

    Raises ``ConfigError`` naming a key that is no setting (``strict=False``: skipped, for
    reading a ``config.json`` some other version wrote), a section that is not an object,
    or a setting given twice.
    """
    if not isinstance(d, dict):
        raise ConfigError("train config", d, "must be a JSON object")
    unknown = sorted(set(d) - set(FLAT_SETTINGS) - set(SECTIONS) - set(DERIVED_KEYS))
    if unknown and strict:
        raise ConfigError(unknown[0], d[unknown[0]], f"is not a training setting; allowed: {sorted(FLAT_SETTINGS)}")
    flat_of = {where: flat for flat, where in FLAT_SETTINGS.items()}
    out: dict[str, Any] = {}
    for key, value in d.items():
        if key in DERIVED_KEYS or key in unknown:
            continue
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(key, value, f"must be an object of {key} settings")
            allowed = sorted(f.name for f in dataclasses.fields(SECTIONS[key]))
            for name, inner in value.items():
                if (key, name) not in flat_of:
                    if not strict:
                        continue
                    raise ConfigError(f"{key}.{name}", inner, f"is not a setting of {key}; allowed: {allowed}")
                flat = flat_of[(key, name)]
                if flat in out:
                    raise ConfigError(f"{key}.{name}", inner, f"is given twice (also as {flat!r}); give it once")
                out[flat] = inner
        else:
            if key in out:
                section, name = FLAT_SETTINGS[key]
                raise ConfigError(key, value, f"is given twice (also as {section}.{name}); give it once")
            out[key] = value
    return out


__all__ = ["TrainConfig", "ArchitectureSettings", "OptimSettings", "ScheduleSettings", "DataSettings",
           "EvalSettings", "CheckpointSettings", "RunSettings", "SECTIONS", "FLAT_SETTINGS", "flatten_settings",
           "ARCHS", "MATCHES", "MATCH_BYS", "DEVICES", "RESUME_CRITICAL", "DERIVED_KEYS"]
