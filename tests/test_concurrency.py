"""Concurrent runs on one lakehouse: the lakehouse lock serialises them (or fails the late one with a message naming
the holder, and a killed holder leaves no stale lock), and Delta commits that conflict with a concurrent writer's are
retried a bounded number of times."""

from __future__ import annotations

import dataclasses
import logging
import signal
import subprocess
import sys
import threading
import time

import pytest
from typer.testing import CliRunner

from lib import io
from lib.cli import app
from lib.config import ConcurrencySettings
from lib.generate import GeneratorSettings, generate
from lib.lock import LakehouseBusy, lakehouse_lock
from lib.pipeline import run_pipeline
from tests.conftest import make_config

HOLD = "import sys, time; from lib.lock import lakehouse_lock\n" \
       "with lakehouse_lock(sys.argv[1], 0):\n    print('held', flush=True); time.sleep(float(sys.argv[2]))"


@pytest.fixture
def holder(tmp_path):
    """Start a process holding the lock of ``tmp_path / 'lakehouse'`` for some seconds; killed at the end."""
    started = []

    def hold(seconds: float) -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "lakehouse"), str(seconds)],
                                   stdout=subprocess.PIPE, text=True)
        assert process.stdout.readline().strip() == "held"
        started.append(process)
        return process

    yield hold
    for process in started:
        process.kill()
        process.wait()


def test_a_run_that_cannot_wait_fails_naming_the_run_holding_the_lakehouse(tmp_path, holder):
    process = holder(60)

    with pytest.raises(LakehouseBusy) as busy:
        with lakehouse_lock(str(tmp_path / "lakehouse"), 1):
            pass

    assert f"in use by another run (pid {process.pid} on" in str(busy.value)
    assert "DMP_CONCURRENCY__LOCK_WAIT_SECONDS" in str(busy.value)


def test_a_run_waits_for_the_holder_to_finish(tmp_path, holder):
    holder(3)
    started = time.monotonic()

    with lakehouse_lock(str(tmp_path / "lakehouse"), 60):
        waited = time.monotonic() - started

    assert 1 < waited < 30


def test_a_killed_holder_leaves_no_stale_lock(tmp_path, holder):
    process = holder(600)
    process.send_signal(signal.SIGKILL)
    process.wait()

    with lakehouse_lock(str(tmp_path / "lakehouse"), 0):
        pass


def test_pipeline_run_refuses_cleanly_while_another_run_holds_the_lakehouse(spark, tmp_path, holder):
    process = holder(60)

    result = CliRunner().invoke(app, ["pipeline", "run", "--only", "bronze"], env={
        "DMP_LAKEHOUSE_ROOT": str(tmp_path / "lakehouse"), "DMP_LANDING_ROOT": str(tmp_path / "landing"),
        "DMP_CONCURRENCY__LOCK_WAIT_SECONDS": "0"})

    assert result.exit_code == 3, result.output
    assert f"pid {process.pid}" in result.output
    assert not (tmp_path / "lakehouse" / "bronze").exists()


def test_two_runs_started_at_once_serialise_and_ingest_every_file_once(spark, tmp_path):
    generate(tmp_path / "landing", GeneratorSettings(customers=20, days=2, seed=5, products=40))
    config = make_config(tmp_path)
    runs: list = []
    start = threading.Barrier(2)

    def pipeline() -> None:
        start.wait()
        runs.append(run_pipeline(spark, config, jobs=["bronze"]))

    threads = [threading.Thread(target=pipeline) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(runs) == 2 and all(run.ok for pipeline_runs in runs for run in pipeline_runs)
    ingested = sorted(sum(t.published for run in pipeline_runs for t in run.tables) for pipeline_runs in runs)
    lines = sum(1 for path in (tmp_path / "landing" / "orders").glob("*.jsonl") for _ in path.open())
    assert ingested[0] == 0 and ingested[1] > 0
    assert io.read_table(spark, config, "bronze.orders").count() == lines


def _at_once(writers: int, write) -> list[BaseException]:
    """Run ``write(writer)`` for writers 1..``writers`` in threads released together; the errors they raised."""
    start = threading.Barrier(writers)
    errors: list[BaseException] = []

    def released(writer: int) -> None:
        start.wait()
        try:
            write(writer)
        except BaseException as error:  # noqa: BLE001 - returned to the test's assertion
            errors.append(error)

    threads = [threading.Thread(target=released, args=(w,)) for w in range(1, writers + 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_conflicting_concurrent_merges_are_retried_until_each_lands(spark, tmp_path, caplog):
    config = dataclasses.replace(make_config(tmp_path), concurrency=ConcurrencySettings(conflict_attempts=10))
    table, writers = "gold.concurrent", 3
    io.merge_upsert(spark, spark.createDataFrame([(0, "seed")], "id int, writer string"), config, table, ["id"])

    def write(writer: int) -> None:
        rows = spark.createDataFrame([(writer * 100 + i, f"w{writer}") for i in range(1, 51)], "id int, writer string")
        io.merge_upsert(spark, rows, config, table, ["id"])

    with caplog.at_level(logging.WARNING, logger="lib.io"):
        errors = _at_once(writers, write)

    assert errors == []
    assert any("conflicted with a concurrent writer" in r.message for r in caplog.records)
    landed = io.read_table(spark, config, table).groupBy("writer").count().collect()
    assert {r["writer"]: r["count"] for r in landed} == {"seed": 1, **{f"w{w}": 50 for w in range(1, writers + 1)}}


def test_writers_creating_one_table_at_once_leave_each_key_once(spark, tmp_path):
    config = dataclasses.replace(make_config(tmp_path), concurrency=ConcurrencySettings(conflict_attempts=10))
    table, writers = "gold.created_at_once", 3

    def write(writer: int) -> None:
        io.merge_upsert(spark, spark.createDataFrame([(i, writer) for i in range(50)], "id int, writer int"),
                        config, table, ["id"])

    assert _at_once(writers, write) == []
    landed = io.read_table(spark, config, table)
    assert (landed.count(), landed.select("id").distinct().count()) == (50, 50)
