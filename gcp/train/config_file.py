"""``--config FILE``: a yaml of flag values below the command line, and the ``args.yaml`` every run
folder gets.

A config file is read the way timm's ``train.py`` reads one, so a timm ``args.yaml`` works where
the flags overlap: its keys are flag names (``clip_grad`` or ``--clip-grad``; gcp's own names, like
``grad_clip``, too), its values become the flags they name, and flags on the command line win
(precedence: defaults < recipe < config file < flags, applied by
:func:`gcp.train.record.resolve`). Each value is checked by its flag's own type and choices, and
the error names the file and the key.

timm's ``args.yaml`` records every flag, given or not. So a timm setting gcp has no counterpart
for is accepted at timm's default (:data:`gcp.train.timm_defaults.TIMM_TRAIN_DEFAULTS`) and refused
at any other value; and a gcp setting at timm's default that means nothing in the resolved run
(``min_lr`` on a step schedule) is inert, where the same value typed as a flag is refused.

:func:`args_yaml` writes the resolved run back as flags: ``gcp-train --config RUN/args.yaml
--output NEW`` reruns it.
"""

from __future__ import annotations

import argparse
import difflib
import os
from typing import Any, Mapping, Optional

from .errors import ConfigError
from .timm_defaults import TIMM_TRAIN_DEFAULTS

#: timm settings whose default means what gcp's default means (timm's ImageFolder reads a
#: ``validation`` split from ``val`` when there is no ``validation`` folder)
_SAME_AS_GCP_DEFAULT = {"val_split": "validation", "interpolation": ""}


def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def _at_timm_default(key: str, value: Any) -> bool:
    return key in TIMM_TRAIN_DEFAULTS and _plain(value) == _plain(TIMM_TRAIN_DEFAULTS[key])


def _actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Every name a key may use for a flag: its destination and each long spelling in underscores."""
    out: dict[str, argparse.Action] = {}
    for action in parser._actions:
        if not action.option_strings or action.dest in ("help", "config"):
            continue
        out.setdefault(action.dest, action)
        for opt in action.option_strings:
            if opt.startswith("--"):
                out.setdefault(opt[2:].replace("-", "_"), action)
    return out


def _canonical(action: argparse.Action) -> str:
    """The flag's current spelling (its first long option; deprecated spellings come after it)."""
    return next(o for o in action.option_strings if o.startswith("--"))


def _tokens(path: str, key: str, value: Any, action: argparse.Action) -> list[str]:
    """The command-line tokens of ``key: value``, each checked by the flag's type and choices."""
    flag = _canonical(action)
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: {key}: {value!r} must be true or false ({flag} is a switch)")
        return [flag] if value == isinstance(action, argparse._StoreTrueAction) else []
    if action.nargs == "?" and isinstance(value, bool):  # timm's --amp, or --backbone-pretrained
        return [flag] if value else []
    if isinstance(action, argparse._AppendAction):  # KEY=VALUE options, as a list or a mapping
        items = [f"{k}={v!r}" for k, v in value.items()] if isinstance(value, Mapping) else list(_listed(value))
        return [t for item in items for t in (flag, str(item))]
    values = list(_listed(value)) if action.nargs in ("+", "*") or isinstance(action.nargs, int) else [value]
    for v in values:
        if isinstance(v, (dict, list)):
            raise ConfigError(f"{path}: {key}: {value!r} is not a value of {flag}")
        if action.type is not None and not isinstance(v, bool):
            try:
                action.type(str(v))
            except (ValueError, TypeError, argparse.ArgumentTypeError) as exc:
                raise ConfigError(f"{path}: {key}: {v!r} is not a value of {flag} ({exc})") from None
        if action.choices is not None and _typed(action, v) not in action.choices:
            raise ConfigError(f"{path}: {key}: {v!r} is not one of {flag}'s choices "
                              f"({', '.join(map(str, action.choices))})")
    return [flag, *(str(v) for v in values)]


def _listed(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _typed(action: argparse.Action, value: Any) -> Any:
    return action.type(str(value)) if action.type is not None else str(value)


def read_config(path: str, parser: argparse.ArgumentParser, argv: list[str]) -> tuple[list[str], frozenset[str]]:
    """The tokens ``path`` stands for (to be parsed before ``argv``, which wins) and the
    destinations of its values that sit at timm's default (inert where they do not apply)."""
    import yaml

    if not os.path.isfile(path):
        raise ConfigError(f"--config {path}: no such file")
    try:
        with open(path) as fh:
            values = yaml.safe_load(fh)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"--config {path}: not a readable yaml file ({' '.join(str(exc).split())})") from None
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"--config {path}: expected a mapping of flag names to values, got a "
                          f"{type(values).__name__}")
    actions = _actions(parser)
    on_command_line = {parser._option_string_actions[t.split("=")[0]].dest for t in argv
                       if t.startswith("-") and t.split("=")[0] in parser._option_string_actions}
    tokens: list[str] = []
    soft: set[str] = set()
    amp_on = bool(values.get("amp"))
    for raw_key, value in values.items():
        key = str(raw_key).lstrip("-").replace("-", "_")
        if key in ("config", "help"):
            continue
        if key == "lr" and value is None and "lr" in values:
            raise ConfigError(f"--config {path}: lr: null (timm derives it from lr_base and the batch size); give "
                              "the learning rate itself")
        action = actions.get(key)
        if action is None:
            if key in TIMM_TRAIN_DEFAULTS:
                if _at_timm_default(key, value):
                    continue  # recorded by timm's args.yaml, not chosen: nothing to honour
                raise ConfigError(f"--config {path}: {key}: {value!r} is a timm train.py setting gcp does not have "
                                  f"(timm's default is {TIMM_TRAIN_DEFAULTS[key]!r}); remove it, or set it to the "
                                  "default")
            close = difflib.get_close_matches(key, list(actions), n=1)
            raise ConfigError(f"--config {path}: unknown setting {key!r}" + (f" (did you mean {close[0]!r}?)"
                                                                             if close else ""))
        if value is None or action.dest in on_command_line:
            continue
        if key in _SAME_AS_GCP_DEFAULT and _plain(value) == _SAME_AS_GCP_DEFAULT[key]:
            continue
        if value == "" and _at_timm_default(key, value):
            continue  # timm's "not set" (output, resume, experiment)
        if key == "amp_dtype" and not amp_on and _at_timm_default(key, value):
            continue  # timm records its default dtype with amp off
        if _at_timm_default(key, value):
            soft.add(action.dest)
        tokens += _tokens(path, key, value, action)
    return tokens, frozenset(soft)


def parse_args(parser: argparse.ArgumentParser, argv: Optional[list[str]]) -> argparse.Namespace:
    """``parser.parse_args`` with ``--config FILE`` applied below the command line; the namespace
    gets ``config_soft``, the settings of the file at timm's defaults (see the module docstring)."""
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("-c", "--config", default=None)
    known, _ = pre.parse_known_args(argv)
    tokens, soft = read_config(known.config, parser, argv) if known.config else ([], frozenset())
    args = parser.parse_args(tokens + argv)
    args.config_soft = soft
    return args


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", default=None, metavar="FILE",
                        help="a yaml of flag values (timm's args.yaml format; every run folder gets one to rerun "
                             "it); flags on the command line win")


def args_yaml(values: Mapping[str, Any]) -> str:
    """The yaml text of a run's flags (:func:`gcp.train.cli.record_flags`)."""
    import yaml

    return yaml.safe_dump({k: _plain(v) for k, v in values.items()}, sort_keys=False, default_flow_style=None)
