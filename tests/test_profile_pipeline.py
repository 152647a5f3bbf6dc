"""Customer profiles end to end on generated data: the segments find the planted archetypes, every person has one
profile row, re-runs change nothing, a retrain keeps segment ids; audiences built on the profile hold only
consenting people, pseudonymously, and rebuild idempotently."""

from __future__ import annotations

import csv
import dataclasses
import io as io_text
from functools import partial
from pathlib import Path

import pytest
import yaml
from delta.tables import DeltaTable
from pyspark.sql import functions as F
from sklearn.metrics import adjusted_rand_score

from lib import io
from lib.audiences import DEFAULT_DEFINITIONS, exports_root, load_audiences
from lib.config import AudienceSettings
from lib.customers import PII_COLUMNS
from lib.generate import ARCHETYPES, GeneratorSettings, generate
from lib.jobs import gold_audiences
from lib.pipeline import run_pipeline, selected_jobs, upstream
from lib.runner import new_run_id, run_job
from tests.conftest import make_config

pytestmark = pytest.mark.slow

# Landing to the profile, without the campaigns and privacy jobs: nothing planted here needs them, and they cost time.
PROFILE_JOBS = selected_jobs(upstream("gold_customer_profile") - {"silver_campaigns", "privacy"})


@pytest.fixture(scope="module")
def profiled(spark, tmp_path_factory):
    landing = tmp_path_factory.mktemp("landing")
    generate(landing, GeneratorSettings(customers=700, days=45, seed=5, products=80))
    config = make_config(tmp_path_factory.mktemp("run"), landing)
    runs = run_pipeline(spark, config, jobs=PROFILE_JOBS)
    assert [r.status for r in runs] == ["succeeded"] * len(runs), [(r.job, r.error) for r in runs]
    return config, landing, runs


def _archetypes(landing: Path) -> dict[str, str]:
    with (landing / "ground_truth" / "archetypes.csv").open() as handle:
        return {row["customer_id"]: row["archetype"] for row in csv.DictReader(handle)}


def _segment_of_customer(spark, config) -> dict[str, int]:
    customers = io.read_table(spark, config, "silver.identity_map").filter("identifier_type = 'customer_id'")
    profile = io.read_table(spark, config, "gold.customer_profile")
    return {row["identifier"]: row["segment_id"] for row in
            profile.join(customers, "person_id").select("identifier", "segment_id").collect()}


def test_segments_recover_the_planted_archetypes(spark, profiled):
    config, landing, _ = profiled
    truth = _archetypes(landing)
    segment = _segment_of_customer(spark, config)
    customers = sorted(set(truth) & set(segment))
    assert len(customers) > 0.95 * len(truth)
    ari = adjusted_rand_score([truth[c] for c in customers], [segment[c] for c in customers])
    assert ari >= 0.6, ari
    run = io.read_table(spark, config, "ops.model_runs").filter("model = 'customer_segments'").first()
    assert int(run["metrics"]["chosen_k"]) == len(ARCHETYPES)


def test_every_person_has_one_profile_with_scores_in_range(spark, profiled):
    config, _, runs = profiled
    profile = io.read_table(spark, config, "gold.customer_profile")
    features = io.read_table(spark, config, "gold.customer_features")
    assert profile.count() == features.count() == profile.select("person_id").distinct().count()
    stats = profile.agg(F.min("clv").alias("min_clv"), F.count(F.when(F.col("segment_id").isNull(), 1)).alias("no_seg"),
                        F.max("r_score").alias("max_r")).first()
    assert stats["min_clv"] >= 0 and stats["no_seg"] == 0 and stats["max_r"] == 5
    accounting = {t.table: t for run in runs for t in run.tables}
    for table in ("gold.customer_features", "gold.customer_profile", "gold.segments"):
        assert accounting[table].balanced and accounting[table].quarantined == 0, table
    clv_run = io.read_table(spark, config, "ops.model_runs").filter("model = 'clv'").first()
    assert clv_run is not None and clv_run["metrics"]["r"] > 0


def test_a_rerun_on_the_same_input_leaves_the_profile_tables_unchanged(spark, profiled):
    config, _, _ = profiled
    tables = ["gold.customer_features", "gold.customer_profile", "gold.segments"]
    before = {t: sorted(io.read_table(spark, config, t).drop("model_run_id").collect()) for t in tables}
    runs = run_pipeline(spark, config, jobs=["gold_customer_features", "gold_customer_profile"], force=True)
    assert [r.status for r in runs] == ["succeeded", "succeeded"], [r.error for r in runs]
    assert {t: sorted(io.read_table(spark, config, t).drop("model_run_id").collect()) for t in tables} == before
    assert not io.table_exists(spark, config, "gold.segment_migrations")


def test_a_retrain_keeps_segment_ids_and_names(spark, profiled):
    config, _, _ = profiled
    before = {r["segment_id"]: r["name"] for r in io.read_table(spark, config, "gold.segments").collect()}
    retrain = dataclasses.replace(config, segments=dataclasses.replace(config.segments, retrain=True, seed=99))
    runs = run_pipeline(spark, retrain, jobs=["gold_customer_profile"], force=True)
    assert runs[0].status == "succeeded", runs[0].error
    after = {r["segment_id"]: r["name"] for r in io.read_table(spark, config, "gold.segments").collect()}
    # Every segment that continues keeps its id and name; as many continue as both models have segments for.
    kept = set(before) & set(after)
    assert len(kept) == min(len(before), len(after))
    assert {i: after[i] for i in kept} == {i: before[i] for i in kept}
    assert all(new_id > max(before) for new_id in set(after) - kept)
    trainings = io.read_table(spark, config, "ops.model_runs").filter("model = 'customer_segments'").count()
    assert trainings == 2


def _activation_files(spark, folder: Path) -> tuple[list[dict], list[dict], str]:
    """(rows of the CSV file, rows of the Parquet file, the CSV text) of one audience's activation files."""
    text = "".join(file.read_text() for file in sorted((folder / "csv").glob("*.csv")))
    parquet_rows = [row.asDict() for row in spark.read.parquet(str(folder / "parquet")).collect()]
    return list(csv.DictReader(io_text.StringIO(text))), parquet_rows, text


def _audience_merge_changes(spark, config) -> dict[str, str]:
    metrics = DeltaTable.forPath(spark, config.table_path("gold.audiences")).history(1).first()["operationMetrics"]
    return {k: metrics[k] for k in ("numTargetRowsInserted", "numTargetRowsUpdated", "numTargetRowsDeleted")}


def test_audiences_hold_only_consenting_people_pseudonymously_and_rebuild_idempotently(spark, profiled, tmp_path):
    config, _, _ = profiled
    runs = run_pipeline(spark, config, jobs=["gold_audiences"], force=True)
    assert runs[0].status == "succeeded", runs[0].error
    accounting = runs[0].tables[0]
    assert accounting.table == "gold.audiences" and accounting.balanced and accounting.rows_in > 0
    assert accounting.details["without_consent"] > 0

    read = lambda table: io.read_table(spark, config, table)  # noqa: E731
    profile = read("gold.customer_profile").collect()
    consent = {row["person_id"]: {"email": row["consent_email"], "ads": row["consent_ads"]} for row in profile}
    pii = {value for row in read("silver.customer_pii").select(*PII_COLUMNS).collect() for value in row if value}
    members = read("gold.audiences").collect()
    definitions = load_audiences(DEFAULT_DEFINITIONS)
    exports = Path(exports_root(config))
    assert len({row["audience"] for row in members}) >= 3
    for audience in definitions:
        csv_rows, parquet_rows, text = _activation_files(spark, exports / audience.name)
        people = {row["person_id"] for row in members if row["audience"] == audience.name}
        assert {row["person_id"] for row in csv_rows} == {row["person_id"] for row in parquet_rows} == people
        assert all(consent[person][audience.channel] is True for person in people), audience.name
        exported_values = {str(value) for row in [*csv_rows, *parquet_rows] for value in row.values()}
        assert not exported_values & pii and "@" not in text, audience.name
        contact = ["email_hash"] if audience.channel == "email" else []
        assert text.splitlines()[0].split(",") == ["audience", "channel", "person_id", *contact, "as_of"]
        assert all(len(row["email_hash"]) == 64 for row in csv_rows if contact)

    first_files = {a.name: _activation_files(spark, exports / a.name)[2] for a in definitions}
    rerun = run_pipeline(spark, config, jobs=["gold_audiences"], force=True)
    assert rerun[0].status == "succeeded", rerun[0].error
    assert sorted(read("gold.audiences").collect()) == sorted(members)
    assert _audience_merge_changes(spark, config) == {
        "numTargetRowsInserted": "0", "numTargetRowsUpdated": "0", "numTargetRowsDeleted": "0"}
    assert {a.name: _activation_files(spark, exports / a.name)[2] for a in definitions} == first_files

    # Narrowing one audience removes the people who left it and nobody else; a full build of a file that no
    # longer defines the other audiences deletes their rows and their activation files.
    narrowed = tmp_path / "narrowed.yaml"
    narrowed.write_text(yaml.safe_dump([{"name": "champions_email", "channel": "email", "filter": {"all": [
        {"column": "rfm_segment", "in": ["Champions", "Loyal"]}, {"column": "r_score", "eq": 5}]}}]))
    narrowed_config = dataclasses.replace(config, audiences=AudienceSettings(definitions=str(narrowed)))
    r_score = {row["person_id"]: row["r_score"] for row in profile}
    champions = {row["person_id"] for row in members if row["audience"] == "champions_email"}
    assert {r_score[p] for p in champions} > {5}, "the narrowed definition must drop someone"
    only = run_job("gold_audiences", partial(gold_audiences, only=["champions_email"]), spark, narrowed_config,
                   new_run_id())
    assert only.ok, only.error
    after = read("gold.audiences").collect()
    assert {row["person_id"] for row in after if row["audience"] == "champions_email"} == {
        p for p in champions if r_score[p] == 5}
    assert sorted(r for r in after if r["audience"] != "champions_email") == sorted(
        r for r in members if r["audience"] != "champions_email")
    full = run_job("gold_audiences", gold_audiences, spark, narrowed_config, new_run_id())
    assert full.ok, full.error
    assert {row["audience"] for row in read("gold.audiences").collect()} == {"champions_email"}
    assert sorted(folder.name for folder in exports.iterdir()) == ["champions_email"]
