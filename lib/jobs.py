"""The jobs and the graph they form. Each job wires config, IO and transformations; no logic of its own."""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lib import io, orders
from lib.bronze import bronze_records, read_landing_stream
from lib.runner import JobContext, JobFunction
from lib.schemas import sources, table_schema


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

        stream = read_landing_stream(ctx.spark, ctx.config.landing_root, source)
        io.process_new_rows(stream, ctx.config.checkpoint_path(table), append_batch)


def silver_orders(ctx: JobContext) -> None:
    """New bronze orders -> gate -> deduplicated silver.orders and silver.order_items, by MERGE."""
    schema = table_schema("orders")
    items_schema = table_schema("order_items")
    known_customers = io.read_table(ctx.spark, ctx.config, "bronze.customers").select(
        F.get_json_object("value", "$.customer_id").alias("customer_id")
    ).filter("customer_id IS NOT NULL")
    accounting = ctx.accounting("silver.orders")
    items_accounting = ctx.accounting("silver.order_items")

    def publish_batch(batch: DataFrame, batch_id: int) -> None:
        checked = orders.orders_with_checks(orders.typed_records(batch, schema), known_customers).cache()
        accounting.add(rows_in=checked.count())
        gate = ctx.gate(checked, "silver.orders", ["_record_id"], quarantine="quarantine.orders")
        accounting.add(quarantined=gate.rows_failed)
        latest = orders.latest_versions(gate.passed_rows, list(schema.key), schema.version_column)
        silver = orders.silver_orders(latest.rows, schema).cache()
        merged = _merge_counts(io.merge_upsert(ctx.spark, silver, ctx.config, "silver.orders", schema.key,
                                               newer_than=schema.version_column))
        accounting.add(
            published=merged.changed,
            deduplicated=latest.exact_duplicates + latest.superseded + merged.unchanged,
            exact_duplicates=latest.exact_duplicates,
            superseded=latest.superseded,
            not_newer_than_published=merged.unchanged,
        )
        # Only lines of order versions that won the MERGE: a late, older version must not add stale lines.
        published = io.read_table(ctx.spark, ctx.config, "silver.orders").select(*schema.key, schema.version_column)
        items = orders.silver_order_items(silver.join(published, [*schema.key, schema.version_column], "left_semi"))
        merged_items = _merge_counts(io.merge_upsert(ctx.spark, items, ctx.config, "silver.order_items",
                                                     items_schema.key, newer_than=items_schema.version_column))
        items_accounting.add(rows_in=merged_items.source, published=merged_items.changed,
                             deduplicated=merged_items.unchanged)
        silver.unpersist()
        checked.unpersist()

    if not io.table_exists(ctx.spark, ctx.config, "bronze.orders"):
        raise io.TableNotFound("bronze.orders does not exist yet; run `dmp run bronze` first")
    stream = ctx.spark.readStream.format("delta").load(ctx.config.table_path("bronze.orders"))
    io.process_new_rows(stream, ctx.config.checkpoint_path("silver.orders"), publish_batch)


def gold_daily_revenue(ctx: JobContext) -> None:
    """silver.orders -> gate -> gold.daily_revenue (recomputed whole, merged so unchanged days stay untouched)."""
    revenue = orders.daily_revenue(io.read_table(ctx.spark, ctx.config, "silver.orders")).cache()
    accounting = ctx.accounting("gold.daily_revenue")
    accounting.add(rows_in=revenue.count())
    gate = ctx.gate(revenue, "gold.daily_revenue", ["order_date"], quarantine="quarantine.daily_revenue")
    accounting.add(quarantined=gate.rows_failed, published=gate.rows_checked - gate.rows_failed)
    io.merge_upsert(ctx.spark, gate.passed_rows, ctx.config, "gold.daily_revenue", ["order_date"],
                    delete_missing=True)
    revenue.unpersist()


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


@dataclass(frozen=True)
class Job:
    name: str
    run: JobFunction
    depends_on: tuple[str, ...] = ()

    @property
    def description(self) -> str:
        return (self.run.__doc__ or "").strip().splitlines()[0]


PIPELINE: dict[str, Job] = {
    job.name: job
    for job in [
        Job("bronze", bronze),
        Job("silver_orders", silver_orders, depends_on=("bronze",)),
        Job("gold_daily_revenue", gold_daily_revenue, depends_on=("silver_orders",)),
    ]
}
