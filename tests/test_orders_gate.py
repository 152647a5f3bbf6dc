"""The silver.orders gate on hand-made bronze rows: each critical rule quarantines exactly the rows that break it."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from pyspark.sql import functions as F

from lib import io
from lib.orders import orders_with_checks
from lib.quality import FAILED_RULES, _predicate, validate
from lib.schemas import table_schema
from lib.silver import latest_versions, typed_records
from lib.spark import persisted_rdd_ids
from tests.conftest import make_config

INGESTED = dt.datetime(2026, 3, 1, 12, 0, 0)


def order(order_id="o-1", customer_id="c-1", ts="2026-02-01T10:00:00Z", updated="2026-02-01T10:00:00Z",
          items=None, total=25.0, status="placed"):
    return {"order_id": order_id, "customer_id": customer_id, "order_ts": ts, "updated_at": updated,
            "status": status, "channel": "web", "currency": "EUR",
            "items": items if items is not None else [{"product_id": "p-1", "quantity": 2, "unit_price": 12.5}],
            "total_amount": total}


CASES = {
    "clean": json.dumps(order("o-clean")),
    "parses_as_json": '{"order_id": "o-broken", "customer_id": "c-1", "order_ts": "2026-0',
    "values_have_declared_types": json.dumps(order("o-type", items=[{"product_id": "p-1", "quantity": "two",
                                                                       "unit_price": 12.5}])),
    "has_customer_id": json.dumps(order("o-nocust", customer_id=None)),
    "unit_prices_not_negative": json.dumps(order("o-neg", items=[{"product_id": "p-1", "quantity": 1,
                                                                  "unit_price": -3.0}], total=0.0)),
    "order_ts_not_in_future": json.dumps(order("o-future", ts="2031-06-01T00:00:00Z")),
    "customer_is_known": json.dumps(order("o-stranger", customer_id="c-999")),
    "status_is_known": json.dumps(order("o-status", status="teleported")),
    "has_items": json.dumps(order("o-empty", items=[], total=0.0)),
    "products_are_known": json.dumps(order("o-unknown-item", items=[{"product_id": "p-404", "quantity": 1,
                                                                      "unit_price": 25.0}])),
}


@pytest.fixture(scope="module")
def checked(spark):
    bronze = spark.createDataFrame(
        [(name, value, None, "file:/landing/orders/x.jsonl", INGESTED) for name, value in CASES.items()],
        "_record_id string, value string, _parse_error string, _source_file string, _ingested_at timestamp",
    ).withColumn("_parse_error", F.when(F.try_parse_json("value").isNull(), F.lit("malformed JSON")))
    customers = spark.createDataFrame([("c-1",)], "customer_id string")
    products = spark.createDataFrame([("p-1",)], "product_id string")
    return orders_with_checks(typed_records(bronze, table_schema("orders")), customers, products).cache()


def test_each_critical_rule_quarantines_exactly_the_row_that_breaks_it(checked):
    gate = validate(checked, "silver.orders", ["_record_id"], max_error_ratio=1.0)
    failed = {r["_record_id"]: set(r[FAILED_RULES]) for r in gate.failed_rows.collect()}
    assert set(failed) == set(CASES) - {"clean"}
    for rule, rules_hit in failed.items():
        assert rule in rules_hit, f"{rule} row was quarantined for {rules_hit}"
    assert [r["_record_id"] for r in gate.passed_rows.collect()] == ["clean"]
    assert gate.rows_checked == len(CASES) and gate.rows_failed == len(CASES) - 1


def test_gate_fails_above_its_threshold_and_passes_below(checked):
    assert not validate(checked, "silver.orders", ["_record_id"], max_error_ratio=0.5).passed
    assert validate(checked, "silver.orders", ["_record_id"], max_error_ratio=0.9).passed


def test_warning_rules_are_recorded_but_never_quarantine(checked):
    mismatched = checked.filter("_record_id = 'clean'").withColumn("_total_minus_items", F.lit(5.0))
    gate = validate(mismatched, "silver.orders", ["_record_id"], max_error_ratio=0.0)
    warning = next(o for o in gate.outcomes if o.rule == "total_matches_items")
    assert warning.severity == "warning" and not warning.success and warning.unexpected_count == 1
    assert gate.rows_failed == 0 and gate.passed


def test_gx_failing_row_query_is_turned_into_a_spark_predicate():
    query = """df.filter(F.expr("(b IS NOT NULL) AND (NOT (b IN ('x', 'it\\\\'s')))"))"""
    assert _predicate(query) == "(b IS NOT NULL) AND (NOT (b IN ('x', 'it\\'s')))"
    assert _predicate(None) is None


def test_exact_resends_and_older_versions_are_counted_separately(spark):
    rows = [
        ("r1", '{"v": 1}', "o-1", dt.datetime(2026, 1, 1)),
        ("r2", '{"v": 1}', "o-1", dt.datetime(2026, 1, 1)),  # exact re-send of r1
        ("r3", '{"v": 2}', "o-1", dt.datetime(2026, 1, 2)),  # newer version of o-1
        ("r4", '{"v": 3}', "o-2", dt.datetime(2026, 1, 1)),
    ]
    df = spark.createDataFrame(rows, "_record_id string, value string, order_id string, updated_at timestamp")
    df = df.withColumn("_ingested_at", F.lit(INGESTED))
    latest = latest_versions(df, ["order_id"], "updated_at")
    assert (latest.exact_duplicates, latest.superseded) == (1, 1)
    assert sorted(r["_record_id"] for r in latest.rows.collect()) == ["r3", "r4"]


def test_merge_source_with_colliding_keys_is_refused_naming_the_keys(spark, tmp_path):
    config = make_config(tmp_path)
    df = spark.createDataFrame([("o-1", 1), ("o-1", 2), ("o-2", 3)], "order_id string, v int")
    with pytest.raises(io.MergeKeyCollision, match=r"order_id='o-1' \(2 rows\)"):
        io.merge_upsert(spark, df, config, "silver.collide", ["order_id"])


def test_a_source_unique_by_construction_is_merged_unchecked_and_still_counted(spark, tmp_path):
    """``unique_keys`` skips the pass that checks and counts the source: the first write takes its count from
    Delta's commit, a MERGE from Delta's metrics."""
    config = make_config(tmp_path)
    first = spark.createDataFrame([("o-1", 1), ("o-2", 2), ("o-3", 3)], "order_id string, v int")
    assert io.merge_upsert(spark, first, config, "silver.unique", ["order_id"], unique_keys=True) == {
        "numSourceRows": 3, "numTargetRowsInserted": 3}
    second = spark.createDataFrame([("o-3", 30), ("o-4", 4)], "order_id string, v int")
    metrics = io.merge_upsert(spark, second, config, "silver.unique", ["order_id"], unique_keys=True)
    assert (metrics["numSourceRows"], metrics["numTargetRowsInserted"], metrics["numTargetRowsUpdated"]) == (2, 1, 1)
    assert sorted(tuple(r) for r in io.read_table(spark, config, "silver.unique").collect()) == [
        ("o-1", 1), ("o-2", 2), ("o-3", 30), ("o-4", 4)]


def test_a_gate_caches_no_copy_of_a_frame_derived_from_the_callers_cache(spark, checked):
    # The frame silver gates validate is a filter of the cached batch (bots or erased people set aside).
    derived = checked.filter("_record_id != 'has_customer_id'")
    checked.count()
    before = persisted_rdd_ids(spark)
    gate = validate(derived, "silver.orders", ["_record_id"], max_error_ratio=1.0)
    assert gate.rows_checked == len(CASES) - 1
    assert persisted_rdd_ids(spark) == before
