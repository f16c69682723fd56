"""gcp.train: training and fine-tuning of the zoo's GCP models (the layer above ``gcp.zoo``).

``gcp-train`` (:mod:`gcp.train.imagenet`) and ``gcp-finetune`` are thin commands over it:

* :mod:`~gcp.train.record` — :class:`RunRecord`, the one typed definition of a run, and
  :func:`resolve`, the one place it is built from flags, a recipe and a checkpoint;
* :mod:`~gcp.train.config` — the papers' recipes as data;
* :mod:`~gcp.train.cli` — the flags both commands share;
* :mod:`~gcp.train.data` — transforms, dataset checks, loaders;
* :mod:`~gcp.train.loop` — one epoch, one evaluation; :mod:`~gcp.train.optim` — SGD and schedules;
* :mod:`~gcp.train.checkpoint` — checkpoints, ``summary.csv``, the run folder;
* :mod:`~gcp.train.engine` — a run end to end; :mod:`~gcp.train.distributed` — torchrun.
"""

from . import config_file
from .checkpoint import FitState, RunFolder, load_checkpoint, restore, save_checkpoint, stored_record
from .config import RECIPES
from .distributed import DistInfo, init_distributed
from .engine import HeadSchedule, fit, run
from .errors import CheckpointError, ConfigError, DatasetError, RunFolderError, TrainingError
from .loop import evaluate, train_one_epoch
from .optim import make_optimizer, make_scheduler
from .record import DataSpec, HeadSpec, HybridSpec, Normalisation, RunRecord, resolve

__all__ = [
    "RECIPES",
    "config_file",
    "CheckpointError",
    "ConfigError",
    "DataSpec",
    "DatasetError",
    "DistInfo",
    "FitState",
    "HeadSchedule",
    "HeadSpec",
    "HybridSpec",
    "Normalisation",
    "RunFolder",
    "RunFolderError",
    "RunRecord",
    "TrainingError",
    "evaluate",
    "fit",
    "init_distributed",
    "load_checkpoint",
    "make_optimizer",
    "make_scheduler",
    "resolve",
    "restore",
    "run",
    "save_checkpoint",
    "stored_record",
    "train_one_epoch",
]
