"""Quarantine review: list, show, and replay after a fix publishes the rows that pass now, once."""

from __future__ import annotations

import json

import pytest
from pyspark.sql import functions as F
from typer.testing import CliRunner

from lib import io
from lib.cli import app
from lib.config import Config
from lib.quarantine import REPLAYABLE
from lib.runner import JOB_RUNS


def config_of(lakehouse) -> Config:
    return Config(landing_root=lakehouse.env["DMP_LANDING_ROOT"], lakehouse_root=lakehouse.env["DMP_LAKEHOUSE_ROOT"])


def replay_runs(spark, config: Config, table: str) -> list:
    """The ops.job_runs rows of the order replays for ``table``, oldest first."""
    return (io.read_table(spark, config, JOB_RUNS)
            .filter((F.col("job") == "quarantine_replay_orders") & (F.col("table_name") == table))
            .orderBy("started_at").collect())


def quarantined_orders(spark, config: Config) -> dict[str, set[str]]:
    rows = io.read_table(spark, config, "quarantine.orders").collect()
    return {json.loads(row["value"])["order_id"]: set(row["_failed_rules"]) for row in rows}


@pytest.mark.slow
def test_replay_after_a_late_customer_publishes_the_orphan_orders_it_made_valid_and_rows_balance(
        spark, late_customer_lakehouse):
    config = config_of(late_customer_lakehouse)
    first = replay_runs(spark, config, "silver.orders")[0]
    # Both versions of o-late-2 pass now; only the newer one is published, the older is deduplicated.
    assert (first["rows_in"], first["published"], first["deduplicated"], first["quarantined"]) == (5, 2, 1, 2)
    assert first["status"] == "succeeded" and first["balanced"]
    assert first["details"]["removed_from_quarantine"] == 3
    said = late_customer_lakehouse.first_replay.output
    assert "replayed 5, published 2, already published 1, still quarantined 2" in said and "rows balance" in said

    published = {row["order_id"]: row for row in io.read_table(spark, config, "silver.orders").collect()}
    assert set(published) == {"o-1", "o-2", "o-late-1", "o-late-2"}
    lines = {row["order_id"]: row["quantity"] for row in io.read_table(spark, config, "silver.order_items").collect()}
    assert lines == {"o-1": 2, "o-2": 2, "o-late-1": 2, "o-late-2": 3}
    still = quarantined_orders(spark, config)
    assert set(still) == {"o-never", "o-negative"}
    assert "customer_is_known" in still["o-never"] and "unit_prices_not_negative" in still["o-negative"]


@pytest.mark.slow
def test_a_second_replay_publishes_nothing_new(spark, late_customer_lakehouse):
    config = config_of(late_customer_lakehouse)
    second = replay_runs(spark, config, "silver.orders")[1]
    assert (second["rows_in"], second["published"], second["deduplicated"], second["quarantined"]) == (2, 0, 0, 2)
    assert second["details"]["removed_from_quarantine"] == 0
    items = replay_runs(spark, config, "silver.order_items")
    assert [row["published"] for row in items] == [2, 0]
    assert io.read_table(spark, config, "silver.orders").count() == 4
    assert set(quarantined_orders(spark, config)) == {"o-never", "o-negative"}


@pytest.mark.slow
def test_list_counts_rows_and_rules_broken_and_show_prints_the_rows(late_customer_lakehouse):
    listed = late_customer_lakehouse.invoke("quarantine", "list")
    assert listed.exit_code == 0, listed.output
    assert "quarantine.orders" in listed.output and "customer_is_known (1)" in listed.output
    shown = late_customer_lakehouse.invoke("quarantine", "show", "silver.orders", "--limit", "5")
    assert shown.exit_code == 0, shown.output
    assert "quarantine.orders: 2 rows" in shown.output


def test_replay_of_a_table_without_replay_is_refused_naming_the_supported_ones(tmp_path):
    result = CliRunner().invoke(app, ["quarantine", "replay", "gold.daily_revenue"],
                                env={"DMP_LAKEHOUSE_ROOT": str(tmp_path)})
    assert result.exit_code == 2
    assert "quarantine.daily_revenue cannot be replayed" in result.output
    assert all(f"quarantine.{entity}" in result.output for entity in REPLAYABLE)
