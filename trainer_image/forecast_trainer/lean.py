"""Keep the trainer's imports (and so its start-up time and memory) to what it uses.

- pyarrow: pandas imports it at start-up whenever it is installed (about 40 MB of RSS). The
  trainer never uses Arrow; it is installed only as a dependency of statsforecast's distributed
  engine. ``keep_pyarrow_out()`` marks it absent for this process (before pandas is imported).
- statsforecast: its package ``__init__`` imports that distributed engine (fugue -> triad ->
  pyarrow) to offer ``StatsForecast``, which a single-series trainer does not use.
  ``statsforecast_models()`` imports ``statsforecast.models`` without running that ``__init__``
  (falling back to a plain import when statsforecast was already imported).
Both are optional: everything works the same without them, only heavier.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import sys
import types
import warnings
from typing import Any


def keep_pyarrow_out() -> bool:
    """Mark pyarrow absent unless pandas (or pyarrow) is already imported; True if it was marked."""
    if "pandas" in sys.modules or "pyarrow" in sys.modules:
        return False
    sys.modules["pyarrow"] = None  # type: ignore[assignment]  # "import pyarrow" raises ImportError
    return True


def statsforecast_models() -> Any:
    """The ``statsforecast.models`` module, imported lean (see the module doc), warnings silenced."""
    loaded = sys.modules.get("statsforecast.models")
    if loaded is not None:
        return loaded
    if "statsforecast" not in sys.modules:
        spec = importlib.util.find_spec("statsforecast")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("statsforecast is not installed")
        package = types.ModuleType("statsforecast")
        package.__path__ = list(spec.submodule_search_locations)
        package.__spec__ = spec
        package.__file__ = spec.origin
        package.__package__ = "statsforecast"
        package.__version__ = importlib.metadata.version("statsforecast")  # type: ignore[attr-defined]
        sys.modules["statsforecast"] = package
    warnings.filterwarnings("ignore", module=r"statsforecast(\..*)?")
    warnings.filterwarnings("ignore", module=r"statsmodels(\..*)?")
    return importlib.import_module("statsforecast.models")


def statsforecast_version() -> str:
    try:
        return importlib.metadata.version("statsforecast")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
