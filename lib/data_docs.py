"""Great Expectations Data Docs of the gates' run history: GX's own validation-result and suite pages, rebuilt
from ``ops.quality_results`` into one static site per lakehouse (``<lakehouse>/_data_docs/index.html``).

The gates keep one row per expectation per validation in ``ops.quality_results``, not GX's result objects, so each
(run, table) becomes an ``ExpectationSuiteValidationResult`` again: the expectation's configuration from the
table's suite (by ``meta.rule``; the stored type and column when the rule has since left the suite) and the stored
counts. A throw-away file-backed GX context stores them and renders them with ``build_data_docs``. GX's own index
page lists the runs with JavaScript fetched from public CDNs, so it is empty offline; the site gets a plain static
index instead, and a stylesheet (GX's ``custom_data_docs/styles`` plugin) that keeps GX's pages readable without
those CDNs.
"""

from __future__ import annotations

import datetime as dt
import html
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from lib import PROJECT_ROOT, io
from lib.config import Config
from lib.quality import EXPECTATIONS_DIR, load_suite
from lib.runner import QUALITY_RESULTS

SITE_NAME = "dmp"
STYLESHEET = PROJECT_ROOT / "lib" / "report_assets" / "data_docs.css"
# Freshness and row-count checks are recorded next to the gates' expectations but are not GX expectations.
NOT_GX = "table_health"


@dataclass(frozen=True)
class ValidationPage:
    table: str
    run_id: str
    checked_at: dt.datetime
    success: bool
    expectations: int
    failed: int
    path: str  # relative to the site folder


@dataclass(frozen=True)
class DataDocsSite:
    folder: Path
    pages: list[ValidationPage]

    @property
    def index(self) -> Path:
        return self.folder / "index.html"


def local_lakehouse(config: Config) -> Path | None:
    """The lakehouse folder when it is on the local filesystem (Data Docs and the report are local files)."""
    root = config.lakehouse_root.removeprefix("file://").removeprefix("file:")
    return None if "://" in root else Path(root)


def site_folder(config: Config) -> Path:
    """``<lakehouse>/_data_docs`` for a lakehouse on the local filesystem."""
    lakehouse = local_lakehouse(config)
    if lakehouse is None:
        raise ValueError(f"Data Docs are written to a local folder and the lakehouse {config.lakehouse_root} is not "
                         f"one: name a folder (`dmp docs --out DIR`)")
    return lakehouse / "_data_docs"


def rule_outcomes(quality_results: DataFrame, runs_per_table: int) -> DataFrame:
    """One row per (run_id, table_name, rule) of each gated table's newest ``runs_per_table`` runs: a rule checked
    in several micro-batches of a run passed only if it passed in all of them; counts are summed."""
    gx_rows = quality_results.filter(F.col("expectation_type") != NOT_GX)
    runs = gx_rows.groupBy("table_name", "run_id").agg(F.min("checked_at").alias("checked_at"))
    newest = Window.partitionBy("table_name").orderBy(F.col("checked_at").desc(), F.col("run_id").desc())
    kept = runs.withColumn("_n", F.row_number().over(newest)).filter(F.col("_n") <= runs_per_table).drop("_n")
    return gx_rows.drop("checked_at").join(kept, ["table_name", "run_id"]).groupBy(
        "table_name", "run_id", "rule").agg(
        F.first("checked_at").alias("checked_at"),
        F.first("expectation_type").alias("expectation_type"),
        F.first("column_name").alias("column_name"),
        F.first("severity").alias("severity"),
        F.bool_and("success").alias("success"),
        F.sum("element_count").alias("element_count"),
        F.sum("unexpected_count").alias("unexpected_count"),
    )


def build_data_docs(spark: SparkSession, config: Config, folder: Path | None = None,
                    runs_per_table: int = 20) -> DataDocsSite:
    """Rebuild the Data Docs site (default ``<lakehouse>/_data_docs``) from ``ops.quality_results``: GX's page for
    each of the newest ``runs_per_table`` validations of every gated table, its suite's page and a static index."""
    folder = folder or site_folder(config)
    rows = []
    if io.table_exists(spark, config, QUALITY_RESULTS):
        rows = rule_outcomes(io.read_table(spark, config, QUALITY_RESULTS), runs_per_table).collect()
    by_validation: dict[tuple[str, str], list] = {}
    for row in rows:
        by_validation.setdefault((row["table_name"], row["run_id"]), []).append(row)
    # Rebuilt whole, so no page outlives its validation; only what the site consists of is removed (--out may
    # name a folder that holds other things too).
    for generated in ("validations", "expectations", "static"):
        shutil.rmtree(folder / generated, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dmp-gx-") as project:
        context = _file_context(Path(project), folder)
        pages = [_store_validation(context, table, run_id, outcomes)
                 for (table, run_id), outcomes in by_validation.items()]
        for table in sorted({page.table for page in pages}):
            context.suites.add(_suite(table))
        context.build_data_docs(site_names=[SITE_NAME], build_index=False)
    pages.sort(key=lambda page: (page.table, -page.checked_at.timestamp()))
    (folder / "index.html").write_text(_index_html(pages, config.lakehouse_root), encoding="utf-8")
    return DataDocsSite(folder, pages)


def _file_context(project: Path, site: Path):
    import great_expectations as gx

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    context = gx.get_context(mode="file", project_root_dir=str(project))
    styles = Path(context.plugins_directory) / "custom_data_docs" / "styles"
    styles.mkdir(parents=True, exist_ok=True)
    shutil.copy(STYLESHEET, styles / "data_docs_custom_styles.css")
    context.add_data_docs_site(SITE_NAME, {
        "class_name": "SiteBuilder",
        "show_how_to_buttons": False,
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(site.resolve())},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    })
    return context


def _suite(table: str):
    # A fresh copy: adding a suite to a context gives it an id, and the cached one belongs to the gates.
    return load_suite.__wrapped__(table)


def _store_validation(context, table: str, run_id: str, outcomes: list) -> ValidationPage:
    from great_expectations.core import ExpectationSuiteValidationResult, ExpectationValidationResult
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    configured = _configurations(table)
    results = []
    for row in sorted(outcomes, key=lambda r: r["rule"]):
        checked = row["element_count"] or 0
        unexpected = row["unexpected_count"] or 0
        results.append(ExpectationValidationResult(
            success=row["success"],
            expectation_config=configured.get(row["rule"]) or _stored_configuration(row),
            result={"element_count": checked, "unexpected_count": unexpected,
                    "unexpected_percent": 100.0 * unexpected / checked if checked else 0.0,
                    "missing_count": 0, "missing_percent": 0.0},
        ))
    checked_at = _utc(outcomes[0]["checked_at"])
    failed = sum(not r.success for r in results)
    gx_run = RunIdentifier(run_name=run_id, run_time=checked_at)
    validation = ExpectationSuiteValidationResult(
        success=failed == 0, results=results, suite_name=table,
        statistics={"evaluated_expectations": len(results), "successful_expectations": len(results) - failed,
                    "unsuccessful_expectations": failed,
                    "success_percent": 100.0 * (len(results) - failed) / len(results)},
        meta={"run_id": gx_run.to_json_dict(), "validation_time": checked_at.isoformat(),
              "active_batch_definition": {"datasource_name": "dmp", "data_asset_name": table,
                                          "batch_definition_name": run_id}},
    )
    key = ValidationResultIdentifier(ExpectationSuiteIdentifier(table), gx_run, table)
    context.validation_results_store.set(key, validation)
    # Where GX's store backend puts the page: the key's parts (suite name split at dots, run name, run time,
    # batch identifier) as folders.
    path = "/".join(("validations", *key.to_tuple())) + ".html"
    return ValidationPage(table, run_id, checked_at, failed == 0, len(results), failed, path)


def _configurations(table: str) -> dict:
    if not (EXPECTATIONS_DIR / f"{table}.json").exists():
        return {}
    return {e.meta["rule"]: e.configuration for e in _suite(table).expectations}


def _stored_configuration(row):
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    kwargs = {"column": row["column_name"]} if row["column_name"] else {}
    return ExpectationConfiguration(type=row["expectation_type"], kwargs=kwargs, meta={"rule": row["rule"]})


def _utc(timestamp: dt.datetime) -> dt.datetime:
    # PySpark hands timestamps back as naive datetimes in this process's local time.
    return timestamp.astimezone(dt.timezone.utc)


def _index_html(pages: list[ValidationPage], lakehouse: str) -> str:
    rows = "\n".join(
        f'<tr class="{"passed" if p.success else "failed"}"><td>{html.escape(p.table)}</td>'
        f'<td><a href="{html.escape(p.path)}">{html.escape(p.run_id)}</a></td>'
        f"<td>{p.checked_at:%Y-%m-%d %H:%M:%S}</td><td>{'passed' if p.success else 'failed'}</td>"
        f"<td>{p.expectations - p.failed} / {p.expectations}</td></tr>"
        for p in pages)
    suites = "\n".join(
        f'<li><a href="expectations/{html.escape(table.replace(".", "/"))}.html">{html.escape(table)}</a></li>'
        for table in sorted({p.table for p in pages}))
    body = (f"<table><thead><tr><th>table</th><th>run</th><th>checked (UTC)</th><th>result</th>"
            f"<th>expectations met</th></tr></thead><tbody>{rows}</tbody></table>"
            f"<h2>Expectation suites</h2><ul>{suites}</ul>") if pages else "<p>No validation results yet.</p>"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>dmp Data Docs</title>
<style>{STYLESHEET.read_text()}</style></head>
<body class="dmp-index"><h1>Data Docs</h1>
<p>Great Expectations validation results of every gate under <code>{html.escape(lakehouse)}</code>, newest first per
table, rebuilt from <code>ops.quality_results</code> by <code>dmp report</code> / <code>dmp docs</code>. A failed
rule's rows are in <code>quarantine.&lt;table&gt;</code> (<code>dmp quarantine show</code>).</p>
<h2>Validation results</h2>
{body}
</body></html>
"""
