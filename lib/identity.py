"""Identity resolution: cookies, customer ids and email hashes joined into people (connected components).

Edges come from events that carry both a cookie and a customer id (logins, purchases) and from customer records
sharing an email hash. Components are found by min-label propagation in Spark, so no graph leaves the cluster.
A blocked identifier value never links anything, and an identifier linked to more customers than a person could
plausibly be (a shared kiosk cookie, a test email) is cut out of the graph and reported instead of merging
strangers. ``person_id`` is stable: a component keeps the id its members had before; merges and splits are
listed.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from lib.config import IdentitySettings

LINKING_EVENTS = ["login", "purchase", "checkout", "email_click", "email_open"]


def identity_edges(events: DataFrame, customers: DataFrame) -> DataFrame:
    """Undirected links (node_a, node_b) between typed identifiers, e.g. ``anonymous_id:a-1`` - ``customer_id:c-1``."""
    cookie_links = events.filter(
        F.col("event_type").isin(LINKING_EVENTS) & F.col("anonymous_id").isNotNull() & F.col("customer_id").isNotNull()
    ).select(_node("anonymous_id", "anonymous_id").alias("node_a"), _node("customer_id", "customer_id").alias("node_b"))
    email_links = customers.filter(F.col("email_hash").isNotNull()).select(
        _node("customer_id", "customer_id").alias("node_a"), _node("email_hash", "email_hash").alias("node_b")
    )
    return cookie_links.unionByName(email_links).distinct()


def identity_nodes(events: DataFrame, customers: DataFrame) -> DataFrame:
    """Every identifier seen, so that people without any link still get a person_id."""
    return (
        events.select(_node("anonymous_id", "anonymous_id").alias("node"))
        .unionByName(events.select(_node("customer_id", "customer_id").alias("node")))
        .unionByName(customers.select(_node("customer_id", "customer_id").alias("node")))
        .unionByName(customers.select(_node("email_hash", "email_hash").alias("node")))
        .filter(F.col("node").isNotNull())
        .distinct()
    )


def _node(kind: str, column: str) -> Column:
    return F.when(F.col(column).isNotNull(), F.concat(F.lit(f"{kind}:"), F.col(column)))


@dataclass(frozen=True)
class Components:
    labels: DataFrame  # node, component (the smallest node of its component)
    iterations: int
    cut_identifiers: DataFrame  # node, linked_customers: identifiers left out of linking


def connected_components(nodes: DataFrame, edges: DataFrame, settings: IdentitySettings) -> Components:
    blocked = [f"{kind}:{value}" for kind in ("anonymous_id", "customer_id", "email_hash")
               for value in settings.blocked_values]
    edges = edges.filter(~F.col("node_a").isin(blocked) & ~F.col("node_b").isin(blocked))
    fan_out = (
        edges.filter(F.col("node_b").startswith("customer_id:")).groupBy("node_a")
        .agg(F.countDistinct("node_b").alias("linked_customers"))
        .unionByName(edges.filter(F.col("node_a").startswith("customer_id:")).groupBy(F.col("node_b").alias("node_a"))
                     .agg(F.countDistinct("node_a").alias("linked_customers")))
        .groupBy(F.col("node_a").alias("node")).agg(F.max("linked_customers").alias("linked_customers"))
    )
    cut = fan_out.filter(F.col("linked_customers") > settings.max_customers_per_identifier).cache()
    cut_nodes = cut.select(F.col("node").alias("_cut"))
    edges = (
        edges.join(cut_nodes, edges.node_a == cut_nodes._cut, "left_anti")
        .join(cut_nodes, edges.node_b == cut_nodes._cut, "left_anti")
    )
    both_ways = edges.unionByName(edges.select(F.col("node_b").alias("node_a"), F.col("node_a").alias("node_b")))
    both_ways = both_ways.cache()
    labels = nodes.select("node", F.col("node").alias("component")).localCheckpoint()
    for iteration in range(1, settings.max_iterations + 1):
        offered = both_ways.join(labels.withColumnRenamed("node", "node_b"), "node_b").groupBy("node_a").agg(
            F.min("component").alias("offered")
        )
        updated = (
            labels.join(offered, labels.node == offered.node_a, "left")
            .select("node", F.least("component", F.coalesce("offered", "component")).alias("component"))
            .localCheckpoint()
        )
        changed = updated.join(labels.withColumnRenamed("component", "before"), "node").filter(
            "component <> before").count()
        labels = updated
        if changed == 0:
            return Components(labels, iteration, cut)
    raise RuntimeError(
        f"identity graph did not converge in {settings.max_iterations} iterations; raise "
        f"identity.max_iterations or check for an identifier chain linking many people"
    )


def assign_person_ids(components: DataFrame, previous: DataFrame | None) -> tuple[DataFrame, DataFrame]:
    """Give each component a stable ``person_id`` and list merges and splits against ``previous``.

    A component keeps the smallest previous person_id among its nodes; a new component gets a hash of its
    smallest node. Returns (map: node, person_id) and (changes: change, person_id, previous_person_ids).
    """
    fresh_id = F.concat(F.lit("p-"), F.substring(F.sha2("component", 256), 1, 16))
    if previous is None:
        mapping = components.select("node", fresh_id.alias("person_id"))
        return mapping, mapping.sparkSession.createDataFrame([], "change string, person_id string, "
                                                                  "previous_person_ids array<string>")
    with_previous = components.join(previous.select("node", F.col("person_id").alias("before")), "node", "left")
    per_component = with_previous.groupBy("component").agg(
        F.array_sort(F.collect_set("before")).alias("previous_ids")
    )
    # A previous id claimed by several components (a split) stays with the one holding its smallest node.
    claims = (
        per_component.select("component", F.explode("previous_ids").alias("before"))
        .groupBy("before").agg(F.min("component").alias("keeper"), F.count("*").alias("claimants"))
    )
    chosen = (
        per_component.select("component", F.explode_outer("previous_ids").alias("before"))
        .join(claims, "before", "left")
        .filter(F.col("keeper").isNull() | (F.col("keeper") == F.col("component")))
        .groupBy("component").agg(F.min("before").alias("kept_id"))
    )
    ids = chosen.select("component", F.coalesce("kept_id", fresh_id).alias("person_id"))
    mapping = components.join(ids, "component").select("node", "person_id")
    merges = per_component.join(ids, "component").filter(F.size("previous_ids") > 1).select(
        F.lit("merge").alias("change"), "person_id", F.col("previous_ids").alias("previous_person_ids")
    )
    splits = claims.filter("claimants > 1").select(
        F.lit("split").alias("change"), F.col("before").alias("person_id"),
        F.array("before").alias("previous_person_ids"),
    )
    return mapping, merges.unionByName(splits)


def identity_map(mapping: DataFrame) -> DataFrame:
    """silver.identity_map rows: identifier_type, identifier, person_id."""
    parts = F.split("node", ":", 2)
    return mapping.select(parts[0].alias("identifier_type"), parts[1].alias("identifier"), "person_id")


def mapped_nodes(identity: DataFrame) -> DataFrame:
    """silver.identity_map back to (node, person_id)."""
    return identity.select(F.concat_ws(":", "identifier_type", "identifier").alias("node"), "person_id")
