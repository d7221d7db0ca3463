from __future__ import annotations

import pytest

from trainingjob_operator import histogram
from trainingjob_operator.api import ProductFailure, ResultsSummary
from trainingjob_operator.status import (
    MAX_FAILURES,
    add_failure,
    add_result,
    compress_indexes,
    max_failed_allowed,
    parse_indexes,
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
    assert results.median_error is not None and abs(float(results.median_error) - 0.12) / 0.12 < 0.15
    assert results.mean_error == "0.1740"  # always 4 significant digits, plain decimal
    assert histogram.median({}) is None


def test_histogram_covers_percent_and_unit_scales() -> None:
    for errors in ([12.0, 25.0, 31.0, 40.0, 90.0], [0.002, 0.004, 0.006], [1500.0, 2200.0, 9000.0]):
        results = None
        for e in errors:
            results = add_result(results, "smape", e, None, None, False)
        assert results is not None and results.median_error is not None
        true_median = sorted(errors)[len(errors) // 2]
        assert abs(float(results.median_error) - true_median) / true_median < 0.13, (errors, results.median_error)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (12.3456, "12.35"),
        (0.0031416, "0.003142"),
        (12345.6, "12346"),
        (1500.0, "1500"),
        (0.0, "0"),
        (1e-5, "0.00001000"),
    ],
)
def test_errors_are_decimal_strings_without_exponent(value: float, text: str) -> None:
    assert histogram.decimal_text(value) == text


def test_histogram_reads_as_bounds_and_counts() -> None:
    results = None
    for e in (0.1, 0.11, 12.0, 12.1, 12.2):
        results = add_result(results, "smape", e, None, None, False)
    assert results is not None
    rows = [(b.errors_up_to, b.products) for b in results.error_histogram]
    assert rows == [("0.1010", 1), ("0.1262", 1), ("13.68", 3)]  # up to 0.1010: one product, ...
    assert 0.1262 / 1.25 < 0.11 <= 0.1262 and 13.68 / 1.25 < 12.0 and 12.2 <= 13.68
    assert results.median_error == "12.24" and results.mean_error == "7.302"


def test_every_bucket_bound_maps_back_to_its_bucket() -> None:
    for i in range(histogram.BUCKETS):
        assert histogram.bucket_of_bound(histogram.bound_text(i)) == i


def test_status_written_with_floats_and_bucket_indexes_still_reads() -> None:
    """Status written before errors were strings: the next pass reads it and rewrites it."""
    old = {
        "metric": "smape",
        "trained": 3,
        "medianError": 12.123456,
        "meanError": 13.5,
        "errorSum": 40.5,
        "errorHistogram": {"79": 2, "80": 1},
        "baselineHistogram": {"85": 3},
    }
    r = ResultsSummary.model_validate(old)
    assert r.median_error == "12.12" and r.mean_error == "13.50" and r.error_sum == "40.500000"
    assert [(histogram.bucket_of_bound(b.errors_up_to), b.products) for b in r.error_histogram] == [(79, 2), (80, 1)]
    r = add_result(r, "smape", 14.0, None, None, False)
    assert r.trained == 4 and sum(b.products for b in r.error_histogram) == 4 and r.mean_error == "13.62"
