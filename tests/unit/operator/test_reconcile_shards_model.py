"""A model-based test of shard mode's pure reconcile (Hypothesis): a world of Indexed shard Jobs whose
pods train products one after another (committing each, reporting after each), get killed mid-shard,
find products locked or invalid; Kueue suspends and admits; users scale, suspend and retry failed
products; the operator's pass (reconcile_shards -> the plan's effects) runs in between.

Properties, checked after every step:
  (a) no product is recorded twice, nor both succeeded and failed;
  (b) no product is recorded succeeded without a trained (or skipped) report of this run: the world's
      database holds its committed model;
  (c) counts are consistent (status.products adds up to total and matches the index ranges);
  (d) re-folding the same observed state is a no-op (same status, same round);
  (e) a new round's R holds no recorded index, and every index neither recorded nor found locked;
      after retry-failed it holds exactly the failed and never-finished indexes;
  (f) never two unfinished shard Jobs of one TrainingJob.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from trainingjob_operator import shards
from trainingjob_operator.actions import CreateShardRound, DeleteJob, PatchJob, SetJobTTL
from trainingjob_operator.api import TrainingJob
from trainingjob_operator.observed import Observed, ObservedShardJob, ObservedShards, ShardPod
from trainingjob_operator.reconcile import Settings
from trainingjob_operator.reconcile_shards import reconcile_shards
from trainingjob_operator.status import compress_indexes, parse_indexes

T0 = datetime(2026, 12, 7, 4, 0, tzinfo=UTC)
SETTINGS = Settings(locked_retry_seconds=5, locked_retry_max_seconds=20, pod_report_grace_seconds=30)


@dataclass
class WorldPod:
    index: int
    uid: str
    finished_at: datetime
    exit_code: int
    message: str
    reason: str = ""


@dataclass
class WorldJob:
    name: str
    uid: str
    round_id: str
    retry_round: str
    r: list[int]
    size: int
    completions: int
    parallelism: int
    suspended: bool
    backoff_per_index: int
    completed: set[int] = field(default_factory=set)
    failed: set[int] = field(default_factory=set)
    pod_failures: dict[int, int] = field(default_factory=dict)
    pods: list[WorldPod] = field(default_factory=list)
    finished: str | None = None
    finished_at: datetime | None = None
    ttl: int | None = None

    def observed(self, hide_pods_of: set[int]) -> ObservedShardJob:
        return ObservedShardJob(
            name=self.name,
            uid=self.uid,
            round_id=self.round_id,
            retry_round=self.retry_round,
            indexes=compress_indexes(self.r),
            size=self.size,
            completions=self.completions,
            parallelism=self.parallelism,
            suspended=self.suspended,
            completed=frozenset(self.completed),
            failed=frozenset(self.failed),
            active=0 if self.suspended or self.finished else 1,
            finished=self.finished,  # type: ignore[arg-type]
            finished_at=self.finished_at,
            ttl_seconds=self.ttl,
            pods=tuple(
                ShardPod(p.index, p.uid, p.finished_at, p.exit_code, p.message, p.reason)
                for p in self.pods
                if p.index not in hide_pods_of
            ),
        )

    def unfinished_indexes(self) -> list[int]:
        return [k for k in range(self.completions) if k not in self.completed and k not in self.failed]


def report(k: int, size: int, n: int, outcomes: dict[int, str], errors: dict[int, str]) -> str:
    done = len(outcomes)
    ranges = {
        kind: compress_indexes(p for p, o in outcomes.items() if o == kind)
        for kind in ("trained", "skipped", "locked", "failed")
    }
    return json.dumps(
        {
            "v": 2,
            "kind": "shard",
            "shard": k,
            "size": size,
            "n": n,
            "done": done,
            **ranges,
            "errors": [[p, errors[p], "DataInvalid", "too few points"] for p in sorted(errors)],
            "errors_omitted": 0,
            "results": {"metric": "smape", "trained": sum(o == "trained" for o in outcomes.values()), "error_sum": "0"},
        }
    )


class ShardModel(RuleBasedStateMachine):
    @initialize(count=st.integers(1, 12), size=st.integers(2, 4), parallelism=st.integers(1, 4))
    def start(self, count: int, size: int, parallelism: int) -> None:
        self.products = sorted(f"sku-{i:03d}" for i in range(count))
        self.body: dict[str, Any] = {
            "metadata": {"name": "nightly", "namespace": "shop", "uid": "tj-uid", "generation": 1, "annotations": {}},
            "spec": {
                "products": list(reversed(self.products)),
                "productsPerPod": size,
                "parallelism": parallelism,
                "backoffLimit": 1,
                "maxFailedProducts": "100%",
                "data": {"postgres": {"secretRef": {"name": "db", "key": "dsn"}}},
            },
            "status": {},
        }
        self.now = T0
        self.jobs: list[WorldJob] = []
        self.db: set[int] = set()  # global indexes with a committed model of this run (run key guard)
        self.invalid: set[int] = set()
        self.locked_elsewhere: set[int] = set()
        self.hidden: set[tuple[str, int]] = set()  # (job uid, index): the pod watch lags
        self.serial = 0

    # ------------------------------------------------------------ the world

    def tj(self) -> TrainingJob:
        return TrainingJob.model_validate(self.body)

    def observed(self) -> Observed:
        jobs = tuple(j.observed({k for (u, k) in self.hidden if u == j.uid}) for j in self.jobs)
        return Observed(shards=ObservedShards(jobs=jobs))

    def running(self) -> list[WorldJob]:
        return [j for j in self.jobs if j.finished is None and not j.suspended]

    @rule(
        data=st.data(),
        steps=st.integers(0, 8),
        end=st.sampled_from(["exit0", "killed", "oom", "config"]),
        lag=st.booleans(),
    )
    def pod_runs(self, data: st.DataObject, steps: int, end: str, lag: bool) -> None:
        """A pod of a running shard trains its products in order (each committed on its own), then
        ends: exit 0 when every product has an outcome, or killed/OOMKilled mid-shard."""
        running = self.running()
        if not running:
            return
        job = data.draw(st.sampled_from(running))
        open_ = job.unfinished_indexes()
        if not open_:
            return
        self.run_pod(job, data.draw(st.sampled_from(open_)), steps, end, lag)

    def run_pod(self, job: WorldJob, k: int, steps: int, end: str, lag: bool) -> None:
        gis = shards.shard_indexes(job.r, job.size, k)
        outcomes: dict[int, str] = {}
        errors: dict[int, str] = {}
        for pos, gi in enumerate(gis):
            if pos >= steps and end != "exit0":
                break
            if gi in self.locked_elsewhere:
                outcomes[pos] = "locked"
            elif gi in self.invalid:
                outcomes[pos] = "failed"
                errors[pos] = self.products[gi]
            else:
                self.db.add(gi)
                outcomes[pos] = "trained"
        self.serial += 1
        exit_code, reason = {
            "exit0": (0, ""),
            "killed": (137, "Error"),
            "oom": (137, "OOMKilled"),
            "config": (2, "Error"),
        }[end]
        message = report(k, job.size, len(gis), outcomes, errors) if end != "config" else "bad config"
        job.pods.append(WorldPod(k, f"pod-{self.serial}", self.now, exit_code, message, reason))
        if lag:
            self.hidden.add((job.uid, k))
        if end == "exit0":
            job.completed.add(k)
        elif end == "config":
            job.finished, job.finished_at = "Failed", self.now  # podFailurePolicy FailJob
            return
        else:
            job.pod_failures[k] = job.pod_failures.get(k, 0) + 1
            if job.pod_failures[k] > job.backoff_per_index:
                job.failed.add(k)
        if not job.unfinished_indexes():
            job.finished, job.finished_at = ("Failed" if job.failed else "Complete"), self.now

    @rule(end=st.sampled_from(["exit0", "oom"]))
    def every_open_shard_ends(self, end: str) -> None:
        """Every open shard of the running round gets a pod that ends the same way (a round ends)."""
        for job in self.running():
            for k in job.unfinished_indexes():
                self.run_pod(job, k, 2, end, lag=False)

    @rule()
    def pod_watch_catches_up(self) -> None:
        self.hidden.clear()

    @rule(seconds=st.integers(1, 40))
    def time_passes(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)

    @rule(data=st.data())
    def data_changes(self, data: st.DataObject) -> None:
        """Products become invalid, or locked by a trainer elsewhere (and free again)."""
        count = len(self.products)
        self.invalid = data.draw(st.sets(st.integers(0, count - 1), max_size=4))
        self.locked_elsewhere = data.draw(st.sets(st.integers(0, count - 1), max_size=4))

    @rule(suspend=st.booleans())
    def kueue_suspends_or_admits(self, suspend: bool) -> None:
        for job in self.jobs:
            if job.finished is None:
                job.suspended = suspend

    @rule(p=st.integers(1, 6))
    def user_scales(self, p: int) -> None:
        self.body["spec"]["parallelism"] = p

    @rule()
    def user_retries_failed(self) -> None:
        """A new value each time (docs: `kubectl annotate ... retry-failed=$(date +%s)`); a value used
        before names that earlier round again, in shard mode as for product Jobs."""
        self.serial += 1
        self.body["metadata"]["annotations"]["training.forecast.dev/retry-failed"] = f"r{self.serial}"

    # ------------------------------------------------------------ the operator

    @rule()
    def operator_pass(self) -> None:
        tj = self.tj()
        before = tj.status
        observed = self.observed()
        plan = reconcile_shards(tj, observed, self.now, SETTINGS)
        # (d) re-folding the same observed state changes nothing: the same pass twice decides the
        # same, and a pass over its own result adds nothing (no product, no result counted again)
        again = reconcile_shards(tj, observed, self.now, SETTINGS)
        assert again.status == plan.status
        refolded = reconcile_shards(tj.model_copy(update={"status": plan.status}), observed, self.now, SETTINGS)
        assert refolded.status == plan.status, "re-folding changed the status"
        creates = [a for a in plan.actions if isinstance(a, CreateShardRound)]
        assert creates == [a for a in again.actions if isinstance(a, CreateShardRound)]
        recorded = parse_indexes(plan.status.succeeded_indexes) | parse_indexes(plan.status.failed_indexes)
        was_failed = parse_indexes(before.failed_indexes)
        retried = plan.status.retry_failed != before.retry_failed
        if retried and was_failed and not any(j.finished is None for j in self.jobs):
            # (e) retry-failed starts a round of the failed products at once (none is recorded failed again)
            assert creates, "retry-failed started no round"
            assert was_failed <= parse_indexes(creates[0].round.indexes) | self.found_locked()
        for create in creates:
            rnd = create.round
            # (f) never two unfinished rounds
            assert not any(j.finished is None for j in self.jobs), "a second round while one is unfinished"
            r = parse_indexes(rnd.indexes)
            # (e) R = exactly the indexes not on record (but those waiting out the locked back-off)
            assert not r & recorded
            assert set(range(len(self.products))) - recorded - r <= self.locked_elsewhere | self.found_locked()
            if retried:
                assert was_failed <= r | self.found_locked()
            self.jobs.append(
                WorldJob(
                    name=f"nightly-shards-{rnd.round_id}",
                    uid=f"job-{rnd.round_id}",
                    round_id=rnd.round_id,
                    retry_round=rnd.retry_round,
                    r=sorted(r),
                    size=rnd.size,
                    completions=rnd.completions,
                    parallelism=tj.spec.parallelism,
                    suspended=create.suspend or tj.spec.suspend,
                    backoff_per_index=tj.spec.backoff_limit,
                )
            )
        for action in plan.actions:
            if isinstance(action, PatchJob):
                job = next(j for j in self.jobs if j.uid == action.uid)
                spec = action.patch["spec"]
                assert isinstance(spec, dict)
                job.parallelism = spec.get("parallelism", job.parallelism)
                job.suspended = spec.get("suspend", job.suspended)
            elif isinstance(action, DeleteJob):
                self.jobs = [j for j in self.jobs if j.uid != action.uid]
            elif isinstance(action, SetJobTTL):
                for j in self.jobs:
                    if j.name == action.name:
                        j.ttl = action.seconds
        self.body["status"] = plan.status.model_dump(by_alias=True, mode="json")

    def found_locked(self) -> set[int]:
        """Indexes whose shard's last pod found them locked (held for the back-off)."""
        out: set[int] = set()
        for job in self.jobs:
            for k in range(job.completions):
                pods = [p for p in job.pods if p.index == k]
                if not pods:
                    continue
                try:
                    doc = json.loads(pods[-1].message)
                except ValueError:
                    continue
                gis = shards.shard_indexes(job.r, job.size, k)
                out |= {gis[p] for p in parse_indexes(doc.get("locked", ""))}
        return out

    # ------------------------------------------------------------ invariants

    @invariant()
    def recorded_once_and_only_with_a_model(self) -> None:
        s = self.tj().status
        ok, bad = parse_indexes(s.succeeded_indexes), parse_indexes(s.failed_indexes)
        assert not ok & bad, "a product recorded both succeeded and failed"  # (a)
        assert ok <= self.db, f"recorded trained without a committed model: {sorted(ok - self.db)}"  # (b)
        total = len(self.products)
        p = s.products
        if s.phase is None:
            return
        # (c) counts add up
        assert p.total == total and p.succeeded == len(ok) and p.failed == len(bad)
        assert min(p.pending, p.active, p.queued, p.waiting) >= 0
        assert p.pending + p.active + p.queued + p.waiting + p.succeeded + p.failed == total, p
        assert s.progress == f"{len(ok) + len(bad)}/{total}"

    @invariant()
    def at_most_one_unfinished_round(self) -> None:
        assert sum(j.finished is None for j in self.jobs) <= 1  # (f)


ShardModel.TestCase.settings = settings(
    max_examples=150, stateful_step_count=50, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestShardModel = ShardModel.TestCase
