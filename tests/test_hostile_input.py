"""A hostile input corpus (tests/data/hostile/) lands next to a small valid generated batch: every file gets the
outcome tests/data/hostile/outcomes.csv names for it (published, quarantined by a rule, or rejected as a file with
a row naming it), the valid batch still publishes, and every table's rows balance."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from lib import io
from lib.generate import GeneratorSettings, generate
from lib.pipeline import run_pipeline
from tests.conftest import make_config

pytestmark = pytest.mark.slow

CORPUS = Path(__file__).parent / "data" / "hostile"
OUTCOMES = list(csv.DictReader((CORPUS / "outcomes.csv").open()))
JOBS = ["bronze", "silver_customers", "silver_products", "silver_orders"]
LONG_LINE_FILE = "orders_long_line.jsonl"
LONG_LINE_CHARS = 50 * 1024 * 1024


def _write_long_line(path: Path) -> None:
    """One JSON-lines record of exactly 50 MB: generated here, not committed."""
    head, tail = '{"order_id": "h-o-long", "note": "', '"}'
    with path.open("w") as out:
        out.write(head + "x" * (LONG_LINE_CHARS - len(head) - len(tail)) + tail + "\n")


@pytest.fixture(scope="module")
def hostile_run(spark, tmp_path_factory):
    """Bronze + the silver jobs over a generated batch with the whole corpus landed beside it."""
    root = tmp_path_factory.mktemp("hostile")
    landing = root / "landing"
    generate(landing, GeneratorSettings(customers=40, days=2, seed=5, products=40))
    for outcome in OUTCOMES:
        target = landing / outcome["source"] / outcome["file"]
        target.parent.mkdir(parents=True, exist_ok=True)
        if outcome["file"] == LONG_LINE_FILE:
            _write_long_line(target)
        else:
            shutil.copy(CORPUS / outcome["file"], target)
    # The gate's error ratio is not under test: the corpus is most of some tables' rows.
    config = make_config(root, landing, max_error_ratio=0.9, table_max_error_ratio={})
    runs = {run.job: run for run in run_pipeline(spark, config, JOBS)}
    tables = {t.table: t for run in runs.values() for t in run.tables}
    return config, runs, tables


def _rows_of_file(df, name: str):
    return df.filter(F.col("_source_file").endswith("/" + name))


def test_outcomes_file_names_every_corpus_file_and_nothing_else():
    committed = {p.name for p in CORPUS.iterdir() if p.name != "outcomes.csv"}
    listed = {o["file"] for o in OUTCOMES}
    assert listed - committed == {LONG_LINE_FILE}
    assert committed <= listed
    assert {o["outcome"] for o in OUTCOMES} <= {"published", "quarantined", "rejected_file", "no_records", "cut_short"}


def test_every_job_succeeds_despite_the_hostile_files(hostile_run):
    _, runs, _ = hostile_run
    assert {job: run.status for job, run in runs.items()} == dict.fromkeys(JOBS, "succeeded"), \
        {job: run.error for job, run in runs.items()}


@pytest.mark.parametrize("outcome", OUTCOMES, ids=[o["file"] for o in OUTCOMES])
def test_each_corpus_file_gets_its_expected_outcome(spark, hostile_run, outcome):
    config, _, _ = hostile_run
    source, name, records = outcome["source"], outcome["file"], int(outcome["records"])
    bronze = _rows_of_file(io.read_table(spark, config, f"bronze.{source}"), name)
    published = _rows_of_file(io.read_table(spark, config, f"silver.{source}"), name)
    quarantine = _rows_of_file(io.read_table(spark, config, f"quarantine.{source}"), name)
    assert bronze.count() == records
    if outcome["outcome"] == "no_records":
        assert (records, published.count(), quarantine.count()) == (0, 0, 0)
        return
    if outcome["outcome"] == "published":
        assert (published.count(), quarantine.count()) == (records, 0)
        return
    if outcome["outcome"] == "cut_short":
        # The records before the cut publish; one row names the file and the loss.
        assert (published.count(), quarantine.count()) == (records - 1, 1)
    else:
        assert (published.count(), quarantine.count()) == (0, records)
    for row in quarantine.collect():
        assert outcome["rule"] in row["_failed_rules"], row["_failed_rules"]
        if outcome["message"]:
            assert row["_parse_error"].startswith(outcome["message"]), row["_parse_error"]
        if outcome["outcome"] in ("rejected_file", "cut_short"):
            assert row["value"] == ""


def test_rows_balance_in_every_table_and_silver_reads_every_bronze_row(spark, hostile_run):
    config, _, tables = hostile_run
    unbalanced = {name: t for name, t in tables.items() if not t.balanced}
    assert not unbalanced
    for source in ("customers", "products", "orders"):
        silver = tables[f"silver.{source}"]
        assert silver.rows_in == tables[f"bronze.{source}"].rows_in == io.read_table(
            spark, config, f"bronze.{source}").count()
        assert silver.rows_in == silver.published + silver.quarantined + silver.deduplicated
    # The accounting the job recorded is the same in ops.job_runs.
    recorded = io.read_table(spark, config, "ops.job_runs").filter(F.col("table_name") == "silver.orders").first()
    assert recorded["balanced"] and recorded["rows_in"] == tables["silver.orders"].rows_in


def test_a_file_with_a_header_and_no_rows_is_counted_by_bronze(hostile_run):
    _, _, tables = hostile_run
    header_only = [o for o in OUTCOMES if o["outcome"] == "no_records" and o["source"] == "customers"]
    assert header_only
    # The generated batch may hold header-only days of its own, hence at least.
    assert tables["bronze.customers"].details["files_without_records"] >= len(header_only)


def test_the_valid_generated_batch_still_publishes(spark, hostile_run):
    config, _, _ = hostile_run
    for source in ("customers", "products", "orders"):
        corpus_files = [o["file"] for o in OUTCOMES if o["source"] == source]
        generated = io.read_table(spark, config, f"silver.{source}").filter(
            ~F.substring_index("_source_file", "/", -1).isin(corpus_files))
        assert generated.count() > 0, source


def test_a_record_too_long_to_parse_is_kept_truncated_in_bronze(spark, hostile_run):
    config, _, _ = hostile_run
    row = _rows_of_file(io.read_table(spark, config, "bronze.orders"), LONG_LINE_FILE).first()
    assert row["_parse_error"] == f"record too long: {LONG_LINE_CHARS} characters (limit 1000000); kept truncated"
    assert len(row["value"]) == 1_000_000


def test_sql_and_formula_strings_are_kept_verbatim_as_data(spark, hostile_run):
    config, _, _ = hostile_run
    pii = {r["customer_id"]: r for r in io.read_table(spark, config, "silver.customer_pii").collect()}
    customers = {r["customer_id"]: r for r in io.read_table(spark, config, "silver.customers").collect()}
    assert pii["h-sql1"]["last_name"] == "Robert'); DROP TABLE silver.customers;--"
    assert pii["h-formula1"]["first_name"] == '=HYPERLINK("http://evil.example/?x=1","click")'
    assert customers["h-formula1"]["city"] == "=cmd|' /C calc'!A0"


def test_formula_cells_leave_in_csv_exports_quote_prefixed_and_parquet_keeps_them(spark, hostile_run, tmp_path):
    config, _, _ = hostile_run
    hostile = io.read_table(spark, config, "silver.customer_pii").filter(F.col("customer_id").startswith("h-formula"))
    io.export_files(hostile.select("customer_id", "first_name", "last_name"), str(tmp_path))
    exported = spark.read.option("header", "true").csv(str(tmp_path / "csv"))
    cells = {r["customer_id"]: (r["first_name"], r["last_name"]) for r in exported.collect()}
    assert cells == {
        "h-formula1": ('\'=HYPERLINK("http://evil.example/?x=1","click")', "Lopez"),
        "h-formula2": ("'+SUM(1;2)", "'-2+3"),
    }
    kept = {r["customer_id"]: r["first_name"] for r in spark.read.parquet(str(tmp_path / "parquet")).collect()}
    assert kept["h-formula2"] == "+SUM(1;2)"
