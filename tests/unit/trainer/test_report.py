from __future__ import annotations

import json

import pytest

from forecast_trainer.report import (
    FAILED,
    INVALID,
    LOCKED,
    TRAINED,
    ProductResult,
    exit_code,
    summary_table,
    termination_message,
    write_termination,
)

KEYS = [
    "product",
    "status",
    "metric",
    "error",
    "default_error",
    "baseline_error",
    "beats_baseline",
    "family",
    "beats_naive",
    "uncertain",
    "width",
    "tuned",
    "trials",
    "seconds",
    "model_id",
    "checksum",
    "class",
    "reason",
    "message",
    "warnings",
    "champion",
    "tracking",
]


def trained(i: int) -> ProductResult:
    return ProductResult(
        product=f"bakery-croissant-{i:03d}",
        status=TRAINED,
        metric="smape",
        error=21.123456,
        default_error=22.5,
        baseline_error=30.0,
        beats_baseline=True,
        tuned=True,
        trials=30,
        seconds=4.56789,
        model_id=1000 + i,
        checksum="ab" * 32,
        product_class="high",
        warnings=["only 80 data points; forecasts may be unreliable (90+ recommended)"],
    )


def invalid(name: str, reason: str = "TooFewPoints") -> ProductResult:
    return ProductResult(product=name, status=INVALID, metric="smape", reason=reason, message=f"product {name!r}: bad")


def failed(name: str, infra: bool) -> ProductResult:
    return ProductResult(product=name, status=FAILED, metric="smape", reason="X", message="boom", infra=infra)


def locked(name: str) -> ProductResult:
    return ProductResult(
        product=name, status=LOCKED, metric="smape", reason="ProductLocked", message="held by another trainer"
    )


def test_shape_is_exactly_the_contract() -> None:
    doc = json.loads(termination_message([trained(1), invalid("b")], 0))
    assert list(doc) == ["v", "exit_code", "counts", "models", "beat_naive", "uncertain", "products", "omitted"]
    assert doc["v"] == 1 and doc["exit_code"] == 0 and doc["omitted"] == 0
    assert doc["counts"] == {"trained": 1, "invalid": 1, "failed": 0, "locked": 0, "skipped": 0}
    first, second = doc["products"]
    assert list(first) == KEYS
    assert first["error"] == 21.1235 and first["seconds"] == 4.57 and first["model_id"] == 1001
    assert first["class"] == "high" and first["reason"] is None and first["message"] is None
    assert second["status"] == "invalid" and second["reason"] == "TooFewPoints" and second["error"] is None


def test_500_products_fit_in_4096_bytes_as_valid_json() -> None:
    results = [trained(i) for i in range(450)] + [invalid(f"bad-{i}") for i in range(50)]
    text = termination_message(results, 0)
    assert len(text.encode("utf-8")) <= 4096
    doc = json.loads(text)
    assert doc["counts"] == {"trained": 450, "invalid": 50, "failed": 0, "locked": 0, "skipped": 0}
    kept = len(doc["products"])
    assert kept > 5 and doc["omitted"] == 500 - kept
    assert [p["product"] for p in doc["products"]] == [r.product for r in results[:kept]]  # dropped from the end


def test_long_strings_and_unicode_are_shortened_not_product_ids() -> None:
    long_id = "é" * 253
    result = ProductResult(
        product=long_id, status=INVALID, metric="smape", message="x" * 5000, warnings=["w" * 3000] * 20
    )
    text = termination_message([result] * 3, 3)
    assert len(text.encode("utf-8")) <= 4096
    doc = json.loads(text)
    assert doc["products"][0]["product"] == long_id
    assert len(doc["products"][0]["message"]) <= 300


def test_non_finite_numbers_become_null() -> None:
    result = trained(1)
    result.error = float("nan")
    result.baseline_error = float("inf")
    doc = json.loads(termination_message([result], 0))
    assert doc["products"][0]["error"] is None and doc["products"][0]["baseline_error"] is None


@pytest.mark.parametrize(
    ("results", "expected"),
    [
        ([trained(1)], 0),
        ([trained(1), invalid("b")], 0),
        ([invalid("a"), invalid("b")], 3),
        ([], 3),
        ([trained(1), failed("c", infra=True)], 4),
        ([invalid("a"), failed("c", infra=True)], 4),
        ([trained(1), failed("c", infra=False)], 1),
        ([failed("c", infra=False), failed("d", infra=True)], 4),
        ([locked("a")], 5),
        ([locked("a"), locked("b")], 5),
        ([locked("a"), invalid("b")], 5),  # the locked one may train on a retry: retriable wins over 3
        ([locked("a"), trained(1)], 0),
        ([locked("a"), failed("c", infra=False)], 1),
        ([locked("a"), failed("c", infra=True)], 4),
    ],
)
def test_multi_product_exit_rule(results: list[ProductResult], expected: int) -> None:
    assert exit_code(results) == expected


def test_run_level_error_code_when_no_products() -> None:
    assert exit_code([], run_error_code=4) == 4
    assert exit_code([], run_error_code=2) == 2


def test_write_termination_skips_unwritable_paths(tmp_path) -> None:
    assert write_termination(str(tmp_path / "term"), "{}") is True
    assert (tmp_path / "term").read_text() == "{}"
    assert write_termination(str(tmp_path / "missing-dir" / "term"), "{}") is False
    assert write_termination("", "{}") is False


def test_summary_table_lists_every_product() -> None:
    table = summary_table([trained(1), invalid("bad-one")], "smape")
    assert "bakery-croissant-001" in table and "bad-one" in table and "TooFewPoints" not in table.splitlines()[0]


def test_locked_products_are_counted_and_reported_with_their_reason() -> None:
    doc = json.loads(termination_message([locked("a"), invalid("b")], 5))
    assert doc["exit_code"] == 5 and doc["counts"] == {
        "trained": 0,
        "invalid": 1,
        "failed": 0,
        "locked": 1,
        "skipped": 0,
    }
    entry = doc["products"][0]
    assert (entry["product"], entry["status"], entry["reason"]) == ("a", "locked", "ProductLocked")
