"""Strict JSON for fitted statsforecast models (never pickle).

A fitted statsforecast model is a dict of numbers, strings, numpy arrays, tuples and named
tuples. ``encode`` turns it into plain JSON values with a few tagged objects, ``decode`` turns
them back into the same structure, so the library's own ``predict`` runs on a loaded model:

  {"$nd": dtype, "shape": [...], "data": [...]}   numpy array (non-finite floats as "nan"/"inf"/"-inf")
  {"$tuple": [...]}                               tuple
  {"$nt": name, "fields": {...}}                  named tuple (rebuilt as a named tuple of that name)
  {"$f": "nan"|"inf"|"-inf"}                      non-finite float
  {"$dict": {...}}                                a dict whose own keys start with "$"

Anything else (objects, functions, object arrays) is refused with TypeError.
"""

from __future__ import annotations

import collections
import math
from typing import Any

import numpy as np

_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _float(value: float) -> Any:
    if math.isfinite(value):
        return value
    return {"$f": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}


def _array_item(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def encode(obj: Any) -> Any:
    """``obj`` as JSON-ready values (see the module doc)."""
    if obj is None or isinstance(obj, bool | str):
        return obj
    if isinstance(obj, int) and not isinstance(obj, bool):
        return obj
    if isinstance(obj, float):
        return _float(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return _float(float(obj))
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in "biuf":
            raise TypeError(f"cannot encode a numpy array of dtype {obj.dtype}")
        return {"$nd": obj.dtype.str, "shape": list(obj.shape), "data": [_array_item(v) for v in obj.ravel().tolist()]}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return {"$nt": type(obj).__name__, "fields": {k: encode(v) for k, v in zip(obj._fields, obj, strict=True)}}
    if isinstance(obj, tuple):
        return {"$tuple": [encode(v) for v in obj]}
    if isinstance(obj, list):
        return [encode(v) for v in obj]
    if isinstance(obj, dict):
        if not all(isinstance(k, str) for k in obj):
            raise TypeError("cannot encode a dict with non-string keys")
        body = {k: encode(v) for k, v in obj.items()}
        return {"$dict": body} if any(k.startswith("$") for k in obj) else body
    raise TypeError(f"cannot encode {type(obj).__name__}")


def decode(value: Any) -> Any:
    """The structure ``encode`` was given."""
    if isinstance(value, list):
        return [decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "$nd" in value:
        data = [_NONFINITE.get(v, v) if isinstance(v, str) else v for v in value["data"]]
        return np.array(data, dtype=np.dtype(value["$nd"])).reshape(value["shape"])
    if "$tuple" in value:
        return tuple(decode(v) for v in value["$tuple"])
    if "$nt" in value:
        fields = {k: decode(v) for k, v in value["fields"].items()}
        return collections.namedtuple(str(value["$nt"]), list(fields))(**fields)
    if "$f" in value:
        return _NONFINITE[value["$f"]]
    if "$dict" in value:
        return {k: decode(v) for k, v in value["$dict"].items()}
    return {k: decode(v) for k, v in value.items()}
