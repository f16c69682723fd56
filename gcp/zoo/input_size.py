"""Input sizes: build a model for the image size a run uses, and check it takes that size before
any work starts (a ViT built for 224² refuses 448² fine-grained images only at its first batch)."""

from __future__ import annotations

import itertools
import warnings
from typing import Any

import torch
from torch import nn

from gcp import InvalidOptionError, ShapeError


def input_size_kwargs(model_name: str, img_size: int) -> dict[str, Any]:
    """``{"img_size": img_size}`` when ``model_name``'s backbone is built for a fixed input size
    (timm's ViTs, Swin, …: the position embedding and windows depend on it) other than
    ``img_size``; ``{}`` when it is built for that size already or takes any size (CNNs). timm
    resamples a ViT's pretrained position embedding to the size it is built for. Found by
    building the model on the meta device (no memory, no weights)."""
    import timm

    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")
        model = timm.create_model(model_name, num_classes=0)
        if tuple(model.pretrained_cfg.get("input_size", (3, 0, 0)))[1:] == (img_size, img_size):
            return {}
        try:
            timm.create_model(model_name, num_classes=0, img_size=img_size)
        except (InvalidOptionError, TypeError):  # a backbone without an img_size argument takes any size
            return {}
        except Exception:  # noqa: BLE001 - it takes img_size but not this one; check_input_size says why
            return {"img_size": img_size}
    return {"img_size": img_size}


def check_input_size(model: nn.Module, img_size: int, in_chans: int = 3) -> None:
    """Raise :class:`gcp.ShapeError` when ``model`` cannot run ``img_size``² images, with the
    backbone's own reason. The model runs with meta stand-ins for its parameters and buffers
    (``torch.func.functional_call``), so nothing is computed or copied and its weights are
    untouched."""
    stand_ins = {n: torch.empty_like(t, device="meta")
                 for n, t in itertools.chain(model.named_parameters(), model.named_buffers())}
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.func.functional_call(model, stand_ins, (torch.empty(2, in_chans, img_size, img_size, device="meta"),))
    except Exception as exc:  # noqa: BLE001 - a backbone's refusal comes in many types
        name = getattr(model, "arch_args", {}).get("architecture", type(model).__name__)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ShapeError(f"{name} cannot take {img_size}×{img_size} inputs: {reason}") from exc
    finally:
        model.train(was_training)
