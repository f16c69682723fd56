"""Typed errors of the training layer (all :class:`gcp.GCPError`, hence ``ValueError``).

``CheckpointError`` is the zoo's (re-exported): a bad weight file is the same error whether the
zoo or a training run reads it.
"""

from gcp.errors import GCPError
from gcp.zoo.errors import CheckpointError

__all__ = ["CheckpointError", "ConfigError", "DatasetError", "RunFolderError", "TrainingError"]


class TrainingError(GCPError):
    """Base class of the errors raised by :mod:`gcp.train`."""


class ConfigError(TrainingError):
    """A flag or configuration value is out of range, inconsistent, or not available here
    (e.g. ``--device cuda`` without CUDA); the message names the flag."""


class DatasetError(TrainingError):
    """A dataset folder, image or annotation file is missing or malformed; the message names it."""


class RunFolderError(TrainingError):
    """An output folder belongs to another run, or a resume would mix two runs."""


class NonFiniteStepError(TrainingError):
    """A training step had a non-finite loss or gradient under ``--on-nonfinite stop``: the run
    ends there, recorded as failed (``failure.json``), instead of skipping the step."""

    def __init__(self, step: int, message: str) -> None:
        super().__init__(message)
        self.step = step
