from __future__ import annotations

import pytest

from trainingjob_operator.api import ProductFailure
from trainingjob_operator.status import (
    MAX_FAILURES,
    add_failure,
    add_result,
    compress_indexes,
    histogram_median,
    max_failed_allowed,
    parse_indexes,
    set_condition,
)


@pytest.mark.parametrize(
    ("indexes", "text"),
    [
        (set(), ""),
        ({0}, "0"),
        ({0, 1, 2, 3, 7}, "0-3,7"),
        ({5, 1, 3, 2}, "1-3,5"),
        ({9, 10, 12, 13}, "9-10,12-13"),
    ],
)
def test_compress_roundtrip(indexes: set[int], text: str) -> None:
    assert compress_indexes(indexes) == text
    assert parse_indexes(text) == indexes


def test_compress_large_is_compact() -> None:
    text = compress_indexes(range(10000))
    assert text == "0-9999"
    assert parse_indexes(compress_indexes(i for i in range(10000) if i % 2)) == set(range(1, 10000, 2))


@pytest.mark.parametrize("bad", ["3-1", "a", "-2", "1-x"])
def test_parse_rejects_garbage(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_indexes(bad)


@pytest.mark.parametrize(
    ("value", "total", "allowed"),
    [(None, 10, None), (3, 10, 3), ("10%", 25, 2), ("0%", 5, 0), ("100%", 7, 7)],
)
def test_max_failed_allowed(value: int | str | None, total: int, allowed: int | None) -> None:
    assert max_failed_allowed(value, total) == allowed


def test_failures_bounded_and_deduplicated() -> None:
    failures: list[ProductFailure] = []
    for i in range(50):
        failures = add_failure(failures, ProductFailure(product=f"p{i % 30}", reason="X", attempts=i))
    assert len(failures) == MAX_FAILURES
    assert len({f.product for f in failures}) == MAX_FAILURES
    assert failures[-1].product == "p19" and failures[-1].attempts == 49


def test_results_median_estimate_within_a_bucket() -> None:
    results = None
    errors = [0.05, 0.1, 0.12, 0.2, 0.4]
    for e in errors:
        results = add_result(results, "smape", e, e * 1.5, True, e < 0.2)
    assert results is not None
    assert results.trained == 5 and results.tuned == 3 and results.beat_baseline == 5
    assert results.median_error is not None and abs(results.median_error - 0.12) / 0.12 < 0.15
    assert results.mean_error == pytest.approx(sum(errors) / 5)
    assert histogram_median({}) is None


def test_condition_transition_time_only_changes_on_flip() -> None:
    conds = set_condition([], "Running", True, "A", "m", "t1", 1)
    conds = set_condition(conds, "Running", True, "B", "m2", "t2", 2)
    assert conds[0].last_transition_time == "t1" and conds[0].reason == "B" and conds[0].observed_generation == 2
    conds = set_condition(conds, "Running", False, "C", "", "t3", 2)
    assert conds[0].last_transition_time == "t3" and conds[0].status == "False"


def test_histogram_covers_percent_and_unit_scales() -> None:
    for errors in ([12.0, 25.0, 31.0, 40.0, 90.0], [0.002, 0.004, 0.006], [1500.0, 2200.0, 9000.0]):
        results = None
        for e in errors:
            results = add_result(results, "smape", e, None, None, False)
        assert results is not None and results.median_error is not None
        true_median = sorted(errors)[len(errors) // 2]
        assert abs(results.median_error - true_median) / true_median < 0.13, (errors, results.median_error)
