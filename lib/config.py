"""The one configuration object: defaults, then a TOML file, then ``DMP_*`` environment variables.

A file is read from ``--config``, else ``$DMP_CONFIG``, else ``./dmp.toml`` when it exists. Every field can be
overridden by an environment variable named after its path: ``DMP_LAKEHOUSE_ROOT``, ``DMP_SPARK__MASTER``,
``DMP_GATES__MAX_ERROR_RATIO`` (sections joined by a double underscore).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path

ENV_PREFIX = "DMP_"
DEFAULT_FILE = Path("dmp.toml")


class ConfigError(ValueError):
    """A configuration value or file that cannot be used; the message says which and how to fix it."""


@dataclass(frozen=True)
class SparkSettings:
    master: str = "local[*]"
    app_name: str = "dmp"
    # The fewest shuffle partitions, and the number streaming micro-batches use. None sizes them to the machine
    # (2 tasks per core), which suits small local data far better than Spark's 200.
    shuffle_partitions: int | None = None
    # A job's shuffles start with a partition per this many bytes of the Delta tables it reads (adaptive execution
    # merges the small ones): shuffles grow with the data instead of spilling into a fixed number of partitions.
    input_bytes_per_shuffle_partition: int = 8 * 1024 * 1024
    driver_memory: str = "4g"
    # Compiled query code kept for reuse (Spark's default: 100). A pipeline runs thousands of small queries, most of
    # them again on every run; compiling them again was a quarter of the driver's CPU on small data.
    codegen_cache_entries: int = 4000
    log_level: str = "ERROR"
    ui_enabled: bool = False
    # Delta's auto compaction: after a write leaves a table with many small files, the writer compacts them
    # (an OPTIMIZE commit, no data change). Off by default: it looks at the table's files after every commit (the
    # suite makes about a hundred per run), and `dmp optimize` does the same work on a schedule.
    auto_compact: bool = False


@dataclass(frozen=True)
class GateSettings:
    # A gate fails its job when more than this share of the rows it checks breaks an `error` expectation.
    max_error_ratio: float = 0.05
    # Per-table overrides, e.g. {"silver.orders" = 0.01} in the file or DMP_GATES__TABLE_MAX_ERROR_RATIO as JSON.
    table_max_error_ratio: dict[str, float] = field(default_factory=dict)
    # Recorded as warnings after each silver publish: the newest record's age and the row-count change per run.
    freshness_max_age_hours: float = 36.0
    max_row_count_change: float = 0.5

    def max_ratio_for(self, table: str) -> float:
        return self.table_max_error_ratio.get(table, self.max_error_ratio)


@dataclass(frozen=True)
class PublishGuardSettings:
    """A whole recomputed gold table or a model is not published when it is clearly worse than what is published
    now: set ``enabled = false`` (DMP_PUBLISH_GUARD__ENABLED=false) for one run to publish a change on purpose."""

    enabled: bool = True
    # Refused when the table would lose more than this share of its rows.
    max_row_drop: float = 0.5
    # Refused when any column's share of nulls would grow by more than this (0.25: from 10% to over 35%).
    max_null_rate_increase: float = 0.25
    # Refused when a model's quality metric (NDCG@k, silhouette) falls by more than this share of the last published
    # run's value.
    max_metric_drop: float = 0.25


@dataclass(frozen=True)
class ConcurrencySettings:
    # A pipeline run waits this long for another run on the same lakehouse to finish, then fails saying which.
    lock_wait_seconds: float = 600.0
    # A Delta commit that conflicts with a concurrent writer's is tried again on the new version, this many times
    # in all, before the job fails.
    conflict_attempts: int = 4


@dataclass(frozen=True)
class EventSettings:
    session_gap_minutes: int = 30
    # Late events: silver re-reads this many hours of already published events around a batch, so an event that
    # arrives late still joins its session.
    late_lookback_hours: int = 48
    bot_user_agent_pattern: str = r"(?i)(bot|crawler|spider|python-requests|curl/|headless|scrapy)"
    bot_max_events_per_minute: int = 60


@dataclass(frozen=True)
class IdentitySettings:
    # Identifier values that never link anyone (placeholders, test ids).
    blocked_values: tuple[str, ...] = ("", "0", "00000000-0000-0000-0000-000000000000", "anonymous", "unknown",
                                       "null", "undefined", "test", "guest")
    # An identifier linked to more customers than this is shared (a kiosk cookie, a family email): it is cut
    # out of the graph and reported rather than allowed to merge strangers.
    max_customers_per_identifier: int = 5
    max_iterations: int = 30


@dataclass(frozen=True)
class ProfileSettings:
    # The day profiles are computed "as of" (ISO date, end of that day); empty = the newest day with orders or
    # events in silver, so a replay of old data is not measured from today.
    as_of: str | None = None
    windows_days: tuple[int, ...] = (7, 30, 90)
    # Lifecycle rules (docs/ARCHITECTURE.md, "Customer profiles"): first purchase within new_days is new; last
    # purchase within active_days is active (reactivated after a gap of churn_days or more); within churn_days
    # at_risk; older churned.
    new_days: int = 30
    active_days: int = 90
    churn_days: int = 180
    # Lifetime value (BG/NBD + Gamma-Gamma): the horizon, an optional annual discount rate, the most customers the
    # maximum-likelihood fit samples (scoring covers everyone), and the fewest repeat buyers worth fitting on.
    clv_horizon_weeks: float = 52.0
    clv_annual_discount_rate: float = 0.0
    clv_max_training_rows: int = 500_000
    clv_min_repeat_customers: int = 20


@dataclass(frozen=True)
class SegmentSettings:
    # Behaviour features KMeans clusters on; log_features are log1p-transformed first (money and counts are
    # heavily skewed) and everything is standardised.
    features: tuple[str, ...] = ("orders_per_week", "sessions_per_week", "price_position",
                                 "purchase_recency_share", "active_weeks")
    log_features: tuple[str, ...] = ("orders_per_week", "sessions_per_week", "active_weeks")
    # k is chosen by silhouette over this range: the smallest k whose silhouette is within silhouette_tolerance of
    # the best, since a split that barely raises the silhouette is noise, not a segment. A fixed seed keeps
    # retrains reproducible.
    k_min: int = 3
    k_max: int = 10
    silhouette_tolerance: float = 0.02
    seed: int = 42
    # KMeans fits per k, from seeds seed, seed + 1, ...; the one with the lowest within-cluster cost is kept.
    # Spark's k-means|| start often ends in a poor local optimum: at M, k=4 from one seed had silhouette 0.35,
    # from another 0.51, enough to change the k chosen. On the 7 planted archetypes of the tests, 1 fit per k
    # chose 7 or 9 segments by seed, 3 fits 8 or 7, 5 fits 7 from both seeds.
    restarts: int = 5
    # Training uses at most this many people (a seeded sample); scoring always covers everyone.
    max_training_rows: int = 200_000
    # False: score with the saved model (train only when there is none); true: retrain and match new clusters
    # to the previous segments so their ids and names persist.
    retrain: bool = False

    def __post_init__(self) -> None:
        if self.restarts < 1:
            raise ConfigError(f"segments.restarts = {self.restarts}; use at least 1 KMeans fit per k")


@dataclass(frozen=True)
class PatternSettings:
    # Frequent itemsets: a share of all baskets; FPGrowth turns it into the count ceil(min_support * baskets).
    # min_count, when set, is that count directly and min_support is ignored.
    min_support: float = 0.01
    min_count: int | None = None
    min_confidence: float = 0.3
    max_antecedent_size: int = 3
    # A basket with more distinct items than this (a wholesale or office order) keeps its most frequent items:
    # one long basket holds 2^n itemsets and can dominate FPGrowth's run time.
    max_basket_size: int = 50
    # "product" or "category": what an item of a basket is.
    level: str = "product"
    # When the estimated number of frequent itemsets exceeds this, the minimum count is raised until it fits
    # (adapt_min_support = true) or the job refuses to run (false).
    max_itemsets: int = 100_000
    adapt_min_support: bool = True


# Cold-start fallbacks, for people ALS cannot rank: their segment's popular products then everyone's, or everyone's
# only (on a tie in the hold-out the first is kept); "auto" chooses between them on the hold-out (lib.recommend).
COLD_START_SEGMENT, COLD_START_POPULAR, COLD_START_AUTO = "segment", "popular", "auto"
COLD_START_FALLBACKS = (COLD_START_SEGMENT, COLD_START_POPULAR)
COLD_START_FALLBACK_SETTINGS = (COLD_START_AUTO, *COLD_START_FALLBACKS)


@dataclass(frozen=True)
class RecommendationSettings:
    top_n: int = 10
    # Implicit feedback per interaction: event types of silver.events, and "purchase" per order line.
    weights: dict[str, float] = field(default_factory=lambda: {"product_view": 1.0, "add_to_cart": 3.0,
                                                               "purchase": 5.0})
    # An interaction counts half as much after this many days (before the as-of day, profiles.as_of).
    half_life_days: float = 30.0
    # The last days before the as-of day are held out: models fitted on the days before are judged on what
    # people bought in them, and the best parameters of the grid are refitted on everything.
    holdout_days: int = 7
    ranks: tuple[int, ...] = (10, 20)
    reg_params: tuple[float, ...] = (0.1,)
    alphas: tuple[float, ...] = (1.0, 10.0)
    max_iter: int = 10
    checkpoint_interval: int = 5
    seed: int = 42
    # The hold-out judges the parameters and fallbacks on at most this many of the people with held-out purchases
    # (a sample fixed by the seed). At M (99,449 such people) 20,000 gave every grid point's NDCG within 0.002 of
    # all of them, the same order, in 40 % of the time (bench/README.md).
    max_judged_people: int = 20_000
    # Neighbours per product in gold.similar_products.
    similar_k: int = 10
    # Last places of each list kept for products nobody has interacted with yet, from the person's favourite
    # category (ALS and popularity cannot rank them; without a slot a new product is never shown).
    new_product_slots: int = 1
    # Lists for people ALS cannot rank (no interactions before the as-of day, or too few candidates to fill N):
    # "segment" gives their KMeans segment's popular products, then everyone's; "popular" everyone's only; "auto"
    # (default) takes whichever has the better NDCG@top_n for the judged cold-start people of the hold-out (ties:
    # segment). Chosen on the hold-out, not fixed, because whether a segment says anything about taste depends on
    # the data: on MovieLens the segments (built from customer features, not tastes) did worse than everyone's
    # popular films (bench/README.md).
    cold_start_fallback: str = "auto"

    def __post_init__(self) -> None:
        if self.cold_start_fallback not in COLD_START_FALLBACK_SETTINGS:
            raise ConfigError(f"recommendations.cold_start_fallback = {self.cold_start_fallback!r}; use one of "
                              f"{', '.join(COLD_START_FALLBACK_SETTINGS)}")
        if self.max_judged_people < 1:
            raise ConfigError(f"recommendations.max_judged_people = {self.max_judged_people}; use a number of "
                              "people of at least 1 (a large one judges everyone)")


@dataclass(frozen=True)
class ScheduleSettings:
    # Jobs that train models (Job.trains_models) run at most once per this many days of wall-clock time, however
    # often the pipeline runs; the jobs around them keep their tables fresh on every run. 0: whenever their input
    # changed. `dmp pipeline run --force` runs them anyway.
    model_every_days: float = 0.0


@dataclass(frozen=True)
class AudienceSettings:
    # A YAML file or a folder of *.yaml audience definitions; empty: the project's audiences/ folder.
    definitions: str = ""


@dataclass(frozen=True)
class PrivacySettings:
    # Erased rows stay reachable by Delta time travel until a VACUUM at least this long after their deletion makes
    # them unrecoverable; every privacy run vacuums the tables of requests whose retention has passed. Below Delta's
    # own 168-hour safety minimum, a silver job that is further behind than this on bronze loses its next batch.
    vacuum_retention_hours: float = 168.0


@dataclass(frozen=True)
class CampaignSettings:
    # An order credits the buyer's campaign touches of up to this many days before it (last-touch and linear).
    attribution_lookback_days: int = 30
    # An A/B test's exposed person converts with a purchase from the campaign within this many days of their
    # first exposure.
    conversion_window_days: int = 7
    # Two-sided level of the A/B z-test; the uplift's confidence interval covers 1 - this.
    significance_level: float = 0.05
    # A split whose chi-square p-value against the planned shares is below this is flagged as a sample-ratio
    # mismatch: strict, because a real mismatch means broken assignment and the read-out is refreshed every run.
    srm_alpha: float = 0.001


@dataclass(frozen=True)
class Config:
    landing_root: str = "data/landing"
    lakehouse_root: str = "data/lakehouse"
    # Name of the environment variable (or secret scope key on Databricks) that holds the PII hashing salt.
    salt_secret_name: str = "DMP_PII_SALT"
    spark: SparkSettings = field(default_factory=SparkSettings)
    gates: GateSettings = field(default_factory=GateSettings)
    publish_guard: PublishGuardSettings = field(default_factory=PublishGuardSettings)
    concurrency: ConcurrencySettings = field(default_factory=ConcurrencySettings)
    events: EventSettings = field(default_factory=EventSettings)
    identity: IdentitySettings = field(default_factory=IdentitySettings)
    profiles: ProfileSettings = field(default_factory=ProfileSettings)
    segments: SegmentSettings = field(default_factory=SegmentSettings)
    patterns: PatternSettings = field(default_factory=PatternSettings)
    recommendations: RecommendationSettings = field(default_factory=RecommendationSettings)
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    audiences: AudienceSettings = field(default_factory=AudienceSettings)
    campaigns: CampaignSettings = field(default_factory=CampaignSettings)
    privacy: PrivacySettings = field(default_factory=PrivacySettings)

    def table_path(self, table: str) -> str:
        """``silver.orders`` -> ``<lakehouse_root>/silver/orders``."""
        layer, _, name = table.partition(".")
        if not name:
            raise ConfigError(f"table name {table!r} must be <layer>.<name>, e.g. silver.orders")
        return f"{self.lakehouse_root.rstrip('/')}/{layer}/{name}"

    def checkpoint_path(self, stream: str) -> str:
        return f"{self.lakehouse_root.rstrip('/')}/_checkpoints/{stream}"

    def model_path(self, model: str, run_id: str) -> str:
        """Saved models are versioned by the run that trained them; tables record which one they used."""
        return f"{self.lakehouse_root.rstrip('/')}/_models/{model}/{run_id}"


def load_config(path: str | Path | None = None, environ: typing.Mapping[str, str] | None = None) -> Config:
    environ = os.environ if environ is None else environ
    values: dict = {}
    file = Path(path) if path else Path(environ[f"{ENV_PREFIX}CONFIG"]) if f"{ENV_PREFIX}CONFIG" in environ else None
    if file is None and DEFAULT_FILE.exists():
        file = DEFAULT_FILE
    if file is not None:
        if not file.exists():
            raise ConfigError(f"config file {file} does not exist; pass an existing TOML file or unset DMP_CONFIG")
        with file.open("rb") as handle:
            values = tomllib.load(handle)
    return _build(Config, values, environ, ENV_PREFIX)


def _build(cls, values: dict, environ, prefix: str):
    unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ConfigError(f"unknown config key(s) {sorted(unknown)} for {prefix.rstrip('_').lower() or 'config'}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        env_name = f"{prefix}{f.name.upper()}"
        if dataclasses.is_dataclass(hint):
            kwargs[f.name] = _build(hint, values.get(f.name, {}), environ, f"{env_name}__")
        elif env_name in environ:
            kwargs[f.name] = _parse(environ[env_name], hint, env_name)
        elif f.name in values:
            value = values[f.name]
            kwargs[f.name] = tuple(value) if typing.get_origin(hint) is tuple else value
    return cls(**kwargs)


def _parse(text: str, hint, name: str):
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        return tuple(_parse(part.strip(), item, name) for part in text.split(",") if part.strip())
    # A dict's type arguments are its key and value types, not alternatives: parse it before the scalar unions.
    base = {dict} if typing.get_origin(hint) is dict else {t for t in typing.get_args(hint)
                                                         if t is not type(None)} or {hint}
    try:
        if bool in base:
            if text.lower() not in {"true", "false", "1", "0", "yes", "no"}:
                raise ValueError(text)
            return text.lower() in {"true", "1", "yes"}
        if int in base:
            return None if text == "" else int(text)
        if float in base:
            return float(text)
        if typing.get_origin(hint) is dict:
            import json

            return {str(k): float(v) for k, v in json.loads(text).items()}
    except (ValueError, AttributeError) as error:
        raise ConfigError(f"environment variable {name}={text!r} is not a valid {hint}") from error
    return text
