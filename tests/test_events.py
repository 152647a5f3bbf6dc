"""Sessions and bot detection on hand-made events."""

from __future__ import annotations

import datetime as dt

from pyspark.sql import functions as F

from lib.config import EventSettings
from lib.events import SET_ASIDE, bot_traffic, busy_visitor_minutes, events_with_checks, sessionised

T0 = dt.datetime(2026, 1, 1, 10, 0, 0)


def events_df(spark, rows, settings=EventSettings()):
    df = spark.createDataFrame(
        [(eid, T0 + dt.timedelta(minutes=minute), visitor, agent) for eid, minute, visitor, agent in rows],
        "event_id string, event_ts timestamp, anonymous_id string, user_agent string",
    )
    return events_with_checks(df.withColumn("customer_id", F.lit(None).cast("string"))
                              .withColumn("_ingested_at", F.lit(T0)), settings)


def set_aside(events, settings):
    return bot_traffic(events, busy_visitor_minutes(events, settings))


def test_a_gap_longer_than_the_limit_starts_a_new_session(spark):
    df = events_df(spark, [("e1", 0, "a", "Mozilla"), ("e2", 29, "a", "Mozilla"), ("e3", 60, "a", "Mozilla"),
                           ("e4", 5, "b", "Mozilla")])
    sessions = {r["event_id"]: r["session_id"] for r in sessionised(df, 30).collect()}
    assert sessions["e1"] == sessions["e2"] != sessions["e3"]
    assert sessions["e4"] not in (sessions["e1"], sessions["e3"])


def test_a_late_event_bridging_two_sessions_merges_them_with_a_stable_id(spark):
    before = {r["event_id"]: r["session_id"] for r in sessionised(
        events_df(spark, [("e1", 0, "a", "M"), ("e3", 50, "a", "M")]), 30).collect()}
    after = {r["event_id"]: r["session_id"] for r in sessionised(
        events_df(spark, [("e1", 0, "a", "M"), ("e2", 25, "a", "M"), ("e3", 50, "a", "M")]), 30).collect()}
    assert before["e1"] != before["e3"]
    assert after["e1"] == after["e2"] == after["e3"] == before["e1"]


def test_bot_user_agents_and_impossible_rates_are_set_aside_with_their_reason(spark):
    human = [(f"h{i}", i, "person", "Mozilla/5.0 Chrome") for i in range(10)]
    crawler = [("c1", 0, "crawler", "Googlebot/2.1")]
    burst = [(f"b{i}", 0, "burst", "Mozilla/5.0") for i in range(70)]
    marked = set_aside(events_df(spark, human + crawler + burst), EventSettings())
    reasons = {r["event_id"]: r[SET_ASIDE] for r in marked.collect()}
    assert all(reasons[f"h{i}"] is None for i in range(10))
    assert reasons["c1"] == "bot_traffic:user_agent"
    assert {reasons[f"b{i}"] for i in range(70)} == {"bot_traffic:rate"}


def test_the_event_rate_is_counted_per_visitor_and_clock_minute(spark):
    settings = EventSettings(bot_max_events_per_minute=5)
    spread = [(f"s{i}", i % 2, "spread", "Mozilla/5.0") for i in range(10)]  # 5 in each of two minutes
    anonymous = [(f"n{i}", 0, None, "Mozilla/5.0") for i in range(10)]  # no visitor: no rate to judge
    shared = [(f"p{i}", 0, f"person-{i}", "Mozilla/5.0") for i in range(10)]  # 10 people in one minute
    events = events_df(spark, spread + anonymous + shared + [(f"x{i}", 3, "spread", "Mozilla/5.0") for i in range(6)],
                       settings)
    reasons = {r["event_id"]: r[SET_ASIDE] for r in set_aside(events, settings).collect()}
    assert len(reasons) == 36
    assert {event for event, reason in reasons.items() if reason} == {f"x{i}" for i in range(6)}


def test_bot_marking_keeps_every_event_once_and_counts_untimed_events_of_a_visitor_together(spark):
    settings = EventSettings(bot_max_events_per_minute=5)
    untimed = [(f"u{i}", 0, "untimed", "Mozilla/5.0") for i in range(6)]
    busy = [(f"b{i}", 0, "busy", "Mozilla/5.0") for i in range(6)]
    events = events_df(spark, untimed + busy, settings).withColumn(
        "event_ts", F.when(F.col("anonymous_id") == "untimed", F.lit(None)).otherwise(F.col("event_ts")))
    marked = set_aside(events, settings).collect()
    assert sorted(r["event_id"] for r in marked) == sorted(e for e, *_ in untimed + busy)
    assert {r[SET_ASIDE] for r in marked} == {"bot_traffic:rate"}
