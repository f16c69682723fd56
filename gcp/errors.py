"""Typed exceptions raised by :mod:`gcp`.

Every error is a :class:`GCPError`, itself a :class:`ValueError`, so callers can catch the
whole family or one precise case (geotorch's habit).
"""

from __future__ import annotations

__all__ = [
    "GCPError",
    "ShapeError",
    "NonSquareError",
    "DTypeError",
    "NonFiniteError",
    "IndefiniteError",
    "NonSymmetricError",
    "SingularError",
    "UnknownBackwardError",
    "InvalidOptionError",
    "ExportError",
    "UnsupportedDerivativeError",
]


class GCPError(ValueError):
    """Base class of every error raised by :mod:`gcp`."""


class ShapeError(GCPError):
    """A tensor does not have the shape an operation needs."""


class NonSquareError(ShapeError):
    """A batch of matrices ``(..., m, n)`` with ``m != n`` was given where square ones are needed."""


class DTypeError(GCPError):
    """A tensor has a dtype the operation cannot work with (e.g. an integer tensor)."""


class NonFiniteError(GCPError):
    """A tensor holds NaN or Inf entries."""


class IndefiniteError(GCPError):
    """A matrix that must be symmetric positive semi-definite clearly is not.

    Raised by the square-root routes for negative eigenvalues beyond round-off (see
    :func:`gcp._validation.indefinite_tolerance`), or, for the matmul-only routes, a negative
    diagonal entry or a non-positive trace.
    """


class NonSymmetricError(GCPError):
    """A matrix that must be symmetric is not, beyond round-off (see
    :func:`gcp._domain.symmetry_tolerance`)."""


class SingularError(GCPError):
    """A negative power (an inverse root) of a matrix that has none: a zero matrix, whose
    eigenvalue floor (relative to ``λ_max``) is zero too. The message names what makes it defined."""


class UnknownBackwardError(GCPError):
    """The requested backward mode is not registered."""


class InvalidOptionError(GCPError):
    """An option has an unknown name, a value out of range, or does not apply to this call."""


class ExportError(GCPError):
    """A configuration cannot be scripted or exported as asked; the message says which route works."""


class UnsupportedDerivativeError(GCPError):
    """A derivative the route does not compute was requested: a second (or higher) derivative
    through a backward that is not differentiable, or forward mode (``torch.func.jvp``,
    ``jacfwd``) through a route without one. The message lists the routes that compute it.
    Raised when the derivative is computed, never replaced by zeros."""


class EighFailedError(GCPError):
    """The eigensolver reported a failure (a matrix it did not converge on, or an error status)
    instead of a result; raised rather than returning what the solver left in its buffers."""


class SolverUnavailableError(GCPError):
    """A solver that was asked for by name cannot run here (no CUDA, or no cuSOLVER with the
    routine); raised instead of silently using another one."""
