"""Runs the job graph in dependency order: skips jobs that are up to date, stops everything downstream of a failure."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping

from pyspark.sql import SparkSession

from lib import io
from lib.config import Config
from lib.jobs import PIPELINE, Job
from lib.lock import lakehouse_lock
from lib.runner import JobRun, LastSuccess, last_successes, new_run_id, run_job


def dependency_order(jobs: Mapping[str, Job] = PIPELINE) -> list[str]:
    ordered: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in path:
            raise ValueError(f"job graph has a cycle: {' -> '.join((*path, name))}")
        if name not in jobs:
            raise ValueError(f"job {path[-1]!r} depends on unknown job {name!r}")
        for dependency in jobs[name].depends_on:
            visit(dependency, (*path, name))
        if name not in ordered:
            ordered.append(name)

    for name in jobs:
        visit(name, ())
    return ordered


def downstream(job: str, jobs: Mapping[str, Job] = PIPELINE) -> set[str]:
    """``job`` and every job that depends on it, directly or not."""
    reached = {job}
    for name in dependency_order(jobs):
        if reached.intersection(jobs[name].depends_on):
            reached.add(name)
    return reached


def upstream(job: str, jobs: Mapping[str, Job] = PIPELINE) -> set[str]:
    """``job`` and every job it depends on, directly or not."""
    reached, pending = set(), [job]
    while pending:
        name = pending.pop()
        if name not in reached:
            reached.add(name)
            pending.extend(jobs[name].depends_on)
    return reached


def selected_jobs(only: Iterable[str] | None = None, start_from: str | None = None) -> list[str]:
    """The jobs a run executes, in dependency order: ``only`` these, or ``start_from`` and everything downstream
    of it, or all. Raises ValueError naming the known jobs for an unknown name."""
    only = list(only or [])
    if only and start_from:
        raise ValueError("give either --only or --from, not both")
    unknown = sorted({*only, *([start_from] if start_from else [])} - set(PIPELINE))
    if unknown:
        raise ValueError(f"unknown job(s) {', '.join(unknown)}; the jobs are: {', '.join(dependency_order())}")
    chosen = set(only) if only else downstream(start_from) if start_from else set(PIPELINE)
    return [name for name in dependency_order() if name in chosen]


def up_to_date(spark: SparkSession, config: Config, job: Job, consumed: dict[str, int] | None) -> bool:
    """Whether none of the tables ``job`` reads changed since its last successful run (which consumed
    ``consumed``) and what it publishes still exists. A job that reads no tables (bronze) is never up to date."""
    if not job.reads or consumed is None:
        return False
    current = io.table_versions(spark, config, job.reads)
    unchanged = all(table in current and current[table] == consumed.get(table) for table in job.reads)
    return unchanged and all(io.table_exists(spark, config, table) for table in job.writes)


def not_due(config: Config, job: Job, last: LastSuccess | None, now: dt.datetime) -> str | None:
    """Why a model-training ``job`` is not due yet (None when it is): its last success is more recent than the
    configured cadence."""
    every = dt.timedelta(days=config.schedule.model_every_days)
    if not job.trains_models or last is None or now - last.at >= every:
        return None
    return (f"not due: models retrain every {config.schedule.model_every_days:g} days, last success "
            f"{last.at:%Y-%m-%d %H:%M} UTC")


def run_pipeline(
    spark: SparkSession,
    config: Config,
    jobs: Iterable[str] | None = None,
    start_from: str | None = None,
    force: bool = False,
    on_job_start: Callable[[str], None] = lambda job: None,
    on_job_done: Callable[[JobRun], None] = lambda run: None,
) -> list[JobRun]:
    """Run ``jobs`` (default: all; or ``start_from`` and what depends on it) in dependency order under one run id.

    A job whose input tables did not change since its last success is skipped as up to date, and a model-training
    job that is not due on the configured cadence is skipped, unless ``force``;
    jobs downstream of a failure are skipped with the failure named in their error. Holds the lakehouse lock
    (lib/lock.py): a concurrent run on the same lakehouse waits, then raises LakehouseBusy.
    """
    selected = selected_jobs(jobs, start_from)
    with lakehouse_lock(config.lakehouse_root, config.concurrency.lock_wait_seconds):
        return _run_selected(spark, config, selected, force, on_job_start, on_job_done)


def _run_selected(spark: SparkSession, config: Config, selected: list[str], force: bool,
                  on_job_start: Callable[[str], None], on_job_done: Callable[[JobRun], None]) -> list[JobRun]:
    run_id = new_run_id()
    last = last_successes(spark, config)
    now = dt.datetime.now(dt.timezone.utc)
    failed: set[str] = set()
    runs: list[JobRun] = []
    for name in selected:
        job = PIPELINE[name]
        consumed = last[name].input_versions if name in last else None
        blocked = [d for d in job.depends_on if d in failed]
        waiting = None if force else not_due(config, job, last.get(name), now)
        if blocked:
            failed.add(name)
            run = JobRun(run_id, name, "skipped", [], 0.0, None, f"upstream job failed: {', '.join(blocked)}")
        elif waiting:
            run = JobRun(run_id, name, "skipped", [], 0.0, None, skip_reason=waiting)
        elif not force and up_to_date(spark, config, job, consumed):
            run = JobRun(run_id, name, "skipped", [], 0.0, None, skip_reason="up to date")
        else:
            on_job_start(name)
            run = run_job(name, job.run, spark, config, run_id, job.reads, consumed)
            if run.status != "succeeded":
                failed.add(name)
        runs.append(run)
        on_job_done(run)
    return runs
