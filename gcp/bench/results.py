"""Benchmark output: what a script prints is also written to a dated results file.

The tables in the documentation link to these files rather than copies pasted by hand, so every
number there says when, on which machine and with which command it was measured.

Example:
    >>> report = Report("bench_demo", results_dir=None)   # None: print only
    >>> report.table(["route", "ms"], [["exact", "1.0"]])
    | route | ms |
    |---|---|
    | exact | 1.0 |
"""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import sys
from typing import Optional

import torch

from .timing import markdown_table

__all__ = ["Report", "environment"]


def environment(device: torch.device) -> str:
    """One line naming the device, torch, CUDA and cuSOLVER versions and the CPU threads."""
    if device.type == "cuda":
        from gcp.eigh_solver import backend_info

        info = backend_info()
        where = (f"{torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}, "
                 f"cuSOLVER {info.get('cusolver', '-')}, eigh backend {info['eigh_backend']}")
    else:
        where = f"CPU ({platform.processor() or platform.machine()}), {torch.get_num_threads()} threads"
    return f"device {device} — {where}; torch {torch.__version__}; Python {platform.python_version()}"


class Report:
    """Collect a benchmark's printed lines and tables; :meth:`save` writes them, with the
    environment and the command line, to ``<results_dir>/<name>-<YYYY-MM-DD>.md`` (a second run on
    the same day gets ``-2``, ``-3``, …: results are never overwritten)."""

    def __init__(self, name: str, results_dir: Optional[str] = "results") -> None:
        self.name = name
        self.results_dir = results_dir
        self.lines: list[str] = []

    def line(self, text: str = "") -> None:
        print(text)
        self.lines.append(text)

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        self.line(markdown_table(header, rows))

    def save(self, device: torch.device) -> Optional[str]:
        print(f"\n{environment(device)}")
        if self.results_dir is None:
            return None
        os.makedirs(self.results_dir, exist_ok=True)
        today = datetime.date.today().isoformat()
        path, n = os.path.join(self.results_dir, f"{self.name}-{today}.md"), 1
        while os.path.exists(path):
            n += 1
            path = os.path.join(self.results_dir, f"{self.name}-{today}-{n}.md")
        command = " ".join(shlex.quote(a) for a in [os.path.basename(sys.argv[0]), *sys.argv[1:]])
        head = [f"# {self.name}, {today}", "", f"- {environment(device)}", f"- command: `{command}`", ""]
        with open(path, "w") as fh:
            fh.write("\n".join(head + self.lines) + "\n")
        print(f"\nwrote {path}")
        return path
