"""Name -> "module:Class", imported on first use: the one shape of every extension point.

Feature extractors (``features/registry.py``), genre classifiers (``classify/registry.py``) and
index kinds (``index/registry.py``) each keep one ``Registry``.  As in ann-benchmarks, an entry
names where its class lives, so listing the names (``--help``, error messages) imports nothing
and a command imports only the kinds it uses.  Adding one is a module plus one line:
``registry.register("my-kind", "mypackage.my_kind:MyKind")``.

A ``Registry`` reads as a mapping from name to class, in registration order: ``name in reg`` and
``", ".join(reg)`` look at names only; ``reg[name]`` imports the class.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, Iterator

from coversearch.errors import CoverSearchError


class UnknownNameError(CoverSearchError, KeyError):
    """A name no registry entry has (a ``KeyError`` too, so ``Mapping.get`` works)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class Registry(Mapping):
    def __init__(self, what: str, entries: Mapping[str, str], error: type[Exception] = UnknownNameError):
        self.what = what  # "feature", "index kind", ...: used in messages
        self.error = error
        self._targets: dict[str, str] = {}
        self._loaded: dict[str, Any] = {}
        for name, target in entries.items():
            self.register(name, target)

    def register(self, name: str, target: str) -> None:
        """Map ``name`` to ``target`` ("package.module:Class"); the module is imported when first used."""
        module, sep, attr = target.partition(":")
        if not sep or not module or not attr:
            raise ValueError(f"register {name!r}: expected 'package.module:Class', got {target!r}")
        self._targets[name] = target
        self._loaded.pop(name, None)

    def unregister(self, name: str) -> None:
        self._targets.pop(name, None)
        self._loaded.pop(name, None)

    def target(self, name: str) -> str:
        self.check(name)
        return self._targets[name]

    def check(self, name: str) -> str:
        """``name`` if registered (nothing imported), else the registry's error naming the choices."""
        if name not in self._targets:
            raise self.error(f"unknown {self.what} {name!r}; choose from {', '.join(self._targets)}")
        return name

    def load(self, name: str) -> Any:
        """The class registered as ``name``, imported now if it was not yet."""
        if name not in self._loaded:
            module, _, attr = self.target(name).partition(":")
            self._loaded[name] = getattr(importlib.import_module(module), attr)
        return self._loaded[name]

    # -- read as a mapping name -> class ----------------------------------------------------------
    def __getitem__(self, name: str) -> Any:
        return self.load(name)

    def __contains__(self, name: object) -> bool:
        return name in self._targets

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._targets))

    def __len__(self) -> int:
        return len(self._targets)

    def __repr__(self) -> str:
        return f"Registry({self.what!r}, {self._targets!r})"
