"""The jobs and the graph they form. Each job wires config, IO and transformations; no logic of its own."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkException
from pyspark.sql import DataFrame, Observation
from pyspark.sql import functions as F

import lib.campaigns as campaigns
from lib import (
    audiences,
    clv,
    customers,
    events,
    identity,
    io,
    orders,
    patterns,
    privacy,
    profiles,
    recommend,
    segments,
    silver,
)
from lib.bronze import bronze_records, read_landing_stream, same_uri_as_metadata
from lib.events import SET_ASIDE
from lib.pii import pii_key
from lib.quality import FAILED_RULES
from lib.runner import JobContext, JobFunction
from lib.schemas import Source, countries, rfm_segment_rules, sources, table_schema

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
            # The files this micro-batch read, including those that yielded no row (empty or unreadable).
            batch_files = io.stream_batch_files(landed.sparkSession, ctx.config.checkpoint_path(table), batch_id)
            batch_files = batch_files.select(same_uri_as_metadata("path").alias("_source_file"), "bytes", "intact")
            records = bronze_records(landed, source, batch_id, batch_files)
            # Counted while the batch is written, not from a cache of it: caching the raw text of a batch of
            # events took longer than writing it.
            observed = Observation(f"{table} batch {batch_id}")
            counts = [F.count(F.lit(1)).alias("rows"), F.count("_parse_error").alias("malformed"),
                      F.size(F.collect_set("_source_file")).alias("files")]
            # The streaming query id is stable for a checkpoint, so a retried batch is skipped by Delta.
            query_id = landed.sparkSession.sparkContext.getLocalProperty("sql.streaming.queryId")
            if io.append(records.observe(observed, *counts), ctx.config, table, txn=(query_id, batch_id)):
                counted = observed.get
            else:
                # Committed by a run cut off before its checkpoint: not written again, so counted on its own.
                counted = records.agg(*counts).first().asDict()
            # Empty files (0 bytes, a CSV header alone) leave no row; counted so they are not invisible.
            accounting.add(rows_in=counted["rows"], published=counted["rows"], malformed=counted["malformed"],
                           files=counted["files"], files_without_records=batch_files.count() - counted["files"])

        if not io.path_exists(ctx.spark, _landing_folder(ctx, source)):
            accounting.add(missing_landing_folder=1)
            continue
        stream = read_landing_stream(ctx.spark, ctx.config.landing_root, source)
        io.process_new_rows(stream, ctx.config.checkpoint_path(table), append_batch)


def _landing_folder(ctx: JobContext, source: Source) -> str:
    return f"{ctx.config.landing_root.rstrip('/')}/{source.path}"


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
    ``set_aside`` names rows to quarantine before the gate without counting against it (``_set_aside``, e.g. bot
    traffic; ``with_checks`` may name some already). It marks the cached batch anew for every count and filter that
    follows, so it should be cheap: bot traffic materialises its few busy visitor-minutes once and broadcasts them.
    A source that has no landing folder publishes its silver table empty (``no_landing_data``), so the jobs
    downstream read it like any other. With ``ctx.replay_rows`` (a quarantine replay) those rows are the one batch.
    """
    bronze_table, silver_table = f"bronze.{entity}", f"silver.{entity}"
    schema = table_schema(entity)
    accounting = ctx.accounting(silver_table)
    source = sources()[entity]
    no_landing_data = not io.table_exists(ctx.spark, ctx.config, bronze_table)
    if no_landing_data and io.path_exists(ctx.spark, _landing_folder(ctx, source)):
        raise io.TableNotFound(f"{bronze_table} does not exist yet; run `dmp run bronze` first")

    suppression = _optional_table(ctx, PRIVACY_SUPPRESSION)

    def publish_batch(batch: DataFrame, batch_id: int) -> None:
        checked = with_checks(silver.typed_records(batch, schema))
        if suppression is not None:
            checked = privacy.with_erased_flag(checked, suppression, pii_key(ctx.config))
        checked = checked.cache()
        counts = checked.agg(
            F.count(F.lit(1)).alias("rows"),
            F.count("_new_columns").alias("records_with_new_columns"),
            F.count("_missing_columns").alias("records_missing_columns"),
        ).first()
        accounting.add(rows_in=counts["rows"], records_with_new_columns=counts["records_with_new_columns"],
                       records_missing_columns=counts["records_missing_columns"])
        candidates = set_aside(checked) if set_aside is not None else checked
        if suppression is not None:
            # A person erased earlier, sent again by a source (a full CRM export, a late event), stays erased: not
            # published, and deleted from bronze (by record id: the commit names no identifier).
            erased = checked.filter("_erased").select("_record_id").localCheckpoint()
            if erased_count := erased.count():
                io.delete_matching(ctx.spark, ctx.config, bronze_table, _broadcast_if_few(erased, erased_count),
                                   ["_record_id"])
                _audit_erased_on_arrival(ctx, bronze_table, batch_id, erased_count)
            accounting.add(erased=erased_count)
            candidates = candidates.filter(~F.col("_erased")).drop("_erased")
        if set_aside is not None:
            aside = candidates.filter(F.col(SET_ASIDE).isNotNull())
            aside_count = aside.count()
            if aside_count:
                ctx.quarantine(aside.withColumn(FAILED_RULES, F.array(SET_ASIDE)).drop(SET_ASIDE),
                               f"quarantine.{entity}", ["_record_id"])
            accounting.add(quarantined=aside_count, set_aside=aside_count)
            candidates = candidates.filter(F.col(SET_ASIDE).isNull()).drop(SET_ASIDE)
        gate = ctx.gate(candidates, silver_table, ["_record_id"], quarantine=f"quarantine.{entity}")
        accounting.add(quarantined=gate.rows_failed)
        latest = silver.latest_versions(gate.passed_rows, list(schema.key), schema.version_column)
        # What is left to publish is in latest's cache now; the whole typed batch need not hold memory meanwhile.
        checked.unpersist()
        merged = publish(latest.rows)
        accounting.add(
            published=merged.changed,
            deduplicated=latest.exact_duplicates + latest.superseded + merged.unchanged,
            exact_duplicates=latest.exact_duplicates,
            superseded=latest.superseded,
            not_newer_than_published=merged.unchanged,
        )
        latest.unpersist()

    if ctx.replay_rows is not None:
        publish_batch(ctx.replay_rows, 0)
        return
    if no_landing_data:
        accounting.add(no_landing_data=1)
        # The same path as a real batch, with no rows: the silver table gets exactly the columns it would have.
        nothing_landed = ctx.spark.createDataFrame([], "value string, _source_file string")
        publish_batch(bronze_records(nothing_landed, source, batch_id=0), 0)
        return
    # Erasures delete from bronze; those commits carry nothing new to publish (skipChangeCommits), and without
    # the option the stream would stop at them.
    stream = (ctx.spark.readStream.format("delta").option("skipChangeCommits", "true")
              .load(ctx.config.table_path(bronze_table)))
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
            published = published.withColumn("_visitor", events.visitor())
            touched = (published.join(window, "_visitor")
                       .filter(F.col("event_ts").between(F.col("_from"), F.col("_to"))).select("session_id"))
            # Whole sessions: one that began before the window, re-sessionised from its events inside it only, got
            # a later start, hence another id, for those events alone.
            neighbours = published.join(touched.distinct(), "session_id", "left_semi").drop("session_id")
            fresh = fresh.select(*neighbours.columns).unionByName(neighbours)
        # One row per event: the batch was deduplicated on event_id before the gate, and the published neighbours
        # are other events (``fresh`` left out every published one).
        sessions = events.sessionised(fresh, settings.session_gap_minutes).select(*columns)
        metrics = io.merge_upsert(ctx.spark, sessions, ctx.config, "silver.events", schema.key, unique_keys=True)
        inserted, updated = metrics.get("numTargetRowsInserted", 0), metrics.get("numTargetRowsUpdated", 0)
        ctx.accounting("silver.events").add(sessions_reassigned=updated)
        # Published = new events; rows of this batch already in silver are duplicates of what was published.
        return MergeCounts(source=rows.count(), changed=inserted)

    def bots_set_aside(checked: DataFrame) -> DataFrame:
        # Materialised once: each count and filter of the batch joins it again.
        busy = events.busy_visitor_minutes(checked, settings).localCheckpoint()
        return events.bot_traffic(checked, busy)

    _publish_silver(ctx, "events", lambda typed: events.events_with_checks(typed, settings), publish,
                    set_aside=bots_set_aside)


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


def _publish_gold(ctx: JobContext, rows: DataFrame, table: str, key: list[str]) -> None:
    """Gate a whole recomputed gold table, guard and MERGE what passes."""
    ctx.publish_recomputed([(rows, table, key)])


def _profile_date(ctx: JobContext, orders_df: DataFrame, events_df: DataFrame) -> dt.date:
    """The configured as-of day, else the newest day with an order or an event."""
    if ctx.config.profiles.as_of:
        return dt.date.fromisoformat(ctx.config.profiles.as_of)
    newest = [df.agg(F.max(F.to_date(column))).first()[0]
              for df, column in ((orders_df, "order_ts"), (events_df, "event_ts"))]
    if all(day is None for day in newest):
        raise io.TableNotFound("silver.orders and silver.events are empty: nothing to profile yet")
    return max(day for day in newest if day is not None)


def gold_customer_features(ctx: JobContext) -> None:
    """Silver customers, orders, events + identity map -> gate -> gold.customer_features, one row per person."""
    read = lambda table: io.read_table(ctx.spark, ctx.config, table)  # noqa: E731
    identity_map, orders_df, events_df = read("silver.identity_map"), read("silver.orders"), read("silver.events")
    as_of = _profile_date(ctx, orders_df, events_df)
    features = profiles.customer_features(
        profiles.people(read("silver.customers"), identity_map),
        profiles.person_purchases(orders_df, identity_map, as_of),
        read("silver.order_items"), read("silver.products"),
        profiles.person_events(events_df, identity_map, as_of),
        as_of, ctx.config.profiles.windows_days,
    ).cache()
    _publish_gold(ctx, features, "gold.customer_features", ["person_id"])
    features.unpersist()


def _segment_assignments(ctx: JobContext, features: DataFrame, as_of: dt.date) -> DataFrame:
    """person_id, segment_id, segment_name from the saved segmentation model (trained first when there is none
    or ``segments.retrain`` is set); gold.segments describes the segments and ops.model_runs the training."""
    settings = ctx.config.segments
    previous_rows = []
    if io.table_exists(ctx.spark, ctx.config, "gold.segments"):
        previous_rows = io.read_table(ctx.spark, ctx.config, "gold.segments").collect()
    model_path = previous_rows[0]["model_path"] if previous_rows else None
    if model_path and not settings.retrain and io.path_exists(ctx.spark, model_path):
        model, model_run_id = io.load_model(model_path), previous_rows[0]["model_run_id"]
        known = {row["cluster"]: row for row in previous_rows}
        describe = [(row["segment_id"], row["cluster"], row["name"], row["centroid"],
                     row["distinguishing_features"]) for row in known.values()]
    else:
        trained = segments.train_segmentation(features, settings)
        model, model_run_id = trained.model, ctx.run_id
        model_path = ctx.config.model_path("customer_segments", ctx.run_id)
        io.save_model(model, model_path)
        previous = [segments.PreviousSegment(row["segment_id"], row["name"], dict(row["centroid"]))
                    for row in previous_rows]
        describe = segments.segment_rows(model, settings, previous)
        ctx.record_model_run(
            "customer_segments",
            params={"k": trained.k, "features": ",".join(settings.features), "seed": settings.seed,
                    "restarts": settings.restarts, "training_rows": trained.training_rows, "as_of": as_of},
            metrics={**{f"silhouette_k{k}": value for k, value in trained.silhouettes.items()},
                     "chosen_k": trained.k, "silhouette": trained.silhouettes[trained.k]},
            model_path=model_path,
        )
        ctx.refuse_metric_drop("customer_segments", "silhouette", trained.silhouettes[trained.k])
    ids = ctx.spark.createDataFrame([(row[0], row[1], row[2]) for row in describe],
                                    "segment_id int, cluster int, segment_name string")
    assignments = segments.assign_clusters(model, features).join(F.broadcast(ids), segments.CLUSTER).cache()
    sizes = {row[segments.CLUSTER]: row["people"] for row in
             assignments.groupBy(segments.CLUSTER).agg(F.count(F.lit(1)).alias("people")).collect()}
    segment_table = ctx.spark.createDataFrame(
        [(segment_id, cluster, name, sizes.get(cluster, 0), centroid, distinguishing, model_path, model_run_id, as_of)
         for segment_id, cluster, name, centroid, distinguishing in describe],
        segments.SEGMENTS_SCHEMA,
    )
    _publish_gold(ctx, segment_table, "gold.segments", ["segment_id"])
    return assignments.select("person_id", "segment_id", "segment_name")


def _lifetime_values(ctx: JobContext, purchases: DataFrame, as_of: dt.date) -> DataFrame:
    """person_id, p_alive, expected_purchases, expected_spend, clv for every buyer, from BG/NBD + Gamma-Gamma
    fitted on this run's purchase summary (parameters in ops.model_runs). Too few repeat buyers to fit: no rows,
    and the reason in the job's accounting."""
    settings = ctx.config.profiles
    summary = clv.clv_summary(purchases, as_of).cache()
    repeat_buyers = summary.filter("frequency > 0").count()
    if repeat_buyers < settings.clv_min_repeat_customers:
        ctx.accounting("gold.customer_profile").add(clv_skipped_repeat_buyers=repeat_buyers)
        summary.unpersist()
        return purchases.sparkSession.createDataFrame(
            [], "person_id string, p_alive double, expected_purchases double, expected_spend double, clv double")
    bgnbd, gamma_gamma = clv.fit_clv_models(summary, max_rows=settings.clv_max_training_rows)
    ctx.record_model_run(
        "clv",
        params={"as_of": as_of, "horizon_weeks": settings.clv_horizon_weeks,
                "annual_discount_rate": settings.clv_annual_discount_rate},
        metrics={"r": bgnbd.r, "alpha": bgnbd.alpha, "a": bgnbd.a, "b": bgnbd.b,
                 "bgnbd_log_likelihood": bgnbd.log_likelihood, "bgnbd_customers": bgnbd.customers,
                 "p": gamma_gamma.p, "q": gamma_gamma.q, "gamma": gamma_gamma.gamma,
                 "gamma_gamma_log_likelihood": gamma_gamma.log_likelihood,
                 "gamma_gamma_customers": gamma_gamma.customers},
    )
    scores = clv.clv_scores(summary, bgnbd, gamma_gamma, settings.clv_horizon_weeks,
                            settings.clv_annual_discount_rate)
    return scores.select("person_id", "p_alive", "expected_purchases", "expected_spend", "clv")


def gold_customer_profile(ctx: JobContext) -> None:
    """gold.customer_features -> RFM, lifecycle, lifetime value, KMeans segment -> gate -> gold.customer_profile;
    people moving between segments are counted in gold.segment_migrations."""
    read = lambda table: io.read_table(ctx.spark, ctx.config, table)  # noqa: E731
    features = read("gold.customer_features").cache()
    as_of = features.select("as_of").first()["as_of"]
    settings = ctx.config.profiles
    purchases = profiles.person_purchases(read("silver.orders"), read("silver.identity_map"), as_of)
    staged = profiles.lifecycle_stage(
        profiles.rfm_scores(features, rfm_segment_rules()), purchases,
        profiles.LifecycleRules(settings.new_days, settings.active_days, settings.churn_days),
    )
    assignments = _segment_assignments(ctx, features, as_of)
    profile = (
        staged.join(_lifetime_values(ctx, purchases, as_of), "person_id", "left")
        .fillna(0.0, subset=["expected_purchases", "clv"])
        .join(assignments, "person_id", "left")
        .cache()
    )
    if io.table_exists(ctx.spark, ctx.config, "gold.customer_profile"):
        moves = segments.segment_migrations(read("gold.customer_profile"), profile)
        moved = moves.filter(~F.col("from_segment_id").eqNullSafe(F.col("to_segment_id")))
        if moved.count():
            io.append(moves.select(F.lit(ctx.run_id).alias("run_id"), F.lit(as_of).alias("as_of"), "*"),
                      ctx.config, "gold.segment_migrations")
    _publish_gold(ctx, profile, "gold.customer_profile", ["person_id"])
    profile.unpersist()
    features.unpersist()


def gold_patterns(ctx: JobContext) -> None:
    """silver.order_items -> baskets -> FPGrowth -> gates -> gold.frequent_itemsets and gold.purchase_rules."""
    settings = ctx.config.patterns
    products = io.read_table(ctx.spark, ctx.config, "silver.products") if settings.level == "category" else None
    baskets = patterns.order_baskets(io.read_table(ctx.spark, ctx.config, "silver.order_items"), settings.level,
                                     products)
    capped = patterns.capped_baskets(baskets, settings.max_basket_size)
    basket_rows = capped.baskets.cache()
    basket_count = basket_rows.count()
    requested = settings.min_count or patterns.support_count(settings.min_support, basket_count)
    guard = patterns.guarded_min_count(basket_rows, requested, settings.max_itemsets, basket_count,
                                       adapt=settings.adapt_min_support)
    (log.warning if guard.adapted else log.info)("gold_patterns: %s", guard.message)
    itemsets = patterns.frequent_itemsets(basket_rows, guard.min_count, basket_count).withColumn(
        "level", F.lit(settings.level)).cache()
    rules = patterns.purchase_rules(itemsets, settings.min_confidence, settings.max_antecedent_size).withColumn(
        "level", F.lit(settings.level)).cache()
    run_details = dict(baskets=basket_count, baskets_capped=capped.capped, items_dropped_by_cap=capped.items_dropped,
                       min_count_requested=guard.requested_count, min_count=guard.min_count,
                       estimated_itemsets=guard.estimate)
    tables = ((itemsets, "gold.frequent_itemsets", ["itemset_key"]),
              (patterns.rules_with_checks(rules), "gold.purchase_rules", ["rule_key"]))
    for _, table, _ in tables:
        ctx.accounting(table).add(**run_details)
    # Together, so rules never refer to itemsets of another run.
    ctx.publish_recomputed(tables, check_columns=patterns.CHECK_COLUMNS)
    for cached in (rules, itemsets, basket_rows):
        cached.unpersist()


def gold_recommendations(ctx: JobContext) -> None:
    """Views, carts, purchases -> ALS (parameters chosen on a time hold-out) -> gates -> gold.recommendations and
    gold.similar_products; the evaluation against popularity goes to ops.model_runs."""
    settings = ctx.config.recommendations
    read = lambda table: io.read_table(ctx.spark, ctx.config, table)  # noqa: E731
    events_df, items, identity_map = read("silver.events"), read("silver.order_items"), read("silver.identity_map")
    catalogue = read("silver.products")
    recommendable = recommend.recommendable_products(catalogue).cache()
    people = read("gold.customer_profile").select("person_id", "segment_id", "favourite_category").cache()
    as_of = _profile_date(ctx, items, events_df)

    def feedback(day: dt.date) -> DataFrame:
        return recommend.interactions(events_df, items, identity_map, settings.weights, settings.half_life_days,
                                      day).cache()

    checkpoint_dir = ctx.config.checkpoint_path("als")
    split = recommend.time_split(items, identity_map, as_of, settings.holdout_days)
    train = feedback(split.train_as_of)
    search = recommend.search_params(
        train, split, people, catalogue, recommend.purchased(items, identity_map, split.train_as_of),
        recommend.param_grid(settings.ranks, settings.reg_params, settings.alphas), settings.top_n, settings.seed,
        settings.max_iter, checkpoint_dir, settings.checkpoint_interval, settings.new_product_slots,
        settings.cold_start_fallback, settings.max_judged_people)
    train.unpersist()
    full = feedback(as_of)
    idx = recommend.indexes(full, catalogue)
    [model] = recommend.fit_als(idx.ratings(full), [search.chosen], settings.seed, settings.max_iter,
                                checkpoint_dir, settings.checkpoint_interval)
    bought = recommend.purchased(items, identity_map, as_of).cache()
    lists = recommend.fallbacks(people, full, bought, recommendable, settings.top_n, settings.new_product_slots,
                                cold_start_fallback=search.cold_start_fallback)
    recommended = recommend.recommend(model, idx, people, lists, bought, recommendable, settings.top_n).cache()
    similar = recommend.similar_products(model, idx, settings.similar_k).cache()
    metrics = {f"{model_name}_{name}": value for model_name, measured in
               (("als", search.best.metrics), ("popularity", search.baseline)) for name, value in measured.items()}
    metrics.update({f"ndcg_at_k_rank{e.params.rank}_reg{e.params.reg_param}_alpha{e.params.alpha}":
                    e.metrics["ndcg_at_k"] for e in search.candidates})
    metrics.update({f"cold_start_{fallback}_ndcg_at_k": ndcg for fallback, ndcg in search.cold_start_ndcg.items()})
    ctx.record_model_run(
        "recommendations_als",
        params={**search.chosen.as_dict(), "as_of": as_of, "train_as_of": split.train_as_of, "k": settings.top_n,
                "holdout_days": settings.holdout_days, "half_life_days": settings.half_life_days,
                "weights": settings.weights, "seed": settings.seed, "max_iter": settings.max_iter,
                "cold_start_fallback": search.cold_start_fallback,
                "cold_start_fallback_setting": settings.cold_start_fallback,
                "max_judged_people": settings.max_judged_people},
        metrics=metrics)
    if not search.candidates:
        log.warning("gold_recommendations: no interactions before or no first purchases in the %s hold-out days; "
                    "parameters %s unmeasured", settings.holdout_days, search.chosen)
    log.info("gold_recommendations: chose %s, cold-start fallback %s; %s", search.chosen, search.cold_start_fallback,
             ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    # ops.job_runs details hold whole numbers: the hold-out metrics as parts per ten thousand.
    details = {f"{k}_per_10k": round(v * 10_000) for k, v in metrics.items()
               if k.startswith(("als_", "popularity_")) and not k.endswith("people_evaluated")}
    ctx.accounting("gold.recommendations").add(**details)
    if search.candidates:
        ctx.refuse_metric_drop("recommendations_als", "als_ndcg_at_k", search.best.metrics["ndcg_at_k"])
    ctx.publish_recomputed(
        [(recommend.recommendations_with_checks(recommended, bought, recommendable, settings.top_n),
          "gold.recommendations", ["person_id", "rank"]),
         (recommend.similar_products_with_checks(similar), "gold.similar_products", ["product_id", "rank"])],
        check_columns=[*recommend.CHECK_COLUMNS, *recommend.SIMILAR_CHECK_COLUMNS])
    for cached in (similar, recommended, bought, full, people, recommendable, lists, idx):
        cached.unpersist()


def gold_audiences(ctx: JobContext, only: Sequence[str] | None = None) -> None:
    """gold.customer_profile -> audience filters + channel consent -> gate -> gold.audiences and activation files."""
    read = lambda table: io.read_table(ctx.spark, ctx.config, table)  # noqa: E731
    definitions = audiences.load_audiences(audiences.definitions_path(ctx.config), only)
    names = [audience.name for audience in definitions]
    suppression = _optional_table(ctx, PRIVACY_SUPPRESSION)
    opted_out = (None if suppression is None else
                 privacy.opted_out_people(suppression, read("silver.identity_map"), pii_key(ctx.config)))
    candidates = audiences.audience_candidates(
        read("gold.customer_profile"), definitions,
        audiences.person_email_hashes(read("silver.customers"), read("silver.identity_map")), opted_out,
    ).cache()
    sizes = {row["audience"]: row for row in candidates.groupBy("audience").agg(
        F.count(F.lit(1)).alias("matched"), F.count(F.when(F.col("consented"), 1)).alias("consented"),
        F.count(F.when(F.col("reachable"), 1)).alias("members")).collect()}
    accounting = ctx.accounting("gold.audiences")
    for name in names:
        size = sizes.get(name, {"matched": 0, "consented": 0, "members": 0})
        accounting.add(rows_in=size["members"], matched=size["matched"],
                       without_consent=size["matched"] - size["consented"],
                       without_contact=size["consented"] - size["members"], **{f"{name}_members": size["members"]})
    members = candidates.filter("reachable").drop("consented", "reachable")
    key = ["audience", "person_id"]
    gate = ctx.gate(members, "gold.audiences", key, quarantine="quarantine.audiences")
    accounting.add(quarantined=gate.rows_failed, published=gate.rows_checked - gate.rows_failed)
    published = gate.passed_rows.cache()
    # People who left an audience (or audiences no longer defined, on a full build) are deleted.
    io.merge_upsert(ctx.spark, published.select(*audiences.MEMBER_COLUMNS), ctx.config, "gold.audiences", key,
                    delete_missing=F.col("t.audience").isin(names) if only else True)
    exports = audiences.exports_root(ctx.config)
    for audience in definitions:
        io.export_files(audiences.activation_rows(published, audience), f"{exports}/{audience.name}")
    if not only:
        for stale in set(io.subfolders(ctx.spark, exports)) - set(names):
            io.delete_path(ctx.spark, f"{exports}/{stale}")
    published.unpersist()
    candidates.unpersist()


PRIVACY_AUDIT, PRIVACY_SUPPRESSION = "ops.privacy_audit", "ops.privacy_suppression"
# Above this many rows to delete, they are joined to their table by shuffle, not sent whole to every task.
BROADCAST_ROWS_LIMIT = 1_000_000


def _broadcast_if_few(rows: DataFrame, count: int) -> DataFrame:
    """``rows`` to delete (materialised, ``count`` of them) hinted for broadcast unless there are many. A checkpoint
    keeps the size estimate of the plan it ran, often a whole table's: unhinted, the deleting MERGE would shuffle
    its target table to join them."""
    return F.broadcast(rows) if count <= BROADCAST_ROWS_LIMIT else rows


def _optional_table(ctx: JobContext, table: str) -> DataFrame | None:
    return io.read_table(ctx.spark, ctx.config, table) if io.table_exists(ctx.spark, ctx.config, table) else None


def apply_privacy(ctx: JobContext) -> None:
    """New erasure and opt-out requests of bronze.privacy_requests -> every table, exports, model checkpoints ->
    ops.privacy_audit; VACUUM of the erased tables once the retention has passed."""
    accounting = ctx.accounting(PRIVACY_AUDIT)
    bronze_rows = _optional_table(ctx, "bronze.privacy_requests")
    if bronze_rows is not None:
        requests = privacy.privacy_requests(bronze_rows, table_schema("privacy_requests")).dropDuplicates(
            ["request_id"])
        audit = _optional_table(ctx, PRIVACY_AUDIT)
        if audit is not None:
            requests = requests.join(audit.select("request_id"), "request_id", "left_anti")
        # Materialised, not cached: Delta re-computes cached frames of a table it writes, and an erasure deletes
        # its own request from bronze.
        requests = requests.localCheckpoint()
        if requests.count():
            _apply_requests(ctx, requests, accounting)
    accounting.add(files_vacuumed=_purge_erased_history(ctx))


def _apply_requests(ctx: JobContext, requests: DataFrame, accounting) -> None:
    key = pii_key(ctx.config)
    valid = requests.filter(F.col(privacy.REJECTED).isNull())
    named = privacy.requested_customers(valid, _optional_table(ctx, "silver.customer_pii")).localCheckpoint()
    erasures = valid.filter(F.col("scope") == privacy.SCOPES[privacy.ERASURE])
    identifiers = privacy.erased_identifiers(
        named.filter(F.col("scope") == privacy.SCOPES[privacy.ERASURE]), erasures,
        *(_optional_table(ctx, t) for t in ("silver.identity_map", "silver.customers", "silver.customer_pii",
                                            "silver.orders")),
    ).localCheckpoint()
    opt_outs = named.filter(F.col("scope") != privacy.SCOPES[privacy.ERASURE]).select(
        "request_id", F.lit("customer_id").alias("kind"), F.col("customer_id").alias("value"))
    # Collected before anything is deleted: a request names a handful of people, each with a few identifiers.
    erased: dict[str, dict[str, set[str]]] = {}
    for row in identifiers.collect():
        erased.setdefault(row["request_id"], {}).setdefault(row["kind"], set()).add(row["value"])
    removed = _erase_everywhere(ctx, erased) if erased else {}
    opted = _remove_opted_out(ctx, named.filter(F.col("scope") != privacy.SCOPES[privacy.ERASURE]))
    for request_id, counts in opted.items():
        removed.setdefault(request_id, {}).update(counts)
    if erased:
        # ALS checkpoints hold per-person factors and ratings of past fits; the next fit writes them afresh.
        io.delete_path(ctx.spark, ctx.config.checkpoint_path("als"))
    _remove_from_exports(ctx, erased, opted)
    io.merge_upsert(ctx.spark, privacy.suppression_rows(identifiers.unionByName(opt_outs), valid, key), ctx.config,
                    PRIVACY_SUPPRESSION, ["kind", "identifier_hash", "scope"])
    audit_rows = _audit_rows(ctx, requests, removed, key)
    io.merge_upsert(ctx.spark, audit_rows, ctx.config, PRIVACY_AUDIT, ["request_id"])
    outcomes = {row["request_type"] or "rejected": row["count"] for row in
                requests.withColumn("request_type", F.when(F.col(privacy.REJECTED).isNull(), F.col("request_type")))
                .groupBy("request_type").count().collect()}
    rejected = outcomes.pop("rejected", 0)
    accounting.add(rows_in=sum(outcomes.values()) + rejected, published=sum(outcomes.values()), quarantined=rejected,
                   rows_erased=sum(n for counts in removed.values() for n in counts.values()),
                   tables_touched=len({t for counts in removed.values() for t, n in counts.items() if n}), **outcomes)


def _erase_everywhere(ctx: JobContext, erased: dict[str, dict[str, set[str]]]) -> dict[str, dict[str, int]]:
    """Delete every row carrying an identifier of an erased person from every Delta table of the lakehouse; the
    rows each request's person had, per table."""
    removed: dict[str, dict[str, int]] = {request_id: {} for request_id in erased}
    everyone: dict[str, set[str]] = {}
    for identifiers in erased.values():
        for kind, values in identifiers.items():
            everyone.setdefault(kind, set()).update(values)
    probes = ctx.spark.createDataFrame(privacy.request_probes(erased), "request_id string, tag string, value string")
    for table in io.list_tables(ctx.spark, ctx.config):
        if table in (PRIVACY_AUDIT, PRIVACY_SUPPRESSION):
            continue
        rows = io.read_table(ctx.spark, ctx.config, table)
        anyone = privacy.person_rows(rows.schema, everyone)
        if anyone is None:
            continue
        # One pass over the table with all requests' identifiers together; only the few rows found are told apart
        # by request. A condition per request over the whole table grew past Spark's 64 KB generated-code limit at
        # 100 requests.
        matched = rows.filter(anyone).localCheckpoint()
        counts = privacy.rows_per_request(matched, probes).collect()
        for row in counts:
            removed[row["request_id"]][table] = row["rows"]
        if counts:
            io.delete_rows(ctx.spark, ctx.config, table, _broadcast_if_few(matched, sum(r["rows"] for r in counts)))
    return removed


def _remove_opted_out(ctx: JobContext, opt_outs: DataFrame) -> dict[str, dict[str, int]]:
    """Delete opted-out people from the current members of their channel's audiences (the next build keeps them
    out through ops.privacy_suppression); the rows removed per request."""
    members = _optional_table(ctx, "gold.audiences")
    identity_map = _optional_table(ctx, "silver.identity_map")
    if members is None or identity_map is None:
        return {}
    leaving = (opt_outs.join(profiles.person_of(identity_map, "customer_id").withColumnRenamed("identifier",
                                                                                                "customer_id"),
                             "customer_id")
               .select("request_id", "person_id", F.col("scope").alias("channel")).distinct()
               .join(members.select("person_id", "channel"), ["person_id", "channel"]).localCheckpoint())
    counts = {row["request_id"]: {"gold.audiences": row["count"]} for row in leaving.groupBy("request_id").count()
              .collect()}
    if counts:
        io.delete_matching(ctx.spark, ctx.config, "gold.audiences", leaving, ["person_id", "channel"])
    return counts


def _remove_from_exports(ctx: JobContext, erased: dict[str, dict[str, set[str]]],
                         opted: dict[str, dict[str, int]]) -> None:
    """Rewrite the activation files that list a person who was just erased or left their channel."""
    gone = {person for identifiers in erased.values() for person in identifiers.get("person_id", ())}
    if not gone and not opted:
        return
    leaving = _optional_table(ctx, "gold.audiences")
    exports = audiences.exports_root(ctx.config)
    for name in io.subfolders(ctx.spark, exports):
        current = ctx.spark.read.parquet(f"{exports}/{name}/parquet")
        kept = current.filter(~F.col("person_id").isin(sorted(gone))) if gone else current
        if opted and leaving is not None:
            kept = kept.join(leaving.select("audience", "person_id"), ["audience", "person_id"], "left_semi")
        kept = kept.select(*current.columns).orderBy("person_id").localCheckpoint()
        if kept.count() != current.count():
            io.export_files(kept, f"{exports}/{name}")


def _audit_rows(ctx: JobContext, requests: DataFrame, removed: dict[str, dict[str, int]], key: bytes) -> DataFrame:
    counts = ctx.spark.createDataFrame([(request_id, tables) for request_id, tables in removed.items()],
                                       "request_id string, rows_removed map<string,bigint>")
    outcome = (F.when(F.col(privacy.REJECTED).isNotNull(), F.concat(F.lit("rejected: "), F.col(privacy.REJECTED)))
               .when(F.col("scope") == privacy.SCOPES[privacy.ERASURE], F.lit("erased"))
               .otherwise(F.concat(F.lit("opted out of "), F.col("scope"))))
    return requests.join(counts, "request_id", "left").select(
        "request_id", "request_type",
        privacy.privacy_hash(F.coalesce("customer_id", "email"), key).alias("subject_hash"), "received_at",
        F.current_timestamp().alias("applied_at"), outcome.alias("outcome"),
        F.coalesce("rows_removed", F.create_map().cast("map<string,bigint>")).alias("rows_removed"),
        F.lit(float(ctx.config.privacy.vacuum_retention_hours)).alias("vacuum_retention_hours"),
        F.lit(None).cast("timestamp").alias("history_purged_at"), F.lit(None).cast("array<string>")
        .alias("vacuumed_tables"),
    )


def _audit_erased_on_arrival(ctx: JobContext, table: str, batch_id: int, rows: int) -> None:
    """Record the deletion of re-sent records of erased people from ``table`` like a request, so the privacy job
    VACUUMs their files once the retention has passed."""
    request_id = f"erased_on_arrival:{ctx.run_id}:{table}:{batch_id}"
    arrival = ctx.spark.createDataFrame(
        [(request_id, None, None, privacy.ERASURE, dt.datetime.now(dt.timezone.utc), privacy.SCOPES[privacy.ERASURE],
          None)],
        "request_id string, customer_id string, email string, request_type string, received_at timestamp, "
        f"scope string, {privacy.REJECTED} string")
    io.merge_upsert(ctx.spark, _audit_rows(ctx, arrival, {request_id: {table: rows}}, pii_key(ctx.config)),
                    ctx.config, PRIVACY_AUDIT, ["request_id"])


def _purge_erased_history(ctx: JobContext) -> int:
    """VACUUM every table an erasure touched once the retention has passed since, so time travel cannot bring the
    person back; the audit records when and which tables. Returns the number of files deleted."""
    audit = _optional_table(ctx, PRIVACY_AUDIT)
    if audit is None:
        return 0
    retention = ctx.config.privacy.vacuum_retention_hours
    due = audit.filter((F.col("request_type") == privacy.ERASURE) & F.col("history_purged_at").isNull() & (
        F.size("rows_removed") > 0) & (
        F.col("applied_at") <= F.current_timestamp() - F.make_dt_interval(secs=F.lit(retention * 3600.0)))
    ).localCheckpoint()
    tables = sorted({table for row in due.select("rows_removed").collect() for table, n in row[0].items() if n})
    files = sum(io.vacuum(ctx.spark, ctx.config, table, retention) for table in tables)
    if tables:
        io.merge_upsert(ctx.spark, due.withColumn("history_purged_at", F.current_timestamp()).withColumn(
            "vacuumed_tables", F.filter(F.map_keys("rows_removed"), lambda t: F.col("rows_removed")[t] > 0)),
            ctx.config, PRIVACY_AUDIT, ["request_id"])
    return files


def gold_campaign_insight(ctx: JobContext) -> None:
    """Silver events, orders, campaigns + identity map -> gates -> gold.funnel_daily, gold.campaign_performance
    (last-touch and linear attribution, ROI, CAC) and gold.ab_test_results."""
    settings = ctx.config.campaigns
    read = lambda table: io.read_table(ctx.spark, ctx.config, table)  # noqa: E731
    events_df, orders_df, identity_map = read("silver.events"), read("silver.orders"), read("silver.identity_map")
    campaign_rows = read("silver.campaigns").cache()
    as_of = _profile_date(ctx, orders_df, events_df)
    funnel = campaigns.funnel_daily(events_df.filter(F.col("event_ts") < profiles.day_end(as_of))).cache()
    # Touches and A/B arms read only events that carry a campaign (4 % of them at M): the person join and the
    # cache of every event cost a 1.2 GB shuffle.
    campaign_events = profiles.person_events(events_df.filter(F.col("campaign_id").isNotNull()), identity_map,
                                             as_of).cache()
    purchases = profiles.person_purchases(orders_df, identity_map, as_of).cache()
    touches = campaigns.campaign_touches(campaign_events).cache()
    credits = campaigns.order_credits(purchases, touches, settings.attribution_lookback_days).cache()
    performance = campaigns.campaign_performance(campaign_rows, touches, credits,
                                                 campaigns.first_purchases(purchases), as_of).cache()
    attributed = credits.agg(F.sum("last_touch_cents").alias("last"), F.sum("linear_cents").alias("linear"),
                             F.countDistinct("order_id").alias("orders")).first()
    ctx.accounting("gold.campaign_performance").add(
        attributed_orders=attributed["orders"], attributed_revenue_cents_last_touch=attributed["last"] or 0,
        attributed_revenue_cents_linear=attributed["linear"] or 0, lookback_days=settings.attribution_lookback_days)
    plans = {row["campaign_id"]: campaigns.planned_split(row["variants"]) for row in
             campaign_rows.select("campaign_id", "variants").collect()}
    plans = {campaign_id: plan for campaign_id, plan in plans.items() if plan}
    arms: dict[str, list[campaigns.ArmCounts]] = {campaign_id: [] for campaign_id in plans}
    for row in campaigns.ab_test_arms(campaign_events, sorted(plans), settings.conversion_window_days).collect():
        arms[row["campaign_id"]].append(campaigns.ArmCounts(row["variant"], row["exposed"], row["converters"]))
    read_outs = ctx.spark.createDataFrame(
        [row for campaign_id, plan in sorted(plans.items()) for row in campaigns.ab_test_read_out(
            campaign_id, plan, arms[campaign_id], settings.significance_level, settings.srm_alpha)],
        campaigns.AB_RESULT_SCHEMA)
    ctx.publish_recomputed([(funnel, "gold.funnel_daily", ["day", "channel", "campaign_id"]),
                            (performance, "gold.campaign_performance", ["campaign_id"]),
                            (read_outs, "gold.ab_test_results", ["campaign_id", "variant"])])
    for cached in (performance, credits, touches, purchases, campaign_events, funnel, campaign_rows):
        cached.unpersist()


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
    # Trains models, so it runs on the slower `schedule.model_every_days` cadence.
    trains_models: bool = False

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
        # After silver and before gold: erased people are removed from silver before any gold job reads it.
        Job("privacy", apply_privacy,
            depends_on=("silver_customers", "silver_products", "silver_campaigns", "silver_events", "silver_identity",
                        "silver_orders")),
        Job("gold_daily_revenue", gold_daily_revenue, depends_on=("privacy", "silver_orders"),
            reads=("silver.orders",), writes=("gold.daily_revenue",)),
        Job("gold_customer_features", gold_customer_features,
            depends_on=("privacy", "silver_customers", "silver_identity", "silver_orders", "silver_products",
                        "silver_events"),
            reads=("silver.customers", "silver.identity_map", "silver.orders", "silver.order_items",
                   "silver.products", "silver.events"),
            writes=("gold.customer_features",)),
        Job("gold_customer_profile", gold_customer_profile,
            depends_on=("gold_customer_features", "silver_orders", "silver_identity"),
            reads=("gold.customer_features", "silver.orders", "silver.identity_map"),
            writes=("gold.customer_profile", "gold.segments")),
        Job("gold_patterns", gold_patterns, depends_on=("privacy", "silver_orders", "silver_products"),
            reads=("silver.order_items", "silver.products"), writes=("gold.frequent_itemsets", "gold.purchase_rules"),
            trains_models=True),
        Job("gold_recommendations", gold_recommendations,
            depends_on=("silver_events", "silver_orders", "silver_products", "silver_identity",
                        "gold_customer_profile"),
            reads=("silver.events", "silver.order_items", "silver.identity_map", "silver.products",
                   "gold.customer_profile"),
            writes=("gold.recommendations", "gold.similar_products"), trains_models=True),
        Job("gold_audiences", gold_audiences,
            depends_on=("gold_customer_profile", "silver_customers", "silver_identity"),
            reads=("gold.customer_profile", "silver.customers", "silver.identity_map"), writes=("gold.audiences",)),
        Job("gold_campaign_insight", gold_campaign_insight,
            depends_on=("privacy", "silver_orders", "silver_events", "silver_identity", "silver_campaigns"),
            reads=("silver.orders", "silver.events", "silver.identity_map", "silver.campaigns"),
            writes=("gold.funnel_daily", "gold.campaign_performance", "gold.ab_test_results")),
    ]
}
