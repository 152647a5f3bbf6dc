"""One real local SparkSession (with Delta) for the whole test session; every test gets its own lakehouse folder."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from lib.config import Config, GateSettings, SparkSettings
from lib.spark import spark_session

TEST_SPARK = SparkSettings(master="local[2]", shuffle_partitions=2, driver_memory="2g")


def make_config(root: Path, landing: Path | None = None, **gates) -> Config:
    return Config(
        landing_root=str(landing or root / "landing"),
        lakehouse_root=str(root / "lakehouse"),
        spark=TEST_SPARK,
        gates=dataclasses.replace(GateSettings(), **gates),
    )


@pytest.fixture(scope="session")
def spark():
    session = spark_session(Config(spark=TEST_SPARK))
    yield session
    session.stop()


@pytest.fixture(scope="session")
def late_customer_lakehouse(spark, tmp_path_factory):
    """A lakehouse where orders arrived before their customer, replayed twice (tests/late_customer.py)."""
    from tests.late_customer import build

    return build(tmp_path_factory.mktemp("late_customer"))
