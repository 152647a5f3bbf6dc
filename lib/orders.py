"""Orders: the checks silver.orders is gated on, order lines, and gold daily revenue. Pure DataFrame functions."""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

REVENUE_STATUSES = ["placed", "shipped", "delivered"]


def orders_with_checks(orders: DataFrame, known_customer_ids: DataFrame, known_product_ids: DataFrame) -> DataFrame:
    """Add the derived columns that silver.orders' expectations check (referential integrity, item sanity, time)."""
    known = known_customer_ids.select(F.col("customer_id").alias("_known_id")).distinct()
    unknown_products = (
        orders.select("_record_id", F.explode("items.product_id").alias("product_id"))
        .filter(F.col("product_id").isNotNull())
        .join(known_product_ids.select("product_id").distinct(), "product_id", "left_anti")
        .groupBy("_record_id")
        .agg(F.concat_ws(",", F.array_sort(F.collect_set("product_id"))).alias("_unknown_products"))
    )
    return (
        orders.join(F.broadcast(known), orders.customer_id == known._known_id, "left")
        .withColumn("_customer_known", F.when(F.col("customer_id").isNotNull(), F.col("_known_id").isNotNull()))
        .drop("_known_id")
        .join(unknown_products, "_record_id", "left")
        .withColumn("_item_count", F.coalesce(F.size("items"), F.lit(0)))
        .withColumn("_min_unit_price", F.array_min("items.unit_price"))
        .withColumn("_min_quantity", F.array_min("items.quantity"))
        .withColumn("_seconds_ahead_of_ingest", F.unix_timestamp("order_ts") - F.unix_timestamp("_ingested_at"))
        .withColumn(
            "_total_minus_items",
            F.col("total_amount")
            - F.aggregate("items", F.lit(0.0), lambda acc, i: acc + (i.quantity * i.unit_price).cast("double")),
        )
    )


def silver_order_items(orders: DataFrame) -> DataFrame:
    lines = orders.select(
        "order_id", "customer_id", "order_ts", "updated_at", F.posexplode("items").alias("line_index", "item")
    )
    return lines.select(
        "order_id",
        (F.col("line_index") + 1).cast("int").alias("line_no"),
        "customer_id",
        "order_ts",
        "updated_at",
        "item.product_id",
        "item.quantity",
        "item.unit_price",
        (F.col("item.quantity") * F.col("item.unit_price")).cast("decimal(14,2)").alias("line_amount"),
    )


def order_dates(orders: DataFrame) -> DataFrame:
    """The distinct UTC days (``order_date``) on which ``orders`` were placed: the days their revenue counts to."""
    return orders.select(F.to_date("order_ts").alias("order_date")).where(F.col("order_date").isNotNull()).distinct()


def orders_on(orders: DataFrame, days: list[dt.date]) -> DataFrame:
    """The orders placed on ``days`` (UTC)."""
    return orders.filter(F.to_date("order_ts").isin(days))


def daily_revenue(orders: DataFrame) -> DataFrame:
    """Revenue per UTC day from orders that were not cancelled or returned."""
    revenue_orders = orders.filter(F.col("status").isin(REVENUE_STATUSES))
    return (
        revenue_orders.groupBy(F.to_date("order_ts").alias("order_date"))
        .agg(
            F.count("*").alias("orders"),
            F.countDistinct("customer_id").alias("customers"),
            F.sum("total_amount").cast("decimal(16,2)").alias("revenue"),
        )
        .withColumn("average_order_value", F.round(F.col("revenue") / F.col("orders"), 2).cast("decimal(14,2)"))
    )
