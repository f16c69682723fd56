"""Tiny runs of the two commands, shared by the training tests."""

import csv
import os

import gcp.train.imagenet as train_imagenet

BASE = ["--model", "gcp_resnet18", "--reduced-dim", "8", "--img-size", "32", "--batch-size", "4",
        "--workers", "0", "--lr", "0.01", "--device", "cpu", "--decay-milestones", "2"]
FT = ["--model", "gcp_resnet18", "--reduced-dim", "8", "--img-size", "32", "--batch-size", "3", "--workers", "0",
      "--device", "cpu"]


def train(data, out, *extra):
    return train_imagenet.main(["--data-dir", data, "--output", str(out), *BASE, *extra])


def summary(out):
    with open(os.path.join(out, "summary.csv")) as fh:
        return list(csv.DictReader(fh))
