"""gcptrain: training and fine-tuning of the zoo's GCP models (the layer above ``zoo``).

``train_imagenet.py`` and ``python -m gcp.finegrained.finetune`` are thin commands over it:

* :mod:`~gcp.train.config` — :class:`RunConfig` (one definition of a run), the recipes, checks;
* :mod:`~gcp.train.cli` — the flags both commands share;
* :mod:`~gcp.train.data` — dataset checks, the transform stack, loaders;
* :mod:`~gcp.train.loop` — one epoch, one evaluation; :mod:`~gcp.train.optim` — SGD and schedules;
* :mod:`~gcp.train.checkpoint` — checkpoints, ``summary.csv``, the run folder;
* :mod:`~gcp.train.engine` — a run end to end; :mod:`~gcp.train.distributed` — torchrun.
"""

from .checkpoint import FitState, load_checkpoint, restore, save_checkpoint
from .config import RECIPES, RunConfig
from .distributed import DistInfo, init_distributed
from .engine import HeadSchedule, fit, run
from .errors import CheckpointError, ConfigError, DatasetError, RunFolderError, TrainingError
from .loop import evaluate, train_one_epoch
from .optim import make_optimizer, make_scheduler

__all__ = [
    "RECIPES",
    "CheckpointError",
    "ConfigError",
    "DatasetError",
    "DistInfo",
    "FitState",
    "RunConfig",
    "RunFolderError",
    "HeadSchedule",
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
