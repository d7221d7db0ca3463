"""Model families the trainer chooses among, per product, on the same CV folds.

This module only names them (``--models`` is parsed with it on every start-up, so it imports
nothing heavy). The families themselves live in ``naive`` (numpy), ``stats`` (statsforecast,
imported only when one of its families is a candidate) and, for Prophet, ``tune``/``model``.

Names (the ``family`` in termination messages, metrics and stored models):

  prophet         Prophet, tuned with Optuna (the main family)
  ets             statsforecast AutoETS
  theta           statsforecast AutoTheta
  arima           statsforecast AutoARIMA (capped history, approximate search)
  seasonal_naive  the value one season earlier (same weekday last week, ...)
  last_value      the last observed value
  croston_sba     statsforecast CrostonSBA    (intermittent products only)
  tsb             statsforecast TSB           (intermittent products only)
  adida           statsforecast ADIDA         (intermittent products only)
  ensemble        the mean of the best few candidates on CV

Groups accepted by ``--models``: ``all``, ``naive`` (seasonal_naive, last_value),
``intermittent`` (croston_sba, tsb, adida), ``statsforecast`` (ets, theta, arima + intermittent).
"""

from __future__ import annotations

from collections.abc import Iterable

PROPHET = "prophet"
ETS = "ets"
THETA = "theta"
ARIMA = "arima"
SEASONAL_NAIVE = "seasonal_naive"
LAST_VALUE = "last_value"
CROSTON_SBA = "croston_sba"
TSB = "tsb"
ADIDA = "adida"
ENSEMBLE = "ensemble"

FAMILIES: tuple[str, ...] = (
    PROPHET,
    ETS,
    THETA,
    ARIMA,
    SEASONAL_NAIVE,
    LAST_VALUE,
    CROSTON_SBA,
    TSB,
    ADIDA,
    ENSEMBLE,
)
NAIVE: tuple[str, ...] = (SEASONAL_NAIVE, LAST_VALUE)
INTERMITTENT: tuple[str, ...] = (CROSTON_SBA, TSB, ADIDA)
STATSFORECAST: tuple[str, ...] = (ETS, THETA, ARIMA, *INTERMITTENT)
GROUPS: dict[str, tuple[str, ...]] = {
    "all": FAMILIES,
    "naive": NAIVE,
    "intermittent": INTERMITTENT,
    "statsforecast": STATSFORECAST,
}


def ordered(names: Iterable[str]) -> tuple[str, ...]:
    """``names`` in the canonical order of FAMILIES, without repeats."""
    chosen = set(names)
    return tuple(f for f in FAMILIES if f in chosen)


def to_models(value: str) -> tuple[str, ...]:
    """``--models``: comma-separated family names or groups (case-insensitive); '' or 'all' = all."""
    text = str(value).strip().lower()
    if not text:
        return FAMILIES
    names: list[str] = []
    for raw in text.split(","):
        name = raw.strip().replace("-", "_")
        if not name:
            continue
        if name in GROUPS:
            names.extend(GROUPS[name])
        elif name in FAMILIES:
            names.append(name)
        else:
            known = ", ".join([*FAMILIES, *GROUPS])
            raise ValueError(f"{raw.strip()!r} is not a model family (one of: {known})")
    result = ordered(names)
    if not result:
        raise ValueError("no model family given")
    if result == (ENSEMBLE,):
        raise ValueError("'ensemble' combines other families; name at least one more")
    return result
