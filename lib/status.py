"""What the lakehouse looks like now: each job's last run with its row accounting and gate outcomes, each table's
Delta version and last commit, and what sits in quarantine. Read from ops.job_runs, ops.quality_results, Delta's
history and the quarantine tables; shaped here, printed by ``dmp status``."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from rich.console import RenderableType
from rich.markup import escape
from rich.table import Table

from lib import io
from lib.config import Config
from lib.quarantine import QuarantineSummary, quarantine_summaries
from lib.runner import JOB_RUNS, QUALITY_RESULTS

NO_RUNS_YET = "No job runs are recorded under {lakehouse} yet: run `dmp pipeline run` (or `dmp demo`) first."


@dataclass(frozen=True)
class TableRows:
    table: str
    rows_in: int
    published: int
    quarantined: int
    deduplicated: int
    balanced: bool
    details: dict[str, int]  # the job's own counts, e.g. exact_duplicates, removed_from_quarantine


@dataclass(frozen=True)
class GateOutcome:
    """The expectations of one table's gate in one run; a rule validated in several micro-batches passed only if
    it passed in all of them."""

    table: str
    expectations: int
    passed: int
    failed: int  # critical rules that failed: their rows went to quarantine
    warnings: int  # warning rules that failed: recorded only
    failed_rules: list[str]


@dataclass(frozen=True)
class JobStatus:
    job: str
    run_id: str
    status: str
    started_at: dt.datetime | None
    seconds: float
    error: str | None
    tables: list[TableRows]
    gates: list[GateOutcome]


@dataclass(frozen=True)
class TableState:
    table: str
    version: int
    last_commit: dt.datetime
    operation: str


@dataclass(frozen=True)
class LakehouseStatus:
    lakehouse: str
    checked_at: dt.datetime
    jobs: list[JobStatus]
    tables: list[TableState]
    quarantine: list[QuarantineSummary]

    @property
    def empty(self) -> bool:
        return not self.jobs

    def message(self) -> str | None:
        return NO_RUNS_YET.format(lakehouse=self.lakehouse) if self.empty else None

    def to_json(self) -> dict:
        return {
            "lakehouse": self.lakehouse,
            "checked_at": _iso(self.checked_at),
            "message": self.message(),
            "jobs": [
                {
                    "job": j.job, "run_id": j.run_id, "status": j.status, "started_at": _iso(j.started_at),
                    "seconds": round(j.seconds, 3), "error": j.error,
                    "tables": [t.__dict__ for t in j.tables],
                    "gates": [g.__dict__ for g in j.gates],
                }
                for j in self.jobs
            ],
            "tables": [
                {"table": t.table, "version": t.version, "last_commit": _iso(t.last_commit),
                 "age_seconds": round((self.checked_at - t.last_commit).total_seconds(), 1),
                 "operation": t.operation}
                for t in self.tables
            ],
            "quarantine": [q.to_json() for q in self.quarantine],
        }


def last_runs(job_runs: DataFrame) -> DataFrame:
    """The ops.job_runs rows of each job's most recent run (one row per table the run accounted for)."""
    latest = job_runs.groupBy("job").agg(F.max_by("run_id", F.struct("started_at", "run_id")).alias("run_id"))
    return job_runs.join(latest, ["job", "run_id"], "left_semi")


def gate_outcomes(quality_results: DataFrame, runs: DataFrame) -> DataFrame:
    """Per job and table of ``runs``: expectations checked in that run, how many passed, failed critical rules,
    failed warnings and the failed rules' names (``job``, ``table_name``, ``expectations``, ``passed``,
    ``failed``, ``warnings``, ``failed_rules``)."""
    checked = quality_results.join(runs.select("job", "run_id", "table_name").distinct(), ["run_id", "table_name"])
    per_rule = checked.groupBy("job", "table_name", "rule", "severity").agg(F.bool_and("success").alias("success"))
    failed = ~F.col("success")
    return per_rule.groupBy("job", "table_name").agg(
        F.count(F.lit(1)).alias("expectations"),
        F.count_if("success").alias("passed"),
        F.count_if(failed & (F.col("severity") == "critical")).alias("failed"),
        F.count_if(failed & (F.col("severity") != "critical")).alias("warnings"),
        F.array_sort(F.collect_list(F.when(failed, F.col("rule")))).alias("failed_rules"),
    )


def lakehouse_status(spark: SparkSession, config: Config) -> LakehouseStatus:
    """Read the status of the lakehouse at ``config.lakehouse_root``; empty (no jobs) when nothing ran there."""
    checked_at = dt.datetime.now(dt.timezone.utc)
    jobs: list[JobStatus] = []
    if io.table_exists(spark, config, JOB_RUNS):
        runs = last_runs(io.read_table(spark, config, JOB_RUNS)).cache()
        gates: dict[tuple[str, str], GateOutcome] = {}
        if io.table_exists(spark, config, QUALITY_RESULTS):
            for row in gate_outcomes(io.read_table(spark, config, QUALITY_RESULTS), runs).collect():
                gates[row["job"], row["table_name"]] = GateOutcome(
                    row["table_name"], row["expectations"], row["passed"], row["failed"], row["warnings"],
                    list(row["failed_rules"]))
        jobs = _job_statuses(runs.collect(), gates)
        runs.unpersist()
    tables = []
    for table in io.list_tables(spark, config):
        commit = io.last_commit(spark, config, table)
        tables.append(TableState(table, commit.version, _utc(commit.timestamp), commit.operation))
    return LakehouseStatus(config.lakehouse_root, checked_at, jobs, tables, quarantine_summaries(spark, config))


def _job_statuses(rows: list, gates: dict[tuple[str, str], GateOutcome]) -> list[JobStatus]:
    from lib.pipeline import dependency_order

    by_job: dict[str, list] = {}
    for row in rows:
        by_job.setdefault(row["job"], []).append(row)
    order = {name: index for index, name in enumerate(dependency_order())}
    # Pipeline jobs in dependency order, then anything else that ran (quarantine replays) by name.
    names = sorted(by_job, key=lambda name: (order.get(name, len(order)), name))
    statuses = []
    for name in names:
        table_rows = sorted(by_job[name], key=lambda row: row["table_name"])
        first = table_rows[0]
        statuses.append(JobStatus(
            job=name, run_id=first["run_id"], status=first["status"], started_at=_utc(first["started_at"]),
            seconds=first["seconds"] or 0.0, error=first["error"],
            tables=[TableRows(r["table_name"], r["rows_in"], r["published"], r["quarantined"], r["deduplicated"],
                              r["balanced"], dict(r["details"] or {})) for r in table_rows if r["table_name"]],
            gates=[gates[name, r["table_name"]] for r in table_rows if (name, r["table_name"]) in gates],
        ))
    return statuses


def _utc(timestamp: dt.datetime | None) -> dt.datetime | None:
    # PySpark hands timestamps back as naive datetimes in this process's local time.
    return timestamp.astimezone(dt.timezone.utc) if timestamp is not None else None


def _iso(timestamp: dt.datetime | None) -> str | None:
    return timestamp.isoformat(timespec="seconds") if timestamp is not None else None


def status_tables(status: LakehouseStatus) -> list[RenderableType]:
    """The status as rich renderables: last run per job, gate outcomes, tables, quarantine."""
    run_ids = sorted({job.run_id for job in status.jobs})
    runs = Table("job", "status", "started (UTC)", "seconds", "table", "rows in", "published", "quarantined",
                 "deduplicated", "balanced", title=f"last run per job (ops.job_runs; run {', '.join(run_ids)})")
    for job in status.jobs:
        colour = {"succeeded": "green", "failed": "red"}.get(job.status, "yellow")
        head = [job.job, f"[{colour}]{job.status}[/{colour}]",
                f"{job.started_at:%Y-%m-%d %H:%M}" if job.started_at else "-", f"{job.seconds:.1f}"]
        for index, t in enumerate(job.tables or [None]):
            cells = head if index == 0 else [""] * len(head)
            if t is None:
                runs.add_row(*cells, "-", *["-"] * 5)
                continue
            runs.add_row(*cells, t.table, *(f"{n:,}" for n in (t.rows_in, t.published, t.quarantined,
                                                                 t.deduplicated)),
                         "yes" if t.balanced else "[red]NO[/red]")
        if job.error:
            runs.add_row("", "", "", "", f"[red]{escape(job.error)}[/red]", *[""] * 5)
    shown: list[RenderableType] = [runs]
    gated = [(job.job, g) for job in status.jobs for g in job.gates]
    if gated:
        gates = Table("job", "table", "expectations", "passed", "failed", "warnings", "failed rules",
                      title="gate outcomes of those runs (ops.quality_results)")
        for job, g in gated:
            gates.add_row(job, g.table, str(g.expectations), str(g.passed),
                          f"[red]{g.failed}[/red]" if g.failed else "0",
                          f"[yellow]{g.warnings}[/yellow]" if g.warnings else "0", ", ".join(g.failed_rules))
        shown.append(gates)
    tables = Table("table", "Delta version", "last commit (UTC)", "age", "operation",
                   title=f"tables under {status.lakehouse}")
    for t in status.tables:
        tables.add_row(t.table, str(t.version), f"{t.last_commit:%Y-%m-%d %H:%M:%S}",
                       _age(status.checked_at - t.last_commit), t.operation)
    shown.append(tables)
    if any(q.rows for q in status.quarantine):
        quarantine = Table("table", "rows", "rules broken (rows)", title="quarantine (`dmp quarantine list`)")
        for q in status.quarantine:
            quarantine.add_row(q.table, f"{q.rows:,}", ", ".join(f"{rule} ({n:,})" for rule, n in q.rules.items()))
        shown.append(quarantine)
    else:
        shown.append("quarantine: empty")
    return shown


def _age(age: dt.timedelta) -> str:
    seconds = max(age.total_seconds(), 0)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"
