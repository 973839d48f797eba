"""Build and query parameters: defaults from ``defaults.toml`` and ``--param key=value`` parsing.

A parameter's type comes from its default: an int default takes ints, a float default floats, a
bool default true/false, and an ``"auto"`` default either ``auto`` or an int.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any, Mapping, Sequence

from coversearch.errors import CoverSearchError

AUTO = "auto"


class IndexParamError(CoverSearchError):
    """A build or query parameter that is unknown, malformed or out of range."""


@dataclass(frozen=True)
class KindDefaults:
    build: dict[str, Any]
    query: dict[str, Any]
    auto: dict[str, Any] = field(default_factory=dict)  # rules that resolve "auto" values

    def section_of(self, key: str) -> str | None:
        if key in self.build:
            return "build"
        if key in self.query:
            return "query"
        return None


@lru_cache(maxsize=1)
def _all_defaults() -> dict[str, KindDefaults]:
    text = resources.files("coversearch.index").joinpath("defaults.toml").read_text(encoding="utf-8")
    data = tomllib.loads(text)
    return {
        kind: KindDefaults(dict(spec.get("build", {})), dict(spec.get("query", {})), dict(spec.get("auto", {})))
        for kind, spec in data.items()
        if isinstance(spec, dict)
    }


def kind_defaults(kind: str) -> KindDefaults:
    """The kind's section of defaults.toml; a kind without one (registered from outside the package)
    gives its class's ``build_defaults`` and ``query_defaults``."""
    defaults = _all_defaults()
    if kind not in defaults:
        from coversearch.index.registry import INDEX_KINDS

        if kind not in INDEX_KINDS:
            raise IndexParamError(f"no defaults for index kind {kind!r} in defaults.toml")
        cls = INDEX_KINDS[kind]
        return KindDefaults(dict(cls.build_defaults), dict(cls.query_defaults))
    spec = defaults[kind]
    # Copies, so that callers may change them without touching the cache.
    return KindDefaults(dict(spec.build), dict(spec.query), dict(spec.auto))


def coerce_value(kind: str, key: str, value: Any, default: Any) -> Any:
    """``value`` (a string from the command line, or a Python value) as the type of ``default``."""
    text = str(value).strip()
    try:
        if isinstance(default, bool):  # before int: bool is an int subclass
            if isinstance(value, bool):
                return value
            if text.lower() in ("true", "yes", "1", "on"):
                return True
            if text.lower() in ("false", "no", "0", "off"):
                return False
            raise ValueError
        if default == AUTO:
            if text.lower() == AUTO:
                return AUTO
            return _as_int(value)
        if isinstance(default, int):
            return _as_int(value)
        if isinstance(default, float):
            result = float(value)
            if not math.isfinite(result):
                raise ValueError
            return result
        return text
    except (TypeError, ValueError):
        expected = {bool: "true or false", int: "an integer", float: "a number"}.get(type(default), "a value")
        if default == AUTO:
            expected = "an integer or auto"
        raise IndexParamError(f"bad value {text!r} for {kind} parameter {key}: expected {expected}") from None


def _as_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError
        return int(value)
    return int(str(value).strip())


def _describe(kind: str, defaults: KindDefaults) -> str:
    build = ", ".join(defaults.build) or "none"
    query = ", ".join(defaults.query) or "none"
    return f"{kind} takes build parameters: {build}; query parameters: {query}"


def split_params(kind: str, given: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Typed {key: value} -> (build overrides, query overrides); unknown keys are an error."""
    defaults = kind_defaults(kind)
    build: dict[str, Any] = {}
    query: dict[str, Any] = {}
    for key, value in given.items():
        section = defaults.section_of(key)
        if section is None:
            raise IndexParamError(f"unknown parameter {key!r}: {_describe(kind, defaults)}")
        target, source = (build, defaults.build) if section == "build" else (query, defaults.query)
        target[key] = coerce_value(kind, key, value, source[key])
    return build, query


def parse_param_pairs(kind: str, pairs: Sequence[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``["M=16", "efSearch=64"]`` -> (build overrides, query overrides) for ``kind``."""
    given: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key or not value.strip():
            raise IndexParamError(f"bad --param {pair!r}: expected key=value, e.g. --param {_example(kind)}")
        given[key] = value
    return split_params(kind, given)


def _example(kind: str) -> str:
    defaults = kind_defaults(kind)
    for key, value in {**defaults.build, **defaults.query}.items():
        return f"{key}={value}"
    return "key=value"


def check_range(kind: str, key: str, value: Any, low: float | None = None, high: float | None = None) -> None:
    if isinstance(value, str):
        return  # "auto" is resolved later
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f">= {low}" if high is None else (f"between {low} and {high}" if low is not None else f"<= {high}")
        raise IndexParamError(f"{kind} parameter {key}={value} is out of range: must be {bounds}")
