"""What the sweep over timm's modules found, as data: per timm module (or model name).

One smallest model per timm module is built, run forward and backward and checked against timm's
contract (``tests/zoo/test_sweep.py``, ``scripts/sweep_zoo.py``). These tables are its findings:
the models ``create_model`` refuses by name with the reason, and the two preparations some
backbones need.
"""

#: modules whose models cannot take a GCP head, with the reason create_model gives
UNSUPPORTED: dict[str, str] = {
    "efficientvim": "its forward_features returns a list of per-stage (B, C, L) maps, not one feature map",
    # CoaT with parallel blocks; CoaT-Lite returns one map and is supported
    **{name: "its forward_features returns a list of token sets (one per parallel branch), not one feature map"
       for name in ("coat_tiny", "coat_mini", "coat_small")},
    "crossvit": "its forward_features returns a list of token sets (one per patch size), not one feature map",
    "pit": "its forward_features returns only the class (and distillation) token, no patch tokens to pool",
}

#: modules whose tokens lead with a class token that timm does not declare as num_prefix_tokens
PREFIX_TOKENS: dict[str, int] = {"coat": 1, "volo": 1}

#: modules whose ``head`` attribute is part of forward_features (kept, not removed as a classifier)
KEEP_HEAD: frozenset[str] = frozenset({"selecsls"})

#: layers that timm's forward_head applies after pooling, so a GCP head leaves them unused
HEAD_ONLY: dict[str, tuple[str, ...]] = {
    "fasternet": ("conv_head",),
    "ghostnet": ("conv_head",),
    "hardcorenas": ("conv_head",),
    "lcnetv2": ("conv_head",),
    "lowformer": ("in_conv", "pre_classifier"),
    "mobilenetv3": ("conv_head",),
    "naflexvit": ("fc_norm",),
    "repghost": ("conv_head",),
    "vgg": ("pre_logits",),
    "vision_transformer_relpos": ("fc_norm",),
}
