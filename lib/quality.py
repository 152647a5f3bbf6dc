"""Data-quality gates: a Great Expectations suite per table, validated on the Spark DataFrame about to be published.

Suites live in ``expectations/<layer>.<table>.json`` in GX's own suite format. Each expectation carries GX's
``severity`` (``critical`` quarantines the failing rows and counts toward the gate's failure ratio; ``warning`` is
recorded only) and a stable ``meta.rule`` name that quarantine rows and ``ops.quality_results`` refer to.

Failing rows are routed with the Spark filter GX itself reports (``unexpected_index_query``), all rules at once in
one pass, never by collecting unexpected values to the driver. The routed count is checked against GX's
``unexpected_count`` so a filter that drifts from GX's own semantics fails loudly instead of losing rows.
"""

from __future__ import annotations

import ast
import datetime as dt
import json
import logging
import re
from dataclasses import dataclass
from functools import cache, reduce

import great_expectations as gx
from great_expectations.core import ExpectationSuite
from great_expectations.data_context.types.base import ProgressBarsConfig
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from lib import PROJECT_ROOT

EXPECTATIONS_DIR = PROJECT_ROOT / "expectations"
FAILED_RULES = "_failed_rules"
_QUERY = re.compile(r"^df\.filter\(F\.expr\((?P<literal>.*)\)\)$", re.DOTALL)


class GateFailed(RuntimeError):
    """A gate's `critical` failures exceeded its threshold: the layer was not published."""


@dataclass(frozen=True)
class ExpectationOutcome:
    rule: str
    expectation_type: str
    column: str | None
    severity: str
    success: bool
    element_count: int
    unexpected_count: int
    failing_rows: str | None  # Spark SQL predicate selecting the failing rows, when GX can express one

    @property
    def routes_rows(self) -> bool:
        return self.severity == "critical" and not self.success and self.failing_rows is not None


@dataclass(frozen=True)
class GateResult:
    table: str
    outcomes: tuple[ExpectationOutcome, ...]
    rows_checked: int
    rows_failed: int
    max_error_ratio: float
    passed_rows: DataFrame
    failed_rows: DataFrame  # the checked rows that broke a critical rule, with FAILED_RULES (array of rule names)

    @property
    def error_ratio(self) -> float:
        return self.rows_failed / self.rows_checked if self.rows_checked else 0.0

    @property
    def unroutable_failures(self) -> list[str]:
        return [o.rule for o in self.outcomes if o.severity == "critical" and not o.success and not o.failing_rows]

    @property
    def passed(self) -> bool:
        return self.error_ratio <= self.max_error_ratio and not self.unroutable_failures

    def failure_message(self) -> str:
        if self.unroutable_failures:
            return f"gate {self.table}: table-level rule(s) failed: {', '.join(self.unroutable_failures)}"
        worst = sorted((o for o in self.outcomes if o.routes_rows), key=lambda o: -o.unexpected_count)
        detail = ", ".join(f"{o.rule}={o.unexpected_count}" for o in worst[:5])
        return (
            f"gate {self.table}: {self.rows_failed} of {self.rows_checked} rows ({self.error_ratio:.1%}) broke "
            f"critical rules, above the allowed {self.max_error_ratio:.1%} ({detail}). The layer was not "
            f"published; inspect quarantine and ops.quality_results, fix the source, or raise "
            f"gates.max_error_ratio / gates.table_max_error_ratio"
        )

    def quality_rows(self, run_id: str, checked_at: dt.datetime) -> list[dict]:
        return [
            {
                "run_id": run_id,
                "table_name": self.table,
                "rule": o.rule,
                "expectation_type": o.expectation_type,
                "column_name": o.column,
                "severity": o.severity,
                "success": o.success,
                "element_count": o.element_count,
                "unexpected_count": o.unexpected_count,
                "observed_value": None,
                "checked_at": checked_at,
            }
            for o in self.outcomes
        ]


@cache
def load_suite(table: str) -> ExpectationSuite:
    path = EXPECTATIONS_DIR / f"{table}.json"
    if not path.exists():
        raise FileNotFoundError(f"no expectation suite for {table}: create {path} (GX suite JSON)")
    suite = ExpectationSuite(**json.loads(path.read_text()))
    missing = [e.expectation_type for e in suite.expectations if "rule" not in e.meta]
    if missing:
        raise ValueError(f"{path}: every expectation needs meta.rule (a stable name); missing on {missing}")
    return suite


@cache
def _batch_definition():
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    # Callers cache what they validate. GX's own persist (its default) cached a second copy of any frame derived
    # from the caller's (silver_events' rows after bots are set aside: 2 GB at M, computed in 47 s) and kept it
    # to the job's end.
    source = context.data_sources.add_spark("dmp", persist=False)
    return source.add_dataframe_asset("gate").add_batch_definition_whole_dataframe("whole")


def validate(df: DataFrame, table: str, id_columns: list[str], max_error_ratio: float) -> GateResult:
    """Validate ``df`` against ``expectations/<table>.json`` and split it into passed and failed rows.

    ``df`` should be cached by the caller: GX computes its metrics in several Spark jobs. GX's BASIC result format
    gives each rule's counts and its failing-row filter; richer formats add two Spark jobs per rule (sample values,
    failing ids) that nothing here reads.
    """
    suite = load_suite(table)
    result = _batch_definition().get_batch(batch_parameters={"dataframe": df}).validate(
        suite,
        result_format={
            "result_format": "BASIC",
            "unexpected_index_column_names": id_columns,
            "return_unexpected_index_query": True,
            "partial_unexpected_count": 0,
        },
    )
    outcomes = tuple(_outcome(r) for r in result.results)
    routed = [o for o in outcomes if o.routes_rows]
    # Passed rows, the bulk, are told apart by plain predicates; only failed rows get the list of their rules
    # (an array built per row and compacted by a lambda, which Spark evaluates without generated code). A null
    # predicate (e.g. a comparison on a null column) means "not selected by GX's filter".
    failing = {o.rule: F.coalesce(F.expr(o.failing_rows), F.lit(False)) for o in routed}
    any_failing = reduce(Column.__or__, failing.values(), F.lit(False))
    counts = df.agg(
        F.count(F.lit(1)).alias("rows"),
        F.count_if(any_failing).alias("failed"),
        *[F.count_if(predicate).alias(rule) for rule, predicate in failing.items()],
    ).first()
    for o in routed:
        if counts[o.rule] != o.unexpected_count:
            raise AssertionError(
                f"gate {table}: rule {o.rule} routed {counts[o.rule]} rows but GX counted {o.unexpected_count}; "
                f"refusing to publish with rows unaccounted for (filter: {o.failing_rows})"
            )
    failed_rules = (F.array_compact(F.array(*[F.when(predicate, F.lit(rule)) for rule, predicate in failing.items()]))
                    if failing else F.array()).cast("array<string>")
    return GateResult(
        table=table,
        outcomes=outcomes,
        rows_checked=counts["rows"],
        rows_failed=counts["failed"],
        max_error_ratio=max_error_ratio,
        passed_rows=df.filter(~any_failing),
        failed_rows=df.filter(any_failing).withColumn(FAILED_RULES, failed_rules),
    )


def _outcome(result) -> ExpectationOutcome:
    config = result.expectation_config
    stats = result.result or {}
    return ExpectationOutcome(
        rule=config.meta["rule"],
        expectation_type=config.type,
        column=config.kwargs.get("column"),
        severity=config.severity.value if hasattr(config, "severity") and config.severity else "critical",
        success=bool(result.success),
        element_count=int(stats.get("element_count") or 0),
        unexpected_count=int(stats.get("unexpected_count") or 0),
        failing_rows=_predicate(stats.get("unexpected_index_query")),
    )


def _predicate(query) -> str | None:
    """GX reports ``df.filter(F.expr('<predicate>'))``; return the predicate."""
    if not isinstance(query, str):
        return None
    match = _QUERY.match(query.strip())
    if not match:
        return None
    return ast.literal_eval(match.group("literal"))
