"""The unchanged check's answer, from the trainer's message to the operator's decision (issue 12).

The trainer writes it (forecast_trainer.unchanged.unchanged_message) in the first form that fits
4096 bytes: unchanged ranges, changed ranges, or one bit per product; the operator reads it
(trainingjob_operator.termination.parse_unchanged). Two promises, checked here:

- no truncation makes the operator retrain the skipped products wholesale: for any TrainingJob
  (up to 10,000 products) the operator recovers exactly the unchanged set;
- nothing makes it skip a changed product: a message cut short, corrupted, for another product
  list or inconsistent gives "skip none" (the product pods then check themselves).
"""

from __future__ import annotations

import base64
import json
import random
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.unit.operator.factories import make_tj

from forecast_trainer.report import LIMIT
from forecast_trainer.unchanged import products_digest, unchanged_message
from trainingjob_operator import builders
from trainingjob_operator.observe import build
from trainingjob_operator.observed import Observed
from trainingjob_operator.reconcile import Launch, reconcile
from trainingjob_operator.termination import parse_unchanged

NOW = datetime(2026, 11, 30, 2, 0, 10, tzinfo=UTC)
DIGEST = "d" * 64
"""products_sha256 of the list in the tests of the message alone (any list: the digest is opaque here)."""


@st.composite
def answers(draw: st.DrawFn, max_total: int = 10_000) -> tuple[int, frozenset[int]]:
    """(products, unchanged indexes): scattered at any density, or in runs of any length."""
    total = draw(st.integers(0, max_total))
    rng = random.Random(draw(st.integers(0, 2**32)))
    if draw(st.booleans()):
        share = draw(st.sampled_from([0.0, 0.01, 0.05, 0.5, 0.95, 0.99, 1.0]))
        return total, frozenset(i for i in range(total) if rng.random() < share)
    out: set[int] = set()
    i, keep = 0, draw(st.booleans())
    mean_run = draw(st.integers(1, 500))
    while i < total:
        run = rng.randint(1, 2 * mean_run)
        if keep:
            out.update(range(i, min(total, i + run)))
        i, keep = i + run, not keep
    return total, frozenset(out)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(answers())
def test_every_answer_up_to_10000_products_reaches_the_operator_exactly(answer: tuple[int, frozenset[int]]) -> None:
    total, unchanged = answer
    text = unchanged_message(sorted(unchanged), total, 1.5, products_sha256=DIGEST)
    assert len(text.encode()) <= LIMIT
    read = parse_unchanged(text, total, DIGEST)
    assert read.unchanged == unchanged and not read.truncated and read.problem == ""


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(answers(max_total=3_000), st.integers(300, LIMIT))
def test_a_message_too_small_for_the_answer_skips_none_never_a_changed_product(
    answer: tuple[int, frozenset[int]], limit: int
) -> None:
    total, unchanged = answer
    text = unchanged_message(sorted(unchanged), total, 1.5, limit=limit, products_sha256=DIGEST)
    assert len(text.encode()) <= limit
    read = parse_unchanged(text, total, DIGEST)
    assert read.unchanged is not None
    if read.truncated:  # no form fitted: nothing skipped here, every product's pod checks itself
        assert read.unchanged == frozenset()
    else:
        assert read.unchanged == unchanged


@settings(max_examples=200, deadline=None)
@given(answers(max_total=2_000), st.data())
def test_a_message_cut_anywhere_skips_no_changed_product(
    answer: tuple[int, frozenset[int]], data: st.DataObject
) -> None:
    total, unchanged = answer
    raw = unchanged_message(sorted(unchanged), total, 1.5, products_sha256=DIGEST).encode()
    cut = data.draw(st.integers(0, len(raw) - 1))
    read = parse_unchanged(raw[:cut].decode(errors="ignore"), total, DIGEST)
    assert read.unchanged is None or read.unchanged <= unchanged


def message(**fields: object) -> str:
    doc = {
        "v": 1,
        "kind": "unchanged",
        "order": "sorted",
        "truncated": False,
        "exit_code": 0,
        "products_sha256": DIGEST,
        **fields,
    }
    return json.dumps(doc)


@pytest.mark.parametrize(
    ("text", "total"),
    [
        (message(unchanged="0-3", checked=5, changed=1), 6),  # another product list
        (message(unchanged="0-3", checked=5, changed=1, products_sha256="e" * 64), 5),  # another list, same count
        (message(unchanged="0-3", checked=5, changed=1, products_sha256=None), 5),  # no digest: an older trainer
        (message(unchanged="0-3", checked=True, changed=0), 1),  # a bool is not a count
        (message(unchanged="0-5", checked=5, changed=0), 5),  # index past the end
        (message(unchanged="0-99999999999999", checked=5, changed=0), 5),  # never expanded
        (message(unchanged="0-3", checked=5, changed=0), 5),  # counts do not add up
        (message(unchanged="0-3", checked=5), 5),  # no changed count
        (message(unchanged="3-1", checked=5, changed=2), 5),
        (message(unchanged="-1", checked=5, changed=4), 5),
        (message(unchanged="0,,1", checked=5, changed=3), 5),
        (message(unchanged=" 1", checked=5, changed=4), 5),
        (message(unchanged="\u0661", checked=5, changed=4), 5),  # ARABIC-INDIC DIGIT ONE
        (message(unchanged="", truncated=True, changed_indexes="0-9", checked=5, changed=0), 5),
        (message(unchanged="", truncated=True, changed_indexes="0", checked=5, changed=4), 5),  # 4 unchanged
        (message(unchanged="", truncated=True, unchanged_bitmap="!!", checked=5, changed=5), 5),
        (message(unchanged="", truncated=True, unchanged_bitmap="AAA=", checked=5, changed=5), 5),  # 2 bytes
        (message(unchanged="", truncated=True, unchanged_bitmap="IA==", checked=5, changed=4), 5),  # bit 5
        (message(unchanged="", truncated=False, unchanged_bitmap="Hw==", checked=5, changed=0), 5),
        (message(unchanged="0-4", checked=5, changed=0, exit_code=4), 5),  # the check failed
        (message(unchanged=7, checked=5, changed=0), 5),
        (json.dumps({"kind": "unchanged", "order": "spec", "unchanged": "0", "checked": 1, "changed": 0}), 1),
        (json.dumps(["unchanged"]), 1),
        ("", 1),
        ('{"v":1,"kind":"unchanged","order":"sorted","unchanged":"0-4","trunc', 5),
    ],
)
def test_answers_that_do_not_add_up_skip_nothing(text: str, total: int) -> None:
    read = parse_unchanged(text, total, DIGEST)
    assert read.unchanged is None and read.problem


def test_each_form_reads_back() -> None:
    bitmap = base64.b64encode(bytes([0b10101])).decode()
    forms = [
        message(unchanged="0,2,4", checked=5, changed=2),
        message(unchanged="", truncated=True, changed_indexes="1,3", checked=5, changed=2),
        message(unchanged="", truncated=True, unchanged_bitmap=bitmap, checked=5, changed=2),
    ]
    assert [parse_unchanged(f, 5, DIGEST).unchanged for f in forms] == [frozenset({0, 2, 4})] * 3
    none_fits = parse_unchanged(message(unchanged="", truncated=True, checked=5, changed=2), 5, DIGEST)
    assert none_fits.unchanged == frozenset() and none_fits.truncated


def check_job(tj_uid: str, text: str) -> tuple[dict, list[dict]]:
    job = {
        "metadata": {
            "name": "weekly-unchanged",
            "uid": "uid-check",
            "annotations": {builders.ANNOTATION_ROLE: builders.ROLE_UNCHANGED_PLAN},
            "ownerReferences": [{"uid": tj_uid, "controller": True}],
        },
        "status": {"conditions": [{"type": "Complete", "status": "True"}]},
    }
    terminated = {"exitCode": 0, "message": text, "finishedAt": "2026-11-30T02:00:05Z"}
    pod = {
        "status": {
            "phase": "Succeeded",
            "containerStatuses": [{"name": "trainer", "state": {"terminated": terminated}}],
        }
    }
    return job, [pod]


def test_10000_products_with_5_percent_changed_start_pods_only_for_the_changed() -> None:
    """The case the unchanged ranges cannot hold (9,500 scattered unchanged products: ~20 kB):
    before the operator read changed_indexes, all 10,000 products got a pod."""
    products = [f"sku-{i:05d}" for i in range(10_000)]
    tj = make_tj(products, skipUnchanged=True, parallelism=1_000)
    changed = set(range(0, 10_000, 20))
    text = unchanged_message(
        [i for i in range(10_000) if i not in changed], 10_000, 2.0, products_sha256=builders.products_digest(products)
    )
    assert json.loads(text)["truncated"] is True  # the ranges did not fit
    job, pods = check_job(tj.uid, text)
    observed = build(tj, set(), [job], lambda uid: pods if uid == "uid-check" else [], [])
    assert observed.unchanged_check is not None and observed.unchanged_check.unchanged is not None
    plan = reconcile(tj, Observed(unchanged_check=observed.unchanged_check), NOW)
    launched = sorted(a.product for a in plan.actions if isinstance(a, Launch))
    assert launched == sorted(products[i] for i in changed)
    assert plan.status.products.skipped == 9_500


def test_a_re_created_trainingjob_never_skips_on_the_old_lists_answer() -> None:
    """kubectl delete + create of the same name with one product swapped (issue 18, point 1): the
    check answered for the old list (same count) is refused, nothing is skipped; and the new
    TrainingJob's check reads a ConfigMap (and runs a Job) of its own uid, never the old one's."""
    old_list = ["a", "b", "c", "d"]
    old = make_tj(old_list, skipUnchanged=True)
    new = make_tj(["a", "b", "c", "e"], uid="uid-2", skipUnchanged=True)
    # The old list's answer: "d" (index 3) and "a" unchanged; on the new sorted list index 3 is "e".
    text = unchanged_message([0, 3], 4, 1.0, products_sha256=builders.products_digest(old_list))
    job, pods = check_job(new.uid, text)
    observed = build(new, set(), [job], lambda uid: pods if uid == "uid-check" else [], [])
    assert observed.unchanged_check is not None
    assert observed.unchanged_check.unchanged is None and "another product list" in observed.unchanged_check.message
    plan = reconcile(new, Observed(unchanged_check=observed.unchanged_check), NOW)
    assert plan.status.products.skipped == 0 and plan.status.skipped_indexes == ""
    # Identity: the ConfigMap and the check Job are the uid's, the Job mounts its own uid's list.
    assert builders.plan_configmap_name(new) != builders.plan_configmap_name(old)
    assert builders.plan_job_name(new) != builders.plan_job_name(old)
    body = builders.build_plan_job(new)
    volumes = body["spec"]["template"]["spec"]["volumes"]
    assert {"name": "products", "configMap": {"name": builders.plan_configmap_name(new)}} in volumes
    cm = builders.build_plan_configmap(new)
    assert json.loads(cm["data"][builders.PLAN_PRODUCTS_FILE]) == ["a", "b", "c", "e"]


def test_the_trainer_and_the_operator_agree_on_the_list_digest() -> None:
    ids = ["b", "a", "\u00e9t\u00e9", "a", "sku/1", 'q"uote']
    assert products_digest(ids) == builders.products_digest(ids) == builders.products_digest(reversed(ids))
    text = unchanged_message([1], 5, 0.1, products_sha256=products_digest(ids))
    assert parse_unchanged(text, 5, builders.products_digest(ids)).unchanged == frozenset({1})
