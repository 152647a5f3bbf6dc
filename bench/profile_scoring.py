"""Scoring a large customer base: RFM, lifetime value and segments for N people, nothing collected to the driver.

    python -m bench.profile_scoring --people 1000000

Synthetic features and purchase summaries are made by Spark itself (``spark.range``), the segmentation model and
the CLV models are fitted on a sample as the job does, then every person is scored and the result written to a
Delta table (a write, so every row is really computed). Prints seconds per step, rows per second and the driver's
peak resident memory; the ratio of peak memory at N to peak memory at N/10 shows whether anything grows with N.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import threading
import time

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from rich.console import Console
from rich.table import Table

from lib import clv, profiles, segments
from lib.config import Config, SegmentSettings, SparkSettings
from lib.schemas import rfm_segment_rules
from lib.spark import spark_session


def synthetic_features(spark: SparkSession, people: int, seed: int = 7) -> DataFrame:
    """Per person the columns the scorers read, drawn by Spark: skewed counts, a share, a price position."""
    rand = lambda salt: F.rand(seed + salt)  # noqa: E731
    buyers = F.floor(-F.log(rand(1)) * 3)  # geometric-ish purchase counts, about a fifth zero
    return spark.range(people).select(
        F.format_string("p-%09d", "id").alias("person_id"),
        buyers.cast("long").alias("orders_lifetime"),
        (buyers * (20 + rand(2) * 80)).alias("revenue_lifetime"),
        F.when(buyers > 0, F.floor(rand(3) * 365)).cast("int").alias("days_since_last_purchase"),
        (buyers / (1 + rand(4) * 50)).alias("orders_per_week"),
        (rand(5) * 6).alias("sessions_per_week"),
        F.when(buyers > 0, rand(6)).alias("price_position"),
        F.when(buyers > 0, rand(7)).otherwise(1.0).alias("purchase_recency_share"),
        (1 + rand(8) * 50).alias("active_weeks"),
    )


def synthetic_summary(features: DataFrame) -> DataFrame:
    """A BG/NBD purchase summary consistent with the features (weeks; repeat purchases = orders - 1)."""
    buyers = features.filter("orders_lifetime > 0")
    age = F.col("active_weeks")
    return buyers.select(
        "person_id",
        (F.col("orders_lifetime") - 1).cast("double").alias("frequency"),
        F.when(F.col("orders_lifetime") > 1, age * (1 - F.col("purchase_recency_share"))).otherwise(0.0)
        .alias("recency"),
        age.alias("T"),
        F.when(F.col("orders_lifetime") > 1, F.col("revenue_lifetime") / F.col("orders_lifetime")).otherwise(0.0)
        .alias("monetary_value"),
    )


def peak_driver_mb(spark: SparkSession, reset: bool = False) -> tuple[float, float]:
    """(peak JVM driver heap, peak Python driver RSS) in MB; the JVM heap peaks are reset when asked, so each
    scale is measured on its own. The heap figure sums each heap pool's own peak; pools peak at different moments,
    so it can overstate (``HeapSampler`` reads the whole heap at one moment)."""
    pools = spark._jvm.java.lang.management.ManagementFactory.getMemoryPoolMXBeans()
    heap = [pool for pool in pools if pool.getType().toString() == "Heap memory"]
    jvm = sum(pool.getPeakUsage().getUsed() for pool in heap) / 2**20
    if reset:
        for pool in heap:
            pool.resetPeakUsage()
    return jvm, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class HeapSampler:
    """The driver JVM's heap in use (all pools read at one moment), sampled every ``interval`` seconds on a daemon
    thread while the pipeline runs; ``take()`` returns the highest sample since the previous ``take()``. In local
    mode the executors' work runs in the same JVM, so this is the whole Spark process's heap."""

    def __init__(self, spark: SparkSession, interval: float = 0.25):
        self._memory = spark._jvm.java.lang.management.ManagementFactory.getMemoryMXBean()
        self._interval, self._peak, self._lock = interval, 0, threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stopped.wait(self._interval):
            used = self._memory.getHeapMemoryUsage().getUsed()
            with self._lock:
                self._peak = max(self._peak, used)

    def take(self) -> float:
        """The highest heap in use (MB) since the last take, including the moment of this call."""
        used = self._memory.getHeapMemoryUsage().getUsed()
        with self._lock:
            peak, self._peak = max(self._peak, used), 0
        return peak / 2**20

    def retained(self) -> float:
        """The heap in use (MB) right after a full collection asked for now (``System.gc()``): what the JVM still
        holds (caches, broadcasts, anything collected to the driver), without the garbage ``take()`` counts."""
        self._memory.gc()
        return self._memory.getHeapMemoryUsage().getUsed() / 2**20

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()


def score(spark: SparkSession, people: int, lake: str) -> list[tuple[str, float, int]]:
    timings = []

    def step(name: str, action, rows: int) -> None:
        started = time.monotonic()
        action()
        timings.append((name, time.monotonic() - started, rows))

    features = synthetic_features(spark, people)
    settings = SegmentSettings(k_min=4, k_max=6, max_training_rows=50_000)
    trained: list = []
    step("segments: train on a 50k sample (k 4..6)", lambda: trained.append(segments.train_segmentation(
        features, settings)), min(people, settings.max_training_rows))
    step("segments: score everyone", lambda: segments.assign_clusters(trained[0].model, features)
         .write.format("delta").mode("overwrite").save(f"{lake}/segments"), people)
    step("RFM: scores and named segments", lambda: profiles.rfm_scores(features, rfm_segment_rules())
         .select("person_id", "rfm_score", "rfm_segment").write.format("delta").mode("overwrite")
         .save(f"{lake}/rfm"), people)
    summary = synthetic_summary(features)
    fits: list = []
    step("CLV: fit BG/NBD + Gamma-Gamma on a 100k sample", lambda: fits.append(clv.fit_clv_models(
        summary, max_rows=100_000)), 100_000)
    step("CLV: score every buyer", lambda: clv.clv_scores(summary, *fits[0]).write.format("delta")
         .mode("overwrite").save(f"{lake}/clv"), summary.count())
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=1_000_000)
    parser.add_argument("--master", default="local[*]")
    args = parser.parse_args()
    spark = spark_session(Config(spark=SparkSettings(master=args.master, driver_memory="4g")))
    console = Console()
    results = {}
    with tempfile.TemporaryDirectory() as lake:
        for people in (args.people // 10, args.people):
            spark.sparkContext._jvm.System.gc()
            peak_driver_mb(spark, reset=True)
            results[people] = (score(spark, people, f"{lake}/{people}"), peak_driver_mb(spark))
    table = Table("people", "step", "seconds", "rows/s", title="profile scoring (nothing collected per person)")
    for people, (timings, _) in results.items():
        for name, seconds, rows in timings:
            table.add_row(f"{people:,}", name, f"{seconds:.1f}", f"{rows / seconds:,.0f}")
    console.print(table)
    (small_jvm, small_py), (large_jvm, large_py) = results[args.people // 10][1], results[args.people][1]
    console.print(f"driver JVM heap peak: {small_jvm:.0f} MB at {args.people // 10:,} people, {large_jvm:.0f} MB at "
                  f"{args.people:,} (ratio {large_jvm / small_jvm:.2f}); Python driver RSS peak {small_py:.0f} -> "
                  f"{large_py:.0f} MB")


if __name__ == "__main__":
    main()
