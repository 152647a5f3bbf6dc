"""Behavioural segments: a Spark MLlib PipelineModel (log1p + VectorAssembler + StandardScaler + KMeans), k chosen
by silhouette (the smallest k within a tolerance of the best), segments described in original units and kept stable
across retrains.

Segment ids and names belong to the segments, not to KMeans' cluster indexes: after a retrain, new clusters are
matched to the previous segments by centroid distance (an optimal one-to-one assignment), so a segment keeps its
id and name while its people and centre drift; clusters without a match get new ids.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.clustering import KMeans, KMeansModel
from pyspark.ml.evaluation import ClusteringEvaluator
from pyspark.ml.feature import Imputer, SQLTransformer, StandardScaler, StandardScalerModel, VectorAssembler
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from scipy.optimize import linear_sum_assignment

from lib.config import SegmentSettings
from lib.spark import persisted_rdd_ids, unpersist_rdds

SCALED = "_segment_features"
CLUSTER = "cluster"
# Training data layout, fixed so that a local run and a cluster run of the same people agree. Few: KMeans on at
# most max_training_rows people is bound by the overhead of its iterations (a Spark job each): 44 ms an iteration
# over 2 partitions against 82 ms over 8 at M (local[2]).
TRAINING_PARTITIONS = 2
HASH_BUCKETS = 1_000_000
# Words for the automatic segment names: (feature, direction) -> phrase.
FEATURE_WORDS = {
    ("orders_per_week", 1): "frequent buyers", ("orders_per_week", -1): "rare buyers",
    ("sessions_per_week", 1): "heavy browsers", ("sessions_per_week", -1): "rare visitors",
    ("price_position", 1): "premium", ("price_position", -1): "bargain hunters",
    ("items_per_order", 1): "big baskets", ("items_per_order", -1): "small baskets",
    ("purchase_recency_share", 1): "lapsed", ("purchase_recency_share", -1): "recent",
    ("active_weeks", 1): "long-standing", ("active_weeks", -1): "newcomers",
}


def _input_name(feature: str) -> str:
    return f"_in_{feature}"


def feature_stages(settings: SegmentSettings) -> list:
    """Missing values (e.g. the price position of someone who never bought) set to the feature's median, so they
    look average rather than extreme; log1p of the skewed features; assembled; scaled."""
    imputed = [f"_imputed_{f}" for f in settings.features]
    transformed = ", ".join(
        f"{'log1p' if f in settings.log_features else ''}(double(`{source}`)) AS `{_input_name(f)}`"
        for f, source in zip(settings.features, imputed)
    )
    return [
        SQLTransformer(statement="SELECT *, " + ", ".join(
            f"double(`{f}`) AS `{source}`" for f, source in zip(settings.features, imputed)) + " FROM __THIS__"),
        Imputer(inputCols=imputed, outputCols=imputed, strategy="median"),
        SQLTransformer(statement=f"SELECT *, {transformed} FROM __THIS__"),
        VectorAssembler(inputCols=[_input_name(f) for f in settings.features], outputCol="_assembled"),
        StandardScaler(inputCol="_assembled", outputCol=SCALED, withMean=True, withStd=True),
    ]


@dataclass(frozen=True)
class TrainedSegmentation:
    model: PipelineModel
    silhouettes: dict[int, float]
    training_rows: int

    @property
    def k(self) -> int:
        return self.kmeans.getK()

    @property
    def kmeans(self) -> KMeansModel:
        return self.model.stages[-1]


def parsimonious_k(silhouettes: dict[int, float], tolerance: float) -> int:
    """The smallest k whose silhouette is within ``tolerance`` of the best."""
    best = max(silhouettes.values())
    return min(k for k, score in silhouettes.items() if score >= best - tolerance)


def training_people(features: DataFrame, max_rows: int, seed: int) -> DataFrame:
    """About ``max_rows`` people (everyone when there are fewer), chosen by a seeded hash of their id and laid out
    in a fixed number of partitions, each sorted by id. KMeans' start and the Imputer's medians depend on which
    rows sit in which partition in which order; a Bernoulli sample and the upstream table's file layout would let
    the same people get other segments after a rewrite of that table (3 instead of 4 at M, seen)."""
    total = features.count()
    if total > max_rows:
        bucket = F.pmod(F.xxhash64("person_id", F.lit(seed)), F.lit(HASH_BUCKETS))
        features = features.filter(bucket < F.lit(max_rows * HASH_BUCKETS // total))
    return features.repartition(TRAINING_PARTITIONS, "person_id").sortWithinPartitions("person_id")


def train_segmentation(features: DataFrame, settings: SegmentSettings) -> TrainedSegmentation:
    """Fit the feature stages once on the training people, then KMeans for every k in the range (the best of
    ``settings.restarts`` seeds each); keep the smallest k whose silhouette is within
    ``settings.silhouette_tolerance`` of the best."""
    sample = training_people(features, settings.max_training_rows, settings.seed)
    prepared_model = Pipeline(stages=feature_stages(settings)).fit(sample)
    persisted_before = persisted_rdd_ids(features.sparkSession)
    # Checkpointed, not cached: KMeans then keeps the vectors deserialised itself, where from a cache it decoded
    # them again in every iteration (149 against 82 ms an iteration at M).
    prepared = prepared_model.transform(sample).select(SCALED).localCheckpoint()
    rows = prepared.count()
    evaluator = ClusteringEvaluator(featuresCol=SCALED, predictionCol=CLUSTER)
    fitted: dict[int, KMeansModel] = {}
    silhouettes: dict[int, float] = {}
    for k in range(settings.k_min, min(settings.k_max, rows - 1) + 1):
        fitted[k] = min((KMeans(k=k, seed=settings.seed + restart, featuresCol=SCALED, predictionCol=CLUSTER,
                                maxIter=50).fit(prepared) for restart in range(settings.restarts)),
                        key=lambda model: model.summary.trainingCost)
        silhouettes[k] = evaluator.evaluate(fitted[k].transform(prepared))
    unpersist_rdds(features.sparkSession, keep=persisted_before)
    if not fitted:
        raise ValueError(f"only {rows} people to segment; need more than k_min={settings.k_min}")
    chosen = parsimonious_k(silhouettes, settings.silhouette_tolerance)
    return TrainedSegmentation(PipelineModel(stages=[*prepared_model.stages, fitted[chosen]]), silhouettes, rows)


def assign_clusters(model: PipelineModel, features: DataFrame) -> DataFrame:
    """person_id, cluster: every person scored with the saved model (no retraining)."""
    return model.transform(features).select("person_id", CLUSTER)


def _scaler(model: PipelineModel) -> StandardScalerModel:
    return next(stage for stage in model.stages if isinstance(stage, StandardScalerModel))


def centroids_in_original_units(model: PipelineModel, settings: SegmentSettings) -> list[dict[str, float]]:
    """Each KMeans centre un-scaled and un-logged back into the features' own units."""
    scaler = _scaler(model)
    mean, std = scaler.mean.toArray(), scaler.std.toArray()
    centroids = []
    for center in model.stages[-1].clusterCenters():
        raw = center * std + mean
        centroids.append({
            f: float(math.expm1(value) if f in settings.log_features else value)
            for f, value in zip(settings.features, raw)
        })
    return centroids


def _scaled_vector(model: PipelineModel, centroid: dict[str, float], settings: SegmentSettings) -> np.ndarray:
    scaler = _scaler(model)
    raw = np.array([math.log1p(centroid[f]) if f in settings.log_features else centroid[f]
                    for f in settings.features])
    std = np.where(scaler.std.toArray() == 0, 1.0, scaler.std.toArray())
    return (raw - scaler.mean.toArray()) / std


def distinguishing_features(model: PipelineModel, settings: SegmentSettings, top: int = 2) -> list[list[str]]:
    """Per cluster, the features whose standardised centre lies furthest from the average person, signed."""
    described = []
    for center in model.stages[-1].clusterCenters():
        order = np.argsort(-np.abs(center))[:top]
        described.append([f"{'high' if center[i] > 0 else 'low'} {settings.features[i]}" for i in order])
    return described


def segment_name(distinguishing: list[str]) -> str:
    words = []
    for item in distinguishing:
        direction, feature = item.split(" ", 1)
        words.append(FEATURE_WORDS.get((feature, 1 if direction == "high" else -1), item))
    return ", ".join(words).capitalize()


@dataclass(frozen=True)
class PreviousSegment:
    segment_id: int
    name: str
    centroid: dict[str, float]


def match_segments(model: PipelineModel, settings: SegmentSettings,
                   previous: list[PreviousSegment]) -> dict[int, PreviousSegment]:
    """cluster index -> the previous segment it continues, by minimum total centroid distance in the new model's
    scaled space; previous segments whose features no longer exist cannot be matched."""
    usable = [p for p in previous if all(f in p.centroid for f in settings.features)]
    if not usable:
        return {}
    centers = np.array(model.stages[-1].clusterCenters())
    before = np.array([_scaled_vector(model, p.centroid, settings) for p in usable])
    distances = np.linalg.norm(centers[:, None, :] - before[None, :, :], axis=2)
    clusters, matched = linear_sum_assignment(distances)
    return {int(c): usable[m] for c, m in zip(clusters, matched)}


SEGMENTS_SCHEMA = (
    "segment_id int, cluster int, name string, people long, centroid map<string,double>, "
    "distinguishing_features array<string>, model_path string, model_run_id string, as_of date"
)


def segment_rows(model: PipelineModel, settings: SegmentSettings, previous: list[PreviousSegment]) -> list[tuple]:
    """(segment_id, cluster, name, centroid, distinguishing_features) per cluster: id and name carried over from
    the matched previous segment, else the next unused id and a name from its distinguishing features (made
    unique by the next feature when two clusters would share a name)."""
    matches = match_segments(model, settings, previous)
    next_id = max((p.segment_id for p in previous), default=0) + 1
    centroids = centroids_in_original_units(model, settings)
    described = distinguishing_features(model, settings, top=len(settings.features))
    taken = {match.name for match in matches.values()}
    rows = []
    for cluster, centroid in enumerate(centroids):
        if cluster in matches:
            segment_id, name = matches[cluster].segment_id, matches[cluster].name
        else:
            segment_id, next_id = next_id, next_id + 1
            top = 2
            name = segment_name(described[cluster][:top])
            while name in taken and top < len(described[cluster]):
                top += 1
                name = segment_name(described[cluster][:top])
        taken.add(name)
        rows.append((segment_id, cluster, name, centroid, described[cluster][:3]))
    return rows


def segment_migrations(before: DataFrame, after: DataFrame) -> DataFrame:
    """from_segment_id, to_segment_id, people: how people moved between two assignments (person_id,
    segment_id); a person new to the profile comes from null, one no longer profiled goes to null."""
    moves = before.select("person_id", F.col("segment_id").alias("from_segment_id")).join(
        after.select("person_id", F.col("segment_id").alias("to_segment_id")), "person_id", "full_outer")
    return moves.groupBy("from_segment_id", "to_segment_id").agg(F.count(F.lit(1)).alias("people"))
