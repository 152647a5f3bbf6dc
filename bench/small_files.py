"""Small files from daily writes, with Delta's auto compaction off and on, in one run.

    python -m bench.small_files --days 90

Each of ``--days`` days MERGEs a day of events into an events table (``lib.io.merge_upsert``, as the silver jobs
publish) and appends one record to a run log (``lib.io.append``, as every job records itself in the ops tables), into
two lakehouses: one written with auto compaction off, one with it on (``[spark] auto_compact``), taking turns day by
day so both see the same JVM. Then prints, per lakehouse, the seconds spent writing, each table's data files and
Delta commits by operation, and the seconds of ``--reads`` rounds of reading both tables (a daily aggregate of the
events, a count of the log), read in turns as well; a copy of the lakehouse written without auto compaction is
compacted by ``lib.io.optimize`` (what ``dmp optimize`` runs) and read in the same turns.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from delta import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from rich.console import Console
from rich.table import Table

from lib import io
from lib.config import Config, load_config
from lib.spark import AUTO_COMPACT, spark_session

EVENTS, RUN_LOG = "silver.events", "ops.job_runs"


def day_of_events(spark: SparkSession, day: int, rows: int) -> DataFrame:
    return spark.range(day * rows, (day + 1) * rows).select(
        F.format_string("e-%010d", "id").alias("event_id"),
        F.format_string("v-%06d", F.col("id") % 50_000).alias("anonymous_id"),
        F.element_at(F.array(*map(F.lit, ("view", "cart", "purchase"))), (F.col("id") % 3 + 1).cast("int"))
        .alias("event_type"),
        F.lit(day).alias("day"), F.rand(day).alias("value"))


def write_day(spark: SparkSession, config: Config, day: int, rows: int) -> None:
    io.merge_upsert(spark, day_of_events(spark, day, rows), config, EVENTS, ["event_id"])
    io.append(spark.createDataFrame([(f"run-{day}", day, "succeeded")], "run_id string, day int, status string"),
              config, RUN_LOG)


def read_both(spark: SparkSession, config: Config) -> None:
    io.read_table(spark, config, EVENTS).groupBy("day").agg(F.sum("value")).collect()
    io.read_table(spark, config, RUN_LOG).count()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.small_files", description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--rows-per-day", type=int, default=20_000)
    parser.add_argument("--reads", type=int, default=5)
    parser.add_argument("--workdir", type=Path, help="where the two lakehouses go (default: a temp dir)")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="dmp-small-files-"))
    base = load_config()
    spark = spark_session(base)
    variants = {auto: dataclasses.replace(base, lakehouse_root=str(workdir / f"auto_compact_{auto}".lower()))
                for auto in (False, True)}
    writing, reading = Counter(), Counter()
    for day in range(args.days):
        for auto, config in variants.items():
            spark.conf.set(AUTO_COMPACT, str(auto).lower())
            clock = time.monotonic()
            write_day(spark, config, day, args.rows_per_day)
            writing[auto] += time.monotonic() - clock
        if (day + 1) % 10 == 0:
            print(f"day {day + 1} of {args.days} written")
    spark.conf.set(AUTO_COMPACT, str(base.spark.auto_compact).lower())
    # The lakehouse written without auto compaction is read again once `dmp optimize` has compacted a copy of it.
    optimized = dataclasses.replace(base, lakehouse_root=str(workdir / "optimized"))
    shutil.copytree(variants[False].lakehouse_root, optimized.lakehouse_root, dirs_exist_ok=True)
    clock = time.monotonic()
    for table in (EVENTS, RUN_LOG):
        io.optimize(spark, optimized, table)
    optimizing = time.monotonic() - clock
    variants["optimized"] = optimized
    for _ in range(args.reads):
        for variant, config in variants.items():
            clock = time.monotonic()
            read_both(spark, config)
            reading[variant] += time.monotonic() - clock

    writing["optimized"] = writing[False] + optimizing
    names = {False: "auto compaction off", True: "auto compaction on", "optimized": "off, then dmp optimize"}
    summary = Table("lakehouse", "write s", f"{args.reads} reads s", "table", "data files", "MB", "commits")
    for auto, config in variants.items():
        for table in (EVENTS, RUN_LOG):
            detail = spark.sql(f"DESCRIBE DETAIL delta.`{config.table_path(table)}`").first()
            commits = Counter(entry["operation"] for entry in
                              DeltaTable.forPath(spark, config.table_path(table)).history().collect())
            first = table == EVENTS
            summary.add_row(names[auto] if first else "", f"{writing[auto]:.1f}" if first else "",
                            f"{reading[auto]:.1f}" if first else "", table, f"{detail['numFiles']:,}",
                            f"{detail['sizeInBytes'] / 2**20:,.1f}",
                            ", ".join(f"{operation} {n}" for operation, n in commits.items()))
    console = Console(width=None if sys.stdout.isatty() else 150)
    console.print(summary)
    console.print(f"{args.days} days of {args.rows_per_day:,} events; with auto compaction: writing "
                  f"{writing[True] / writing[False]:.2f}x, reading {reading[True] / reading[False]:.2f}x the time "
                  f"without; dmp optimize afterwards took {optimizing:.1f} s, reading then "
                  f"{reading['optimized'] / reading[False]:.2f}x. Lakehouses in {workdir}")


if __name__ == "__main__":
    main()
