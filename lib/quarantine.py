"""Quarantine review: what each quarantine table holds and which rules its rows broke."""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lib import io
from lib.config import Config
from lib.quality import FAILED_RULES

QUARANTINE_LAYER = "quarantine"


@dataclass(frozen=True)
class QuarantineSummary:
    table: str
    rows: int
    rules: dict[str, int]  # rule name -> quarantined rows that broke it (a row can break several)

    def to_json(self) -> dict:
        return {"table": self.table, "rows": self.rows, "rules": self.rules}


def rules_broken(quarantined: DataFrame) -> DataFrame:
    """``rule``, ``rows``: how many quarantined rows broke each rule, most broken first."""
    return (
        quarantined.select(F.explode(FAILED_RULES).alias("rule"))
        .groupBy("rule").agg(F.count(F.lit(1)).alias("rows"))
        .orderBy(F.col("rows").desc(), "rule")
    )


def quarantine_summaries(spark: SparkSession, config: Config) -> list[QuarantineSummary]:
    """One summary per quarantine table in the lakehouse, by name."""
    summaries = []
    for table in io.list_tables(spark, config, [QUARANTINE_LAYER]):
        rows = io.read_table(spark, config, table)
        rules = {row["rule"]: row["rows"] for row in rules_broken(rows).collect()}
        summaries.append(QuarantineSummary(table, rows.count(), rules))
    return summaries
