#!/usr/bin/env python
"""ImageNet training of a GCP model, in one process or under torchrun (thin wrapper of
``gcp.train.imagenet``, also installed as the ``gcp-train`` command); ``--help`` lists the flags."""

from gcp.train.imagenet import console_main

if __name__ == "__main__":
    raise SystemExit(console_main())
