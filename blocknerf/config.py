"""Typed configuration: frozen dataclasses filled from YAML files and command-line overrides.

Every component owns one frozen dataclass of settings, documented field by field, with its defaults
defined there and nowhere else. Files in ``configs/`` hold overrides only. Unknown keys and values of
the wrong type are errors that name the file and the key.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from blocknerf.errors import ConfigError

T = TypeVar("T")


def to_dict(cfg: Any) -> dict[str, Any]:
    """A plain, JSON- and YAML-safe nested dict of a config dataclass."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            value = to_dict(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def from_dict(cls: type[T], data: Mapping[str, Any] | None, *, where: str = "config") -> T:
    """Build ``cls`` from a (partial) mapping; missing keys take the class defaults.

    Raises ConfigError naming ``where`` and the dotted key for unknown keys or wrongly typed values.
    """
    return replace(cls(), data or {}, where=where)


def replace(cfg: T, overrides: Mapping[str, Any], *, where: str = "config", prefix: str = "") -> T:
    """A copy of ``cfg`` with nested ``overrides`` applied (dicts for nested sections)."""
    if not isinstance(overrides, Mapping):
        raise ConfigError(where, f"'{prefix.rstrip('.') or 'config'}' must be a mapping, got {_describe(overrides)}")
    hints = typing.get_type_hints(type(cfg))
    known = {f.name for f in dataclasses.fields(cfg)}
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        dotted = f"{prefix}{key}"
        if key not in known:
            raise ConfigError(where, f"unknown key {dotted!r} (known keys: {', '.join(sorted(known))})")
        current = getattr(cfg, key)
        if dataclasses.is_dataclass(current):
            changes[key] = replace(current, value, where=where, prefix=f"{dotted}.")
        else:
            changes[key] = _coerce(value, hints[key], where=where, key=dotted)
    new = dataclasses.replace(cfg, **changes)
    check = getattr(new, "validate", None)
    if check is not None:
        try:
            check()
        except ValueError as exc:
            raise ConfigError(where, f"{prefix.rstrip('.') or 'config'}: {exc}") from None
    return new


def dotted_to_nested(flat: Mapping[str, Any]) -> dict[str, Any]:
    """``{"train.steps": 5}`` -> ``{"train": {"steps": 5}}``; values of None are dropped."""
    nested: dict[str, Any] = {}
    for dotted, value in flat.items():
        if value is None:
            continue
        node = nested
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with ``yaml.safe_load``; an empty file is an empty mapping."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(path, "config file not found") from None
    except OSError as exc:
        raise ConfigError(path, f"cannot read config file ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(path, f"not valid YAML{line}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(path, f"a config file must hold a mapping, got {_describe(data)}")
    return data


PRESETS_DIR = Path(__file__).resolve().parent / "presets"
"""Named presets shipped with blocknerf: ``presets/<name>.yaml``."""


def preset_names() -> tuple[str, ...]:
    """Names of the shipped presets."""
    return tuple(sorted(p.stem for p in PRESETS_DIR.glob("*.yaml")))


def read_preset(name: str) -> dict[str, Any]:
    """A shipped preset (``presets/<name>.yaml``) as a mapping; ConfigError for an unknown name."""
    if name not in preset_names():
        raise ConfigError(None, f"no preset named {name!r} (presets: {', '.join(preset_names())})")
    return read_yaml(PRESETS_DIR / f"{name}.yaml")


def write_yaml(cfg: Any, path: str | Path) -> None:
    """Write the fully resolved config beside an output, so a run can be reproduced."""
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}" if not isinstance(value, (dict, list)) else type(value).__name__


def _coerce(value: Any, hint: Any, *, where: str, key: str) -> Any:
    """Check ``value`` against the annotation ``hint``; convert lists to tuples, ints to floats."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, option, where=where, key=key)
            except ConfigError as exc:
                errors.append(exc.problem)
        raise ConfigError(where, errors[0] if len(errors) == 1 else f"'{key}': {_describe(value)} fits none of {hint}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(where, f"'{key}' must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(where, f"'{key}' must be a list, got {_describe(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], where=where, key=f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(where, f"'{key}' must have {len(args)} items, got {len(value)}")
        return tuple(_coerce(v, a, where=where, key=f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict or hint is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(where, f"'{key}' must be a mapping, got {_describe(value)}")
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(where, f"'{key}' must be true or false, got {_describe(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(where, f"'{key}' must be an integer, got {_describe(value)}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(where, f"'{key}' must be a number, got {_describe(value)}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(where, f"'{key}' must be a string, got {_describe(value)}")
        return value
    if hint is Any:
        return value
    raise TypeError(f"unsupported config annotation {hint!r} for '{key}'")
