"""The CLI and the spark-submit path, as a user runs them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lib.cli import app, apply_task_parameters
from lib.config import load_config
from lib.datasets import cdnow

ROOT = Path(__file__).resolve().parent.parent


def test_help_lists_every_command():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("generate", "run", "pipeline", "show", "demo"):
        assert command in result.output


def test_pipeline_list_shows_jobs_in_dependency_order():
    result = CliRunner().invoke(app, ["pipeline", "list"])
    assert result.exit_code == 0
    positions = [result.output.index(job) for job in ("bronze", "silver_orders", "gold_daily_revenue")]
    assert positions == sorted(positions)


def test_bad_config_environment_gives_a_clear_error():
    result = CliRunner().invoke(app, ["pipeline", "list"], env={"DMP_SPARK__SHUFFLE_PARTITIONS": "many"})
    assert result.exit_code == 2
    assert "DMP_SPARK__SHUFFLE_PARTITIONS" in result.output


def test_unknown_job_is_refused_with_the_known_ones(tmp_path):
    result = CliRunner().invoke(app, ["run", "silver_unicorns"], env={"DMP_LAKEHOUSE_ROOT": str(tmp_path)})
    assert result.exit_code == 2
    assert "silver_orders" in result.output


@pytest.mark.slow
def test_spark_submit_runs_a_job_on_local_master(tmp_path):
    landing = tmp_path / "landing"
    (landing / "orders").mkdir(parents=True)
    (landing / "orders" / "orders_1.jsonl").write_text('{"order_id": "o-1"}\n{"order_id": \n')
    for source in ("customers", "events"):
        (landing / source).mkdir()
    (landing / "customers" / "c.csv").write_text("customer_id,email\n")
    (landing / "events" / "e.jsonl").write_text("")
    env = {**os.environ, "DMP_LANDING_ROOT": str(landing), "DMP_LAKEHOUSE_ROOT": str(tmp_path / "lake"),
           "DMP_SPARK__MASTER": "local[1]"}
    done = subprocess.run([str(ROOT / "spark-submit.sh"), "bronze"], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "bronze.orders" in done.stdout and "succeeded" in done.stdout
    assert (tmp_path / "lake" / "bronze" / "orders" / "_delta_log").is_dir()


def test_datasets_list_and_help_name_every_data_set():
    for args in (["datasets", "list"], ["datasets", "--help"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0
        assert "cdnow" in result.output and "supermarket" in result.output


def test_datasets_load_cdnow_writes_landing_files_and_summarises_them(tmp_path):
    result = CliRunner().invoke(app, ["datasets", "load", "cdnow", "--landing", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["customers", "orders", "products"]
    assert len(list((tmp_path / "orders").iterdir())) == 18
    transactions = cdnow.transactions()
    customers = {t.customer_id for t in transactions}
    assert f"{len(customers):,}" in result.output and f"{len(transactions):,}" in result.output


def test_datasets_load_refuses_an_unknown_data_set_and_full_outside_cdnow(tmp_path):
    for args in (["unicorns"], ["supermarket", "--full"]):
        result = CliRunner().invoke(app, ["datasets", "load", *args, "--landing", str(tmp_path)])
        assert result.exit_code == 2
    assert not any(tmp_path.iterdir())


def test_a_task_parameter_overrides_the_environment_and_is_not_taken_for_an_option(monkeypatch):
    # Set first, so that the monkeypatch restores both when the test ends.
    monkeypatch.setenv("DMP_LAKEHOUSE_ROOT", "/set/on/the/cluster")
    monkeypatch.setenv("DMP_GATES__MAX_ERROR_RATIO", "0.1")
    rest = apply_task_parameters(["--force", "DMP_LAKEHOUSE_ROOT=/given/to/the/task",
                                  "DMP_GATES__MAX_ERROR_RATIO=0.5", "--only", "bronze"])
    assert rest == ["--force", "--only", "bronze"]
    config = load_config()
    assert (config.lakehouse_root, config.gates.max_error_ratio) == ("/given/to/the/task", 0.5)
