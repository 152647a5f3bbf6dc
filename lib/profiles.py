"""Customer 360: one row of behaviour features per person, RFM scores and segments, lifecycle stage.

Everything is computed "as of" the end of one day (``as_of``): rows after it are ignored, and every recency,
tenure and window is measured from it, so a profile can be rebuilt for any past date. A person is a
``silver.identity_map`` person with at least one CRM customer record; anonymous visitors have no profile.
Purchases are orders whose status counts as revenue (cancelled and returned orders are not purchases).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from lib.orders import REVENUE_STATUSES

AGE_BANDS = [(0, 25, "<25"), (25, 35, "25-34"), (35, 45, "35-44"), (45, 55, "45-54"), (55, 65, "55-64"),
             (65, 200, "65+")]
# Activity counts: 0, not null, for a person without that activity.
WINDOWED_COUNTS = ["orders", "revenue", "sessions", "product_views", "add_to_carts"]
PLAIN_COUNTS = ["purchase_days", "units", "distinct_categories", "email_opens", "email_clicks", "cart_sessions",
                "campaign_sessions"]
PRICE_PRIOR_LINES = 3
LIFECYCLE_STAGES = ["prospect", "new", "active", "reactivated", "at_risk", "churned"]


def day_start(day: dt.date) -> Column:
    """Midnight starting ``day`` in the session's time zone, the zone ``to_date`` reads timestamps in. A Python
    datetime literal would be read in this process's local zone instead."""
    return F.lit(day).cast("timestamp")


def day_end(as_of: dt.date) -> Column:
    """The first instant after ``as_of``: rows strictly before it are in the profile."""
    return day_start(as_of + dt.timedelta(days=1))


def person_of(identity_map: DataFrame, identifier_type: str) -> DataFrame:
    """(identifier, person_id) for one identifier type of silver.identity_map."""
    return identity_map.filter(F.col("identifier_type") == identifier_type).select(
        F.col("identifier"), "person_id"
    )


def people(customers: DataFrame, identity_map: DataFrame) -> DataFrame:
    """One row per known person: demographics and consent from the person's most recently updated customer
    record (the latest the person told us), and when the person first signed up with any record."""
    with_person = customers.join(person_of(identity_map, "customer_id").withColumnRenamed("identifier",
                                                                                          "customer_id"),
                                 "customer_id")
    newest = Window.partitionBy("person_id").orderBy(F.col("updated_at").desc(), F.col("customer_id"))
    signup = Window.partitionBy("person_id")
    return (
        with_person.withColumn("_rank", F.row_number().over(newest))
        .withColumn("first_signup_ts", F.min("signup_ts").over(signup))
        .withColumn("customer_records", F.count(F.lit(1)).over(signup))
        .filter("_rank = 1")
        .select("person_id", "birth_date", "gender", "city", "country", "consent_email", "consent_ads",
                "first_signup_ts", "customer_records")
    )


def person_purchases(orders: DataFrame, identity_map: DataFrame, as_of: dt.date) -> DataFrame:
    """Orders that count as purchases up to ``as_of``, with the buyer's person_id."""
    return (
        orders.filter(F.col("status").isin(REVENUE_STATUSES) & (F.col("order_ts") < day_end(as_of)))
        .join(person_of(identity_map, "customer_id").withColumnRenamed("identifier", "customer_id"), "customer_id")
    )


def person_events(events: DataFrame, identity_map: DataFrame, as_of: dt.date) -> DataFrame:
    """Events up to ``as_of`` with the person behind the cookie, else behind the logged-in customer id."""
    by_cookie = person_of(identity_map, "anonymous_id").select(
        F.col("identifier").alias("anonymous_id"), F.col("person_id").alias("_cookie_person"))
    by_customer = person_of(identity_map, "customer_id").select(
        F.col("identifier").alias("customer_id"), F.col("person_id").alias("_customer_person"))
    return (
        events.filter(F.col("event_ts") < day_end(as_of))
        .join(by_cookie, "anonymous_id", "left")
        .join(by_customer, "customer_id", "left")
        .withColumn("person_id", F.coalesce("_cookie_person", "_customer_person"))
        .filter(F.col("person_id").isNotNull())
        .drop("_cookie_person", "_customer_person")
    )


def _days_since(ts: Column, as_of: dt.date) -> Column:
    return F.datediff(F.lit(as_of), F.to_date(ts))


def _favourite(rows: DataFrame, value: str, name: str) -> DataFrame:
    """person_id, <name>: the most frequent ``value`` per person (ties: alphabetically first)."""
    counts = rows.filter(F.col(value).isNotNull()).groupBy("person_id", value).agg(F.count(F.lit(1)).alias("_n"))
    ranked = Window.partitionBy("person_id").orderBy(F.col("_n").desc(), F.col(value))
    return counts.withColumn("_rank", F.row_number().over(ranked)).filter("_rank = 1").select(
        "person_id", F.col(value).alias(name))


def _windowed(condition: Column, value: Column, ts: Column, as_of: dt.date, windows: Sequence[int],
              name: str, aggregate) -> list[Column]:
    """``aggregate`` of ``value`` over each trailing window of days and over the lifetime."""
    columns = [aggregate(F.when(condition, value)).alias(f"{name}_lifetime")]
    for days in windows:
        since = day_start(as_of - dt.timedelta(days=days - 1))
        columns.append(aggregate(F.when(condition & (ts >= since), value)).alias(f"{name}_{days}d"))
    return columns


def _count(value: Column) -> Column:
    return F.count(value)


def _sum(value: Column) -> Column:
    return F.sum(value)


def _count_distinct(value: Column) -> Column:
    return F.countDistinct(value)


def price_positions(products: DataFrame) -> DataFrame:
    """product_id, category, price_position: where the product's price lies in its category, 0 = cheapest,
    1 = dearest; a person's average says how price-sensitive they are, whatever categories they buy in."""
    in_category = Window.partitionBy("category").orderBy("price")
    return products.select("product_id", "category", F.percent_rank().over(in_category).alias("price_position"))


def purchase_features(purchases: DataFrame, order_items: DataFrame, products: DataFrame, as_of: dt.date,
                      windows: Sequence[int]) -> DataFrame:
    """Per person: orders and revenue per window, order value, units, item price, categories, channel."""
    always = F.lit(True)
    totals = purchases.groupBy("person_id").agg(
        *_windowed(always, F.col("order_id"), F.col("order_ts"), as_of, windows, "orders", _count),
        *_windowed(always, F.col("total_amount").cast("double"), F.col("order_ts"), as_of, windows, "revenue",
                   _sum),
        F.countDistinct(F.to_date("order_ts")).alias("purchase_days"),
        F.min("order_ts").alias("first_purchase_ts"),
        F.max("order_ts").alias("last_purchase_ts"),
    )
    lines = order_items.join(purchases.select("order_id", "person_id"), "order_id").join(
        price_positions(products), "product_id", "left")
    units = lines.groupBy("person_id").agg(
        F.sum("quantity").alias("units"),
        F.sum(F.col("line_amount").cast("double")).alias("_line_revenue"),
        F.countDistinct("category").alias("distinct_categories"),
        # Shrunk toward the middle by PRICE_PRIOR_LINES imaginary mid-priced lines, so one cheap order does not
        # make someone a bargain hunter while fifteen do.
        ((F.sum("price_position") + 0.5 * PRICE_PRIOR_LINES) / (F.count("price_position") + PRICE_PRIOR_LINES))
        .alias("price_position"),
    )
    return (
        totals.join(units, "person_id", "left")
        .join(_favourite(lines, "category", "favourite_category"), "person_id", "left")
        .join(_favourite(purchases, "channel", "favourite_channel"), "person_id", "left")
        .withColumn("average_order_value", F.col("revenue_lifetime") / F.col("orders_lifetime"))
        .withColumn("items_per_order", F.col("units") / F.col("orders_lifetime"))
        .withColumn("average_item_price", F.col("_line_revenue") / F.col("units"))
        .drop("_line_revenue")
    )


def engagement_features(events: DataFrame, as_of: dt.date, windows: Sequence[int]) -> DataFrame:
    """Per person: sessions, product views and add-to-carts per window, cart abandonment, email and ad
    engagement, first and last visit."""
    ts, session = F.col("event_ts"), F.col("session_id")
    kind = F.col("event_type")
    is_web = F.col("channel") != "email"
    per_session = events.filter(is_web).groupBy("person_id", "session_id").agg(
        F.max((kind == "add_to_cart").cast("int")).alias("_carted"),
        F.max((kind == "purchase").cast("int")).alias("_bought"),
        F.max(F.col("campaign_id").isNotNull().cast("int")).alias("_from_campaign"),
    )
    carts = per_session.groupBy("person_id").agg(
        F.sum("_carted").alias("cart_sessions"),
        F.sum(F.when((F.col("_carted") == 1) & (F.col("_bought") == 0), 1).otherwise(0)).alias("_abandoned"),
        F.sum("_from_campaign").alias("campaign_sessions"),
    )
    activity = events.groupBy("person_id").agg(
        *_windowed(is_web, session, ts, as_of, windows, "sessions", _count_distinct),
        *_windowed(kind == "product_view", F.col("event_id"), ts, as_of, windows, "product_views", _count),
        *_windowed(kind == "add_to_cart", F.col("event_id"), ts, as_of, windows, "add_to_carts", _count),
        F.count(F.when(kind == "email_open", 1)).alias("email_opens"),
        F.count(F.when(kind == "email_click", 1)).alias("email_clicks"),
        F.min(F.when(is_web, ts)).alias("first_visit_ts"),
        F.max(F.when(is_web, ts)).alias("last_visit_ts"),
    )
    return activity.join(carts, "person_id", "left").withColumn(
        "cart_abandonment_rate",
        F.when(F.col("cart_sessions") > 0, F.col("_abandoned") / F.col("cart_sessions")),
    ).withColumn(
        "email_click_rate", F.when(F.col("email_opens") > 0, F.col("email_clicks") / F.col("email_opens"))
    ).drop("_abandoned")


def _age_band(birth_date: Column, as_of: dt.date) -> Column:
    age = F.floor(F.months_between(F.lit(as_of), birth_date) / 12)
    band = F.lit("unknown")
    for low, high, label in reversed(AGE_BANDS):
        band = F.when((age >= low) & (age < high), label).otherwise(band)
    return band


def customer_features(persons: DataFrame, purchases: DataFrame, order_items: DataFrame, products: DataFrame,
                      events: DataFrame, as_of: dt.date, windows: Sequence[int]) -> DataFrame:
    """gold.customer_features: one row per person; counts are 0 (not null) for people without that activity,
    and rates per active week are measured from the person's first visit or purchase."""
    features = (
        persons.filter(F.col("first_signup_ts").isNull() | (F.col("first_signup_ts") < day_end(as_of)))
        .join(purchase_features(purchases, order_items, products, as_of, windows), "person_id", "left")
        .join(engagement_features(events, as_of, windows), "person_id", "left")
    )
    windowed = [f"{name}_{window}" for name in WINDOWED_COUNTS
                for window in ["lifetime", *(f"{days}d" for days in windows)]]
    # Seen from the first visit or purchase (signup only for people never seen): a signup years before the data
    # starts must not dilute the rates.
    first_activity = F.coalesce(F.least(F.to_date("first_visit_ts"), F.to_date("first_purchase_ts")),
                                F.to_date("first_signup_ts"))
    active_weeks = (F.datediff(F.lit(as_of), first_activity) + 1) / 7
    return (
        features.fillna(0, subset=[*windowed, *PLAIN_COUNTS])
        .withColumn("as_of", F.lit(as_of))
        .withColumn("age_band", _age_band(F.col("birth_date"), as_of))
        .withColumn("tenure_days", _days_since("first_signup_ts", as_of))
        .withColumn("days_since_last_purchase", _days_since("last_purchase_ts", as_of))
        .withColumn("days_since_last_visit", _days_since("last_visit_ts", as_of))
        .withColumn("active_weeks", active_weeks)
        .withColumn("orders_per_week", F.col("orders_lifetime") / F.col("active_weeks"))
        .withColumn("sessions_per_week", F.col("sessions_lifetime") / F.col("active_weeks"))
        .withColumn("purchase_recency_share",
                    F.coalesce(F.col("days_since_last_purchase") / (F.col("active_weeks") * 7), F.lit(1.0)))
        .drop("birth_date")
    )


# --- RFM ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RfmRule:
    segment: str
    recency: tuple[int, int]
    frequency_monetary: tuple[int, int]


def quintile_score(value: Column, thresholds: Column, higher_is_better: bool = True) -> Column:
    """1..5 from the 20/40/60/80% quantiles of the purchasers: 1 + how many thresholds lie strictly below the
    value, so equal values always share a score; recency is reversed (fewer days since is better)."""
    above = F.aggregate(thresholds, F.lit(0), lambda acc, t: acc + F.when(value > t, 1).otherwise(0))
    return (1 + above) if higher_is_better else (5 - above)


def rfm_scores(features: DataFrame, rules: Sequence[RfmRule]) -> DataFrame:
    """recency_days, frequency, monetary and their 1..5 scores (quintiles among purchasers, computed by Spark's
    percentile_approx: exact for up to ~10,000 distinct values, within 0.01% of rank beyond), the combined
    ``rfm_score`` string and the named segment from ``rules`` (first match on R and on FM = round((F+M)/2)).
    People without purchases get scores 0 and the segment ``No purchase`` rather than a made-up quintile."""
    purchasers = features.filter(F.col("orders_lifetime") > 0)
    quantiles = [0.2, 0.4, 0.6, 0.8]
    thresholds = purchasers.agg(
        F.percentile_approx("days_since_last_purchase", quantiles, 100000).alias("_r"),
        F.percentile_approx("orders_lifetime", quantiles, 100000).alias("_f"),
        F.percentile_approx("revenue_lifetime", quantiles, 100000).alias("_m"),
    )
    bought = F.col("orders_lifetime") > 0
    scored = (
        features.crossJoin(F.broadcast(thresholds))
        .withColumn("recency_days", F.col("days_since_last_purchase"))
        .withColumn("frequency", F.col("orders_lifetime"))
        .withColumn("monetary", F.col("revenue_lifetime"))
        .withColumn("r_score", F.when(bought, quintile_score(F.col("recency_days"), F.col("_r"), False))
                    .otherwise(0))
        .withColumn("f_score", F.when(bought, quintile_score(F.col("frequency"), F.col("_f"))).otherwise(0))
        .withColumn("m_score", F.when(bought, quintile_score(F.col("monetary"), F.col("_m"))).otherwise(0))
        .drop("_r", "_f", "_m")
    )
    fm = F.floor((F.col("f_score") + F.col("m_score")) / 2 + 0.5)
    segment = F.lit(None).cast("string")
    for rule in reversed(rules):
        matches = F.col("r_score").between(*rule.recency) & fm.between(*rule.frequency_monetary)
        segment = F.when(matches, rule.segment).otherwise(segment)
    return scored.withColumn(
        "rfm_score", F.concat(F.col("r_score").cast("string"), F.col("f_score").cast("string"),
                              F.col("m_score").cast("string"))
    ).withColumn("rfm_segment", F.when(bought, segment).otherwise("No purchase"))


# --- Lifecycle ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LifecycleRules:
    new_days: int
    active_days: int
    churn_days: int


def lifecycle_stage(features: DataFrame, purchases: DataFrame, rules: LifecycleRules) -> DataFrame:
    """Adds ``lifecycle_stage`` (first matching rule wins):
    prospect: never purchased; new: first purchase within ``new_days``; reactivated: last purchase within
    ``active_days`` after a gap of at least ``churn_days`` since the purchase before it; active: last purchase
    within ``active_days``; at_risk: last purchase within ``churn_days``; churned: longer ago."""
    ordered = Window.partitionBy("person_id").orderBy("order_ts")
    gaps = (
        purchases.withColumn("_gap", F.datediff(F.to_date("order_ts"), F.to_date(F.lag("order_ts").over(ordered))))
        .withColumn("_last", F.row_number().over(ordered.orderBy(F.col("order_ts").desc())))
        .filter("_last = 1")
        .select("person_id", F.col("_gap").alias("_gap_before_last_purchase"))
    )
    since_first = F.datediff(F.col("as_of"), F.to_date("first_purchase_ts"))
    since_last = F.col("days_since_last_purchase")
    stage = (
        F.when(F.col("orders_lifetime") == 0, "prospect")
        .when(since_first < rules.new_days, "new")
        .when((since_last < rules.active_days) & (F.col("_gap_before_last_purchase") >= rules.churn_days),
              "reactivated")
        .when(since_last < rules.active_days, "active")
        .when(since_last < rules.churn_days, "at_risk")
        .otherwise("churned")
    )
    return features.join(gaps, "person_id", "left").withColumn("lifecycle_stage", stage).drop(
        "_gap_before_last_purchase")
