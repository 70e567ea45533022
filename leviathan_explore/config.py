"""Model and generator settings: dataclasses, named presets, validation.

Every size a user can set is checked here, at the boundary, so that a bad value
gets a message naming the field and the allowed range instead of an index error
deep inside a kernel. Presets are data (a dict of keyword arguments), not
if-chains, in the manner of LitGPT's ``config.py``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from .files import InvalidJsonError, read_json

TokenRepr = Literal["table", "leviathan", "factorized", "codebooks", "hashed"]
TOKEN_REPRS: tuple[str, ...] = ("table", "leviathan", "factorized", "codebooks", "hashed")

# Vocabulary sizes of the tokenizers this project ships offline (bpe-openai).
TOKENIZER_VOCAB = {"gpt2": 50_257, "cl100k_base": 100_277, "o200k_base": 200_019}


class ConfigError(ValueError):
    """A setting a user chose is invalid. The message names the field and the allowed values."""

    def __init__(self, field_name: str, value: Any, allowed: str):
        self.field = field_name
        self.value = value
        self.allowed = allowed
        shown = field_name if str(field_name).isprintable() else repr(field_name)  # keep one line
        super().__init__(f"{shown}={value!r} is invalid: {allowed}")


def require_int(name: str, value: Any, minimum: int, maximum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(name, value, f"must be an integer >= {minimum}")
    if value < minimum or (maximum is not None and value > maximum):
        rng = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ConfigError(name, value, f"must be an integer {rng}")


def require_float(name: str, value: Any, minimum: float = 0.0, strict: bool = True) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(name, value, "must be a number")
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise ConfigError(name, value, "must be finite")
    if (strict and value <= minimum) or (not strict and value < minimum):
        raise ConfigError(name, value, f"must be {'>' if strict else '>='} {minimum}")


def read_settings_file(path: str | Path, field_name: str, missing: str) -> Any:
    """The parsed content of a JSON settings file a user names (a sweep's grid, a study's plan).

    ``FileNotFoundError`` "PATH: ``missing``" when it is absent; a ``ConfigError`` on
    ``field_name`` that names the file and where it breaks when it is not JSON.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {missing}")
    try:
        return read_json(path)
    except InvalidJsonError as exc:
        raise ConfigError(field_name, str(path), f"is not valid JSON ({exc.reason})") from None


def integer_base(vocab_size: int, k: int) -> int:
    """Smallest integer ``b >= 1`` with ``b**k >= vocab_size``, in exact integer arithmetic.

    A float cube root is off by one for perfect powers (``round(125 ** (1/3))`` is
    fine but ``int(216 ** (1/3))`` is 5), so the float guess is only a start.
    """
    require_int("vocab_size", vocab_size, 1)
    require_int("k", k, 1)
    b = max(1, int(round(vocab_size ** (1.0 / k))))
    while b > 1 and (b - 1) ** k >= vocab_size:
        b -= 1
    while b**k < vocab_size:
        b += 1
    return b


@dataclass(frozen=True)
class LeviathanConfig:
    """Settings of the continuous embedding generator (docs/method.md, "The generator").

    k: digits per token id (paper 3); d_seed: seed width (paper 128); n_modes: M
    (paper 8); n_knots: kappa, quadratic B-spline basis functions per coordinate
    (paper 32); rank: r of each separable mode (not pinned by the paper; 64).
    The ``*_init_std`` values are the initial scales of each parameter group.
    """

    k: int = 3
    d_seed: int = 128
    n_modes: int = 8
    n_knots: int = 32
    rank: int = 64
    codebook_init_std: float = 1.0
    seed_proj_init_std: float | None = None  # None: 1 / sqrt(d_seed)
    # std of Delta in S = 1 + Delta; None: sqrt(8 / d_seed), so that log|Psi| (a sum of
    # d_seed log-factors, each of variance ~0.59 std^2) starts with variance ~4.7 and tokens
    # start distinguishable. Measured by scripts/init_scale_experiment.py: 0.05 at
    # d_seed=32 left embeddings nearly identical across tokens and trained worse.
    spline_init_std: float | None = None
    out_init_std: float = 0.02
    layer_norm: bool = True  # stage 2's layer norm (an ablation turns it off: u = sigmoid(W z / 2))

    @property
    def delta_init_std(self) -> float:
        """The initial std of the spline coefficients' Delta (see ``spline_init_std``)."""
        return (8.0 / self.d_seed) ** 0.5 if self.spline_init_std is None else float(self.spline_init_std)

    def validate(self) -> "LeviathanConfig":
        require_int("leviathan.k", self.k, 1, 8)
        require_int("leviathan.d_seed", self.d_seed, 1, 4096)
        require_int("leviathan.n_modes", self.n_modes, 1, 256)
        require_int("leviathan.n_knots", self.n_knots, 3, 4096)
        require_int("leviathan.rank", self.rank, 1, 4096)
        require_float("leviathan.codebook_init_std", self.codebook_init_std)
        if self.seed_proj_init_std is not None:
            require_float("leviathan.seed_proj_init_std", self.seed_proj_init_std)
        if self.spline_init_std is not None:
            require_float("leviathan.spline_init_std", self.spline_init_std, strict=False)
        require_float("leviathan.out_init_std", self.out_init_std)
        if not isinstance(self.layer_norm, bool):
            raise ConfigError("leviathan.layer_norm", self.layer_norm, "must be true or false")
        return self


GENERATOR_IMPLS = ("auto", "reference", "sparse", "fused", "native", "triton")


@dataclass(frozen=True)
class GeneratorExecution:
    """How the generator computes (never what): every setting gives the same embeddings.

    impl: stage 3's path ("auto" picks the fastest correct one on the device: Triton on
    CUDA, the C kernel on CPUs, see kernels.default_impl); dedup: evaluate each distinct
    id of a batch once, then gather; table_cache: in eval mode without gradients, reuse a
    table of the whole vocabulary ("auto": on GPUs, and on CPUs up to a vocabulary of
    ``generator.TABLE_CACHE_CPU_MAX_VOCAB``).
    """

    impl: str = "auto"
    dedup: bool = True
    table_cache: bool | str = "auto"

    def validate(self) -> "GeneratorExecution":
        if self.impl not in GENERATOR_IMPLS:
            raise ConfigError("impl", self.impl, f"is not a generator implementation; allowed: {list(GENERATOR_IMPLS)}")
        if not isinstance(self.dedup, bool):
            raise ConfigError("dedup", self.dedup, "must be true or false")
        if self.table_cache not in (True, False, "auto"):
            raise ConfigError("table_cache", self.table_cache, "must be true, false or 'auto'")
        return self


@dataclass(frozen=True)
class ModelConfig:
    """A LLaMA-style decoder with a pluggable token representation.

    ``token_repr="table"`` is the dense baseline (an ``nn.Embedding``, optionally
    tied to the head); ``"leviathan"`` swaps the table for the generator, and
    ``"factorized"``, ``"codebooks"``, ``"hashed"`` for its neighbours (representations/);
    all but the table keep an untied head. The SwiGLU hidden width is ``ffn_hidden`` when set,
    else ``round(ffn_ratio * d_model)`` when ``ffn_ratio`` is set (the paper's models:
    4), else LLaMA's rule ``multiple_of * ceil((2/3 * 4 * d_model) / multiple_of)``.
    """

    vocab_size: int = 200_019
    d_model: int = 512
    n_layers: int = 6
    n_heads: int = 8
    n_kv_heads: int | None = None
    ffn_hidden: int | None = None
    ffn_ratio: float | None = None
    ffn_multiple_of: int = 256
    max_seq_len: int = 512
    token_repr: TokenRepr = "table"
    tie_embeddings: bool = False
    norm_eps: float = 1e-5
    rope_theta: float = 10_000.0
    init_std: float = 0.02
    leviathan: LeviathanConfig = field(default_factory=LeviathanConfig)
    # the neighbours (representations/): ALBERT's factor width E; hashed embeddings' buckets and hashes
    factorized_dim: int = 16
    hash_buckets: int = 1024
    hash_functions: int = 2
    hash_seed: int = 0

    # ---- derived sizes -------------------------------------------------------------
    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def kv_heads(self) -> int:
        return self.n_heads if self.n_kv_heads is None else self.n_kv_heads

    @property
    def ffn_dim(self) -> int:
        if self.ffn_hidden is not None:
            return self.ffn_hidden
        if self.ffn_ratio is not None:
            return max(1, round(self.ffn_ratio * self.d_model))
        hidden = int(2 * 4 * self.d_model / 3)
        m = self.ffn_multiple_of
        return m * ((hidden + m - 1) // m)

    @property
    def base(self) -> int:
        """The generator's digit base b = ceil(V^(1/k))."""
        return integer_base(self.vocab_size, self.leviathan.k)

    # ---- validation -----------------------------------------------------------------
    def validate(self) -> "ModelConfig":
        require_int("vocab_size", self.vocab_size, 1, 10_000_000)
        require_int("d_model", self.d_model, 2, 65_536)
        require_int("n_layers", self.n_layers, 0, 10_000)
        require_int("n_heads", self.n_heads, 1, 4096)
        if self.d_model % self.n_heads != 0:
            raise ConfigError("n_heads", self.n_heads, f"must divide d_model={self.d_model}")
        if self.head_dim % 2 != 0:
            raise ConfigError(
                "n_heads", self.n_heads,
                f"d_model/n_heads={self.head_dim} must be even for rotary embeddings",
            )
        if self.n_kv_heads is not None:
            require_int("n_kv_heads", self.n_kv_heads, 1, self.n_heads)
            if self.n_heads % self.n_kv_heads != 0:
                raise ConfigError("n_kv_heads", self.n_kv_heads, f"must divide n_heads={self.n_heads}")
        if self.ffn_hidden is not None:
            require_int("ffn_hidden", self.ffn_hidden, 1, 1_000_000)
        if self.ffn_ratio is not None:
            require_float("ffn_ratio", self.ffn_ratio)
            if self.ffn_ratio > 64:
                raise ConfigError("ffn_ratio", self.ffn_ratio, "must be in (0, 64]")
        require_int("ffn_multiple_of", self.ffn_multiple_of, 1, 65_536)
        require_int("max_seq_len", self.max_seq_len, 1, 1_048_576)
        if self.token_repr not in TOKEN_REPRS:
            raise ConfigError("token_repr", self.token_repr, f"must be one of {list(TOKEN_REPRS)}")
        if not isinstance(self.tie_embeddings, bool):
            raise ConfigError("tie_embeddings", self.tie_embeddings, "must be true or false")
        if self.token_repr != "table" and self.tie_embeddings:
            raise ConfigError("tie_embeddings", True, f"a {self.token_repr} model has no V x D table to tie; use false")
        require_int("factorized_dim", self.factorized_dim, 1, 65_536)
        require_int("hash_buckets", self.hash_buckets, 1, 100_000_000)
        require_int("hash_functions", self.hash_functions, 1, 16)
        require_int("hash_seed", self.hash_seed, 0)
        require_float("norm_eps", self.norm_eps)
        require_float("rope_theta", self.rope_theta)
        require_float("init_std", self.init_std)
        if not isinstance(self.leviathan, LeviathanConfig):
            raise ConfigError("leviathan", self.leviathan, "must be a LeviathanConfig")
        self.leviathan.validate()
        return self

    def __post_init__(self) -> None:
        self.validate()

    # ---- (de)serialisation ----------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        if not isinstance(d, dict):
            raise ConfigError("model", d, "must be a JSON object of model settings")
        d = dict(d)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(unknown[0], d[unknown[0]], f"is not a model setting; allowed: {sorted(known)}")
        lev = d.pop("leviathan", None)
        if lev is None:
            lev_cfg = LeviathanConfig()
        elif isinstance(lev, LeviathanConfig):
            lev_cfg = lev
        elif not isinstance(lev, dict):
            raise ConfigError("leviathan", lev, "must be a JSON object of generator settings")
        else:
            lknown = {f.name for f in dataclasses.fields(LeviathanConfig)}
            lunknown = sorted(set(lev) - lknown)
            if lunknown:
                raise ConfigError(f"leviathan.{lunknown[0]}", lev[lunknown[0]],
                                  f"is not a generator setting; allowed: {sorted(lknown)}")
            lev_cfg = LeviathanConfig(**lev)
        return cls(**d, leviathan=lev_cfg)

    def replace(self, **changes: Any) -> "ModelConfig":
        return replace(self, **changes)

    @classmethod
    def with_defaults(cls, saved: dict[str, Any]) -> dict[str, Any]:
        """A saved ``to_dict()`` with the fields it lacks at today's defaults: a run written before a
        setting existed trained with that setting's default (its checkpoints and sweep entries stay valid)."""
        full = {**cls().to_dict(), **saved}
        if isinstance(saved.get("leviathan"), dict):
            full["leviathan"] = {**dataclasses.asdict(LeviathanConfig()), **saved["leviathan"]}
        return full


# ---- presets ----------------------------------------------------------------------------
# Generator settings for CPU-sized models: the paper's structure, smaller widths.
CPU_GENERATOR = dict(k=3, d_seed=32, n_modes=4, n_knots=16, rank=16)

# The rule that reproduces the paper's published parameter counts (docs/method.md,
# "The paper's model sizes"): SwiGLU hidden 4D, untied head, o200k, the default generator.
_PAPER = dict(vocab_size=200_019, ffn_ratio=4.0, max_seq_len=512, tie_embeddings=False)

# Each preset is a *dense* model; its Leviathan variants come from params.isobody_match /
# params.isoparametric_match / params.backbone_match. ``vocab_size`` is the default: a run
# on compacted data replaces it with the data's vocabulary size. A name that carries a size
# carries the dense model's total, as ``leviathan-explore params`` prints it.
PRESETS: dict[str, dict[str, Any]] = {
    # CPU-sized: learns something visible in a couple of minutes on two cores.
    "cpu-tiny": dict(vocab_size=4_097, d_model=64, n_layers=2, n_heads=4, ffn_multiple_of=32,
                     max_seq_len=128, leviathan=CPU_GENERATOR),
    "cpu-small": dict(vocab_size=8_193, d_model=128, n_layers=4, n_heads=4, ffn_multiple_of=64,
                      max_seq_len=256, leviathan=CPU_GENERATOR),
    # The laptop study's regime: a 16,384-id vocabulary with its rare tail, where table and
    # head are most of the model (as at the paper's sizes); the generator ~4% of the table.
    "cpu-16k": dict(vocab_size=16_385, d_model=64, n_layers=2, n_heads=4, ffn_ratio=4.0,
                    max_seq_len=128, leviathan=CPU_GENERATOR),
    # The paper's models, reconstructed from its published counts.
    "paper-109m": dict(_PAPER, d_model=256, n_layers=6, n_heads=4),
    "paper-421m": dict(_PAPER, d_model=768, n_layers=12, n_heads=12),
    "paper-610m": dict(_PAPER, d_model=1024, n_layers=12, n_heads=16),
}

# What each preset is, one line; ``params`` prints it under the table.
PRESET_NOTES: dict[str, str] = {
    "cpu-tiny": "CPU-sized, not a paper model: a 4,096-id compacted vocabulary, width 64, 2 layers.",
    "cpu-small": "CPU-sized, not a paper model: an 8,192-id compacted vocabulary, width 128, 4 layers.",
    "cpu-16k": ("CPU-sized, not a paper model: the 16,384 most frequent o200k ids (+1 unknown), width 64, "
                "2 layers, SwiGLU 4D; table and head are 94% of it, as at the paper's 109M."),
    "paper-109m": ("the paper's 6-layer '109M' dense model (width 256, SwiGLU 4D, untied, o200k); its "
                   "isoparametric Leviathan (53 layers is closest here, 52 gives 108.1M) is the paper's 52-layer "
                   "'108.5M' and its iso-body Leviathan the paper's '~60M'."),
    "paper-421m": ("the paper's '421M' dense model (width 768, 12 layers, SwiGLU 4D, untied, o200k); its "
                   "isoparametric Leviathan (28 layers) is the paper's '421M' Leviathan."),
    "paper-610m": ("the dense model (width 1024, 12 layers, SwiGLU 4D, untied, o200k) whose iso-body "
                   "Leviathan is the paper's '~410M' iso-body model."),
}
RECONSTRUCTED = "a reconstruction from the paper's published counts: its configuration table is not public"


def preset_note(name: str) -> str:
    """One line on what a preset is (and, for the paper's models, that it is a reconstruction)."""
    note = PRESET_NOTES.get(name, "")
    return f"{name}: {note}" + (f" This is {RECONSTRUCTED}." if name.startswith("paper-") else "")


def preset(name: str, **overrides: Any) -> ModelConfig:
    """The dense ``ModelConfig`` of a named preset, with optional overrides."""
    if name not in PRESETS:
        raise ConfigError("preset", name, f"must be one of {sorted(PRESETS)}")
    d = dict(PRESETS[name])
    lev = d.pop("leviathan", {})
    lev_over = overrides.pop("leviathan", None)
    lev_cfg = LeviathanConfig(**lev) if not isinstance(lev_over, LeviathanConfig) else lev_over
    if isinstance(lev_over, dict):
        lev_cfg = LeviathanConfig(**{**lev, **lev_over})
    d.update(overrides)
    return ModelConfig(**d, leviathan=lev_cfg)
