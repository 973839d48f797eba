"""`--param key=value` for estimators: values read as JSON where they parse (numbers, true/false, null), else text."""

from __future__ import annotations

import json
from typing import Any, Sequence

from coversearch.errors import CoverSearchError


def parse_params(pairs: Sequence[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CoverSearchError(f"bad --param {pair!r}: expected key=value, e.g. --param k=15")
        try:
            params[key.strip()] = json.loads(value)
        except ValueError:
            params[key.strip()] = value
    return params
