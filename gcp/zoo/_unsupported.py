"""timm models that cannot take a GCP head, by timm module or model name, with the reason.

Found by the sweep over one smallest model per timm module (tests/zoo/test_sweep.py); every entry
says why, so ``create_model`` can refuse by name instead of failing inside a forward.
"""

UNSUPPORTED: dict[str, str] = {}
