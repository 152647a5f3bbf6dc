"""The Databricks Asset Bundle: generated from the job graph, checked against the Databricks SDK's job model."""

from __future__ import annotations

import copy
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from databricks.sdk.service.jobs import JobSettings
from typer.testing import CliRunner

from lib.bundle import (
    JOB_KEY,
    MAINTENANCE_JOB_KEY,
    BundleError,
    BundleSettings,
    check_quartz_cron,
    maintenance_job,
    pipeline_job,
    validate_job,
)
from lib.cli import app
from lib.jobs import PIPELINE

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = BundleSettings(emails=("data-team@example.com",), webhook_ids=("0f3c-webhook",),
                          salt_secret="dmp/pii_salt")


def test_generated_job_survives_the_sdk_job_model_round_trip():
    job = pipeline_job(SETTINGS)
    assert JobSettings.from_dict(job).as_dict() == job
    validate_job(job)


def test_every_pipeline_job_is_one_task_with_the_graphs_dependencies():
    tasks = {task["task_key"]: task for task in pipeline_job(SETTINGS)["tasks"]}
    assert list(tasks) == list(PIPELINE)
    for name, job in PIPELINE.items():
        assert [d["task_key"] for d in tasks[name].get("depends_on", [])] == list(job.depends_on)
        entry_point = ROOT / tasks[name]["spark_python_task"]["python_file"]
        assert f'run_submitted_job("{name}", sys.argv[1:])' in entry_point.read_text(), f"{entry_point} runs {name}"


def test_job_carries_schedule_retries_notifications_and_config():
    job = pipeline_job(SETTINGS)
    assert job["schedule"] == {"quartz_cron_expression": "0 0 2 * * ?", "timezone_id": "UTC",
                               "pause_status": "UNPAUSED"}
    assert {(t["max_retries"], t["min_retry_interval_millis"]) for t in job["tasks"]} == {(2, 300_000)}
    assert job["email_notifications"] == {"on_failure": ["data-team@example.com"]}
    assert job["webhook_notifications"] == {"on_failure": [{"id": "0f3c-webhook"}]}
    env = job["job_clusters"][0]["new_cluster"]["spark_env_vars"]
    assert env == {"DMP_HOME": "/Workspace${workspace.file_path}", "DMP_LANDING_ROOT": "dbfs:/dmp/landing",
                   "DMP_LAKEHOUSE_ROOT": "dbfs:/dmp/lakehouse", "DMP_PII_SALT": "{{secrets/dmp/pii_salt}}"}
    assert [p["name"] for p in job["parameters"]] == ["landing_root", "lakehouse_root"]


def test_maintenance_job_optimizes_every_table_weekly_on_the_pipelines_cluster_and_config():
    job, pipeline = maintenance_job(SETTINGS), pipeline_job(SETTINGS)
    validate_job(job)
    [task] = job["tasks"]
    assert task["spark_python_task"] == {**pipeline["tasks"][0]["spark_python_task"], "python_file": "jobs/optimize.py"}
    assert 'app(["optimize"' in (ROOT / "jobs" / "optimize.py").read_text()
    assert job["schedule"]["quartz_cron_expression"] == "0 0 5 ? * SUN"
    same = ("job_clusters", "parameters", "email_notifications", "webhook_notifications", "max_concurrent_runs")
    assert {key: job[key] for key in same} == {key: pipeline[key] for key in same}


def test_tasks_install_the_pinned_dependencies_but_never_spark_itself():
    packages = [lib["pypi"]["package"] for lib in pipeline_job()["tasks"][0]["libraries"]]
    assert "great-expectations==1.24.1" in packages
    assert not [p for p in packages if p.startswith(("pyspark", "delta-spark", "databricks-sdk")) or "[" in p]


def test_dangling_dependency_in_the_graph_fails_validation():
    jobs = dict(PIPELINE)
    jobs["gold_daily_revenue"] = dataclasses.replace(jobs["gold_daily_revenue"], depends_on=("silver_ordres",))
    with pytest.raises(BundleError, match="'gold_daily_revenue' depends on unknown task.*silver_ordres"):
        validate_job(pipeline_job(jobs=jobs))


def test_typo_in_a_task_key_fails_validation():
    job = pipeline_job()
    job["tasks"][1]["task_key"] = "silver_custmers"
    with pytest.raises(BundleError, match="silver_customers"):
        validate_job(job)


@pytest.mark.parametrize("break_it, lost", [
    (lambda job: job["tasks"][0].update(spark_pyton_task=job["tasks"][0].pop("spark_python_task")),
     "tasks[0].spark_pyton_task"),
    (lambda job: job["job_clusters"][0]["new_cluster"].update(spark_env_var={"A": "1"}),
     "job_clusters[0].new_cluster.spark_env_var"),
    (lambda job: job["schedule"].update(pause_status="PAUSE"), "schedule.pause_status"),
    (lambda job: job.update(email_notification={"on_failure": ["a@example.com"]}), "email_notification"),
])
def test_field_the_jobs_api_does_not_know_fails_validation(break_it, lost):
    job = pipeline_job(SETTINGS)
    break_it(job)
    with pytest.raises(BundleError, match="does not know") as error:
        validate_job(job)
    assert lost in str(error.value)


def test_duplicate_task_keys_and_cycles_fail_validation():
    job = pipeline_job()
    job["tasks"].append(copy.deepcopy(job["tasks"][0]))
    with pytest.raises(BundleError, match="more than once.*bronze"):
        validate_job(job)
    cyclic = pipeline_job()
    cyclic["tasks"][0]["depends_on"] = [{"task_key": "gold_daily_revenue"}]
    with pytest.raises(BundleError, match="cycle"):
        validate_job(cyclic)


def test_task_whose_entry_point_is_missing_fails_validation():
    job = pipeline_job()
    job["tasks"][0]["spark_python_task"]["python_file"] = "jobs/brnoze.py"
    with pytest.raises(BundleError, match="jobs/brnoze.py, which does not exist"):
        validate_job(job)


@pytest.mark.parametrize("cron", ["0 0 2 * * ?", "0 15 10 ? * MON-FRI", "0 0/5 14,18 * * ?", "0 0 12 L * ?",
                                  "0 15 10 ? * 6#3", "0 0 2 * * ? 2027", "0 0 2 15W JAN-MAR ?", "0 0 1 ? * 6L"])
def test_quartz_cron_expressions_databricks_accepts_pass(cron):
    check_quartz_cron(cron)


@pytest.mark.parametrize("cron, reason", [
    ("0 2 * * *", "5 fields"), ("0 0 25 * * ?", "hours"), ("0 61 2 * * ?", "minutes"),
    ("0 0 2 * FOO ?", "month"), ("0 0 2 * * *", "exactly one"), ("0 0 2 ? * ?", "exactly one"),
    ("0 0 2 * * ? 1900", "year"), ("0 0/0 2 * * ?", "minutes"),
])
def test_invalid_quartz_cron_expressions_fail(cron, reason):
    with pytest.raises(BundleError, match=reason):
        check_quartz_cron(cron)


def test_dmp_bundle_writes_the_validated_job_as_yaml(tmp_path):
    out = tmp_path / "databricks.yml"
    result = CliRunner().invoke(app, ["bundle", "--out", str(out), "--cron", "0 30 3 * * ?", "--email",
                                      "data-team@example.com", "--lakehouse-root", "s3a://lake/dmp",
                                      "--maintenance-cron", "0 0 6 ? * SAT"])
    assert result.exit_code == 0, result.output
    written = yaml.safe_load(out.read_text())
    assert written["bundle"] == {"name": "dmp"}
    expected = BundleSettings(cron="0 30 3 * * ?", emails=("data-team@example.com",), lakehouse_root="s3a://lake/dmp",
                              maintenance_cron="0 0 6 ? * SAT")
    assert written["resources"]["jobs"] == {JOB_KEY: pipeline_job(expected),
                                            MAINTENANCE_JOB_KEY: maintenance_job(expected)}


@pytest.mark.parametrize("option", ["--cron", "--maintenance-cron"])
def test_dmp_bundle_refuses_an_invalid_cron_and_writes_nothing(tmp_path, option):
    out = tmp_path / "databricks.yml"
    result = CliRunner().invoke(app, ["bundle", "--out", str(out), option, "0 2 * * *"])
    assert result.exit_code == 2
    assert "6 or 7" in result.output and not out.exists()


@pytest.mark.parametrize("entry_point", ["bronze.py", "optimize.py"])
def test_entry_point_takes_dmp_settings_from_its_task_parameters(tmp_path, entry_point):
    # An invalid value fails at config loading, before Spark starts: proof the argument reached the config.
    done = subprocess.run([sys.executable, str(ROOT / "jobs" / entry_point), "DMP_SPARK__SHUFFLE_PARTITIONS=many"],
                          cwd=tmp_path, env={k: v for k, v in os.environ.items() if not k.startswith("DMP_")},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "DMP_SPARK__SHUFFLE_PARTITIONS" in done.stdout
