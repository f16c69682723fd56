"""What a head method declares: its forward, its options, and the facts every consumer reads.

A head method turns the ``(B, d, M)`` features of the ``M`` positions (after the head's 1×1
reduction) into the representation the classifier sees. Each method is one module declaring a
:class:`HeadMethod` subclass: its options dataclass, whether it takes a backward mode, whether it
can be scripted (a TorchScript module class) or exported to ONNX, how many positions it needs,
its output size for a given ``d``, and its source. The head, the zoo, the run record, ONNX export,
``gcp-compare``, the CLIs and the docs' tables read these declarations.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Optional

import torch
from torch import Tensor, nn

from ..covariance import covariance
from ..errors import InvalidOptionError
from ..validators import is_int, is_real


@dataclass(frozen=True)
class MethodOptions:
    """Base class of the per-method option dataclasses; subclasses validate in ``__post_init__``."""


def fail(method: str, message: str) -> None:
    raise InvalidOptionError(f"method {method!r}: {message}")


def check_int_option(method: str, name: str, value: Any, minimum: int) -> None:
    if not is_int(value) or value < minimum:
        fail(method, f"option {name!r} must be an integer >= {minimum}, got {value!r}")


def check_positive_option(method: str, name: str, value: Any, below: Optional[float] = None) -> None:
    if not is_real(value) or not value > 0 or (below is not None and not value < below):
        bound = f" and < {below}" if below is not None else ""
        fail(method, f"option {name!r} must be a number > 0{bound}, got {value!r}")


class HeadMethod:
    """One way to pool the head's features. Subclasses set the class attributes and implement
    :meth:`pool` (and :meth:`output_size` unless the output is a matrix's upper triangle)."""

    name: ClassVar[str]
    summary: ClassVar[str]
    #: the paper (and repository) the method comes from, for the docs and model cards
    source: ClassVar[str]
    #: the output size as a formula of ``d``, for the docs
    output_formula: ClassVar[str]
    options: ClassVar[type[MethodOptions]] = MethodOptions
    #: whether a backward mode of the eigendecomposition (gcp.BACKWARDS) differentiates it
    takes_backward: ClassVar[bool] = False
    #: whether ONNX (opset ≤ 23: no eigendecomposition, no Cholesky) can run its forward
    onnx: ClassVar[bool] = False
    #: positions a finite gradient needs (a covariance of one position is zero)
    min_positions: ClassVar[int] = 1
    #: whether :meth:`pool` returns ``(B, d, d)`` matrices (else ``(B, n)`` vectors)
    matrix: ClassVar[bool] = False
    #: a module class ``cls(d, options)`` computing the representation from ``(B, d, H, W)`` maps in
    #: code TorchScript compiles (forward only); ``None``: the method cannot be scripted
    script_module: ClassVar[Optional[type[nn.Module]]] = None

    def __init__(self) -> None:
        self.option_names: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(self.options))
        self.defaults: dict[str, Any] = {f.name: getattr(self.options(), f.name)
                                         for f in dataclasses.fields(self.options)} if self._defaults_valid() else {}

    def _defaults_valid(self) -> bool:
        try:
            self.options()
        except (InvalidOptionError, TypeError):
            return False
        return True

    @property
    def scriptable(self) -> bool:
        return self.script_module is not None

    def parse_options(self, opts: Mapping[str, Any]) -> MethodOptions:
        unknown = sorted(k for k in opts if k not in self.option_names)
        if unknown:
            valid = ", ".join(self.option_names) if self.option_names else "none"
            fail(self.name, f"unknown option(s) {', '.join(unknown)}; valid options: {valid}")
        return self.options(**opts)

    def check(self, d: Optional[int], opts: MethodOptions, backward: Any, backward_opts: Any) -> None:
        """Refuse a configuration the method cannot run: a backward mode it cannot use with these
        options, an option that does not fit ``d`` (``None``: not known yet)."""

    def output_size(self, d: int, opts: MethodOptions) -> int:
        """The width of the representation for ``d`` channels."""
        raise NotImplementedError

    def buffers(self, d: int, opts: MethodOptions) -> dict[str, tuple[Tensor, bool]]:
        """Tensors the method keeps in the head: ``name -> (tensor, persistent)``; persistent ones
        are saved in the state dict (a sketch's hashes)."""
        return {}

    def pool(self, feats: Tensor, opts: MethodOptions, backward: Optional[str], backward_opts: Mapping[str, Any],
             buffers: tuple[Tensor, ...]) -> Tensor:
        """``(B, d, M)`` features (float32 or float64, autocast off) → ``(B, d, d)`` matrices or
        ``(B, n)`` vectors."""
        raise NotImplementedError

    def vectorise(self, pooled: Tensor, buffers: tuple[Tensor, ...]) -> Tensor:
        """:meth:`pool`'s output as ``(B, output_size)``."""
        return pooled


class MatrixMethod(HeadMethod):
    """A method that normalises the covariance ``Σ`` of the positions; the representation is the
    upper triangle of the normalised matrix, ``d(d+1)/2`` values (the triangle's index is a
    non-persistent buffer, so every tracer and exporter sees a gather)."""

    matrix = True
    output_formula = "d(d+1)/2"

    def output_size(self, d: int, opts: MethodOptions) -> int:
        return d * (d + 1) // 2

    def buffers(self, d: int, opts: MethodOptions) -> dict[str, tuple[Tensor, bool]]:
        from ..covariance import triu_index

        return {"triu_index": (triu_index(d), False)}

    def normalise(self, cov: Tensor, opts: MethodOptions, backward: Optional[str],
                  backward_opts: Mapping[str, Any]) -> Tensor:
        """``(B, d, d)`` covariances → normalised ``(B, d, d)`` matrices."""
        raise NotImplementedError

    def pool(self, feats: Tensor, opts: MethodOptions, backward: Optional[str], backward_opts: Mapping[str, Any],
             buffers: tuple[Tensor, ...]) -> Tensor:
        return self.normalise(covariance(feats), opts, backward, backward_opts)

    def vectorise(self, pooled: Tensor, buffers: tuple[Tensor, ...]) -> Tensor:
        return pooled.flatten(-2).index_select(-1, buffers[0])


def scripted_covariance(x: Tensor) -> Tensor:
    """The covariance of ``(B, d, H, W)`` maps in float32/float64, in code TorchScript compiles."""
    flat = x.flatten(2)
    if flat.dtype != torch.float64:
        flat = flat.to(torch.float32)
    centred = flat - flat.mean(-1, keepdim=True)
    return centred @ centred.transpose(-1, -2) / flat.size(-1)


class ScriptedTriu(nn.Module):
    """Base of the scripted matrix methods: ``normalise`` then the upper triangle."""

    def __init__(self, d: int) -> None:
        super().__init__()
        from ..covariance import triu_index

        self.register_buffer("triu_index", triu_index(d), persistent=False)

    def vectorise(self, y: Tensor) -> Tensor:
        return y.flatten(-2).index_select(-1, self.triu_index)
