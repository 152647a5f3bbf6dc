"""Runs the job graph in dependency order; a failed job stops everything downstream of it."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from pyspark.sql import SparkSession

from lib.config import Config
from lib.jobs import PIPELINE, Job
from lib.runner import JobRun, new_run_id, run_job


def dependency_order(jobs: dict[str, Job] = PIPELINE) -> list[str]:
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


def selected_jobs(jobs: Iterable[str] | None) -> set[str]:
    selected = set(jobs) if jobs is not None else set(PIPELINE)
    unknown = selected - set(PIPELINE)
    if unknown:
        raise ValueError(f"unknown job(s) {sorted(unknown)}; known: {', '.join(dependency_order())}")
    return selected


def run_pipeline(
    spark: SparkSession,
    config: Config,
    jobs: Iterable[str] | None = None,
    on_job_start: Callable[[str], None] = lambda job: None,
    on_job_done: Callable[[JobRun], None] = lambda run: None,
) -> list[JobRun]:
    """Run ``jobs`` (default: all) in dependency order under one run id. Jobs downstream of a failure are skipped."""
    selected = selected_jobs(jobs)
    run_id = new_run_id()
    failed: set[str] = set()
    runs: list[JobRun] = []
    for name in dependency_order():
        if name not in selected:
            continue
        job = PIPELINE[name]
        blocked = [d for d in job.depends_on if d in failed]
        if blocked:
            failed.add(name)
            run = JobRun(run_id, name, "skipped", [], 0.0, None, f"upstream job failed: {', '.join(blocked)}")
        else:
            on_job_start(name)
            run = run_job(name, job.run, spark, config, run_id)
            if run.status != "succeeded":
                failed.add(name)
        runs.append(run)
        on_job_done(run)
    return runs
