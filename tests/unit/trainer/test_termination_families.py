"""The termination message with the model-family fields stays within 4096 bytes at any product count."""

from __future__ import annotations

import json

import pytest

from forecast_trainer.families import FAMILIES
from forecast_trainer.report import LIMIT, TRAINED, ProductResult, termination_message


def trained(i: int) -> ProductResult:
    family = FAMILIES[i % len(FAMILIES)]
    return ProductResult(
        product=f"shop-{i:05d}-" + "x" * (i % 40),
        status=TRAINED,
        metric="smape",
        error=21.123456,
        default_error=22.5,
        baseline_error=30.0,
        beats_baseline=True,
        family=family,
        beats_naive=family not in ("seasonal_naive", "last_value"),
        tuned=True,
        trials=30,
        seconds=4.5,
        model_id=1000 + i,
        checksum="ab" * 32,
        product_class="high",
        warnings=["a naive baseline beats the shipped model on CV " * 3],
    )


@pytest.mark.parametrize("count", [1, 9, 50, 500, 5000])
def test_message_fits_and_counts_every_product_by_family(count: int) -> None:
    results = [trained(i) for i in range(count)]
    text = termination_message(results, 0)
    assert len(text.encode("utf-8")) <= LIMIT
    doc = json.loads(text)
    assert sum(doc["models"].values()) == count  # complete even when entries are dropped
    assert doc["beat_naive"] == sum(1 for r in results if r.beats_naive)
    assert doc["omitted"] == count - len(doc["products"])
    for item in doc["products"]:
        assert item["family"] in FAMILIES and isinstance(item["beats_naive"], bool)


def test_a_single_product_entry_names_its_family() -> None:
    doc = json.loads(termination_message([trained(1)], 0))
    assert doc["models"] == {"ets": 1} and doc["beat_naive"] == 1
    assert doc["products"][0]["family"] == "ets" and doc["products"][0]["beats_naive"] is True
