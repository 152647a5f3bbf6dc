"""Small files: `dmp optimize` (Delta OPTIMIZE, Z-ORDER), and MERGE counts when auto compaction (opt-in) follows."""

from __future__ import annotations

import contextlib

from delta import DeltaTable
from typer.testing import CliRunner

from lib import io
from lib.cli import app
from lib.spark import AUTO_COMPACT, AUTO_COMPACT_MIN_FILES
from tests.conftest import make_config


@contextlib.contextmanager
def _auto_compaction(spark, enabled: bool, min_files: int | None = None):
    """Auto compaction on or off; with ``min_files``, compacting from that many small files."""
    settings = {AUTO_COMPACT: str(enabled).lower()}
    if min_files is not None:
        settings[AUTO_COMPACT_MIN_FILES] = str(min_files)
    previous = {key: spark.conf.get(key, None) for key in settings}
    for key, value in settings.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


def _files(spark, config, table: str) -> int:
    return spark.sql(f"DESCRIBE DETAIL delta.`{config.table_path(table)}`").first()["numFiles"]


def _operations(spark, config, table: str) -> list[str]:
    return [entry["operation"] for entry in DeltaTable.forPath(spark, config.table_path(table)).history().collect()]


def _append_days(spark, config, table: str, days: int) -> None:
    for day in range(days):
        io.append(spark.createDataFrame([(day, f"visitor-{day % 3}", "view")], "day int, anonymous_id string, "
                                        "event_type string"), config, table)


def test_a_merge_reports_its_own_counts_when_auto_compaction_commits_after_it(spark, tmp_path):
    config = make_config(tmp_path)
    with _auto_compaction(spark, enabled=True, min_files=3):
        for day in range(6):
            metrics = io.merge_upsert(spark, spark.createDataFrame([(f"e-{day}", day)], "event_id string, value int"),
                                      config, "silver.events", ["event_id"])
            if _operations(spark, config, "silver.events")[0] == "OPTIMIZE":
                break
    assert _operations(spark, config, "silver.events")[:2] == ["OPTIMIZE", "MERGE"]
    assert (metrics["numSourceRows"], metrics["numTargetRowsInserted"], metrics["numTargetRowsUpdated"]) == (1, 1, 0)


def test_a_first_write_unchecked_reports_its_rows_when_auto_compaction_commits_after_it(spark, tmp_path):
    config = make_config(tmp_path)
    rows = spark.createDataFrame([(f"e-{n}", n) for n in range(8)], "event_id string, value int").repartition(4)
    with _auto_compaction(spark, enabled=True, min_files=3):
        metrics = io.merge_upsert(spark, rows, config, "silver.events", ["event_id"], unique_keys=True)
    assert _operations(spark, config, "silver.events")[0] == "OPTIMIZE"
    assert metrics == {"numSourceRows": 8, "numTargetRowsInserted": 8}


def test_dmp_optimize_compacts_and_zorders_without_changing_a_row(spark, tmp_path):
    config = make_config(tmp_path)
    with _auto_compaction(spark, enabled=False):
        _append_days(spark, config, "silver.events", 5)
    rows = sorted(io.read_table(spark, config, "silver.events").collect())
    env = {"DMP_LAKEHOUSE_ROOT": config.lakehouse_root}

    compacted = CliRunner().invoke(app, ["optimize"], env=env)
    assert compacted.exit_code == 0, compacted.output
    assert "silver.events" in compacted.output
    assert _files(spark, config, "silver.events") == 1

    zordered = CliRunner().invoke(app, ["optimize", "silver.events", "--zorder-by", "anonymous_id"], env=env)
    assert zordered.exit_code == 0, zordered.output
    newest = DeltaTable.forPath(spark, config.table_path("silver.events")).history(1).first()
    assert newest["operation"] == "OPTIMIZE" and "anonymous_id" in newest["operationParameters"]["zOrderBy"]
    assert sorted(io.read_table(spark, config, "silver.events").collect()) == rows


def test_dmp_optimize_names_what_it_cannot_do(spark, tmp_path):
    config = make_config(tmp_path)
    _append_days(spark, config, "silver.events", 1)
    env = {"DMP_LAKEHOUSE_ROOT": config.lakehouse_root}
    for args, message in ((["optimize", "silver.unicorns"], "No such table: silver.unicorns"),
                          (["optimize", "--zorder-by", "anonymous_id"], "needs the tables named"),
                          (["optimize", "silver.events", "--zorder-by", "person"], "has no column person")):
        result = CliRunner().invoke(app, args, env=env)
        assert result.exit_code == 2 and message in result.output, (args, result.output)
