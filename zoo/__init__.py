"""zoo: timm backbones with global covariance pooling heads.

Importing this package registers the GCP models with timm, so both ``zoo.create_model(...)`` and
``timm.create_model("gcp_resnet50", method="svd", backward="pade", num_classes=200)`` build them.
"""

from ._gcpnet import GCPNet
from ._registry import SPECS, GCPWeights, ModelSpec, create_model, list_models
from .errors import CheckpointError, DatasetError, UnknownModelError
from .hub import load_pretrained, save_pretrained

__all__ = [
    "SPECS",
    "CheckpointError",
    "DatasetError",
    "GCPNet",
    "GCPWeights",
    "ModelSpec",
    "UnknownModelError",
    "create_model",
    "list_models",
    "load_pretrained",
    "save_pretrained",
]
