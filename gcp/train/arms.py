"""The arms of a multi-run command: several heads (``--head``) or backward modes (``--backward``)
times several seeds, each run in its own folder, every run checked before the first one starts.

``--head`` takes a comma-separated list of heads, each ``METHOD[:BACKWARD][(KEY=VALUE, ...)]``::

    --head gap,bcnn,cbp(proj_dim=2048),isqrt,svd:exact,svd:pade(degree=(8, 8))

Values are Python literals. Every head is validated as a :class:`gcp.HeadConfig` when the list is
read, so a misspelt method or an option of another method is refused before any run.
"""

from __future__ import annotations

import ast
import os
import re
from dataclasses import dataclass, field
from typing import Any, Optional

import gcp
from gcp.validators import split_top_level

from .errors import ConfigError

_ITEM = re.compile(r"^\s*(?P<method>[A-Za-z_][\w]*)\s*(?::\s*(?P<backward>[A-Za-z_][\w]*))?\s*"
                   r"(?:\((?P<options>.*)\))?\s*$", re.S)


@dataclass(frozen=True)
class Arm:
    """One arm: its label (the folder and the table's row) and the run settings it sets."""

    label: str
    settings: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def folder(self) -> str:
        """The label as a folder name: ``svd:pade`` → ``svd-pade``; options, quotes and spaces go."""
        text = re.sub(r"[^\w.=,-]+", "-", re.sub(r"\bd=(\d+)", r"d\1", self.label.replace(":", "-"))).strip("-")
        return text or "default"


def _options(text: str, item: str) -> dict[str, Any]:
    try:
        call = ast.parse(f"f({text})", mode="eval").body
    except SyntaxError:
        raise ConfigError(f"--head {item!r}: the options must read KEY=VALUE, ... (Python literals)") from None
    if not isinstance(call, ast.Call) or call.args:
        raise ConfigError(f"--head {item!r}: the options must read KEY=VALUE, ... (Python literals)")
    out = {}
    for kw in call.keywords:
        try:
            out[kw.arg] = ast.literal_eval(kw.value)
        except ValueError:
            raise ConfigError(f"--head {item!r}: {kw.arg}= must be a Python literal") from None
    return out


def parse_heads(text: str) -> list[Arm]:
    """The heads of ``--head``, each validated, none repeated."""
    arms = []
    for item in split_top_level(text, ","):
        if not item.strip():
            raise ConfigError(f"--head {text!r} has an empty entry")
        match = _ITEM.match(item)
        if match is None:
            raise ConfigError(f"--head {item.strip()!r}: expected METHOD[:BACKWARD][(KEY=VALUE, ...)], e.g. "
                              "svd:pade or cbp(proj_dim=2048)")
        options = _options(match["options"], item.strip()) if match["options"] is not None else {}
        try:
            config = gcp.HeadConfig.from_kwargs(match["method"], match["backward"], None, **options)
        except gcp.GCPError as exc:
            raise ConfigError(f"--head {item.strip()!r}: {exc}") from None
        options = {**dict(config.method_options), **dict(config.backward_options)}
        # iters and alpha have flags (and run-record fields) of their own
        settings: dict[str, Any] = {"method": config.method, "backward": config.backward,
                                    **{k: options.pop(k) for k in ("iters", "alpha") if k in options},
                                    "head_options": options}
        arms.append(Arm(config.label(), settings))
    labels = [a.label for a in arms]
    repeated = sorted({x for x in labels if labels.count(x) > 1})
    if repeated:
        raise ConfigError(f"--head {text!r} lists {', '.join(repeated)} more than once: each head runs once")
    return arms


def parse_backwards(text: str) -> list[Arm]:
    """The modes of ``--backward``: one, a comma-separated list without repeats, or ``all``."""
    modes = list(gcp.BACKWARDS) if text == "all" else [m.strip() for m in text.split(",") if m.strip()]
    if not modes:
        raise ConfigError(f"--backward {text!r} names no mode")
    for m in modes:
        gcp.get_backward(m)  # UnknownBackwardError lists the valid ones
    repeated = sorted({m for m in modes if modes.count(m) > 1})
    if repeated:
        raise ConfigError(f"--backward {text!r} lists {', '.join(repeated)} more than once: each mode runs once")
    return [Arm(m, {"backward": m}) for m in modes]


def parse_norm_sweep(dims: Optional[str], modes: Optional[str]) -> list[Optional[Arm]]:
    """The ZCA/PCA arms of ``--norm-dim D[,D...]`` × ``--norm-backward MODE[,MODE...]`` (each list
    validated, none repeated); ``[None]`` when neither is given."""
    if dims is None and modes is None:
        return [None]
    values: list[Any] = [None]
    if dims is not None:
        items = [d.strip() for d in dims.split(",")]
        if not all(d.isdigit() and int(d) >= 1 for d in items):
            raise ConfigError(f"--norm-dim {dims!r}: expected channels per group, integers >= 1 (e.g. 4,8,16)")
        values = [int(d) for d in items]
        if len(set(values)) != len(values):
            raise ConfigError(f"--norm-dim {dims!r} lists a value more than once: each runs once")
    backwards: list[Any] = [None]
    if modes is not None:
        try:
            backwards = [a.settings["backward"] for a in parse_backwards(modes)]
        except gcp.GCPError as exc:
            message = str(exc).replace("--backward", "--norm-backward")
            raise ConfigError(f"--norm-backward {modes!r}: {message}") from None
    arms = []
    for d in values:
        for m in backwards:
            settings = {k: v for k, v in (("norm_dim", d), ("norm_backward", m)) if v is not None}
            arms.append(Arm(" ".join(([f"d={d}"] if d is not None else []) + ([m] if m is not None else [])), settings))
    return arms


def _combined(a: Optional[Arm], b: Optional[Arm]) -> Optional[Arm]:
    if a is None or b is None:
        return a or b
    return Arm(f"{a.label} {b.label}", {**a.settings, **b.settings})


def arms_of(head: Optional[str], backward: Optional[str], given: dict[str, Any], norm_dims: Optional[str] = None,
            norm_backwards: Optional[str] = None) -> list[Optional[Arm]]:
    """The arms of a command line: ``--head``'s or ``--backward``'s, times the ZCA/PCA sweep of
    ``--norm-dim``/``--norm-backward``; or the one run of the flags.

    ``--head`` sets each run's method, backward and options, so it is refused together with
    ``--method``, ``--backward``, ``--iters``, ``--alpha`` or ``--head-opt`` (put them in the head).
    """
    heads = _head_arms(head, backward, given)
    return [_combined(h, n) for h in heads for n in parse_norm_sweep(norm_dims, norm_backwards)]


def _head_arms(head: Optional[str], backward: Optional[str], given: dict[str, Any]) -> list[Optional[Arm]]:
    if head is not None:
        clash = [f"--{k.replace('_', '-').replace('head-options', 'head-opt')}" for k in
                 ("method", "iters", "alpha", "head_options") if given.get(k) is not None]
        if backward is not None:
            clash.append("--backward")
        if clash:
            raise ConfigError(f"--head sets each run's method, backward and options; drop {', '.join(clash)} "
                              "(write them in the head, e.g. --head svd:taylor(degree=9),isqrt(iters=3))")
        return list(parse_heads(head))
    if backward is None:
        return [None]
    return list(parse_backwards(backward))


@dataclass(frozen=True)
class PlannedRun:
    arm: Optional[Arm]
    seed: int
    output: str

    @property
    def name(self) -> str:
        return self.arm.label if self.arm is not None else "default"


def plan_runs(arms: list[Optional[Arm]], seeds: Optional[list[int]], output: str,
              resume: Optional[str]) -> list[PlannedRun]:
    """Every run (arm × seed) with its folder, checked before the first one starts: one run goes
    to ``output``; several go to ``output/<arm>/seed<k>/``."""
    seeds = list(seeds) if seeds is not None else [0]
    if len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ConfigError(f"--seeds must be distinct integers >= 0, got {seeds}")
    several = len(arms) > 1 or len(seeds) > 1
    if several and resume not in (None, "auto"):
        raise ConfigError("with several heads, modes or seeds, --resume takes 'auto' (each run resumes its own)")
    if not several:
        return [PlannedRun(arms[0], seeds[0], output)]
    folders = [a.folder if a is not None else "default" for a in arms]
    if len(set(folders)) != len(folders):
        raise ConfigError(f"two heads would share a run folder ({', '.join(folders)}); give them distinct options")
    return [PlannedRun(a, s, os.path.join(output, f, f"seed{s}")) for a, f in zip(arms, folders) for s in seeds]
