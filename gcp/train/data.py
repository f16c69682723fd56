"""Datasets checked before training, the one transform stack, and loaders.

Every split is checked before the first step: each listed file exists, each label is in range,
the training and evaluation splits name the same classes, and every image opens (a header read,
cheap even for ImageNet: ``--no-image-check`` skips it). A failure is a
:class:`~gcp.train.DatasetError` naming the file, never a PIL traceback in the middle of an epoch.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Optional, Sequence

import torch
from PIL import Image, UnidentifiedImageError
from timm.data import create_transform
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, SequentialSampler
from torchvision import transforms as T
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS
from tqdm import tqdm

from .distributed import DistInfo
from .errors import ConfigError, DatasetError

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


# ----------------------------------------------------------------------------- transforms
def train_transform(img_size: int, mean=MEAN, std=STD, interpolation: str = "bilinear") -> Callable:
    """ImageNet training: RandomResizedCrop + horizontal flip (no colour jitter), as in iSQRT-COV /
    SVD-Padé (timm's ``create_transform``)."""
    return create_transform(img_size, is_training=True, color_jitter=0.0, interpolation=interpolation,
                            mean=mean, std=std)


def eval_transform(img_size: int, crop_pct: float = 0.875, mean=MEAN, std=STD,
                   interpolation: str = "bilinear") -> Callable:
    """ImageNet evaluation: resize to ``img_size / crop_pct`` (256 for 224), centre-crop ``img_size``."""
    return create_transform(img_size, is_training=False, crop_pct=crop_pct, interpolation=interpolation,
                            mean=mean, std=std)


def fixed_crop_transforms(img_size: int, resize: Sequence[int]) -> tuple[Callable, Callable]:
    """Fine-grained (fast-MPN-COV): resize (one value: the shorter side; two: ``(h, w)``), centre
    crop ``img_size``; training adds a horizontal flip. timm's factory has no deterministic
    train-time crop, hence torchvision's transforms here."""
    size = resize[0] if len(resize) == 1 else tuple(resize)
    norm = [T.ToTensor(), T.Normalize(MEAN, STD)]
    train = T.Compose([T.Resize(size), T.CenterCrop(img_size), T.RandomHorizontalFlip(), *norm])
    test = T.Compose([T.Resize(size), T.CenterCrop(img_size), *norm])
    return train, test


# ----------------------------------------------------------------------------- checks
def load_image(path: str) -> Image.Image:
    """RGB image at ``path``; a file that cannot be decoded is a :class:`DatasetError` naming it."""
    try:
        with open(path, "rb") as fh:
            image = Image.open(fh)
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise DatasetError(f"cannot decode image {path}: {exc}") from None


def check_samples(samples: Sequence[tuple[str, int]], num_classes: int, where: str,
                  check_images: bool = True, progress: bool = True) -> None:
    """Every file exists, every label is in ``0..num_classes-1``, every image header parses."""
    if not samples:
        raise DatasetError(f"{where} lists no images")
    missing = [p for p, _ in samples if not os.path.isfile(p)]
    if missing:
        raise DatasetError(f"{where}: {len(missing)} listed image(s) do not exist, e.g. {missing[0]}")
    bad = [(p, t) for p, t in samples if not (isinstance(t, int) and 0 <= t < num_classes)]
    if bad:
        raise DatasetError(f"{where}: label {bad[0][1]} of {bad[0][0]} is outside 0..{num_classes - 1}")
    if not check_images:
        return
    for path, _ in tqdm(samples, desc=f"checking {where}", disable=not progress or len(samples) < 1000,
                        leave=False):
        try:
            with Image.open(path) as image:  # reads the header only
                _ = image.size
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            raise DatasetError(f"cannot decode image {path} ({where}): {exc}") from None


def check_splits(train_classes: Sequence[str], eval_classes: Sequence[str], train_where: str, eval_where: str,
                 num_classes: Optional[int] = None) -> int:
    """The two splits name the same classes in the same order (labels mean the same thing in
    both); returns the class count, or refuses a ``--num-classes`` below it."""
    if list(train_classes) != list(eval_classes):
        only_train = sorted(set(train_classes) - set(eval_classes))
        only_eval = sorted(set(eval_classes) - set(train_classes))
        detail = []
        if only_train:
            detail.append(f"only in {train_where}: {', '.join(only_train[:5])}")
        if only_eval:
            detail.append(f"only in {eval_where}: {', '.join(only_eval[:5])}")
        raise DatasetError("the training and evaluation splits disagree on the classes, so their labels would "
                           "not match (" + ("; ".join(detail) or "same names, other order") + ")")
    count = len(train_classes)
    if num_classes is not None and num_classes < count:
        raise ConfigError(f"--num-classes {num_classes} is smaller than the {count} classes of the dataset")
    return num_classes or count


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
    return ImageFolder(folder, transform=transform, loader=load_image)


# ----------------------------------------------------------------------------- loaders
def make_loader(dataset: Dataset, batch_size: int, workers: int, info: DistInfo, train: bool,
                seed: int = 0) -> tuple[DataLoader, Callable[[int], None]]:
    """A loader and its ``set_epoch(epoch)``; ``batch_size`` is global (split over ranks).

    Training drops the last incomplete batch, so a batch larger than the training set would give
    epochs without a step: refused here. Shuffling draws from a generator reseeded per epoch (and
    ``DistributedSampler``'s epoch under torchrun), so a resumed run sees the same order.
    """
    if batch_size % info.world_size:
        raise ConfigError(f"--batch-size {batch_size} is not divisible by the {info.world_size} processes")
    per_rank = batch_size // info.world_size
    size = len(dataset)  # type: ignore[arg-type]
    if train and size // info.world_size < per_rank:
        raise ConfigError(f"--batch-size {batch_size} is larger than the {size} training images: every epoch "
                          "would take no step")
    generator = torch.Generator()
    if info.distributed and train:
        sampler: Any = DistributedSampler(dataset, info.world_size, info.rank, shuffle=True, seed=seed, drop_last=True)
    elif info.distributed:  # evaluation: disjoint shards, no padding, so reduced metrics count each image once
        sampler = list(range(info.rank, size, info.world_size))
    else:
        sampler = RandomSampler(dataset, generator=generator) if train else SequentialSampler(dataset)

    def set_epoch(epoch: int) -> None:
        if isinstance(sampler, DistributedSampler):
            sampler.set_epoch(epoch)
        generator.manual_seed(seed * 1000 + epoch)

    loader = DataLoader(dataset, batch_size=per_rank, sampler=sampler, num_workers=workers,
                        pin_memory=info.device.type == "cuda", drop_last=train, persistent_workers=False)
    return loader, set_epoch
