"""A source that never landed anything: its silver table is published empty, shaped like a landed one."""

from __future__ import annotations

import shutil

import pytest

from lib import io
from lib.generate import GeneratorSettings, generate
from lib.pipeline import run_pipeline
from tests.conftest import make_config

JOBS = ["bronze", "silver_events"]


@pytest.fixture(scope="module")
def landing(tmp_path_factory):
    root = tmp_path_factory.mktemp("landing")
    generate(root, GeneratorSettings(customers=30, days=1, seed=5, products=30))
    return root


# Two bronze runs over every source: minutes on a shared 2-core machine.
@pytest.mark.slow
def test_silver_of_a_source_without_landing_folder_is_published_empty_with_the_landed_columns(
        spark, landing, tmp_path, e2e_run):
    landed, _, _ = e2e_run
    without_events = tmp_path / "without_events"
    shutil.copytree(landing, without_events, ignore=shutil.ignore_patterns("events"))
    config = make_config(tmp_path / "lake", without_events)

    runs = run_pipeline(spark, config, JOBS)
    assert [r.status for r in runs] == ["succeeded"] * 2, [r.error for r in runs]
    silver_events = next(t for t in runs[1].tables if t.table == "silver.events")
    assert (silver_events.rows_in, silver_events.balanced, silver_events.details["no_landing_data"]) == (0, True, 1)
    published = io.read_table(spark, config, "silver.events")
    assert published.count() == 0
    assert published.schema == io.read_table(spark, landed, "silver.events").schema
    version = io.table_version(spark, config, "silver.events")
    assert all(r.status == "succeeded" for r in run_pipeline(spark, config, JOBS))
    assert io.table_version(spark, config, "silver.events") == version


def test_silver_before_bronze_still_says_to_run_bronze_when_the_source_has_landed(spark, landing, tmp_path):
    runs = run_pipeline(spark, make_config(tmp_path, landing), ["silver_events"])
    assert runs[0].status == "failed" and "run `dmp run bronze` first" in runs[0].error
