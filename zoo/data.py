"""Data plumbing shared by the training commands: ImageFolder checks, timm transforms, loaders."""

from __future__ import annotations

import os
from typing import Any, Callable, Optional

import torch
from timm.data import create_transform
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, SequentialSampler
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS

from .errors import DatasetError
from .training import DistInfo

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def train_transform(img_size: int, mean=MEAN, std=STD, interpolation: str = "bilinear") -> Callable:
    """RandomResizedCrop + horizontal flip (no colour jitter), as in iSQRT-COV / SVD-Padé."""
    return create_transform(img_size, is_training=True, color_jitter=0.0, interpolation=interpolation,
                            mean=mean, std=std)


def eval_transform(img_size: int, crop_pct: float = 0.875, mean=MEAN, std=STD,
                   interpolation: str = "bilinear") -> Callable:
    """Resize to ``img_size / crop_pct`` (256 for 224) and centre-crop ``img_size``."""
    return create_transform(img_size, is_training=False, crop_pct=crop_pct, interpolation=interpolation,
                            mean=mean, std=std)


def image_folder(root: str, split: str, transform: Optional[Callable] = None) -> ImageFolder:
    """``root/split/<class>/<image>``, checked first so a bad layout names what is wrong."""
    folder = os.path.join(root, split)
    if not os.path.isdir(root):
        raise DatasetError(f"dataset folder not found: {root}")
    if not os.path.isdir(folder):
        raise DatasetError(f"missing split folder {folder}; expected {root}/{split}/<class>/<image>.jpg")
    classes = sorted(e.name for e in os.scandir(folder) if e.is_dir())
    if not classes:
        raise DatasetError(f"{folder} has no class sub-folders; expected {folder}/<class>/<image>.jpg")
    empty = [c for c in classes if not any(
        f.lower().endswith(IMG_EXTENSIONS) for _, _, files in os.walk(os.path.join(folder, c)) for f in files)]
    if empty:
        raise DatasetError(f"class folder(s) without images in {folder}: {', '.join(empty[:10])}")
    return ImageFolder(folder, transform=transform)


def make_loader(dataset: Dataset, batch_size: int, workers: int, info: DistInfo, train: bool,
                seed: int = 0, drop_last: Optional[bool] = None) -> tuple[DataLoader, Callable[[int], None]]:
    """A loader and its ``set_epoch(epoch)``; ``batch_size`` is global (split over ranks).

    Shuffling draws from a generator reseeded per epoch (and ``DistributedSampler``'s epoch under
    torchrun), so a resumed run sees the same order it would have.
    """
    if batch_size % info.world_size:
        raise ValueError(f"batch size {batch_size} is not divisible by the {info.world_size} processes")
    per_rank = batch_size // info.world_size
    generator = torch.Generator()
    if info.distributed and train:
        sampler: Any = DistributedSampler(dataset, info.world_size, info.rank, shuffle=True, seed=seed, drop_last=True)
    elif info.distributed:  # evaluation: disjoint shards, no padding, so reduced metrics count each image once
        sampler = list(range(info.rank, len(dataset), info.world_size))
    else:
        sampler = RandomSampler(dataset, generator=generator) if train else SequentialSampler(dataset)

    def set_epoch(epoch: int) -> None:
        if isinstance(sampler, DistributedSampler):
            sampler.set_epoch(epoch)
        generator.manual_seed(seed * 1000 + epoch)

    loader = DataLoader(dataset, batch_size=per_rank, sampler=sampler, num_workers=workers,
                        pin_memory=info.device.type == "cuda", drop_last=train if drop_last is None else drop_last,
                        persistent_workers=False)
    return loader, set_epoch
