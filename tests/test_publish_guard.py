"""Publish guard and rollback: a recomputed gold table (or model) clearly worse than the published one is refused
and the published table stays as it was; `dmp rollback` restores the publish before the newest.

A small job publishes hand-made gold.segments rows through the real gate (its GX suite), guard and MERGE.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from typer.testing import CliRunner

from lib import io
from lib.cli import app
from lib.config import PublishGuardSettings
from lib.runner import JobContext, new_run_id, run_job
from lib.segments import SEGMENTS_SCHEMA
from tests.conftest import make_config

TABLE = "gold.segments"
JOB = "segments_by_hand"


def _segments(spark, count: int, model_path: str | None = "models/one", prefix: str = "segment"):
    return spark.createDataFrame(
        [(i, i, f"{prefix} {i}", 10 + i, {"recency": float(i)}, ["recency"], model_path, "run-1", dt.date(2026, 1, 1))
         for i in range(count)], SEGMENTS_SCHEMA)


def _publish(spark, config, rows, silhouette: float | None = None):
    def job(ctx: JobContext) -> None:
        if silhouette is not None:
            ctx.record_model_run("segments_by_hand", params={}, metrics={"silhouette": silhouette})
            ctx.refuse_metric_drop("segments_by_hand", "silhouette", silhouette)
        ctx.publish_recomputed([(rows, TABLE, ["segment_id"])])

    return run_job(JOB, job, spark, config, new_run_id())


@pytest.fixture
def config(tmp_path):
    return make_config(tmp_path)


def test_a_table_losing_most_of_its_rows_is_refused_and_stays_published(spark, config):
    assert _publish(spark, config, _segments(spark, 10)).ok
    version = io.table_version(spark, config, TABLE)

    refused = _publish(spark, config, _segments(spark, 3))

    assert refused.status == "failed"
    assert "gold.segments not published" in refused.error and "rows would fall from 10 to 3" in refused.error
    assert "DMP_PUBLISH_GUARD__ENABLED=false" in refused.error
    assert io.table_version(spark, config, TABLE) == version
    assert io.read_table(spark, config, TABLE).count() == 10


def test_a_refused_change_is_published_when_the_guard_is_switched_off(spark, config):
    assert _publish(spark, config, _segments(spark, 10)).ok
    unguarded = dataclasses.replace(config, publish_guard=PublishGuardSettings(enabled=False))

    assert _publish(spark, unguarded, _segments(spark, 3)).ok
    assert io.read_table(spark, config, TABLE).count() == 3


def test_a_column_suddenly_null_is_refused(spark, config):
    assert _publish(spark, config, _segments(spark, 10)).ok

    refused = _publish(spark, config, _segments(spark, 10, model_path=None))

    assert refused.status == "failed"
    assert "model_path would be null in 100% of rows, up from 0%" in refused.error
    assert io.read_table(spark, config, TABLE).filter("model_path IS NULL").count() == 0


def test_changes_within_tolerance_are_published(spark, config):
    assert _publish(spark, config, _segments(spark, 10)).ok
    assert _publish(spark, config, _segments(spark, 6, prefix="renamed")).ok
    assert sorted(r["name"] for r in io.read_table(spark, config, TABLE).collect()) == [f"renamed {i}" for i in
                                                                                         range(6)]


def test_a_model_whose_metric_fell_is_refused_against_the_last_published_run(spark, config):
    assert _publish(spark, config, _segments(spark, 10), silhouette=0.6).ok

    refused = _publish(spark, config, _segments(spark, 10, prefix="worse"), silhouette=0.3)
    assert refused.status == "failed"
    assert "silhouette would fall from 0.6000 to 0.3000" in refused.error
    assert io.read_table(spark, config, TABLE).filter("name LIKE 'worse%'").count() == 0
    # The refused run is recorded but is not the baseline: 0.3 stays refused, 0.5 is within 25% of 0.6.
    assert _publish(spark, config, _segments(spark, 10), silhouette=0.3).status == "failed"
    assert _publish(spark, config, _segments(spark, 10, prefix="fine"), silhouette=0.5).ok


def _rollback(config, *args):
    return CliRunner().invoke(app, ["rollback", *args], env={"DMP_LAKEHOUSE_ROOT": config.lakehouse_root})


def test_rollback_restores_the_publish_before_the_newest(spark, config):
    assert _publish(spark, config, _segments(spark, 10, prefix="good")).ok
    assert _publish(spark, config, _segments(spark, 10, prefix="bad")).ok
    bad_version = io.table_version(spark, config, TABLE)

    result = _rollback(config, TABLE)

    assert result.exit_code == 0, result.output
    assert f"restored the content of version {bad_version - 1} (was version {bad_version})" in result.output
    names = {r["name"] for r in io.read_table(spark, config, TABLE).collect()}
    assert names == {f"good {i}" for i in range(10)}
    assert io.last_commit(spark, config, TABLE).operation == "RESTORE"


def test_rollback_refuses_silver_tables_and_versions_out_of_range(spark, config):
    assert _publish(spark, config, _segments(spark, 10)).ok

    silver = _rollback(config, "silver.orders")
    too_far = _rollback(config, TABLE, "--to-version", "7")

    assert silver.exit_code == 2 and "only gold tables are rolled back" in silver.output
    assert too_far.exit_code == 2 and "--to-version must be between 0 and" in too_far.output
