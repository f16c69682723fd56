"""Fine-grained datasets in their native on-disk formats.

Where to get the files (none can be downloaded by this package):

* **CUB-200-2011** — the Caltech-UCSD Birds archive ``CUB_200_2011.tgz``; point ``--data-dir`` at
  the folder that contains ``CUB_200_2011/`` (or at ``CUB_200_2011/`` itself).
* **Stanford Cars** — torchvision's ``StanfordCars`` layout; the original download is gone, the
  files circulate as the Kaggle mirror: ``DATA/stanford_cars/{devkit/cars_meta.mat,
  devkit/cars_train_annos.mat, cars_train/, cars_test/, cars_test_annos_withlabels.mat}``.
* **FGVC-Aircraft** — ``fgvc-aircraft-2013b.tar.gz`` (torchvision ``FGVCAircraft``):
  ``DATA/fgvc-aircraft-2013b/data/{images/, variants.txt, families.txt, manufacturers.txt,
  images_<level>_<split>.txt}``.
* **Stanford Dogs** — ``images.tar`` and ``lists.tar``: ``DATA/Images/<wnid-breed>/*.jpg`` with
  ``DATA/train_list.mat`` and ``DATA/test_list.mat``.
* **ImageFolder** — ``DATA/train/<class>/*`` and ``DATA/val/<class>/*`` (or ``test/``).

Every loader checks its files first and raises :class:`~gcp.train.DatasetError` naming the missing or
malformed file and the expected layout. Labels are 0-based.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

import numpy as np
from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets import FGVCAircraft

from gcp.train.data import image_folder, is_litter, load_image
from gcp.train.errors import ConfigError, DatasetError

CUB_LAYOUT = ("CUB_200_2011/{images/<NNN.Class>/*.jpg, images.txt, train_test_split.txt, "
              "image_class_labels.txt, classes.txt, bounding_boxes.txt}")


def _require(path: str, layout: str) -> str:
    if not os.path.exists(path):
        raise DatasetError(f"missing {path}; expected layout {layout}")
    return path


def read_lines(path: str, layout: str = "") -> list[str]:
    """The lines of a text annotation file, decoded as UTF-8 (a byte-order mark is allowed); any
    other encoding is a :class:`DatasetError` naming the file and line, never a UnicodeDecodeError."""
    with open(_require(path, layout), "rb") as fh:
        raw = fh.read()
    lines = []
    for number, line in enumerate(raw.split(b"\n"), 1):
        try:
            lines.append(line.decode("utf-8-sig" if number == 1 else "utf-8").rstrip("\r"))
        except UnicodeDecodeError as exc:
            raise DatasetError(f"{path}:{number}: not UTF-8 text ({exc.reason} at byte {exc.start}); the "
                               "annotation files are plain UTF-8/ASCII") from None
    return lines


def _read_table(path: str, columns: int, layout: str, unique_first: bool = True) -> list[list[str]]:
    """Whitespace-separated rows of ``columns`` fields (the last may contain spaces); the first
    field (an id) must not repeat."""
    rows, seen = [], {}
    for number, line in enumerate(read_lines(path, layout), 1):
        if not line.strip():
            continue
        parts = line.strip().split(maxsplit=columns - 1)
        if len(parts) != columns:
            raise DatasetError(f"{path}:{number}: expected {columns} fields, got {line.strip()!r}")
        if unique_first and parts[0] in seen:
            raise DatasetError(f"{path}:{number}: id {parts[0]} repeats line {seen[parts[0]]}")
        seen[parts[0]] = number
        rows.append(parts)
    return rows


def _number(text: str, kind: type, where: str) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise DatasetError(f"{where}: {text!r} is not {'an integer' if kind is int else 'a number'}") from None
    if kind is float and value != value:
        raise DatasetError(f"{where}: {text!r} is not a number")
    return value


def _unique_names(names: list[str], path: str) -> None:
    seen: dict[str, int] = {}
    for i, name in enumerate(names, 1):
        if name in seen:
            raise DatasetError(f"{path}: class {name!r} is listed twice (entries {seen[name]} and {i}); two labels "
                               "would name one class")
        seen[name] = i


class LabelledImages(Dataset):
    """``(image, label)`` pairs from a list of paths and 0-based labels (optional crop boxes)."""

    def __init__(self, samples: list[tuple[str, int]], classes: list[str], transform: Optional[Callable] = None,
                 boxes: Optional[list[tuple[float, float, float, float]]] = None) -> None:
        self.samples = samples
        self.targets = [t for _, t in samples]
        self.classes = classes
        self.transform = transform
        self.boxes = boxes

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        path, target = self.samples[index]
        image: Image.Image = load_image(path)
        if self.boxes is not None:
            x, y, w, h = self.boxes[index]
            if x + w > image.width + 1 or y + h > image.height + 1:  # one pixel of rounding allowed
                raise DatasetError(f"the box {(x, y, w, h)} of {path} reaches outside the "
                                   f"{image.width}×{image.height} image")
            image = image.crop((int(x), int(y), min(image.width, int(round(x + w))),
                                min(image.height, int(round(y + h)))))
        if self.transform is not None:
            image = self.transform(image)
        return image, target


def cub200(root: str, split: str = "train", transform: Optional[Callable] = None,
           bbox_crop: bool = False) -> LabelledImages:
    """CUB-200-2011 from its text files; ``split`` is ``"train"`` or ``"test"``; with ``bbox_crop``
    each image is cropped to its bounding box first."""
    if split not in ("train", "test"):
        raise DatasetError(f"CUB-200-2011 splits are 'train' and 'test', got {split!r}")
    base = root if os.path.isfile(os.path.join(root, "images.txt")) else os.path.join(root, "CUB_200_2011")
    _require(base, CUB_LAYOUT)
    images = {i: p for i, p in _read_table(os.path.join(base, "images.txt"), 2, CUB_LAYOUT)}
    is_train = {i: f for i, f in _read_table(os.path.join(base, "train_test_split.txt"), 2, CUB_LAYOUT)}
    labels = {i: c for i, c in _read_table(os.path.join(base, "image_class_labels.txt"), 2, CUB_LAYOUT)}
    classes = [name for _, name in _read_table(os.path.join(base, "classes.txt"), 2, CUB_LAYOUT)]
    _unique_names(classes, os.path.join(base, "classes.txt"))
    boxes_raw = {r[0]: r[1:] for r in _read_table(os.path.join(base, "bounding_boxes.txt"), 5, CUB_LAYOUT)} \
        if bbox_crop else {}
    bad_split = [(i, f) for i, f in is_train.items() if f not in ("0", "1")]
    if bad_split:
        raise DatasetError(f"{os.path.join(base, 'train_test_split.txt')}: image {bad_split[0][0]} has split value "
                           f"{bad_split[0][1]!r}; the values are 1 (train) and 0 (test)")
    want = "1" if split == "train" else "0"
    samples, boxes = [], []
    for image_id, rel in images.items():
        if image_id not in is_train or image_id not in labels:
            raise DatasetError(f"image id {image_id} of images.txt has no split or label in {base}")
        if is_train[image_id] != want:
            continue
        label = _number(labels[image_id], int, f"image_class_labels.txt, image {image_id}") - 1
        if not 0 <= label < len(classes):
            raise DatasetError(f"image_class_labels.txt: label {label + 1} of image {image_id} is outside "
                               f"1..{len(classes)}")
        folder = rel.replace("\\", "/").split("/")[0]
        if folder != classes[label]:  # the archive files each image under its class's folder
            raise DatasetError(f"image_class_labels.txt: image {image_id} ({rel}) has label {label + 1} "
                               f"({classes[label]!r}) but lies in the folder of class {folder!r}")
        samples.append((os.path.join(base, "images", rel), label))
        if bbox_crop:
            if image_id not in boxes_raw:
                raise DatasetError(f"bounding_boxes.txt has no box for image {image_id}")
            box = tuple(_number(v, float, f"bounding_boxes.txt, image {image_id}") for v in boxes_raw[image_id])
            if box[2] <= 0 or box[3] <= 0 or box[0] < 0 or box[1] < 0:
                raise DatasetError(f"bounding_boxes.txt: image {image_id} has an empty or negative box {box}")
            boxes.append(box)  # type: ignore[arg-type]
    return LabelledImages(samples, classes, transform, boxes if bbox_crop else None)


def _from_torchvision(ds: Any) -> LabelledImages:
    """torchvision's ``FGVCAircraft`` as :class:`LabelledImages`."""
    samples = [(str(p), int(t)) for p, t in zip(ds._image_files, ds._labels)]
    return LabelledImages(samples, list(ds.classes))


def _mat_entries(value: Any) -> list[Any]:
    """The entries of a MATLAB cell or struct array read with ``squeeze_me=False``, whatever its
    shape: ``(1, N)``, ``(N, 1)`` and the one-entry ``(1, 1)`` alike (``squeeze_me=True`` would
    turn a single entry into a scalar, which is why torchvision's reader fails on it)."""
    return list(np.asarray(value, dtype=object).ravel()) if not isinstance(value, np.ndarray) or \
        value.dtype.names is None else list(value.ravel())


def _mat_scalar(value: Any) -> Any:
    """One MATLAB value (a string or a number wrapped in 1×1 arrays) as a Python value."""
    while isinstance(value, np.ndarray):
        if value.size != 1:
            raise ValueError(f"expected one value, got an array of shape {value.shape}")
        value = value.ravel()[0]
    return value.item() if isinstance(value, np.generic) else value


def _load_mat(path: str, layout: str) -> dict:
    import scipy.io as sio

    try:
        return sio.loadmat(_require(path, layout), squeeze_me=False)
    except (ValueError, OSError, TypeError) as exc:
        raise DatasetError(f"{path} is not a readable MATLAB file: {exc}") from None


def stanford_cars(root: str, split: str = "train", transform: Optional[Callable] = None) -> LabelledImages:
    """Stanford Cars from its devkit files (``split`` ``"train"``/``"test"``), in the layout of
    torchvision's ``StanfordCars``. Read here rather than through torchvision, whose
    ``squeeze_me=True`` fails on a file with one class or one annotation."""
    layout = ("stanford_cars/{devkit/cars_meta.mat, devkit/cars_train_annos.mat, cars_train/, cars_test/, "
              "cars_test_annos_withlabels.mat}")
    if split not in ("train", "test"):
        raise DatasetError(f"Stanford Cars splits are 'train' and 'test', got {split!r}")
    base = os.path.join(root, "stanford_cars")
    meta_path = os.path.join(base, "devkit", "cars_meta.mat")
    annos_path = os.path.join(base, "devkit", "cars_train_annos.mat") if split == "train" else \
        os.path.join(base, "cars_test_annos_withlabels.mat")
    images = _require(os.path.join(base, f"cars_{split}"), layout)
    meta, annos = _load_mat(meta_path, layout), _load_mat(annos_path, layout)
    try:
        classes = [str(_mat_scalar(c)) for c in _mat_entries(meta["class_names"])]
        records = _mat_entries(annos["annotations"])
        pairs = [(str(_mat_scalar(r["fname"])), int(_mat_scalar(r["class"]))) for r in records]
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        raise DatasetError(f"malformed Stanford Cars annotations ({meta_path}: class_names; {annos_path}: "
                           f"annotations with fname and class): {exc}") from None
    _unique_names(classes, meta_path)
    bad = [(f, c) for f, c in pairs if not 1 <= c <= len(classes)]
    if bad:
        raise DatasetError(f"{annos_path}: class {bad[0][1]} of {bad[0][0]} is outside 1..{len(classes)} "
                           f"(the classes of {meta_path})")
    return LabelledImages([(os.path.join(images, f), c - 1) for f, c in pairs], classes, transform)


def fgvc_aircraft(root: str, split: str = "trainval", transform: Optional[Callable] = None,
                  annotation_level: str = "variant") -> LabelledImages:
    """FGVC-Aircraft through torchvision (splits train/val/trainval/test; levels variant/family/manufacturer)."""
    levels = {"variant": "variants.txt", "family": "families.txt", "manufacturer": "manufacturers.txt"}
    if annotation_level not in levels:
        raise DatasetError(f"annotation level must be one of {', '.join(levels)}, got {annotation_level!r}")
    if split not in ("train", "val", "trainval", "test"):
        raise DatasetError(f"FGVC-Aircraft splits are train, val, trainval, test; got {split!r}")
    data = os.path.join(root, "fgvc-aircraft-2013b", "data")
    layout = ("fgvc-aircraft-2013b/data/{images/, variants.txt, families.txt, manufacturers.txt, "
              "images_<level>_<split>.txt}")
    classes_file = _require(os.path.join(data, levels[annotation_level]), layout)
    split_file = _require(os.path.join(data, f"images_{annotation_level}_{split}.txt"), layout)
    _require(os.path.join(data, "images"), layout)
    lines = read_lines(classes_file, layout)
    while lines and not lines[-1].strip():
        lines.pop()  # the trailing newline
    blank = [n for n, line in enumerate(lines, 1) if not line.strip()]
    if blank:
        raise DatasetError(f"{classes_file}:{blank[0]}: blank line (it would become a class without a name)")
    _unique_names([line.strip() for line in lines], classes_file)
    seen: dict[str, int] = {}
    for number, line in enumerate(read_lines(split_file, layout), 1):
        if line.strip() and len(line.strip().split(" ", 1)) != 2:
            raise DatasetError(f"{split_file}:{number}: expected '<image id> <class name>', got {line.strip()!r}")
        if line.strip():
            image_id = line.strip().split(" ", 1)[0]
            if image_id in seen:
                raise DatasetError(f"{split_file}:{number}: image {image_id} repeats line {seen[image_id]}")
            seen[image_id] = number
    try:
        ds = _from_torchvision(FGVCAircraft(root, split=split, annotation_level=annotation_level))
    except (ValueError, KeyError) as exc:
        raise DatasetError(f"malformed FGVC-Aircraft annotation under {data}: unknown class {exc}") from exc
    ds.transform = transform
    return ds


def stanford_dogs(root: str, split: str = "train", transform: Optional[Callable] = None) -> LabelledImages:
    """Stanford Dogs: ``Images/<wnid-breed>/*.jpg`` with ``train_list.mat``/``test_list.mat``."""
    layout = "{Images/<wnid-breed>/*.jpg, train_list.mat, test_list.mat}"
    if split not in ("train", "test"):
        raise DatasetError(f"Stanford Dogs splits are 'train' and 'test', got {split!r}")
    images = _require(os.path.join(root, "Images"), layout)
    lists = _require(os.path.join(root, f"{split}_list.mat"), layout)
    mat = _load_mat(lists, layout)
    try:
        files = [str(_mat_scalar(f)) for f in _mat_entries(mat["file_list"])]
        labels = [int(_mat_scalar(v)) - 1 for v in _mat_entries(mat["labels"])]
    except (KeyError, ValueError, TypeError) as exc:
        raise DatasetError(f"malformed {lists} (needs file_list and labels): {exc}") from None
    classes = sorted(e.name for e in os.scandir(images) if e.is_dir() and not is_litter(e.name))
    if len(files) != len(labels):
        raise DatasetError(f"{lists}: {len(files)} files but {len(labels)} labels")
    bad = [(f, t) for f, t in zip(files, labels) if not 0 <= t < len(classes)]
    if bad:
        raise DatasetError(f"{lists}: label {bad[0][1] + 1} of {bad[0][0]} is outside 1..{len(classes)} "
                           f"(the class folders of {images})")
    if len(set(files)) != len(files):
        repeated = next(f for f in files if files.count(f) > 1)
        raise DatasetError(f"{lists}: {repeated} is listed more than once")
    wrong = [(f, t) for f, t in zip(files, labels) if f.replace("\\", "/").split("/")[0] != classes[t]]
    if wrong:
        raise DatasetError(f"{lists}: {wrong[0][0]} has label {wrong[0][1] + 1} ({classes[wrong[0][1]]}) but lies in "
                           "another class's folder")
    samples = [(os.path.join(images, f), t) for f, t in zip(files, labels)]
    return LabelledImages(samples, [c.split("-", 1)[-1] for c in classes], transform)


def imagefolder(root: str, split: str = "train", transform: Optional[Callable] = None) -> Any:
    """Any ``train/``, ``val/`` (or ``test/``) ImageFolder; ``split="test"`` falls back to ``val``."""
    if split != "train" and not os.path.isdir(os.path.join(root, split)):
        split = "val" if os.path.isdir(os.path.join(root, "val")) else "test"
    return image_folder(root, split, transform)


@dataclass(frozen=True)
class DatasetOption:
    """An option of a dataset's loader: its keyword, the ``gcp-finetune`` flag that sets it, and the
    flag's argparse keywords (the parser is built from these)."""

    name: str
    flag: str
    help: str
    arg: tuple[tuple[str, Any], ...] = ()


BBOX_CROP = DatasetOption("bbox_crop", "--bbox-crop", "CUB: crop each image to its bounding box",
                          (("action", "store_true"),))
ANNOTATION_LEVEL = DatasetOption("annotation_level", "--annotation-level",
                                 "FGVC-Aircraft label granularity (default variant)",
                                 (("choices", ("variant", "family", "manufacturer")),))


@dataclass(frozen=True)
class DatasetSpec:
    """A fine-grained dataset, declared once: its loader, its splits, the layout it reads under
    ``--data-dir``, its resize at the 448 crop (fast-MPN-COV's protocol) and the options its loader
    takes, each with the flag that sets it."""

    loader: Callable[..., Any]
    train_split: str
    test_split: str
    layout: str
    resize: tuple[int, ...]
    options: tuple[DatasetOption, ...] = ()

    def check_options(self, name: str, opts: Mapping[str, Any]) -> None:
        """Refuse an option this dataset's loader does not take, naming the ones it does."""
        own = {o.name for o in self.options}
        flags = {o.name: o.flag for o in all_options()}
        unknown = [flags.get(k, k) for k in opts if k not in own]
        if unknown:
            valid = ", ".join(o.flag for o in self.options) or "none"
            raise ConfigError(f"{', '.join(unknown)} does not apply to --dataset {name} (its options: {valid})")


DATASETS: dict[str, DatasetSpec] = {
    "cub": DatasetSpec(cub200, "train", "test",
                       "DATA/CUB_200_2011/{images/<NNN.Class>/*.jpg, images.txt, train_test_split.txt, "
                       "image_class_labels.txt, classes.txt, bounding_boxes.txt}", (448,), (BBOX_CROP,)),
    "cars": DatasetSpec(stanford_cars, "train", "test",
                        "DATA/stanford_cars/{devkit/cars_meta.mat, devkit/cars_train_annos.mat, cars_train/, "
                        "cars_test/, cars_test_annos_withlabels.mat}", (448, 448)),
    "aircraft": DatasetSpec(fgvc_aircraft, "trainval", "test",
                            "DATA/fgvc-aircraft-2013b/data/{images/, variants.txt, families.txt, manufacturers.txt, "
                            "images_<level>_<split>.txt}", (512, 512), (ANNOTATION_LEVEL,)),
    "dogs": DatasetSpec(stanford_dogs, "train", "test", "DATA/{Images/<wnid-breed>/*.jpg, train_list.mat, "
                        "test_list.mat}", (448,)),
    "imagefolder": DatasetSpec(imagefolder, "train", "val",
                               "DATA/{train,val}/<class>/*.jpg (the same class folders in both)", (448,)),
}
LAYOUTS: dict[str, str] = {name: spec.layout for name, spec in DATASETS.items()}


def all_options() -> list[DatasetOption]:
    """Every dataset's options, once each (the flags of ``gcp-finetune``)."""
    seen: dict[str, DatasetOption] = {}
    for spec in DATASETS.values():
        for option in spec.options:
            seen.setdefault(option.name, option)
    return list(seen.values())


def build_dataset(name: str, root: str, split: str, transform: Optional[Callable] = None, **opts: Any) -> Any:
    """``name`` ∈ :data:`DATASETS`; ``split`` is ``"train"``/``"test"`` (mapped to the dataset's own)."""
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    spec = DATASETS[name]
    spec.check_options(name, opts)
    real = spec.train_split if split == "train" else spec.test_split
    return spec.loader(root, real, transform, **opts)
