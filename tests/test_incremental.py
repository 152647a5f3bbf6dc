"""Incremental runs: new landing files only, the same silver as one run over everything, and crash safety."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from lib import io
from lib.generate import GeneratorSettings, copy_landing_days, generate, landing_days
from lib.pipeline import dependency_order, downstream, run_pipeline
from tests.conftest import make_config

pytestmark = pytest.mark.slow

SILVER = ["silver.orders", "silver.order_items", "silver.customers", "silver.customer_pii", "silver.products",
          "silver.campaigns", "silver.events"]
LINEAGE = ["_record_id", "_source_file", "_ingested_at"]
# The daily path: landing to silver and the incremental gold. The profile, pattern and campaign jobs recompute
# from all of silver on every run, so they add time here without adding anything incremental to check.
DAILY_JOBS = [job for job in dependency_order() if job in downstream("bronze") - downstream("gold_customer_features")
              - downstream("gold_patterns") - downstream("gold_campaign_insight")]


@pytest.fixture(scope="module")
def full_landing(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("full")
    generate(root, GeneratorSettings(customers=80, days=3, seed=21, products=30))
    return root


def copy_days(source: Path, target: Path, days: set[str]) -> int:
    """Copy the landing files of ``days``; returns the order lines copied."""
    copied = copy_landing_days(source, target, days)
    return sum(len(file.read_text().splitlines()) for file in copied if file.parent.name == "orders")


def content(spark, config, table):
    df = io.read_table(spark, config, table).drop(*LINEAGE)
    return sorted(map(repr, df.collect()))


def test_daily_runs_read_only_new_files_and_equal_one_run_over_everything(spark, e2e_landing, e2e_run, tmp_path):
    """The days of the shared end-to-end landing (every kind of dirt), landed one run at a time, against the
    shared run over all of them at once."""
    once, _, _ = e2e_run
    daily = make_config(tmp_path, tmp_path / "daily_landing", max_error_ratio=0.3)
    # Both lakehouses must hash PII with the same key for their silver tables to be comparable.
    shutil.copytree(Path(once.lakehouse_root) / "_secrets", Path(daily.lakehouse_root) / "_secrets")
    *earlier, last_day = landing_days(e2e_landing)
    copy_days(e2e_landing, Path(daily.landing_root), set(earlier))
    assert all(r.ok for r in run_pipeline(spark, daily, DAILY_JOBS))
    new_order_lines = copy_days(e2e_landing, Path(daily.landing_root), {last_day})
    second = {r.job: r for r in run_pipeline(spark, daily, DAILY_JOBS)}
    assert all(r.ok for r in second.values())
    job_runs = io.read_table(spark, daily, "ops.job_runs").filter(F.col("run_id") == second["bronze"].run_id)
    assert job_runs.filter("table_name = 'bronze.orders'").first()["rows_in"] == new_order_lines
    assert job_runs.filter("table_name = 'bronze.products'").first()["rows_in"] == 0
    # Gold took only the days whose orders changed from silver's change feed, not a recomputation of all days.
    gold = second["gold_daily_revenue"].tables[0].details
    assert "full_recompute" not in gold and gold["days_recomputed"] >= 1

    for table in SILVER + ["gold.daily_revenue"]:
        assert content(spark, daily, table) == content(spark, once, table), table


class SimulatedCrash(BaseException):
    """Stands for the process dying: not an Exception, so nothing in the job catches it."""


def test_crash_between_bronze_commit_and_checkpoint_loses_and_duplicates_nothing(spark, full_landing, tmp_path,
                                                                                  monkeypatch):
    config = make_config(tmp_path, full_landing)
    real_append = io.append

    def append_then_die(df, cfg, table, txn=None):
        committed = real_append(df, cfg, table, txn)
        if table == "bronze.orders":
            raise SimulatedCrash("killed after the Delta commit, before the stream's checkpoint commit")
        return committed

    monkeypatch.setattr(io, "append", append_then_die)
    with pytest.raises(SimulatedCrash):
        run_pipeline(spark, config, ["bronze"])
    committed = io.read_table(spark, config, "bronze.orders").count()
    monkeypatch.setattr(io, "append", real_append)

    retried = run_pipeline(spark, config, ["bronze"])
    assert retried[0].status == "succeeded"
    landed = sum(len(f.read_text().splitlines()) for f in (full_landing / "orders").iterdir())
    assert committed == landed
    assert io.read_table(spark, config, "bronze.orders").count() == landed
    # The retry's batch is the one Delta already holds: not written again, but counted as landed by this run.
    orders = next(t for t in retried[0].tables if t.table == "bronze.orders")
    assert (orders.rows_in, orders.published) == (landed, landed)
