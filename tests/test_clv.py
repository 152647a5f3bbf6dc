"""CLV on CDNOW, the data set the BG/NBD and Gamma-Gamma parameters were published on.

The reference summary is computed here with plain pandas straight from the raw file, independently of lib.clv;
the scoring formulas are written out here again in their textbook form (lib.clv evaluates 2F1 transformed).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import time
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F
from scipy.special import hyp2f1
from typer.testing import CliRunner

from lib import io
from lib.cli import app
from lib.clv import (
    BgNbdFit,
    GammaGammaFit,
    clv_scores,
    clv_summary,
    expected_purchases,
    fit_bgnbd,
    fit_clv_models,
    fit_gamma_gamma,
)
from lib.datasets import cdnow
from lib.pipeline import run_pipeline, selected_jobs, upstream
from tests.conftest import make_config

CALIBRATION_END = dt.date(1997, 9, 30)
# Fader, Hardie & Lee (2005), "Counting your customers the easy way", and Fader & Hardie's Gamma-Gamma note.
PUBLISHED_BGNBD = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
PUBLISHED_BGNBD_LOG_LIKELIHOOD = -9582.4
PUBLISHED_GAMMA_GAMMA = {"p": 6.25, "q": 3.74, "gamma": 15.44}
REPEAT_CUSTOMERS_IN_CALIBRATION = 946


def raw_sample() -> pd.DataFrame:
    raw = pd.read_csv(cdnow.dataset_file("CDNOW_sample.txt"), sep=r"\s+", header=None, dtype=str,
                      names=["master_id", "sample_id", "yyyymmdd", "cds", "dollars"])
    raw["customer_id"] = "cdnow-" + raw["master_id"]
    raw["day"] = pd.to_datetime(raw["yyyymmdd"], format="%Y%m%d")
    raw["cents"] = [int(Decimal(d) * 100) for d in raw["dollars"]]
    return raw


def pandas_summary(raw: pd.DataFrame, as_of: dt.date) -> pd.DataFrame:
    end = pd.Timestamp(as_of)
    days = raw[raw["day"] <= end].groupby(["customer_id", "day"], as_index=False)["cents"].sum()
    per_customer = days.sort_values("day").groupby("customer_id")
    first, last = per_customer["day"].min(), per_customer["day"].max()
    frequency = per_customer.size() - 1
    repeat_cents = per_customer["cents"].sum() - per_customer["cents"].first()
    return pd.DataFrame({
        "frequency": frequency,
        "recency": (last - first).dt.days / 7,
        "T": (end - first).dt.days / 7,
        "monetary_value": [c / 100 / x if x else 0.0 for c, x in zip(repeat_cents, frequency)],
    })


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    return raw_sample()


@pytest.fixture(scope="module")
def reference(raw) -> pd.DataFrame:
    return pandas_summary(raw, CALIBRATION_END)


@pytest.fixture(scope="module")
def raw_orders(spark, raw):
    """The raw sample as orders, every transaction of the 18 months (after the calibration end too)."""
    rows = [(c, dt.datetime.combine(d.date(), dt.time(12)), Decimal(cents) / 100)
            for c, d, cents in zip(raw["customer_id"], raw["day"], raw["cents"])]
    return spark.createDataFrame(rows, "customer_id string, order_ts timestamp, total_amount decimal(12,2)")


def spark_summary_frame(summary) -> pd.DataFrame:
    rows = summary.collect()
    return pd.DataFrame([r.asDict() for r in rows]).set_index("customer_id")[["frequency", "recency", "T",
                                                                               "monetary_value"]]


def assert_reproduces_published(bgnbd: BgNbdFit, gamma_gamma: GammaGammaFit) -> dict[str, float]:
    deviations = {}
    for name, published in [*PUBLISHED_BGNBD.items(), *PUBLISHED_GAMMA_GAMMA.items()]:
        fitted = getattr(bgnbd if name in PUBLISHED_BGNBD else gamma_gamma, name)
        deviations[name] = 100 * (fitted - published) / published
    assert all(abs(d) < 1 for d in deviations.values()), deviations
    # Published to one decimal.
    assert abs(bgnbd.log_likelihood - PUBLISHED_BGNBD_LOG_LIKELIHOOD) <= 0.05, bgnbd.log_likelihood
    assert gamma_gamma.customers == REPEAT_CUSTOMERS_IN_CALIBRATION
    return deviations


def test_fits_on_the_cdnow_sample_summary_reproduce_the_published_parameters(reference):
    started = time.monotonic()
    bgnbd = fit_bgnbd(reference["frequency"], reference["recency"], reference["T"])
    gamma_gamma = fit_gamma_gamma(reference["frequency"], reference["monetary_value"])
    seconds = time.monotonic() - started
    deviations = assert_reproduces_published(bgnbd, gamma_gamma)
    assert bgnbd.customers == 2357
    print(f"\nfits in {seconds:.2f}s: {bgnbd}\n{gamma_gamma}\ndeviation from published, %: "
          + ", ".join(f"{k} {v:+.3f}" for k, v in deviations.items()))


def test_fits_are_deterministic(reference):
    args = reference["frequency"], reference["recency"], reference["T"]
    assert fit_bgnbd(*args) == fit_bgnbd(*args)


# 1997-02-15 falls inside the cohort's acquisition quarter: customers who first bought later must be absent.
@pytest.mark.parametrize("as_of, everyone_present", [(CALIBRATION_END, True), (dt.date(1997, 2, 15), False)])
def test_spark_summary_equals_the_plain_pandas_summary(raw_orders, raw, as_of, everyone_present):
    expected = pandas_summary(raw, as_of)
    actual = spark_summary_frame(clv_summary(raw_orders, as_of, customer_column="customer_id"))
    assert (len(expected) == raw["customer_id"].nunique()) == everyone_present
    pd.testing.assert_frame_equal(actual.sort_index(), expected.sort_index(), check_exact=True, check_dtype=False,
                                  check_names=False)


def test_spark_summary_matches_the_summary_shipped_with_lifetimes(raw_orders, raw):
    shipped = pd.read_csv(cdnow.dataset_file("cdnow_customers_summary.csv"))
    shipped["customer_id"] = shipped["ID"].map(dict(zip(raw["sample_id"].astype(int), raw["customer_id"])))
    actual = spark_summary_frame(clv_summary(raw_orders, CALIBRATION_END, customer_column="customer_id"))
    joined = shipped.set_index("customer_id").join(actual, rsuffix="_spark", how="outer")
    assert len(joined) == len(shipped) == 2357
    assert (joined["frequency"] == joined["frequency_spark"]).all()
    # Lifetimes' file rounds weeks to two decimals.
    for column in ("recency", "T"):
        assert (joined[column] - joined[f"{column}_spark"]).abs().max() <= 0.005 + 1e-9, column


def test_fit_on_a_spark_summary_samples_at_most_max_rows_deterministically(raw_orders, reference):
    summary = clv_summary(raw_orders, CALIBRATION_END, customer_column="customer_id")
    bgnbd, gamma_gamma = fit_clv_models(summary, customer_column="customer_id")
    assert bgnbd == fit_bgnbd(reference["frequency"], reference["recency"], reference["T"])
    assert gamma_gamma == fit_gamma_gamma(reference["frequency"], reference["monetary_value"])
    sampled = fit_clv_models(summary, customer_column="customer_id", max_rows=600)
    assert sampled[0].customers == 600 and sampled[0] != bgnbd
    assert sampled == fit_clv_models(summary, customer_column="customer_id", max_rows=600)


def textbook_p_alive(fit: BgNbdFit, x, t_x, T) -> float:
    if x == 0:
        return 1.0
    return 1 / (1 + fit.a / (fit.b + x - 1) * ((fit.alpha + T) / (fit.alpha + t_x)) ** (fit.r + x))


def textbook_expected_purchases(fit: BgNbdFit, t, x, t_x, T) -> float:
    r, alpha, a, b = fit.r, fit.alpha, fit.a, fit.b
    z = t / (alpha + T + t)
    with np.errstate(invalid="ignore"):
        bracket = 1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp2f1(r + x, b + x, a + b + x - 1, z)
    dropout = (a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x)) if x > 0 else 0.0
    return (a + b + x - 1) / (a - 1) * bracket / (1 + dropout)


@pytest.fixture(scope="module")
def published_models() -> tuple[BgNbdFit, GammaGammaFit]:
    return (BgNbdFit(**PUBLISHED_BGNBD, log_likelihood=PUBLISHED_BGNBD_LOG_LIKELIHOOD, customers=2357),
            GammaGammaFit(**PUBLISHED_GAMMA_GAMMA, log_likelihood=math.nan, customers=946))


@pytest.fixture(scope="module")
def scores(raw_orders, published_models):
    summary = clv_summary(raw_orders, CALIBRATION_END, customer_column="customer_id")
    return clv_scores(summary, *published_models, horizon_weeks=52).toPandas().set_index("customer_id")


def test_scores_match_the_closed_form_formulas(scores, published_models):
    bgnbd, gamma_gamma = published_models
    chosen = pd.concat([scores[scores["frequency"] == 0].head(2), scores[scores["frequency"] == 1].head(1),
                        scores[scores["frequency"] == 4].head(1), scores.nlargest(1, "frequency")])
    assert chosen["frequency"].nunique() == 4
    for _, row in chosen.iterrows():
        x, t_x, age, m = row["frequency"], row["recency"], row["T"], row["monetary_value"]
        purchases = textbook_expected_purchases(bgnbd, 52, x, t_x, age)
        spend = gamma_gamma.p * (gamma_gamma.gamma + x * m) / (gamma_gamma.p * x + gamma_gamma.q - 1)
        assert row["p_alive"] == pytest.approx(textbook_p_alive(bgnbd, x, t_x, age), rel=1e-9)
        assert row["expected_purchases"] == pytest.approx(purchases, rel=1e-9)
        assert row["expected_spend"] == pytest.approx(spend, rel=1e-12)
        assert row["clv"] == pytest.approx(purchases * spend, rel=1e-9)


def test_scores_are_sane_for_every_customer(scores, published_models):
    _, gamma_gamma = published_models
    assert len(scores) == 2357
    assert (scores["clv"] >= 0).all() and (scores["expected_purchases"] >= 0).all()
    assert scores["p_alive"].between(0, 1).all()
    one_timers = scores[scores["frequency"] == 0]
    assert (one_timers["p_alive"] == 1).all()
    assert np.allclose(one_timers["expected_spend"], gamma_gamma.population_mean_spend, rtol=1e-12)


def test_discounting_lowers_clv_and_none_leaves_purchases_times_spend(raw_orders, published_models, scores):
    summary = clv_summary(raw_orders, CALIBRATION_END, customer_column="customer_id")
    discounted = clv_scores(summary, *published_models, annual_discount_rate=0.1).toPandas().set_index(
        "customer_id").loc[scores.index]
    assert np.allclose(scores["clv"], scores["expected_purchases"] * scores["expected_spend"], rtol=1e-12)
    assert (discounted["clv"] < scores["clv"]).all()
    assert (discounted["clv"] > scores["clv"] / 1.1).all()


def test_a_spend_model_without_finite_mean_is_refused(raw_orders, published_models):
    summary = clv_summary(raw_orders, CALIBRATION_END, customer_column="customer_id")
    heavy_tailed = GammaGammaFit(p=6.0, q=0.9, gamma=15.0, log_likelihood=math.nan, customers=1)
    with pytest.raises(ValueError, match="no finite mean"):
        clv_scores(summary, published_models[0], heavy_tailed)


def test_expected_purchases_stay_finite_where_the_textbook_form_overflows(published_models):
    bgnbd, _ = published_models
    x = np.array([10, 100, 400, 1000, 5000])
    # Last purchase at the as-of date, so P(alive) ~ 1 and the expectation grows with x.
    purchases = expected_purchases(bgnbd, 52, x, recency=np.full(5, 78.0), T=np.full(5, 78.0))
    textbook = [textbook_expected_purchases(bgnbd, 52, n, 78.0, 78.0) for n in x]
    np.testing.assert_allclose(purchases[:4], textbook[:4], rtol=1e-9)
    assert math.isnan(textbook[4])  # a vanishing power times an overflowing 2F1
    assert purchases[4] / purchases[3] == pytest.approx(5, rel=0.01)


def test_cdnow_orders_are_priced_so_their_lines_add_up_to_the_total_exactly(tmp_path, raw):
    loaded = cdnow.load(tmp_path)
    orders = [json.loads(line) for path in sorted((tmp_path / "orders").iterdir()) for line in path.open()]
    assert loaded["orders"] == len(orders) == len(raw) and loaded["customers"] == raw["customer_id"].nunique()
    assert len({o["order_id"] for o in orders}) == len(orders)
    assert loaded["zero_amount_orders"] == (raw["cents"] == 0).sum() > 0
    for order in orders:
        lines = sum(Decimal(str(i["unit_price"])) * i["quantity"] for i in order["items"])
        assert lines == Decimal(str(order["total_amount"])), order
    assert sorted(o["total_amount"] for o in orders) == sorted(c / 100 for c in raw["cents"])


# Landing to the profile, where the fit is published, with the silver jobs of the sources cdnow lacks (events,
# campaigns). The gold jobs after the profile add minutes on 2,357 customers and check nothing about the fit.
CDNOW_JOBS = selected_jobs(upstream("gold_customer_profile"))


@pytest.mark.slow
def test_cdnow_loaded_by_the_cli_through_the_pipeline_reproduces_the_published_fit(spark, tmp_path, raw, reference):
    landing = tmp_path / "landing"
    loaded = CliRunner().invoke(app, ["datasets", "load", "cdnow", "--landing", str(landing)])
    assert loaded.exit_code == 0, loaded.output
    customers = raw["customer_id"].nunique()
    # The sample is the cohort that first bought in 1997 Q1, so nobody is missing as of the calibration end.
    assert raw.groupby("customer_id")["day"].min().max() < pd.Timestamp("1997-04-01")
    config = make_config(tmp_path, landing)
    config = dataclasses.replace(config, profiles=dataclasses.replace(config.profiles,
                                                                      as_of=CALIBRATION_END.isoformat()))
    runs = run_pipeline(spark, config, CDNOW_JOBS)
    print("\nseconds per job: " + ", ".join(f"{r.job} {r.seconds:.1f}" for r in runs))
    assert [r.status for r in runs] == ["succeeded"] * len(selected_jobs(CDNOW_JOBS)), [(r.job, r.error) for r in runs]
    tables = {t.table: t for run in runs for t in run.tables}
    assert [name for name, t in tables.items() if not t.balanced] == []
    for table, rows in [("silver.customers", customers), ("silver.products", 1), ("silver.orders", len(raw))]:
        assert (tables[table].rows_in, tables[table].published, tables[table].quarantined) == (rows, rows, 0), table
        assert not io.table_exists(spark, config, f"quarantine.{table.split('.')[1]}"), table
    for source in ("events", "campaigns"):
        assert (tables[f"silver.{source}"].rows_in, tables[f"silver.{source}"].details["no_landing_data"]) == (0, 1)
        assert io.read_table(spark, config, f"silver.{source}").count() == 0
    warnings = (io.read_table(spark, config, "ops.quality_results")
                .filter("NOT success AND expectation_type <> 'table_health'")
                .select("table_name", "rule").collect())
    assert warnings == []
    orders = io.read_table(spark, config, "silver.orders")
    summary = clv_summary(orders, CALIBRATION_END, customer_column="customer_id")
    pd.testing.assert_frame_equal(spark_summary_frame(summary).sort_index(), reference.sort_index(),
                                  check_exact=True, check_dtype=False, check_names=False)

    fitted = (io.read_table(spark, config, "ops.model_runs").filter(F.col("model") == "clv")
              .select("params", "metrics").collect())
    assert len(fitted) == 1 and fitted[0]["params"]["as_of"] == CALIBRATION_END.isoformat()
    metrics = fitted[0]["metrics"]
    deviations = {name: 100 * (metrics[name] - published) / published
                  for name, published in [*PUBLISHED_BGNBD.items(), *PUBLISHED_GAMMA_GAMMA.items()]}
    print("deviation from published, %: " + ", ".join(f"{k} {v:+.3f}" for k, v in deviations.items()))
    assert all(abs(d) < 1 for d in deviations.values()), deviations
    assert metrics["gamma_gamma_customers"] == REPEAT_CUSTOMERS_IN_CALIBRATION

    customer_ids = (io.read_table(spark, config, "silver.identity_map").filter("identifier_type = 'customer_id'")
                    .select(F.col("identifier").alias("customer_id"), "person_id"))
    profile = io.read_table(spark, config, "gold.customer_profile").join(customer_ids, "person_id", "left")
    per_customer = profile.groupBy("customer_id").agg(F.count(F.lit(1)).alias("rows"), F.min("clv").alias("clv"))
    checked = per_customer.agg(F.count(F.lit(1)).alias("customers"), F.max("rows").alias("most_rows"),
                               F.min("clv").alias("lowest_clv"), F.count("customer_id").alias("known")).first()
    assert (checked["customers"], checked["known"], checked["most_rows"]) == (customers, customers, 1)
    assert checked["lowest_clv"] >= 0
    assert set(raw["customer_id"]) == {row[0] for row in per_customer.select("customer_id").collect()}
