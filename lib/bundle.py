"""A Databricks Asset Bundle (databricks.yml) for the job graph: one multi-task job, one task per job in PIPELINE,
and a maintenance job that compacts the lakehouse's small files (`dmp optimize`) on a schedule of its own.

`dmp bundle` writes it at the checkout root; `databricks bundle deploy` then syncs the checkout (lib/, jobs/,
schemas/, expectations/) to the workspace and creates the jobs. Each task runs `jobs/<job>.py` on a job cluster
whose environment carries the DMP_* config, like spark-submit.sh does. Nothing here talks to Databricks;
``validate_job`` checks the job against the Databricks SDK's own model before anything is written.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from lib import PROJECT_ROOT
from lib.jobs import PIPELINE, Job

JOB_KEY = "dmp_pipeline"
MAINTENANCE_JOB_KEY = "dmp_maintenance"
CLUSTER_KEY = "dmp"
# Databricks Runtime already has these (pyspark and delta-spark are the runtime itself); installing them from PyPI
# on a cluster would replace its Spark. great-expectations' [spark] extra would pull pyspark, so it is dropped too.
# databricks-sdk only serves `dmp bundle` on the machine that writes the bundle.
NOT_FOR_CLUSTERS = {"pyspark", "delta-spark", "pandas", "databricks-sdk"}


class BundleError(ValueError):
    """The generated job would not deploy or not run as the graph says; the message names what is wrong."""


@dataclass(frozen=True)
class BundleSettings:
    name: str = "dmp"
    landing_root: str = "dbfs:/dmp/landing"
    lakehouse_root: str = "dbfs:/dmp/lakehouse"
    cron: str = "0 0 2 * * ?"  # Quartz: sec min hour day-of-month month day-of-week; daily at 02:00
    # `dmp optimize` of every table: weekly, Sundays at 05:00, after the night's pipeline run. Should the two
    # overlap, Delta's conflict checks and the bounded retries of lib.io keep each table consistent.
    maintenance_cron: str = "0 0 5 ? * SUN"
    timezone: str = "UTC"
    spark_version: str = "17.3.x-scala2.13"  # an LTS runtime with Spark 4 and Scala 2.13, as pinned locally
    node_type_id: str = "i3.xlarge"
    num_workers: int = 2
    emails: tuple[str, ...] = ()
    webhook_ids: tuple[str, ...] = ()  # notification destination ids from the workspace settings
    max_retries: int = 2
    min_retry_interval_millis: int = 5 * 60 * 1000
    salt_secret: str | None = None  # "<scope>/<key>" of the PII hashing salt in a Databricks secret scope


@cache
def task_packages(pyproject: Path = PROJECT_ROOT / "pyproject.toml") -> tuple[str, ...]:
    """The project's pinned dependencies, minus what the Databricks Runtime provides, as pip requirements (a tuple:
    the answer is cached and shared by every caller)."""
    packages = []
    for requirement in tomllib.loads(pyproject.read_text())["project"]["dependencies"]:
        name = re.match(r"[A-Za-z0-9_.-]+", requirement).group(0)
        if name.lower() not in NOT_FOR_CLUSTERS:
            packages.append(re.sub(r"\[.*?\]", "", requirement))
    return tuple(packages)


def _task(key: str, description: str, python_file: str, settings: BundleSettings) -> dict[str, Any]:
    return {
        "task_key": key,
        "description": description,
        "job_cluster_key": CLUSTER_KEY,
        "spark_python_task": {
            "python_file": python_file,
            # The entry point turns DMP_<SETTING>=value arguments into config, so a run can override them.
            "parameters": ["DMP_LANDING_ROOT={{job.parameters.landing_root}}",
                           "DMP_LAKEHOUSE_ROOT={{job.parameters.lakehouse_root}}"],
        },
        "libraries": [{"pypi": {"package": package}} for package in task_packages()],
        "max_retries": settings.max_retries,
        "min_retry_interval_millis": settings.min_retry_interval_millis,
    }


def _job(name: str, tasks: list[dict[str, Any]], cron: str, settings: BundleSettings) -> dict[str, Any]:
    env = {
        # The bundle's files are synced under workspace.file_path; /Workspace is where clusters mount them.
        "DMP_HOME": "/Workspace${workspace.file_path}",
        "DMP_LANDING_ROOT": settings.landing_root,
        "DMP_LAKEHOUSE_ROOT": settings.lakehouse_root,
    }
    if settings.salt_secret:
        env["DMP_PII_SALT"] = f"{{{{secrets/{settings.salt_secret}}}}}"
    job_settings: dict[str, Any] = {
        "name": f"{settings.name} {name}",
        # Streaming checkpoints and MERGEs assume one run at a time; a run started meanwhile waits in the queue.
        "max_concurrent_runs": 1,
        "queue": {"enabled": True},
        "parameters": [{"name": "landing_root", "default": settings.landing_root},
                       {"name": "lakehouse_root", "default": settings.lakehouse_root}],
        "job_clusters": [{
            "job_cluster_key": CLUSTER_KEY,
            "new_cluster": {"spark_version": settings.spark_version, "node_type_id": settings.node_type_id,
                            "num_workers": settings.num_workers, "spark_env_vars": env},
        }],
        "tasks": tasks,
        "schedule": {"quartz_cron_expression": cron, "timezone_id": settings.timezone, "pause_status": "UNPAUSED"},
    }
    if settings.emails:
        job_settings["email_notifications"] = {"on_failure": list(settings.emails)}
    if settings.webhook_ids:
        job_settings["webhook_notifications"] = {"on_failure": [{"id": i} for i in settings.webhook_ids]}
    return job_settings


def pipeline_job(settings: BundleSettings = BundleSettings(), jobs: Mapping[str, Job] = PIPELINE) -> dict:
    """The multi-task job as Jobs API settings: what goes under resources.jobs.<key> in databricks.yml."""
    tasks = []
    for job in jobs.values():
        task = _task(job.name, job.description, f"jobs/{job.name}.py", settings)
        if job.depends_on:
            task["depends_on"] = [{"task_key": upstream} for upstream in job.depends_on]
        tasks.append(task)
    return _job("pipeline", tasks, settings.cron, settings)


def maintenance_job(settings: BundleSettings = BundleSettings()) -> dict:
    """Table maintenance as Jobs API settings: `dmp optimize` of every table (jobs/optimize.py) on its own
    schedule, so the small files of daily writes are compacted without slowing the pipeline's own writes."""
    task = _task("optimize", "Compact every table's small files (Delta OPTIMIZE); no rows change.",
                 "jobs/optimize.py", settings)
    return _job("maintenance", [task], settings.maintenance_cron, settings)


def bundle(settings: BundleSettings = BundleSettings(), jobs: Mapping[str, Job] = PIPELINE) -> dict:
    """The whole databricks.yml: the bundle, a dev and a prod target, the pipeline and the maintenance job."""
    return {
        "bundle": {"name": settings.name},
        # development mode prefixes names with the user and pauses schedules, so only prod runs on the cron.
        "targets": {"dev": {"mode": "development", "default": True}, "prod": {"mode": "production"}},
        "resources": {"jobs": {JOB_KEY: pipeline_job(settings, jobs), MAINTENANCE_JOB_KEY: maintenance_job(settings)}},
    }


def validate_job(job: dict, project_root: Path | None = PROJECT_ROOT) -> None:
    """Raise BundleError unless ``job`` is valid Jobs API settings whose tasks form the graph they claim.

    The SDK's from_dict ignores keys it does not know, so the job is read into the model and written back: any
    field that does not survive the round trip (a typo, a field in the wrong place, an unknown enum value) fails.
    """
    from databricks.sdk.service.jobs import JobSettings

    lost = _lost_fields(job, JobSettings.from_dict(job).as_dict())
    if lost:
        raise BundleError(f"field(s) the Databricks Jobs API does not know or accept: {', '.join(lost)}")
    tasks = job.get("tasks") or []
    keys = [task["task_key"] for task in tasks]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise BundleError(f"task_key(s) used more than once: {duplicates}")
    for key in keys:
        if not re.fullmatch(r"[\w-]{1,100}", key):
            raise BundleError(f"task_key {key!r}: only letters, digits, '_' and '-', at most 100 characters")
    clusters = {cluster["job_cluster_key"] for cluster in job.get("job_clusters") or []}
    graph = {}
    for task in tasks:
        upstream = [dependency["task_key"] for dependency in task.get("depends_on") or []]
        unknown = [key for key in upstream if key not in keys]
        if unknown:
            raise BundleError(f"task {task['task_key']!r} depends on unknown task(s) {unknown}")
        graph[task["task_key"]] = upstream
        if "job_cluster_key" in task and task["job_cluster_key"] not in clusters:
            raise BundleError(f"task {task['task_key']!r} runs on unknown job cluster {task['job_cluster_key']!r}")
        python_file = (task.get("spark_python_task") or {}).get("python_file")
        if project_root is not None and python_file and not (project_root / python_file).is_file():
            raise BundleError(f"task {task['task_key']!r} runs {python_file}, which does not exist in {project_root}")
    _check_acyclic(graph)
    schedule = job.get("schedule")
    if schedule:
        check_quartz_cron(schedule["quartz_cron_expression"])


def _lost_fields(given: Any, kept: Any, path: str = "") -> list[str]:
    """Paths in ``given`` whose value is missing or different in ``kept``."""
    if isinstance(given, dict) and isinstance(kept, dict):
        return [lost for key, value in given.items()
                for lost in _lost_fields(value, kept.get(key), f"{path}.{key}" if path else key)]
    if isinstance(given, list) and isinstance(kept, list) and len(given) == len(kept):
        return [lost for i, (a, b) in enumerate(zip(given, kept)) for lost in _lost_fields(a, b, f"{path}[{i}]")]
    return [] if given == kept else [path]


def _check_acyclic(graph: dict[str, list[str]]) -> None:
    done: set[str] = set()

    def visit(key: str, path: tuple[str, ...]) -> None:
        if key in path:
            raise BundleError(f"tasks depend on each other in a cycle: {' -> '.join((*path, key))}")
        if key not in done:
            for upstream in graph[key]:
                visit(upstream, (*path, key))
            done.add(key)

    for key in graph:
        visit(key, ())


# Quartz cron fields: (name, lowest, highest, names usable instead of numbers).
_MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
_DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
_QUARTZ_FIELDS = [("seconds", 0, 59, []), ("minutes", 0, 59, []), ("hours", 0, 23, []),
                  ("day-of-month", 1, 31, []), ("month", 1, 12, _MONTHS), ("day-of-week", 1, 7, _DAYS),
                  ("year", 1970, 2099, [])]


def check_quartz_cron(expression: str) -> None:
    """Raise BundleError unless ``expression`` is a Quartz cron expression as Databricks schedules take them.

    Six or seven fields (seconds first, year optional); exactly one of day-of-month and day-of-week is '?'.
    """
    fields = expression.split()
    if len(fields) not in (6, 7):
        raise BundleError(f"cron {expression!r} has {len(fields)} fields; Quartz needs 6 or 7 "
                          "(sec min hour day-of-month month day-of-week [year]), e.g. '0 0 2 * * ?'")
    for value, (name, low, high, names) in zip(fields, _QUARTZ_FIELDS):
        if not _quartz_field_ok(value, name, low, high, names):
            raise BundleError(f"cron {expression!r}: {value!r} is not a valid {name} field ({low}-{high})")
    if (fields[3] == "?") == (fields[5] == "?"):
        raise BundleError(f"cron {expression!r}: exactly one of day-of-month and day-of-week must be '?'")


def _quartz_field_ok(value: str, name: str, low: int, high: int, names: list[str]) -> bool:
    def number(text: str) -> bool:
        if text.upper() in names:
            return True
        return text.isdigit() and low <= int(text) <= high

    if value == "?":
        return name in ("day-of-month", "day-of-week")
    for item in value.split(","):
        if name == "day-of-month" and re.fullmatch(r"L(-\d{1,2})?|LW|\d{1,2}W", item):
            if not item.startswith("L") and not number(item[:-1]):
                return False
            continue
        if name == "day-of-week" and re.fullmatch(r"L|\w+L|\w+#[1-5]", item):
            if item != "L" and not number(re.split(r"[L#]", item)[0]):
                return False
            continue
        base, _, step = item.partition("/")
        if step and not (step.isdigit() and 0 < int(step) <= high):
            return False
        if base == "*":
            continue
        start, _, end = base.partition("-")
        if not number(start) or (end and not number(end)):
            return False
    return True


def write_bundle(path: Path, settings: BundleSettings = BundleSettings()) -> dict:
    """Validate, then write databricks.yml to ``path``; returns what was written."""
    content = bundle(settings)
    for job in content["resources"]["jobs"].values():
        validate_job(job)
    header = ("# Generated by `dmp bundle` from the job graph in lib/jobs.py; regenerate rather than edit.\n"
              "# Deploy from the checkout root: databricks bundle deploy -t prod\n")
    path.write_text(header + yaml.safe_dump(content, sort_keys=False, width=120))
    return content
