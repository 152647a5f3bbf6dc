"""`dmp status`: each job's last run, gate outcomes, table versions and quarantine, for people and for machines."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from typer.testing import CliRunner

from lib import io
from lib.cli import app
from lib.config import Config
from tests.late_customer import PIPELINE_JOBS


@pytest.mark.slow
def test_status_lists_every_job_run_and_every_table_with_its_delta_version(spark, late_customer_lakehouse):
    config = Config(lakehouse_root=late_customer_lakehouse.env["DMP_LAKEHOUSE_ROOT"])
    result = late_customer_lakehouse.invoke("status", "--json")
    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)

    jobs = {job["job"]: job for job in status["jobs"]}
    assert list(jobs) == [*PIPELINE_JOBS, "quarantine_replay_orders"]
    orders_run = jobs["silver_orders"]
    rows = {t["table"]: t for t in orders_run["tables"]}
    assert (rows["silver.orders"]["rows_in"], rows["silver.orders"]["published"],
            rows["silver.orders"]["quarantined"], rows["silver.orders"]["balanced"]) == (7, 2, 5, True)
    gate = next(g for g in orders_run["gates"] if g["table"] == "silver.orders")
    assert {"customer_is_known", "unit_prices_not_negative"} <= set(gate["failed_rules"])
    assert gate["passed"] + gate["failed"] + gate["warnings"] == gate["expectations"]
    # The last replay is the second one: it had only the two rows that still fail.
    replay_rows = {t["table"]: t for t in jobs["quarantine_replay_orders"]["tables"]}
    assert (replay_rows["silver.orders"]["rows_in"], replay_rows["silver.orders"]["published"]) == (2, 0)

    versions = {t["table"]: t["version"] for t in status["tables"]}
    assert {"bronze.orders", "silver.customers", "silver.orders", "silver.order_items", "quarantine.orders",
            "ops.job_runs", "ops.quality_results"} <= set(versions)
    assert versions == {table: io.table_version(spark, config, table) for table in versions}
    assert all(dt.datetime.fromisoformat(t["last_commit"]).tzinfo is not None for t in status["tables"])
    assert status["quarantine"] == [{"table": "quarantine.orders", "rows": 2,
                                     "rules": status["quarantine"][0]["rules"]}]
    assert status["quarantine"][0]["rules"]["customer_is_known"] == 1

    shown = late_customer_lakehouse.invoke("status")
    assert shown.exit_code == 0, shown.output
    for name in ("silver_orders", "silver.order_items", "quarantine.orders", "customer_is_known"):
        assert name in shown.output


def test_status_of_an_empty_lakehouse_says_to_run_the_pipeline(spark, tmp_path):
    env = {"DMP_LAKEHOUSE_ROOT": str(tmp_path / "lakehouse")}
    shown = CliRunner().invoke(app, ["status"], env=env)
    assert shown.exit_code == 0 and shown.exception is None, shown.output
    assert "run `dmp pipeline run`" in shown.output
    document = json.loads(CliRunner().invoke(app, ["status", "--json"], env=env).stdout)
    assert document["jobs"] == [] and "dmp pipeline run" in document["message"]
