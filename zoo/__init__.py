"""zoo: timm backbones with global covariance pooling heads.

Importing this package registers the GCP models with timm, so both ``zoo.create_model(...)`` and
``timm.create_model("gcp_resnet50", method="svd", backward="pade", num_classes=200)`` build them.
"""

from ._gcpnet import GCPNet
from ._registry import SPECS, GCPWeights, ModelSpec, create_model, list_models
from .errors import CheckpointError, DatasetError, UnknownModelError
from .export import OnnxExport, RootChoice, choose_matmul_root, export_onnx
from .hub import load_pretrained, save_pretrained

__all__ = [
    "SPECS",
    "CheckpointError",
    "DatasetError",
    "GCPNet",
    "GCPWeights",
    "OnnxExport",
    "RootChoice",
    "ModelSpec",
    "UnknownModelError",
    "choose_matmul_root",
    "create_model",
    "export_onnx",
    "list_models",
    "load_pretrained",
    "save_pretrained",
]
