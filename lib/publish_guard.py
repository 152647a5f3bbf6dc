"""Publish guard: a whole recomputed gold table or a model is not published when it is clearly worse than what is
published now (far fewer rows, a column suddenly null, a quality metric fallen), within ``[publish_guard]``
tolerances. Row-level gates catch bad rows; this catches a bad run whose rows each look fine (an upstream filter
gone wrong, a join key renamed, a model that stopped learning).

A refused publish fails its job (downstream jobs wait) and leaves the published table as it was; a bad publish
found later is undone with ``dmp rollback <table>`` (Delta RESTORE).
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lib.config import PublishGuardSettings
from lib.quality import GateFailed


class PublishRefused(GateFailed):
    """Clearly worse than what is published: not published."""


@dataclass(frozen=True)
class TableShape:
    rows: int
    # Share of null values per column, 0..1.
    null_rates: dict[str, float]


def table_shape(df: DataFrame) -> TableShape:
    """Row count and per-column null shares of ``df``, in one pass."""
    nulls = [F.sum(F.col(f"`{name}`").isNull().cast("long")) for name in df.columns]
    row = df.agg(F.count(F.lit(1)), *nulls).first()
    rows = row[0]
    return TableShape(rows, {name: (row[i + 1] or 0) / rows if rows else 0.0 for i, name in enumerate(df.columns)})


def table_regressions(published: TableShape, candidate: TableShape, settings: PublishGuardSettings) -> list[str]:
    """What makes ``candidate`` clearly worse than ``published``; empty when it may be published."""
    problems = []
    if published.rows and candidate.rows < published.rows * (1 - settings.max_row_drop):
        problems.append(f"rows would fall from {published.rows:,} to {candidate.rows:,} "
                        f"(more than max_row_drop = {settings.max_row_drop:.0%} fewer)")
    if candidate.rows:
        for column, rate in candidate.null_rates.items():
            before = published.null_rates.get(column)
            if before is not None and rate - before > settings.max_null_rate_increase:
                problems.append(f"{column} would be null in {rate:.0%} of rows, up from {before:.0%} "
                                f"(max_null_rate_increase = {settings.max_null_rate_increase:.0%})")
    return problems


def metric_regression(metric: str, published: float | None, candidate: float,
                      settings: PublishGuardSettings) -> str | None:
    """Why ``candidate`` is clearly worse than the last published value of a higher-is-better ``metric``; None
    when it is not (or there is nothing positive to compare with)."""
    if published is None or published <= 0 or candidate >= published * (1 - settings.max_metric_drop):
        return None
    return (f"{metric} would fall from {published:.4f} to {candidate:.4f} "
            f"(more than max_metric_drop = {settings.max_metric_drop:.0%} lower)")


def refusal(subject: str, problems: list[str], rollback_hint: str) -> PublishRefused:
    return PublishRefused(
        f"{subject} not published, clearly worse than the published one: {'; '.join(problems)}. If the change is "
        f"intended, run again with DMP_PUBLISH_GUARD__ENABLED=false or wider [publish_guard] tolerances; "
        f"{rollback_hint}")
