"""leviathan-explore: the Leviathan continuous token-embedding generator, made tangible."""

from .config import ConfigError, LeviathanConfig, ModelConfig, PRESETS, preset
from .generator import LeviathanGenerator, TokenIdError
from .model import TransformerLM
from .params import count_params, isobody_match, isoparametric_match

__version__ = "0.1.0"

__all__ = ["ConfigError", "LeviathanConfig", "ModelConfig", "PRESETS", "preset", "LeviathanGenerator",
           "TokenIdError", "TransformerLM", "count_params", "isobody_match", "isoparametric_match"]
