"""The papers' recipes, as data in the flag-named form of :class:`~gcp.train.record.RunRecord`
(values are the record's meanings: ``decay_milestones`` are the 0-based epochs from which the lr
is decayed, i.e. the number of epochs after which it is; the flag spells them one higher, as timm).

Each recipe states the settings its paper used, including the preprocessing (resize, crop,
interpolation); flags a user gives override them (:func:`gcp.train.record.resolve`). ImageNet:
Li et al., CVPR 2018 (fast-MPN-COV, iSQRT-COV ResNet-50) and Song et al., ICCV 2021 (SVD-Padé
ResNet-50, last stage at stride 2). Fine-grained (fast-MPN-COV): 448² input, batch 10, SGD momentum
0.9, classifier ×5 (ResNet) or ×20 (VGG), flip-averaged test; the dataset's resize is added by
:func:`gcp.finegrained.recipes.recipe_for`.
"""

from __future__ import annotations

from typing import Any

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from gcp.zoo.cifar_resnet import CIFAR_MEAN, CIFAR_STD

from .cifar import CIFAR

_IMAGENET_EVAL = dict(img_size=224, crop_pct=0.875, interpolation="bilinear", mean=tuple(IMAGENET_DEFAULT_MEAN),
                      std=tuple(IMAGENET_DEFAULT_STD))

RECIPES: dict[str, dict[str, Any]] = {
    "isqrt-cov-r50": dict(model="gcp_resnet50", method="isqrt", iters=5, batch_size=160, epochs=65, lr=0.1,
                          sched="multistep", decay_milestones=(30, 45, 60), weight_decay=1e-4, **_IMAGENET_EVAL),
    "svd-pade-r50": dict(model="gcp_resnet50", method="svd", backward="pade", last_stride=2, batch_size=256,
                         epochs=60, lr=0.0794, sched="multistep", decay_milestones=(30, 45), weight_decay=1e-4,
                         **_IMAGENET_EVAL),
    # NeurIPS'19 (Wang et al.): ZCA whitening in place of the stem's BN of a CIFAR ResNet-18, d = 4
    # channels per group (the paper sweeps 4…64), SVD forward with the power-iteration backward;
    # SGD lr 0.1 ×0.1 at 100, 200 and 300 of 350 epochs; a run with a non-finite step counts as failed
    "zca-cifar10-r18": dict(model="resnet18_cifar", dataset="cifar10", norm_layer="zca", norm_dim=4,
                            norm_backward="pi", batch_size=128, epochs=350, lr=0.1, weight_decay=5e-4,
                            sched="multistep", decay_milestones=(100, 200, 300), on_nonfinite="stop"),
    "zca-cifar100-r18": dict(model="resnet18_cifar", dataset="cifar100", norm_layer="zca", norm_dim=4,
                             norm_backward="pi", batch_size=128, epochs=350, lr=0.1, weight_decay=5e-4,
                             sched="multistep", decay_milestones=(100, 200, 300), on_nonfinite="stop"),
    # the paper's PCA denoising: the top 16 eigenvectors, power-iteration backward
    "pca-cifar10-r18": dict(model="resnet18_cifar", dataset="cifar10", norm_layer="pca", norm_components=16,
                            norm_backward="pi", batch_size=128, epochs=350, lr=0.1, weight_decay=5e-4,
                            sched="multistep", decay_milestones=(100, 200, 300), on_nonfinite="stop"),
    "finegrained-resnet": dict(img_size=448, batch_size=10, epochs=100, lr=1.2e-3, classifier_lr_mult=5.0,
                               weight_decay=1e-4, decay_milestones=(), flip_average=True, interpolation="bilinear"),
    "finegrained-vgg": dict(img_size=448, batch_size=10, epochs=40, lr=3e-3, classifier_lr_mult=20.0,
                            weight_decay=1e-4, decay_milestones=(20,), flip_average=True, interpolation="bilinear"),
}

#: the data settings of a dataset, below a recipe and the flags (CIFAR: its 32×32 images, its
#: statistics and its splits)
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    name: dict(img_size=32, crop_pct=1.0, interpolation="bilinear", mean=CIFAR_MEAN, std=CIFAR_STD,
               train_split="train", eval_split="test") for name in CIFAR
}
