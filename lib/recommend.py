"""Recommendations: implicit feedback -> Spark MLlib ALS -> top-N per person, with fallbacks, similar products and
an evaluation on a time-based hold-out against a popularity baseline.

Feedback is implicit: product views, add-to-carts (silver.events) and purchases (silver.order_items), each weighted
by config and decayed exponentially with age, up to the end of an as-of day (nothing later is read). ALS works on
integer ids, so people and products are numbered (alphabetically, so a re-run numbers them the same). A person ALS
knows nothing about (no interactions) or cannot fill N rows for gets the cold-start fallback: the most popular
products of their KMeans segment (gold.customer_profile), then of everyone, or everyone's only, whichever does
better for the cold-start people of the hold-out (or as configured); ``reason`` on each row says which.
Already-purchased products and products the catalogue marks inactive are never recommended. Products nobody has
interacted with yet (cold items, unknown to ALS and to popularity) get a reserved slot at the end of the list of
people whose favourite category they belong to.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from pyspark.ml.evaluation import RankingEvaluator
from pyspark.ml.recommendation import ALS, ALSModel
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

# Named in lib.config, which validates the setting without Spark; re-exported for callers of this module.
from lib.config import (  # noqa: F401
    COLD_START_AUTO,
    COLD_START_FALLBACK_SETTINGS,
    COLD_START_FALLBACKS,
    COLD_START_POPULAR,
    COLD_START_SEGMENT,
)
from lib.profiles import day_end, person_events, person_of

PURCHASE = "purchase"
REASON_ALS = "als"
REASON_SEGMENT = "segment_popular"
REASON_POPULAR = "popular"
REASON_NEW = "new_in_favourite_category"
# Lower is preferred when a product reaches a person by several routes.
_PRIORITY = {REASON_ALS: 0, REASON_SEGMENT: 1, REASON_POPULAR: 2}
USER, ITEM, STRENGTH = "user", "item", "strength"
RECOMMENDATION_COLUMNS = ["person_id", "rank", "product_id", "score", "reason"]
# ALS solves each block of people (or of products) in one task, and its work is a rank x rank update per rating:
# blocks follow the ratings, not the ids. Sized by ids, the 200 products at M were one block of 3.2M ratings, solved
# on one core while the other waited (a rank-20 fit 20.5-27.7 s, 15.7-18.3 s in two blocks). Small data stays in
# one block: more would shuffle factors between blocks for nothing.
RATINGS_PER_BLOCK = 100_000


def _decay(ts: Column, as_of: dt.date, half_life_days: float) -> Column:
    """0.5 ** (age in days / half life), age measured from the end of ``as_of``."""
    age_days = (F.unix_timestamp(day_end(as_of)) - F.unix_timestamp(ts)) / 86400.0
    return F.pow(F.lit(0.5), age_days / F.lit(float(half_life_days)))


def person_purchases(order_items: DataFrame, identity_map: DataFrame, as_of: dt.date) -> DataFrame:
    """person_id, product_id, order_ts of every order line up to the end of ``as_of``."""
    buyers = person_of(identity_map, "customer_id").withColumnRenamed("identifier", "customer_id")
    return (order_items.filter(F.col("order_ts") < day_end(as_of)).join(buyers, "customer_id")
            .select("person_id", "product_id", "order_ts"))


def purchased(order_items: DataFrame, identity_map: DataFrame, as_of: dt.date) -> DataFrame:
    """person_id, product_id: each product a person bought up to ``as_of`` (never to be recommended again)."""
    return person_purchases(order_items, identity_map, as_of).select("person_id", "product_id").distinct()


def interactions(events: DataFrame, order_items: DataFrame, identity_map: DataFrame, weights: Mapping[str, float],
                 half_life_days: float, as_of: dt.date) -> DataFrame:
    """person_id, product_id, strength: the sum of the weights of a person's views, add-to-carts (event types) and
    purchases (``weights["purchase"]`` per order line) of a product, each halved every ``half_life_days``."""
    event_weights = {kind: weight for kind, weight in weights.items() if kind != PURCHASE}
    weight_of = F.create_map(*itertools.chain.from_iterable((F.lit(k), F.lit(float(v)))
                                                            for k, v in event_weights.items()))
    product_events = events.filter(F.col("product_id").isNotNull() & F.col("event_type").isin(list(event_weights)))
    viewed = person_events(product_events, identity_map, as_of).select(
        "person_id", "product_id", (weight_of[F.col("event_type")] * _decay(F.col("event_ts"), as_of,
                                                                            half_life_days)).alias(STRENGTH))
    bought = person_purchases(order_items, identity_map, as_of).select(
        "person_id", "product_id",
        (F.lit(float(weights.get(PURCHASE, 0.0))) * _decay(F.col("order_ts"), as_of, half_life_days)).alias(STRENGTH))
    return (viewed.unionByName(bought).groupBy("person_id", "product_id").agg(F.sum(STRENGTH).alias(STRENGTH))
            .filter(F.col(STRENGTH) > 0))


@dataclass(frozen=True)
class TimeSplit:
    """Train on everything up to ``train_as_of``; ``held_out`` are the products people first bought after it, up to
    the as-of day (what a recommendation made on ``train_as_of`` should have found)."""

    train_as_of: dt.date
    held_out: DataFrame  # person_id, product_id


def time_split(order_items: DataFrame, identity_map: DataFrame, as_of: dt.date, holdout_days: int) -> TimeSplit:
    train_as_of = as_of - dt.timedelta(days=holdout_days)
    later = person_purchases(order_items, identity_map, as_of).filter(F.col("order_ts") >= day_end(train_as_of))
    held_out = (later.select("person_id", "product_id").distinct()
                .join(purchased(order_items, identity_map, train_as_of), ["person_id", "product_id"], "left_anti"))
    return TimeSplit(train_as_of, held_out)


def held_out_sample(held_out: DataFrame, max_people: int, seed: int) -> DataFrame:
    """The rows of ``held_out`` (person_id, ...) of at most ``max_people`` people: those first in the order of a
    seeded hash of their id, so every run with the same seed judges the same people."""
    people = held_out.select("person_id").distinct()
    chosen = people.orderBy(F.xxhash64("person_id", F.lit(seed)), "person_id").limit(max_people)
    return held_out.join(chosen, "person_id", "left_semi")


def id_index(values: DataFrame, column: str, index_column: str) -> DataFrame:
    """``column`` -> dense int ``index_column`` in alphabetical order, so a re-run numbers ids the same."""
    # One partition for the numbering: ids are people or products (millions at most), not interactions.
    return values.select(column).distinct().withColumn(
        index_column, (F.row_number().over(Window.orderBy(column)) - 1).cast("int"))


@dataclass(frozen=True)
class AlsParams:
    rank: int
    reg_param: float
    alpha: float

    def as_dict(self) -> dict[str, float]:
        return {"rank": self.rank, "reg_param": self.reg_param, "alpha": self.alpha}


def param_grid(ranks: Sequence[int], reg_params: Sequence[float], alphas: Sequence[float]) -> list[AlsParams]:
    return [AlsParams(r, g, a) for r, g, a in itertools.product(ranks, reg_params, alphas)]


def _blocks(ids: int, ratings: int, parallelism: int) -> int:
    return max(1, min(parallelism, ids, math.ceil(ratings / RATINGS_PER_BLOCK)))


def fit_als(ratings: DataFrame, grid: Sequence[AlsParams], seed: int, max_iter: int, checkpoint_dir: str,
            checkpoint_interval: int = 5) -> list[ALSModel]:
    """ALS on implicit feedback (``user``, ``item`` ints, ``strength``): one model per point of ``grid``, in its
    order, by MLlib's fit over a list of parameter maps; the ratings are counted once to size the blocks to the data
    and the machine (``_blocks``), not once per model. The checkpoint directory makes ALS honour
    ``checkpoint_interval`` (without one it silently skips checkpoints and long lineages overflow the stack)."""
    spark = ratings.sparkSession
    spark.sparkContext.setCheckpointDir(checkpoint_dir)
    counts = ratings.agg(F.countDistinct(USER).alias("users"), F.countDistinct(ITEM).alias("items"),
                         F.count(F.lit(1)).alias("ratings")).first()
    parallelism = spark.sparkContext.defaultParallelism
    als = ALS(userCol=USER, itemCol=ITEM, ratingCol=STRENGTH, implicitPrefs=True, maxIter=max_iter, seed=seed,
              coldStartStrategy="drop", checkpointInterval=checkpoint_interval,
              numUserBlocks=_blocks(counts["users"], counts["ratings"], parallelism),
              numItemBlocks=_blocks(counts["items"], counts["ratings"], parallelism))
    return als.fit(ratings, [{als.rank: p.rank, als.regParam: p.reg_param, als.alpha: p.alpha} for p in grid])


@dataclass(frozen=True)
class Indexes:
    people: DataFrame  # person_id, user
    products: DataFrame  # product_id, item

    def ratings(self, interactions_df: DataFrame) -> DataFrame:
        return (interactions_df.join(self.people, "person_id").join(self.products, "product_id")
                .select(USER, ITEM, STRENGTH))

    def unpersist(self) -> None:
        self.people.unpersist()
        self.products.unpersist()


def indexes(interactions_df: DataFrame, catalogue: DataFrame) -> Indexes:
    """Numbering of the people with interactions and of every product (catalogue and interactions), cached
    (``Indexes.unpersist``): every model's lists and their judging join them several times, and each time anew
    took a pass over the interactions and a sort in one partition."""
    products = catalogue.select("product_id").unionByName(interactions_df.select("product_id"))
    return Indexes(id_index(interactions_df, "person_id", USER).cache(),
                   id_index(products, "product_id", ITEM).cache())


def als_candidates(model: ALSModel, idx: Indexes, people: DataFrame, depth: int) -> DataFrame:
    """person_id, product_id, score, reason: ALS's ``depth`` best products for each of ``people`` it knows, from
    ``recommendForUserSubset`` (blocked on the executors; no cross join, nothing collected)."""
    users = people.select("person_id").join(idx.people, "person_id").select(USER)
    scored = model.recommendForUserSubset(users, depth).select(USER, F.explode("recommendations").alias("r"))
    return (scored.select(USER, F.col(f"r.{ITEM}").alias(ITEM), F.col("r.rating").cast("double").alias("score"))
            .join(idx.people, USER).join(idx.products, ITEM)
            .select("person_id", "product_id", "score", F.lit(REASON_ALS).alias("reason")))


def recommendable_products(catalogue: DataFrame) -> DataFrame:
    """product_id, category of the products that may be recommended: active ones (a catalogue without the flag,
    null, counts as active)."""
    active = F.coalesce(F.col("active"), F.lit(True)) if "active" in catalogue.columns else F.lit(True)
    return catalogue.filter(active).select("product_id", "category")


def only_recommendable(rows: DataFrame, recommendable: DataFrame) -> DataFrame:
    return rows.join(recommendable.select("product_id"), "product_id", "left_semi")


def popular_products(interactions_df: DataFrame, depth: int, segments: DataFrame | None = None) -> DataFrame:
    """product_id, score (summed strength), [segment_id]: the ``depth`` most popular products overall, or per
    segment of ``segments`` (person_id, segment_id)."""
    group = ["product_id"]
    rows = interactions_df
    if segments is not None:
        rows, group = rows.join(segments.select("person_id", "segment_id"), "person_id"), ["segment_id", "product_id"]
    totals = rows.groupBy(*group).agg(F.sum(STRENGTH).alias("score"))
    order = Window.partitionBy(*group[:-1]).orderBy(F.col("score").desc(), F.col("product_id"))
    return totals.withColumn("_rank", F.row_number().over(order)).filter(F.col("_rank") <= depth).drop("_rank")


def fallback_candidates(people: DataFrame, segment_popular: DataFrame | None, popular: DataFrame) -> DataFrame:
    """person_id, product_id, score, reason for ``people`` (person_id, segment_id): their segment's popular
    products (none when ``segment_popular`` is None), then everyone's."""
    overall = people.select("person_id").crossJoin(F.broadcast(popular.select("product_id", "score"))).withColumn(
        "reason", F.lit(REASON_POPULAR))
    if segment_popular is None:
        return overall
    by_segment = people.join(segment_popular, "segment_id").select(
        "person_id", "product_id", "score", F.lit(REASON_SEGMENT).alias("reason"))
    return by_segment.unionByName(overall)


def top_n(candidates: DataFrame, bought: DataFrame, n: int) -> DataFrame:
    """person_id, rank, product_id, score, reason: each person's ``n`` best candidates not yet bought, ALS first,
    then segment-popular, then popular; within a route by score, ties by product id (a re-run ranks the same)."""
    priority = F.create_map(*itertools.chain.from_iterable((F.lit(k), F.lit(v)) for k, v in _PRIORITY.items()))
    unbought = candidates.join(bought, ["person_id", "product_id"], "left_anti").withColumn(
        "_priority", priority[F.col("reason")])
    best_route = Window.partitionBy("person_id", "product_id").orderBy("_priority", F.col("score").desc())
    order = Window.partitionBy("person_id").orderBy("_priority", F.col("score").desc(), "product_id")
    return (unbought.withColumn("_route", F.row_number().over(best_route)).filter("_route = 1")
            .withColumn("rank", F.row_number().over(order)).filter(F.col("rank") <= n)
            .select(*RECOMMENDATION_COLUMNS))


def new_product_candidates(people: DataFrame, recommendable: DataFrame, interactions_df: DataFrame,
                           slots: int) -> DataFrame:
    """person_id, product_id, score, reason: up to ``slots`` recommendable products nobody has interacted with,
    from each person's favourite category (people: person_id, favourite_category), lowest product id first."""
    cold = recommendable.join(interactions_df.select("product_id").distinct(), "product_id", "left_anti")
    order = Window.partitionBy("person_id").orderBy("product_id")
    return (people.select("person_id", F.col("favourite_category").alias("category")).join(cold, "category")
            .withColumn("_slot", F.row_number().over(order)).filter(F.col("_slot") <= slots)
            .select("person_id", "product_id", F.lit(0.0).alias("score"), F.lit(REASON_NEW).alias("reason")))


def with_new_products(ranked: DataFrame, new: DataFrame, n: int) -> DataFrame:
    """``ranked`` (top n per person) with its last places given to the person's ``new`` products, which follow
    the kept rows in rank order; ranks stay 1..n without gaps."""
    person = Window.partitionBy("person_id")
    reserved = new.withColumn("_reserved", F.count(F.lit(1)).over(person))
    kept = ranked.join(reserved.select("person_id", "_reserved").distinct(), "person_id", "left").filter(
        F.col("rank") <= n - F.coalesce("_reserved", F.lit(0))).drop("_reserved")
    after = kept.groupBy("person_id").agg(F.max("rank").alias("_after"))
    placed = (reserved.join(after, "person_id", "left")
              .withColumn("rank", F.coalesce("_after", F.lit(0)) + F.row_number().over(person.orderBy("product_id")))
              .select(*RECOMMENDATION_COLUMNS))
    return kept.unionByName(placed)


def _candidate_depth(bought: DataFrame, n: int) -> int:
    """Candidates per person so that ``n`` remain after removing what the heaviest buyer already bought."""
    most = bought.groupBy("person_id").count().agg(F.max("count")).first()[0]
    return n + (most or 0)


@dataclass(frozen=True)
class Fallbacks:
    """What recommend() serves besides ALS for some people: the same for every model of a parameter search, so
    computed (and cached) once per search, not once per model."""

    depth: int  # candidates per person
    popular: DataFrame  # product_id, score
    segment_popular: DataFrame | None  # segment_id, product_id, score; None for the popular-only fallback
    new: DataFrame  # person_id, product_id, score, reason: cold products of their favourite category

    def unpersist(self) -> None:
        for cached in (self.popular, self.segment_popular, self.new):
            if cached is not None:
                cached.unpersist()

    def with_fallback(self, cold_start_fallback: str) -> Fallbacks:
        """These lists as ``fallbacks`` makes them for ``cold_start_fallback``: without the segment-popular ones
        for "popular". Lists made for "segment" serve both."""
        if _known_fallback(cold_start_fallback) == COLD_START_SEGMENT:
            return self
        return replace(self, segment_popular=None)


def _known_fallback(cold_start_fallback: str) -> str:
    if cold_start_fallback not in COLD_START_FALLBACKS:
        raise ValueError(f"cold_start_fallback {cold_start_fallback!r} is none of {COLD_START_FALLBACKS}")
    return cold_start_fallback


def fallbacks(people: DataFrame, interactions_df: DataFrame, bought: DataFrame, recommendable: DataFrame, n: int,
              new_product_slots: int = 0, segments: DataFrame | None = None,
              cold_start_fallback: str = COLD_START_SEGMENT) -> Fallbacks:
    """The fallback lists for ``people`` (person_id, segment_id, favourite_category): segment-popular (for the
    ``cold_start_fallback`` "segment") and popular products, deep enough to leave ``n`` after what anyone bought,
    and up to ``new_product_slots`` cold products of each person's favourite category. A segment's popular products
    are those of all its members in ``segments`` (person_id, segment_id; default ``people``): recommending to a few
    people (the evaluation's judged ones) must not shrink their segment to themselves."""
    _known_fallback(cold_start_fallback)
    known = only_recommendable(interactions_df, recommendable)
    depth = _candidate_depth(bought, n)
    segment_popular = (popular_products(known, depth, people if segments is None else segments).cache()
                       if cold_start_fallback == COLD_START_SEGMENT else None)
    return Fallbacks(depth, popular_products(known, depth).cache(), segment_popular,
                     new_product_candidates(people, recommendable, interactions_df, new_product_slots).cache())


def recommend(model: ALSModel | None, idx: Indexes | None, people: DataFrame, lists: Fallbacks, bought: DataFrame,
              recommendable: DataFrame, n: int) -> DataFrame:
    """Top ``n`` per person of ``people`` (person_id, segment_id, favourite_category; those ``lists`` were made
    for): ALS where it knows the person, topped up (or replaced, for cold-start people, and for everyone without a
    model) by the segment-popular then popular products of ``lists``; its new products in the last places; only
    ``recommendable`` products, nothing already bought."""
    if model is None:
        return with_new_products(top_n(fallback_candidates(people, lists.segment_popular, lists.popular), bought, n),
                                 lists.new, n)
    unavailable = idx.products.join(recommendable, "product_id", "left_anti").count()
    personal = only_recommendable(als_candidates(model, idx, people, lists.depth + unavailable),
                                  recommendable).cache()
    served = (personal.join(bought, ["person_id", "product_id"], "left_anti").groupBy("person_id")
              .agg(F.count(F.lit(1)).alias("_served")))
    short = people.join(served, "person_id", "left").filter(F.coalesce("_served", F.lit(0)) < n).drop("_served")
    ranked = top_n(personal.unionByName(fallback_candidates(short, lists.segment_popular, lists.popular)), bought, n)
    return with_new_products(ranked, lists.new, n)


def popularity_baseline(people: DataFrame, popular: DataFrame, bought: DataFrame, n: int) -> DataFrame:
    """Everyone gets the same most popular products (``popular``, minus what they bought): the baseline ALS must
    beat."""
    candidates = people.select("person_id").crossJoin(F.broadcast(popular)).withColumn("reason",
                                                                                     F.lit(REASON_POPULAR))
    return top_n(candidates, bought, n)


def similar_products(model: ALSModel, idx: Indexes, k: int) -> DataFrame:
    """product_id, rank, similar_product_id, similarity: each product's ``k`` nearest products by the cosine of
    their ALS item factors. Pairs are scored by a join of the factor table with itself: fine for catalogues of
    thousands of products, quadratic beyond."""
    norm = F.sqrt(F.aggregate(F.col("features"), F.lit(0.0), lambda acc, x: acc + x * x))
    factors = (model.itemFactors.withColumnRenamed("id", ITEM).join(idx.products, ITEM)
               .select("product_id", F.transform("features", lambda x: x / norm).alias("unit"))
               .filter(F.size("unit") > 0)).cache()
    other = factors.select(F.col("product_id").alias("similar_product_id"), F.col("unit").alias("other_unit"))
    cosine = F.aggregate(F.zip_with("unit", "other_unit", lambda a, b: a * b), F.lit(0.0), lambda acc, x: acc + x)
    order = Window.partitionBy("product_id").orderBy(F.col("similarity").desc(), "similar_product_id")
    return (factors.crossJoin(other).filter(F.col("product_id") != F.col("similar_product_id"))
            .select("product_id", "similar_product_id", cosine.cast("double").alias("similarity"))
            .filter(~F.isnan("similarity"))
            .withColumn("rank", F.row_number().over(order)).filter(F.col("rank") <= k)
            .select("product_id", "rank", "similar_product_id", "similarity"))


RANKING_METRICS = {"precision_at_k": "precisionAtK", "recall_at_k": "recallAtK", "ndcg_at_k": "ndcgAtK",
                   "map": "meanAveragePrecision"}


def judged_lists(recommended: DataFrame, held_out: DataFrame, products: DataFrame) -> DataFrame:
    """person_id, label, prediction (item ids as doubles, predictions in rank order) for each person with
    held-out purchases; a person without recommendations has an empty prediction."""
    as_double = lambda df: df.join(products, "product_id").withColumn("_item", F.col(ITEM).cast("double"))  # noqa: E731
    labels = as_double(held_out).groupBy("person_id").agg(F.collect_set("_item").alias("label"))
    ranked = as_double(recommended).groupBy("person_id").agg(
        F.transform(F.array_sort(F.collect_list(F.struct("rank", "_item"))), lambda r: r["_item"]).alias("prediction"))
    return (labels.join(ranked, "person_id", "left")
            .withColumn("prediction", F.coalesce("prediction", F.array().cast("array<double>"))))


def list_metrics(judged: DataFrame, k: int) -> dict[str, float]:
    """precision@k, recall@k, NDCG@k and MAP of ``judged`` lists (``judged_lists``; MLlib's RankingEvaluator) and
    how many people they are; only the count (0) when there is nobody to judge. ``judged`` should be materialised
    (``localCheckpoint``): every evaluator reads it again, and would otherwise recompute the whole recommend()
    behind it."""
    people = judged.count()
    metrics = {name: RankingEvaluator(metricName=metric, k=k).evaluate(judged)
               for name, metric in RANKING_METRICS.items()} if people else {}
    return {**metrics, "people_evaluated": float(people)}


def ranking_metrics(recommended: DataFrame, held_out: DataFrame, products: DataFrame, k: int,
                    catalogue_size: int, warm: DataFrame | None = None) -> dict[str, float]:
    """precision@k, recall@k, NDCG@k and MAP over the people with held-out purchases (a person without
    recommendations counts with an empty list), plus catalogue coverage: the share of the catalogue recommended to
    anyone. With ``warm`` (person_id of the people with interactions before the hold-out), the same metrics for the
    judged people among them (``warm_`` prefix) and for the others, the cold-start people (``cold_``)."""
    # Both the lists and the coverage read the recommendations: computed once, not once per metric.
    recommended = recommended.cache()
    judged = judged_lists(recommended, held_out, products).localCheckpoint()
    metrics = list_metrics(judged, k)
    metrics["coverage"] = recommended.select("product_id").distinct().count() / max(catalogue_size, 1)
    if warm is not None:
        for group, how in (("warm", "left_semi"), ("cold", "left_anti")):
            in_group = judged.join(warm.select("person_id"), "person_id", how).localCheckpoint()
            metrics.update({f"{group}_{name}": value for name, value in list_metrics(in_group, k).items()})
    recommended.unpersist()
    return metrics


def cold_start_ndcg(cold: DataFrame, held_out: DataFrame, lists: Fallbacks, bought: DataFrame,
                    recommendable: DataFrame, products: DataFrame, n: int) -> dict[str, float]:
    """NDCG@n of each of COLD_START_FALLBACKS for ``cold`` (person_id, segment_id, favourite_category: judged
    people ALS cannot rank, having no interactions), on their ``held_out`` purchases, served from ``lists``
    (``fallbacks`` for the "segment" fallback, made for these people or more). ALS plays no part in their lists,
    so no model is needed. Empty when there is nobody to judge."""
    held = held_out.join(cold, "person_id", "left_semi")
    ndcg = {}
    for fallback in COLD_START_FALLBACKS:
        # Lists of people beyond ``cold`` (their new products) have no held-out row here: judged_lists drops them.
        served = recommend(None, None, cold, lists.with_fallback(fallback), bought, recommendable, n)
        metrics = list_metrics(judged_lists(served, held, products).localCheckpoint(), n)
        if "ndcg_at_k" in metrics:
            ndcg[fallback] = metrics["ndcg_at_k"]
    return ndcg


def choose_cold_start_fallback(ndcg_by_fallback: Mapping[str, float], setting: str = COLD_START_AUTO) -> str:
    """The configured fallback when ``setting`` names one; for "auto" the one of COLD_START_FALLBACKS with the
    best cold-start NDCG in ``ndcg_by_fallback``, the first (segment) on a tie or when none was measured."""
    if setting in COLD_START_FALLBACKS:
        return setting
    if setting != COLD_START_AUTO:
        raise ValueError(f"cold-start fallback {setting!r} is none of {COLD_START_FALLBACK_SETTINGS}")
    measured = [f for f in COLD_START_FALLBACKS if not math.isnan(ndcg_by_fallback.get(f, math.nan))]
    return max(measured, key=lambda f: (ndcg_by_fallback[f], -COLD_START_FALLBACKS.index(f)),
               default=COLD_START_FALLBACKS[0])


@dataclass(frozen=True)
class Evaluation:
    params: AlsParams
    metrics: dict[str, float]


@dataclass(frozen=True)
class ModelSearch:
    chosen: AlsParams
    candidates: list[Evaluation]
    baseline: dict[str, float]
    split: TimeSplit
    cold_start_fallback: str
    cold_start_ndcg: dict[str, float]  # hold-out NDCG of each fallback for the judged cold-start people

    @property
    def best(self) -> Evaluation:
        return next((e for e in self.candidates if e.params == self.chosen), Evaluation(self.chosen, {}))


def search_params(train: DataFrame, split: TimeSplit, people: DataFrame, catalogue: DataFrame, bought: DataFrame,
                  grid: Sequence[AlsParams], n: int, seed: int, max_iter: int, checkpoint_dir: str,
                  checkpoint_interval: int = 5, new_product_slots: int = 0,
                  cold_start_fallback: str = COLD_START_AUTO, max_judged_people: int | None = None) -> ModelSearch:
    """Fit each of ``grid`` on ``train`` (interactions up to ``split.train_as_of``), recommend to the people with
    held-out purchases, and choose the parameters with the best NDCG@n (ties: first in the grid). The cold-start
    fallback is chosen first (``choose_cold_start_fallback`` of ``cold_start_fallback``, by the NDCG@n of each
    fallback for the judged people without interactions before the hold-out), and the grid's lists use it. The
    popularity baseline is measured on the same people; every metric also for the judged people with interactions
    before the hold-out (``warm_``) and without (``cold_``). With ``max_judged_people``, only that many of the people
    with held-out purchases are judged (``held_out_sample``). Without any held-out purchase, or without any
    interaction before the hold-out (data shorter than the hold-out), nothing is fitted or measured."""
    bought = bought.cache()
    evaluated = split.held_out.join(people, "person_id", "left_semi")
    if max_judged_people is not None:
        evaluated = held_out_sample(evaluated, max_judged_people, seed)
    evaluated = evaluated.cache()
    if evaluated.isEmpty() or train.isEmpty():
        # Nobody bought anything new in the hold-out days, or nothing happened before them: nothing to judge the
        # grid or the fallbacks on, so the grid's first point and the preferred fallback are used unmeasured.
        evaluated.unpersist()
        bought.unpersist()
        return ModelSearch(grid[0], [], {}, split, choose_cold_start_fallback({}, cold_start_fallback), {})
    idx = indexes(train, catalogue)
    recommendable = recommendable_products(catalogue)
    ratings = idx.ratings(train).cache()
    judged = people.join(evaluated.select("person_id").distinct(), "person_id", "left_semi").cache()
    warm = idx.people.select("person_id")
    catalogue_size = idx.products.count()
    # Segments' popular products come from all their members (segments=people), as in the job's own recommend().
    # Made once for the "segment" fallback, they serve both fallbacks' judging and the grid's lists.
    every_list = fallbacks(judged, train, bought, recommendable, n, new_product_slots, people)
    fallback_ndcg = cold_start_ndcg(judged.join(warm, "person_id", "left_anti"), evaluated, every_list, bought,
                                    recommendable, idx.products, n)
    fallback = choose_cold_start_fallback(fallback_ndcg, cold_start_fallback)
    measure = lambda recs: ranking_metrics(recs, evaluated, idx.products, n, catalogue_size, warm)  # noqa: E731
    lists = every_list.with_fallback(fallback)
    candidates = [Evaluation(params, measure(recommend(model, idx, judged, lists, bought, recommendable, n)))
                  for params, model in zip(grid, fit_als(ratings, grid, seed, max_iter, checkpoint_dir,
                                                          checkpoint_interval), strict=True)]
    baseline = measure(popularity_baseline(judged, lists.popular, bought, n))
    best = max(candidates, key=lambda e: (e.metrics["ndcg_at_k"], -candidates.index(e)))
    every_list.unpersist()
    for cached in (ratings, evaluated, judged, bought, idx):
        cached.unpersist()
    return ModelSearch(best.params, candidates, baseline, split, fallback, fallback_ndcg)


CHECK_COLUMNS = ["_rank_gap", "_rank_beyond_top_n", "_rows_per_person_product", "_already_purchased",
                 "_score_finite", "_product_recommendable"]


def recommendations_with_checks(recommended: DataFrame, bought: DataFrame, recommendable: DataFrame,
                                n: int) -> DataFrame:
    """``recommended`` plus the columns its gate checks: ranks 1..n without gaps, one row per person and product,
    nothing already bought, only active catalogue products, finite scores."""
    person = Window.partitionBy("person_id")
    bought_flag = bought.select("person_id", "product_id", F.lit(True).alias("_already_purchased"))
    active_flag = recommendable.select("product_id", F.lit(True).alias("_product_recommendable"))
    return (recommended
            .join(active_flag, "product_id", "left")
            .withColumn("_product_recommendable", F.coalesce("_product_recommendable", F.lit(False)))
            .withColumn("_rank_gap", F.max("rank").over(person) - F.count(F.lit(1)).over(person))
            .withColumn("_rank_beyond_top_n", F.col("rank") > n)
            .withColumn("_rows_per_person_product",
                        F.count(F.lit(1)).over(Window.partitionBy("person_id", "product_id")))
            .join(bought_flag, ["person_id", "product_id"], "left")
            .withColumn("_already_purchased", F.coalesce("_already_purchased", F.lit(False)))
            .withColumn("_score_finite", F.col("score").isNotNull() & ~F.isnan("score")
                        & (F.abs("score") < F.lit(float("inf")))))


SIMILAR_CHECK_COLUMNS = ["_rows_per_pair", "_same_product"]


def similar_products_with_checks(similar: DataFrame) -> DataFrame:
    return (similar.withColumn("_rows_per_pair",
                               F.count(F.lit(1)).over(Window.partitionBy("product_id", "similar_product_id")))
            .withColumn("_same_product", F.col("product_id") == F.col("similar_product_id")))
