"""Customer 360 transformations on small hand-made fixtures, each checked against a plain computation."""

from __future__ import annotations

import datetime as dt
import math
import random

import numpy as np
import pytest
from pyspark.sql import functions as F

from lib import profiles
from lib.schemas import rfm_segment_rules

AS_OF = dt.date(2026, 3, 31)


def _rfm_fixture(spark, people: int = 60, seed: int = 7):
    rng = random.Random(seed)
    rows = []
    for i in range(people):
        orders = rng.choice([0, 1, 1, 1, 2, 2, 3, 5, 8])  # many ties, and people without a purchase
        rows.append((f"p-{i:03d}", orders, round(rng.uniform(5, 400), 2) * orders if orders else 0.0,
                     rng.choice([0, 3, 3, 10, 40, 90, 200]) if orders else None))
    return rows, spark.createDataFrame(
        rows, "person_id string, orders_lifetime long, revenue_lifetime double, days_since_last_purchase int")


def _plain_scores(values: list[float], higher_is_better: bool) -> list[int]:
    """Quintile scores by the textbook nearest-rank quantile (numpy's inverted_cdf), written without Spark."""
    thresholds = [np.percentile(values, q, method="inverted_cdf") for q in (20, 40, 60, 80)]
    above = [sum(v > t for t in thresholds) for v in values]
    return [1 + a if higher_is_better else 5 - a for a in above]


def test_a_day_is_cut_at_the_session_time_zone_midnights_whatever_the_driver_zone(spark,
                                                                                 driver_in_another_time_zone):
    # Timestamps as Spark reads them from the sources: in the session's zone, UTC.
    moments = spark.createDataFrame([(m,) for m in ("2026-03-30 23:59:59", "2026-03-31 00:00:00",
                                                    "2026-03-31 23:59:59", "2026-04-01 00:00:00")], "ts string")
    moments = moments.select(F.col("ts").cast("timestamp").alias("ts"))
    on_the_day = moments.filter((F.col("ts") >= profiles.day_start(AS_OF)) & (F.col("ts") < profiles.day_end(AS_OF)))
    assert sorted(row["ts"] for row in on_the_day.select(F.col("ts").cast("string")).collect()) == [
        "2026-03-31 00:00:00", "2026-03-31 23:59:59"]


def test_rfm_scores_match_a_plain_quintile_computation(spark):
    rows, features = _rfm_fixture(spark)
    scored = {r["person_id"]: r for r in profiles.rfm_scores(features, rfm_segment_rules()).collect()}
    buyers = [r for r in rows if r[1] > 0]
    expected_r = _plain_scores([r[3] for r in buyers], higher_is_better=False)
    expected_f = _plain_scores([r[1] for r in buyers], higher_is_better=True)
    expected_m = _plain_scores([r[2] for r in buyers], higher_is_better=True)
    for (person, *_), r, f, m in zip(buyers, expected_r, expected_f, expected_m):
        got = scored[person]
        assert (got["r_score"], got["f_score"], got["m_score"]) == (r, f, m), person
        assert got["rfm_score"] == f"{r}{f}{m}"


def test_people_without_purchases_are_scored_zero_and_named_so(spark):
    rows, features = _rfm_fixture(spark)
    scored = profiles.rfm_scores(features, rfm_segment_rules()).filter("orders_lifetime = 0").collect()
    assert len(scored) == sum(1 for r in rows if r[1] == 0) > 0
    assert {(r["r_score"], r["f_score"], r["m_score"], r["rfm_segment"]) for r in scored} == {
        (0, 0, 0, "No purchase")}


def test_equal_values_always_share_a_score(spark):
    _, features = _rfm_fixture(spark)
    scored = profiles.rfm_scores(features, rfm_segment_rules()).filter("orders_lifetime > 0")
    for value, score in (("frequency", "f_score"), ("recency_days", "r_score"), ("monetary", "m_score")):
        assert scored.groupBy(value).agg(F.countDistinct(score).alias("scores")).filter("scores > 1").count() == 0, \
            value


def test_every_cell_of_the_rfm_grid_has_a_named_segment():
    rules = rfm_segment_rules()
    names = {rule.segment for rule in rules}
    assert len(names) == 11
    for r in range(1, 6):
        for fm in range(1, 6):
            assert any(rule.recency[0] <= r <= rule.recency[1]
                       and rule.frequency_monetary[0] <= fm <= rule.frequency_monetary[1] for rule in rules), (r, fm)


def test_rfm_segment_follows_the_first_matching_rule(spark):
    features = spark.createDataFrame(
        [(f"p-{i}", i + 1, float(10 * (i + 1)), 100 - 10 * i) for i in range(10)],
        "person_id string, orders_lifetime long, revenue_lifetime double, days_since_last_purchase int")
    for row in profiles.rfm_scores(features, rfm_segment_rules()).collect():
        fm = math.floor((row["f_score"] + row["m_score"]) / 2 + 0.5)
        expected = next(rule.segment for rule in rfm_segment_rules()
                        if rule.recency[0] <= row["r_score"] <= rule.recency[1]
                        and rule.frequency_monetary[0] <= fm <= rule.frequency_monetary[1])
        assert row["rfm_segment"] == expected


def _ts(days_before: int) -> dt.datetime:
    return dt.datetime.combine(AS_OF - dt.timedelta(days=days_before), dt.time(12))


@pytest.mark.parametrize(("purchase_days_before", "stage"), [
    ([], "prospect"),
    ([10], "new"),
    ([100, 20], "active"),
    ([400, 20], "reactivated"),
    ([300, 120], "at_risk"),
    ([400, 200], "churned"),
])
def test_lifecycle_stage_follows_the_documented_rules(spark, purchase_days_before, stage):
    rules = profiles.LifecycleRules(new_days=30, active_days=90, churn_days=180)
    purchases = spark.createDataFrame([("p-1", _ts(d)) for d in purchase_days_before] or [("p-0", _ts(1))],
                                      "person_id string, order_ts timestamp")
    first = _ts(max(purchase_days_before)) if purchase_days_before else None
    last = min(purchase_days_before) if purchase_days_before else None
    features = spark.createDataFrame([("p-1", len(purchase_days_before), first, last, AS_OF)],
                                     "person_id string, orders_lifetime long, first_purchase_ts timestamp, "
                                     "days_since_last_purchase int, as_of date")
    assert profiles.lifecycle_stage(features, purchases, rules).first()["lifecycle_stage"] == stage


def test_customer_features_count_windows_sessions_and_abandoned_carts(spark):
    persons = spark.createDataFrame(
        [("p-1", dt.date(1990, 6, 1), "f", "Berlin", "DE", True, False, _ts(300), 1),
         ("p-2", None, None, None, None, False, False, _ts(5), 1)],
        "person_id string, birth_date date, gender string, city string, country string, consent_email boolean, "
        "consent_ads boolean, first_signup_ts timestamp, customer_records long")
    purchases = spark.createDataFrame(
        [("o-1", "p-1", _ts(2), 30.0, "web"), ("o-2", "p-1", _ts(20), 50.0, "app"), ("o-3", "p-1", _ts(60), 20.0,
                                                                                       "web")],
        "order_id string, person_id string, order_ts timestamp, total_amount double, channel string")
    items = spark.createDataFrame(
        [("o-1", "sku-1", 1, 30.0), ("o-2", "sku-1", 1, 20.0), ("o-2", "sku-2", 2, 15.0), ("o-3", "sku-2", 1, 20.0)],
        "order_id string, product_id string, quantity int, line_amount double")
    products = spark.createDataFrame([("sku-1", "shoes", 30.0), ("sku-2", "books", 15.0), ("sku-3", "books", 40.0),
                                      ("sku-4", "shoes", 10.0)], "product_id string, category string, price double")
    events = spark.createDataFrame([
        ("e-1", "p-1", "s-1", "product_view", _ts(2), "web", None),
        ("e-2", "p-1", "s-1", "add_to_cart", _ts(2), "web", None),
        ("e-3", "p-1", "s-1", "purchase", _ts(2), "web", None),
        ("e-4", "p-1", "s-2", "add_to_cart", _ts(45), "web", "cmp-1"),
        ("e-5", "p-1", None, "email_open", _ts(45), "email", "cmp-1"),
        ("e-6", "p-2", "s-3", "product_view", _ts(1), "app", None),
    ], "event_id string, person_id string, session_id string, event_type string, event_ts timestamp, channel string, "
       "campaign_id string")
    rows = {r["person_id"]: r for r in profiles.customer_features(persons, purchases, items, products, events, AS_OF,
                                                                   (7, 30, 90)).collect()}
    buyer, browser = rows["p-1"], rows["p-2"]
    assert (buyer["orders_7d"], buyer["orders_30d"], buyer["orders_90d"], buyer["orders_lifetime"]) == (1, 2, 3, 3)
    assert buyer["revenue_30d"] == 80.0 and buyer["average_order_value"] == pytest.approx(100 / 3)
    assert (buyer["units"], buyer["distinct_categories"], buyer["favourite_category"]) == (5, 2, "books")
    assert buyer["favourite_channel"] == "web"
    # two lines of the dearest shoes, two of the cheapest book, and the prior's mid-priced lines
    assert buyer["price_position"] == pytest.approx((2 * 1.0 + 2 * 0.0 + 0.5 * profiles.PRICE_PRIOR_LINES)
                                                    / (4 + profiles.PRICE_PRIOR_LINES))
    assert (buyer["sessions_lifetime"], buyer["sessions_7d"], buyer["cart_sessions"]) == (2, 1, 2)
    assert buyer["cart_abandonment_rate"] == 0.5 and buyer["campaign_sessions"] == 1 and buyer["email_opens"] == 1
    assert (buyer["days_since_last_purchase"], buyer["days_since_last_visit"]) == (2, 2)
    assert buyer["age_band"] == "35-44" and buyer["tenure_days"] == 300
    assert (browser["orders_lifetime"], browser["revenue_lifetime"], browser["product_views_lifetime"]) == (0, 0, 1)
    assert browser["days_since_last_purchase"] is None and browser["purchase_recency_share"] == 1.0
    assert browser["age_band"] == "unknown"


def test_nothing_after_as_of_counts(spark):
    identity = spark.createDataFrame([("customer_id", "c-1", "p-1")],
                                     "identifier_type string, identifier string, person_id string")
    orders = spark.createDataFrame(
        [("o-1", "c-1", _ts(3), "delivered"), ("o-2", "c-1", _ts(-1), "delivered"), ("o-3", "c-1", _ts(1),
                                                                                       "cancelled")],
        "order_id string, customer_id string, order_ts timestamp, status string")
    assert [r["order_id"] for r in profiles.person_purchases(orders, identity, AS_OF).collect()] == ["o-1"]
