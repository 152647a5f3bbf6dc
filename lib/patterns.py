"""Purchase patterns: baskets from order lines, frequent itemsets (Spark MLlib FPGrowth) and association rules.

Support is handled as a count. Spark's FPGrowth takes a fraction and mines at ``ceil(minSupport * baskets)``
(``mllib/fpm/FPGrowth.scala``, ``run``); ``fpgrowth_min_support`` chooses the fraction that lands exactly on the
count asked for, so results can be compared count for count with other miners (Weka's Apriori rounds instead).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from pyspark.ml.fpm import FPGrowth
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

LEVELS = ("product", "category")
# Subsets drawn per itemset size when estimating how many itemsets are frequent; and baskets held for it.
ESTIMATE_SAMPLES_PER_SIZE = 400
ESTIMATE_MAX_BASKETS = 20_000
ESTIMATE_SEED = 17
# Derived columns the gold.purchase_rules gate checks; not published.
CHECK_COLUMNS = ["_shared_items", "_consequent_size"]


class TooManyItemsets(ValueError):
    """The requested minimum support would make FPGrowth produce more itemsets than allowed."""


def order_baskets(order_items: DataFrame, level: str = "product", products: DataFrame | None = None) -> DataFrame:
    """One row per order: ``order_id`` and ``items``, the sorted distinct products (or their categories)."""
    if level not in LEVELS:
        raise ValueError(f"basket level {level!r} is not one of {LEVELS}")
    lines = order_items.select("order_id", F.col("product_id").alias("item"))
    if level == "category":
        if products is None:
            raise ValueError("category baskets need silver.products to map product_id to category")
        lines = lines.join(products.select(F.col("product_id").alias("item"), "category"), "item").select(
            "order_id", F.col("category").alias("item"))
    return (lines.filter(F.col("item").isNotNull()).groupBy("order_id")
            .agg(F.array_sort(F.collect_set("item")).alias("items")))


@dataclass(frozen=True)
class CappedBaskets:
    baskets: DataFrame
    capped: int  # baskets that had more than max_size items
    items_dropped: int


def capped_baskets(baskets: DataFrame, max_size: int) -> CappedBaskets:
    """Baskets with more than ``max_size`` items keep their ``max_size`` most frequent items (ties: by item).

    The basket still counts as a basket, so supports keep meaning "share of orders"; the dropped items are the
    basket's rarest, the ones least likely to reach the minimum support anyway.
    """
    over = baskets.filter(F.size("items") > max_size)
    counts = over.agg(F.count(F.lit(1)).alias("capped"), F.sum(F.size("items") - max_size).alias("dropped")).first()
    if not counts["capped"]:
        return CappedBaskets(baskets, 0, 0)
    frequency = baskets.select(F.explode("items").alias("item")).groupBy("item").agg(F.count(F.lit(1)).alias("_n"))
    most_frequent_first = Window.partitionBy("order_id").orderBy(F.col("_n").desc(), F.col("item"))
    kept = (over.select("order_id", F.explode("items").alias("item")).join(frequency, "item")
            .withColumn("_rank", F.row_number().over(most_frequent_first)).filter(F.col("_rank") <= max_size)
            .groupBy("order_id").agg(F.array_sort(F.collect_list("item")).alias("items")))
    within = baskets.filter(F.size("items") <= max_size).select("order_id", "items")
    return CappedBaskets(within.unionByName(kept), counts["capped"], counts["dropped"])


def support_count(min_support: float, baskets: int) -> int:
    """The minimum count Spark's FPGrowth mines at for a fractional ``min_support``: ceil(min_support * baskets)."""
    if not 0 < min_support <= 1:
        raise ValueError(f"min_support must be a share of baskets in (0, 1], got {min_support}")
    return math.ceil(min_support * baskets)


def fpgrowth_min_support(min_count: int, baskets: int) -> float:
    """The fraction ``s`` for which Spark's ``ceil(s * baskets)`` (in doubles, as Python's floats) is ``min_count``."""
    if not 1 <= min_count <= baskets:
        raise ValueError(f"min_count must be between 1 and the number of baskets ({baskets}), got {min_count}")
    fraction = min_count / baskets
    while math.ceil(fraction * baskets) > min_count:
        fraction = math.nextafter(fraction, 0.0)
    while math.ceil(fraction * baskets) < min_count:
        fraction = math.nextafter(fraction, 1.0)
    return fraction


def estimated_itemset_count(baskets: Sequence[Sequence[str]], min_count: float,
                            samples_per_size: int = ESTIMATE_SAMPLES_PER_SIZE, seed: int = ESTIMATE_SEED) -> int:
    """Estimate how many itemsets reach ``min_count`` in ``baskets`` without enumerating them.

    Per itemset size s, draw (basket, s-subset of its frequent items) pairs uniformly from all T_s such pairs; a
    frequent itemset S is drawn with probability support(S) / T_s, so T_s * mean(1[support >= min_count] / support)
    is an unbiased estimate of the number of frequent s-itemsets. Supports come from item bitsets over the
    baskets. Upper bounds (subsets of baskets, cliques of frequent pairs) are orders of magnitude too loose on
    real baskets; on Weka's supermarket data this estimate lands within 25 % of the true count.
    """
    rng = random.Random(seed)
    frequency: dict[str, int] = {}
    for basket in baskets:
        for item in basket:
            frequency[item] = frequency.get(item, 0) + 1
    index = {item: i for i, item in enumerate(sorted(i for i, n in frequency.items() if n >= min_count))}
    bitsets = [0] * len(index)
    rows = []
    for position, basket in enumerate(baskets):
        row = [index[item] for item in basket if item in index]
        for i in row:
            bitsets[i] |= 1 << position
        rows.append(row)
    sizes = [len(row) for row in rows]
    total = 0.0
    for size in range(1, max(sizes, default=0) + 1):
        weights = [math.comb(k, size) for k in sizes]
        pairs = sum(weights)
        hits = 0.0
        for position in rng.choices(range(len(rows)), weights, k=samples_per_size):
            subset = rng.sample(rows[position], size)
            shared = bitsets[subset[0]]
            for i in subset[1:]:
                shared &= bitsets[i]
            support = shared.bit_count()
            if support >= min_count:
                hits += 1 / support
        total += pairs * hits / samples_per_size
    return round(total)


@dataclass(frozen=True)
class SupportGuard:
    requested_count: int
    min_count: int
    requested_estimate: int  # estimated frequent itemsets at the requested count
    estimate: int  # ... at the count used
    max_itemsets: int
    baskets: int

    @property
    def adapted(self) -> bool:
        return self.min_count != self.requested_count

    @property
    def message(self) -> str:
        requested = (f"min count {self.requested_count} ({self.requested_count / self.baskets:.3%} of "
                     f"{self.baskets} baskets): about {self.requested_estimate} frequent itemsets estimated")
        if not self.adapted:
            return f"{requested}, within max_itemsets={self.max_itemsets}"
        return (f"{requested}, more than max_itemsets={self.max_itemsets}; min count raised to {self.min_count} "
                f"({self.min_count / self.baskets:.3%}), about {self.estimate} itemsets")


def guarded_min_count(baskets: DataFrame, min_count: int, max_itemsets: int, basket_count: int,
                      adapt: bool = True) -> SupportGuard:
    """Check, before FPGrowth, that ``min_count`` keeps the number of frequent itemsets within ``max_itemsets``.

    The estimate (``estimated_itemset_count``) runs on the driver over at most ESTIMATE_MAX_BASKETS sampled baskets,
    with the count scaled to the sample. Over the limit: raise TooManyItemsets, or with ``adapt`` raise the count
    to the smallest one (found by steps of +25 %, then bisection) whose estimate fits.
    """
    fraction = min(1.0, ESTIMATE_MAX_BASKETS / max(basket_count, 1))
    sample = baskets if fraction == 1.0 else baskets.sample(fraction=fraction, seed=ESTIMATE_SEED)
    rows = [row["items"] for row in sample.select("items").collect()]
    scale = len(rows) / max(basket_count, 1)

    def estimate(count: int) -> int:
        return estimated_itemset_count(rows, count * scale)

    requested = estimate(min_count)
    guard = SupportGuard(min_count, min_count, requested, requested, max_itemsets, basket_count)
    if requested <= max_itemsets:
        return guard
    if not adapt:
        raise TooManyItemsets(f"{guard.message}; refusing to mine (raise min_support or max_itemsets)")
    low, high = min_count, min_count
    while high < basket_count and estimate(high) > max_itemsets:
        low, high = high, min(basket_count, math.ceil(high * 1.25))
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if estimate(middle) > max_itemsets else (low, middle)
    return SupportGuard(min_count, high, requested, estimate(high), max_itemsets, basket_count)


def frequent_itemsets(baskets: DataFrame, min_count: int, basket_count: int) -> DataFrame:
    """Itemsets in at least ``min_count`` of the ``basket_count`` baskets, by Spark MLlib's FPGrowth.

    Columns: itemset_key (JSON of the sorted items), items (sorted), size, support_count, support, basket_count.
    """
    model = FPGrowth(itemsCol="items", minSupport=fpgrowth_min_support(min_count, basket_count)).fit(baskets)
    items = F.array_sort("items")
    return model.freqItemsets.select(
        F.to_json(items).alias("itemset_key"),
        items.alias("items"),
        F.size("items").alias("size"),
        F.col("freq").alias("support_count"),
        (F.col("freq") / F.lit(basket_count)).alias("support"),
        F.lit(basket_count).cast("long").alias("basket_count"),
    )


def purchase_rules(itemsets: DataFrame, min_confidence: float, max_antecedent_size: int) -> DataFrame:
    """Rules antecedent => one consequent item from frequent itemsets, as Spark's AssociationRules forms them.

    support = P(A and C); confidence = P(C | A); lift = confidence / P(C); leverage = P(A and C) - P(A) P(C);
    conviction = (1 - P(C)) / (1 - confidence), null when confidence = 1 (infinite: C never misses after A).
    Every subset of a frequent itemset is frequent, so antecedent and consequent counts are in ``itemsets``.
    """
    counts = itemsets.select(F.col("itemset_key").alias("antecedent_key"),
                             F.col("support_count").alias("antecedent_count"))
    singles = itemsets.filter(F.col("size") == 1).select(F.col("items")[0].alias("consequent_item"),
                                                         F.col("support_count").alias("consequent_count"))
    candidates = (
        itemsets.filter(F.col("size").between(2, max_antecedent_size + 1))
        .select("items", "support_count", "basket_count", F.explode("items").alias("consequent_item"))
        .withColumn("antecedent", F.array_sort(F.array_except("items", F.array("consequent_item"))))
        .withColumn("antecedent_key", F.to_json("antecedent"))
    )
    n = F.col("basket_count")
    confidence = F.col("support_count") / F.col("antecedent_count")
    consequent_support = F.col("consequent_count") / n
    rules = (candidates.join(counts, "antecedent_key").join(singles, "consequent_item")
             .withColumn("confidence", confidence).filter(F.col("confidence") >= min_confidence))
    return rules.select(
        F.concat(F.col("antecedent_key"), F.lit(" => "), F.to_json(F.array("consequent_item"))).alias("rule_key"),
        "antecedent",
        F.array("consequent_item").alias("consequent"),
        F.size("antecedent").alias("antecedent_size"),
        "antecedent_count",
        "consequent_count",
        "support_count",
        (F.col("support_count") / n).alias("support"),
        "confidence",
        (F.col("confidence") / consequent_support).alias("lift"),
        (F.col("support_count") / n - F.col("antecedent_count") / n * consequent_support).alias("leverage"),
        F.when(F.col("confidence") < 1, (1 - consequent_support) / (1 - F.col("confidence"))).alias("conviction"),
        "basket_count",
    )


def rules_with_checks(rules: DataFrame) -> DataFrame:
    """Add what gold.purchase_rules' expectations check beyond its columns (GX has no array-size expectation)."""
    return (rules.withColumn("_shared_items", F.size(F.array_intersect("antecedent", "consequent")))
            .withColumn("_consequent_size", F.coalesce(F.size("consequent"), F.lit(0))))
