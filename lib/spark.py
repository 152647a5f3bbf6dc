"""Builds the one SparkSession every job uses: Delta enabled, UTC, shuffles sized to the machine, quiet logs."""

from __future__ import annotations

import math
import os
import sys

from delta import configure_spark_with_delta_pip
from pyspark.sql import SparkSession

from lib.config import Config

# JDK 17's G1 throws "Java heap space" when a thread's allocation has waited twice for threads in JNI critical
# sections (snappy, zstd) while most of the heap is reclaimable (JDK-8192647, fixed in JDK 24): silver_events at M
# died of it on a 6 GB driver. More retries is the known mitigation; JDKs without the flag ignore it.
JVM_OPTIONS = "-XX:+IgnoreUnrecognizedVMOptions -XX:+UnlockDiagnosticVMOptions -XX:GCLockerRetryAllocationCount=100"
SCAN_TASKS_PER_CORE = 4
# Delta's auto compaction (config.spark.auto_compact) and its minimum number of small files.
AUTO_COMPACT, AUTO_COMPACT_MIN_FILES = ("spark.databricks.delta.autoCompact.enabled",
                                        "spark.databricks.delta.autoCompact.minNumFiles")
MIN_SCAN_TASK_BYTES, MAX_SCAN_TASK_BYTES = 32 * 2**20, 128 * 2**20


def shuffle_partitions(config: Config, cores: int | None = None) -> int:
    """The configured shuffle partitions, else twice ``cores`` (default: this machine's)."""
    return config.spark.shuffle_partitions or 2 * (cores or os.cpu_count() or 2)


def size_tasks_to_input(spark: SparkSession, config: Config, input_bytes: int) -> None:
    """Start the coming job's shuffles with one partition per ``input_bytes_per_shuffle_partition`` of its input,
    never fewer than ``shuffle_partitions`` or, unset, twice the cores the executors have now (on a cluster, more
    than the driver's own); and cut its file scans into tasks of its input / (``SCAN_TASKS_PER_CORE`` x cores)
    bytes, within ``MIN_SCAN_TASK_BYTES`` and Spark's default 128 MB.

    Adaptive execution merges partitions but cannot split them: four partitions spilled 5 GB of a 6 GB shuffle at
    M, while starting tiny jobs at Spark's 200 made the test pipeline 1.6x slower. Spark packs files into scan tasks
    of up to 128 MB: bronze.events at M (about 300 MB) was read in three tasks on two cores, one core idle for the
    last third of the job's longest stage. Small scans keep Spark's packing (about one task per core)."""
    cores = spark.sparkContext.defaultParallelism
    floor = shuffle_partitions(config, cores=cores)
    partitions = max(floor, math.ceil(input_bytes / config.spark.input_bytes_per_shuffle_partition))
    spark.conf.set("spark.sql.adaptive.coalescePartitions.initialPartitionNum", str(partitions))
    scan_task_bytes = min(MAX_SCAN_TASK_BYTES, max(MIN_SCAN_TASK_BYTES, input_bytes // (SCAN_TASKS_PER_CORE * cores)))
    spark.conf.set("spark.sql.files.maxPartitionBytes", str(scan_task_bytes))


def spark_session(config: Config) -> SparkSession:
    """Return the active session if one exists (spark-submit, Databricks, tests), else start one from config."""
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    builder = (
        SparkSession.builder.appName(config.spark.app_name)
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions(config)))
        .config("spark.ui.enabled", str(config.spark.ui_enabled).lower())
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", config.spark.driver_memory)
        .config("spark.driver.extraJavaOptions", JVM_OPTIONS)
        .config("spark.executor.extraJavaOptions", JVM_OPTIONS)
        .config("spark.sql.codegen.cache.maxEntries", str(config.spark.codegen_cache_entries))
        .config(AUTO_COMPACT, str(config.spark.auto_compact).lower())
        # Small local tables: many tiny files cost more than they parallelise.
        .config("spark.databricks.delta.snapshotPartitions", "2")
        .config("spark.sql.sources.parallelPartitionDiscovery.parallelism", "2")
    )
    if config.spark.master.startswith("local"):
        # A local session needs no network interface; binding to loopback also silences Spark's hostname warning.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        # Python UDF workers (lib.clv) run in the driver's interpreter, so they see the packages installed with it.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if "PYSPARK_GATEWAY_PORT" not in os.environ:
        # Not launched by spark-submit: the master comes from config and the Delta jars are fetched through
        # spark.jars.packages (Maven Central) by delta-spark's helper. Under spark-submit.sh both are given there.
        builder = configure_spark_with_delta_pip(builder.master(config.spark.master))
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(config.spark.log_level)
    return spark


def persisted_rdd_ids(spark: SparkSession) -> set[int]:
    return set(spark.sparkContext._jsc.getPersistentRDDs().keySet())


def cache_is_empty(spark: SparkSession) -> bool:
    """Whether Spark's cache manager holds no cached plan (a DataFrame's ``cache()``, materialised or not)."""
    return spark._jsparkSession.sharedState().cacheManager().isEmpty()


def unpersist_rdds(spark: SparkSession, keep: set[int] = frozenset()) -> None:
    """Unpersist every persisted RDD (cached DataFrames' blocks included) except the ids in ``keep``."""
    persisted = spark.sparkContext._jsc.getPersistentRDDs()
    for rdd_id in set(persisted.keySet()) - set(keep):
        persisted.get(rdd_id).unpersist(False)
