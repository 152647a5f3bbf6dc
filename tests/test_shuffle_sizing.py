"""A job's shuffles start with partitions in proportion to the Delta tables it reads, never fewer than the floor;
large file scans are cut into several tasks per core."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from lib import io
from lib.runner import new_run_id, run_job
from lib.spark import size_tasks_to_input
from tests.conftest import make_config

INITIAL_PARTITIONS = "spark.sql.adaptive.coalescePartitions.initialPartitionNum"
SCAN_TASK_BYTES = "spark.sql.files.maxPartitionBytes"


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


def test_without_a_configured_floor_a_job_starts_at_twice_the_executor_cores(spark, tmp_path):
    base = make_config(tmp_path)
    config = dataclasses.replace(base, spark=dataclasses.replace(base.spark, shuffle_partitions=None))
    seen = []
    run = run_job("probe", lambda ctx: seen.append(ctx.spark.conf.get(INITIAL_PARTITIONS)), spark, config,
                  new_run_id(), reads=())
    assert run.status == "succeeded", run.error
    assert seen == [str(2 * spark.sparkContext.defaultParallelism)]


def test_a_large_input_is_scanned_in_four_tasks_per_core_and_small_or_huge_ones_as_spark_packs_them(spark, tmp_path):
    config = make_config(tmp_path)
    cores, mb = spark.sparkContext.defaultParallelism, 2**20
    scan_task_bytes = {}
    for input_bytes in (mb, 300 * cores * mb, 10_000 * cores * mb):
        size_tasks_to_input(spark, config, input_bytes)
        scan_task_bytes[input_bytes] = int(spark.conf.get(SCAN_TASK_BYTES))
    assert scan_task_bytes == {mb: 32 * mb, 300 * cores * mb: 75 * mb, 10_000 * cores * mb: 128 * mb}
