"""gcp: backpropagation-friendly eigendecomposition and global covariance pooling.

Public API::

    gcp.powm, gcp.sqrtm, gcp.inv_sqrtm, gcp.eigh      # eigendecomposition forward, selectable backward
    gcp.BACKWARDS                                      # names of the backward modes
    gcp.isqrtm                                         # iSQRT-COV Newton–Schulz
    gcp.mpa_sqrtm, gcp.mtp_sqrtm                       # Padé / Taylor approximants, Lyapunov backward
    gcp.covariance, gcp.triu_vec                       # covariance pooling helpers
    gcp.GCPHead, gcp.HeadConfig, gcp.METHODS           # the head, its configuration, its methods
    gcp.covariance_pool, gcp.pool_features             # the head's pooling as functions
    gcp.logm, gcp.topn_sqrtm, gcp.scaled_eigen_branch  # other spectral functions, selectable backward
    gcp.bilinear_pool, gcp.compact_bilinear            # B-CNN and Tensor Sketch (CBP) pooling
    gcp.ZCAWhitening, gcp.zca_whiten                   # ZCA whitening (BatchNorm replacement)
    gcp.PCADenoising, gcp.pca_denoise                  # PCA denoising
    gcp.GCPError and subclasses                        # typed errors (all ValueError)

The layers above the core are subpackages that ``import gcp`` does not load: :mod:`gcp.zoo`
(timm models), :mod:`gcp.train` (training), :mod:`gcp.finegrained` (fine-tuning),
:mod:`gcp.compare` (the ``gcp-compare`` tool) and :mod:`gcp.bench` (benchmark timing).
"""

from ._validation import finite_checks, set_finite_checks
from .approximants import mpa_sqrtm, mtp_sqrtm
from .backward import BACKWARDS, get_backward, register_backward
from .bilinear import bilinear_pool, compact_bilinear
from .covariance import covariance, triu_index, triu_vec
from .eigh_solver import EIGH_BACKENDS, eigh_backend, set_eigh_backend, using_eigh_backend
from .errors import (
    DTypeError,
    EighFailedError,
    ExportError,
    GCPError,
    IndefiniteError,
    InvalidOptionError,
    NonFiniteError,
    NonSquareError,
    NonSymmetricError,
    ShapeError,
    SingularError,
    SolverUnavailableError,
    UnknownBackwardError,
    UnsupportedDerivativeError,
)
from .head_config import HeadConfig
from .lyapunov import lyap_sign_solve
from .methods import METHODS, ONNX_METHODS, SCRIPTABLE_METHODS, get_method, register_method
from .newton_schulz import isqrtm
from .norm_layer_config import NormLayerConfig
from .pca import PCADenoising, pca_denoise
from .pooling import GCPHead, covariance_pool, head_representation, normalize_covariance, pool_features
from .spectral import eigh, inv_sqrtm, powm, sqrtm
from .spectral_functions import logm, scaled_eigen_branch, topn_sqrtm
from .whitening import ZCAWhitening, replace_batchnorm, zca_whiten

__version__ = "0.2.0"

__all__ = [
    "BACKWARDS",
    "GCPHead",
    "HeadConfig",
    "NormLayerConfig",
    "METHODS",
    "ONNX_METHODS",
    "SCRIPTABLE_METHODS",
    "bilinear_pool",
    "compact_bilinear",
    "get_method",
    "logm",
    "head_representation",
    "pool_features",
    "register_method",
    "scaled_eigen_branch",
    "topn_sqrtm",
    "PCADenoising",
    "ZCAWhitening",
    "covariance_pool",
    "normalize_covariance",
    "pca_denoise",
    "replace_batchnorm",
    "zca_whiten",
    "DTypeError",
    "EIGH_BACKENDS",
    "EighFailedError",
    "SolverUnavailableError",
    "eigh_backend",
    "set_eigh_backend",
    "using_eigh_backend",
    "ExportError",
    "GCPError",
    "UnsupportedDerivativeError",
    "IndefiniteError",
    "InvalidOptionError",
    "NonFiniteError",
    "NonSquareError",
    "NonSymmetricError",
    "SingularError",
    "ShapeError",
    "UnknownBackwardError",
    "covariance",
    "eigh",
    "finite_checks",
    "get_backward",
    "inv_sqrtm",
    "isqrtm",
    "lyap_sign_solve",
    "mpa_sqrtm",
    "mtp_sqrtm",
    "powm",
    "register_backward",
    "set_finite_checks",
    "sqrtm",
    "triu_index",
    "triu_vec",
]
