"""Family name -> implementation (Prophet excepted: it is tuned by tune.py). Imports stay lazy."""

from __future__ import annotations

from typing import Any

from forecast_trainer.families import LAST_VALUE, SEASONAL_NAIVE, STATSFORECAST


def family(name: str) -> Any:
    """The implementation of a non-Prophet, non-ensemble family (see families/base.py)."""
    if name == SEASONAL_NAIVE:
        from forecast_trainer.families.naive import SeasonalNaive

        return SeasonalNaive()
    if name == LAST_VALUE:
        from forecast_trainer.families.naive import LastValue

        return LastValue()
    if name in STATSFORECAST:
        from forecast_trainer.families.stats import FAMILIES

        return FAMILIES[name]
    raise KeyError(f"no plain-series family {name!r}")
