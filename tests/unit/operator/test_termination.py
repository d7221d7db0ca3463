from __future__ import annotations

import json

from trainingjob_operator.termination import parse_report


def test_parse_report_picks_product() -> None:
    msg = json.dumps(
        {
            "v": 1,
            "exit_code": 0,
            "products": [
                {"product": "a", "status": "trained", "error": 0.1},
                {
                    "product": "b",
                    "status": "trained",
                    "metric": "mae",
                    "error": 2.5,
                    "baseline_error": 3.0,
                    "beats_baseline": True,
                    "tuned": True,
                    "trials": 25,
                    "warnings": ["few points", 3],
                },
            ],
        }
    )
    r = parse_report(msg, "b")
    assert r is not None
    assert (r.metric, r.error, r.baseline_error, r.beats_baseline, r.tuned, r.trials) == (
        "mae",
        2.5,
        3.0,
        True,
        True,
        25,
    )
    assert r.warnings == ("few points",)


def test_parse_report_tolerates_garbage() -> None:
    assert parse_report(None, "a") is None
    assert parse_report("Traceback (most recent call last): ...", "a") is None
    assert parse_report("[1,2]", "a") is None
    assert parse_report(json.dumps({"products": [{"product": "x"}]}), "a") is None
    r = parse_report(json.dumps({"products": [{"product": "a", "error": "NaN", "beats_baseline": "yes"}]}), "a")
    assert r is not None and r.error is None and r.beats_baseline is None


def test_the_uncertainty_figure_is_read_and_junk_ignored() -> None:
    message = json.dumps(
        {"products": [{"product": "a", "uncertain": True, "width": 0.42}, {"product": "b", "uncertain": 1}]}
    )
    a, b = parse_report(message, "a"), parse_report(message, "b")
    assert a is not None and a.uncertain is True and a.relative_width == 0.42
    assert b is not None and b.uncertain is None and b.relative_width is None
