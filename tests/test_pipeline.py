"""`dmp pipeline run`: which jobs a run selects, skipping jobs that are up to date, --force, the progress display."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io as text_io
from pathlib import Path

import pytest
from pyspark.sql import functions as F
from rich.console import Console
from typer.testing import CliRunner

from lib import io
from lib.cli import PipelineProgress, app
from lib.config import ScheduleSettings
from lib.generate import GeneratorSettings, copy_landing_days, generate
from lib.jobs import PIPELINE
from lib.pipeline import dependency_order, downstream, not_due, run_pipeline, selected_jobs, upstream
from lib.runner import JobRun, LastSuccess, TableRun, new_run_id, run_job
from lib.spark import cache_is_empty, persisted_rdd_ids
from tests.conftest import make_config

# The jobs an order needs on its way to gold; enough to show skipping without running the whole graph.
ORDER_JOBS = ["bronze", "silver_customers", "silver_products", "silver_orders", "gold_daily_revenue"]


def test_from_selects_the_job_and_everything_downstream_in_dependency_order():
    selected = selected_jobs(start_from="silver_customers")
    assert selected == [name for name in dependency_order() if name in selected]
    assert {"silver_customers", "silver_identity", "silver_orders", "gold_daily_revenue"} <= set(selected)
    assert not {"bronze", "silver_products", "silver_events", "silver_campaigns"} & set(selected)
    for name in set(PIPELINE) - set(selected):
        assert not set(PIPELINE[name].depends_on) & set(selected), f"{name} depends on a selected job"
    assert selected_jobs(start_from="bronze") == dependency_order()


def test_upstream_is_the_job_and_every_job_it_needs_directly_or_not():
    needed = upstream("silver_orders")
    assert needed == {"bronze", "silver_customers", "silver_products", "silver_orders"}
    for name in PIPELINE:
        needs = upstream(name)
        assert name in needs and all(upstream(dependency) <= needs for dependency in PIPELINE[name].depends_on)
        assert all(name in downstream(other) for other in needs)


def test_only_selects_just_those_jobs_in_dependency_order():
    assert selected_jobs(["gold_daily_revenue", "bronze"]) == ["bronze", "gold_daily_revenue"]
    assert selected_jobs() == dependency_order()


def test_only_and_from_together_are_refused():
    with pytest.raises(ValueError, match="either"):
        selected_jobs(["bronze"], start_from="bronze")


@pytest.mark.parametrize("option", ["--only", "--from"])
def test_unknown_job_is_refused_naming_every_valid_job(option, tmp_path):
    result = CliRunner().invoke(app, ["pipeline", "run", option, "silver_unicorns"],
                                env={"DMP_LAKEHOUSE_ROOT": str(tmp_path)})
    assert result.exit_code == 2
    assert "silver_unicorns" in result.output
    for job in PIPELINE:
        assert job in result.output


def test_every_table_a_job_reads_is_written_upstream_of_it_and_every_table_has_one_writer():
    writers = [(table, job.name) for job in PIPELINE.values() for table in job.writes]
    assert len({table for table, _ in writers}) == len(writers)
    writer = dict(writers)
    for job in PIPELINE.values():
        for table in job.reads:
            assert table in writer, f"{job.name} reads {table}, which no job writes"
            assert job.name in downstream(writer[table]) and writer[table] != job.name, (job.name, table)


def test_progress_without_a_terminal_prints_a_line_when_a_job_starts_and_when_it_ends():
    """CI logs read these lines, and bench.soak times its kills from a job's start line."""
    out = text_io.StringIO()
    progress = PipelineProgress(["bronze", "silver_orders"])
    with progress.shown(Console(file=out, force_terminal=False, width=200)):
        progress.started("bronze")
        progress.done(JobRun("r", "bronze", "succeeded", [TableRun("bronze.orders", 10, 10)], 1.5, None))
        progress.done(JobRun("r", "silver_orders", "skipped", [], 0.0, None, skip_reason="up to date"))
    lines = out.getvalue().splitlines()
    assert lines == ["  started bronze", "succeeded bronze (1.5 s) rows in 10, published 10, quarantined 0",
                     "  skipped silver_orders (0.0 s) rows in 0, published 0, quarantined 0 - up to date"]


def test_progress_on_a_terminal_is_a_table_of_every_job_with_its_status():
    progress = PipelineProgress(["bronze", "silver_orders", "gold_daily_revenue"])
    progress.started("bronze")
    progress.done(JobRun("r", "bronze", "failed", [TableRun("bronze.orders", 7, 7)], 2.0, None, "boom"))
    progress.started("silver_orders")
    out = text_io.StringIO()
    Console(file=out, force_terminal=True, width=200).print(progress)
    rendered = out.getvalue()
    for expected in ("failed", "boom", "running", "pending", "gold_daily_revenue"):
        assert expected in rendered


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("generated")
    # Seed 6: every day has orders (6, 7, 5), so the third day's files give the order jobs something new.
    generate(root, GeneratorSettings(customers=30, days=3, seed=6, products=20))
    return root


@pytest.fixture(scope="module")
def lakehouse(spark, generated, tmp_path_factory):
    """A lakehouse whose order jobs ran once, on the first two generated days."""
    config = make_config(tmp_path_factory.mktemp("lakehouse"), max_error_ratio=0.3)
    copy_landing_days(generated, Path(config.landing_root), {"20260101", "20260102"})
    assert all(run.ok for run in run_pipeline(spark, config, ORDER_JOBS))
    return config


def versions(spark, config) -> dict[str, int | None]:
    return {table: io.table_version(spark, config, table) for job in ORDER_JOBS for table in PIPELINE[job].writes}


@pytest.mark.slow
def test_second_run_without_new_files_skips_everything_below_bronze_and_changes_no_table(spark, lakehouse):
    before = versions(spark, lakehouse)
    runs = {run.job: run for run in run_pipeline(spark, lakehouse, ORDER_JOBS)}
    assert runs["bronze"].status == "succeeded"
    assert {job: run.status for job, run in runs.items() if job != "bronze"} == dict.fromkeys(ORDER_JOBS[1:],
                                                                                                 "skipped")
    assert all(run.ok for run in runs.values())
    assert versions(spark, lakehouse) == before


@pytest.mark.slow
def test_new_files_rerun_the_jobs_reading_what_changed_and_gold_recomputes_only_touched_days(spark, generated,
                                                                                             lakehouse):
    copy_landing_days(generated, Path(lakehouse.landing_root), {"20260103"}, sources=["customers", "orders"])
    runs = {run.job: run for run in run_pipeline(spark, lakehouse, ORDER_JOBS)}
    assert {job: run.status for job, run in runs.items()} == {
        "bronze": "succeeded", "silver_customers": "succeeded", "silver_products": "skipped",
        "silver_orders": "succeeded", "gold_daily_revenue": "succeeded"}
    gold = runs["gold_daily_revenue"].tables[0]
    assert "full_recompute" not in gold.details
    assert 1 <= gold.details["days_recomputed"] < io.read_table(spark, lakehouse, "gold.daily_revenue").count()


@pytest.mark.slow
def test_force_from_a_job_runs_it_and_its_downstream_even_when_up_to_date(spark, lakehouse):
    env = {"DMP_LANDING_ROOT": lakehouse.landing_root, "DMP_LAKEHOUSE_ROOT": lakehouse.lakehouse_root,
           "DMP_GATES__MAX_ERROR_RATIO": "0.3"}
    assert run_pipeline(spark, lakehouse, ["silver_orders"])[0].status == "skipped"
    result = CliRunner().invoke(app, ["pipeline", "run", "--from", "silver_orders", "--force"], env=env)
    # Everything downstream of silver_orders runs, forced although up to date. This order-only lakehouse never
    # built the identity map, so the profile branch fails and the jobs below it are skipped, not run.
    assert result.exit_code == 1, result.output
    runs = io.read_table(spark, lakehouse, "ops.job_runs")
    last = runs.orderBy(F.col("started_at").desc()).first()["run_id"]
    ran = {r["job"]: r for r in runs.filter(F.col("run_id") == last).select("job", "status", "error").collect()}
    assert set(ran) == downstream("silver_orders") - (downstream("gold_customer_features") - {"gold_customer_features"})
    assert ran["silver_orders"]["status"] == ran["gold_daily_revenue"]["status"] == "succeeded"
    assert ran["gold_customer_features"]["status"] == "failed"
    assert "silver.identity_map" in ran["gold_customer_features"]["error"]
    assert "succeeded gold_daily_revenue" in result.output


def test_a_model_job_is_due_once_its_cadence_has_passed_and_other_jobs_ignore_the_cadence(tmp_path):
    config = dataclasses.replace(make_config(tmp_path), schedule=ScheduleSettings(model_every_days=7))
    now = dt.datetime(2026, 11, 23, 12, tzinfo=dt.timezone.utc)
    ran = {days: LastSuccess({}, now - dt.timedelta(days=days)) for days in (1, 6.9, 7, 30)}
    assert PIPELINE["gold_patterns"].trains_models and not PIPELINE["gold_daily_revenue"].trains_models
    assert "every 7 days" in not_due(config, PIPELINE["gold_patterns"], ran[1], now)
    assert not_due(config, PIPELINE["gold_patterns"], ran[6.9], now)
    assert not_due(config, PIPELINE["gold_patterns"], ran[7], now) is None
    assert not_due(config, PIPELINE["gold_patterns"], ran[30], now) is None
    assert not_due(config, PIPELINE["gold_patterns"], None, now) is None, "a job that never ran is due"
    assert not_due(config, PIPELINE["gold_daily_revenue"], ran[1], now) is None
    every_run = dataclasses.replace(config, schedule=ScheduleSettings(model_every_days=0))
    assert not_due(every_run, PIPELINE["gold_patterns"], ran[1], now) is None


@pytest.mark.slow
def test_a_model_job_inside_its_cadence_is_skipped_as_not_due_unless_forced(spark, lakehouse):
    weekly = dataclasses.replace(lakehouse, schedule=ScheduleSettings(model_every_days=7))
    assert run_pipeline(spark, weekly, ["gold_patterns"], force=True)[0].status == "succeeded"
    rerun = run_pipeline(spark, weekly, ["gold_patterns"])[0]
    assert (rerun.status, rerun.ok) == ("skipped", True)
    assert rerun.skip_reason.startswith("not due: models retrain every 7 days")
    assert run_pipeline(spark, lakehouse, ["gold_patterns"])[0].skip_reason == "up to date"


def test_a_crashed_job_leaves_nothing_cached_and_what_was_cached_before_stays(spark, tmp_path):
    kept = spark.range(10).cache()
    kept.count()
    persisted_before = persisted_rdd_ids(spark)

    def crashes_after_caching(ctx):
        ctx.spark.range(100).cache().count()
        raise RuntimeError("boom")

    run = run_job("crashes_after_caching", crashes_after_caching, spark, make_config(tmp_path), new_run_id())
    assert run.status == "failed" and "boom" in run.error
    assert persisted_rdd_ids(spark) == persisted_before and kept.is_cached
    kept.unpersist()


def test_a_job_leaves_no_cached_plan_holding_its_broadcasts(spark, tmp_path):
    spark.catalog.clearCache()  # a job started with something cached (a notebook's) leaves the cache as it is

    def caches_a_broadcast_join(ctx):
        big = ctx.spark.range(200_000).selectExpr("id", "id % 1000 AS key")
        small = ctx.spark.range(1000).selectExpr("id AS key", "repeat('x', 1000) AS padding")
        big.join(F.broadcast(small), "key").cache().count()

    run = run_job("caches", caches_a_broadcast_join, spark, make_config(tmp_path), new_run_id())
    assert run.status == "succeeded", run.error
    # Unpersisting the cached RDD alone would leave the plan, and its broadcast, in the cache manager.
    assert cache_is_empty(spark)
