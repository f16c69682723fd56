"""``gcp-timm SCRIPT [ARGS...]``: run one of timm's scripts (``train.py``, ``validate.py``,
``benchmark.py``, ``onnx_export.py``, … from a timm checkout) with the gcp models registered, so
``--model gcp_resnet50`` works without editing the script.

    gcp-timm ~/pytorch-image-models/validate.py /data/imagenet --model gcp_resnet50.isqrt_cov_in1k \\
        --pretrained --pretrained-path r50.safetensors
    gcp-timm ~/pytorch-image-models/benchmark.py --model gcp_resnet50 --bench inference

The script runs as ``__main__`` in this process after ``import gcp.zoo`` (what timm's own
``--device-modules gcp.zoo`` does for ``train.py``), with ``sys.argv`` as if it were started
directly.
"""

from __future__ import annotations

import os
import runpy
import sys
from typing import Optional


def main(argv: Optional[list[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if args else 2
    script = args[0]
    if not os.path.isfile(script):
        print(f"gcp-timm: {script}: no such script (give the path of one of timm's scripts, e.g. "
              "pytorch-image-models/validate.py)", file=sys.stderr)
        return 2
    import gcp.zoo  # noqa: F401 - registers the gcp models with timm before the script builds one

    saved = sys.argv
    sys.argv = [script, *args[1:]]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))  # as `python script.py` would
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as exc:  # the script's own exit status
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = saved
        sys.path.pop(0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
