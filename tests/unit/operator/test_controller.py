"""One pass's API calls, against a recording stand-in for the client (the real API is in tests/e2e):
which calls it makes, and in which order relative to the status write."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from tests.unit.operator.factories import make_tj

from trainingjob_operator import builders
from trainingjob_operator.controller import reconcile_once
from trainingjob_operator.reconcile import Observed, ObservedJob, ObservedLease
from trainingjob_operator.termination import ProductReport

NOW = datetime(2026, 11, 23, 9, 0, 0, tzinfo=UTC)


class RecordingKube:
    """Answers the calls a pass makes and records them; the status write waits for ``gate``."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw
        self.calls: list[str] = []
        self.gate = asyncio.Event()

    async def get_trainingjob(self, namespace: str, name: str) -> dict[str, Any]:
        self.calls.append("get")
        return self.raw

    async def patch_trainingjob_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        self.calls.append("status:start")
        await self.gate.wait()
        self.calls.append("status:done")
        return {**self.raw, "metadata": {**self.raw["metadata"], "resourceVersion": "2"}, "status": status}

    async def create_lease(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(f"lease:{body['metadata']['name']}")
        return body

    async def create_job(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(f"job:{body['metadata']['name']}")
        if len([c for c in self.calls if c.startswith("job:")]) == 1:
            self.gate.set()  # the status write completes only once a launch got through
        return body

    async def delete_lease(self, namespace: str, name: str, resource_version: str | None = None) -> None:
        self.calls.append(f"release:{name}")


def raw_tj(products: list[str], parallelism: int) -> dict[str, Any]:
    tj = make_tj(products, parallelism=parallelism)
    raw = tj.model_dump(by_alias=True, mode="json", exclude_none=True)
    raw["metadata"]["resourceVersion"] = "1"
    return raw


def test_launches_go_out_with_the_status_write_releases_only_after_it() -> None:
    raw = raw_tj(["a", "b"], parallelism=1)
    me = "shop/weekly/uid-1"
    done = ObservedJob(
        name=builders.job_name("weekly", "a"),
        uid="u-a",
        product="a",
        retry_round="",
        finished="Complete",
        report=ProductReport(product="a", status="trained"),
    )
    held = ObservedLease(builders.lease_name("a"), me, NOW, 60, "7", "a")

    async def observe(tj: Any, recorded: set[str], rejected: dict[str, str]) -> Observed:
        return Observed(jobs={"a": done}, leases={held.name: held})

    async def run() -> tuple[RecordingKube, Any]:
        kube = RecordingKube(raw)
        result = await asyncio.wait_for(
            reconcile_once(kube, "shop", "weekly", lambda *a: None, observe, clock=lambda: NOW, current=raw),  # type: ignore[arg-type]
            timeout=5,
        )
        return kube, result

    kube, result = asyncio.run(run())
    calls = kube.calls
    assert "get" not in calls  # the watched body was fresh: no read
    job_b = f"job:{builders.job_name('weekly', 'b')}"
    release_a = f"release:{builders.lease_name('a')}"
    assert calls.index("status:start") < calls.index(job_b) < calls.index("status:done")
    assert calls.index("status:done") < calls.index(release_a)  # "a" is on record before its Lease goes
    assert result.read is None and result.written is not None
    assert result.written["metadata"]["resourceVersion"] == "2"


def test_without_a_fresh_body_the_pass_reads_the_api() -> None:
    raw = raw_tj(["a"], parallelism=1)

    async def observe(tj: Any, recorded: set[str], rejected: dict[str, str]) -> Observed:
        return Observed(jobs={}, leases={})

    async def run() -> tuple[RecordingKube, Any]:
        kube = RecordingKube(raw)
        kube.gate.set()
        result = await reconcile_once(kube, "shop", "weekly", lambda *a: None, observe, clock=lambda: NOW)  # type: ignore[arg-type]
        return kube, result

    kube, result = asyncio.run(run())
    assert kube.calls[0] == "get"
    assert result.read == raw


class CollidingKube(RecordingKube):
    """A namespace where the product's Job name and Lease name are held by another product's Job
    and Lease of this same TrainingJob (a hash collision)."""

    def __init__(self, raw: dict[str, Any], other: str) -> None:
        super().__init__(raw)
        self.gate.set()
        self.other = other

    async def create_job(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        from trainingjob_operator.kube import Conflict

        self.calls.append(f"job:{body['metadata']['name']}")
        raise Conflict(409, "exists")

    async def get_job(self, namespace: str, name: str) -> dict[str, Any]:
        return {
            "metadata": {
                "name": name,
                "uid": "u-other",
                "annotations": {builders.ANNOTATION_PRODUCT: self.other},
                "ownerReferences": [{"uid": self.raw["metadata"]["uid"], "controller": True}],
            }
        }

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any]:
        return {
            "metadata": {"name": name, "resourceVersion": "3", "annotations": {builders.ANNOTATION_PRODUCT: "b"}},
            "spec": {"holderIdentity": "shop/weekly/uid-1", "renewTime": "2026-11-23T09:00:00.000000Z"},
        }


def test_a_409_from_another_products_job_is_not_taken_for_ours() -> None:
    """The product's Job name is held by a Job of another product (ours, by uid): the launch did
    not happen, so the product's Lease goes (before, the 409 was "ours" and the product relaunched
    every pass, never recorded)."""
    raw = raw_tj(["b"], parallelism=1)

    async def observe(tj: Any, recorded: set[str], rejected: dict[str, str]) -> Observed:
        return Observed()

    async def run() -> tuple[RecordingKube, Any]:
        kube = CollidingKube(raw, other="a")
        result = await reconcile_once(kube, "shop", "weekly", lambda *a: None, observe, clock=lambda: NOW, current=raw)  # type: ignore[arg-type]
        return kube, result

    kube, result = asyncio.run(run())
    assert f"release:{builders.lease_name('b')}" in kube.calls
    assert result.outcomes.created == [] and result.created_jobs == set()


def test_a_lease_of_another_product_under_the_same_name_is_no_lock_on_this_one() -> None:
    from trainingjob_operator import leases
    from trainingjob_operator.api import TrainingJob

    raw = raw_tj(["a", "b"], parallelism=1)
    tj = TrainingJob.model_validate(raw)

    class Held(CollidingKube):
        async def create_lease(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
            from trainingjob_operator.kube import Conflict

            raise Conflict(409, "exists")

    kube = Held(raw, other="b")  # the Lease under a's name is b's, held by this TrainingJob
    assert asyncio.run(leases.acquire(kube, tj, "a", NOW, 60, None)) is False  # type: ignore[arg-type]
    assert asyncio.run(leases.acquire(kube, tj, "b", NOW, 60, None)) is True  # type: ignore[arg-type]
