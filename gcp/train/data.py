"""Datasets checked before training, the one transform stack, and loaders.

Every split is checked before the first step: each listed file exists, each label is in range,
the training and evaluation splits name the same classes, and every image opens (a header read,
cheap even for ImageNet: ``--no-image-check`` skips it). A failure is a
:class:`~gcp.train.DatasetError` naming the file, never a PIL traceback in the middle of an epoch.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from timm.data import create_transform
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, SequentialSampler
from torchvision import transforms as T
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS
from tqdm import tqdm

from .cifar import CIFAR, cifar_transforms
from .distributed import DistInfo
from .errors import ConfigError, DatasetError
from .record import DataSpec


# ----------------------------------------------------------------------------- transforms
def rand_augment(data: DataSpec) -> Callable:
    """timm's RandAugment for ``data.aa``, with the hyper-parameters timm's ``create_transform``
    gives it (translation relative to the crop, fill with the mean colour)."""
    from timm.data.auto_augment import rand_augment_transform

    hparams = dict(translate_const=int(data.img_size * 0.45), img_mean=tuple(round(255 * m) for m in data.mean))
    return rand_augment_transform(data.aa, hparams)


def transforms_for(data: DataSpec) -> tuple[Callable, Callable]:
    """The training and evaluation transforms a :class:`DataSpec` names.

    Without ``resize`` (ImageNet): RandomResizedCrop + flip for training, resize to
    ``img_size / crop_pct`` + centre crop for evaluation (timm's ``create_transform``, no colour
    jitter, as in iSQRT-COV / SVD-Padé). With ``resize`` (fine-grained, fast-MPN-COV): resize (one
    value: the shorter side; two: ``(h, w)``) + centre crop ``img_size`` for both, a flip for
    training; timm's factory has no deterministic train-time crop, hence torchvision's transforms.
    """
    if data.dataset in CIFAR:
        train, test = cifar_transforms(data.img_size, data.mean, data.std)
        if data.aa:
            train.transforms.insert(2, rand_augment(data))  # after the crop and the flip, before ToTensor
        return train, test
    if not data.resize:
        common = dict(interpolation=data.interpolation, mean=data.mean, std=data.std)
        train = create_transform(data.img_size, is_training=True, color_jitter=0.0, auto_augment=data.aa, **common)
        test = create_transform(data.img_size, is_training=False, crop_pct=data.crop_pct, **common)
        return train, test
    size = data.resize[0] if len(data.resize) == 1 else tuple(data.resize)
    mode = {"bilinear": T.InterpolationMode.BILINEAR, "bicubic": T.InterpolationMode.BICUBIC,
            "nearest": T.InterpolationMode.NEAREST}[data.interpolation]
    norm = [T.ToTensor(), T.Normalize(data.mean, data.std)]
    augment = [rand_augment(data)] if data.aa else []
    train = T.Compose([T.Resize(size, interpolation=mode), T.CenterCrop(data.img_size), T.RandomHorizontalFlip(),
                       *augment, *norm])
    test = T.Compose([T.Resize(size, interpolation=mode), T.CenterCrop(data.img_size), *norm])
    return train, test


# ----------------------------------------------------------------------------- images
_HIGH_BIT_MODES = {"I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "I;16N": 65535.0}


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB from any PIL mode, without silent clipping: 16-bit grey is scaled by 1/257
    (PIL's own ``convert("RGB")`` would clip it to white), 32-bit integer and float images by
    their maximum; palette images with transparency go through RGBA; alpha is dropped."""
    if image.mode in _HIGH_BIT_MODES or image.mode in ("I", "F"):
        arr = np.asarray(image, dtype=np.float64)
        top = _HIGH_BIT_MODES.get(image.mode) or max(float(arr.max()), 1.0)
        grey = np.clip(np.rint(arr / top * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")


_IMAGE_ERRORS = (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError, SyntaxError)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, Image.DecompressionBombError):
        return f"refused as a decompression bomb ({exc})"
    return f"{exc.__class__.__name__}: {exc}"


def load_image(path: str) -> Image.Image:
    """RGB image at ``path``; a file that cannot be decoded is a :class:`DatasetError` naming it."""
    try:
        with open(path, "rb") as fh:
            image = Image.open(fh)
            image.load()
            return to_rgb(image)
    except _IMAGE_ERRORS as exc:
        raise DatasetError(f"cannot decode image {path}: {_describe(exc)}") from None


def check_samples(samples: Sequence[tuple[str, int]], num_classes: int, where: str,
                  check_images: bool = True, progress: bool = True) -> None:
    """Every file exists, every label is in ``0..num_classes-1``, every image header parses."""
    if not samples:
        raise DatasetError(f"{where} lists no images")
    missing = [p for p, _ in samples if not os.path.isfile(p)]
    if missing:
        raise DatasetError(f"{where}: {len(missing)} listed image(s) do not exist (or are broken links), "
                           f"e.g. {missing[0]}")
    bad = [(p, t) for p, t in samples if not (isinstance(t, int) and 0 <= t < num_classes)]
    if bad:
        raise DatasetError(f"{where}: label {bad[0][1]} of {bad[0][0]} is outside 0..{num_classes - 1}")
    if not check_images:
        return
    for path, _ in tqdm(samples, desc=f"checking {where}", disable=not progress or len(samples) < 1000,
                        leave=False):
        try:
            with Image.open(path) as image:  # reads the header only (and refuses decompression bombs)
                _ = image.size
        except _IMAGE_ERRORS as exc:
            raise DatasetError(f"cannot decode image {path} ({where}): {_describe(exc)}") from None


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


def is_litter(name: str) -> bool:
    """Files and folders an OS or a tool leaves in a dataset: hidden entries (``.DS_Store``,
    ``._img.jpg`` AppleDouble files, ``.ipynb_checkpoints``), ``__MACOSX``, ``Thumbs.db``."""
    return name.startswith(".") or name in ("__MACOSX", "Thumbs.db", "desktop.ini")


class CleanImageFolder(ImageFolder):
    """torchvision's ``ImageFolder`` without OS litter: hidden or tool folders are not classes,
    hidden files are not images."""

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        classes = sorted(e.name for e in os.scandir(directory) if e.is_dir() and not is_litter(e.name))
        return classes, {c: i for i, c in enumerate(classes)}

    @staticmethod
    def make_dataset(directory: str, class_to_idx: Optional[dict[str, int]] = None, extensions: Any = None,
                     is_valid_file: Optional[Callable[[str], bool]] = None, allow_empty: bool = False
                     ) -> list[tuple[str, int]]:
        """torchvision's listing (sorted folders, sorted files), with symbolic links followed at most
        once per real folder: a link back to its own class folder would otherwise list its images
        again and again (torchvision's ``os.walk(followlinks=True)`` does not notice the cycle)."""
        if class_to_idx is None:
            raise DatasetError("make_dataset needs class_to_idx")
        valid = is_valid_file or _is_image
        samples = []
        for name in sorted(class_to_idx):
            for folder, files in walk_once(os.path.join(directory, name)):
                samples += [(os.path.join(folder, f), class_to_idx[name]) for f in sorted(files)
                            if valid(os.path.join(folder, f))]
        return samples


def fingerprint(samples: Sequence[tuple[str, int]], classes: Sequence[str], root: str) -> str:
    """What a split is, cheaply: ``"N files, C classes, sha256 <16 hex>"`` over the class names and
    the sorted (path relative to ``root``, size, label) of every sample. The same files found by
    another spelling of ``root`` give the same value; other files, sizes or labels do not."""
    import hashlib
    import json

    digest = hashlib.sha256(json.dumps([str(c) for c in classes]).encode())
    for rel, size, label in sorted((os.path.relpath(p, root), os.stat(p).st_size, int(y)) for p, y in samples):
        digest.update(f"{rel}\0{size}\0{label}\n".encode())
    return f"{len(samples)} files, {len(classes)} classes, sha256 {digest.hexdigest()[:16]}"


def walk_once(top: str) -> Iterator[tuple[str, list[str]]]:
    """``(folder, files)`` under ``top``, sorted, following symbolic links to folders but entering each
    real folder once."""
    seen: set[str] = set()
    for folder, dirs, files in os.walk(top, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if os.path.realpath(os.path.join(folder, d)) not in seen)
        yield folder, sorted(files)


def _is_image(path: str) -> bool:
    parts = os.path.normpath(path).split(os.sep)
    return path.lower().endswith(IMG_EXTENSIONS) and not any(is_litter(p) for p in parts[-2:])


def image_folder(root: str, split: str, transform: Optional[Callable] = None) -> ImageFolder:
    """``root/split/<class>/<image>``, checked first so a bad layout names what is wrong."""
    folder = os.path.join(root, split)
    if not os.path.isdir(root):
        raise DatasetError(f"dataset folder not found: {root}")
    if not os.path.isdir(folder):
        raise DatasetError(f"missing split folder {folder}; expected {root}/{split}/<class>/<image>.jpg")
    classes = sorted(e.name for e in os.scandir(folder) if e.is_dir() and not is_litter(e.name))
    if not classes:
        raise DatasetError(f"{folder} has no class sub-folders; expected {folder}/<class>/<image>.jpg")
    empty = [c for c in classes if not any(_is_image(os.path.join(d, f)) for d, files in
                                           walk_once(os.path.join(folder, c)) for f in files)]
    if empty:
        raise DatasetError(f"class folder(s) without images in {folder}: {', '.join(empty[:10])}")
    return CleanImageFolder(folder, transform=transform, loader=load_image, is_valid_file=_is_image)


# ----------------------------------------------------------------------------- loaders
def make_loader(dataset: Dataset, batch_size: int, workers: int, info: DistInfo, train: bool,
                seed: int = 0) -> tuple[DataLoader, Callable[[int], None]]:
    """A loader and its ``set_epoch(epoch)``; ``batch_size`` is global (split over ranks).

    Training drops the last incomplete batch, so a batch larger than the training set would give
    epochs without a step: refused here. Shuffling draws from a generator reseeded per epoch (and
    ``DistributedSampler``'s epoch under torchrun), so a resumed run sees the same order.
    """
    if batch_size % info.world_size:
        raise ConfigError(f"the global batch {batch_size} (the run's record) does not divide over the "
                          f"{info.world_size} processes; resume with as many processes as the run had")
    per_rank = batch_size // info.world_size
    size = len(dataset)  # type: ignore[arg-type]
    if train and size // info.world_size < per_rank:
        shown = f"{per_rank} per process × {info.world_size}" if info.distributed else str(batch_size)
        raise ConfigError(f"--batch-size {shown} is larger than the {size} training images: every epoch "
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
