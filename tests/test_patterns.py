"""Purchase patterns: FPGrowth itemsets and rules equal Weka's Apriori on real supermarket baskets; planted bundles
are found; the basket cap, the itemset-count guard, the rule metrics and the gates behave as documented."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
from itertools import combinations
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from lib import io, patterns
from lib.config import PatternSettings
from lib.datasets import supermarket
from lib.generate import GeneratorSettings, generate
from lib.pipeline import run_pipeline
from lib.quality import validate
from tests.conftest import make_config

# About 10 % of the 4,627 baskets: ~8,000 itemsets, a few seconds for Weka and for FPGrowth on 2 cores.
WEKA_MIN_COUNT = 463
WEKA_MIN_CONFIDENCE = 0.8
PATTERN_JOBS = ["bronze", "silver_customers", "silver_products", "silver_orders", "gold_patterns"]

Itemsets = dict[frozenset, int]
Rules = dict[tuple[frozenset, str], tuple[int, int, float]]  # (antecedent, consequent) -> counts, confidence


@pytest.fixture(scope="module")
def weka() -> tuple[Path, Path]:
    return supermarket.fetch_weka()


@pytest.fixture(scope="module")
def supermarket_arff(weka) -> supermarket.Arff:
    return supermarket.read_arff(weka[0])


@pytest.fixture(scope="module")
def weka_patterns(weka, supermarket_arff, tmp_path_factory) -> tuple[Itemsets, Rules]:
    return run_weka_apriori(weka[1], supermarket_arff, tmp_path_factory.mktemp("weka"), WEKA_MIN_COUNT,
                            WEKA_MIN_CONFIDENCE)


def run_weka_apriori(jar: Path, data: supermarket.Arff, folder: Path, min_count: int,
                     min_confidence: float) -> tuple[Itemsets, Rules]:
    """Weka's Apriori on the departments only (``total`` dropped: it is a value band, not an item), mined once
    at exactly ``min_count``: Weka starts at -U and lowers by -D down to -M, counting round(support * n), so
    -U 1 -D (1 - M) with M = min_count / n makes its first and only cycle that count."""
    arff = folder / "departments.arff"
    keep = [i for i, name in enumerate(data.attributes) if name != supermarket.VALUE_BAND]
    header = ["@relation departments"] + [f"@attribute '{data.attributes[i]}' {{ t}}" for i in keep] + ["@data"]
    arff.write_text("\n".join(header + [",".join(row[i] for i in keep) for row in data.rows]) + "\n")
    fraction = min_count / len(data.rows)
    out = subprocess.run(
        ["java", "-cp", str(jar), "weka.associations.Apriori", "-t", str(arff), "-M", repr(fraction),
         "-U", "1.0", "-D", repr(1.0 - fraction), "-C", str(min_confidence), "-N", "10000000", "-I"],
        capture_output=True, text=True, check=True,
    ).stdout
    assert f"({min_count} instances)" in out, out[:500]
    return parse_weka_itemsets(out), parse_weka_rules(out)


def weka_items(text: str) -> frozenset:
    return frozenset(re.findall(r"(.+?)=t(?: |$)", text.strip()))


def parse_weka_itemsets(out: str) -> Itemsets:
    itemsets: Itemsets = {}
    section = out.split("Generated sets of large itemsets:")[1].split("Best rules found:")[0]
    for line in section.splitlines():
        match = re.fullmatch(r"(.+=t) (\d+)", line.strip())
        if match:
            itemsets[weka_items(match[1])] = int(match[2])
    return itemsets


def parse_weka_rules(out: str) -> Rules:
    """Rules with one consequent item (Spark's form; Weka also prints rules with larger consequents)."""
    rules: Rules = {}
    for match in re.finditer(r"^\s*\d+\. (.+=t) (\d+) ==> (.+=t) (\d+)\s+conf:\(([\d.]+)\)", out, re.MULTILINE):
        consequent = weka_items(match[3])
        if len(consequent) == 1:
            rules[(weka_items(match[1]), next(iter(consequent)))] = (int(match[2]), int(match[4]), float(match[5]))
    return rules


def spark_patterns(itemsets_df, rules_df, names: dict[str, str] | None = None) -> tuple[Itemsets, Rules]:
    name = (lambda item: names[item]) if names else (lambda item: item)
    itemsets = {frozenset(map(name, r["items"])): r["support_count"] for r in itemsets_df.collect()}
    rules = {(frozenset(map(name, r["antecedent"])), name(r["consequent"][0])):
             (r["antecedent_count"], r["support_count"], r["confidence"]) for r in rules_df.collect()}
    return itemsets, rules


def assert_same_patterns(spark_side: tuple[Itemsets, Rules], weka_side: tuple[Itemsets, Rules]) -> None:
    (spark_itemsets, spark_rules), (weka_itemsets, weka_rules) = spark_side, weka_side
    assert len(spark_itemsets) == len(weka_itemsets)
    assert spark_itemsets == weka_itemsets
    assert spark_rules.keys() == weka_rules.keys()
    for rule, (antecedent_count, union_count, confidence) in spark_rules.items():
        weka_antecedent, weka_union, weka_confidence = weka_rules[rule]
        assert (antecedent_count, union_count) == (weka_antecedent, weka_union), rule
        assert abs(confidence - weka_confidence) <= 0.005 + 1e-9, rule  # Weka prints two decimals


@pytest.fixture(scope="module")
def supermarket_baskets(spark, supermarket_arff):
    rows = [(f"sm-{i}", sorted(b)) for i, b in enumerate(supermarket_arff.baskets()) if b]
    return spark.createDataFrame(rows, "order_id string, items array<string>").cache()


@pytest.fixture(scope="module")
def fpgrowth_supermarket(supermarket_baskets):
    n = supermarket_baskets.count()
    itemsets = patterns.frequent_itemsets(supermarket_baskets, WEKA_MIN_COUNT, n).cache()
    rules = patterns.purchase_rules(itemsets, WEKA_MIN_CONFIDENCE, max_antecedent_size=216)
    return spark_patterns(itemsets, rules)


def test_fpgrowth_itemsets_and_rules_equal_wekas_apriori_on_supermarket_baskets(fpgrowth_supermarket,
                                                                                weka_patterns):
    assert len(weka_patterns[0]) > 5000 and len(weka_patterns[1]) > 3000
    assert_same_patterns(fpgrowth_supermarket, weka_patterns)


def test_a_fractional_min_support_mines_at_the_count_spark_derives_and_a_count_is_hit_exactly():
    for baskets in (7, 100, 4627, 1_000_003):
        for count in (1, 2, 3, baskets // 3, baskets // 2 + 1, baskets):
            fraction = patterns.fpgrowth_min_support(count, baskets)
            assert patterns.support_count(fraction, baskets) == count, (count, baskets)
    assert patterns.support_count(0.1, 4627) == 463  # ceil(462.7), where Weka's round() also gives 463
    with pytest.raises(ValueError, match="between 1 and"):
        patterns.fpgrowth_min_support(0, 10)


def test_itemset_estimate_is_close_to_fpgrowths_count(supermarket_arff, fpgrowth_supermarket):
    actual = len(fpgrowth_supermarket[0])
    estimate = patterns.estimated_itemset_count(supermarket_arff.baskets(), WEKA_MIN_COUNT)
    assert 0.7 * actual <= estimate <= 1.3 * actual, (estimate, actual)


def test_guard_raises_a_min_support_that_would_explode_and_says_so(supermarket_baskets):
    n = supermarket_baskets.count()
    guard = patterns.guarded_min_count(supermarket_baskets, 150, max_itemsets=20_000, basket_count=n)
    assert guard.adapted and guard.min_count > 150
    assert guard.requested_estimate > 20_000 >= guard.estimate
    assert "min count 150" in guard.message and f"raised to {guard.min_count}" in guard.message
    with pytest.raises(patterns.TooManyItemsets, match="refusing to mine"):
        patterns.guarded_min_count(supermarket_baskets, 150, max_itemsets=20_000, basket_count=n, adapt=False)
    kept = patterns.guarded_min_count(supermarket_baskets, WEKA_MIN_COUNT, max_itemsets=100_000, basket_count=n)
    assert not kept.adapted and kept.min_count == WEKA_MIN_COUNT


# e is only ever bought with a: e => a is certain (confidence 1, conviction infinite, stored as null).
TINY = [["a", "b", "c"], ["a", "b"], ["a", "c"], ["b", "c"], ["a", "b", "c", "d"], ["d"], ["a", "d"], ["b"],
        ["a", "e"], ["a", "b", "e"]]


def python_rules(baskets: list[list[str]], min_count: int, min_confidence: float, max_antecedent: int) -> dict:
    n = len(baskets)
    items = sorted({i for b in baskets for i in b})

    def count(itemset) -> int:
        return sum(1 for b in baskets if set(itemset) <= set(b))

    rules = {}
    for size in range(2, len(items) + 1):
        for itemset in combinations(items, size):
            if count(itemset) < min_count:
                continue
            for consequent in itemset:
                antecedent = tuple(i for i in itemset if i != consequent)
                confidence = count(itemset) / count(antecedent)
                if confidence < min_confidence or len(antecedent) > max_antecedent:
                    continue
                p_c = count([consequent]) / n
                rules[(antecedent, consequent)] = {
                    "support": count(itemset) / n, "confidence": confidence, "lift": confidence / p_c,
                    "leverage": count(itemset) / n - count(antecedent) / n * p_c,
                    "conviction": None if confidence == 1 else (1 - p_c) / (1 - confidence),
                }
    return rules


def tiny_rules(spark, min_confidence=0.0, max_antecedent_size=3):
    baskets = spark.createDataFrame([(str(i), b) for i, b in enumerate(TINY)], "order_id string, items array<string>")
    itemsets = patterns.frequent_itemsets(baskets, 2, len(TINY))
    return patterns.purchase_rules(itemsets, min_confidence, max_antecedent_size)


def test_rule_metrics_equal_a_plain_python_computation(spark):
    for min_confidence, max_antecedent in ((0.0, 3), (0.6, 3), (0.0, 1)):
        expected = python_rules(TINY, 2, min_confidence, max_antecedent)
        rows = tiny_rules(spark, min_confidence, max_antecedent).collect()
        got = {(tuple(r["antecedent"]), r["consequent"][0]): r for r in rows}
        assert got.keys() == expected.keys()
        for key, metrics in expected.items():
            for metric, value in metrics.items():
                assert got[key][metric] == pytest.approx(value) if value is not None else got[key][metric] is None, \
                    (key, metric)
    certain = [r for r in tiny_rules(spark).collect() if r["antecedent"] == ["e"] and r["consequent"] == ["a"]]
    assert len(certain) == 1 and certain[0]["confidence"] == 1 and certain[0]["conviction"] is None


def test_oversized_baskets_keep_their_most_frequent_items_and_are_counted(spark):
    baskets = spark.createDataFrame(
        [("o1", ["a", "b", "c", "d", "e"]), ("o2", ["a", "b"]), ("o3", ["a", "c"]), ("o4", ["b", "e"]),
         ("o5", ["a"])], "order_id string, items array<string>")
    capped = patterns.capped_baskets(baskets, 3)
    assert (capped.capped, capped.items_dropped) == (1, 2)
    result = {r["order_id"]: r["items"] for r in capped.baskets.collect()}
    # frequencies: a 4, b 3, c 2, e 2, d 1 -> a, b and the first of the tied c / e
    assert result["o1"] == ["a", "b", "c"]
    assert {k: v for k, v in result.items() if k != "o1"} == {"o2": ["a", "b"], "o3": ["a", "c"], "o4": ["b", "e"],
                                                             "o5": ["a"]}
    untouched = patterns.capped_baskets(baskets, 5)
    assert (untouched.capped, untouched.items_dropped) == (0, 0)


def test_category_baskets_map_products_through_silver_products(spark):
    items = spark.createDataFrame([("o1", "p1"), ("o1", "p2"), ("o1", "p3"), ("o2", "p3"), ("o2", None)],
                                  "order_id string, product_id string")
    products = spark.createDataFrame([("p1", "tea"), ("p2", "tea"), ("p3", "cheese")],
                                     "product_id string, category string")
    by_category = {r["order_id"]: r["items"] for r in patterns.order_baskets(items, "category", products).collect()}
    assert by_category == {"o1": ["cheese", "tea"], "o2": ["cheese"]}
    by_product = {r["order_id"]: r["items"] for r in patterns.order_baskets(items).collect()}
    assert by_product == {"o1": ["p1", "p2", "p3"], "o2": ["p3"]}


def test_rules_gate_quarantines_broken_rules(spark):
    rules = tiny_rules(spark, 0.0).cache()
    keys = [r["rule_key"] for r in rules.orderBy("rule_key").limit(3).collect()]
    broken = (rules
              .withColumn("confidence", F.when(F.col("rule_key") == keys[0], F.lit(1.5)).otherwise(F.col("confidence")))
              .withColumn("lift", F.when(F.col("rule_key") == keys[1], F.lit(0.0)).otherwise(F.col("lift")))
              .withColumn("consequent", F.when(F.col("rule_key") == keys[2], F.slice("antecedent", 1, 1))
                          .otherwise(F.col("consequent"))))
    clean = validate(patterns.rules_with_checks(rules), "gold.purchase_rules", ["rule_key"], 0.0)
    assert clean.passed and clean.rows_failed == 0
    result = validate(patterns.rules_with_checks(broken), "gold.purchase_rules", ["rule_key"], 0.0)
    assert not result.passed and result.rows_failed == 3
    failed = {r["rule_key"]: set(r["_failed_rules"]) for r in result.failed_rows.collect()}
    assert failed == {keys[0]: {"confidence_in_0_1"}, keys[1]: {"lift_positive"},
                      keys[2]: {"antecedent_and_consequent_disjoint"}}


@pytest.mark.slow
def test_pipeline_on_supermarket_landing_publishes_wekas_patterns_and_reruns_to_the_same_tables(
        spark, weka, weka_patterns, tmp_path):
    summary = supermarket.load(tmp_path / "landing", weka[0])
    assert summary["orders"] == 4627 and summary["products"] == 216
    config = dataclasses.replace(
        make_config(tmp_path, tmp_path / "landing"),
        patterns=PatternSettings(min_count=WEKA_MIN_COUNT, min_confidence=WEKA_MIN_CONFIDENCE, max_antecedent_size=216,
                                 max_basket_size=216),
    )
    runs = run_pipeline(spark, config, PATTERN_JOBS)
    assert [r.status for r in runs] == ["succeeded"] * len(PATTERN_JOBS), [r.error for r in runs]
    tables = {t.table: t for r in runs for t in r.tables}
    for table in ("silver.customers", "silver.products", "silver.orders"):
        assert tables[table].quarantined == 0 and tables[table].balanced, table
    assert tables["silver.orders"].published == 4627
    itemsets_run = tables["gold.frequent_itemsets"]
    assert itemsets_run.balanced and itemsets_run.details["min_count"] == WEKA_MIN_COUNT
    assert itemsets_run.details["baskets"] == 4627 and itemsets_run.details["baskets_capped"] == 0
    names = {r["product_id"]: r["name"] for r in io.read_table(spark, config, "silver.products").collect()}
    read = lambda: (io.read_table(spark, config, "gold.frequent_itemsets"),  # noqa: E731
                    io.read_table(spark, config, "gold.purchase_rules"))
    published = spark_patterns(*read(), names)
    assert_same_patterns(published, weka_patterns)
    assert tables["gold.purchase_rules"].published == len(published[1])

    rerun = run_pipeline(spark, config, ["gold_patterns"], force=True)  # forced: its inputs did not change
    assert rerun[0].status == "succeeded", rerun[0].error
    assert spark_patterns(*read(), names) == published
    assert io.read_table(spark, config, "gold.frequent_itemsets").count() == len(published[0])


@pytest.mark.slow
def test_every_planted_bundle_is_found_as_a_rule_with_lift_of_at_least_2(spark, tmp_path):
    landing = tmp_path / "landing"
    generate(landing, GeneratorSettings(customers=300, days=14, seed=5, products=60))
    config = dataclasses.replace(
        make_config(tmp_path, landing, max_error_ratio=0.3),
        patterns=PatternSettings(min_count=8, min_confidence=0.3, max_antecedent_size=2),
    )
    runs = run_pipeline(spark, config, PATTERN_JOBS)
    assert all(r.status == "succeeded" for r in runs), [r.error for r in runs]
    rules = io.read_table(spark, config, "gold.purchase_rules").collect()
    bundles = json.loads((landing / "ground_truth" / "bundles.json").read_text())
    for bundle in bundles:
        found = [r for r in rules if set(r["antecedent"]) | set(r["consequent"]) == set(bundle)]
        assert found and max(r["lift"] for r in found) >= 2, (bundle, found)
