"""Fine-tuning presets from the papers (448×448 input, SGD momentum 0.9, classifier lr multiplier).

ResNet (fast-MPN-COV): batch 10, 100 epochs, lr 1.2e-3 without decay, classifier ×5, wd 1e-4.
VGG-D (fast-MPN-COV, CUB): batch 10, 40 epochs, lr 3e-3, ×0.1 at epoch 20, classifier ×20.
Transforms: CUB/Dogs/ImageFolder resize 448 + centre crop 448; Aircraft resize (512, 512) +
centre crop 448; Cars resize (448, 448). Training adds a horizontal flip; evaluation averages the
centre crop and its flip.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

from torchvision import transforms as T

from zoo.data import MEAN, STD


@dataclass(frozen=True)
class Recipe:
    img_size: int = 448
    resize: tuple[int, ...] = (448,)  # one value: shorter side; two: (h, w)
    batch_size: int = 10
    epochs: int = 100
    lr: float = 1.2e-3
    classifier_lr_mult: float = 5.0
    weight_decay: float = 1e-4
    decay_milestones: tuple[int, ...] = ()

    def scaled(self, img_size: int) -> "Recipe":
        """The same recipe at another input size (the resize keeps its ratio to the crop)."""
        factor = img_size / self.img_size
        return replace(self, img_size=img_size, resize=tuple(max(img_size, round(r * factor)) for r in self.resize))

    def transforms(self) -> tuple[Callable, Callable]:
        size = self.resize[0] if len(self.resize) == 1 else self.resize
        norm = [T.ToTensor(), T.Normalize(MEAN, STD)]
        train = T.Compose([T.Resize(size), T.CenterCrop(self.img_size), T.RandomHorizontalFlip(), *norm])
        test = T.Compose([T.Resize(size), T.CenterCrop(self.img_size), *norm])
        return train, test


_RESIZE = {"cub": (448,), "dogs": (448,), "imagefolder": (448,), "aircraft": (512, 512), "cars": (448, 448)}


def recipe_for(dataset: str, model: str) -> Recipe:
    """The preset for ``dataset`` (cub, cars, aircraft, dogs, imagefolder) and a zoo ``model``."""
    base = Recipe(resize=_RESIZE[dataset])
    if "vgg" in model:
        base = replace(base, epochs=40, lr=3e-3, classifier_lr_mult=20.0, decay_milestones=(20,))
    return base
