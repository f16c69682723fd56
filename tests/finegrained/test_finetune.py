"""Fine-grained datasets in their native layouts, fine-tuning, and the backward comparison."""

import csv
import os
import statistics

import pytest
import torch
from PIL import Image

from gcp.finegrained import datasets
from gcp.finegrained.finetune import main as finetune
from gcp.finegrained.recipes import recipe_for, resize_for
from gcp.train import DataSpec, RunFolderError
from gcp.train.data import transforms_for
from gcp.train.errors import DatasetError
from tests import _fixtures

MAKERS = {
    "cub": _fixtures.cub,
    "cars": _fixtures.stanford_cars,
    "aircraft": _fixtures.fgvc_aircraft,
    "dogs": _fixtures.stanford_dogs,
    "imagefolder": lambda root: _fixtures.image_folder(root, classes=3, train_per_class=3, val_per_class=2),
}
# (train images, test images, classes) of each fixture
COUNTS = {"cub": (9, 6, 3), "cars": (9, 6, 3), "aircraft": (9, 6, 3), "dogs": (9, 6, 3), "imagefolder": (9, 6, 3)}


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    return {name: make(str(tmp_path_factory.mktemp(name))) for name, make in MAKERS.items()}


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_loading_counts_labels_and_splits(name, roots):
    train = datasets.build_dataset(name, roots[name], "train")
    test = datasets.build_dataset(name, roots[name], "test")
    n_train, n_test, n_classes = COUNTS[name]
    assert (len(train), len(test), len(train.classes)) == (n_train, n_test, n_classes)
    assert sorted(set(train.targets)) == list(range(n_classes))  # 0-based
    image, label = train[0]
    assert isinstance(image, Image.Image) and label == train.targets[0]
    train_paths = {p for p, _ in train.samples}
    assert not train_paths & {p for p, _ in test.samples}


def test_cub_labels_follow_the_annotation_files(roots):
    train = datasets.cub200(roots["cub"], "train")
    assert train.classes == ["001.Class_0", "002.Class_1", "003.Class_2"]
    for path, label in train.samples:
        assert os.path.basename(os.path.dirname(path)).startswith(f"{label + 1:03d}.")
    cropped = datasets.cub200(roots["cub"], "train", bbox_crop=True)
    assert cropped[0][0].size == (20, 16)  # the box of bounding_boxes.txt


def test_aircraft_annotation_levels(roots):
    assert len(datasets.fgvc_aircraft(roots["aircraft"], "trainval", annotation_level="family").classes) == 3
    maker = datasets.fgvc_aircraft(roots["aircraft"], "test", annotation_level="manufacturer")
    assert maker.classes == ["Airbus", "Boeing"] and sorted(set(maker.targets)) == [0, 1]
    assert len(datasets.fgvc_aircraft(roots["aircraft"], "val")) == 3


def test_missing_annotation_file_names_it(tmp_path):
    root = _fixtures.cub(str(tmp_path / "c"))
    os.remove(os.path.join(root, "CUB_200_2011", "train_test_split.txt"))
    with pytest.raises(DatasetError, match=r"missing .*train_test_split.txt; expected layout CUB_200_2011/"):
        datasets.cub200(root, "train")
    cars = _fixtures.stanford_cars(str(tmp_path / "s"))
    os.remove(os.path.join(cars, "stanford_cars", "devkit", "cars_meta.mat"))
    with pytest.raises(DatasetError, match="cars_meta.mat"):
        datasets.stanford_cars(cars, "train")
    bad = _fixtures.cub(str(tmp_path / "m"))
    with open(os.path.join(bad, "CUB_200_2011", "image_class_labels.txt"), "a") as fh:
        fh.write("oops\n")
    with pytest.raises(DatasetError, match=r"image_class_labels.txt:16: expected 2 fields"):
        datasets.cub200(bad, "train")


def test_recipes():
    resnet, vgg = recipe_for("gcp_resnet50", "cub"), recipe_for("gcp_vgg16_bn", "aircraft")
    assert (resnet["img_size"], resnet["batch_size"], resnet["lr"], resnet["classifier_lr_mult"], resnet["epochs"]) \
        == (448, 10, 1.2e-3, 5.0, 100)
    assert (vgg["lr"], vgg["classifier_lr_mult"], vgg["epochs"], vgg["decay_milestones"]) == (3e-3, 20.0, 40, (20,))
    assert resize_for("aircraft", 448) == (512, 512) and resize_for("cars", 448) == (448, 448)
    assert resize_for("aircraft", 32) == (37, 37)
    assert (resnet["resize"], vgg["resize"]) == ((448,), (512, 512))
    train_tf, test_tf = transforms_for(DataSpec("aircraft", "/d", img_size=32, resize=resize_for("aircraft", 32)))
    assert test_tf(Image.new("RGB", (50, 40))).shape == (3, 32, 32)


ARGS = ["--model", "gcp_resnet18", "--reduced-dim", "8", "--img-size", "32", "--batch-size", "3", "--workers", "0",
        "--device", "cpu", "--lr", "0.01"]


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_one_epoch_finetune(name, roots, tmp_path):
    out = tmp_path / name
    assert finetune(["--dataset", name, "--data-dir", roots[name], "--output", str(out), "--epochs", "1", *ARGS]) == 0
    with open(out / "summary.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 1 and float(rows[0]["top1"]) >= 0
    ckpt = torch.load(out / "last.pth", weights_only=True)
    assert ckpt["metrics"]["images"] == COUNTS[name][1]


def test_finetune_from_a_saved_model_and_resume(roots, tmp_path):
    import gcp.zoo

    src = gcp.zoo.create_model("gcp_resnet18", num_classes=10, reduced_dim=8)
    gcp.zoo.save_pretrained(src, str(tmp_path / "imagenet"))
    out = tmp_path / "ft"
    base = ["--dataset", "cub", "--data-dir", roots["cub"], "--output", str(out), *ARGS,
            "--checkpoint", str(tmp_path / "imagenet")]
    assert finetune(base + ["--epochs", "1"]) == 0
    ckpt = torch.load(out / "last.pth", weights_only=True)
    assert ckpt["model"]["head.fc.weight"].shape == (3, 36)  # 10-class classifier replaced by a 3-class one
    with pytest.raises(RunFolderError, match="already holds a run"):
        finetune(base + ["--epochs", "2"])
    assert finetune(base + ["--epochs", "2", "--resume", str(out / "last.pth")]) == 0
    assert torch.load(out / "last.pth", weights_only=True)["epoch"] == 1


@pytest.mark.slow
def test_compare_two_backward_modes_writes_table_and_plot(roots, tmp_path):
    out = tmp_path / "cmp"
    assert finetune(["--dataset", "cub", "--data-dir", roots["cub"], "--output", str(out), "--epochs", "1",
                     "--method", "svd", "--backward", "exact,pi", "--seeds", "0", "1", "--checkpoint-hist", "0",
                     *ARGS]) == 0
    with open(out / "comparison.csv") as fh:
        rows = {r["arm"]: r for r in csv.DictReader(fh)}
    assert set(rows) == {"exact", "pi"} and rows["exact"]["seeds"] == "2" and rows["pi"]["epochs"] == "1"
    with open(out / "epochs.csv") as fh:
        epochs = list(csv.DictReader(fh))
    for mode, r in rows.items():
        # the summary is the mean ± std over seeds of each seed's last epoch in epochs.csv
        finals = [float(e["top1"]) for e in epochs if e["arm"] == mode and e["epoch"] == "0"]
        assert len(finals) == 2
        assert float(r["final_top1_mean"]) == pytest.approx(statistics.fmean(finals), rel=1e-5)
        assert float(r["final_top1_std"]) == pytest.approx(statistics.stdev(finals), rel=1e-5, abs=1e-9)
        assert float(r["epoch_time_s"]) > 0 and r["nonfinite_steps"] == "0"
    md = (out / "comparison.md").read_text()
    assert "| exact | 2 / 2 | 1 |" in md and "| pi | 2 / 2 | 1 |" in md
    with Image.open(out / "accuracy.png") as img:
        assert img.size[0] > 400
    assert (out / "pi" / "seed1" / "summary.csv").exists()
    with open(out / "epochs.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 4  # 2 modes × 2 seeds × 1 epoch
    # the statistics a paper needs, in LaTeX too; and only what --checkpoint-hist 0 keeps
    tex = (out / "comparison.tex").read_text()
    assert r"\begin{tabular}" in tex and "exact & 2/2" in tex and "pi & 2/2" in tex
    assert "- **dataset**: cub" in md and "p vs best" in md and "95% CI" in md
    for mode in ("exact", "pi"):
        for seed in (0, 1):
            assert sorted(os.listdir(out / mode / f"seed{seed}")) == ["args.yaml", "last.pth", "run.json",
                                                                      "summary.csv"]


def test_finetune_a_generic_vit_at_its_own_image_size(roots, tmp_path):
    """gcp_<timm name> in gcp-finetune: a ViT built for 224² fine-tunes at --img-size 32, built
    for it (1 class token + (32/16)² patches); a saved 224² ViT folder at 32² is refused by name
    before the run folder exists, not at the first batch."""
    import gcp.zoo
    from gcp.train import ConfigError

    base = ["--dataset", "cub", "--data-dir", roots["cub"], "--epochs", "1", "--reduced-dim", "8", "--batch-size", "3",
            "--workers", "0", "--device", "cpu", "--lr", "0.01", "--img-size", "32"]
    out = tmp_path / "vit"
    assert finetune(base + ["--output", str(out), "--model", "gcp_vit_tiny_patch16_224"]) == 0
    assert torch.load(out / "last.pth", weights_only=True)["model"]["backbone.pos_embed"].shape == (1, 1 + 2 * 2, 192)
    gcp.zoo.save_pretrained(gcp.zoo.create_model("gcp_vit_tiny_patch16_224", num_classes=5, reduced_dim=8),
                            str(tmp_path / "saved"))
    with pytest.raises(ConfigError, match=r"--img-size 32: gcp_vit_tiny_patch16_224 cannot take 32×32 inputs: "
                                          r"Input height \(32\) doesn't match model \(224\)"):
        finetune(base + ["--output", str(tmp_path / "refused"), "--checkpoint", str(tmp_path / "saved")])
    assert not (tmp_path / "refused").exists()


@pytest.mark.slow
def test_finetune_compares_heads_in_one_command(roots, tmp_path):
    out = tmp_path / "heads"
    assert finetune(["--dataset", "cub", "--data-dir", roots["cub"], "--output", str(out), "--epochs", "1",
                     "--max-steps-per-epoch", "1", "--head", "bcnn,cbp(proj_dim=64),logm:pade", *ARGS]) == 0
    with open(out / "comparison.csv") as fh:
        rows = {r["arm"]: r for r in csv.DictReader(fh)}
    assert set(rows) == {"bcnn", "cbp(proj_dim=64)", "logm/pade"}
    ckpt = torch.load(out / "cbp-proj_dim=64" / "seed0" / "last.pth", weights_only=True)
    assert ckpt["model"]["head.fc.weight"].shape[1] == 64 and "head.sketch_index" in ckpt["model"]
    assert ckpt["record"]["method"] == "cbp" and ckpt["record"]["head_options"] == {"proj_dim": 64}


@pytest.mark.parametrize("dataset, flag, valid", [("aircraft", ["--bbox-crop"], "--annotation-level"),
                                                   ("cars", ["--annotation-level", "family"], "none"),
                                                   ("dogs", ["--bbox-crop"], "none")])
def test_a_dataset_option_of_another_dataset_is_refused_before_any_run(dataset, flag, valid, roots, tmp_path):
    import gcp.train as gcptrain

    out = tmp_path / "o"
    with pytest.raises(gcptrain.ConfigError, match=f"does not apply to --dataset {dataset} \\(its options: {valid}\\)"):
        finetune(["--dataset", dataset, "--data-dir", roots[dataset], "--output", str(out), *flag, *ARGS])
    assert not out.exists()


def test_a_fine_tune_checkpoint_is_evaluated_with_its_own_model_head_and_data(roots, tmp_path, capsys):
    import json

    import gcp.train as gcptrain

    out = tmp_path / "ft"
    base = ["--dataset", "cub", "--data-dir", roots["cub"], *ARGS]
    assert finetune([*base, "--output", str(out), "--epochs", "1", "--method", "svd", "--backward", "pade"]) == 0
    capsys.readouterr()
    assert finetune([*base, "--output", str(tmp_path / "e"), "--evaluate-only", "--resume", str(out / "last.pth")]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["evaluate"]
    saved = torch.load(out / "last.pth", weights_only=True)["metrics"]
    assert metrics["top1"] == pytest.approx(saved["top1"]) and metrics["images"] == saved["images"]
    with pytest.raises(gcptrain.ConfigError, match="evaluated checkpoint keeps its model, head and data.*reduced-dim"):
        finetune([*base, "--reduced-dim", "16", "--evaluate-only", "--resume", str(out / "last.pth")])
    with pytest.raises(gcptrain.ConfigError, match="--evaluate-only needs weights"):
        finetune([*base, "--evaluate-only"])


# ----------------------------------------------------------------------------- MATLAB files with one entry
def _savemat(path, **arrays):
    import numpy as np
    import scipy.io as sio

    sio.savemat(path, {k: np.asarray(v, dtype=object) if isinstance(v, list) else v for k, v in arrays.items()})


def test_cars_with_one_class_and_one_annotation_reads(tmp_path):
    import numpy as np

    from gcp.finegrained.datasets import stanford_cars

    root = _fixtures.stanford_cars(str(tmp_path), classes=1, train=1, test=1)
    base = tmp_path / "stanford_cars"
    _savemat(base / "devkit" / "cars_meta.mat", class_names=np.array(["Car 0"], dtype=object))
    one = np.array([("train_0_0.jpg", 1)], dtype=[("fname", "O"), ("class", "O")])
    _savemat(base / "devkit" / "cars_train_annos.mat", annotations=one)
    ds = stanford_cars(root, "train")
    assert ds.classes == ["Car 0"] and ds.samples == [(str(base / "cars_train" / "train_0_0.jpg"), 0)]


def test_cars_class_listed_twice_is_refused(tmp_path):
    import numpy as np

    from gcp.finegrained.datasets import stanford_cars
    from gcp.train.errors import DatasetError

    root = _fixtures.stanford_cars(str(tmp_path), classes=2)
    _savemat(tmp_path / "stanford_cars" / "devkit" / "cars_meta.mat",
             class_names=np.array(["Car 0", "Car 0"], dtype=object))
    with pytest.raises(DatasetError, match="class 'Car 0' is listed twice"):
        stanford_cars(root, "train")


def test_dogs_with_one_file_reads(tmp_path):
    import numpy as np

    from gcp.finegrained.datasets import stanford_dogs

    root = _fixtures.stanford_dogs(str(tmp_path), classes=1, train=1, test=1)
    rel = "n02000-breed_0/n02000-breed_0_0.jpg"
    _savemat(tmp_path / "train_list.mat", file_list=np.array([rel], dtype=object), labels=np.array([1]))
    ds = stanford_dogs(root, "train")
    assert [os.path.relpath(p, root) for p, _ in ds.samples] == [os.path.join("Images", rel)]
