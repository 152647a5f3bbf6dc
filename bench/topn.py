"""Top-N for every person at scale: the job's blocked ALS scorer against a naive cross-join scorer, in one run.

    python -m bench.topn --people 200000 --products 20000

Spark draws implicit feedback for N people and M products (``spark.range``: each person interacts with a few
products of a handful of taste groups plus popular ones), fits ALS as the job does (``recommend.fit_als``), then
produces each person's top 10 two ways and writes both to Delta (a write, so every row is really computed):

- **blocked**: ``recommend.als_candidates``, the job's own path (MLlib ``recommendForUserSubset``: factor blocks
  multiplied on the executors with a bounded queue per person; nothing collected to the driver);
- **cross join**: every (person, product) pair scored by a dot product of the factor arrays in Spark SQL, then a
  window keeps the 10 best. It is timed on ``--cross-join-people`` people (the whole N would take hours) and the
  blocked path is timed on the same people, so the ratio is like for like; its full-N time is extrapolated
  linearly (it is linear in people).

Both top-10 lists are compared on the sampled people (same products, in the same order, except ties). The driver's
peak JVM heap and Python RSS are printed for the whole run.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from rich.console import Console
from rich.table import Table

from bench.profile_scoring import peak_driver_mb
from lib import recommend
from lib.config import Config, SparkSettings
from lib.spark import spark_session

TOP = 10


def synthetic_interactions(spark: SparkSession, people: int, products: int, per_person: int, groups: int,
                           seed: int = 3) -> DataFrame:
    """person_id, product_id, strength: ``per_person`` interactions each, 80% inside the person's taste group (a
    contiguous block of products), 20% skewed towards low product numbers (the popular head)."""
    group_size = products // groups
    pick = F.rand(seed)
    in_group = (F.col("person") % groups) * group_size + F.floor(F.rand(seed + 1) * group_size)
    popular = F.floor(F.pow(F.rand(seed + 2), 3) * products)
    return (spark.range(people * per_person).select((F.col("id") / per_person).cast("long").alias("person"))
            .select(F.format_string("u-%07d", "person").alias("person_id"),
                    F.format_string("p-%06d", F.when(pick < 0.8, in_group).otherwise(popular).cast("long"))
                    .alias("product_id"),
                    (1 + F.floor(F.rand(seed + 3) * 3)).alias(recommend.STRENGTH))
            .groupBy("person_id", "product_id").agg(F.sum(recommend.STRENGTH).alias(recommend.STRENGTH)))


def cross_join_top_n(model, idx: recommend.Indexes, people: DataFrame, n: int) -> DataFrame:
    """person_id, product_id, score: the naive scorer, every pair's dot product and a window per person."""
    users = (model.userFactors.withColumnRenamed("id", recommend.USER).join(idx.people, recommend.USER)
             .join(people, "person_id").select("person_id", F.col("features").alias("user_features")))
    items = (model.itemFactors.withColumnRenamed("id", recommend.ITEM).join(idx.products, recommend.ITEM)
             .select("product_id", F.col("features").alias("item_features")))
    dot = F.aggregate(F.zip_with("user_features", "item_features", lambda a, b: a * b), F.lit(0.0),
                      lambda acc, x: acc + x)
    best = Window.partitionBy("person_id").orderBy(F.col("score").desc(), "product_id")
    return (users.crossJoin(items).select("person_id", "product_id", dot.cast("double").alias("score"))
            .withColumn("rank", F.row_number().over(best)).filter(F.col("rank") <= n).drop("rank"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=200_000)
    parser.add_argument("--products", type=int, default=20_000)
    parser.add_argument("--per-person", type=int, default=15, help="interactions drawn per person")
    parser.add_argument("--groups", type=int, default=50, help="taste groups (blocks of products)")
    parser.add_argument("--rank", type=int, default=10)
    parser.add_argument("--cross-join-people", type=int, default=2_000)
    parser.add_argument("--master", default="local[*]")
    parser.add_argument("--driver-memory", default="4g")
    args = parser.parse_args()
    spark = spark_session(Config(spark=SparkSettings(master=args.master, driver_memory=args.driver_memory)))
    console, timings = Console(), []

    def timed(name: str, rows: int, action):
        started = time.monotonic()
        result = action()
        timings.append((name, time.monotonic() - started, rows))
        console.print(f"{name}: {timings[-1][1]:.1f} s")
        return result

    with tempfile.TemporaryDirectory() as lake:
        spark.sparkContext._jvm.System.gc()
        peak_driver_mb(spark, reset=True)
        feedback = timed("draw and save interactions", args.people * args.per_person, lambda: (
            synthetic_interactions(spark, args.people, args.products, args.per_person, args.groups)
            .write.format("delta").save(f"{lake}/interactions")))
        feedback = spark.read.format("delta").load(f"{lake}/interactions")
        catalogue = spark.range(args.products).select(F.format_string("p-%06d", "id").alias("product_id"))
        idx = recommend.indexes(feedback, catalogue)
        ratings = idx.ratings(feedback).cache()
        interactions = ratings.count()
        params = recommend.AlsParams(rank=args.rank, reg_param=0.1, alpha=10.0)
        model = timed(f"fit ALS (rank {args.rank}, 10 iterations)", interactions, lambda: recommend.fit_als(
            ratings, [params], seed=7, max_iter=10, checkpoint_dir=f"{lake}/checkpoints")[0])
        everyone = idx.people.select("person_id")
        timed(f"blocked top {TOP}: all {args.people:,} people", args.people, lambda: (
            recommend.als_candidates(model, idx, everyone, TOP).write.format("delta").save(f"{lake}/blocked")))
        sample = everyone.orderBy(F.hash("person_id")).limit(args.cross_join_people).cache()
        sample.count()
        timed(f"blocked top {TOP}: {args.cross_join_people:,} people", args.cross_join_people, lambda: (
            recommend.als_candidates(model, idx, sample, TOP).write.format("delta").save(f"{lake}/blocked_sample")))
        timed(f"cross join top {TOP}: {args.cross_join_people:,} people", args.cross_join_people, lambda: (
            cross_join_top_n(model, idx, sample, TOP).write.format("delta").save(f"{lake}/cross_sample")))
        blocked = spark.read.format("delta").load(f"{lake}/blocked_sample")
        naive = spark.read.format("delta").load(f"{lake}/cross_sample")
        same = blocked.join(naive, ["person_id", "product_id"]).count()
        peak_jvm, peak_python = peak_driver_mb(spark)

    table = Table("step", "seconds", "rows/s", title=f"top {TOP}: {args.people:,} people x {args.products:,} products "
                  f"({interactions:,} interactions)")
    for name, seconds, rows in timings:
        table.add_row(name, f"{seconds:.1f}", f"{rows / seconds:,.0f}")
    console.print(table)
    seconds = {name: s for name, s, _ in timings}
    blocked_sample = seconds[f"blocked top {TOP}: {args.cross_join_people:,} people"]
    cross_sample = seconds[f"cross join top {TOP}: {args.cross_join_people:,} people"]
    blocked_all = seconds[f"blocked top {TOP}: all {args.people:,} people"]
    scale = args.people / args.cross_join_people
    console.print(
        f"on {args.cross_join_people:,} people: cross join / blocked = {cross_sample / blocked_sample:.1f}x; "
        f"cross join for all {args.people:,} people extrapolated {cross_sample * scale:,.0f} s against "
        f"{blocked_all:,.0f} s measured blocked ({cross_sample * scale / blocked_all:.0f}x)")
    console.print(f"top-{TOP} agreement on the sample: {same:,} of {args.cross_join_people * TOP:,} "
                  f"(person, product) pairs in both lists")
    console.print(f"driver peak: JVM heap {peak_jvm:,.0f} MB, Python RSS {peak_python:,.0f} MB")


if __name__ == "__main__":
    main()
