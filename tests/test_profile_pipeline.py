"""Customer profiles end to end on generated data: the segments find the planted archetypes, every person has one
profile row, re-runs change nothing, a retrain keeps segment ids."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import pytest
from pyspark.sql import functions as F
from sklearn.metrics import adjusted_rand_score

from lib import io
from lib.generate import ARCHETYPES, GeneratorSettings, generate
from lib.pipeline import run_pipeline
from tests.conftest import make_config

pytestmark = pytest.mark.slow

PROFILE_JOBS = ["bronze", "silver_customers", "silver_products", "silver_events", "silver_identity", "silver_orders",
                "gold_customer_features", "gold_customer_profile"]


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
