"""gcp.zoo: timm backbones with global covariance pooling heads.

Importing this package registers the GCP models with timm, so both ``gcp.zoo.create_model(...)`` and
``timm.create_model("gcp_resnet50", method="svd", backward="pade", num_classes=200)`` build them.
File I/O that the layers above share (atomic writes, state-dict reading, hashes) is
:mod:`gcp.zoo.io`.
"""

from . import cifar_resnet, io  # cifar_resnet registers resnet18_cifar before _registry lists timm's models
from ._gcpnet import GCPNet
from ._registry import SPECS, GCPWeights, ModelSpec, create_model, list_models, spec_of
from .errors import (
    CheckpointError,
    HeadMismatchWarning,
    StateDictMismatchError,
    UnknownBackboneOptionError,
    UnknownModelError,
    UnsupportedBackboneError,
)
from .export import OnnxExport, RootChoice, choose_matmul_root, export_onnx
from .input_size import check_input_size, input_size_kwargs
from .model_card import Provenance
from .saving import load_pretrained, model_config, push_to_hub, save_pretrained, save_weights

__all__ = [
    "SPECS",
    "CheckpointError",
    "GCPNet",
    "GCPWeights",
    "HeadMismatchWarning",
    "OnnxExport",
    "Provenance",
    "RootChoice",
    "ModelSpec",
    "StateDictMismatchError",
    "UnknownBackboneOptionError",
    "UnknownModelError",
    "UnsupportedBackboneError",
    "check_input_size",
    "cifar_resnet",
    "choose_matmul_root",
    "create_model",
    "export_onnx",
    "input_size_kwargs",
    "io",
    "list_models",
    "load_pretrained",
    "model_config",
    "push_to_hub",
    "save_pretrained",
    "save_weights",
    "spec_of",
]
