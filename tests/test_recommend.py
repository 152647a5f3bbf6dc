"""Recommendations on generated data: ALS finds the customers' planted category and style tastes far better than
popularity, bought and discontinued products are never recommended, a new product takes the reserved last place,
everyone gets N rows, cold-start people get the fallback, a re-run leaves the tables as they were.

The job's inputs are written straight from the generator's landing files and ground truth (identity links,
archetypes as segments) instead of through the whole pipeline, which other tests cover: it keeps this module
to one cheap job run.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
from pathlib import Path

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lib import io, recommend
from lib.config import ConfigError, RecommendationSettings
from lib.generate import GeneratorSettings, generate
from lib.pipeline import run_pipeline
from tests.conftest import make_config

# Enough people and days for about 140 people to make first purchases in the hold-out week.
DATA = GeneratorSettings(customers=400, days=40, seed=11, products=100)
# Two parameter sets keep the search honest (it must pick the better) and the job cheap; 100 of the about 140
# people with held-out purchases are judged.
JUDGED = 100
SETTINGS = RecommendationSettings(ranks=(10,), reg_params=(0.1,), alphas=(1.0, 10.0), max_judged_people=JUDGED)
# Two people with no history: one in a segment whose members have interactions, one alone in a new segment.
COLD_IN_SEGMENT, COLD_ALONE = "c-cold-in-segment", "c-cold-alone"
LONE_SEGMENT = 99
# A product added to the catalogue that nobody has seen yet: ALS cannot rank it, so it takes the reserved last
# place of the people whose favourite category it belongs to.
NEW_PRODUCT, NEW_PRODUCT_CATEGORY = "p-new", "kitchen"
# Measured on this data set: see docs/ARCHITECTURE.md, "Recommendations".
MIN_NDCG_RATIO = 2.0


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
    products = (spark.read.option("multiLine", True).json(str(landing / "products"))
                .select("product_id", "category", "active").distinct()
                .unionByName(spark.createDataFrame([(NEW_PRODUCT, NEW_PRODUCT_CATEGORY, True)],
                                                   "product_id string, category string, active boolean")))
    truth = landing / "ground_truth"
    archetypes = {row["customer_id"]: row["archetype"] for row in _csv_rows(truth / "archetypes.csv")}
    favourite = {row.pop("customer_id"): max(row, key=lambda category: float(row[category]))
                 for row in _csv_rows(truth / "tastes.csv")}
    segment_of = {name: number + 1 for number, name in enumerate(sorted(set(archetypes.values())))}
    links = [("customer_id", c, c) for c in [*archetypes, COLD_IN_SEGMENT, COLD_ALONE]] + [
        ("anonymous_id", row["anonymous_id"], row["customer_id"]) for row in _csv_rows(truth / "identity.csv")]
    identity_map = spark.createDataFrame(links, "identifier_type string, identifier string, person_id string")
    segments = [(c, segment_of[a], favourite[c]) for c, a in archetypes.items()]
    profile = spark.createDataFrame(segments + [(COLD_IN_SEGMENT, 1, None), (COLD_ALONE, LONE_SEGMENT, None)],
                                    "person_id string, segment_id int, favourite_category string")
    return {"silver.events": events, "silver.order_items": order_items, "silver.identity_map": identity_map,
            "silver.products": products, "gold.customer_profile": profile}


@pytest.fixture(scope="module")
def recommended(spark, tmp_path_factory):
    landing = tmp_path_factory.mktemp("landing")
    generate(landing, DATA)
    config = make_config(tmp_path_factory.mktemp("run"), landing)
    config = dataclasses.replace(config, recommendations=SETTINGS)
    for table, rows in silver_like_inputs(spark, landing, DATA).items():
        io.append(rows, config, table)
    runs = run_pipeline(spark, config, jobs=["gold_recommendations"])
    assert runs[0].status == "succeeded", runs[0].error
    return config, runs[0]


def _table(spark, config, table: str) -> list:
    return sorted(io.read_table(spark, config, table).collect())


@pytest.mark.slow
def test_recommendations_on_generated_tastes(spark, recommended):
    """One job run, every property of its tables: ALS beats popularity on the hold-out, the search keeps its best
    parameters, N rows per person ranked 1..N, nothing bought or discontinued, fallbacks for cold-start people and
    the new product, similar products mostly sharing a planted taste (category or style), and a re-run leaves both
    tables as they were."""
    config, run = recommended
    model_run = io.read_table(spark, config, "ops.model_runs").filter("model = 'recommendations_als'").first()
    metrics, params = model_run["metrics"], model_run["params"]
    assert metrics["als_ndcg_at_k"] >= MIN_NDCG_RATIO * metrics["popularity_ndcg_at_k"], dict(metrics)
    assert metrics["als_precision_at_k"] > metrics["popularity_precision_at_k"], dict(metrics)
    searched = {key: value for key, value in metrics.items() if key.startswith("ndcg_at_k_rank")}
    assert len(searched) == 2 and max(searched.values()) == metrics["als_ndcg_at_k"]
    assert float(params["alpha"]) in SETTINGS.alphas
    # Every metric for the judged people with interactions before the hold-out (warm) and without (cold) too; the
    # two groups are the judged people, and the cold ones' lists are the chosen fallback's.
    for model_name in ("als", "popularity"):
        groups = {group: metrics[f"{model_name}_{group}_people_evaluated"] for group in ("warm", "cold")}
        assert sum(groups.values()) == metrics[f"{model_name}_people_evaluated"] == JUDGED, dict(metrics)
        for group, people in groups.items():
            assert all((f"{model_name}_{group}_{name}" in metrics) == (people > 0)
                       for name in recommend.RANKING_METRICS), dict(metrics)
    fallback = params["cold_start_fallback"]
    assert fallback in recommend.COLD_START_FALLBACKS and params["cold_start_fallback_setting"] == "auto"
    if metrics["als_cold_people_evaluated"]:
        fallback_ndcg = {f: metrics[f"cold_start_{f}_ndcg_at_k"] for f in recommend.COLD_START_FALLBACKS}
        assert fallback == recommend.choose_cold_start_fallback(fallback_ndcg)
        assert metrics["als_cold_ndcg_at_k"] == pytest.approx(fallback_ndcg[fallback])
    accounting = {t.table: t for t in run.tables}
    for table in ("gold.recommendations", "gold.similar_products"):
        assert accounting[table].balanced and accounting[table].quarantined == 0, accounting[table]

    recs = io.read_table(spark, config, "gold.recommendations")
    people = io.read_table(spark, config, "gold.customer_profile")
    per_person = recs.groupBy("person_id").agg(F.count(F.lit(1)).alias("rows"), F.min("rank").alias("first"),
                                               F.max("rank").alias("last"),
                                               F.countDistinct("product_id").alias("products"))
    assert per_person.count() == people.count()
    assert per_person.filter(f"rows != {SETTINGS.top_n} OR first != 1 OR last != {SETTINGS.top_n} "
                             f"OR products != {SETTINGS.top_n}").count() == 0

    read = lambda table: io.read_table(spark, config, table)  # noqa: E731
    bought = recommend.purchased(read("silver.order_items"), read("silver.identity_map"),
                                 DATA.start_date + dt.timedelta(days=DATA.days))
    assert bought.count() > 0
    assert recs.join(bought, ["person_id", "product_id"]).count() == 0

    reasons = {row["person_id"]: row["reasons"] for row in recs.filter(
        F.col("person_id").isin(COLD_IN_SEGMENT, COLD_ALONE)).groupBy("person_id").agg(
        F.collect_set("reason").alias("reasons")).collect()}
    in_segment = recommend.REASON_SEGMENT if fallback == recommend.COLD_START_SEGMENT else recommend.REASON_POPULAR
    assert reasons == {COLD_IN_SEGMENT: [in_segment], COLD_ALONE: [recommend.REASON_POPULAR]}
    assert recs.filter(F.col("reason") == recommend.REASON_ALS).count() > 0.9 * recs.count()

    # Discontinued products were bought and viewed, so ALS scores them, but nobody is offered one.
    discontinued = read("silver.products").filter("NOT active").select("product_id")
    assert discontinued.join(read("silver.order_items"), "product_id", "left_semi").count() > 0
    assert recs.join(discontinued, "product_id").count() == 0
    # The new product sits last for exactly the people whose favourite category it belongs to.
    fans = people.filter(F.col("favourite_category") == NEW_PRODUCT_CATEGORY).select("person_id")
    offered = recs.filter(F.col("product_id") == NEW_PRODUCT)
    assert fans.count() > 0
    assert sorted(offered.select("person_id", "rank", "reason").collect()) == sorted(
        (row["person_id"], SETTINGS.top_n, recommend.REASON_NEW) for row in fans.collect())

    similar = read("gold.similar_products")
    landing = Path(config.landing_root)
    catalogue = spark.read.option("multiLine", True).json(str(landing / "products"))
    styles = spark.read.option("header", True).csv(str(landing / "ground_truth" / "product_styles.csv"))
    tastes = catalogue.join(styles, "product_id").select("product_id", "category", "style")
    neighbour = tastes.select(F.col("product_id").alias("similar_product_id"),
                              F.col("category").alias("similar_category"), F.col("style").alias("similar_style"))
    shared = (similar.join(tastes, "product_id").join(neighbour, "similar_product_id")
              .agg(F.avg(((F.col("category") == F.col("similar_category"))
                          | (F.col("style") == F.col("similar_style"))).cast("double"))).first()[0])
    assert shared > 0.7, shared  # chance: 1 - 9/10 * 4/5 = 0.28
    assert similar.groupBy("product_id").count().agg(F.max("count")).first()[0] == SETTINGS.similar_k

    before = {t: _table(spark, config, t) for t in ("gold.recommendations", "gold.similar_products")}
    rerun = run_pipeline(spark, config, jobs=["gold_recommendations"], force=True)
    assert rerun[0].status == "succeeded", rerun[0].error
    assert {t: _table(spark, config, t) for t in before} == before


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


def test_a_segments_popular_products_come_from_all_its_members_not_only_the_people_recommended_to(spark):
    """The evaluation recommends to the judged people only; their segment's popular products must still be those of
    every member (as in the job's run for everyone), or a cold-start person's segment shrinks to the few judged
    people with history and its "popular" products to one person's. On MovieLens that made ALS's served lists lose
    to popularity 0.041 to 0.310 on NDCG@10 (bench/README.md)."""
    interactions = spark.createDataFrame(
        [("P1", "a", 5.0), ("P2", "a", 5.0), ("P4", "c", 1.0), ("P3", "b", 9.0)],
        "person_id string, product_id string, strength double")
    everyone = spark.createDataFrame(
        [("P0", 1, None), ("P1", 1, None), ("P2", 1, None), ("P4", 1, None), ("P3", 2, None)],
        "person_id string, segment_id int, favourite_category string")
    cold = everyone.filter(F.col("person_id") == "P0")  # no interactions: ALS cannot rank for them
    catalogue = spark.createDataFrame([(p, "x", True) for p in "abc"],
                                      "product_id string, category string, active boolean")
    nothing_bought = spark.createDataFrame([], "person_id string, product_id string")

    def served(**segments) -> list[tuple[str, str]]:
        recommendable = recommend.recommendable_products(catalogue)
        lists = recommend.fallbacks(cold, interactions, nothing_bought, recommendable, 2, **segments)
        rows = recommend.recommend(None, None, cold, lists, nothing_bought, recommendable, 2).collect()
        return [(row["product_id"], row["reason"]) for row in sorted(rows, key=lambda row: row["rank"])]

    # Segment 1 (P1, P2, P4): a 10, c 1; b is segment 2's.
    assert served(segments=everyone) == [("a", recommend.REASON_SEGMENT), ("c", recommend.REASON_SEGMENT)]
    # Without the population, P0's segment has nobody with history: everyone's popular products (a 10, b 9).
    assert served() == [("a", recommend.REASON_POPULAR), ("b", recommend.REASON_POPULAR)]


def test_the_cold_start_fallback_with_the_better_ndcg_is_chosen_segment_on_a_tie_unless_one_is_configured():
    segment, popular = recommend.COLD_START_SEGMENT, recommend.COLD_START_POPULAR
    assert recommend.choose_cold_start_fallback({segment: 0.34, popular: 0.41}) == popular
    assert recommend.choose_cold_start_fallback({segment: 0.41, popular: 0.34}) == segment
    assert recommend.choose_cold_start_fallback({segment: 0.2, popular: 0.2}) == segment
    assert recommend.choose_cold_start_fallback({}) == segment  # no cold-start people judged
    assert recommend.choose_cold_start_fallback({segment: 0.41, popular: 0.34}, popular) == popular
    assert recommend.choose_cold_start_fallback({segment: 0.34, popular: 0.41}, segment) == segment
    with pytest.raises(ValueError, match="none of"):
        recommend.choose_cold_start_fallback({}, "segments")
    with pytest.raises(ValueError, match="cold_start_fallback"):
        RecommendationSettings(cold_start_fallback="segments")


@pytest.mark.parametrize(("held_out_product", "chosen"), [("b", recommend.COLD_START_POPULAR),
                                                          ("a", recommend.COLD_START_SEGMENT)])
def test_the_hold_out_chooses_popular_only_when_the_segment_fallback_does_worse(spark, held_out_product, chosen):
    """P0 has no history; their segment (with P1, P2) likes a, everyone else likes b more. Bought b in the
    hold-out: everyone's popular products find it, the segment's do not; bought a: the other way round."""
    interactions = spark.createDataFrame(
        [("P1", "a", 5.0), ("P2", "a", 5.0), ("P3", "b", 9.0), ("P4", "b", 9.0)],
        "person_id string, product_id string, strength double")
    people = spark.createDataFrame([("P0", 1, None), ("P1", 1, None), ("P2", 1, None), ("P3", 2, None),
                                    ("P4", 2, None)], "person_id string, segment_id int, favourite_category string")
    catalogue = spark.createDataFrame([(p, "x", True) for p in "ab"],
                                      "product_id string, category string, active boolean")
    nothing_bought = spark.createDataFrame([], "person_id string, product_id string")
    held_out = spark.createDataFrame([("P0", held_out_product)], "person_id string, product_id string")
    cold = people.filter(F.col("person_id") == "P0")
    recommendable = recommend.recommendable_products(catalogue)
    lists = recommend.fallbacks(cold, interactions, nothing_bought, recommendable, 1, segments=people)
    ndcg = recommend.cold_start_ndcg(cold, held_out, lists, nothing_bought, recommendable,
                                     recommend.indexes(interactions, catalogue).products, 1)
    assert ndcg == {chosen: 1.0, ({*recommend.COLD_START_FALLBACKS} - {chosen}).pop(): 0.0}
    assert recommend.choose_cold_start_fallback(ndcg) == chosen
    served = recommend.recommend(None, None, cold, lists.with_fallback(chosen), nothing_bought, recommendable,
                                 1).collect()
    assert [(row["product_id"], row["reason"]) for row in served] == [
        (held_out_product, recommend.REASON_SEGMENT if chosen == recommend.COLD_START_SEGMENT
         else recommend.REASON_POPULAR)]


def test_the_hold_out_sample_keeps_every_row_of_at_most_n_people_the_same_ones_in_any_input_order(spark):
    rows = [(f"P{person:02d}", product) for person in range(50) for product in "ab"]
    held_out = spark.createDataFrame(rows, "person_id string, product_id string")
    sample = recommend.held_out_sample(held_out, 10, seed=42).collect()
    people = {row["person_id"] for row in sample}
    assert len(people) == 10 and len(sample) == 20
    reordered = spark.createDataFrame(rows[::-1], "person_id string, product_id string").repartition(3)
    assert {row["person_id"] for row in recommend.held_out_sample(reordered, 10, seed=42).collect()} == people
    assert {row["person_id"] for row in recommend.held_out_sample(held_out, 10, seed=7).collect()} != people
    assert recommend.held_out_sample(held_out, 50, seed=42).count() == 100
    with pytest.raises(ConfigError, match="max_judged_people"):
        RecommendationSettings(max_judged_people=0)


def test_warm_and_cold_people_are_measured_apart_and_add_up_to_the_judged(spark):
    """P1 (history before the hold-out) gets the product they bought next, P0 (none) does not: the warm group
    scores 1, the cold 0, everyone half; a group with nobody in it has only its count."""
    products = spark.createDataFrame([("a", 0), ("b", 1)], "product_id string, item int")
    recommended = spark.createDataFrame([("P1", 1, "b"), ("P0", 1, "a")],
                                        "person_id string, rank int, product_id string")
    held_out = spark.createDataFrame([("P1", "b"), ("P0", "b")], "person_id string, product_id string")
    warm = spark.createDataFrame([("P1",), ("P9",)], "person_id string")
    metrics = recommend.ranking_metrics(recommended, held_out, products, 1, 2, warm)
    assert (metrics["people_evaluated"], metrics["warm_people_evaluated"], metrics["cold_people_evaluated"]) == (
        2.0, 1.0, 1.0)
    assert (metrics["ndcg_at_k"], metrics["warm_ndcg_at_k"], metrics["cold_ndcg_at_k"]) == pytest.approx(
        (0.5, 1.0, 0.0))
    assert (metrics["precision_at_k"], metrics["warm_precision_at_k"], metrics["cold_precision_at_k"]) == \
        pytest.approx((0.5, 1.0, 0.0))
    everyone_warm = recommend.ranking_metrics(recommended, held_out, products, 1, 2,
                                              warm.unionByName(spark.createDataFrame([("P0",)], "person_id string")))
    assert everyone_warm["cold_people_evaluated"] == 0.0 and "cold_ndcg_at_k" not in everyone_warm
    assert everyone_warm["warm_ndcg_at_k"] == pytest.approx(0.5)


def test_als_blocks_follow_the_ratings_so_few_products_with_many_ratings_use_every_core(spark, tmp_path, monkeypatch):
    # 3 products, 180 ratings; the session runs 2 cores.
    ratings = spark.createDataFrame([(user, item, 1.0 + (user + item) % 3) for user in range(60) for item in range(3)],
                                    "user int, item int, strength double")
    grid = [recommend.AlsParams(rank=2, reg_param=0.1, alpha=1.0)]

    def blocks(ratings_per_block: int) -> tuple[int, int]:
        monkeypatch.setattr(recommend, "RATINGS_PER_BLOCK", ratings_per_block)
        [model] = recommend.fit_als(ratings, grid, seed=1, max_iter=2, checkpoint_dir=str(tmp_path))
        return model.userFactors.rdd.getNumPartitions(), model.itemFactors.rdd.getNumPartitions()

    assert blocks(ratings_per_block=50) == (2, 2)
    assert blocks(ratings_per_block=1_000) == (1, 1)
