"""JSON output of the commands (``info --json``, ``sync --json``): strictly valid JSON.

Python's ``json`` writes NaN and Infinity, which JSON does not have; a value that is not a
finite number (no clock offsets, no tap found, no lag measured) is written as ``null``.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np


def finite_or_none(obj: Any) -> Any:
    """``obj`` with every non-finite float (at any depth) replaced by None; numpy scalars
    and arrays become Python numbers and lists; other non-JSON objects become strings."""
    if isinstance(obj, dict):
        return {str(k): finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [finite_or_none(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return finite_or_none(obj.tolist())
    if isinstance(obj, np.generic):
        return finite_or_none(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    return str(obj)


def dumps(obj: Any) -> str:
    """``obj`` as indented, strictly valid JSON (no NaN: see the module doc)."""
    return json.dumps(finite_or_none(obj), indent=2, allow_nan=False)
