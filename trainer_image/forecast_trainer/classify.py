"""Product class from volume and intermittency; the class sets the automatic trial budget.

- intermittent: demand in fewer than 1 of 1.32 periods (average demand interval ADI >= 1.32,
  the Syntetos-Boylan cut-off), i.e. about a quarter or more of the periods are zero;
- otherwise by mean volume per day: high >= 20 units/day, medium >= 3, low below.

Budgets (trials when --trials is auto): high 30, medium 25, low 20, intermittent 15 -- the
products that sell most get the most search, sparse series (where tuning mostly fits noise)
the least.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

HIGH_PER_DAY = 20.0
MEDIUM_PER_DAY = 3.0
INTERMITTENT_ADI = 1.32
BUDGETS = {"high": 30, "medium": 25, "low": 20, "intermittent": 15}
DAYS_PER_PERIOD = {"D": 1.0, "W": 7.0, "MS": 30.4375}


@dataclass(frozen=True)
class ProductClass:
    name: str
    per_day: float
    adi: float
    zero_share: float

    @property
    def budget(self) -> int:
        return BUDGETS[self.name]


def classify(y: Any, frequency: str) -> ProductClass:
    """Class of a regular series ``y`` (floats, NaN = gap) sampled at ``frequency``."""
    import numpy as np

    values = np.asarray(y, dtype=float)
    values = values[~np.isnan(values)]
    nonzero = int((values > 0).sum())
    adi = float(len(values) / nonzero) if nonzero else float("inf")
    zero_share = float(1 - nonzero / len(values)) if len(values) else 1.0
    per_day = float(values.mean() / DAYS_PER_PERIOD[frequency]) if len(values) else 0.0
    if adi >= INTERMITTENT_ADI:
        name = "intermittent"
    elif per_day >= HIGH_PER_DAY:
        name = "high"
    elif per_day >= MEDIUM_PER_DAY:
        name = "medium"
    else:
        name = "low"
    return ProductClass(name, per_day, adi, zero_share)


def trial_budget(product_class: ProductClass, trials: int | None) -> int:
    """Explicit ``trials`` wins (0 = defaults only); None = the class budget."""
    return product_class.budget if trials is None else trials
