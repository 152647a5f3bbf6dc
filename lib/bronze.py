"""Bronze: every received record kept as JSON text, with where and when it arrived and why it did not parse.

Records are never typed here, so nothing can be lost to a bad value or a changed layout: a CSV row becomes a
JSON object keyed by *its own file's* header (a new or missing column lands as it is; silver reports the drift),
a JSON-array file becomes one record per element, a JSON-lines file one record per line.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from lib.schemas import Source

# A comma followed by an even number of quotes is outside any quoted field (RFC 4180 quoting, "" escapes a quote).
_CSV_DELIMITER = r',(?=(?:[^"]*"[^"]*")*[^"]*$)'
# No marketing record is a megabyte long; one that is (a runaway line, a file without newlines) is kept truncated
# with its length named, so bronze, the silver parse and quarantine never carry it whole. The landing file keeps it.
MAX_RECORD_CHARS = 1_000_000
# Spark decodes text as UTF-8 and replaces every invalid byte sequence with U+FFFD: a record holding one was not
# valid UTF-8 (or was mis-encoded), and publishing the replaced text would silently corrupt it.
_REPLACEMENT_CHARACTER = "\ufffd"
_BYTE_ORDER_MARK = "\ufeff"


def read_landing_stream(spark, landing_root: str, source: Source) -> DataFrame:
    """A streaming read of a landing folder: one row per line (JSON lines) or per file (CSV, JSON array)."""
    path = f"{landing_root.rstrip('/')}/{source.path}"
    # A corrupt or truncated file (e.g. a cut-off .gz) is skipped instead of failing the whole batch; bronze_records
    # gives each one a row naming it (``files_without_records``).
    reader = spark.readStream.format("text").option("ignoreCorruptFiles", "true")
    if source.format in ("csv", "json"):
        # Whole files: a CSV row needs its file's header, a JSON array its brackets.
        reader = reader.option("wholetext", "true")
    elif source.format != "jsonl":
        raise ValueError(f"source {source.name}: unsupported format {source.format!r} (jsonl, json or csv)")
    return reader.load(path).withColumn("_source_file", F.col("_metadata.file_path"))


def bronze_records(landed: DataFrame, source: Source, batch_id: int, batch_files: DataFrame | None = None) -> DataFrame:
    """Raw records -> bronze rows: ``value`` (JSON text), ``_parse_error``, ``_line`` and ingestion metadata.

    ``batch_files`` (columns ``_source_file``, ``bytes``, ``intact``): the files the batch read; each unreadable
    one gets one row whose ``_parse_error`` names it (``files_without_records``), and so does each compressed file
    cut short after some lines (``files_cut_short``): no file, or part of one, vanishes without a trace.
    """
    # A byte-order mark would otherwise become part of the first header name or make the first JSON record malformed.
    without_bom = landed.withColumn("value", F.regexp_replace("value", f"^{_BYTE_ORDER_MARK}", ""))
    records = {"jsonl": _json_lines, "json": _json_array_elements, "csv": _csv_rows}[source.format](without_bom)
    if batch_files is not None:
        records = records.unionByName(files_without_records(landed, records, batch_files)).unionByName(
            files_cut_short(records, batch_files))
    too_long = F.length("value") > MAX_RECORD_CHARS
    return records.select(
        F.concat_ws("#", F.lit(batch_id), F.monotonically_increasing_id()).alias("_record_id"),
        F.when(too_long, F.substring("value", 1, MAX_RECORD_CHARS)).otherwise(F.col("value")).alias("value"),
        F.when(too_long, F.concat(F.lit("record too long: "), F.length("value").cast("string"),
                                  F.lit(f" characters (limit {MAX_RECORD_CHARS}); kept truncated")))
        .when(F.col("_parse_error").isNotNull(), F.col("_parse_error"))
        .when(F.col("value").contains(_REPLACEMENT_CHARACTER),
              _error("invalid UTF-8 (undecodable bytes replaced by U+FFFD)", F.col("value")))
        .alias("_parse_error"),
        "_source_file",
        "_line",
        F.current_timestamp().alias("_ingested_at"),
        F.lit(batch_id).cast("long").alias("_batch_id"),
    )


def files_without_records(landed: DataFrame, records: DataFrame, batch_files: DataFrame) -> DataFrame:
    """One row per file of the batch that has bytes but gave Spark no line at all: skipped as corrupt or truncated
    (e.g. a cut-off .gz). Files without records that could be read (0 bytes, blank lines, a CSV header alone,
    ``[]``) are valid empty exports, as sources send on quiet days: no row; the bronze job counts them
    (``files_without_records``)."""
    read = landed.select("_source_file").distinct().withColumn("_read", F.lit(True))
    silent = batch_files.join(records.select("_source_file").distinct(), "_source_file", "left_anti")
    unreadable = silent.join(read, "_source_file", "left").filter(F.col("_read").isNull() & (F.col("bytes") > 0))
    return _rows_naming_files(unreadable, F.concat(F.lit("unreadable file: skipped as corrupt or truncated ("),
                                                   F.col("bytes").cast("string"), F.lit(" bytes)")))


def files_cut_short(records: DataFrame, batch_files: DataFrame) -> DataFrame:
    """One row per compressed file of the batch that gave records but does not decompress to its end (``intact``
    false): Spark kept the lines before the cut and dropped the rest, so the loss is named here."""
    cut = batch_files.filter(~F.col("intact")).join(records.select("_source_file").distinct(), "_source_file",
                                                    "left_semi")
    return _rows_naming_files(cut, F.lit("truncated compressed file: the records before the cut landed, the rest of "
                                         "the file is lost; send it again whole, under a new name"))


def _rows_naming_files(files: DataFrame, reason: Column) -> DataFrame:
    """A bronze record with no line of its own: the file and why it is quarantined as a whole."""
    return files.select(F.lit("").alias("value"), reason.alias("_parse_error"), "_source_file",
                        F.lit(None).cast("int").alias("_line"))


def same_uri_as_metadata(path: Column | str) -> Column:
    """A file URI as ``_metadata.file_path`` spells it: ``DataFrame.inputFiles`` writes an empty authority as
    ``file:///x`` where the metadata column has ``file:/x``; both name the same file."""
    return F.regexp_replace(path, r"^([A-Za-z][A-Za-z0-9+.-]*):///", "$1:/")


def _json_lines(landed: DataFrame) -> DataFrame:
    # The text source does not number lines; `_line` stays null for JSON lines.
    return landed.select(
        "value",
        # Checked before parsing: a runaway line is named as too long (bronze_records), not parsed.
        F.when((F.length("value") <= MAX_RECORD_CHARS) & F.try_parse_json("value").isNull(),
               _error("malformed JSON", F.col("value"))).alias("_parse_error"),
        "_source_file",
        F.lit(None).cast("int").alias("_line"),
    )


def _json_array_elements(landed: DataFrame) -> DataFrame:
    elements = landed.select("_source_file", "value", F.from_json("value", "array<string>").alias("elements"))
    parsed = elements.filter(F.col("elements").isNotNull()).select(
        "_source_file", F.posexplode("elements").alias("position", "value")
    )
    broken = elements.filter(F.col("elements").isNull()).select(
        "_source_file", F.lit(-1).alias("position"), "value"
    )
    return parsed.unionByName(broken).select(
        "value",
        F.when(F.col("position") < 0, _error("not a JSON array of records", F.col("value"))).alias("_parse_error"),
        "_source_file",
        (F.col("position") + 1).cast("int").alias("_line"),
    )


def _csv_rows(landed: DataFrame) -> DataFrame:
    lines = landed.select(
        "_source_file", F.posexplode(F.split(F.regexp_replace("value", "\r\n", "\n"), "\n")).alias("index", "line")
    ).filter(F.col("line") != "")
    header = lines.filter("index = 0").select(
        "_source_file",
        # A blank header cell still needs a name to key the row's JSON object by.
        F.transform(_csv_fields(F.col("line")), lambda name, i: F.coalesce(F.trim(name), F.concat(F.lit("_c"), i)))
        .alias("header"),
    )
    rows = lines.filter("index > 0").join(header, "_source_file").withColumn("fields", _csv_fields(F.col("line")))
    width_ok = F.size("fields") == F.size("header")
    return rows.select(
        F.when(width_ok, F.to_json(F.map_from_arrays("header", "fields"))).otherwise(F.col("line")).alias("value"),
        F.when(
            ~width_ok,
            F.concat(F.lit("malformed CSV row: "), F.size("fields").cast("string"), F.lit(" fields, header has "),
                     F.size("header").cast("string")),
        ).alias("_parse_error"),
        "_source_file",
        (F.col("index") + 1).cast("int").alias("_line"),
    )


def _csv_fields(line: Column) -> Column:
    """Split one CSV line into its fields: quotes removed, "" unescaped, empty fields null."""
    unquoted = F.transform(
        F.split(line, _CSV_DELIMITER),
        lambda field: F.regexp_replace(F.regexp_replace(field, r'^"(.*)"$', "$1"), '""', '"'),
    )
    return F.transform(unquoted, lambda field: F.when(field != "", field))


def _error(reason: str, raw: Column) -> Column:
    return F.concat(F.lit(f"{reason}: "), F.substring(raw, 1, 120))
