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
