"""Keep the trainer's imports (and so its start-up time and memory) to what it uses.

- pyarrow: pandas imports it at start-up whenever it is installed (about 40 MB of RSS). The
  trainer never uses Arrow; it is installed only as a dependency of statsforecast's distributed
  engine. ``keep_pyarrow_out()`` marks it absent for this process (before pandas is imported).
- statsforecast: its package ``__init__`` imports that distributed engine (fugue -> triad ->
  pyarrow) to offer ``StatsForecast``, which a single-series trainer does not use.
  ``statsforecast_models()`` imports ``statsforecast.models`` without running that ``__init__``
  (falling back to a plain import when statsforecast was already imported).
- statsmodels.api: statsforecast's ARIMA module imports it whole (regression, GLM, formulas,
  graphics, datasets, about 22 MB of RSS) for four names: ``OLS``, ``add_constant``,
  ``tsa.kpss`` and ``tsa.STL``. ``statsforecast_models()`` first puts a small stand-in
  module under that name which imports just those four from their own statsmodels modules,
  and hands any other name on to the real ``statsmodels.api`` (imported then).
- matplotlib: where it is installed (Prophet depends on it; the image prunes it, plot.py draws
  its PNG itself), Prophet's package imports pyplot (about 30 MB) for its plotting helpers,
  which the trainer never calls.
  ``model.import_prophet()`` imports Prophet with matplotlib marked absent for the duration of
  that import only (Prophet then just disables its own plotting helpers).
All are optional: everything works the same without them, only heavier.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import sys
import types
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
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
    install_statsmodels_api_stand_in()
    warnings.filterwarnings("ignore", module=r"statsforecast(\..*)?")
    warnings.filterwarnings("ignore", module=r"statsmodels(\..*)?")
    return importlib.import_module("statsforecast.models")


def statsforecast_version() -> str:
    try:
        return importlib.metadata.version("statsforecast")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# --------------------------------------------------------------------------- statsmodels.api

# Name -> (module, attribute) of what statsforecast takes from ``statsmodels.api``.
_SM_API = {
    "OLS": ("statsmodels.regression.linear_model", "OLS"),
    "add_constant": ("statsmodels.tools.tools", "add_constant"),
}
_SM_TSA = {"kpss": ("statsmodels.tsa.stattools", "kpss"), "STL": ("statsmodels.tsa.seasonal", "STL")}


class _StandIn(types.ModuleType):
    """A module whose attributes are imported from their own modules on first use."""

    def __init__(self, name: str, table: dict[str, tuple[str, str]], real: str) -> None:
        super().__init__(name)
        self._table = table
        self._real = real

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        where = self._table.get(attr)
        if where is not None:
            value = getattr(importlib.import_module(where[0]), where[1])
        else:  # anything else: the real module, imported now (and from now on under its name)
            if sys.modules.get(self._real) is self:
                del sys.modules[self._real]
            value = getattr(importlib.import_module(self._real), attr)
        setattr(self, attr, value)
        return value


def install_statsmodels_api_stand_in() -> bool:
    """Put the stand-in under ``statsmodels.api`` unless the real one is imported; True if installed."""
    if "statsmodels.api" in sys.modules or importlib.util.find_spec("statsmodels") is None:
        return False
    api = _StandIn("statsmodels.api", _SM_API, "statsmodels.api")
    api.tsa = _StandIn("statsmodels.api.tsa", _SM_TSA, "statsmodels.tsa.api")  # type: ignore[attr-defined]
    sys.modules["statsmodels.api"] = api
    package = importlib.import_module("statsmodels")  # light: the package itself imports next to nothing
    if not isinstance(getattr(package, "api", None), types.ModuleType):
        package.api = api  # type: ignore[attr-defined]  # "import statsmodels.api; statsmodels.api.X"
    return True


# --------------------------------------------------------------------------- Prophet without pyplot


@contextmanager
def matplotlib_absent() -> Iterator[None]:
    """Within the block, ``import matplotlib`` fails (unless it is already imported)."""
    if "matplotlib" in sys.modules:
        yield
        return
    sys.modules["matplotlib"] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        if sys.modules.get("matplotlib", 0) is None:
            del sys.modules["matplotlib"]
