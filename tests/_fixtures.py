"""Tiny on-disk datasets made by the tests (no downloads)."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image


def write_image(path: str, seed: int, size: int = 40, tint: int = 0) -> None:
    """A small RGB JPEG whose colour depends on ``tint`` (so classes are learnable)."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 80, size=(size, size, 3), dtype=np.uint8)
    img[..., tint % 3] += 150
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(img).save(path, quality=90)


def image_folder(root: str, classes: int = 3, train_per_class: int = 4, val_per_class: int = 2, size: int = 40) -> str:
    """``root/train/<class>/*.jpg`` and ``root/val/<class>/*.jpg``."""
    seed = 0
    for split, n in (("train", train_per_class), ("val", val_per_class)):
        for c in range(classes):
            for i in range(n):
                write_image(os.path.join(root, split, f"class_{c}", f"{i}.jpg"), seed, size, tint=c)
                seed += 1
    return root
