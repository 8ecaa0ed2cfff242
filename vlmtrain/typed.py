"""YAML mappings -> dataclasses, typed by their fields: the one rule for every config section and
every recipe's options (a typo is an error naming its key, `1e-3` read as text is a number).

At the bottom of vlmtrain's layers (it imports none of them): train's config and the recipes'
options both build on it.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from vlmtrain.errors import ConfigError


def is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def field_types(cls: type) -> dict[str, Any]:
    """The resolved annotations of dataclass `cls` (strings under `from __future__`)."""
    return typing.get_type_hints(cls)


def convert(tp: Any, value: Any, where: str) -> Any:
    """Check/convert a YAML value to the annotated type (dataclasses, lists, optionals)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        for a in inner:
            try:
                return convert(a, value, where)
            except ConfigError:
                pass
        raise ConfigError(f"{where}: {value!r} fits none of {inner}")
    if is_dataclass_type(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, where)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    return _scalar(tp, value, where)


def _scalar(tp: Any, value: Any, where: str) -> Any:
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads `1e-3` (no dot) as a string
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if tp is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if tp in (int, float, str, bool) and (type(value) is not tp):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def from_dict(cls: type, data: dict[str, Any], where: str = "config") -> Any:
    """Build dataclass `cls` from a mapping; unknown keys are an error naming the path.

    A class with its own `from_dict` (ModelConfig) builds itself; its TypeError / ValueError
    becomes a ConfigError at `where`.
    """
    own = getattr(cls, "from_dict", None)
    if own is not None:
        try:
            return own(dict(data))
        except ConfigError:
            raise
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{where}: {e}") from e
    hints = field_types(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {names}")
    kwargs = {k: convert(hints[k], v, f"{where}.{k}") for k, v in data.items()}
    return cls(**kwargs)
