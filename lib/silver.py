"""What every silver table does to bronze rows: parse and type, report drift, keep the newest version per key."""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from lib.schemas import TableSchema

LINEAGE = ["_record_id", "_source_file", "_ingested_at"]


def typed_records(bronze: DataFrame, schema: TableSchema) -> DataFrame:
    """Parse bronze ``value`` with every leaf as text, cast to the schema's types and name what did not cast.

    Also names the columns a record has beyond the schema (``_new_columns``) and the schema columns it lacks
    (``_missing_columns``): layout drift is kept and reported, never a crash.
    """
    parsed = bronze.withColumn("raw", F.from_json("value", schema.raw_struct())).withColumn(
        "_keys", F.json_object_keys("value")
    )
    names = F.array(*[F.lit(n) for n in schema.column_names])
    # A source's records mostly carry exactly the schema's keys in its order: one comparison tells those apart, and
    # only the others are diffed and listed (diffing every record made typing bronze.events at M take 28 s, not 21).
    drifted = F.col("_keys") != names
    return parsed.select(
        *LINEAGE,
        "value",
        "_parse_error",
        schema.cast_errors("raw").alias("_cast_errors"),
        F.when(drifted, _listed(F.array_except("_keys", names))).alias("_new_columns"),
        F.when(drifted, _listed(F.array_except(names, "_keys"))).alias("_missing_columns"),
        *schema.typed_columns("raw"),
    )


def _listed(names: Column) -> Column:
    # sort_array, not array_sort: array_sort takes a comparator lambda, so Spark evaluates it (and everything under
    # it, the key arithmetic of every record) without generated code.
    joined = F.concat_ws(",", F.sort_array(names))
    return F.when(joined != "", joined)


@dataclass(frozen=True)
class Deduplicated:
    rows: DataFrame
    exact_duplicates: int
    superseded: int
    marked: DataFrame  # every record with its flags, cached: ``rows`` reads it

    def unpersist(self) -> None:
        self.marked.unpersist()


def latest_versions(records: DataFrame, key: list[str], version_column: str) -> Deduplicated:
    """Drop exact re-sends of a record, then keep the newest version per key (ties: the later ingested).

    The raw record (``value``) is not kept: no silver table has it, and its hash tells re-sends apart. A re-send
    parses to the same key, so one shuffle on the key serves both steps. Two different versions of a key whose
    64-bit hashes collide would only be counted as a re-send instead of superseded: the newest is kept either way.
    The marked records are cached (``Deduplicated.unpersist`` releases them), so the counts and ``rows`` share the
    shuffle (computed apart, they sorted the whole batch by key twice).
    """
    newest_first = [F.col(version_column).desc(), F.col("_ingested_at").desc(), F.col("_record_id").desc()]
    per_key = Window.partitionBy(*key)
    same_record = per_key.orderBy("_value_hash", *newest_first)
    marked = (records.withColumn("_value_hash", F.xxhash64("value")).drop("value")
              .withColumn("_resent", F.lag("_value_hash").over(same_record) == F.col("_value_hash"))
              .withColumn("_rank", F.row_number().over(per_key.orderBy(*newest_first)))
              .cache())
    counts = marked.agg(F.count(F.lit(1)).alias("total"),
                        F.count(F.when(F.col("_resent"), 1)).alias("resent"),
                        F.count(F.when(F.col("_rank") == 1, 1)).alias("kept")).first()
    latest = marked.filter("_rank = 1").drop("_value_hash", "_resent", "_rank")
    unique = counts["total"] - counts["resent"]
    return Deduplicated(latest, exact_duplicates=counts["resent"], superseded=unique - counts["kept"], marked=marked)


def silver_columns(rows: DataFrame, schema: TableSchema) -> DataFrame:
    return rows.select(*schema.column_names, *LINEAGE)
