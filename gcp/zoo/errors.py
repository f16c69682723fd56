"""Typed errors of the model zoo (all :class:`gcp.GCPError`, hence ``ValueError``)."""

from gcp.errors import GCPError, InvalidOptionError


class UnknownModelError(GCPError):
    """No GCP model is registered under the requested name."""


class CheckpointError(GCPError):
    """A checkpoint is missing, corrupt, has the wrong hash, or does not fit the model."""


class StateDictMismatchError(CheckpointError, RuntimeError):
    """``load_state_dict`` of a state dict that does not fit the model: the keys and shapes that
    differ, and the head option that explains them. Also a ``RuntimeError``, the type
    ``torch.nn.Module.load_state_dict`` documents, so code written for torch's error still
    catches it."""


class UnknownBackboneOptionError(InvalidOptionError, TypeError):
    """A keyword argument the backbone's constructor does not take. Also a ``TypeError``, what
    timm's model contract (and Python) raise for an unexpected keyword, so code written for
    ``timm.create_model`` catches it."""


class UnsupportedBackboneError(GCPError):
    """A timm model whose features a GCP head cannot pool (named, with the reason)."""


class HeadMismatchWarning(UserWarning):
    """Weights trained with one head (method, backward) were loaded into a model with another:
    allowed, as the hybrid protocol needs it, and recorded in the model's ``pretrained_cfg``."""
