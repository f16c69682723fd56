"""A pytest plugin for timm's ``tests/test_models.py``: ``timm.list_models`` answers with the GCP
names (``gcp_<name>``) of the timm models listed in ``GCP_TIMM_SUITE_MODELS``.

It is loaded with ``pytest -p gcp.zoo.timm_suite_plugin`` before timm's test module is collected, so
the module's ``from timm import list_models`` binds to the patched function. Filters are applied by
timm's own ``list_models`` to the timm names; weight downloads select nothing.
"""

from __future__ import annotations

import os

import timm

import gcp.zoo  # noqa: F401  (registers the gcp_<name> entrypoints with timm)

_original = timm.list_models


def _chosen() -> list[str]:
    return [m for m in os.environ.get("GCP_TIMM_SUITE_MODELS", "").split(",") if m]


def list_models(filter="", module="", pretrained=False, exclude_filters="", name_matches_cfg=False,
                include_tags=None):  # noqa: A002  (timm's signature)
    if pretrained:  # the tests that load published weights need a network: none are selected
        return []
    chosen = set(_chosen())
    names = _original(filter=filter, module=module, exclude_filters=exclude_filters, include_tags=include_tags)
    # include_tags lists "name.tag" per pretrained config; a GCP model has one config of its own name
    # (so timm's name_matches_cfg holds for every one)
    bases = dict.fromkeys(n.split(".")[0] for n in names)
    return [f"gcp_{n}" for n in bases if n in chosen]


def list_pretrained(*args, **kwargs):
    return []


timm.list_models = list_models
timm.list_pretrained = list_pretrained
