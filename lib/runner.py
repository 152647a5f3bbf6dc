"""Running jobs: a run id, the gate-and-quarantine step every layer shares, row accounting and ops tables."""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lib import io, publish_guard
from lib.config import Config
from lib.quality import FAILED_RULES, GateFailed, GateResult, validate
from lib.spark import cache_is_empty, persisted_rdd_ids, size_tasks_to_input, unpersist_rdds

log = logging.getLogger(__name__)

JOB_RUNS = "ops.job_runs"
# One row per successful job run: the Delta version of every table it read, so the next run can tell whether the
# job is up to date and which changes it has not yet consumed.
JOB_INPUTS = "ops.job_inputs"
QUALITY_RESULTS = "ops.quality_results"
MODEL_RUNS = "ops.model_runs"


@dataclass
class TableRun:
    """Row accounting for one table in one run: rows_in = published + quarantined + deduplicated + erased, where
    ``erased`` (in details) counts arriving records of people erased earlier (lib/privacy.py)."""

    table: str
    rows_in: int = 0
    published: int = 0
    quarantined: int = 0
    deduplicated: int = 0
    details: dict[str, int] = field(default_factory=dict)

    @property
    def balanced(self) -> bool:
        return self.rows_in == self.published + self.quarantined + self.deduplicated + self.details.get("erased", 0)

    def add(self, **counts: int) -> None:
        for name, value in counts.items():
            if hasattr(self, name) and name != "table":
                setattr(self, name, getattr(self, name) + value)
            else:
                self.details[name] = self.details.get(name, 0) + value


@dataclass
class JobRun:
    run_id: str
    job: str
    status: str
    tables: list[TableRun]
    seconds: float
    started_at: dt.datetime
    error: str | None = None
    # Why a job that did not fail was skipped: up to date, or a model job not yet due.
    skip_reason: str | None = None

    @property
    def ok(self) -> bool:
        """Succeeded, or skipped as up to date or not due (a job skipped below a failure carries the error)."""
        return self.status == "succeeded" or (self.status == "skipped" and self.error is None)


@dataclass
class JobContext:
    spark: SparkSession
    config: Config
    run_id: str
    tables: dict[str, TableRun] = field(default_factory=dict)
    # Delta version of each table the job reads, taken when it starts: what this run consumes.
    input_versions: dict[str, int] = field(default_factory=dict)
    # The versions the job's last successful run consumed; empty when it never succeeded.
    consumed_versions: dict[str, int] = field(default_factory=dict)
    # Bronze-shaped rows a silver job validates and publishes instead of its new bronze rows: quarantined rows
    # being replayed (lib/quarantine.py).
    replay_rows: DataFrame | None = None
    # The job's name: its last published model runs are those of its successful runs.
    job: str = ""
    # Rows for ops.quality_results (gates and table health), appended once when the job ends: one Delta commit
    # per job instead of one per check, whatever the outcome.
    quality_rows: list[dict] = field(default_factory=list)

    def accounting(self, table: str) -> TableRun:
        """The row accounting of ``table`` in this run; kept even when the job fails part way."""
        return self.tables.setdefault(table, TableRun(table))

    def quarantine(self, failed: DataFrame, table: str, id_columns: list[str]) -> None:
        """Merge rows carrying FAILED_RULES into ``table`` (on ``id_columns``, so a retried batch adds nothing)."""
        rows = failed.select(
            FAILED_RULES, *[c for c in failed.columns if c != FAILED_RULES],
            F.current_timestamp().alias("_quarantined_at"), F.lit(self.run_id).alias("_run_id"),
        )
        io.merge_upsert(self.spark, rows, self.config, table, id_columns)

    def record_health(self, table: str, version_column: str) -> None:
        """Warn-level checks of a whole published table: freshness of its newest record and its row-count change
        since the last run, for ops.quality_results (never failing the job)."""
        gates = self.config.gates
        published = io.read_table(self.spark, self.config, table)
        stats = published.agg(
            F.count(F.lit(1)).alias("rows"), F.max(F.unix_timestamp(version_column)).alias("newest_epoch")
        ).first()
        now = dt.datetime.now(dt.timezone.utc)
        previous = None
        if io.table_exists(self.spark, self.config, QUALITY_RESULTS):
            last = (io.read_table(self.spark, self.config, QUALITY_RESULTS)
                    .filter((F.col("table_name") == table) & (F.col("rule") == "row_count_change"))
                    .orderBy(F.col("checked_at").desc()).select("observed_value").first())
            previous = last["observed_value"] if last else None
        change = abs(stats["rows"] - previous) / max(previous, 1) if previous is not None else 0.0
        newest = stats["newest_epoch"]
        age_hours = (now.timestamp() - newest) / 3600 if newest is not None else None
        health = dict(run_id=self.run_id, table_name=table, expectation_type="table_health", severity="warning",
                      element_count=stats["rows"], unexpected_count=None, checked_at=now)
        self.quality_rows += [
            {**health, "rule": "row_count_change", "column_name": None,
             "success": change <= gates.max_row_count_change, "observed_value": float(stats["rows"])},
            {**health, "rule": "fresh", "column_name": version_column,
             "success": age_hours is not None and age_hours <= gates.freshness_max_age_hours,
             "observed_value": age_hours},
        ]

    def record_model_run(self, model: str, params: dict[str, str], metrics: dict[str, float],
                         model_path: str | None = None) -> None:
        """One row of ops.model_runs: what was fitted or used in this run, with its parameters and metrics."""
        row = (self.run_id, model, {k: str(v) for k, v in params.items()},
               {k: float(v) for k, v in metrics.items()}, model_path, dt.datetime.now(dt.timezone.utc))
        io.append(self.spark.createDataFrame([row], MODEL_RUN_SCHEMA), self.config, MODEL_RUNS)

    def gate(self, df: DataFrame, table: str, id_columns: list[str], quarantine: str) -> GateResult:
        """Validate ``df`` for ``table``; record results, quarantine failing rows, raise GateFailed over threshold.

        Quarantine is merged on ``id_columns`` so a retried batch does not quarantine a row twice. The time it took
        (validation, results, quarantine) adds to the table's ``gate_ms`` detail.
        """
        clock = time.monotonic()
        result = validate(df, table, id_columns, self.config.gates.max_ratio_for(table))
        self.quality_rows += result.quality_rows(self.run_id, dt.datetime.now(dt.timezone.utc))
        if result.rows_failed:
            self.quarantine(result.failed_rows, quarantine, id_columns)
        self.accounting(table).add(gate_ms=round((time.monotonic() - clock) * 1000))
        if not result.passed:
            raise GateFailed(result.failure_message())
        return result

    def publish_recomputed(self, tables: Sequence[tuple[DataFrame, str, list[str]]],
                           check_columns: Sequence[str] = ()) -> None:
        """Gate each whole recomputed table, refuse any clearly worse than the one published now (publish guard),
        then MERGE them all on their keys, deleting keys that are gone: a job's tables move together or not at all,
        and a re-run on the same input leaves them as they were. ``check_columns`` (added for the gates only) are
        not published."""
        passed = []
        # Cached: the count, GX's metrics, the routing and the MERGE each read the rows; recomputing a model's
        # output for each of them was most of a gold gate's time.
        tables = [(rows.cache(), table, key) for rows, table, key in tables]
        for rows, table, key in tables:
            accounting = self.accounting(table)
            accounting.add(rows_in=rows.count())
            gate = self.gate(rows, table, key, quarantine=f"quarantine.{table.partition('.')[2]}")
            accounting.add(quarantined=gate.rows_failed, published=gate.rows_checked - gate.rows_failed)
            passed.append((gate.passed_rows.drop(*check_columns), table, key))
        for rows, table, _ in passed:
            self.refuse_regression(rows, table)
        for rows, table, key in passed:
            io.merge_upsert(self.spark, rows, self.config, table, key, delete_missing=True)
        for rows, _, _ in tables:
            rows.unpersist()

    def refuse_regression(self, candidate: DataFrame, table: str) -> None:
        """Raise PublishRefused when ``candidate``, the whole new content of ``table``, has clearly fewer rows or
        more nulls than the published table."""
        guard = self.config.publish_guard
        if not guard.enabled or not io.table_exists(self.spark, self.config, table):
            return
        published = publish_guard.table_shape(io.read_table(self.spark, self.config, table))
        problems = publish_guard.table_regressions(published, publish_guard.table_shape(candidate), guard)
        if problems:
            raise publish_guard.refusal(table, problems,
                                        f"if an earlier publish was the bad one, `dmp rollback {table}`")

    def refuse_metric_drop(self, model: str, metric: str, value: float) -> None:
        """Raise PublishRefused when ``metric`` (higher is better) of ``model`` fell clearly below its value in
        this job's last successful run."""
        guard = self.config.publish_guard
        if not guard.enabled or not all(io.table_exists(self.spark, self.config, t) for t in (MODEL_RUNS, JOB_RUNS)):
            return
        succeeded = (io.read_table(self.spark, self.config, JOB_RUNS)
                     .filter((F.col("job") == self.job) & (F.col("status") == "succeeded")).select("run_id"))
        last = (io.read_table(self.spark, self.config, MODEL_RUNS)
                .filter((F.col("model") == model) & (F.col("run_id") != self.run_id))
                .join(succeeded, "run_id", "left_semi")
                .orderBy(F.col("recorded_at").desc()).select(F.col("metrics")[metric]).first())
        problem = publish_guard.metric_regression(metric, last[0] if last else None, value, guard)
        if problem:
            raise publish_guard.refusal(f"model {model}", [problem],
                                        "its tables keep what the last published model produced")


QUALITY_SCHEMA = (
    "run_id string, table_name string, rule string, expectation_type string, column_name string, severity string, "
    "success boolean, element_count long, unexpected_count long, observed_value double, checked_at timestamp"
)
MODEL_RUN_SCHEMA = (
    "run_id string, model string, params map<string,string>, metrics map<string,double>, model_path string, "
    "recorded_at timestamp"
)
JOB_RUN_SCHEMA = (
    "run_id string, job string, table_name string, status string, rows_in long, published long, quarantined long, "
    "deduplicated long, balanced boolean, details map<string,long>, seconds double, started_at timestamp, "
    "error string"
)

JOB_INPUTS_SCHEMA = "run_id string, job string, input_versions map<string,long>, recorded_at timestamp"

JobFunction = Callable[[JobContext], None]


def new_run_id() -> str:
    return f"{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class LastSuccess:
    # The input table versions the run consumed, and when it finished.
    input_versions: dict[str, int]
    at: dt.datetime


def last_successes(spark: SparkSession, config: Config) -> dict[str, LastSuccess]:
    """Per job, its last successful run (ops.job_inputs)."""
    if not io.table_exists(spark, config, JOB_INPUTS):
        return {}
    rows = io.read_table(spark, config, JOB_INPUTS).groupBy("job").agg(
        F.max_by("input_versions", "recorded_at").alias("input_versions"),
        # Epoch seconds: collected timestamps would come back naive in the driver's local time zone.
        F.max("recorded_at").cast("double").alias("at")
    )
    return {row["job"]: LastSuccess(dict(row["input_versions"]), dt.datetime.fromtimestamp(row["at"], dt.timezone.utc))
            for row in rows.collect()}


def run_job(
    name: str,
    function: JobFunction,
    spark: SparkSession,
    config: Config,
    run_id: str,
    reads: tuple[str, ...] = (),
    consumed: dict[str, int] | None = None,
    replay_rows: DataFrame | None = None,
) -> JobRun:
    """Run one job, time it and record it in ops.job_runs whatever the outcome. Never raises for a job failure.

    On success the versions of ``reads`` taken at the start go to ops.job_inputs: what the run consumed.
    ``replay_rows``: see JobContext.
    """
    started = dt.datetime.now(dt.timezone.utc)
    clock = time.monotonic()
    persisted_before, cache_was_empty = persisted_rdd_ids(spark), cache_is_empty(spark)
    size_tasks_to_input(spark, config, io.tables_bytes(spark, config, reads))
    context = JobContext(spark, config, run_id, input_versions=io.table_versions(spark, config, reads),
                         consumed_versions=consumed or {}, replay_rows=replay_rows, job=name)
    try:
        function(context)
        status, error = "succeeded", None
    except (GateFailed, io.TableNotFound) as failure:
        status, error = "failed", str(failure)
    except Exception as crash:  # noqa: BLE001 - a scheduler records any job crash and stops what depends on it
        log.exception("job %s crashed", name)
        status, error = "failed", f"{type(crash).__name__}: {str(crash).splitlines()[0] if str(crash) else ''}"
    finally:
        # What a crash skipped unpersisting, and the factor RDDs ALS persists, would otherwise fill a long-lived
        # driver (a scheduler, a notebook, a test session) until broadcasts fail.
        unpersist_rdds(spark, keep=persisted_before)
        if cache_was_empty:
            # An unpersisted RDD leaves its DataFrame's plan in the cache manager, and the plan keeps its
            # broadcasts in storage memory: 3 GB after gold_recommendations at S, and the next scale's
            # silver_events then failed for want of execution memory (UNABLE_TO_ACQUIRE_MEMORY).
            spark.catalog.clearCache()
    if context.quality_rows:
        io.append(spark.createDataFrame(context.quality_rows, QUALITY_SCHEMA), config, QUALITY_RESULTS)
    run = JobRun(run_id, name, status, list(context.tables.values()), time.monotonic() - clock, started, error)
    _record(spark, config, run)
    if status == "succeeded":
        inputs = [(run_id, name, context.input_versions, dt.datetime.now(dt.timezone.utc))]
        io.append(spark.createDataFrame(inputs, JOB_INPUTS_SCHEMA), config, JOB_INPUTS)
    return run


def _record(spark: SparkSession, config: Config, run: JobRun) -> None:
    rows = [
        (run.run_id, run.job, t.table, run.status, t.rows_in, t.published, t.quarantined, t.deduplicated,
         t.balanced, t.details, run.seconds, run.started_at, run.error)
        for t in run.tables or [TableRun(table="")]
    ]
    io.append(spark.createDataFrame(rows, JOB_RUN_SCHEMA), config, JOB_RUNS)
