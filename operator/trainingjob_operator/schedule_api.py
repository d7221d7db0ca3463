"""The TrainingSchedule API (``training.forecast.dev/v1alpha1``): to a TrainingJob what a CronJob is
to a Job. The source of truth for crds/trainingschedule.yaml (crdgen) and the API reference.

Field names and meanings follow batch/v1 CronJob, so a user who knows CronJob guesses them right:
``schedule``, ``timeZone``, ``concurrencyPolicy``, ``startingDeadlineSeconds``, ``suspend``, history
limits (``successfulRunsHistoryLimit`` / ``failedRunsHistoryLimit``, runs being TrainingJobs) and
``trainingJobTemplate``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from trainingjob_operator.api import (
    LABEL_KEY_PATTERN,
    ApiModel,
    Condition,
    KubeObject,
    TrainingJobSpec,
    cel,
)

MAX_NAME_LENGTH = 52
"""Longest TrainingSchedule name (as a CronJob's): ``<name>-<unix minutes>`` fits a label value."""
KIND = "TrainingSchedule"
PLURAL = "trainingschedules"
SINGULAR = "trainingschedule"
SHORT_NAMES = ["tjs"]
CRON_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_FIELD = r"(\*|\?|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(/[0-9]+)?"
CRON_PATTERN = (
    r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)"
    rf"|{_FIELD}(,{_FIELD})*( +{_FIELD}(,{_FIELD})*){{4}})$"
)
"""Shape of a cron expression (5 fields, or a macro); the operator checks ranges and names too and
reports a bad one in the InvalidSchedule condition."""


class TemplateMetadata(ApiModel):
    """Labels and annotations of every TrainingJob the schedule creates."""

    labels: dict[str, str] | None = Field(
        default=None,
        description="Labels of each run (a TrainingJob).",
        json_schema_extra=cel(
            (f"self.all(k, k.matches('{LABEL_KEY_PATTERN}'))", "label keys must be [prefix/]name"),
            maxProperties=64,
            additionalProperties={"type": "string", "maxLength": 63},
        ),
    )
    annotations: dict[str, str] | None = Field(
        default=None,
        description="Annotations of each run.",
        json_schema_extra={"maxProperties": 64, "additionalProperties": {"type": "string", "maxLength": 65536}},
    )


class TrainingJobTemplate(ApiModel):
    """The TrainingJob to create for each run (validated like a TrainingJob)."""

    metadata: TemplateMetadata = Field(default_factory=TemplateMetadata, description="Labels and annotations.")
    spec: TrainingJobSpec = Field(
        description=(
            "Spec of each run. spec.skipUnchanged defaults to true here: products whose data and "
            "training config did not change since their last model are skipped."
        )
    )


class TrainingScheduleSpec(ApiModel):
    """When to retrain, and what each run is."""

    schedule: str = Field(
        min_length=1,
        max_length=256,
        pattern=CRON_PATTERN,
        description=(
            'Cron schedule of the runs, as for a CronJob: five fields ("0 2 * * *" is 02:00 daily) or '
            "a macro (@yearly, @monthly, @weekly, @daily, @hourly)."
        ),
    )
    time_zone: str | None = Field(
        default=None,
        max_length=64,
        description="IANA time zone of the schedule, e.g. Europe/Berlin (default: UTC).",
        json_schema_extra=cel(
            (
                "self == '' || timestamp('2000-01-01T00:00:00Z').getHours(self) >= 0",
                "timeZone must be an IANA time zone name, e.g. Europe/Berlin",
            )
        ),
    )
    concurrency_policy: Literal["Allow", "Forbid", "Replace"] = Field(
        default="Forbid",
        description=(
            "What to do when a run is due while an earlier one still runs: Allow (run both), Forbid "
            "(skip the new run), Replace (delete the running one, start the new one)."
        ),
    )
    starting_deadline_seconds: int | None = Field(
        default=None,
        ge=0,
        description=(
            "A run that could not start within this many seconds of its scheduled time is missed "
            "(then the next one counts). Unset: no deadline, as for a CronJob."
        ),
    )
    suspend: bool = Field(default=False, description="Start no new runs; running ones finish.")
    successful_runs_history_limit: int = Field(
        default=3,
        ge=0,
        le=1000,
        description="Succeeded runs (TrainingJobs) to keep; their models stay in the database.",
    )
    failed_runs_history_limit: int = Field(default=1, ge=0, le=1000, description="Failed runs (TrainingJobs) to keep.")
    training_job_template: TrainingJobTemplate = Field(description="The TrainingJob each run creates.")


class RunReference(ApiModel):
    """A run (TrainingJob) of this schedule."""

    name: str = Field(description="TrainingJob name.")
    uid: str = Field(default="", description="TrainingJob uid.")


class SkippedRun(ApiModel):
    """A scheduled time whose run was not started, and why (its Event is posted once per time)."""

    scheduled_time: str = Field(description="The scheduled time.")
    reason: str = Field(
        description="RunAlreadyActive (Forbid, an earlier run active) or MissSchedule (past the deadline)."
    )


class TrainingScheduleStatus(ApiModel):
    """Observed state, written by the operator."""

    active: list[RunReference] = Field(default_factory=list, description="Runs that have not finished.")
    active_count: int = Field(default=0, description="How many runs have not finished (the ACTIVE column).")
    last_schedule_time: str | None = Field(default=None, description="Scheduled time of the last run started.")
    last_successful_time: str | None = Field(default=None, description="When the last successful run finished.")
    last_run_now: str | None = Field(
        default=None, description="Last value of the run-now annotation acted upon (a manual run)."
    )
    next_schedule_time: str | None = Field(default=None, description="When the next run is due.")
    last_skipped: SkippedRun | None = Field(
        default=None,
        description="The last scheduled time not started (Forbid with a run active, or past the starting deadline).",
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description=(
            "Ready (the schedule is valid and not suspended), Suspended, InvalidSchedule, and Stalled (True "
            "with InvalidSchedule, so kstatus-based tools read the schedule as Failed). Keyed by type."
        ),
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    observed_generation: int | None = Field(default=None, description="Last spec generation acted upon.")


class TrainingSchedule(KubeObject):
    """Retrains a set of products on a schedule: creates a TrainingJob per scheduled time."""

    spec: TrainingScheduleSpec
    status: TrainingScheduleStatus = Field(default_factory=TrainingScheduleStatus)
