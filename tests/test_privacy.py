"""Privacy requests on a copy of the end-to-end lakehouse: an erased person is gone from every table, every Delta
version still readable and every data file on disk; an opted-out person leaves the channel's audiences."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from lib import io
from lib.audiences import exports_root
from lib.config import PrivacySettings
from lib.pipeline import run_pipeline
from tests.conftest import copy_of_e2e_lakehouse

pytestmark = pytest.mark.slow

REQUEST_HEADER = "request_id,customer_id,email,request_type,received_at\n"


@dataclasses.dataclass(frozen=True)
class Person:
    customer_id: str
    person_id: str
    customer_ids: frozenset[str]  # every customer record the identity map joins to the person
    identifiers: frozenset[str]  # every clear id, cookie, hash and contact value of the person

    def pattern(self) -> re.Pattern:
        # A whole value, not a prefix of a longer id (c-000001 must not match c-0000012).
        alternatives = "|".join(re.escape(v) for v in sorted(self.identifiers, key=len, reverse=True))
        return re.compile(rf"(?<![\w.@+-])(?:{alternatives})(?![\w.@-])", re.IGNORECASE)


def _person(spark, config, customer_id: str) -> Person:
    identity = io.read_table(spark, config, "silver.identity_map")
    person_id = identity.filter((F.col("identifier_type") == "customer_id") & (F.col("identifier") == customer_id)) \
        .first()["person_id"]
    nodes = {r["identifier"] for r in identity.filter(F.col("person_id") == person_id).collect()}
    customer_ids = {r["identifier"] for r in identity.filter((F.col("person_id") == person_id)
                                                             & (F.col("identifier_type") == "customer_id")).collect()}
    pii = io.read_table(spark, config, "silver.customer_pii").filter(F.col("customer_id").isin(customer_ids))
    contacts = {v for r in pii.collect() for v in (r["email"], r["phone"]) if v}
    # Not the name: namesakes are other people, and they stay.
    hashes = {v for r in io.read_table(spark, config, "silver.customers").filter(F.col("customer_id").isin(
        customer_ids)).collect() for v in (r["email_hash"], r["phone_hash"]) if v}
    return Person(customer_id, person_id, frozenset(customer_ids),
                  frozenset({person_id, *nodes, *customer_ids, *contacts, *hashes}))


def _email_audience_person(spark, config, exclude: str) -> str:
    """A customer in an email audience whose quarantined rows name them (so erasure must reach quarantine)."""
    members = io.read_table(spark, config, "gold.audiences").filter(F.col("channel") == "email")
    identity = io.read_table(spark, config, "silver.identity_map").filter(F.col("identifier_type") == "customer_id")
    customers = members.join(identity, "person_id").select(F.col("identifier").alias("customer_id")) \
        .filter(F.col("customer_id") != exclude).distinct()
    quarantined = io.read_table(spark, config, "quarantine.orders").select("value")
    named = customers.join(quarantined, F.col("value").contains(F.concat(F.lit('"'), "customer_id", F.lit('"')))) \
        .groupBy("customer_id").count().orderBy(F.desc("count"), "customer_id").first()
    return named["customer_id"] if named else customers.orderBy("customer_id").first()["customer_id"]


def _rows_naming(df, pattern: re.Pattern) -> list[str]:
    as_text = df.select(F.to_json(F.struct(*[F.col(f"`{c}`") for c in df.columns])).alias("row"))
    return [r["row"] for r in as_text.collect() if pattern.search(r["row"])]


@pytest.fixture(scope="module")
def privacy_run(spark, e2e_run, tmp_path_factory):
    """The e2e lakehouse copied, then an erasure and an opt-out request landed and applied with VACUUM due at
    once (retention 0): (config, erased Person, opted-out Person, [JobRun])."""
    source, _, _ = e2e_run
    return apply_test_requests(spark, source, tmp_path_factory.mktemp("privacy"))


def apply_test_requests(spark, source, root: Path):
    config = copy_of_e2e_lakehouse(source, root, privacy=PrivacySettings(vacuum_retention_hours=0.0))
    erased_id = _email_audience_person(spark, config, exclude="")
    opted_id = _email_audience_person(spark, config, exclude=erased_id)
    erased, opted = _person(spark, config, erased_id), _person(spark, config, opted_id)
    # The erasure names the person by email only: the job must find the customer (and the rest of the person).
    email = next(v for v in erased.identifiers if "@" in v)
    (root / "landing" / "privacy_requests").mkdir(parents=True)
    (root / "landing" / "privacy_requests" / "requests_test.csv").write_text(
        REQUEST_HEADER + f"t-erase,,{email.upper()},erasure,2026-02-01T00:00:00Z\n"
        f"t-optout,{opted_id},,opt_out_email,2026-02-01T00:00:00Z\n"
        "t-bad,c-x,,delete_everything,2026-02-01T00:00:00Z\n")
    runs = run_pipeline(spark, config, jobs=["bronze", "privacy"])
    return config, erased, opted, runs


def test_erased_person_is_in_no_table_no_readable_version_and_no_data_file(spark, privacy_run):
    config, erased, _, runs = privacy_run
    assert [r.status for r in runs] == ["succeeded", "succeeded"], [r.error for r in runs]
    pattern = erased.pattern()
    # Every parquet file under every table (data, change data feed, checkpoints): what any version could read.
    for table in io.list_tables(spark, config):
        files = spark.read.option("recursiveFileLookup", "true").option("mergeSchema", "true") \
            .option("pathGlobFilter", "*.parquet").parquet(config.table_path(table))
        assert not _rows_naming(files, pattern), f"a data file of {table} still holds the person"
    # Time travel, through Delta, over the history of each table the person was erased from.
    removed = next(r for r in io.read_table(spark, config, "ops.privacy_audit").collect()
                   if r["request_id"] == "t-erase")["rows_removed"]
    readable = unreadable = 0
    for table in (t for t, rows in removed.items() if rows):
        for entry in spark.sql(f"DESCRIBE HISTORY delta.`{config.table_path(table)}`").collect():
            try:
                rows = io.read_table(spark, config, table, version=entry["version"])
                found = _rows_naming(rows, pattern)
            except Exception as gone:  # noqa: BLE001 - a version whose files VACUUM deleted cannot be read
                assert "FileNotFound" in str(gone) or "does not exist" in str(gone), gone
                unreadable += 1
                continue
            readable += 1
            assert not found, f"{table} version {entry['version']} still holds the person: {found[:2]}"
    assert readable > 0 and unreadable > 0  # history was there, and VACUUM made the erased versions unreadable
    for export in Path(exports_root(config)).rglob("*.csv"):
        assert not pattern.search(export.read_text()), export
    assert not Path(config.checkpoint_path("als")).exists()


def test_erasure_reaches_quarantine_and_is_audited_without_clear_identifiers(spark, privacy_run, e2e_run):
    config, erased, _, _ = privacy_run
    audit = {r["request_id"]: r for r in io.read_table(spark, config, "ops.privacy_audit").collect()}
    assert audit["t-erase"]["outcome"] == "erased"
    removed = audit["t-erase"]["rows_removed"]
    before, _, _ = e2e_run
    for table in ("bronze.customers", "silver.customers", "silver.customer_pii", "silver.orders",
                  "silver.identity_map", "gold.customer_profile", "gold.audiences"):
        assert removed.get(table, 0) > 0, (table, removed)
    for table in ("silver.customers", "silver.customer_pii"):
        before_ids = {r["customer_id"] for r in io.read_table(spark, before, table).select("customer_id").collect()}
        after_ids = {r["customer_id"] for r in io.read_table(spark, config, table).select("customer_id").collect()}
        # The person's own customer records go, and nobody else's (not their namesakes').
        assert before_ids - after_ids == erased.customer_ids & before_ids != set()
    quarantined_before = _rows_naming(io.read_table(spark, before, "quarantine.orders"), erased.pattern())
    assert removed.get("quarantine.orders", 0) == len(quarantined_before) > 0
    assert audit["t-erase"]["history_purged_at"] is not None
    assert set(audit["t-erase"]["vacuumed_tables"]) == {t for t, n in removed.items() if n}
    assert audit["t-bad"]["outcome"].startswith("rejected: unknown request_type 'delete_everything'")
    assert audit["t-erase"]["subject_hash"] and len(audit["t-erase"]["subject_hash"]) == 64


def test_opted_out_person_leaves_email_audiences_and_stays_out_after_a_rebuild(spark, privacy_run):
    config, _, opted, _ = privacy_run

    def email_members():
        return io.read_table(spark, config, "gold.audiences").filter(
            (F.col("channel") == "email") & (F.col("person_id") == opted.person_id)).count()

    assert email_members() == 0
    exported = spark.read.option("recursiveFileLookup", "true").option("pathGlobFilter", "*.parquet") \
        .parquet(exports_root(config))
    assert exported.filter((F.col("channel") == "email") & (F.col("person_id") == opted.person_id)).count() == 0
    assert run_pipeline(spark, config, jobs=["gold_audiences"], force=True)[0].ok
    assert email_members() == 0


def test_a_record_of_an_erased_person_sent_again_is_counted_as_erased_not_published(spark, privacy_run, e2e_landing):
    config, erased, _, _ = privacy_run
    header, *lines = next(iter(sorted((e2e_landing / "customers").glob("*.csv")))).read_text().splitlines()
    record = next(line for path in sorted((e2e_landing / "customers").glob("*.csv"))
                  for line in path.read_text().splitlines() if line.startswith(erased.customer_id + ","))
    (Path(config.landing_root) / "customers").mkdir(exist_ok=True)
    (Path(config.landing_root) / "customers" / "resent.csv").write_text(f"{header}\n{record}\n")
    runs = run_pipeline(spark, config, jobs=["bronze", "silver_customers"])
    assert all(r.ok for r in runs), [r.error for r in runs]
    customers_run = next(t for r in runs for t in r.tables if t.table == "silver.customers")
    assert customers_run.details.get("erased") == 1 and customers_run.balanced
    assert not _rows_naming(io.read_table(spark, config, "bronze.customers"), erased.pattern())
    # The re-sent record's file is VACUUMed by the next privacy run (retention 0 here), like an erasure's.
    assert run_pipeline(spark, config, jobs=["privacy"])[0].ok
    files = spark.read.option("recursiveFileLookup", "true").option("pathGlobFilter", "*.parquet") \
        .parquet(config.table_path("bronze.customers"))
    assert not _rows_naming(files, erased.pattern())
    assert io.read_table(spark, config, "silver.customers").filter(
        F.col("customer_id") == erased.customer_id).count() == 0
