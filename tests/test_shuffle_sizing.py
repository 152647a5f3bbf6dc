"""A job's shuffles start with partitions in proportion to the Delta tables it reads, never fewer than the floor;
its file scans start with several tasks per core."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from lib import io
from lib.runner import new_run_id, run_job
from tests.conftest import make_config

INITIAL_PARTITIONS = "spark.sql.adaptive.coalescePartitions.initialPartitionNum"
MIN_SCAN_TASKS = "spark.sql.files.minPartitionNum"


def test_a_job_starts_its_shuffles_at_a_partition_per_configured_input_bytes(spark, tmp_path):
    base = make_config(tmp_path)
    io.append(spark.range(20_000).selectExpr("id", "uuid() AS text"), base, "silver.wide")
    on_disk = sum(f.stat().st_size for f in Path(base.table_path("silver.wide")).glob("*.parquet"))
    assert io.tables_bytes(spark, base, ["silver.wide", "silver.absent"]) == on_disk
    per_partition = on_disk * 2 // 11  # the input is 5.5 partitions' worth
    config = dataclasses.replace(base, spark=dataclasses.replace(base.spark,
                                                                 input_bytes_per_shuffle_partition=per_partition))
    seen = {}
    for reads in (("silver.wide",), ()):
        run = run_job("probe", lambda ctx: seen.update({reads: ctx.spark.conf.get(INITIAL_PARTITIONS)}), spark,
                      config, new_run_id(), reads=reads)
        assert run.status == "succeeded", run.error
    # A job reading nothing gets the floor (shuffle_partitions).
    assert seen == {("silver.wide",): "6", (): str(config.spark.shuffle_partitions)}


def test_without_a_configured_floor_a_job_starts_at_twice_the_executor_cores_and_scans_four_tasks_per_core(
        spark, tmp_path):
    base = make_config(tmp_path)
    config = dataclasses.replace(base, spark=dataclasses.replace(base.spark, shuffle_partitions=None))
    seen = []
    run = run_job("probe", lambda ctx: seen.extend(ctx.spark.conf.get(key) for key in (INITIAL_PARTITIONS,
                                                                                       MIN_SCAN_TASKS)),
                  spark, config, new_run_id(), reads=())
    assert run.status == "succeeded", run.error
    cores = spark.sparkContext.defaultParallelism
    assert seen == [str(2 * cores), str(4 * cores)]

