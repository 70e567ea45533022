"""Training: trainer, schedule, optimizer, checkpoints, run directories, distributed launch."""

from .callbacks import Callback, TrainCallback
from .checkpoint import (Checkpointer, CheckpointError, find_latest_checkpoint, list_checkpoints, save_checkpoint,
                         verify_checkpoint)
from .compare import compare, format_comparison
from .config import TrainConfig
from .evaluation import BUCKETS, Evaluator, evaluate, frequency_buckets, unigram_entropy
from .runs import initial_model, load_run_model, read_config, read_metrics, read_summary
from .schedule import WarmupCosine, lr_at
from .state import TrainState
from .trainer import Trainer, TrainingDiverged, build_model_config, open_data, train

__all__ = ["TrainConfig", "train", "Trainer", "TrainState", "Checkpointer", "Evaluator", "Callback", "TrainCallback",
           "build_model_config", "load_run_model", "initial_model", "TrainingDiverged", "CheckpointError",
           "compare", "format_comparison", "unigram_entropy", "frequency_buckets", "evaluate", "BUCKETS",
           "read_metrics", "read_summary", "read_config", "lr_at", "WarmupCosine", "open_data",
           "find_latest_checkpoint", "list_checkpoints", "save_checkpoint", "verify_checkpoint"]
