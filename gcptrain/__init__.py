"""gcptrain: training and fine-tuning of the zoo's GCP models (the layer above ``zoo``).

``train_imagenet.py`` and ``python -m finegrained.finetune`` are thin commands over it:

* :mod:`~gcptrain.config` — :class:`RunConfig` (one definition of a run), the recipes, checks;
* :mod:`~gcptrain.cli` — the flags both commands share;
* :mod:`~gcptrain.data` — dataset checks, the transform stack, loaders;
* :mod:`~gcptrain.loop` — one epoch, one evaluation; :mod:`~gcptrain.optim` — SGD and schedules;
* :mod:`~gcptrain.checkpoint` — checkpoints, ``summary.csv``, the run folder;
* :mod:`~gcptrain.engine` — a run end to end; :mod:`~gcptrain.distributed` — torchrun.
"""

from .checkpoint import FitState, load_checkpoint, restore, save_checkpoint
from .config import RECIPES, RunConfig
from .distributed import DistInfo, init_distributed
from .errors import CheckpointError, ConfigError, DatasetError, RunFolderError, TrainingError
from .loop import evaluate, train_one_epoch
from .optim import make_optimizer, make_scheduler
from .engine import Schedule, fit, run

__all__ = [
    "RECIPES",
    "CheckpointError",
    "ConfigError",
    "DatasetError",
    "DistInfo",
    "FitState",
    "RunConfig",
    "RunFolderError",
    "Schedule",
    "TrainingError",
    "evaluate",
    "fit",
    "init_distributed",
    "load_checkpoint",
    "make_optimizer",
    "make_scheduler",
    "restore",
    "run",
    "save_checkpoint",
    "train_one_epoch",
]
