"""Events: bot traffic set aside, checks for the gate, and sessions (a new one after an inactivity gap)."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from lib.config import EventSettings

SET_ASIDE = "_set_aside"


def visitor() -> Column:
    """Who fired an event, for sessions and bot rates: the device's anonymous id, else the signed-in customer."""
    return F.coalesce("anonymous_id", "customer_id")


def events_with_checks(events: DataFrame) -> DataFrame:
    return events.withColumn("_visitor", visitor()).withColumn(
        "_seconds_ahead_of_ingest", F.unix_timestamp("event_ts") - F.unix_timestamp("_ingested_at")
    )


def bot_traffic(events: DataFrame, settings: EventSettings) -> DataFrame:
    """Name why an event looks automated (``_set_aside``): a bot user agent, or a visitor firing more events in
    one minute than a person can; null for everything else."""
    per_minute = Window.partitionBy("_visitor", F.date_trunc("minute", "event_ts"))
    rate = F.count(F.lit(1)).over(per_minute)
    return events.withColumn(
        SET_ASIDE,
        F.when(F.coalesce(F.col("user_agent"), F.lit("")).rlike(settings.bot_user_agent_pattern),
               F.lit("bot_traffic:user_agent"))
        .when(F.col("_visitor").isNotNull() & (rate > settings.bot_max_events_per_minute), F.lit("bot_traffic:rate")),
    )


def sessionised(events: DataFrame, gap_minutes: int) -> DataFrame:
    """Add ``session_id``: a visitor's events belong to one session until a gap longer than ``gap_minutes``.

    The id is a hash of the visitor and the session's first event time, so re-computing sessions over a wider
    window (late events) gives the same id to the same session.
    """
    ordered = Window.partitionBy("_visitor").orderBy("event_ts", "event_id")
    gap = F.unix_timestamp("event_ts") - F.unix_timestamp(F.lag("event_ts").over(ordered))
    starts = events.withColumn("_start", F.when(gap.isNull() | (gap > gap_minutes * 60), F.col("event_ts")))
    # Events come in time order, so the latest start so far is the session's: found in the sort the gaps already
    # need, where a minimum per numbered session would sort every event a second time.
    session_start = F.max("_start").over(ordered.rowsBetween(Window.unboundedPreceding, 0))
    return starts.withColumn(
        "session_id",
        F.substring(F.sha2(F.concat_ws("#", "_visitor", session_start.cast("string")), 256), 1, 20),
    ).drop("_start")
