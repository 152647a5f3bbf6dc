"""Benchmarks of the suite: ``python -m bench`` and its siblings (see bench/README.md)."""

from __future__ import annotations

import json
import urllib.request


def status_api(spark, path: str):
    """An answer of Spark's monitoring REST API about this application (``allexecutors``, ``stages?...``); needs
    the UI server (``ui_enabled``)."""
    context = spark.sparkContext
    url = f"{context.uiWebUrl}/api/v1/applications/{context.applicationId}/{path}"
    with urllib.request.urlopen(url, timeout=60) as response:
        return json.load(response)


def spark_jobs_so_far(spark) -> int:
    """Spark jobs launched so far: the newest job's id plus one (ids count up from 0; the newest is always in the
    status API's bounded list)."""
    newest = status_api(spark, "jobs")
    return max(job["jobId"] for job in newest) + 1 if newest else 0
