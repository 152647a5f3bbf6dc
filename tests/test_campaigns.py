"""Campaign insight: the funnel only narrows and covers every session; last-touch and linear attribution hand out
exactly the revenue of touched orders; the A/B read-out recovers the generator's planted uplift and flags a split
that does not match the plan."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
from pyspark.sql import functions as F
from scipy import stats

from lib import io
from lib.campaigns import (
    ArmCounts,
    ab_test_arms,
    ab_test_read_out,
    campaign_performance,
    campaign_touches,
    first_purchases,
    funnel_daily,
    order_credits,
    planned_split,
)
from lib.generate import GeneratorSettings, generate
from lib.orders import REVENUE_STATUSES

DAY = dt.date(2026, 3, 10)


def at(days: float, hours: float = 12) -> dt.datetime:
    return dt.datetime.combine(DAY, dt.time()) + dt.timedelta(days=days, hours=hours)


# --- funnel -------------------------------------------------------------------------------------------------

FUNNEL_EVENTS = [  # event_id, session_id, event_ts, event_type, channel, campaign_id
    ("e1", "s1", at(0, 9), "page_view", "web", None),
    ("e2", "s1", at(0, 9.1), "product_view", "web", "cmp-a"),
    ("e3", "s1", at(0, 9.2), "add_to_cart", "web", "cmp-a"),
    ("e4", "s1", at(0, 9.3), "purchase", "web", "cmp-a"),
    ("e5", "s2", at(0, 10), "product_view", "app", None),
    ("e6", "s2", at(0, 10.1), "purchase", "app", None),  # bought without a recorded cart event
    ("e7", "s3", at(0, 11), "page_view", "web", None),
    ("e8", "s4", at(0, 12), "email_open", "email", "cmp-a"),
    ("e9", "s4", at(0, 12.2), "product_view", "web", "cmp-a"),
    ("e10", "s5", at(1, 8), "product_view", "web", None),
]


def test_funnel_sessions_count_at_every_step_up_to_the_deepest_they_reached(spark):
    events = spark.createDataFrame(FUNNEL_EVENTS, "event_id string, session_id string, event_ts timestamp, "
                                                  "event_type string, channel string, campaign_id string")
    rows = {(r["day"], r["channel"], r["campaign_id"]): r for r in funnel_daily(events).collect()}
    steps = lambda key: tuple(rows[key][c] for c in ("sessions", "product_view_sessions",  # noqa: E731
                                                     "add_to_cart_sessions", "purchase_sessions"))
    # s1 is the campaign's (its first campaign-tagged event); s2's purchase counts at the cart step too.
    assert steps((DAY, "web", "cmp-a")) == (1, 1, 1, 1)
    assert steps((DAY, "app", None)) == (1, 1, 1, 1)
    assert steps((DAY, "web", None)) == (1, 0, 0, 0)
    # A session takes the channel of its first event: an email open followed by a visit is an email session.
    assert steps((DAY, "email", "cmp-a")) == (1, 1, 0, 0)
    assert steps((DAY + dt.timedelta(days=1), "web", None)) == (1, 1, 0, 0)
    assert rows[(DAY, "email", "cmp-a")]["add_to_cart_rate"] == 0.0
    assert rows[(DAY, "web", None)]["add_to_cart_rate"] is None  # nobody to convert at that step
    assert rows[(DAY, "web", "cmp-a")]["conversion_rate"] == 1.0


# --- attribution --------------------------------------------------------------------------------------------

TOUCH_EVENTS = [  # event_id, person_id, session_id, event_ts, campaign_id
    ("t1", "p1", "s1", at(-2), "cmp-a"),
    ("t2", "p1", "s1", at(-2, 13), "cmp-a"),  # same session, same campaign: still one touch
    ("t3", "p1", "s2", at(-1), "cmp-b"),
    ("t4", "p1", "s0", at(-40), "cmp-c"),  # before the 30-day lookback of o1
    ("t5", "p1", "s3", at(0, 18), "cmp-c"),  # after o1, before o3
    ("t6", "p3", "s4", at(-1), "cmp-ghost"),  # a campaign silver.campaigns does not know
]
PURCHASES = [  # order_id, person_id, order_ts, total_amount
    ("o1", "p1", at(0), Decimal("10.01")),
    ("o2", "p2", at(0), Decimal("50.00")),  # no touch: not attributed
    ("o3", "p1", at(1), Decimal("7.00")),
    ("o4", "p3", at(0), Decimal("3.00")),
]
CAMPAIGNS = [  # campaign_id, name, channel, objective, start_date, end_date, daily_budget
    ("cmp-a", "A", "email", "conversion", DAY - dt.timedelta(days=9), DAY + dt.timedelta(days=30), Decimal("1.00")),
    ("cmp-b", "B", "ads", "conversion", DAY, DAY, Decimal("4.00")),
    ("cmp-c", "C", "ads", "awareness", DAY - dt.timedelta(days=60), None, Decimal("0.00")),
]


@pytest.fixture(scope="module")
def attribution(spark):
    events = spark.createDataFrame(TOUCH_EVENTS, "event_id string, person_id string, session_id string, "
                                                 "event_ts timestamp, campaign_id string")
    purchases = spark.createDataFrame(PURCHASES, "order_id string, person_id string, order_ts timestamp, "
                                                 "total_amount decimal(12,2)")
    campaigns = spark.createDataFrame(CAMPAIGNS, "campaign_id string, name string, channel string, objective string, "
                                                 "start_date date, end_date date, daily_budget decimal(12,2)")
    touches = campaign_touches(events)
    credits = order_credits(purchases, touches, lookback_days=30).cache()
    performance = campaign_performance(campaigns, touches, credits, first_purchases(purchases), DAY)
    return ({(r["order_id"], r["campaign_id"]): r for r in credits.collect()},
            {r["campaign_id"]: r for r in performance.collect()})


def test_two_touches_split_an_order_in_halves_and_the_latest_takes_it_all_under_last_touch(attribution):
    credits, _ = attribution
    assert set(credits) == {("o1", "cmp-a"), ("o1", "cmp-b"), ("o3", "cmp-a"), ("o3", "cmp-b"), ("o3", "cmp-c"),
                            ("o4", "cmp-ghost")}
    # 1001 cents in two shares: the odd cent goes to the earlier touch.
    assert (credits[("o1", "cmp-a")]["linear_cents"], credits[("o1", "cmp-b")]["linear_cents"]) == (501, 500)
    assert (credits[("o1", "cmp-a")]["last_touch_cents"], credits[("o1", "cmp-b")]["last_touch_cents"]) == (0, 1001)
    assert credits[("o1", "cmp-a")]["linear_share"] == 0.5
    # o3 has three touches in its lookback (cmp-c's old one is out of o1's but cmp-c touched again after o1).
    assert [credits[("o3", c)]["linear_cents"] for c in ("cmp-a", "cmp-b", "cmp-c")] == [234, 233, 233]
    assert credits[("o3", "cmp-c")]["last_touch_cents"] == 700


def test_campaign_performance_reconciles_and_prices_new_customers(attribution):
    _, performance = attribution
    touched_revenue = Decimal("10.01") + Decimal("7.00") + Decimal("3.00")
    assert sum(r["revenue_linear"] for r in performance.values()) == touched_revenue
    assert sum(r["revenue_last_touch"] for r in performance.values()) == touched_revenue
    a, b, c = performance["cmp-a"], performance["cmp-b"], performance["cmp-c"]
    assert (a["revenue_linear"], b["revenue_linear"], c["revenue_linear"]) == (
        Decimal("7.35"), Decimal("7.33"), Decimal("2.33"))
    assert (a["touches"], a["people_touched"], c["touches"]) == (1, 1, 2)
    assert (a["orders_last_touch"], b["orders_last_touch"], a["orders_linear"]) == (0, 1, round(1 / 2 + 1 / 3, 4))
    # Spend: 10 days of cmp-a up to DAY, one day of cmp-b.
    assert (a["spend"], b["spend"], c["spend"]) == (Decimal("10.00"), Decimal("4.00"), Decimal("0.00"))
    assert b["roi_last_touch"] == pytest.approx((10.01 - 4.0) / 4.0, abs=1e-4)
    assert a["roi_linear"] == pytest.approx((7.35 - 10.0) / 10.0, abs=1e-4)
    # p1's first purchase o1: last touch cmp-b, linear half each; o3 is a repeat purchase.
    assert (b["new_customers_last_touch"], b["cac_last_touch"], a["cac_last_touch"]) == (1, 4.0, None)
    assert (a["new_customers_linear"], a["cac_linear"]) == (0.5, 20.0)
    assert c["roi_last_touch"] is None  # no spend, no return on it
    ghost = performance["cmp-ghost"]  # only seen in events: its revenue counts, its spend is unknown
    assert (ghost["name"], ghost["spend"], ghost["revenue_last_touch"]) == (None, None, Decimal("3.00"))


# --- A/B statistics -----------------------------------------------------------------------------------------

def test_planned_split_reads_even_and_weighted_variants():
    assert planned_split("A|B") == {"A": 0.5, "B": 0.5}
    assert planned_split("A:30|B:70") == pytest.approx({"A": 0.3, "B": 0.7})
    assert planned_split("") == {} and planned_split("A") == {}
    with pytest.raises(ValueError, match="'B:x'"):
        planned_split("A|B:x")


def test_z_test_agrees_with_a_chi_square_on_the_two_by_two_table():
    control, treatment = ArmCounts("A", 1000, 100), ArmCounts("B", 1000, 130)
    rows = ab_test_read_out("cmp", {"A": 0.5, "B": 0.5}, [treatment, control], 0.05, 0.001)
    assert [r["variant"] for r in rows] == ["A", "B"] and rows[0]["is_control"]
    b = rows[1]
    chi2, p_value, _, _ = stats.chi2_contingency([[100, 900], [130, 870]], correction=False)
    assert b["p_value"] == pytest.approx(p_value) and b["z_score"] ** 2 == pytest.approx(chi2)
    assert b["absolute_uplift"] == pytest.approx(0.03) and b["relative_uplift"] == pytest.approx(0.3)
    assert b["ci_low"] < 0.03 < b["ci_high"] and b["ci_high"] - b["ci_low"] == pytest.approx(
        2 * 1.959964 * (0.1 * 0.9 / 1000 + 0.13 * 0.87 / 1000) ** 0.5, rel=1e-5)
    assert b["significant"] == (p_value < 0.05)
    assert rows[0]["absolute_uplift"] is None and not b["srm_detected"]


def test_sample_ratio_mismatch_is_flagged_against_the_planned_split():
    even = {"A": 0.5, "B": 0.5}
    skewed = ab_test_read_out("cmp", even, [ArmCounts("A", 1000, 50), ArmCounts("B", 850, 50)], 0.05, 0.001)
    assert skewed[0]["srm_detected"] and skewed[0]["srm_p_value"] < 0.001
    assert not ab_test_read_out("cmp", even, [ArmCounts("A", 1000, 50), ArmCounts("B", 980, 50)],
                                0.05, 0.001)[0]["srm_detected"]
    # 300:700 is what a 30/70 plan asks for; an arm nobody planned is a mismatch whatever its size.
    assert not ab_test_read_out("cmp", {"A": 0.3, "B": 0.7}, [ArmCounts("A", 300, 9), ArmCounts("B", 700, 30)],
                                0.05, 0.001)[0]["srm_detected"]
    stray = ab_test_read_out("cmp", even, [ArmCounts("A", 500, 9), ArmCounts("B", 500, 9), ArmCounts("C", 3, 0)],
                             0.05, 0.001)
    assert [r["variant"] for r in stray] == ["A", "B", "C"] and stray[0]["srm_detected"]


@pytest.fixture(scope="module")
def ab_landing(tmp_path_factory):
    """Enough exposed people for the planted uplift to be measurable (~900 per arm): many customers, two days
    (the test starts on day 0, so everyone who signed up before is exposed)."""
    root = tmp_path_factory.mktemp("ab_landing")
    generate(root, GeneratorSettings(customers=3000, days=2, seed=7, products=40))
    return root


def test_planted_uplift_lies_within_the_confidence_interval(spark, ab_landing):
    planted = json.loads((ab_landing / "ground_truth" / "campaign_uplift.json").read_text())
    # Campaign events and campaign purchases carry the customer id, which stands for the person here.
    events = (spark.read.schema("event_id string, event_ts string, customer_id string, event_type string, "
                                "campaign_id string, variant string").json(str(ab_landing / "events"))
              .withColumn("event_ts", F.to_timestamp("event_ts"))
              .filter(F.col("event_type").isNotNull() & F.col("customer_id").isNotNull())
              .withColumn("person_id", F.col("customer_id")))
    arms = [ArmCounts(r["variant"], r["exposed"], r["converters"])
            for r in ab_test_arms(events, [planted["campaign_id"]], 7).collect()]
    rows = {r["variant"]: r for r in ab_test_read_out(planted["campaign_id"], planted["planned_split"], arms,
                                                      0.05, 0.001)}
    treatment = rows[planted["treatment_variant"]]
    assert rows[planted["control_variant"]]["exposed"] > 800 and treatment["exposed"] > 800
    assert treatment["ci_low"] <= planted["planted_absolute_uplift"] <= treatment["ci_high"]
    assert treatment["significant"] and not treatment["srm_detected"]
    for variant, probability in planted["conversion_probability"].items():
        assert rows[variant]["conversion_rate"] == pytest.approx(probability, abs=0.03)


# --- the job on the end-to-end run --------------------------------------------------------------------------

def test_campaign_insight_on_the_pipeline_run(spark, e2e_run):
    config, tables, runs = e2e_run
    run = next(r for r in runs if r.job == "gold_campaign_insight")
    assert run.status == "succeeded", run.error
    for table in ("gold.funnel_daily", "gold.campaign_performance", "gold.ab_test_results"):
        assert tables[table].balanced and tables[table].published > 0, tables[table]
    read = lambda table: io.read_table(spark, config, table)  # noqa: E731
    funnel, performance, ab = read("gold.funnel_daily"), read("gold.campaign_performance"), read(
        "gold.ab_test_results")
    events = read("silver.events")

    totals = funnel.agg(*[F.sum(c).alias(c) for c in ("sessions", "product_view_sessions", "add_to_cart_sessions",
                                                      "purchase_sessions")]).first()
    assert totals["sessions"] == events.select("session_id").distinct().count()
    assert totals["purchase_sessions"] == events.filter("event_type = 'purchase'").select(
        "session_id").distinct().count() > 0
    assert funnel.filter("product_view_sessions > sessions OR add_to_cart_sessions > product_view_sessions "
                         "OR purchase_sessions > add_to_cart_sessions").count() == 0
    assert funnel.filter(F.col("campaign_id").isNotNull()).count() > 0

    for name in ("silver.events", "silver.orders", "silver.identity_map"):
        read(name).createOrReplaceTempView(name.replace(".", "_"))
    # The revenue of purchases with any campaign event of the buyer in the 30 days before, straight from silver.
    touched_revenue = spark.sql(f"""
        WITH person AS (SELECT identifier_type, identifier, person_id FROM silver_identity_map),
        touch AS (
            SELECT coalesce(c.person_id, p.person_id) AS person_id, e.event_ts FROM silver_events e
            LEFT JOIN person c ON c.identifier_type = 'anonymous_id' AND c.identifier = e.anonymous_id
            LEFT JOIN person p ON p.identifier_type = 'customer_id' AND p.identifier = e.customer_id
            WHERE e.campaign_id IS NOT NULL),
        purchase AS (
            SELECT o.order_id, o.order_ts, o.total_amount, p.person_id FROM silver_orders o
            JOIN person p ON p.identifier_type = 'customer_id' AND p.identifier = o.customer_id
            WHERE o.status IN ({", ".join(f"'{s}'" for s in REVENUE_STATUSES)}))
        SELECT sum(total_amount) FROM purchase o WHERE EXISTS (
            SELECT 1 FROM touch t WHERE t.person_id = o.person_id AND t.event_ts < o.order_ts
            AND t.event_ts >= o.order_ts - INTERVAL 30 DAYS)""").first()[0]
    attributed = performance.agg(F.sum("revenue_linear"), F.sum("revenue_last_touch")).first()
    assert touched_revenue > 0
    assert attributed[0] == attributed[1] == touched_revenue
    assert performance.filter("spend IS NULL OR spend < 0").count() == 0

    arms = {r["variant"]: r for r in ab.collect()}
    assert set(arms) == {"A", "B"} and arms["A"]["is_control"]
    exposed = events.filter("campaign_id = 'cmp-02' AND variant IS NOT NULL AND customer_id IS NOT NULL").select(
        "customer_id").distinct()
    assert arms["A"]["exposed"] + arms["B"]["exposed"] == exposed.count()
    assert arms["B"]["ci_low"] <= arms["B"]["absolute_uplift"] <= arms["B"]["ci_high"]
