"""Recommendations on generated data: ALS finds the customers' planted category tastes far better than popularity,
bought products are never recommended, everyone gets N rows, cold-start people get the fallback, a re-run leaves
the tables as they were.

The job's inputs are written straight from the generator's landing files and ground truth (identity links,
archetypes as segments) instead of through the whole pipeline, which other tests cover: it keeps this module
to one cheap job run.
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lib import io, recommend
from lib.generate import GeneratorSettings, generate
from lib.pipeline import run_pipeline
from tests.conftest import make_config

# Enough people and days for the hold-out week to hold a few hundred first purchases.
DATA = GeneratorSettings(customers=400, days=40, seed=11, products=100)
# Two people with no history: one in a segment whose members have interactions, one alone in a new segment.
COLD_IN_SEGMENT, COLD_ALONE = "c-cold-in-segment", "c-cold-alone"
LONE_SEGMENT = 99


def _csv_rows(path: Path) -> list[dict]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def silver_like_inputs(spark: SparkSession, landing: Path, settings: GeneratorSettings) -> dict[str, DataFrame]:
    """The tables gold_recommendations reads, from landing files (clean rows, one per key, none dated after the
    generated period) and ground truth: a person per customer (their cookies included), the archetype as segment,
    plus two people with no history."""
    period_end = F.lit(str(settings.start_date + dt.timedelta(days=settings.days))).cast("timestamp")
    events = (spark.read.json(str(landing / "events"))
              .filter(F.col("event_id").isNotNull() & F.col("event_type").isNotNull())
              .withColumn("event_ts", F.col("event_ts").cast("timestamp")).filter(F.col("event_ts") < period_end)
              .dropDuplicates(["event_id"]))
    orders = (spark.read.json(str(landing / "orders")).filter(F.col("order_id").isNotNull())
              .withColumn("order_ts", F.col("order_ts").cast("timestamp"))
              .filter((F.col("order_ts") < period_end) & F.col("customer_id").isNotNull())
              .dropDuplicates(["order_id"]))
    order_items = orders.select("order_id", "customer_id", "order_ts", F.posexplode("items").alias("line_no", "it")) \
        .select("order_id", "line_no", "customer_id", "order_ts", F.col("it.product_id").alias("product_id")) \
        .filter(F.col("product_id").isNotNull())
    products = spark.read.option("multiLine", True).json(str(landing / "products")).select("product_id").distinct()
    truth = landing / "ground_truth"
    archetypes = {row["customer_id"]: row["archetype"] for row in _csv_rows(truth / "archetypes.csv")}
    segment_of = {name: number + 1 for number, name in enumerate(sorted(set(archetypes.values())))}
    links = [("customer_id", c, c) for c in [*archetypes, COLD_IN_SEGMENT, COLD_ALONE]] + [
        ("anonymous_id", row["anonymous_id"], row["customer_id"]) for row in _csv_rows(truth / "identity.csv")]
    identity_map = spark.createDataFrame(links, "identifier_type string, identifier string, person_id string")
    segments = [(c, segment_of[a]) for c, a in archetypes.items()]
    profile = spark.createDataFrame(segments + [(COLD_IN_SEGMENT, 1), (COLD_ALONE, LONE_SEGMENT)],
                                    "person_id string, segment_id int")
    return {"silver.events": events, "silver.order_items": order_items, "silver.identity_map": identity_map,
            "silver.products": products, "gold.customer_profile": profile}


@pytest.fixture(scope="module")
def recommended(spark, tmp_path_factory):
    landing = tmp_path_factory.mktemp("landing")
    generate(landing, DATA)
    config = make_config(tmp_path_factory.mktemp("run"), landing)
    for table, rows in silver_like_inputs(spark, landing, DATA).items():
        io.append(rows, config, table)
    runs = run_pipeline(spark, config, jobs=["gold_recommendations"])
    assert runs[0].status == "succeeded", runs[0].error
    return config, runs[0]


def _model_run(spark, config):
    return io.read_table(spark, config, "ops.model_runs").filter("model = 'recommendations_als'").first()


def test_interactions_weigh_each_kind_and_halve_every_half_life_ignoring_later_rows(spark):
    as_of = dt.date(2026, 3, 10)
    identity_map = spark.createDataFrame([("customer_id", "c1", "P1"), ("anonymous_id", "a1", "P1")],
                                         "identifier_type string, identifier string, person_id string")
    events = spark.createDataFrame(
        [("a1", None, "product_view", "x", "2026-03-10 12:00:00"),  # age 0.5 days
         ("a1", None, "add_to_cart", "x", "2026-03-10 12:00:00"),
         ("a1", None, "page_view", None, "2026-03-10 12:00:00"),  # no product: no feedback
         ("a1", None, "product_view", "y", "2026-03-11 01:00:00")],  # after the as-of day: ignored
        "anonymous_id string, customer_id string, event_type string, product_id string, event_ts string",
    ).withColumn("event_ts", F.col("event_ts").cast("timestamp"))
    order_items = spark.createDataFrame([("c1", "y", "2026-03-01 00:00:00")],  # age 10 days = one half-life
                                        "customer_id string, product_id string, order_ts string").withColumn(
        "order_ts", F.col("order_ts").cast("timestamp"))
    weights = {"product_view": 1.0, "add_to_cart": 3.0, "purchase": 8.0}
    rows = {(r["person_id"], r["product_id"]): r["strength"] for r in
            recommend.interactions(events, order_items, identity_map, weights, 10.0, as_of).collect()}
    assert rows.keys() == {("P1", "x"), ("P1", "y")}
    assert rows[("P1", "x")] == pytest.approx(4.0 * 0.5 ** (0.5 / 10))
    assert rows[("P1", "y")] == pytest.approx(4.0)
