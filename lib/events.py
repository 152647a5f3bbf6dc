"""Events: bot traffic set aside, checks for the gate, and sessions (a new one after an inactivity gap)."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from lib.config import EventSettings

SET_ASIDE = "_set_aside"


def visitor() -> Column:
    """Who fired an event, for sessions and bot rates: the device's anonymous id, else the signed-in customer."""
    return F.coalesce("anonymous_id", "customer_id")


def events_with_checks(events: DataFrame, settings: EventSettings) -> DataFrame:
    """The columns the events gate checks, and bot user agents set aside (``_set_aside``): known from the event
    alone, so named while the batch is typed, once; the rate (``bot_traffic``) needs the whole batch."""
    return (
        events.withColumn("_visitor", visitor())
        .withColumn("_seconds_ahead_of_ingest", F.unix_timestamp("event_ts") - F.unix_timestamp("_ingested_at"))
        .withColumn(SET_ASIDE, F.when(F.coalesce(F.col("user_agent"), F.lit("")).rlike(
            settings.bot_user_agent_pattern), F.lit("bot_traffic:user_agent")))
    )


def _clock_minute() -> Column:
    return F.date_trunc("minute", "event_ts")


def busy_visitor_minutes(events: DataFrame, settings: EventSettings) -> DataFrame:
    """_visitor, _minute (clock minute of ``event_ts``) where a visitor fired more events than a person can: at
    most one pair per ``bot_max_events_per_minute + 1`` events, so few enough to broadcast (``bot_traffic``)."""
    return (events.filter(F.col("_visitor").isNotNull()).groupBy("_visitor", _clock_minute().alias("_minute")).count()
            .filter(F.col("count") > settings.bot_max_events_per_minute).drop("count"))


def bot_traffic(events: DataFrame, busy: DataFrame) -> DataFrame:
    """``events_with_checks`` rows with the events of ``busy`` visitor-minutes (``busy_visitor_minutes`` of the
    batch) set aside too, unless already named. The busy minutes are joined by broadcast: counting the rate with a
    window would shuffle and sort every event by visitor and minute."""
    busy = F.broadcast(busy.select(F.col("_visitor").alias("_busy_visitor"), F.col("_minute").alias("_busy_minute"),
                                   F.lit(True).alias("_busy")))
    on = ((F.col("_visitor") == F.col("_busy_visitor"))
          & _clock_minute().eqNullSafe(F.col("_busy_minute")))
    return (events.join(busy, on, "left")
            .withColumn(SET_ASIDE, F.coalesce(SET_ASIDE, F.when(F.col("_busy"), F.lit("bot_traffic:rate"))))
            .drop("_busy_visitor", "_busy_minute", "_busy"))


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
