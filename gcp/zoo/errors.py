"""Typed errors of the model zoo (all :class:`gcp.GCPError`, hence ``ValueError``)."""

from gcp.errors import GCPError


class UnknownModelError(GCPError):
    """No GCP model is registered under the requested name."""


class CheckpointError(GCPError):
    """A checkpoint is missing, corrupt, has the wrong hash, or does not fit the model."""



class UnsupportedBackboneError(GCPError):
    """A timm model whose features a GCP head cannot pool (named, with the reason)."""
