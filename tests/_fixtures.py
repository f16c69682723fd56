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


def cub(root: str, classes: int = 3, train: int = 3, test: int = 2, size: int = 40) -> str:
    """CUB_200_2011 in its native layout (1-based ids and labels, boxes inside the images)."""
    base = os.path.join(root, "CUB_200_2011")
    lines = {k: [] for k in ("images", "split", "labels", "boxes")}
    image_id = 0
    for c in range(classes):
        folder = f"{c + 1:03d}.Class_{c}"
        for i in range(train + test):
            image_id += 1
            rel = f"{folder}/img_{i}.jpg"
            write_image(os.path.join(base, "images", rel), image_id, size, tint=c)
            lines["images"].append(f"{image_id} {rel}")
            lines["split"].append(f"{image_id} {1 if i < train else 0}")
            lines["labels"].append(f"{image_id} {c + 1}")
            lines["boxes"].append(f"{image_id} 4.0 6.0 20.0 16.0")
    files = {"images.txt": "images", "train_test_split.txt": "split", "image_class_labels.txt": "labels",
             "bounding_boxes.txt": "boxes"}
    for name, key in files.items():
        with open(os.path.join(base, name), "w") as fh:
            fh.write("\n".join(lines[key]) + "\n")
    with open(os.path.join(base, "classes.txt"), "w") as fh:
        fh.write("\n".join(f"{c + 1} {c + 1:03d}.Class_{c}" for c in range(classes)) + "\n")
    return root


def stanford_cars(root: str, classes: int = 3, train: int = 3, test: int = 2, size: int = 40) -> str:
    import scipy.io as sio

    base = os.path.join(root, "stanford_cars")
    os.makedirs(os.path.join(base, "devkit"), exist_ok=True)
    sio.savemat(os.path.join(base, "devkit", "cars_meta.mat"),
                {"class_names": np.array([f"Car {c}" for c in range(classes)], dtype=object)})
    for split, n, mat in (("train", train, os.path.join(base, "devkit", "cars_train_annos.mat")),
                          ("test", test, os.path.join(base, "cars_test_annos_withlabels.mat"))):
        recs = []
        for c in range(classes):
            for i in range(n):
                fname = f"{split}_{c}_{i}.jpg"
                write_image(os.path.join(base, f"cars_{split}", fname), c * 100 + i, size, tint=c)
                recs.append((fname, c + 1))
        sio.savemat(mat, {"annotations": np.array(recs, dtype=[("fname", "O"), ("class", "O")])})
    return root


def fgvc_aircraft(root: str, train: int = 2, val: int = 1, test: int = 2, size: int = 40) -> str:
    """Three variants in two families of two manufacturers."""
    data = os.path.join(root, "fgvc-aircraft-2013b", "data")
    variants = ["707-320", "A320", "A380"]
    family = {"707-320": "Boeing 707", "A320": "A320", "A380": "A380"}
    maker = {"707-320": "Boeing", "A320": "Airbus", "A380": "Airbus"}
    levels = {"variant": lambda v: v, "family": family.get, "manufacturer": maker.get}
    for name, values in (("variants.txt", variants), ("families.txt", sorted(set(family.values()))),
                         ("manufacturers.txt", sorted(set(maker.values())))):
        os.makedirs(data, exist_ok=True)
        with open(os.path.join(data, name), "w") as fh:
            fh.write("\n".join(values) + "\n")
    ids: dict[str, list[tuple[str, str]]] = {"train": [], "val": [], "test": []}
    n = 1000
    for v_index, v in enumerate(variants):
        for split, count in (("train", train), ("val", val), ("test", test)):
            for _ in range(count):
                n += 1
                write_image(os.path.join(data, "images", f"{n:07d}.jpg"), n, size, tint=v_index)
                ids[split].append((f"{n:07d}", v))
    ids["trainval"] = ids["train"] + ids["val"]
    for level, fn in levels.items():
        for split, rows in ids.items():
            with open(os.path.join(data, f"images_{level}_{split}.txt"), "w") as fh:
                fh.write("\n".join(f"{i} {fn(v)}" for i, v in rows) + "\n")
    return root


def stanford_dogs(root: str, classes: int = 3, train: int = 3, test: int = 2, size: int = 40) -> str:
    import scipy.io as sio

    lists: dict[str, tuple[list[str], list[int]]] = {"train": ([], []), "test": ([], [])}
    for c in range(classes):
        folder = f"n0200{c}-breed_{c}"
        for i in range(train + test):
            rel = f"{folder}/{folder}_{i}.jpg"
            write_image(os.path.join(root, "Images", rel), c * 50 + i, size, tint=c)
            split = "train" if i < train else "test"
            lists[split][0].append(rel)
            lists[split][1].append(c + 1)
    for split, (files, labels) in lists.items():
        sio.savemat(os.path.join(root, f"{split}_list.mat"),
                    {"file_list": np.array(files, dtype=object).reshape(-1, 1),
                     "labels": np.array(labels).reshape(-1, 1)})
    return root


def _cifar_images(rng: np.random.Generator, labels: list[int]) -> np.ndarray:
    """``N×3072`` uint8 rows (1024 R, 1024 G, 1024 B), each tinted by its label's colour."""
    data = rng.integers(0, 80, size=(len(labels), 3, 32, 32), dtype=np.uint8)
    for i, y in enumerate(labels):
        data[i, y % 3] += 150
    return data.reshape(len(labels), 3072)


def _pickle(path: str, entry: dict) -> None:
    import pickle

    with open(path, "wb") as fh:
        pickle.dump(entry, fh, protocol=2)


def cifar(root: str, name: str = "cifar10", per_batch: int = 8, test: int = 12, seed: int = 0) -> str:
    """A tiny CIFAR tree in the native python format (the pickled batches, ``root`` as ``--data-dir``):
    CIFAR-10's five training batches of ``per_batch`` images, or CIFAR-100's one training file, and a
    test batch; labels cycle over the first few classes so every class of them is in both splits."""
    rng = np.random.default_rng(seed)
    if name == "cifar10":
        folder = os.path.join(root, "cifar-10-batches-py")
        os.makedirs(folder, exist_ok=True)
        for b in range(1, 6):
            labels = [(i + b) % 3 for i in range(per_batch)]
            _pickle(os.path.join(folder, f"data_batch_{b}"), {"batch_label": f"training batch {b} of 5",
                                                               "labels": labels, "data": _cifar_images(rng, labels),
                                                               "filenames": [f"img_{b}_{i}.png" for i in range(per_batch)]})
        labels = [i % 3 for i in range(test)]
        _pickle(os.path.join(folder, "test_batch"), {"batch_label": "testing batch 1 of 1", "labels": labels,
                                                     "data": _cifar_images(rng, labels),
                                                     "filenames": [f"test_{i}.png" for i in range(test)]})
        _pickle(os.path.join(folder, "batches.meta"), {"label_names": ["airplane", "automobile", "bird", "cat", "deer",
                                                                       "dog", "frog", "horse", "ship", "truck"],
                                                       "num_cases_per_batch": per_batch, "num_vis": 3072})
    else:
        folder = os.path.join(root, "cifar-100-python")
        os.makedirs(folder, exist_ok=True)
        for split, n in (("train", 5 * per_batch), ("test", test)):
            fine = [i % 3 for i in range(n)]
            _pickle(os.path.join(folder, split), {"filenames": [f"{split}_{i}.png" for i in range(n)],
                                                  "batch_label": split, "fine_labels": fine,
                                                  "coarse_labels": [0] * n, "data": _cifar_images(rng, fine)})
        _pickle(os.path.join(folder, "meta"), {"fine_label_names": [f"class_{i}" for i in range(100)],
                                               "coarse_label_names": [f"super_{i}" for i in range(20)]})
    return root
