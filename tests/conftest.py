"""One real local SparkSession (with Delta) for the whole test session; every test gets its own lakehouse folder."""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from lib.config import Config, GateSettings, RecommendationSettings, SparkSettings
from lib.generate import DirtRates, GeneratorSettings, generate
from lib.pipeline import run_pipeline
from lib.spark import spark_session, unpersist_rdds

# In local mode the driver is also the executor: its heap holds every cached block and builds every broadcast
# of an hour-long session.
TEST_SPARK = SparkSettings(master="local[2]", shuffle_partitions=2, driver_memory="6g")
# One ALS grid point: tests that run the whole pipeline check recommendations exist, not the search, which
# tests/test_recommend.py covers on its own grid.
TEST_RECOMMENDATIONS = RecommendationSettings(ranks=(10,), alphas=(10.0,))
# Dirt rates high enough that every kind appears several times in the small end-to-end sample.
E2E_RATES = DirtRates(exact_duplicate=0.03, resent_newer=0.03, null_required=0.02, malformed_json=0.02,
                      wrong_type=0.02, negative_price=0.02, future_timestamp=0.02, unknown_customer=0.02)


def make_config(root: Path, landing: Path | None = None, **gates) -> Config:
    return Config(
        landing_root=str(landing or root / "landing"),
        lakehouse_root=str(root / "lakehouse"),
        spark=TEST_SPARK,
        recommendations=TEST_RECOMMENDATIONS,
        gates=dataclasses.replace(GateSettings(), **gates),
    )


@pytest.fixture(scope="session")
def spark():
    session = spark_session(Config(spark=TEST_SPARK))
    yield session
    session.stop()


@pytest.fixture
def driver_in_another_time_zone():
    """This Python process 5h30 ahead of the session's UTC, as a driver configured for India would be."""
    previous = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Kolkata"
    time.tzset()
    yield
    if previous is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = previous
    time.tzset()


@pytest.fixture(autouse=True, scope="module")
def release_driver_memory():
    """After each test module, free what it left in the shared driver: cached DataFrames, persisted RDDs and
    Delta's cached table snapshots (hundreds of test tables). Left to accumulate over the whole suite, they ran
    the driver out of heap for a broadcast near the end of the run."""
    yield
    session = SparkSession.getActiveSession()
    if session is None:
        return
    session.catalog.clearCache()
    unpersist_rdds(session)
    session._jvm.org.apache.spark.sql.delta.DeltaLog.clearCache()


@pytest.fixture(scope="session")
def late_customer_lakehouse(spark, tmp_path_factory):
    """A lakehouse where orders arrived before their customer, replayed twice (tests/late_customer.py)."""
    from tests.late_customer import build

    return build(tmp_path_factory.mktemp("late_customer"))


@pytest.fixture(scope="session")
def e2e_landing(tmp_path_factory) -> Path:
    """Generated landing files: 120 customers over 6 days with every kind of dirt."""
    root = tmp_path_factory.mktemp("e2e_landing")
    generate(root, GeneratorSettings(customers=120, days=6, seed=11, products=40, rates=E2E_RATES))
    return root


@pytest.fixture(scope="session")
def e2e_run(spark, e2e_landing, tmp_path_factory):
    """One whole-pipeline run over ``e2e_landing``, shared read-only: (config, {table: TableRun}, [JobRun]).
    A test that changes tables copies ``config.lakehouse_root`` first."""
    config = make_config(tmp_path_factory.mktemp("e2e_run"), e2e_landing, max_error_ratio=0.3)
    runs = run_pipeline(spark, config)
    return config, {t.table: t for run in runs for t in run.tables}, runs


def copy_of_e2e_lakehouse(e2e_config: Config, root: Path, **changes) -> Config:
    """A writable copy of ``e2e_run``'s lakehouse in ``root``, landing from ``root/landing`` (empty): bronze's
    file-stream checkpoints, which name the shared landing folder, stay behind, so only files put there are new."""
    shutil.copytree(e2e_config.lakehouse_root, root / "lakehouse", ignore=shutil.ignore_patterns("bronze.*"))
    return dataclasses.replace(e2e_config, lakehouse_root=str(root / "lakehouse"),
                               landing_root=str(root / "landing"), **changes)
