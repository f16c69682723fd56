"""Fine-tuning presets: the shared recipes of :data:`gcp.train.config.RECIPES` and each
dataset's resize (fast-MPN-COV): CUB/Dogs/ImageFolder resize 448 + centre crop 448; Aircraft
resize (512, 512) + centre crop 448; Cars resize (448, 448). Training adds a horizontal flip;
evaluation averages the centre crop and its flip.
"""

from __future__ import annotations

from typing import Any, Optional

from gcp.train.config import RECIPES

from .datasets import DATASETS


def recipe_name(model: str) -> str:
    return "finegrained-vgg" if "vgg" in model else "finegrained-resnet"


def recipe_for(model: str, dataset: str, img_size: Optional[int] = None) -> dict[str, Any]:
    """The preset for a zoo ``model`` on ``dataset`` (VGG: 40 epochs, lr 3e-3, ×20 classifier;
    others 100, 1.2e-3, ×5), with the dataset's resize at ``img_size`` (default the recipe's 448)."""
    recipe = dict(RECIPES[recipe_name(model)])
    size = recipe["img_size"] if img_size is None else img_size
    recipe["resize"] = resize_for(dataset, size)
    return recipe


def resize_for(dataset: str, img_size: int) -> tuple[int, ...]:
    """The dataset's resize at ``img_size`` (it keeps its ratio to the 448 crop)."""
    factor = img_size / 448
    return tuple(max(img_size, round(r * factor)) for r in DATASETS[dataset].resize)
