"""Bronze: every received record kept as text, with where and when it arrived and why it did not parse."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lib.schemas import Source, table_schema

CORRUPT = "_corrupt_record"


def read_landing_stream(spark, landing_root: str, source: Source) -> DataFrame:
    """A streaming read of a landing folder, one row per raw record, plus the file it came from."""
    path = f"{landing_root.rstrip('/')}/{source.path}"
    if source.format == "jsonl":
        stream = spark.readStream.format("text").load(path)
    elif source.format == "csv":
        schema = table_schema(source.schema).raw_struct().add(CORRUPT, "string")
        stream = (
            spark.readStream.format("csv")
            .schema(schema)
            .option("header", "true")
            .option("mode", "PERMISSIVE")
            .option("columnNameOfCorruptRecord", CORRUPT)
            .load(path)
        )
    else:
        raise ValueError(f"source {source.name}: unsupported format {source.format!r} (jsonl or csv)")
    return stream.withColumn("_source_file", F.col("_metadata.file_path"))


def bronze_records(landed: DataFrame, source: Source, batch_id: int) -> DataFrame:
    """Raw records -> bronze rows: ``value`` (the record as JSON text), ``_parse_error`` and ingestion metadata."""
    if source.format == "jsonl":
        value = F.col("value")
        parse_error = F.when(
            F.try_parse_json(value).isNull(), F.concat(F.lit("malformed JSON: "), F.substring(value, 1, 120))
        )
    else:
        data_columns = [c for c in landed.columns if c not in (CORRUPT, "_source_file")]
        value = F.coalesce(F.col(CORRUPT), F.to_json(F.struct(*data_columns)))
        parse_error = F.when(
            F.col(CORRUPT).isNotNull(), F.concat(F.lit("malformed CSV row: "), F.substring(F.col(CORRUPT), 1, 120))
        )
    return landed.select(
        F.concat(F.lit(f"{batch_id}-"), F.monotonically_increasing_id().cast("string")).alias("_record_id"),
        value.alias("value"),
        parse_error.alias("_parse_error"),
        F.col("_source_file"),
        F.current_timestamp().alias("_ingested_at"),
        F.lit(batch_id).cast("long").alias("_batch_id"),
    )
