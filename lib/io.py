"""All reads and writes of Delta tables and landing files. Transformations never touch storage; jobs call these."""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from delta import exceptions as delta_exceptions
from delta.tables import DeltaMergeBuilder, DeltaTable
from py4j.protocol import Py4JJavaError
from pyspark.errors import AnalysisException
from pyspark.ml import PipelineModel
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQueryException
from pyspark.sql.types import MapType

from lib.config import Config
from lib.csv_safety import formula_safe

log = logging.getLogger(__name__)
T = TypeVar("T")


class TableNotFound(LookupError):
    pass


class CommitConflict(RuntimeError):
    """Concurrent writers kept changing a table under a commit, more times than it was retried."""


# Delta's optimistic concurrency: a commit that a concurrent writer's commit invalidated. Python's classes for them
# share no base class.
_CONFLICTS = tuple(getattr(delta_exceptions, name) for name in delta_exceptions.__all__)


# Layers whose tables record Delta's Change Data Feed, so the jobs reading them can process only changed rows.
CHANGE_FEED_LAYERS = ("silver",)


class MergeKeyCollision(ValueError):
    """A MERGE source with several rows per key: Delta would fail with a bare "multiple source rows matched"."""


def path_exists(spark: SparkSession, path: str) -> bool:
    """Whether a file or folder exists, on any Hadoop filesystem (local, s3a://, abfss://, dbfs:/)."""
    jvm_path = spark._jvm.org.apache.hadoop.fs.Path(path)
    return jvm_path.getFileSystem(spark._jsc.hadoopConfiguration()).exists(jvm_path)


def table_exists(spark: SparkSession, config: Config, table: str) -> bool:
    return DeltaTable.isDeltaTable(spark, config.table_path(table))


def read_table(spark: SparkSession, config: Config, table: str, version: int | None = None) -> DataFrame:
    if not table_exists(spark, config, table):
        raise TableNotFound(
            f"{table} does not exist at {config.table_path(table)}; run the job that builds it first "
            f"(`dmp pipeline run`)"
        )
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    return reader.load(config.table_path(table))


def _snapshot(spark: SparkSession, config: Config, table: str):
    """Delta's current snapshot of ``table`` (JVM object; version -1 when the table does not exist).

    Delta's Python API reaches a table's version only through history(1), a Spark job of ~0.4 s; the snapshot
    answers in milliseconds, and every job asks it for each table it reads and around each MERGE."""
    none = spark._jvm.scala.Option.empty()
    log = spark._jvm.org.apache.spark.sql.delta.DeltaLog.forTable(spark._jsparkSession, config.table_path(table))
    return log.update(False, none, none)


def table_version(spark: SparkSession, config: Config, table: str) -> int | None:
    version = _snapshot(spark, config, table).version()
    return version if version >= 0 else None


def tables_bytes(spark: SparkSession, config: Config, tables: Sequence[str]) -> int:
    """The bytes of the current data files of each of ``tables`` that exists, together."""
    return sum(max(_snapshot(spark, config, table).sizeInBytes(), 0) for table in tables)


def table_versions(spark: SparkSession, config: Config, tables: Sequence[str]) -> dict[str, int]:
    """The current Delta version of each of ``tables`` that exists."""
    versions = {table: table_version(spark, config, table) for table in tables}
    return {table: version for table, version in versions.items() if version is not None}


@dataclass(frozen=True)
class Commit:
    """A table's newest Delta commit: its version, when it was committed and by which operation."""

    version: int
    timestamp: dt.datetime
    operation: str


def last_commit(spark: SparkSession, config: Config, table: str) -> Commit | None:
    """The newest commit of ``table`` (Delta's DESCRIBE HISTORY, one entry); None when the table does not exist."""
    if not table_exists(spark, config, table):
        return None
    entry = DeltaTable.forPath(spark, config.table_path(table)).history(1).collect()[0]
    return Commit(entry["version"], entry["timestamp"], entry["operation"])


def restore_table(spark: SparkSession, config: Config, table: str, version: int) -> int:
    """Delta RESTORE of ``table`` to ``version``, itself committed as a new version. Returns that new version."""
    DeltaTable.forPath(spark, config.table_path(table)).restoreToVersion(version)
    return table_version(spark, config, table)


def list_tables(spark: SparkSession, config: Config, layers: Sequence[str] | None = None) -> list[str]:
    """The Delta tables under the lakehouse as ``<layer>.<name>``, sorted: of ``layers``, or of every layer folder
    (folders starting with ``_`` hold checkpoints, models and secrets, not layers)."""
    jvm = spark._jvm
    root = jvm.org.apache.hadoop.fs.Path(config.lakehouse_root)
    fs = root.getFileSystem(spark._jsc.hadoopConfiguration())

    def folders(path) -> list[str]:
        if not fs.exists(path):
            return []
        return [status.getPath().getName() for status in fs.listStatus(path) if status.isDirectory()]

    layer_names = layers if layers is not None else [n for n in folders(root) if not n.startswith("_")]
    tables = [f"{layer}.{name}" for layer in layer_names
              for name in folders(jvm.org.apache.hadoop.fs.Path(root, layer)) if not name.startswith("_")]
    return sorted(table for table in tables if table_exists(spark, config, table))


def read_changes(spark: SparkSession, config: Config, table: str, after_version: int, up_to_version: int) -> DataFrame:
    """Rows changed by the commits after ``after_version`` up to ``up_to_version`` (Delta Change Data Feed): the
    table's columns plus ``_change_type`` (insert, delete, update_preimage, update_postimage) and
    ``_commit_version``. Lazy: a range the feed does not cover (recorded only later, or its files vacuumed) fails
    when the rows are evaluated."""
    return (
        spark.read.format("delta").option("readChangeFeed", "true")
        .option("startingVersion", after_version + 1).option("endingVersion", up_to_version)
        .load(config.table_path(table))
    )


def retry_conflicts(config: Config, table: str, commit: Callable[[], T]) -> T:
    """``commit()``, run again (on the table's new version) when a concurrent writer's commit conflicts with it, up
    to ``concurrency.conflict_attempts`` times in all, with a growing random pause; then CommitConflict."""
    attempts = config.concurrency.conflict_attempts
    for attempt in range(1, attempts + 1):
        try:
            return commit()
        except _CONFLICTS as conflict:
            reason = str(conflict).splitlines()[0]
            if attempt == attempts:
                raise CommitConflict(
                    f"{table}: a concurrent writer's commit conflicted with this one {attempts} times ({reason}); "
                    f"nothing of this commit was written. Run again when the other writer is done, or raise "
                    f"DMP_CONCURRENCY__CONFLICT_ATTEMPTS") from conflict
            log.warning("%s: commit conflicted with a concurrent writer (%s); attempt %d of %d", table, reason,
                        attempt + 1, attempts)
            time.sleep(random.uniform(0.2, 1.0) * attempt)
    raise AssertionError("unreachable")


def append(df: DataFrame, config: Config, table: str, txn: tuple[str, int] | None = None) -> bool:
    """Append; with ``txn=(app_id, version)`` Delta skips a version it already committed (exactly-once retries).
    Returns whether a commit was made: False when Delta skipped the write, without running ``df``."""
    writer = df.write.format("delta").mode("append").option("mergeSchema", "true")
    if txn is not None:
        writer = writer.option("txnAppId", txn[0]).option("txnVersion", txn[1])
    # Only a write with a txn can be skipped; a table not created yet has no version (None).
    before = table_version(df.sparkSession, config, table) if txn is not None else None
    retry_conflicts(config, table, lambda: writer.save(config.table_path(table)))
    return txn is None or table_version(df.sparkSession, config, table) != before


def merge_upsert(
    spark: SparkSession,
    df: DataFrame,
    config: Config,
    table: str,
    keys: Sequence[str],
    newer_than: str | None = None,
    delete_missing: bool | Column = False,
    unique_keys: bool = False,
) -> dict[str, int]:
    """MERGE ``df`` into ``table`` on ``keys``; creates the table on first use. Returns Delta's operation metrics.

    ``newer_than``: update a matched row only when the source's column is greater (a late, older version of a
    record never overwrites a newer one). Without it, matched rows are updated only when a value changed, so a
    re-run on the same input commits no row changes. ``delete_missing`` removes target rows absent from ``df``
    (for tables recomputed whole, such as gold aggregates); a Column condition on the target (alias ``t``)
    removes only the absent rows it selects (for a recomputed part, such as some days of a gold aggregate).
    ``unique_keys``: the caller's rows are one per key by construction, so the pass that checks it is skipped and
    ``df`` is read by the write alone (it then needs no cache).
    """
    source_rows = None if unique_keys else _rows_with_unique_keys(df, table, keys)
    return retry_conflicts(config, table, lambda: _merge(spark, df, source_rows, config, table, keys, newer_than,
                                                         delete_missing))


def _rows_with_unique_keys(df: DataFrame, table: str, keys: Sequence[str]) -> int:
    """The rows of ``df``, in one pass that also raises MergeKeyCollision when several share a key. Counted before
    the MERGE: afterwards the source's lineage may no longer evaluate (a re-run's recommendations crashed when
    counted after a MERGE that changed nothing)."""
    per_key = df.groupBy(*keys).count()
    totals = per_key.agg(F.sum("count").alias("rows"), F.count_if(F.col("count") > 1).alias("colliding")).first()
    if totals["colliding"]:
        colliding = per_key.filter("count > 1").limit(5).collect()
        named = "; ".join(", ".join(f"{k}={row[k]!r}" for k in keys) + f" ({row['count']} rows)" for row in colliding)
        raise MergeKeyCollision(
            f"MERGE into {table}: several source rows share a key ({named}); deduplicate them before merging"
        )
    return totals["rows"] or 0


def _merge(spark: SparkSession, df: DataFrame, source_rows: int | None, config: Config, table: str, keys: Sequence[str],
           newer_than: str | None, delete_missing: bool | Column) -> dict[str, int]:
    path = config.table_path(table)
    if not table_exists(spark, config, table):
        # The first publish writes the (key-unique) source as the table's version 0: a MERGE into an empty table
        # would cost a commit to create it and a join to find nothing. When a concurrent writer creates the table
        # first, this write fails (the table exists, or Delta's version 0 is taken: a conflict, retried) and the
        # rows are merged into that table instead.
        writer = df.write.format("delta").mode("errorifexists")
        if table.partition(".")[0] in CHANGE_FEED_LAYERS:
            writer = writer.option("delta.enableChangeDataFeed", "true")
        try:
            writer.save(path)
            if source_rows is None:
                # Version 0 is this write; auto compaction may have committed after it.
                written = DeltaTable.forPath(spark, path).history().filter("version = 0").first()
                source_rows = int(written["operationMetrics"]["numOutputRows"])
            return {"numSourceRows": source_rows, "numTargetRowsInserted": source_rows}
        except AnalysisException:
            if not table_exists(spark, config, table):
                raise
    target = DeltaTable.forPath(spark, path)
    on = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in keys)
    if newer_than:
        changed = f"s.`{newer_than}` > t.`{newer_than}`"
    else:
        changed = " OR ".join(_differs(f"t.`{f.name}`", f"s.`{f.name}`", f.dataType)
                              for f in df.schema.fields if f.name not in keys) or "false"
    merge = (
        target.alias("t")
        .merge(df.alias("s"), on)
        .whenMatchedUpdateAll(condition=changed)
        .whenNotMatchedInsertAll()
    )
    if isinstance(delete_missing, Column):
        merge = merge.whenNotMatchedBySourceDelete(condition=delete_missing)
    elif delete_missing:
        merge = merge.whenNotMatchedBySourceDelete()
    metrics = _executed(spark, config, table, target, merge)
    if metrics is None:
        return {} if source_rows is None else {"numSourceRows": source_rows}
    return metrics


def _executed(spark: SparkSession, config: Config, table: str, target: DeltaTable,
              merge: DeltaMergeBuilder) -> dict[str, int] | None:
    """Execute ``merge`` on ``target`` and return the operation metrics of its commit, or None when it committed
    nothing: Delta commits nothing for a MERGE that changes nothing (e.g. an empty source), and the newest history
    entry is then another operation's. Auto compaction may have committed after the MERGE: its entry is skipped."""
    before = table_version(spark, config, table)
    merge.execute()
    after = table_version(spark, config, table)
    if after == before:
        return None
    merged = min((entry for entry in target.history(after - before).collect() if entry["operation"] == "MERGE"),
                 key=lambda entry: entry["version"])
    return {k: int(v) for k, v in (merged["operationMetrics"] or {}).items() if v.isdigit()}


def delete_matching(spark: SparkSession, config: Config, table: str, rows: DataFrame, keys: Sequence[str],
                    condition: str | None = None) -> int:
    """Delete the rows of ``table`` whose ``keys`` match a row of ``rows`` (and, if given, ``condition`` on the
    target, alias ``t``), by MERGE. Returns the number of rows deleted."""
    def delete() -> int:
        target = DeltaTable.forPath(spark, config.table_path(table))
        on = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in keys)
        merge = target.alias("t").merge(rows.select(*keys).distinct().alias("s"), on).whenMatchedDelete(condition)
        return (_executed(spark, config, table, target, merge) or {}).get("numTargetRowsDeleted", 0)

    return retry_conflicts(config, table, delete)


def delete_rows(spark: SparkSession, config: Config, table: str, rows: DataFrame) -> int:
    """Delete the rows of ``table`` equal to a row of ``rows`` (rows read from the table, materialised), by MERGE on
    every column. Unlike a DELETE, whose predicate Delta keeps in the table's history literals and all, the commit
    records column names only. Returns the number of rows deleted."""
    def delete() -> int:
        target = DeltaTable.forPath(spark, config.table_path(table))
        on = " AND ".join(f"NOT {_differs(f't.`{f.name}`', f's.`{f.name}`', f.dataType)}" for f in rows.schema.fields)
        # An unconditional delete may match a target row from several source rows (exact duplicate rows).
        merge = target.alias("t").merge(rows.alias("s"), on).whenMatchedDelete()
        return (_executed(spark, config, table, target, merge) or {}).get("numTargetRowsDeleted", 0)

    return retry_conflicts(config, table, delete)


# Delta refuses a VACUUM retention below this unless its safety check is turned off for the call.
DELTA_MIN_RETENTION_HOURS = 168


def vacuum(spark: SparkSession, config: Config, table: str, retention_hours: float) -> int:
    """Delta VACUUM of ``table``: files no version newer than ``retention_hours`` needs (removed data, change data
    feed files) are deleted for good, so time travel cannot reach them. Returns the number of files deleted."""
    check = "spark.databricks.delta.retentionDurationCheck.enabled"
    previous = spark.conf.get(check, "true")
    if retention_hours < DELTA_MIN_RETENTION_HOURS:
        spark.conf.set(check, "false")
    try:
        target = DeltaTable.forPath(spark, config.table_path(table))
        target.vacuum(retention_hours)
    finally:
        spark.conf.set(check, previous)
    ends = [entry for entry in target.history(5).collect() if entry["operation"] == "VACUUM END"]
    return int((ends[0]["operationMetrics"] or {}).get("numDeletedFiles", 0)) if ends else 0


@dataclass(frozen=True)
class Optimized:
    """What a Delta OPTIMIZE of one table did."""

    files_before: int
    files_after: int
    bytes_after: int


def optimize(spark: SparkSession, config: Config, table: str, zorder_by: Sequence[str] = ()) -> Optimized:
    """Delta OPTIMIZE of ``table``: its small files rewritten into files of up to Delta's target size; with
    ``zorder_by``, every file rewritten so that rows with near values of those columns share files, and filters on
    them skip the rest. A commit without data change: no reader, stream or change feed sees new rows."""
    before = _snapshot(spark, config, table).numOfFiles()

    def run() -> None:
        builder = DeltaTable.forPath(spark, config.table_path(table)).optimize()
        (builder.executeZOrderBy(*zorder_by) if zorder_by else builder.executeCompaction()).collect()

    retry_conflicts(config, table, run)
    after = _snapshot(spark, config, table)
    return Optimized(before, after.numOfFiles(), after.sizeInBytes())


def _differs(target: str, source: str, data_type) -> str:
    # Maps have no equality in Spark SQL; their JSON text (keys in insertion order, as written) does.
    if isinstance(data_type, MapType):
        return f"NOT (to_json({target}) <=> to_json({source}))"
    return f"NOT ({target} <=> {source})"


def process_new_rows(
    stream: DataFrame, checkpoint: str, process_batch: Callable[[DataFrame, int], None]
) -> None:
    """Run ``process_batch`` over everything ``stream`` has not yet delivered, then stop.

    Structured Streaming with ``availableNow`` and a checkpoint: each file or table version is processed exactly
    once across runs, and a batch that raised is not committed, so the next run retries it. An exception raised by
    ``process_batch`` is re-raised as itself, not wrapped in Spark's StreamingQueryException.
    """
    raised: list[BaseException] = []

    def guarded(batch: DataFrame, batch_id: int) -> None:
        try:
            process_batch(batch, batch_id)
        except BaseException as error:
            raised.append(error)
            # py4j reports only Exceptions back to the JVM; anything else would leave the query waiting forever.
            raise RuntimeError(f"micro-batch {batch_id} failed: {error!r}") from None

    query = (
        stream.writeStream.foreachBatch(guarded)
        .option("checkpointLocation", checkpoint)
        .trigger(availableNow=True)
        .start()
    )
    try:
        query.awaitTermination()
    except StreamingQueryException:
        if raised:
            raise raised[0] from None
        raise


def stream_batch_files(spark: SparkSession, checkpoint: str, batch_id: int) -> DataFrame:
    """The files a file-source stream's micro-batch ``batch_id`` read (columns ``path``, ``bytes``, ``intact``),
    from the source's log in its checkpoint: unlike the rows, the log also names files that yielded none (empty, or
    skipped as corrupt). Every 10th batch the log is compacted into ``<n>.compact`` holding all batches so far, hence
    the wildcard. Sizes come from the filesystem (a batch names few files); a file gone since reads as -1.
    ``intact`` is false for a compressed file that does not decompress to its end (``_decompresses_whole``)."""
    log = f"{checkpoint.rstrip('/')}/sources/0/{{{batch_id},*.compact}}"
    entries = spark.read.text(log).filter(F.col("value").startswith("{"))
    parsed = entries.select(F.from_json("value", "path string, batchId long").alias("entry"))
    paths = [row[0] for row in parsed.filter(F.col("entry.batchId") == batch_id).select("entry.path").distinct()
             .collect()]
    return spark.createDataFrame([(path, _file_bytes(spark, path), _decompresses_whole(spark, path)) for path in paths],
                                 "path string, bytes long, intact boolean")


def _hadoop_path(spark: SparkSession, path: str):
    jvm_path = spark._jvm.org.apache.hadoop.fs.Path(spark._jvm.java.net.URI(path))
    return jvm_path, jvm_path.getFileSystem(spark._jsc.hadoopConfiguration())


def _file_bytes(spark: SparkSession, path: str) -> int:
    jvm_path, fs = _hadoop_path(spark, path)
    return fs.getFileStatus(jvm_path).getLen() if fs.exists(jvm_path) else -1


def _decompresses_whole(spark: SparkSession, path: str) -> bool:
    """Whether a compressed file (any Hadoop codec: .gz, .bz2, .zst ...) decodes to its end; true for a plain or
    vanished file. With ``ignoreCorruptFiles`` Spark keeps the lines before a cut in a compressed file and drops the
    rest with only a log line: this is what tells bronze that lines were lost. It decompresses the file once more,
    streamed on the driver's JVM (memory stays flat); plain files, the generator's and most exports, cost nothing."""
    jvm_path, fs = _hadoop_path(spark, path)
    codec = spark._jvm.org.apache.hadoop.io.compress.CompressionCodecFactory(
        spark._jsc.hadoopConfiguration()).getCodec(jvm_path)
    if codec is None or not fs.exists(jvm_path):
        return True
    stream = codec.createInputStream(fs.open(jvm_path))
    try:
        spark._jvm.org.apache.commons.io.IOUtils.consume(stream)
        return True
    except Py4JJavaError as error:
        if not spark._jvm.java.lang.Class.forName("java.io.IOException").isInstance(error.java_exception):
            raise
        return False
    finally:
        stream.close()


def save_model(model: PipelineModel, path: str) -> None:
    model.write().overwrite().save(path)


def load_model(path: str) -> PipelineModel:
    return PipelineModel.load(path)



def export_files(df: DataFrame, folder: str, formats: Sequence[str] = ("csv", "parquet")) -> None:
    """Replace ``<folder>/<format>/`` with ``df`` as one file per format (CSV with a header): activation files
    for tools outside Spark, rewritten whole on every export. CSV text cells that would start a spreadsheet
    formula are quote-prefixed (lib/csv_safety.py); Parquet keeps the values as they are."""
    for file_format in formats:
        rows = formula_safe(df) if file_format == "csv" else df
        writer = rows.coalesce(1).write.mode("overwrite")
        (writer.option("header", "true") if file_format == "csv" else writer).format(file_format).save(
            f"{folder.rstrip('/')}/{file_format}")


def subfolders(spark: SparkSession, folder: str) -> list[str]:
    """Names of the folders directly inside ``folder`` (none when it does not exist), on any Hadoop filesystem."""
    jvm_path = spark._jvm.org.apache.hadoop.fs.Path(folder)
    fs = jvm_path.getFileSystem(spark._jsc.hadoopConfiguration())
    if not fs.exists(jvm_path):
        return []
    return sorted(status.getPath().getName() for status in fs.listStatus(jvm_path) if status.isDirectory())


def delete_path(spark: SparkSession, path: str) -> None:
    """Delete a file or folder recursively, on any Hadoop filesystem."""
    jvm_path = spark._jvm.org.apache.hadoop.fs.Path(path)
    jvm_path.getFileSystem(spark._jsc.hadoopConfiguration()).delete(jvm_path, True)
