"""Quarantine review: what each quarantine table holds, which rules its rows broke, and replaying its rows after a
fix (an updated expectation, a late reference record) so those that now pass are published.

A replay runs the table's own silver job on the quarantined rows instead of new bronze rows: the same parsing,
checks against current reference data (e.g. silver.customers for orders), GX suite, deduplication and MERGE. Rows
that pass leave quarantine; rows that fail again stay, with the rules they break now.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lib import io
from lib.config import Config
from lib.jobs import PIPELINE
from lib.quality import FAILED_RULES
from lib.runner import JobContext, JobRun, TableRun, new_run_id, run_job
from lib.silver import LINEAGE

QUARANTINE_LAYER = "quarantine"
# The quarantines that can be replayed, with the silver job that validates their rows: those of the jobs that
# check bronze records (jobs._publish_silver). Gold tables and silver.identity_map are recomputed whole by every run
# of their job, which refills their quarantine: fix the cause and rerun the job instead.
REPLAYABLE = {
    "customers": "silver_customers",
    "products": "silver_products",
    "campaigns": "silver_campaigns",
    "events": "silver_events",
    "orders": "silver_orders",
}
# What a quarantined row keeps of its bronze record: all a silver job needs to check it again from scratch.
BRONZE_COLUMNS = [*LINEAGE, "value", "_parse_error"]


class ReplayUnsupported(ValueError):
    pass


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


def quarantine_table(name: str) -> str:
    """``orders``, ``silver.orders`` or ``quarantine.orders`` -> ``quarantine.orders``."""
    return f"{QUARANTINE_LAYER}.{name.rpartition('.')[2]}"


def replayable_entity(name: str) -> str:
    """The entity whose quarantine ``name`` is, if it can be replayed; else ReplayUnsupported naming those that can."""
    entity = name.rpartition(".")[2]
    if entity not in REPLAYABLE:
        supported = ", ".join(quarantine_table(e) for e in REPLAYABLE)
        raise ReplayUnsupported(
            f"{quarantine_table(name)} cannot be replayed; replay supports {supported}. Gold tables and "
            f"silver.identity_map are recomputed whole by every run of their job: fix the cause and rerun it"
        )
    return entity


def replay_job_name(entity: str) -> str:
    return f"quarantine_replay_{entity}"


@dataclass(frozen=True)
class ReplayResult:
    table: str  # the silver table the replayed rows are published to
    run: JobRun
    replayed: int
    published: int
    deduplicated: int  # passed now, but silver already holds that version or a newer one
    still_quarantined: int
    removed_from_quarantine: int

    @property
    def balanced(self) -> bool:
        passed = self.published + self.deduplicated
        return self.replayed == passed + self.still_quarantined and self.removed_from_quarantine == passed


def replay(spark: SparkSession, config: Config, name: str) -> ReplayResult:
    """Validate the rows of quarantine table ``name`` again with its silver job, publish those that pass now (by
    MERGE, so a second replay publishes nothing new) and remove them from quarantine. Recorded in ops.job_runs as
    job ``quarantine_replay_<entity>``; a job failure is in ``result.run``, not raised."""
    entity = replayable_entity(name)
    table, silver_table = quarantine_table(entity), f"silver.{entity}"
    if not io.table_exists(spark, config, table):
        raise io.TableNotFound(f"{table} does not exist: no {entity} row has been quarantined")
    rows = io.read_table(spark, config, table, io.table_version(spark, config, table)).select(*BRONZE_COLUMNS)
    job = PIPELINE[REPLAYABLE[entity]]
    # Quarantined rows failed before, most will again: the gate's error ratio would stop the replay of exactly the
    # rows it reviews. Each row is still judged by every row-level rule.
    lenient = dataclasses.replace(
        config, gates=dataclasses.replace(config.gates, max_error_ratio=1.0, table_max_error_ratio={}))

    def replay_quarantined(ctx: JobContext) -> None:
        job.run(ctx)
        # Rows that failed again were merged back into quarantine by this run, stamped with its run id.
        removed = io.delete_matching(spark, config, table, rows, ["_record_id"], f"t._run_id <> '{ctx.run_id}'")
        ctx.accounting(silver_table).add(removed_from_quarantine=removed)

    run = run_job(replay_job_name(entity), replay_quarantined, spark, lenient, new_run_id(), replay_rows=rows)
    counts = next((t for t in run.tables if t.table == silver_table), TableRun(silver_table))
    return ReplayResult(silver_table, run, counts.rows_in, counts.published, counts.deduplicated,
                        counts.quarantined, counts.details.get("removed_from_quarantine", 0))
