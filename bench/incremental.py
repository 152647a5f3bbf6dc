"""Benchmark: a daily incremental run against the full run before it, and gold against a full recompute.

``python -m bench.incremental --customers 300 --days 8`` generates the days, runs the whole pipeline on all days
but the last (timed), lands the last day's files and runs again (timed), then rebuilds a second lakehouse from
scratch over all days and checks every gold table equals the incremental one. Config (Spark master, memory) comes
from ``DMP_*`` variables / dmp.toml as for ``dmp``; the folders are the benchmark's own.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import shutil
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from lib import io
from lib.config import Config, load_config
from lib.generate import GeneratorSettings, copy_landing_days, generate
from lib.jobs import PIPELINE
from lib.pipeline import run_pipeline
from lib.runner import JobRun
from lib.spark import spark_session

console = Console()


def timed_run(spark, config: Config) -> tuple[float, list[JobRun]]:
    clock = time.monotonic()
    runs = run_pipeline(spark, config)
    seconds = time.monotonic() - clock
    failed = [f"{run.job}: {run.error}" for run in runs if not run.ok]
    if failed:
        raise SystemExit(f"pipeline failed in {config.lakehouse_root}: {'; '.join(failed)}")
    return seconds, runs


def differing_gold_tables(spark, one: Config, other: Config) -> list[str]:
    """Gold tables whose rows differ between two lakehouses (compared as multisets)."""
    differing = []
    for table in sorted(t for job in PIPELINE.values() for t in job.writes if t.startswith("gold.")):
        left, right = io.read_table(spark, one, table), io.read_table(spark, other, table)
        if left.exceptAll(right).count() or right.exceptAll(left).count():
            differing.append(table)
    return differing


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.incremental", description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=300, help="CRM customers to generate")
    parser.add_argument("--days", type=int, default=8, help="days to generate; the last one is the increment")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--workdir", type=Path, help="where landing files and lakehouses go (default: a temp dir)")
    args = parser.parse_args()
    if args.days < 2:
        parser.error("--days must be at least 2: the full run takes all but the last day")

    # Both lakehouses must pseudonymise PII with the same key for their tables to be comparable.
    os.environ.setdefault("DMP_PII_SALT", "bench-incremental")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="dmp-bench-"))
    shutil.rmtree(workdir, ignore_errors=True)
    settings = GeneratorSettings(customers=args.customers, days=args.days, seed=args.seed)
    with console.status(f"generating {args.customers} customers x {args.days} days ..."):
        generate(workdir / "generated", settings)
    days = [(settings.start_date + dt.timedelta(days=d)).strftime("%Y%m%d") for d in range(args.days)]
    base = load_config()
    daily = dataclasses.replace(base, landing_root=str(workdir / "daily" / "landing"),
                                lakehouse_root=str(workdir / "daily" / "lakehouse"))
    once = dataclasses.replace(base, landing_root=str(workdir / "generated"),
                               lakehouse_root=str(workdir / "once" / "lakehouse"))
    with console.status("starting Spark ..."):
        spark = spark_session(base)

    # The from-scratch build over all days runs first, so the timed runs below both find a warm JVM.
    with console.status(f"full recompute over all {args.days} days (reference) ..."):
        all_days_seconds, _ = timed_run(spark, once)
    copy_landing_days(workdir / "generated", Path(daily.landing_root), days[:-1])
    with console.status(f"full run over {args.days - 1} days ..."):
        full_seconds, _ = timed_run(spark, daily)
    copy_landing_days(workdir / "generated", Path(daily.landing_root), days[-1:])
    with console.status(f"incremental run on day {days[-1]} ..."):
        incremental_seconds, incremental = timed_run(spark, daily)
    differing = differing_gold_tables(spark, daily, once)

    table = Table("run", "days read", "seconds", "vs full run", title=f"{args.customers} customers, {args.days} days")
    table.add_row("full run", f"{args.days - 1}", f"{full_seconds:.1f}", "1.00")
    table.add_row("incremental run", "1 new", f"{incremental_seconds:.1f}", f"{incremental_seconds / full_seconds:.2f}")
    table.add_row("from scratch (reference)", f"{args.days}", f"{all_days_seconds:.1f}",
                  f"{all_days_seconds / full_seconds:.2f}")
    console.print(table)
    jobs = Table("job", "incremental run", "seconds", "details", title="jobs in the incremental run")
    for run in incremental:
        details = ", ".join(f"{t.table}: {k.replace('_', ' ')} {v}" for t in run.tables for k, v in t.details.items()
                            if k in ("full_recompute", "days_recomputed"))
        jobs.add_row(run.job, "skipped (up to date)" if run.status == "skipped" else run.status,
                     f"{run.seconds:.1f}", details)
    console.print(jobs)
    console.print(f"landing files and lakehouses: {workdir}")
    if differing:
        raise SystemExit(f"gold differs from a full recompute over all days: {', '.join(differing)}")
    console.print("[green]every gold table equals a full recompute over all days[/green]")


if __name__ == "__main__":
    main()
