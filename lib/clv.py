"""Customer lifetime value: the BG/NBD purchase model and the Gamma-Gamma spend model, fitted and scored.

The customer summary follows Fader, Hardie & Lee (2005), "Counting your customers the easy way": purchases on the
same day are one purchase; ``frequency`` (x) is the number of distinct purchase days minus one, ``recency`` (t_x)
the weeks from the first to the last purchase day, ``T`` the weeks from the first purchase day to the as-of date,
and ``monetary_value`` the mean spend of the repeat purchase days (0 for a customer without repeats). Orders after
the as-of date are ignored.

The models are fitted by maximum likelihood on log-parameters (L-BFGS-B from a fixed start, so deterministic) on
the driver from at most ``max_rows`` customers; scoring runs in Spark for every customer. The 2F1 term of the
BG/NBD conditional expectation is evaluated after Euler's transformation, which keeps its parameters bounded for
customers with many purchases (the textbook form multiplies a vanishing power by an overflowing series).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from scipy.optimize import minimize
from scipy.special import betaln, gammaln, hyp2f1

WEEK_DAYS = 7.0
WEEKS_PER_YEAR = 365.25 / 7
WEEKS_PER_MONTH = WEEKS_PER_YEAR / 12
SUMMARY_COLUMNS = ["frequency", "recency", "T", "monetary_value"]


@dataclass(frozen=True)
class BgNbdFit:
    """BG/NBD: purchases Poisson(lambda) while alive, lambda ~ Gamma(r, alpha); after each purchase the customer
    drops out with probability p ~ Beta(a, b). Time unit: weeks."""

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float
    customers: int


@dataclass(frozen=True)
class GammaGammaFit:
    """Gamma-Gamma: a customer's mean spend per purchase ~ Gamma(p, nu), nu ~ Gamma(q, gamma)."""

    p: float
    q: float
    gamma: float
    log_likelihood: float
    customers: int

    @property
    def population_mean_spend(self) -> float:
        return self.p * self.gamma / (self.q - 1)


def clv_summary(orders: DataFrame, as_of: dt.date | str, customer_column: str = "person_id",
                ts_column: str = "order_ts", amount_column: str = "total_amount") -> DataFrame:
    """One row per customer with a purchase on or before ``as_of``: frequency, recency, T, monetary_value."""
    as_of_date = F.to_date(F.lit(str(as_of)))
    purchase_days = (
        orders.withColumn("_day", F.to_date(ts_column))
        .filter(F.col("_day") <= as_of_date)
        .groupBy(customer_column, "_day")
        .agg(F.sum(amount_column).alias("_spend"))
    )
    first_day = Window.partitionBy(customer_column)
    customers = (
        purchase_days.withColumn("_first_day", F.min("_day").over(first_day))
        .groupBy(customer_column, "_first_day")
        .agg(
            F.count(F.lit(1)).alias("_days"),
            F.max("_day").alias("_last_day"),
            F.sum("_spend").alias("_total"),
            F.sum(F.when(F.col("_day") == F.col("_first_day"), F.col("_spend"))).alias("_first_spend"),
        )
    )
    frequency = F.col("_days") - 1
    # The difference of exact decimals is cast once, so the mean is the correctly rounded value of the true one.
    repeat_spend = (F.col("_total") - F.col("_first_spend")).cast("double")
    return customers.select(
        customer_column,
        frequency.cast("int").alias("frequency"),
        (F.datediff("_last_day", "_first_day") / WEEK_DAYS).alias("recency"),
        (F.datediff(as_of_date, "_first_day") / WEEK_DAYS).alias("T"),
        F.when(frequency > 0, repeat_spend / frequency).otherwise(F.lit(0.0)).alias("monetary_value"),
    )


# --- likelihoods and fits (numpy, on the driver) ---------------------------------------------------------

def bgnbd_log_likelihood(r: float, alpha: float, a: float, b: float, frequency, recency, T) -> np.ndarray:
    """Each customer's BG/NBD log-likelihood (Fader, Hardie & Lee 2005, eq. 3, in logs)."""
    x, t_x, age = (np.asarray(v, dtype=float) for v in (frequency, recency, T))
    common = gammaln(r + x) - gammaln(r) + r * math.log(alpha) + betaln(a, b + x) - betaln(a, b)
    still_alive = -(r + x) * np.log(alpha + age)
    repeat = x > 0
    # Evaluated for every customer, so the non-repeaters' term is given a harmless base before np.where drops it.
    dropped_after_last = np.where(
        repeat, math.log(a) - np.log(np.where(repeat, b + x - 1, 1.0)) - (r + x) * np.log(alpha + t_x), -np.inf
    )
    return common + np.logaddexp(still_alive, dropped_after_last)


def gamma_gamma_log_likelihood(p: float, q: float, gamma: float, frequency, monetary_value) -> np.ndarray:
    """Each repeat customer's Gamma-Gamma log-likelihood of its mean spend over ``frequency`` purchases."""
    x, m = np.asarray(frequency, dtype=float), np.asarray(monetary_value, dtype=float)
    return (gammaln(p * x + q) - gammaln(p * x) - gammaln(q) + q * math.log(gamma) + (p * x - 1) * np.log(m)
            + p * x * np.log(x) - (p * x + q) * np.log(gamma + x * m))


def _maximise(log_likelihood, parameters: int) -> tuple[np.ndarray, float]:
    # Bounded log-parameters keep every parameter in [2e-9, 5e8]: data the model fits badly then ends at a bound
    # (and is reported) instead of driving a parameter to 0 and the likelihood to a math error.
    result = minimize(lambda log_params: -log_likelihood(*np.exp(log_params)), np.zeros(parameters),
                      method="L-BFGS-B", bounds=[(-20.0, 20.0)] * parameters)
    if not result.success:
        raise RuntimeError(f"maximum-likelihood fit did not converge: {result.message}")
    return np.exp(result.x), -float(result.fun)


def fit_bgnbd(frequency, recency, T) -> BgNbdFit:
    """Maximum-likelihood BG/NBD parameters for customers given as arrays of frequency, recency and T (weeks)."""
    x = np.asarray(frequency, dtype=float)
    if x.size == 0:
        raise ValueError("fit_bgnbd needs at least one customer")
    t_x, age = np.asarray(recency, dtype=float), np.asarray(T, dtype=float)
    # Summing in one canonical order makes the fit a function of the set of customers, not of their order.
    order = np.lexsort((age, t_x, x))
    x, t_x, age = x[order], t_x[order], age[order]
    (r, alpha, a, b), log_likelihood = _maximise(
        lambda *params: bgnbd_log_likelihood(*params, x, t_x, age).sum(), 4
    )
    return BgNbdFit(float(r), float(alpha), float(a), float(b), log_likelihood, int(x.size))


def fit_gamma_gamma(frequency, monetary_value) -> GammaGammaFit:
    """Maximum-likelihood Gamma-Gamma parameters from the customers with repeat purchases of positive mean spend.

    Customers without repeats carry no spend information; a repeat mean of 0 (free orders) has zero density.
    """
    x, m = np.asarray(frequency, dtype=float), np.asarray(monetary_value, dtype=float)
    usable = (x > 0) & (m > 0)
    if not usable.any():
        raise ValueError("fit_gamma_gamma needs at least one customer with repeat purchases of positive spend")
    order = np.lexsort((m[usable], x[usable]))
    x, m = x[usable][order], m[usable][order]
    (p, q, gamma), log_likelihood = _maximise(lambda *params: gamma_gamma_log_likelihood(*params, x, m).sum(), 3)
    return GammaGammaFit(float(p), float(q), float(gamma), log_likelihood, int(x.size))


def fit_clv_models(summary: DataFrame, customer_column: str = "person_id",
                   max_rows: int = 500_000) -> tuple[BgNbdFit, GammaGammaFit]:
    """Fit both models on a ``clv_summary``, collecting the four summary numbers of at most ``max_rows`` customers.

    Larger populations are sampled deterministically: the customers with the smallest hash of their id.
    """
    sample = (
        summary.orderBy(F.xxhash64(customer_column), customer_column)
        .limit(max_rows)
        .select(*SUMMARY_COLUMNS)
        .collect()
    )
    x, t_x, age, m = np.array(sample, dtype=float).reshape(-1, len(SUMMARY_COLUMNS)).T
    return fit_bgnbd(x, t_x, age), fit_gamma_gamma(x, m)


# --- scoring ---------------------------------------------------------------------------------------------

def probability_alive(fit: BgNbdFit, frequency, recency, T) -> np.ndarray:
    """P(still alive | x, t_x, T); 1 for customers without repeat purchases (BG/NBD drops out only after one)."""
    x, t_x, age = (np.asarray(v, dtype=float) for v in (frequency, recency, T))
    repeat = x > 0
    log_odds_dead = np.where(
        repeat,
        math.log(fit.a) - np.log(np.where(repeat, fit.b + x - 1, 1.0))
        + (fit.r + x) * np.log((fit.alpha + age) / (fit.alpha + t_x)),
        -np.inf,
    )
    return np.exp(-np.logaddexp(0.0, log_odds_dead))


def expected_purchases(fit: BgNbdFit, horizon_weeks, frequency, recency, T) -> np.ndarray:
    """E[purchases in (T, T + horizon] | x, t_x, T] (Fader, Hardie & Lee 2005, eq. 10)."""
    x, age = np.asarray(frequency, dtype=float), np.asarray(T, dtype=float)
    r, alpha, a, b = fit.r, fit.alpha, fit.a, fit.b
    z = horizon_weeks / (alpha + age + horizon_weeks)
    # ((alpha+T)/(alpha+T+t))^(r+x) 2F1(r+x, b+x; a+b+x-1; z) after Euler's transformation.
    decay = (1 - z) ** (a - 1) * hyp2f1(a + b - 1 - r, a - 1, a + b + x - 1, z)
    return (a + b + x - 1) / (a - 1) * (1 - decay) * probability_alive(fit, x, recency, age)


def expected_spend(fit: GammaGammaFit, frequency, monetary_value):
    """E[mean spend per purchase | x, m_x]: a credibility-weighted mix of the population mean and the customer's
    own mean; customers without repeats get the population mean. Works on numpy arrays and Spark Columns."""
    weight = fit.p * frequency + fit.q - 1
    return fit.p * (fit.gamma + frequency * monetary_value) / weight


def clv_scores(summary: DataFrame, bgnbd: BgNbdFit, gamma_gamma: GammaGammaFit, horizon_weeks: float = 52.0,
               annual_discount_rate: float = 0.0) -> DataFrame:
    """``summary`` + p_alive, expected_purchases (over the horizon), expected_spend and clv, for every customer.

    clv = sum over monthly steps of the horizon of (expected purchases in the step) x expected_spend, each step
    discounted by (1 + annual_discount_rate) ^ (years to the step's end). Undiscounted (rate 0, the default) this
    is expected_purchases x expected_spend.
    """
    if gamma_gamma.q <= 1:
        raise ValueError(f"the spend model has no finite mean (q = {gamma_gamma.q:.3f} <= 1); CLV is undefined")
    steps = max(1, round(horizon_weeks / WEEKS_PER_MONTH))
    step_ends = [horizon_weeks * (k + 1) / steps for k in range(steps)]
    discounts = [(1 + annual_discount_rate) ** -(end / WEEKS_PER_YEAR) for end in step_ends]
    horizons, weights = np.array(step_ends), np.array(discounts)

    # One Arrow batch at a time, vectorised over customers (columns) and the horizon's steps (rows).
    @F.pandas_udf("p_alive double, expected_purchases double, discounted_purchases double")
    def purchases(frequency: pd.Series, recency: pd.Series, age: pd.Series) -> pd.DataFrame:
        x, t_x, t = (column.to_numpy(dtype=float) for column in (frequency, recency, age))
        cumulative = expected_purchases(bgnbd, horizons[:, None], x, t_x, t)
        return pd.DataFrame({"p_alive": probability_alive(bgnbd, x, t_x, t), "expected_purchases": cumulative[-1],
                             "discounted_purchases": weights @ np.diff(cumulative, axis=0, prepend=0.0)})

    scored = summary.withColumn("_purchases", purchases("frequency", "recency", "T"))
    spend = expected_spend(gamma_gamma, F.col("frequency"), F.col("monetary_value"))
    return (
        scored.withColumn("p_alive", F.col("_purchases.p_alive"))
        .withColumn("expected_purchases", F.col("_purchases.expected_purchases"))
        .withColumn("expected_spend", spend)
        .withColumn("clv", F.col("_purchases.discounted_purchases") * spend)
        .drop("_purchases")
    )
