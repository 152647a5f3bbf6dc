"""Privacy requests: erasure (the right to be forgotten) and channel opt-outs, as pure DataFrame functions.

A request names a person by CRM customer id, email, or both. Erasure reaches everyone the identity map joins to
that customer (their cookies, email hashes and other customer records) and removes every row that carries any of
their identifiers from every table; opt-outs only keep the person out of the channel's audiences. What the job
keeps afterwards (ops.privacy_audit, ops.privacy_suppression) holds keyed hashes, never an identifier in clear.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import reduce

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructType

from lib.pii import keyed_hash
from lib.schemas import TableSchema
from lib.silver import typed_records

ERASURE = "erasure"
# What each request type applies to: everything, or one audience channel.
SCOPES = {ERASURE: "all", "opt_out_email": "email", "opt_out_ads": "ads"}
REJECTED = "_rejected"
# Identifier kinds as the lakehouse's columns name them. A column matches a kind when its name ends with it
# (``customer_id``, ``from_person_id``); silver.identity_map holds cookies, customer ids and email hashes in
# ``identifier``; bronze and quarantine keep each record's text in ``value``.
# A name is not among them: namesakes are other people. Matching name_hash, erasing 338 customer records at M
# deleted 192,708 of 200,991 silver.customers rows (the sample data has 120 names).
IDENTIFIER_KINDS = ("customer_id", "anonymous_id", "person_id", "email_hash", "phone_hash", "email", "phone",
                    "order_id")
# The contact hashes silver.customers keeps for each customer.
HASHED_KINDS = tuple(kind for kind in IDENTIFIER_KINDS if kind.endswith("_hash"))
IDENTITY_NODE_KINDS = ("customer_id", "anonymous_id", "email_hash")
# Identifiers an incoming record is checked against once its person was erased, and how to read each from a
# typed source record (emails as silver.customers standardises them before hashing).
SUPPRESSED_KINDS = {"customer_id": F.col, "anonymous_id": F.col, "email": lambda c: F.lower(F.trim(F.col(c)))}
# Identifiers looked for in a raw record's text (the hashes never appear in a source record).
RECORD_TEXT_KINDS = ("customer_id", "anonymous_id", "email", "phone", "order_id")


def privacy_hash(value: Column, key: bytes) -> Column:
    """The keyed hash kept after an erasure (audit subject, suppression list): domain-separated from the contact
    hashes of silver.customers, so nothing kept equals an email_hash the erased person had elsewhere."""
    return keyed_hash(F.concat(F.lit("dmp-privacy:"), value), key)


def privacy_requests(bronze_rows: DataFrame, schema: TableSchema) -> DataFrame:
    """Typed requests with ``scope`` and ``_rejected`` (why a request cannot be applied; null when it can)."""
    typed = typed_records(bronze_rows, schema)
    rejected = (
        F.when(F.col("_parse_error").isNotNull(), F.concat(F.lit("unreadable request: "), F.col("_parse_error")))
        .when(F.col("request_id").isNull(), F.lit("no request_id"))
        .when(~F.col("request_type").isin(list(SCOPES)) | F.col("request_type").isNull(),
              F.concat(F.lit("unknown request_type '"), F.coalesce(F.col("request_type"), F.lit("")),
                       F.lit(f"' (expected one of {', '.join(SCOPES)})")))
        .when(F.col("customer_id").isNull() & F.col("email").isNull(), F.lit("names neither customer_id nor email"))
    )
    scope = F.element_at(F.create_map(*[F.lit(x) for pair in SCOPES.items() for x in pair]), F.col("request_type"))
    return typed.select(
        F.coalesce("request_id", F.concat(F.lit("record:"), "_record_id")).alias("request_id"),
        F.trim("customer_id").alias("customer_id"),
        F.lower(F.trim("email")).alias("email"),
        "request_type", "received_at", scope.alias("scope"), rejected.alias(REJECTED),
    )


def requested_customers(requests: DataFrame, customer_pii: DataFrame | None) -> DataFrame:
    """(request_id, scope, customer_id): the customer a request names, and every customer with its email."""
    named = requests.filter(F.col("customer_id").isNotNull()).select("request_id", "scope", "customer_id")
    if customer_pii is None:
        return named
    by_email = requests.filter(F.col("email").isNotNull()).drop("customer_id").join(
        customer_pii.select("customer_id", F.lower(F.trim("email")).alias("email")), "email"
    ).select("request_id", "scope", "customer_id")
    return named.unionByName(by_email).distinct()


def erased_identifiers(customers_named: DataFrame, requests: DataFrame, identity_map: DataFrame | None,
                       customers: DataFrame | None, customer_pii: DataFrame | None,
                       orders: DataFrame | None) -> DataFrame:
    """(request_id, kind, value): every identifier of the people each erasure request names, by IDENTIFIER_KINDS.

    The person is everyone the identity map joins to a named customer; their orders' ids go too, since order
    lines carry only the order id. The requests' few customers and people are broadcast to the tables they are
    looked up in: materialised, they carry their source tables' size estimates, and the tables would be shuffled."""
    customer_rows = F.broadcast(customers_named.select("request_id", "customer_id"))
    parts = [requests.filter(F.col("email").isNotNull()).select("request_id", F.lit("email"), "email")]
    if identity_map is not None:
        people = F.broadcast(customer_rows.join(
            identity_map.filter(F.col("identifier_type") == "customer_id")
            .select(F.col("identifier").alias("customer_id"), "person_id"), "customer_id",
        ).select("request_id", "person_id").distinct())
        nodes = people.join(identity_map, "person_id")
        parts += [people.select("request_id", F.lit("person_id"), "person_id"),
                  nodes.select("request_id", "identifier_type", "identifier")]
        customer_rows = customer_rows.unionByName(nodes.filter(F.col("identifier_type") == "customer_id").select(
            "request_id", F.col("identifier").alias("customer_id")))
    customer_rows = F.broadcast(customer_rows.distinct())
    parts.append(customer_rows.select("request_id", F.lit("customer_id"), "customer_id"))
    if customers is not None:
        hashed = customer_rows.join(customers, "customer_id")
        parts += [hashed.select("request_id", F.lit(kind), kind) for kind in HASHED_KINDS]
    if customer_pii is not None:
        pii = customer_rows.join(customer_pii, "customer_id")
        parts += [pii.select("request_id", F.lit("email"), F.lower(F.trim("email"))),
                  pii.select("request_id", F.lit("phone"), "phone")]
    if orders is not None:
        parts.append(customer_rows.join(orders, "customer_id").select("request_id", F.lit("order_id"), "order_id"))
    named = [part.toDF("request_id", "kind", "value") for part in parts]
    return reduce(DataFrame.unionByName, named).filter(F.col("value").isNotNull()).distinct()


# What a column's values are compared with: the identity map's nodes, a raw record's quoted strings, or else the
# identifier kind the column's name ends with.
IDENTITY_NODE, RECORD_TEXT = "identifier", "value"
# What Java's regex \s matches: the blanks trimmed from a record's strings.
_BLANKS = " \t\n\u000b\f\r"
_FENCE = "\u0000"


def _column_tag(name: str) -> str | None:
    if name in (IDENTITY_NODE, RECORD_TEXT):
        return name
    return next((kind for kind in IDENTIFIER_KINDS if name.endswith(kind)), None)


def _identifying_columns(schema: StructType) -> list[tuple[str, str]]:
    """(column, tag) of every string column of ``schema`` that can identify someone."""
    tagged = [(field.name, _column_tag(field.name)) for field in schema.fields
              if isinstance(field.dataType, StringType)]
    return [(name, tag) for name, tag in tagged if tag is not None]


def _probe_values(identifiers: Mapping[str, set[str]]) -> dict[str, set[str]]:
    """tag -> the values columns of that tag are compared with, from ``identifiers`` (kind -> clear values); a raw
    record's strings are compared trimmed and lower-cased, as ``person_rows`` reads them."""
    probes: dict[str, set[str]] = {}
    for kind, values in identifiers.items():
        tags = ([kind] * (kind in IDENTIFIER_KINDS) + [IDENTITY_NODE] * (kind in IDENTITY_NODE_KINDS)
                + [RECORD_TEXT] * (kind in RECORD_TEXT_KINDS))
        for tag in tags:
            probes.setdefault(tag, set()).update(v.strip().lower() if tag == RECORD_TEXT else v for v in values)
    return probes


def person_rows(schema: StructType, identifiers: Mapping[str, set[str]]) -> Column | None:
    """A condition selecting a table's rows that carry any of ``identifiers`` (kind -> clear values), from the
    table's own columns; None when no column of the table can identify anyone.

    A raw record (bronze, quarantine) names the person when one of their identifiers is a whole JSON string in it,
    whatever its case or surrounding blanks: parsed fields alone would miss malformed records. Every column and
    every record string is one lookup in a hash set, so the cost does not grow with the number of identifiers (one
    regex alternating every identifier grew tenfold with ten times the requests)."""
    probes = _probe_values(identifiers)
    conditions = []
    for name, tag in _identifying_columns(schema):
        values = sorted(probes.get(tag, ()))
        if not values:
            continue
        column = F.col(f"`{name}`")
        if tag == RECORD_TEXT:
            conditions.append(F.exists(_record_pieces(column), _trimmed_is_in(values)))
        else:
            conditions.append(column.isin(values))
    return reduce(Column.__or__, conditions) if conditions else None


def _record_pieces(value: Column) -> Column:
    """The record's text lower-cased and cut at every quote: the pieces between two consecutive quotes are its
    strings, so a record missing a quote somewhere (cut short, hand-edited) still shows the strings after it. The
    cut is on the quote alone, which Java does without a regex: removing the blanks next to quotes by a regex first
    made the scan of bronze.events at M take 59 s instead of 39 s. The text before the first quote and after the
    last is not a string: a NUL, which no identifier holds, fences it off. Slicing it off instead cut the text twice
    (Spark evaluated the split once for the slice and once for its length): 45 s instead of 29 s at M."""
    return F.split(F.concat(F.lit(_FENCE), F.lower(value), F.lit(_FENCE)), '"')


def _trimmed(piece: Column) -> Column:
    return F.trim(piece, F.lit(_BLANKS))


# Spark counts a lambda's parameters, defaults included, so the values a lambda needs are bound by a closure.
def _trimmed_is_in(values: list[str]):
    return lambda piece: _trimmed(piece).isin(values)


def _tagged(tag: str):
    return lambda value: F.struct(F.lit(tag).alias("tag"), value.alias("value"))


def request_probes(erased: Mapping[str, Mapping[str, set[str]]]) -> list[tuple[str, str, str]]:
    """(request_id, tag, value) for ``rows_per_request``, from each request's identifiers (kind -> clear values)."""
    return [(request_id, tag, value) for request_id, identifiers in erased.items()
            for tag, values in _probe_values(identifiers).items() for value in sorted(values)]


def rows_per_request(rows: DataFrame, probes: DataFrame) -> DataFrame:
    """(request_id, rows): how many of ``rows`` carry an identifier of each request's person, with ``probes``
    (request_id, tag, value) from ``request_probes``: the rows ``person_rows`` would find for each request alone,
    found by one join instead of a condition per request."""
    parts = []
    for name, tag in _identifying_columns(rows.schema):
        column = F.col(f"`{name}`")
        values = F.transform(_record_pieces(column), _trimmed) if tag == RECORD_TEXT else F.array(column)
        # A null record has no strings; concat would make the whole row's probes null.
        parts.append(F.coalesce(F.transform(values, _tagged(tag)), F.array()))
    if not parts:
        return probes.select("request_id", F.lit(0).alias("rows")).limit(0)
    # The row id is given before the explode, so that every probe of a row carries the same one.
    numbered = rows.select(F.monotonically_increasing_id().alias("_row"), F.concat(*parts).alias("_probes"))
    found = numbered.select("_row", F.explode("_probes").alias("_probe")).select("_row", "_probe.tag", "_probe.value")
    return (found.join(F.broadcast(probes), ["tag", "value"]).groupBy("request_id")
            .agg(F.countDistinct("_row").alias("rows")))


def suppression_rows(identifiers: DataFrame, requests: DataFrame, key: bytes) -> DataFrame:
    """(kind, identifier_hash, scope, request_id): the keyed hashes incoming records are checked against, so an
    erased person is not re-created by a later export and an opted-out one stays out of the channel."""
    return (
        identifiers.filter(F.col("kind").isin(list(SUPPRESSED_KINDS))).join(requests.select("request_id", "scope"),
                                                                            "request_id")
        .select("kind", privacy_hash(F.col("value"), key).alias("identifier_hash"), "scope", "request_id")
        .distinct()
    )


def with_erased_flag(rows: DataFrame, suppression: DataFrame, key: bytes) -> DataFrame:
    """Adds ``_erased``: whether a typed source record carries an identifier (SUPPRESSED_KINDS) of an erased
    person."""
    erased = suppression.filter(F.col("scope") == SCOPES[ERASURE]).select("kind", "identifier_hash").distinct()
    kinds = [kind for kind in SUPPRESSED_KINDS if kind in rows.columns]
    marked = rows
    for kind in kinds:
        hashes = erased.filter(F.col("kind") == kind).select(F.col("identifier_hash").alias("_hash"),
                                                             F.lit(True).alias(f"_erased_{kind}"))
        marked = (marked.withColumn("_hash", privacy_hash(SUPPRESSED_KINDS[kind](kind), key))
                  .join(F.broadcast(hashes), "_hash", "left").drop("_hash"))
    flags = [F.coalesce(F.col(f"_erased_{kind}"), F.lit(False)) for kind in kinds]
    erased_flag = reduce(Column.__or__, flags) if flags else F.lit(False)
    return marked.withColumn("_erased", erased_flag).drop(*[f"_erased_{kind}" for kind in kinds])


def opted_out_people(suppression: DataFrame, identity_map: DataFrame, key: bytes) -> DataFrame:
    """(person_id, channel) of people with an opt-out for the channel on any of their customer records."""
    opted = suppression.filter(F.col("scope") != SCOPES[ERASURE]).filter(F.col("kind") == "customer_id")
    customers = identity_map.filter(F.col("identifier_type") == "customer_id").select(
        privacy_hash(F.col("identifier"), key).alias("identifier_hash"), "person_id")
    return customers.join(opted, "identifier_hash").select("person_id", F.col("scope").alias("channel")).distinct()
