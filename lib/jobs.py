"""The jobs and the graph they form. Each job wires config, IO and transformations; no logic of its own."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkException
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lib import customers, events, identity, io, orders, silver
from lib.bronze import bronze_records, read_landing_stream
from lib.events import SET_ASIDE
from lib.pii import pii_key
from lib.quality import FAILED_RULES
from lib.runner import JobContext, JobFunction
from lib.schemas import countries, sources, table_schema

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MergeCounts:
    source: int
    changed: int

    @property
    def unchanged(self) -> int:
        return self.source - self.changed


def _merge_counts(metrics: dict[str, int]) -> MergeCounts:
    return MergeCounts(
        source=metrics.get("numSourceRows", 0),
        changed=metrics.get("numTargetRowsInserted", 0) + metrics.get("numTargetRowsUpdated", 0),
    )


def bronze(ctx: JobContext) -> None:
    """Land every new file of every source into bronze.<source>, exactly once per file."""
    for source in sources().values():
        table = f"bronze.{source.name}"
        accounting = ctx.accounting(table)

        def append_batch(landed: DataFrame, batch_id: int, source=source, table=table, accounting=accounting):
            records = bronze_records(landed, source, batch_id).cache()
            counts = records.agg(
                F.count(F.lit(1)).alias("rows"),
                F.count("_parse_error").alias("malformed"),
                F.countDistinct("_source_file").alias("files"),
            ).first()
            # The streaming query id is stable for a checkpoint, so a retried batch is skipped by Delta.
            query_id = landed.sparkSession.sparkContext.getLocalProperty("sql.streaming.queryId")
            io.append(records, ctx.config, table, txn=(query_id, batch_id))
            records.unpersist()
            accounting.add(rows_in=counts["rows"], published=counts["rows"], malformed=counts["malformed"],
                           files=counts["files"])

        folder = f"{ctx.config.landing_root.rstrip('/')}/{source.path}"
        if not io.path_exists(ctx.spark, folder):
            accounting.add(missing_landing_folder=1)
            continue
        stream = read_landing_stream(ctx.spark, ctx.config.landing_root, source)
        io.process_new_rows(stream, ctx.config.checkpoint_path(table), append_batch)


def _publish_silver(
    ctx: JobContext,
    entity: str,
    with_checks: Callable[[DataFrame], DataFrame],
    publish: Callable[[DataFrame], MergeCounts],
    set_aside: Callable[[DataFrame], DataFrame] | None = None,
) -> None:
    """New rows of bronze.<entity> -> typed -> checked -> gate -> newest version per key -> ``publish`` (MERGE).

    Each micro-batch is gated on its own; a failed gate raises before anything is merged, so the batch is not
    committed and silver does not move. Rows: in = published + quarantined + deduplicated, where deduplicated
    counts exact re-sends, older versions in the batch and versions not newer than what silver already holds.
    ``set_aside`` names rows to quarantine before the gate without counting against it (e.g. bot traffic).
    """
    bronze_table, silver_table = f"bronze.{entity}", f"silver.{entity}"
    if not io.table_exists(ctx.spark, ctx.config, bronze_table):
        raise io.TableNotFound(f"{bronze_table} does not exist yet; run `dmp run bronze` first")
    schema = table_schema(entity)
    accounting = ctx.accounting(silver_table)

    def publish_batch(batch: DataFrame, batch_id: int) -> None:
        checked = with_checks(silver.typed_records(batch, schema)).cache()
        counts = checked.agg(
            F.count(F.lit(1)).alias("rows"),
            F.count("_new_columns").alias("records_with_new_columns"),
            F.count("_missing_columns").alias("records_missing_columns"),
        ).first()
        accounting.add(rows_in=counts["rows"], records_with_new_columns=counts["records_with_new_columns"],
                       records_missing_columns=counts["records_missing_columns"])
        candidates = checked
        if set_aside is not None:
            marked = set_aside(checked)
            aside = marked.filter(F.col(SET_ASIDE).isNotNull())
            aside_count = aside.count()
            if aside_count:
                ctx.quarantine(aside.withColumn(FAILED_RULES, F.array(SET_ASIDE)).drop(SET_ASIDE),
                               f"quarantine.{entity}", ["_record_id"])
            accounting.add(quarantined=aside_count, set_aside=aside_count)
            candidates = marked.filter(F.col(SET_ASIDE).isNull()).drop(SET_ASIDE).cache()
        gate = ctx.gate(candidates, silver_table, ["_record_id"], quarantine=f"quarantine.{entity}")
        accounting.add(quarantined=gate.rows_failed)
        latest = silver.latest_versions(gate.passed_rows, list(schema.key), schema.version_column)
        rows = latest.rows.cache()
        merged = publish(rows)
        accounting.add(
            published=merged.changed,
            deduplicated=latest.exact_duplicates + latest.superseded + merged.unchanged,
            exact_duplicates=latest.exact_duplicates,
            superseded=latest.superseded,
            not_newer_than_published=merged.unchanged,
        )
        rows.unpersist()
        candidates.unpersist()
        checked.unpersist()

    stream = ctx.spark.readStream.format("delta").load(ctx.config.table_path(bronze_table))
    io.process_new_rows(stream, ctx.config.checkpoint_path(silver_table), publish_batch)
    if io.table_exists(ctx.spark, ctx.config, silver_table):
        ctx.record_health(silver_table, schema.version_column)


def _merge_newest(ctx: JobContext, rows: DataFrame, table: str, schema_name: str) -> MergeCounts:
    schema = table_schema(schema_name)
    return _merge_counts(io.merge_upsert(ctx.spark, rows, ctx.config, table, schema.key,
                                         newer_than=schema.version_column))


def silver_customers(ctx: JobContext) -> None:
    """New bronze customers -> gate -> standardised silver.customers (PII hashed) and silver.customer_pii."""
    key = pii_key(ctx.config)

    def publish(rows: DataFrame) -> MergeCounts:
        _merge_newest(ctx, customers.customer_pii(rows), "silver.customer_pii", "customers")
        return _merge_newest(ctx, customers.pseudonymised_customers(rows, key), "silver.customers", "customers")

    _publish_silver(ctx, "customers", lambda typed: customers.standardised_customers(typed, countries()), publish)


def silver_products(ctx: JobContext) -> None:
    """New bronze products -> gate -> silver.products."""
    schema = table_schema("products")
    _publish_silver(ctx, "products", lambda typed: typed,
                    lambda rows: _merge_newest(ctx, silver.silver_columns(rows, schema), "silver.products",
                                               "products"))


def silver_campaigns(ctx: JobContext) -> None:
    """New bronze campaigns -> gate -> silver.campaigns."""
    schema = table_schema("campaigns")

    def with_checks(typed: DataFrame) -> DataFrame:
        return typed.withColumn("_days_running", F.datediff("end_date", "start_date"))

    _publish_silver(ctx, "campaigns", with_checks,
                    lambda rows: _merge_newest(ctx, silver.silver_columns(rows, schema), "silver.campaigns",
                                               "campaigns"))


def silver_events(ctx: JobContext) -> None:
    """New bronze events -> bots set aside -> gate -> sessionised silver.events (late events rejoin sessions)."""
    settings = ctx.config.events
    schema = table_schema("events")
    columns = [*schema.column_names, "session_id", *silver.LINEAGE]

    def publish(rows: DataFrame) -> MergeCounts:
        fresh = rows
        if io.table_exists(ctx.spark, ctx.config, "silver.events"):
            published = io.read_table(ctx.spark, ctx.config, "silver.events")
            fresh = rows.join(published.select("event_id"), "event_id", "left_anti")
            # Published events of the same visitors close enough in time to share a session with the new ones.
            window = fresh.groupBy("_visitor").agg(
                (F.min("event_ts") - F.expr(f"INTERVAL {settings.late_lookback_hours} HOURS")).alias("_from"),
                (F.max("event_ts") + F.expr(f"INTERVAL {settings.late_lookback_hours} HOURS")).alias("_to"),
            )
            neighbours = (
                published.withColumn("_visitor", F.coalesce("anonymous_id", "customer_id"))
                .join(window, "_visitor")
                .filter(F.col("event_ts").between(F.col("_from"), F.col("_to")))
                .drop("_from", "_to", "session_id")
            )
            fresh = fresh.select(*neighbours.columns).unionByName(neighbours)
        sessions = events.sessionised(fresh, settings.session_gap_minutes).select(*columns).cache()
        metrics = io.merge_upsert(ctx.spark, sessions, ctx.config, "silver.events", schema.key)
        sessions.unpersist()
        inserted, updated = metrics.get("numTargetRowsInserted", 0), metrics.get("numTargetRowsUpdated", 0)
        ctx.accounting("silver.events").add(sessions_reassigned=updated)
        # Published = new events; rows of this batch already in silver are duplicates of what was published.
        return MergeCounts(source=rows.count(), changed=inserted)

    _publish_silver(ctx, "events", events.events_with_checks, publish,
                    set_aside=lambda checked: events.bot_traffic(checked, settings))


def silver_identity(ctx: JobContext) -> None:
    """silver.events + silver.customers -> connected components -> silver.identity_map with stable person_ids."""
    events_df = io.read_table(ctx.spark, ctx.config, "silver.events")
    customers_df = io.read_table(ctx.spark, ctx.config, "silver.customers")
    components = identity.connected_components(identity.identity_nodes(events_df, customers_df),
                                               identity.identity_edges(events_df, customers_df), ctx.config.identity)
    previous = None
    if io.table_exists(ctx.spark, ctx.config, "silver.identity_map"):
        previous = identity.mapped_nodes(io.read_table(ctx.spark, ctx.config, "silver.identity_map"))
    mapping, changes = identity.assign_person_ids(components.labels, previous)
    rows = identity.identity_map(mapping).cache()
    accounting = ctx.accounting("silver.identity_map")
    accounting.add(rows_in=rows.count(), iterations=components.iterations,
                   shared_identifiers_cut=components.cut_identifiers.count())
    keys = ["identifier_type", "identifier"]
    gate = ctx.gate(rows, "silver.identity_map", keys, quarantine="quarantine.identity_map")
    accounting.add(quarantined=gate.rows_failed, published=gate.rows_checked - gate.rows_failed,
                   people=gate.passed_rows.select("person_id").distinct().count())
    io.merge_upsert(ctx.spark, gate.passed_rows, ctx.config, "silver.identity_map", keys, delete_missing=True)
    change_rows = changes.withColumn("run_id", F.lit(ctx.run_id)).cache()
    for change in ("merge", "split"):
        accounting.add(**{f"person_{change}s": change_rows.filter(F.col("change") == change).count()})
    if change_rows.count():
        io.append(change_rows, ctx.config, "ops.identity_changes")
    rows.unpersist()


def silver_orders(ctx: JobContext) -> None:
    """New bronze orders -> gate (incl. known customers and products) -> silver.orders and silver.order_items."""
    schema = table_schema("orders")
    known_customers = io.read_table(ctx.spark, ctx.config, "silver.customers").select("customer_id")
    known_products = io.read_table(ctx.spark, ctx.config, "silver.products").select("product_id")
    items_accounting = ctx.accounting("silver.order_items")

    def publish(rows: DataFrame) -> MergeCounts:
        published = silver.silver_columns(rows, schema)
        merged = _merge_newest(ctx, published, "silver.orders", "orders")
        # Only lines of order versions that won the MERGE: a late, older version must not add stale lines.
        winners = io.read_table(ctx.spark, ctx.config, "silver.orders").select(*schema.key, schema.version_column)
        items = orders.silver_order_items(published.join(winners, [*schema.key, schema.version_column], "left_semi"))
        merged_items = _merge_newest(ctx, items, "silver.order_items", "order_items")
        items_accounting.add(rows_in=merged_items.source, published=merged_items.changed,
                             deduplicated=merged_items.unchanged)
        return merged

    _publish_silver(ctx, "orders",
                    lambda typed: orders.orders_with_checks(typed, known_customers, known_products), publish)


def _changed_since_last_run(ctx: JobContext, table: str, values: Callable[[DataFrame], DataFrame]) -> list | None:
    """``values`` (one column) of the rows of ``table`` changed since this job's last successful run read it, from
    Delta's Change Data Feed (old and new images both). None when everything must be recomputed: no earlier run,
    or the feed does not cover the range (enabled later, or its files vacuumed)."""
    last, now = ctx.consumed_versions.get(table), ctx.input_versions.get(table)
    if last is None or now is None or now < last:
        return None
    if now == last:
        return []
    try:
        changed = values(io.read_changes(ctx.spark, ctx.config, table, after_version=last, up_to_version=now))
        return [row[0] for row in changed.collect()]
    except (PySparkException, Py4JJavaError) as unavailable:
        log.warning("change feed of %s from version %s unreadable, recomputing whole: %s", table, last,
                    str(unavailable).splitlines()[0])
        return None


def gold_daily_revenue(ctx: JobContext) -> None:
    """silver.orders -> gate -> gold.daily_revenue (only the days with changed orders are recomputed and merged)."""
    silver_orders = io.read_table(ctx.spark, ctx.config, "silver.orders", ctx.input_versions.get("silver.orders"))
    accounting = ctx.accounting("gold.daily_revenue")
    days = None
    if io.table_exists(ctx.spark, ctx.config, "gold.daily_revenue"):
        days = _changed_since_last_run(ctx, "silver.orders", orders.order_dates)
    if days is None:
        accounting.add(full_recompute=1)
        revenue = orders.daily_revenue(silver_orders).cache()
    else:
        accounting.add(days_recomputed=len(days))
        if not days:
            return
        revenue = orders.daily_revenue(orders.orders_on(silver_orders, days)).cache()
    accounting.add(rows_in=revenue.count())
    passed = revenue
    # Changed days left without revenue (all their orders cancelled) only lose their rows: nothing to gate.
    if days is None or accounting.rows_in:
        gate = ctx.gate(revenue, "gold.daily_revenue", ["order_date"], quarantine="quarantine.daily_revenue")
        accounting.add(quarantined=gate.rows_failed, published=gate.rows_checked - gate.rows_failed)
        passed = gate.passed_rows
    io.merge_upsert(ctx.spark, passed, ctx.config, "gold.daily_revenue", ["order_date"],
                    delete_missing=True if days is None else F.col("t.order_date").isin(days))
    revenue.unpersist()


@dataclass(frozen=True)
class Job:
    name: str
    run: JobFunction
    depends_on: tuple[str, ...] = ()
    # Delta tables the job reads: it is up to date (skipped) while none changed since its last successful run.
    # A job with none (bronze reads landing folders) always runs.
    reads: tuple[str, ...] = ()
    # Delta tables the job publishes (quarantine and ops tables aside).
    writes: tuple[str, ...] = ()

    @property
    def description(self) -> str:
        return (self.run.__doc__ or "").strip().splitlines()[0]


PIPELINE: dict[str, Job] = {
    job.name: job
    for job in [
        Job("bronze", bronze, writes=tuple(f"bronze.{source}" for source in sources())),
        Job("silver_customers", silver_customers, depends_on=("bronze",),
            reads=("bronze.customers",), writes=("silver.customers", "silver.customer_pii")),
        Job("silver_products", silver_products, depends_on=("bronze",),
            reads=("bronze.products",), writes=("silver.products",)),
        Job("silver_campaigns", silver_campaigns, depends_on=("bronze",),
            reads=("bronze.campaigns",), writes=("silver.campaigns",)),
        Job("silver_events", silver_events, depends_on=("bronze",),
            reads=("bronze.events",), writes=("silver.events",)),
        Job("silver_identity", silver_identity, depends_on=("silver_events", "silver_customers"),
            reads=("silver.events", "silver.customers"), writes=("silver.identity_map",)),
        Job("silver_orders", silver_orders, depends_on=("silver_customers", "silver_products"),
            reads=("bronze.orders", "silver.customers", "silver.products"),
            writes=("silver.orders", "silver.order_items")),
        Job("gold_daily_revenue", gold_daily_revenue, depends_on=("silver_orders",),
            reads=("silver.orders",), writes=("gold.daily_revenue",)),
    ]
}
