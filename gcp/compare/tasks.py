"""The data of the comparison's training sections: noisy digits, and a texture control.

Both are made offline and bit-for-bit reproducibly (scikit-learn's ``load_digits`` ships in its
wheel; the textures are drawn from a seeded generator), and both are fixed by a *noise seed* of
their own, independent of the training seed: every arm and every seed trains and is tested on the
same images, so what differs between two runs is the network's initialisation and data order only.

**Noisy digits** (:func:`noisy_digits`). Clean 8×8 digits are nearly separable by any head (every
arm of a small CNN scores about 98.5%, within seed noise of each other), so a comparison on them
cannot tell heads apart. Fixed Gaussian pixel noise (σ = 0.3 on pixels in [0, 1]) makes the task
hard enough for the head to matter. Each test digit is drawn ``test_draws`` times with independent
noise, which averages the test set's own sampling noise out of every run's accuracy.

**Texture control** (:func:`correlation_textures`). Classes that differ *only* in how the input
channels correlate: every pixel is an independent draw of a zero-mean, unit-variance 3-vector whose
correlation matrix is the class's. Means and per-channel variances are equal across classes, so only
second-order (cross-channel) statistics separate them: the case a covariance head is said to be
built for.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

#: pixel noise of the noisy-digits task (pixels scaled to [0, 1]) and test draws per digit
NOISE_SIGMA, TEST_DRAWS = 0.3, 5
#: the seed of the task's images (noise, textures): fixed, and independent of the training seeds
NOISE_SEED = 0


@dataclass(frozen=True)
class Task:
    """A classification task as tensors: ``(N, C, H, W)`` images and ``(N,)`` labels."""

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int

    @property
    def in_chans(self) -> int:
        return int(self.x_train.shape[1])

    def tensors(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return self.x_train, self.y_train, self.x_test, self.y_test


def digits_split(seed: int = 0) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``load_digits`` scaled to [0, 1], split 80/20 (1437 / 360) with a fixed permutation."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target, dtype=torch.long)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    cut = int(0.8 * len(y))
    return x[perm[:cut]], y[perm[:cut]], x[perm[cut:]], y[perm[cut:]]


def noisy_digits(sigma: float = NOISE_SIGMA, test_draws: int = TEST_DRAWS, noise_seed: int = NOISE_SEED) -> Task:
    """Digits with fixed Gaussian pixel noise of std ``sigma``: one draw per training image, and
    ``test_draws`` independent draws of each of the 360 test digits (1800 test images at 5)."""
    if not sigma >= 0 or test_draws < 1:
        raise ValueError(f"noisy_digits needs sigma >= 0 and test_draws >= 1, got {sigma}, {test_draws}")
    xtr, ytr, xte, yte = digits_split()
    g = torch.Generator().manual_seed(noise_seed)
    xtr = xtr + sigma * torch.randn(xtr.shape, generator=g)
    xte = xte.repeat(test_draws, 1, 1, 1)
    xte = xte + sigma * torch.randn(xte.shape, generator=g)
    return Task("noisy_digits", xtr, ytr, xte, yte.repeat(test_draws), 10)


#: the texture classes: each correlates one pair of the 3 channels, positively or negatively
TEXTURE_PAIRS: tuple[tuple[int, int, float], ...] = tuple((i, j, s * 0.5) for i, j in ((0, 1), (0, 2), (1, 2))
                                                           for s in (1, -1))


def texture_correlations() -> Tensor:
    """``(K, 3, 3)`` correlation matrices of the texture classes (unit diagonal, one ±0.5 pair)."""
    out = torch.eye(3).repeat(len(TEXTURE_PAIRS), 1, 1)
    for k, (i, j, rho) in enumerate(TEXTURE_PAIRS):
        out[k, i, j] = out[k, j, i] = rho
    return out


def correlation_textures(train_per_class: int = 240, test_per_class: int = 300, size: int = 8,
                         noise_seed: int = NOISE_SEED) -> Task:
    """3-channel ``size``×``size`` images whose pixels are independent ``N(0, R_k)`` draws, ``R_k``
    the class's correlation matrix (:func:`texture_correlations`): equal means and variances in
    every class, so only cross-channel correlation tells them apart."""
    g = torch.Generator().manual_seed(noise_seed + 1)
    chol = torch.linalg.cholesky(texture_correlations().double()).float()

    def draw(per_class: int) -> tuple[Tensor, Tensor]:
        y = torch.arange(len(TEXTURE_PAIRS)).repeat_interleave(per_class)
        z = torch.randn(len(y), size * size, 3, generator=g)
        x = (z @ chol[y].transpose(-1, -2)).transpose(1, 2).reshape(len(y), 3, size, size)
        return x.contiguous(), y

    xtr, ytr = draw(train_per_class)
    xte, yte = draw(test_per_class)
    return Task("correlation_textures", xtr, ytr, xte, yte, len(TEXTURE_PAIRS))


#: the tasks by name, as the training records name them
TASKS = {"noisy_digits": noisy_digits, "correlation_textures": correlation_textures}
