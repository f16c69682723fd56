"""CIFAR-10 and CIFAR-100 in their native python format, read by torchvision's dataset classes.

``DIR/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}`` and
``DIR/cifar-100-python/{train, test, meta}``: pickles of the images (uint8, N×3072, CHW rows) and
their labels. torchvision's ``CIFAR10``/``CIFAR100`` load them; only their md5 check against the
published archive is dropped (here: each file must exist), so a copy in the same format loads too.
Like torchvision, this unpickles the files: a CIFAR folder must come from a trusted source.

Errors name the file: a missing folder or batch, a file that is not a CIFAR batch, labels out of
range. The standard augmentation (a random 32×32 crop of the image padded by 4, a flip) and
CIFAR's mean and std are :func:`cifar_transforms`'.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
from torchvision import datasets
from torchvision import transforms as T

from .errors import DatasetError


def _presence_only(files: list) -> list:
    return [(name, None) for name, _ in files]  # md5 None: torchvision checks that the file exists


class _CIFAR10(datasets.CIFAR10):
    train_list = _presence_only(datasets.CIFAR10.train_list)
    test_list = _presence_only(datasets.CIFAR10.test_list)
    meta = {**datasets.CIFAR10.meta, "md5": None}


class _CIFAR100(datasets.CIFAR100):
    train_list = _presence_only(datasets.CIFAR100.train_list)
    test_list = _presence_only(datasets.CIFAR100.test_list)
    meta = {**datasets.CIFAR100.meta, "md5": None}


@dataclass(frozen=True)
class CifarSpec:
    """One CIFAR variant: its torchvision class (without the md5 check), folder and class count."""

    cls: type
    classes: int
    label_key: str

    @property
    def folder(self) -> str:
        return self.cls.base_folder

    def files(self, split: str) -> list[str]:
        listed = self.cls.train_list if split == "train" else self.cls.test_list
        return [name for name, _ in listed] + [self.cls.meta["filename"]]


CIFAR: dict[str, CifarSpec] = {
    "cifar10": CifarSpec(_CIFAR10, 10, "labels"),
    "cifar100": CifarSpec(_CIFAR100, 100, "fine_labels"),
}
SPLITS = ("train", "test")


def cifar_split(name: str, root: str, split: str, transform: Optional[Callable] = None) -> Any:
    """The ``split`` (``train`` or ``test``) of CIFAR variant ``name`` under ``root``."""
    spec = CIFAR[name]
    if split not in SPLITS:
        raise DatasetError(f"{name} has the splits {', '.join(SPLITS)}, not {split!r}")
    folder = os.path.join(root, spec.folder)
    if not os.path.isdir(folder):
        raise DatasetError(f"--data-dir {root}: no {spec.folder}/ folder (CIFAR's python version, "
                           f"{', '.join(spec.files('train') + spec.files('test')[:1])})")
    for file in spec.files(split):
        if not os.path.isfile(os.path.join(folder, file)):
            raise DatasetError(f"{os.path.join(folder, file)}: missing ({name} needs "
                               f"{', '.join(sorted(set(spec.files('train') + spec.files('test'))))})")
    try:
        ds = spec.cls(root, train=split == "train", transform=transform, download=False)
    except Exception as exc:  # noqa: BLE001 - a bad pickle raises many types; the file is found below
        raise DatasetError(_which_file(spec, folder, split, exc)) from None
    labels = np.asarray(ds.targets)
    if len(ds.classes) != spec.classes or labels.size == 0 or labels.min() < 0 or labels.max() >= spec.classes:
        raise DatasetError(f"{folder}: the {split} split has labels {labels.min() if labels.size else '-'}.."
                           f"{labels.max() if labels.size else '-'} and {len(ds.classes)} class names; {name} has "
                           f"{spec.classes} classes")
    return ds


def _which_file(spec: CifarSpec, folder: str, split: str, exc: BaseException) -> str:
    """The message naming the file torchvision could not read (each is opened again to find it)."""
    for file in spec.files(split):
        path = os.path.join(folder, file)
        try:
            with open(path, "rb") as fh:
                entry = pickle.load(fh, encoding="latin1")
        except Exception as inner:  # noqa: BLE001
            return f"{path}: not a CIFAR pickle ({type(inner).__name__}: {inner})"
        if file == spec.cls.meta["filename"]:
            if not isinstance(entry, dict) or spec.cls.meta["key"] not in entry:
                return f"{path}: not CIFAR's meta file (no {spec.cls.meta['key']!r})"
            continue
        if not isinstance(entry, dict) or "data" not in entry or spec.label_key not in entry:
            return f"{path}: not a CIFAR batch (needs 'data' and {spec.label_key!r})"
        data = np.asarray(entry["data"])
        if data.ndim != 2 or data.shape[1] != 3072 or len(entry[spec.label_key]) != data.shape[0]:
            return (f"{path}: not a CIFAR batch (data {data.shape}, {len(entry[spec.label_key])} labels; "
                    "expected N×3072 and N labels)")
    return f"{folder}: cannot read the {split} split ({type(exc).__name__}: {exc})"


def cifar_fingerprint(ds: Any, name: str, root: str, split: str) -> str:
    """``"N images, C classes, sha256 <16 hex>"`` over the split's files (names and bytes)."""
    digest = hashlib.sha256()
    for file in CIFAR[name].files(split):
        digest.update(file.encode() + b"\0")
        with open(os.path.join(root, CIFAR[name].folder, file), "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):  # noqa: B023 - called within the iteration
                digest.update(block)
    return f"{len(ds)} images, {len(ds.classes)} classes, sha256 {digest.hexdigest()[:16]}"


def cifar_transforms(img_size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> tuple[Callable, Callable]:
    """Training: a random ``img_size`` crop of the image padded by 4 pixels, a horizontal flip;
    evaluation: the image as it is. Both normalise with ``mean``/``std``."""
    norm = [T.ToTensor(), T.Normalize(mean, std)]
    return T.Compose([T.RandomCrop(img_size, padding=4), T.RandomHorizontalFlip(), *norm]), T.Compose(norm)
