"""KMeans segmentation on planted blobs: k by silhouette, centroids back in original units, ids stable over
retrains, migrations counted."""

from __future__ import annotations

import dataclasses
import random

import pytest
from pyspark.sql import functions as F
from sklearn.metrics import adjusted_rand_score

from lib import segments
from lib.config import SegmentSettings
from lib.spark import persisted_rdd_ids

SETTINGS = SegmentSettings(features=("orders_per_week", "price_position"), log_features=("orders_per_week",),
                           k_min=2, k_max=6, seed=3, restarts=1)
# Planted groups: (orders per week, price position) around which people scatter.
BLOBS = {"frequent premium": (3.0, 0.85), "rare premium": (0.1, 0.8), "frequent bargain": (3.0, 0.15),
         "rare bargain": (0.1, 0.2)}


def _people(spark, per_blob: int, seed: int):
    rng = random.Random(seed)
    rows = []
    for name, (orders, price) in BLOBS.items():
        for i in range(per_blob):
            rows.append((f"{name}-{i}", name, orders * rng.uniform(0.8, 1.25), min(1.0, max(0.0, rng.gauss(price,
                                                                                                         0.04)))))
    return spark.createDataFrame(rows, "person_id string, planted string, orders_per_week double, "
                                       "price_position double")


@pytest.fixture(scope="module")
def trained(spark):
    people = _people(spark, 60, seed=1).cache()
    return people, segments.train_segmentation(people, SETTINGS)


def test_silhouette_picks_the_planted_number_of_groups(trained):
    people, result = trained
    assert result.k == len(BLOBS)
    assert max(result.silhouettes, key=result.silhouettes.get) == len(BLOBS)
    assigned = {r["person_id"]: r["cluster"] for r in segments.assign_clusters(result.model, people).collect()}
    planted = {r["person_id"]: r["planted"] for r in people.collect()}
    ids = sorted(planted)
    assert adjusted_rand_score([planted[i] for i in ids], [assigned[i] for i in ids]) == 1.0


def test_the_smallest_k_within_the_tolerance_of_the_best_silhouette_wins():
    scores = {3: 0.42, 4: 0.55, 5: 0.60, 6: 0.61, 7: 0.58}
    assert segments.parsimonious_k(scores, 0.0) == 6
    assert segments.parsimonious_k(scores, 0.02) == 5
    assert segments.parsimonious_k(scores, 0.06) == 4
    assert segments.parsimonious_k({3: 0.5, 4: 0.5}, 0.0) == 3


def test_centroids_come_back_in_original_units(trained):
    _, result = trained
    centroids = segments.centroids_in_original_units(result.model, SETTINGS)
    for orders, price in BLOBS.values():
        nearest = min(centroids, key=lambda c: abs(c["orders_per_week"] - orders) + abs(c["price_position"] - price))
        assert nearest["orders_per_week"] == pytest.approx(orders, rel=0.15)
        assert nearest["price_position"] == pytest.approx(price, abs=0.03)


def test_segment_names_describe_what_sets_them_apart_and_are_unique(trained):
    _, result = trained
    rows = segments.segment_rows(result.model, SETTINGS, previous=[])
    names = [row[2] for row in rows]
    assert len(set(names)) == len(names)
    by_centroid = {(round(row[3]["orders_per_week"]) > 1, row[3]["price_position"] > 0.5): row[2] for row in rows}
    assert "frequent buyers" in by_centroid[(True, True)].lower() or "premium" in by_centroid[(True, True)].lower()
    assert "bargain" in by_centroid[(False, False)].lower() or "rare" in by_centroid[(False, False)].lower()
    assert sorted(row[0] for row in rows) == [1, 2, 3, 4]


def test_retraining_keeps_segment_ids_and_names(spark, trained):
    people, result = trained
    first = segments.segment_rows(result.model, SETTINGS, previous=[])
    previous = [segments.PreviousSegment(segment_id, name, centroid) for segment_id, _, name, centroid, _ in first]
    # New people drawn afresh and another seed: KMeans numbers its clusters differently.
    retrained = segments.train_segmentation(_people(spark, 50, seed=2), dataclasses.replace(SETTINGS, seed=11))
    second = segments.segment_rows(retrained.model, SETTINGS, previous)

    def by_blob(rows):
        return {min(BLOBS, key=lambda b: abs(BLOBS[b][0] - row[3]["orders_per_week"])
                    + abs(BLOBS[b][1] - row[3]["price_position"])): (row[0], row[2]) for row in rows}

    assert by_blob(second) == by_blob(first)


def test_a_new_cluster_gets_a_new_id_and_the_rest_keep_theirs(spark):
    three = {k: BLOBS[k] for k in list(BLOBS)[:3]}
    rng = random.Random(5)
    rows = [(f"{name}-{i}", orders * rng.uniform(0.8, 1.25), min(1.0, max(0.0, rng.gauss(price, 0.04))))
            for name, (orders, price) in three.items() for i in range(50)]
    before = segments.train_segmentation(
        spark.createDataFrame(rows, "person_id string, orders_per_week double, price_position double"), SETTINGS)
    assert before.k == 3
    first = segments.segment_rows(before.model, SETTINGS, previous=[])
    previous = [segments.PreviousSegment(segment_id, name, centroid) for segment_id, _, name, centroid, _ in first]
    after = segments.train_segmentation(_people(spark, 50, seed=6), SETTINGS)
    second = segments.segment_rows(after.model, SETTINGS, previous)
    assert sorted(row[0] for row in second) == [1, 2, 3, 4]
    assert {row[2] for row in first} <= {row[2] for row in second}


def test_migrations_count_people_moving_between_segments(spark):
    before = spark.createDataFrame([("a", 1), ("b", 1), ("c", 2), ("gone", 2)], "person_id string, segment_id int")
    after = spark.createDataFrame([("a", 1), ("b", 2), ("c", 2), ("new", 1)], "person_id string, segment_id int")
    moves = {(r["from_segment_id"], r["to_segment_id"]): r["people"]
             for r in segments.segment_migrations(before, after).collect()}
    assert moves == {(1, 1): 1, (1, 2): 1, (2, 2): 1, (2, None): 1, (None, 1): 1}


def _unclustered_people(spark):
    rng = random.Random(9)
    rows = [(f"p{i:04d}", rng.uniform(0.0, 3.0), rng.uniform(0.0, 1.0)) for i in range(600)]
    return spark.createDataFrame(rows, "person_id string, orders_per_week double, price_position double")


def test_each_k_keeps_the_lowest_cost_of_its_restarts(spark):
    people = _unclustered_people(spark).cache()
    one_k = dataclasses.replace(SETTINGS, k_min=5, k_max=5)

    def cost(settings):
        return segments.train_segmentation(people, settings).kmeans.summary.trainingCost

    single = [cost(dataclasses.replace(one_k, seed=one_k.seed + restart, restarts=1)) for restart in range(3)]
    assert len(set(single)) > 1, "the seeds should reach different optima for the test to mean anything"
    assert cost(dataclasses.replace(one_k, restarts=3)) == min(single)


def test_training_releases_the_people_it_checkpointed(spark):
    people = _unclustered_people(spark)
    before = persisted_rdd_ids(spark)
    segments.train_segmentation(people, dataclasses.replace(SETTINGS, k_max=3))
    assert persisted_rdd_ids(spark) == before


def test_the_same_people_get_the_same_segments_however_their_rows_are_laid_out(spark):
    """Unclustered people (no planted groups, so KMeans' start decides the outcome) and fewer training rows than
    people (so the sample decides it too): one partition in one order against seven in a shuffled order, as a
    rewritten upstream table would lay them out."""
    people = _unclustered_people(spark)
    settings = dataclasses.replace(SETTINGS, max_training_rows=400)
    one_file = segments.train_segmentation(people.coalesce(1).orderBy("person_id"), settings)
    rewritten = segments.train_segmentation(people.repartition(7).orderBy(F.rand(5)), settings)
    assert one_file.training_rows == rewritten.training_rows
    assert one_file.silhouettes == pytest.approx(rewritten.silhouettes, abs=1e-9)
    assert one_file.k == rewritten.k
    def centres(trained):
        return [value for centre in sorted(map(tuple, trained.kmeans.clusterCenters())) for value in centre]

    assert centres(one_file) == pytest.approx(centres(rewritten), abs=1e-9)
