"""The examples in the public docstrings run and print what they claim."""

import doctest
import importlib

import pytest
import timm
import torch

import gcp
import gcp.zoo

MODULES = ["gcp.spectral", "gcp.covariance", "gcp.newton_schulz", "gcp.approximants", "gcp.pooling",
           "gcp.whitening", "gcp.pca", "gcp.zoo._gcpnet"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    torch.manual_seed(0)
    module = importlib.import_module(name)
    result = doctest.testmod(module, extraglobs=dict(torch=torch, gcp=gcp, timm=timm, zoo=gcp.zoo),
                             optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted > 0 and result.failed == 0
