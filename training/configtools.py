"""Strict conversion between nested config dataclasses and plain JSON dicts.

Configs are dataclasses so that every field carries a type, a default and a docstring comment;
on disk they are JSON so a person can read and diff them. Loading rejects unknown keys and
wrongly typed values with a message that names the dotted key, e.g. ``model.d_modle``.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any

from training.errors import ConfigError


def to_dict(cfg: Any) -> dict:
    """A JSON-safe dict of a (nested) config dataclass."""
    return dataclasses.asdict(cfg)


def check_type(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return check_type(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        # one line naming every allowed form: "X must be true or false or a string, got 2"
        wants = [e.removeprefix(f"{key} must be ").rsplit(", got ", 1)[0] for e in errors]
        raise ConfigError(f"{key} must be {' or '.join(wants)}, got {value!r}")
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            choices = ", ".join(repr(a) for a in allowed)
            raise ConfigError(f"{key} must be one of {choices}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        (inner, *_) = typing.get_args(tp) or (Any,)
        return [check_type(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"config section '{key}' must be an object, got {value!r}")
        return from_dict(tp, value, prefix=f"{key}.")
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    return value


def from_dict(cls: type, data: dict, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types raise ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError(f"config section '{prefix.rstrip('.') or 'root'}' must be an object")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown config key '{prefix}{unknown[0]}'")
    kwargs = {name: check_type(value, hints[name], prefix + name) for name, value in data.items()}
    return cls(**kwargs)


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``section.key=value`` strings (value parsed as JSON, else kept as a string)."""
    out = json.loads(json.dumps(data))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form section.key=value")
        key, raw = item.split("=", 1)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            if part in node and node[part] is None:  # an optional section not yet filled in
                node[part] = {}
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"unknown config key '{key}'")
            node = node[part]
        node[parts[-1]] = value
    return out
