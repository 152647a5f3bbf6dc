"""Campaign insight: the session funnel, spend and attributed revenue per campaign, and A/B test read-outs.

Funnel: a session (silver.events' ``session_id``) belongs to the day, channel and campaign it started with: the
day and channel of its first event, the campaign of its first event that carries one (none: organic). It counts
at every funnel step up to the deepest it reached (a purchase without a recorded cart event still passed the
cart), so the steps never grow.

Attribution: a touch is one campaign met in one session (a long visit does not outweigh a short one), of the
person behind the events (``silver.identity_map``). A purchase (an order whose status counts as revenue) credits
the buyer's touches in the ``lookback`` days before it. Last touch gives the whole order to the campaign of the
latest touch; linear gives every touch an equal share. Shares are whole cents: the order's cents divided by the
number of touches, the remainder one cent each to the earliest touches, so both models hand out exactly the
revenue of the orders that had a touch.

A/B tests: for a campaign whose ``variants`` list arms (``A|B``, or planned shares ``A:30|B:70``; the first is the
control), a person is exposed in the arm of their first event carrying the campaign and a variant, and converts
with a purchase event carrying the campaign within the conversion window of that exposure. Per-arm counts come
from Spark; the statistics run on the few collected rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from scipy import stats

FUNNEL_STEPS = ["product_view", "add_to_cart", "purchase"]
UNKNOWN_CHANNEL = "unknown"
CENTS = "_cents"


def _first(column: str) -> Column:
    """The value of ``column`` on the earliest event (event id breaks ties) among those where it is set."""
    return F.min_by(column, F.when(F.col(column).isNotNull(), F.struct("event_ts", "event_id")))


def session_starts(events: DataFrame) -> DataFrame:
    """One row per session: session_id, day, channel, campaign_id (null: organic) and ``depth``, the deepest
    funnel step reached (0: none, 1: product view, 2: add to cart, 3: purchase)."""
    depth = F.greatest(*[F.when(F.col("event_type") == step, F.lit(level))
                         for level, step in enumerate(FUNNEL_STEPS, start=1)], F.lit(0))
    return events.filter(F.col("session_id").isNotNull()).groupBy("session_id").agg(
        F.to_date(F.min("event_ts")).alias("day"),
        F.coalesce(_first("channel"), F.lit(UNKNOWN_CHANNEL)).alias("channel"),
        _first("campaign_id").alias("campaign_id"),
        F.max(depth).alias("depth"),
    )


def funnel_daily(events: DataFrame) -> DataFrame:
    """Per day, channel and campaign_id (null: organic): sessions, sessions that reached a product view, an add
    to cart and a purchase, each step's conversion from the step before and the session conversion rate."""
    counted = session_starts(events).groupBy("day", "channel", "campaign_id").agg(
        F.count(F.lit(1)).alias("sessions"),
        *[F.count(F.when(F.col("depth") >= level, 1)).alias(f"{step}_sessions")
          for level, step in enumerate(FUNNEL_STEPS, start=1)],
    )
    steps = ["sessions", *[f"{step}_sessions" for step in FUNNEL_STEPS]]
    rates = [_ratio(F.col(later), F.col(earlier)).alias(f"{later.removesuffix('_sessions')}_rate")
             for earlier, later in zip(steps, steps[1:])]
    return counted.select("*", *rates, _ratio(F.col("purchase_sessions"), F.col("sessions")).alias("conversion_rate"))


def _ratio(numerator: Column, denominator: Column) -> Column:
    return F.when(denominator > 0, F.round(numerator / denominator, 4))


def campaign_touches(person_events: DataFrame) -> DataFrame:
    """person_id, campaign_id, session_id, touch_ts: one touch per campaign per session of a person, at the
    first event of that session carrying the campaign."""
    return (person_events.filter(F.col("campaign_id").isNotNull())
            .groupBy("person_id", "campaign_id", "session_id").agg(F.min("event_ts").alias("touch_ts")))


def order_credits(purchases: DataFrame, touches: DataFrame, lookback_days: int) -> DataFrame:
    """One row per purchase and campaign that touched the buyer in the ``lookback_days`` before it: order_id,
    person_id, campaign_id, last_touch_cents (the whole order for the latest touch's campaign, else 0),
    linear_cents (its touches' equal shares in whole cents), linear_share (its share of the order's touches).

    ``purchases``: order_id, person_id, order_ts, total_amount (not negative), the orders that count as revenue.
    """
    lookback = F.expr(f"INTERVAL {int(lookback_days)} DAYS")
    in_window = touches.alias("t").join(
        purchases.select("order_id", "person_id", "order_ts", "total_amount").alias("o"),
        (F.col("t.person_id") == F.col("o.person_id"))
        & (F.col("t.touch_ts") < F.col("o.order_ts")) & (F.col("t.touch_ts") >= F.col("o.order_ts") - lookback),
    ).select("o.order_id", "o.person_id", "o.total_amount", "t.campaign_id", "t.session_id", "t.touch_ts")
    per_order = Window.partitionBy("order_id")
    earliest_first = per_order.orderBy("touch_ts", "campaign_id", "session_id")
    latest_first = per_order.orderBy(F.col("touch_ts").desc(), F.col("campaign_id").desc(),
                                     F.col("session_id").desc())
    touches_n = F.count(F.lit(1)).over(per_order)
    cents = (F.col("total_amount") * 100).cast("long")
    shared = (in_window.withColumn(CENTS, cents).withColumn("_touches", touches_n)
              .withColumn("_base", F.expr(f"{CENTS} div _touches"))
              .withColumn("_linear", F.col("_base") + F.when(
                  F.row_number().over(earliest_first) <= F.col(CENTS) - F.col("_base") * F.col("_touches"), 1)
                  .otherwise(0))
              .withColumn("_last", F.when(F.row_number().over(latest_first) == 1, F.col(CENTS)).otherwise(0)))
    return shared.groupBy("order_id", "person_id", "campaign_id").agg(
        F.sum("_last").alias("last_touch_cents"),
        F.sum("_linear").alias("linear_cents"),
        (F.count(F.lit(1)) / F.first("_touches")).alias("linear_share"),
    )


def first_purchases(purchases: DataFrame) -> DataFrame:
    """order_id of each person's first purchase (order id breaks ties): the order that made them a customer."""
    first = Window.partitionBy("person_id").orderBy("order_ts", "order_id")
    return purchases.withColumn("_n", F.row_number().over(first)).filter("_n = 1").select("order_id")


def campaign_spend(campaigns: DataFrame, as_of) -> DataFrame:
    """campaign_id, spend: the daily budget times the days the campaign ran up to ``as_of`` (both ends counted)."""
    last_day = F.least(F.coalesce(F.col("end_date"), F.lit(as_of)), F.lit(as_of))
    days = F.greatest(F.datediff(last_day, F.col("start_date")) + 1, F.lit(0))
    return campaigns.select("campaign_id", (F.col("daily_budget") * days).cast("decimal(16,2)").alias("spend"))


def campaign_performance(campaigns: DataFrame, touches: DataFrame, credits: DataFrame, first_orders: DataFrame,
                         as_of) -> DataFrame:
    """One row per campaign (known to silver.campaigns, or only seen in events): spend, touches, people touched,
    orders, revenue and new customers under last-touch and linear attribution, ROI = (revenue - spend) / spend
    and CAC = spend / new customers whose first purchase is credited to the campaign."""
    touched = touches.groupBy("campaign_id").agg(F.count(F.lit(1)).alias("touches"),
                                                 F.countDistinct("person_id").alias("people_touched"))
    firsts = first_orders.select("order_id", F.lit(True).alias("_first"))
    credited = credits.join(firsts, "order_id", "left").groupBy("campaign_id").agg(
        F.count(F.when(F.col("last_touch_cents") > 0, 1)).alias("orders_last_touch"),
        _cents_to_amount(F.sum("last_touch_cents")).alias("revenue_last_touch"),
        F.round(F.sum("linear_share"), 4).alias("orders_linear"),
        _cents_to_amount(F.sum("linear_cents")).alias("revenue_linear"),
        F.count(F.when((F.col("last_touch_cents") > 0) & F.col("_first"), 1)).alias("new_customers_last_touch"),
        F.round(F.sum(F.when(F.col("_first"), F.col("linear_share")).otherwise(0.0)), 4)
        .alias("new_customers_linear"),
    )
    described = campaigns.select("campaign_id", "name", "channel", "objective", "start_date", "end_date").join(
        campaign_spend(campaigns, as_of), "campaign_id")
    rows = (described.join(touched, "campaign_id", "full").join(credited, "campaign_id", "left")
            .fillna(0, subset=["touches", "people_touched", "orders_last_touch", "new_customers_last_touch"])
            .fillna(0.0, subset=["orders_linear", "new_customers_linear"])
            .withColumn("revenue_last_touch", F.coalesce("revenue_last_touch", F.lit(0).cast("decimal(16,2)")))
            .withColumn("revenue_linear", F.coalesce("revenue_linear", F.lit(0).cast("decimal(16,2)"))))
    per_spend = lambda value: F.when(F.col("spend") > 0, F.round(value / F.col("spend"), 4))  # noqa: E731
    return rows.select(
        "*",
        per_spend(F.col("revenue_last_touch") - F.col("spend")).cast("double").alias("roi_last_touch"),
        per_spend(F.col("revenue_linear") - F.col("spend")).cast("double").alias("roi_linear"),
        _cost_per(F.col("new_customers_last_touch")).alias("cac_last_touch"),
        _cost_per(F.col("new_customers_linear")).alias("cac_linear"),
        F.lit(as_of).cast("date").alias("as_of"),
    )


def _cents_to_amount(cents: Column) -> Column:
    return (cents.cast("decimal(20,0)") / 100).cast("decimal(16,2)")


def _cost_per(count: Column) -> Column:
    return F.when(count > 0, F.round(F.col("spend").cast("double") / count, 2))


# --- A/B tests ----------------------------------------------------------------------------------------------

def planned_split(variants: str | None) -> dict[str, float]:
    """``A|B`` -> {A: 0.5, B: 0.5}; ``A:30|B:70`` -> {A: 0.3, B: 0.7}; fewer than two arms: {} (no test).
    Raises ValueError naming the part that is not ``name`` or ``name:weight`` with a positive weight."""
    parts = [part.strip() for part in (variants or "").split("|") if part.strip()]
    weights: dict[str, float] = {}
    for part in parts:
        name, _, weight = part.partition(":")
        try:
            value = float(weight) if weight else 1.0
        except ValueError as error:
            raise ValueError(f"variant {part!r} of {variants!r}: weight is not a number") from error
        if not name.strip() or value <= 0 or name.strip() in weights:
            raise ValueError(f"variant {part!r} of {variants!r}: expected a new name and a positive weight")
        weights[name.strip()] = value
    if len(weights) < 2:
        return {}
    total = sum(weights.values())
    return {name: value / total for name, value in weights.items()}


def ab_test_arms(person_events: DataFrame, tested_campaign_ids: Sequence[str], conversion_window_days: int
                 ) -> DataFrame:
    """campaign_id, variant, exposed, converters: per arm of each tested campaign, the people first exposed in
    it and those of them with a purchase carrying the campaign within ``conversion_window_days`` of exposure."""
    tagged = person_events.filter(F.col("campaign_id").isin(list(tested_campaign_ids)))
    exposures = tagged.filter(F.col("variant").isNotNull()).groupBy("campaign_id", "person_id").agg(
        F.min_by("variant", F.struct("event_ts", "event_id")).alias("variant"), F.min("event_ts").alias("_exposed"))
    window = F.expr(f"INTERVAL {int(conversion_window_days)} DAYS")
    converted = tagged.filter(F.col("event_type") == "purchase").select(
        "campaign_id", "person_id", F.col("event_ts").alias("_purchase_ts"))
    conversions = exposures.join(converted, ["campaign_id", "person_id"]).filter(
        (F.col("_purchase_ts") >= F.col("_exposed")) & (F.col("_purchase_ts") <= F.col("_exposed") + window)
    ).select("campaign_id", "person_id").distinct().withColumn("_converted", F.lit(1))
    return exposures.join(conversions, ["campaign_id", "person_id"], "left").groupBy("campaign_id", "variant").agg(
        F.count(F.lit(1)).alias("exposed"), F.count("_converted").alias("converters"))


@dataclass(frozen=True)
class ArmCounts:
    variant: str
    exposed: int
    converters: int

    @property
    def rate(self) -> float | None:
        return self.converters / self.exposed if self.exposed else None


AB_RESULT_SCHEMA = (
    "campaign_id string, variant string, is_control boolean, planned_share double, exposed long, "
    "observed_share double, converters long, conversion_rate double, absolute_uplift double, "
    "relative_uplift double, z_score double, p_value double, ci_low double, ci_high double, significant boolean, "
    "srm_chi_square double, srm_p_value double, srm_detected boolean, significance_level double"
)


def ab_test_read_out(campaign_id: str, planned: dict[str, float], arms: Sequence[ArmCounts],
                     significance_level: float, srm_alpha: float) -> list[dict]:
    """One row per arm (AB_RESULT_SCHEMA): planned arms without anyone exposed included, arms seen but not
    planned too (they are a sample-ratio mismatch). The first planned arm is the control; every other arm is
    compared with it: absolute and relative uplift of its conversion rate, a two-sided two-proportion z-test
    (pooled variance) and the Wald confidence interval of the absolute uplift at 1 - ``significance_level``.
    The sample-ratio check is a chi-square test of the exposed counts against the planned shares."""
    by_variant = {arm.variant: arm for arm in arms}
    ordered = [by_variant.get(v, ArmCounts(v, 0, 0)) for v in planned] + [
        arm for arm in arms if arm.variant not in planned]
    total = sum(arm.exposed for arm in ordered)
    srm_chi, srm_p = sample_ratio_mismatch([arm.exposed for arm in ordered],
                                           [planned.get(arm.variant, 0.0) for arm in ordered])
    control = ordered[0]
    rows = []
    for arm in ordered:
        comparison = {} if arm is control else two_proportion_test(control, arm, significance_level)
        rows.append({
            "campaign_id": campaign_id, "variant": arm.variant, "is_control": arm is control,
            "planned_share": planned.get(arm.variant, 0.0), "exposed": arm.exposed,
            "observed_share": arm.exposed / total if total else None, "converters": arm.converters,
            "conversion_rate": arm.rate, **{key: None for key in ("absolute_uplift", "relative_uplift", "z_score",
                                                                  "p_value", "ci_low", "ci_high", "significant")},
            **comparison, "srm_chi_square": srm_chi, "srm_p_value": srm_p,
            "srm_detected": None if srm_p is None else srm_p < srm_alpha, "significance_level": significance_level,
        })
    return rows


def two_proportion_test(control: ArmCounts, treatment: ArmCounts, significance_level: float) -> dict:
    """absolute_uplift, relative_uplift, z_score, p_value, ci_low, ci_high, significant of ``treatment`` over
    ``control``; None where an arm has no one exposed (or no spread to test)."""
    if not control.exposed or not treatment.exposed:
        return {}
    p1, p2 = control.rate, treatment.rate
    uplift = p2 - p1
    pooled = (control.converters + treatment.converters) / (control.exposed + treatment.exposed)
    pooled_se = math.sqrt(pooled * (1 - pooled) * (1 / control.exposed + 1 / treatment.exposed))
    z = uplift / pooled_se if pooled_se else None
    p_value = float(2 * stats.norm.sf(abs(z))) if z is not None else None
    half_width = float(stats.norm.ppf(1 - significance_level / 2)) * math.sqrt(
        p1 * (1 - p1) / control.exposed + p2 * (1 - p2) / treatment.exposed)
    return {"absolute_uplift": uplift, "relative_uplift": uplift / p1 if p1 else None, "z_score": z,
            "p_value": p_value, "ci_low": uplift - half_width, "ci_high": uplift + half_width,
            "significant": None if p_value is None else p_value < significance_level}


def sample_ratio_mismatch(observed: Sequence[int], planned_shares: Sequence[float]
                          ) -> tuple[float | None, float | None]:
    """Chi-square statistic and p-value of ``observed`` counts against the planned shares; (None, None) without
    anyone exposed. An arm that was planned no share but has people is a certain mismatch (p = 0)."""
    total = sum(observed)
    if not total:
        return None, None
    if any(count and not share for count, share in zip(observed, planned_shares)):
        return math.inf, 0.0
    kept = [(count, share * total) for count, share in zip(observed, planned_shares) if share]
    if len(kept) < 2:
        return 0.0, 1.0
    result = stats.chisquare([c for c, _ in kept], [e for _, e in kept])
    return float(result.statistic), float(result.pvalue)
