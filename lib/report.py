"""``dmp report``: one self-contained static HTML page a marketer can open without a server or the internet.

Every number comes from a gold or ops table as it stands (aggregated in Spark, small results collected); charts
are Plotly figures whose library is inlined once in the page. Headline numbers sit in elements with stable ids
(``kpi-<key>``) and their raw value in ``data-value``, so tests and scrapers read what the page shows.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lib import io
from lib.config import Config
from lib.profiles import LIFECYCLE_STAGES
from lib.quarantine import quarantine_summaries
from lib.runner import JOB_RUNS, MODEL_RUNS

CAMPAIGN_JOB = "gold_campaign_insight"
# Columns the campaign tables are expected to have; a table that lacks them is shown as a plain table instead.
FUNNEL_STAGES = {"sessions": "Sessions", "product_view_sessions": "Product views",
                 "add_to_cart_sessions": "Add to cart", "purchase_sessions": "Purchases"}
# gold.campaign_performance: ROI under each attribution model.
CAMPAIGN_ROI = {"roi_last_touch": "last touch", "roi_linear": "linear"}
AB_ARMS = ("campaign_id", "variant", "conversion_rate")
RECOMMENDATION_METRICS = {"precision_at_k": "precision@k", "recall_at_k": "recall@k", "ndcg_at_k": "NDCG@k",
                          "map": "MAP", "coverage": "catalogue coverage"}
PALETTE = ["#2563eb", "#f97316", "#10b981", "#a855f7", "#ef4444", "#eab308", "#06b6d4", "#ec4899", "#64748b",
           "#84cc16"]
TABLE_ROWS = 15


@dataclass(frozen=True)
class Headline:
    key: str  # the element's id is kpi-<key>
    label: str
    value: float | int | str
    shown: str
    source: str  # the table (and column) the value is read from


@dataclass(frozen=True)
class Chart:
    key: str  # the element's id is chart-<key>
    figure: go.Figure


@dataclass
class Section:
    key: str
    title: str
    intro: str
    charts: list[Chart] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)  # ready HTML
    note: str | None = None  # shown instead of content that is not there (yet)


@dataclass(frozen=True)
class Report:
    lakehouse: str
    generated_at: dt.datetime
    headlines: list[Headline]
    sections: list[Section]


@dataclass(frozen=True)
class WrittenReport:
    report: Report
    path: Path
    data_docs: Path | None


def write_report(spark: SparkSession, config: Config, out: Path, data_docs: bool = True,
                 docs_folder: Path | None = None) -> WrittenReport:
    """Build the Data Docs site in ``docs_folder`` (default ``<lakehouse>/_data_docs``, or ``data_docs`` beside
    ``out`` for a lakehouse in object storage; none when ``data_docs`` is false) and write the report to ``out``,
    linking it."""
    from lib.data_docs import build_data_docs, local_lakehouse, site_folder

    docs_folder = docs_folder or (site_folder(config) if local_lakehouse(config) else out.parent / "data_docs")
    docs_index = build_data_docs(spark, config, docs_folder).index if data_docs else None
    report = build_report(spark, config)
    out.parent.mkdir(parents=True, exist_ok=True)
    docs_href = Path(os.path.relpath(docs_index.resolve(), out.parent.resolve())).as_posix() if docs_index else None
    out.write_text(render_html(report, docs_href), encoding="utf-8")
    return WrittenReport(report, out, docs_index)


def build_report(spark: SparkSession, config: Config) -> Report:
    """Read every table the report shows; sections whose tables are missing say which job builds them."""
    tables = Tables(spark, config)
    headlines: list[Headline] = []
    sections = [builder(tables, headlines) for builder in SECTIONS]
    return Report(config.lakehouse_root, dt.datetime.now(dt.timezone.utc), headlines, sections)


class Tables:
    """The tables the sections read, each looked up once; missing tables are None."""

    def __init__(self, spark: SparkSession, config: Config):
        self.spark, self.config = spark, config
        self._tables: dict[str, DataFrame | None] = {}
        self._profile_counts: list | None = None

    def get(self, table: str) -> DataFrame | None:
        if table not in self._tables:
            exists = io.table_exists(self.spark, self.config, table)
            self._tables[table] = io.read_table(self.spark, self.config, table) if exists else None
        return self._tables[table]

    def profile_counts(self) -> list:
        """People of gold.customer_profile per (r_score, f_score, rfm_segment, lifecycle_stage): one Spark job
        for the RFM, lifecycle and reach figures."""
        if self._profile_counts is None:
            self._profile_counts = self.get("gold.customer_profile").groupBy(
                "r_score", "f_score", "rfm_segment", "lifecycle_stage").agg(
                F.count(F.lit(1)).alias("people")).collect()
        return self._profile_counts


def _people(rows: list, *keys: str) -> dict:
    """Sum ``people`` of ``rows`` by the values of ``keys`` (one key: by that value)."""
    totals: dict = {}
    for row in rows:
        key = row[keys[0]] if len(keys) == 1 else tuple(row[k] for k in keys)
        totals[key] = totals.get(key, 0) + row["people"]
    return totals


def _missing(key: str, title: str, intro: str, table: str, job: str) -> Section:
    return Section(key, title, intro, note=f"{table} is not built yet: run job {job} (`dmp run {job}`).")


# --- Sections --------------------------------------------------------------------------------------------------


def segments_section(tables: Tables, headlines: list[Headline]) -> Section:
    title, intro = "Segments", ("KMeans segments of the customer profile: how many people each holds and how its "
                                "centre differs from the average customer (100 = average of all profiled people).")
    segments = tables.get("gold.segments")
    if segments is None:
        return _missing("segments", title, intro, "gold.segments", "gold_customer_profile")
    rows = sorted(segments.select("segment_id", "name", "people", "centroid", "distinguishing_features").collect(),
                  key=lambda r: (-r["people"], r["segment_id"]))
    if not rows:
        return Section("segments", title, intro, note="gold.segments is empty.")
    largest = rows[0]
    headlines.append(Headline("largest-segment", f"largest segment: {largest['name']}", largest["people"],
                              f"{largest['people']:,}", "gold.segments.people"))
    sizes = go.Figure(go.Bar(x=[r["people"] for r in rows][::-1], y=[_segment_label(r) for r in rows][::-1],
                             orientation="h", marker_color=PALETTE[0], text=[r["people"] for r in rows][::-1],
                             textposition="auto"))
    sizes.update_layout(title="People per segment", xaxis_title="people")
    features = sorted({name for r in rows for name in (r["centroid"] or {})})
    total = sum(r["people"] for r in rows) or 1
    average = {f: sum((r["centroid"] or {}).get(f, 0.0) * r["people"] for r in rows) / total for f in features}
    profile = go.Figure([
        go.Bar(name=_segment_label(r), x=features,
               y=[_index((r["centroid"] or {}).get(f), average[f]) for f in features],
               marker_color=PALETTE[i % len(PALETTE)],
               customdata=[(r["centroid"] or {}).get(f) for f in features],
               hovertemplate="%{x}: index %{y:.0f} (centre %{customdata:.3g})<extra>" + html.escape(r["name"])
                             + "</extra>")
        for i, r in enumerate(rows)])
    profile.add_hline(y=100, line_dash="dot", line_color="#64748b")
    # Log scale: one segment's centre can sit at many times the average while others differ by tens of percent.
    profile.update_layout(title="Segment centres (index, 100 = average customer)", barmode="group",
                          yaxis_title="index (log scale)", yaxis_type="log", legend_orientation="h",
                          legend_y=-0.45, xaxis_tickangle=-20)
    table = _html_table(["segment", "people", "what sets it apart"],
                        [(_segment_label(r), f"{r['people']:,}", ", ".join(r["distinguishing_features"] or []))
                         for r in rows])
    return Section("segments", title, intro, [Chart("segment-sizes", sizes), Chart("segment-profiles", profile)],
                   [table])


def rfm_section(tables: Tables, headlines: list[Headline]) -> Section:
    title, intro = "RFM grid", ("Buyers by recency score (5 = bought most recently) and frequency score "
                                "(5 = buys most often), from gold.customer_profile; people who never bought "
                                "(score 0) are left out.")
    profile = tables.get("gold.customer_profile")
    if profile is None:
        return _missing("rfm", title, intro, "gold.customer_profile", "gold_customer_profile")
    rows = tables.profile_counts()
    headlines.append(Headline("people-profiled", "people profiled", sum(r["people"] for r in rows), "",
                              "gold.customer_profile"))
    counts = _people(rows, "r_score", "f_score")
    scores = [1, 2, 3, 4, 5]
    grid = [[counts.get((r, f), 0) for f in scores] for r in scores]
    heat = go.Figure(go.Heatmap(z=grid, x=[f"F{f}" for f in scores], y=[f"R{r}" for r in scores],
                                colorscale="Blues", text=grid, texttemplate="%{text}",
                                hovertemplate="R%{y} F%{x}: %{z} people<extra></extra>"))
    heat.update_layout(title="People per recency x frequency score", xaxis_title="frequency score",
                       yaxis_title="recency score")
    segments = sorted(_people(rows, "rfm_segment").items(), key=lambda item: (-item[1], item[0]))
    named = go.Figure(go.Bar(x=[name for name, _ in segments], y=[people for _, people in segments],
                             marker_color=PALETTE[2]))
    named.update_layout(title="People per RFM segment", yaxis_title="people")
    return Section("rfm", title, intro, [Chart("rfm-grid", heat), Chart("rfm-segments", named)])


def clv_section(tables: Tables, headlines: list[Headline]) -> Section:
    title, intro = "Customer lifetime value", ("Expected value of each buyer's purchases over the CLV horizon "
                                               "(BG/NBD + Gamma-Gamma), from gold.customer_profile.clv.")
    profile = tables.get("gold.customer_profile")
    if profile is None:
        return _missing("clv", title, intro, "gold.customer_profile", "gold_customer_profile")
    buyers = profile.filter(F.col("clv") > 0)
    stats = buyers.agg(F.count(F.lit(1)).alias("n"), F.min("clv").alias("low"), F.max("clv").alias("high"),
                       F.sum("clv").alias("total"), F.percentile_approx("clv", 0.5).alias("median")).first()
    if not stats["n"]:
        return Section("clv", title, intro, note="No buyer has a lifetime value yet (too few repeat buyers to fit).")
    headlines.append(Headline("total-clv", "expected value of all buyers", round(stats["total"], 2),
                              f"{stats['total']:,.0f}", "gold.customer_profile.clv (sum)"))
    bins = 30
    width = (stats["high"] - stats["low"]) / bins or 1.0
    bucket = F.least(F.floor((F.col("clv") - stats["low"]) / width), F.lit(bins - 1)).cast("int")
    counts = {r["bucket"]: r["people"] for r in
              buyers.groupBy(bucket.alias("bucket")).agg(F.count(F.lit(1)).alias("people")).collect()}
    centres = [stats["low"] + (b + 0.5) * width for b in range(bins)]
    histogram = go.Figure(go.Bar(x=centres, y=[counts.get(b, 0) for b in range(bins)], width=width * 0.95,
                                 marker_color=PALETTE[3], hovertemplate="CLV ~%{x:,.0f}: %{y} people<extra></extra>"))
    histogram.add_vline(x=stats["median"], line_dash="dash", line_color="#111827",
                        annotation_text=f"median {stats['median']:,.0f}")
    histogram.update_layout(title=f"CLV of {stats['n']:,} buyers", xaxis_title="CLV", yaxis_title="people")
    return Section("clv", title, intro, [Chart("clv-distribution", histogram)])


def lifecycle_section(tables: Tables, headlines: list[Headline]) -> Section:
    title, intro = "Lifecycle", ("Where people are in their customer life (gold.customer_profile.lifecycle_stage) "
                                 "and, when the segmentation moved people, the latest moves between segments "
                                 "(gold.segment_migrations).")
    if tables.get("gold.customer_profile") is None:
        return _missing("lifecycle", title, intro, "gold.customer_profile", "gold_customer_profile")
    counts = _people(tables.profile_counts(), "lifecycle_stage")
    stages = go.Figure(go.Bar(x=LIFECYCLE_STAGES, y=[counts.get(s, 0) for s in LIFECYCLE_STAGES],
                              marker_color=PALETTE[1], text=[counts.get(s, 0) for s in LIFECYCLE_STAGES],
                              textposition="auto"))
    stages.update_layout(title="People per lifecycle stage", yaxis_title="people")
    charts = [Chart("lifecycle-stages", stages)]
    flow = _migration_flow(tables)
    if flow is not None:
        charts.append(Chart("segment-flow", flow))
    return Section("lifecycle", title, intro, charts)


def _migration_flow(tables: Tables) -> go.Figure | None:
    migrations = tables.get("gold.segment_migrations")
    if migrations is None:
        return None
    latest = migrations.agg(F.max_by("run_id", "as_of").alias("run_id")).first()["run_id"]
    moves = migrations.filter(F.col("run_id") == latest).collect()
    segments = tables.get("gold.segments")
    names = {r["segment_id"]: r["name"] for r in segments.select("segment_id", "name").collect()} if segments else {}
    label = lambda segment_id: "new to the profile" if segment_id is None else names.get(segment_id, str(segment_id))  # noqa: E731
    sources = sorted({label(m["from_segment_id"]) for m in moves})
    targets = sorted({label(m["to_segment_id"]) for m in moves})
    nodes = [f"{name} (before)" for name in sources] + [f"{name} (now)" for name in targets]
    sankey = go.Figure(go.Sankey(
        node={"label": nodes, "pad": 12, "color": [PALETTE[i % len(PALETTE)] for i in range(len(nodes))]},
        link={"source": [sources.index(label(m["from_segment_id"])) for m in moves],
              "target": [len(sources) + targets.index(label(m["to_segment_id"])) for m in moves],
              "value": [m["people"] for m in moves]}))
    sankey.update_layout(title="Moves between segments in the latest re-segmentation")
    return sankey


def rules_section(tables: Tables, headlines: list[Headline]) -> Section:
    title, intro = "Purchase rules", ("Association rules mined from baskets (gold.purchase_rules): lift above 1 "
                                      "means the items are bought together more often than by chance.")
    rules = tables.get("gold.purchase_rules")
    if rules is None:
        return _missing("rules", title, intro, "gold.purchase_rules", "gold_patterns")
    top = rules.orderBy(F.col("lift").desc(), F.col("support").desc(), F.col("rule_key")).select(
        "antecedent", "consequent", "support", "confidence", "lift").limit(2000).collect()
    if not top:
        return Section("rules", title, intro, note="No rule reached the minimum support and confidence.")
    best = top[0]
    headlines.append(Headline("top-rule-lift", f"top rule lift: {_rule_text(best)}", best["lift"],
                              f"{best['lift']:.2f}", "gold.purchase_rules.lift (highest)"))
    scatter = go.Figure(go.Scatter(
        x=[r["support"] for r in top], y=[r["lift"] for r in top], mode="markers",
        marker={"color": [r["confidence"] for r in top], "colorscale": "Viridis", "size": 9, "showscale": True,
                "colorbar": {"title": "confidence"}},
        text=[_rule_text(r) for r in top], hovertemplate="%{text}<br>support %{x:.3f}, lift %{y:.2f}<extra></extra>"))
    scatter.update_layout(title=f"Lift vs support of {len(top):,} rules (highest lift)", xaxis_title="support",
                          yaxis_title="lift")
    table = _html_table(["rule", "support", "confidence", "lift"],
                        [(_rule_text(r), f"{r['support']:.3f}", f"{r['confidence']:.2f}", f"{r['lift']:.2f}")
                         for r in top[:10]])
    return Section("rules", title, intro, [Chart("rules-lift-support", scatter)], [table])


def recommendations_section(tables: Tables, headlines: list[Headline]) -> Section:
    title, intro = "Recommendations", ("Who gets recommendations and from which source (gold.recommendations), and "
                                       "the chosen ALS model against the popularity baseline on the time hold-out "
                                       "(ops.model_runs, model recommendations_als).")
    recommendations = tables.get("gold.recommendations")
    if recommendations is None:
        return _missing("recommendations", title, intro, "gold.recommendations", "gold_recommendations")
    charts = []
    reasons = recommendations.groupBy("reason").agg(F.count(F.lit(1)).alias("rows"),
                                                    F.countDistinct("person_id").alias("people")).collect()
    people = sum(r["people"] for r in tables.profile_counts()) if tables.get("gold.customer_profile") else 0
    reached = recommendations.agg(F.countDistinct("person_id")).first()[0]
    if people:
        headlines.append(Headline("recommendation-coverage", "people with recommendations", round(reached / people, 4),
                                  f"{reached / people:.0%}", "gold.recommendations / gold.customer_profile"))
    by_reason = go.Figure(go.Bar(x=[r["reason"] for r in reasons], y=[r["rows"] for r in reasons],
                                 marker_color=PALETTE[6], customdata=[r["people"] for r in reasons],
                                 hovertemplate="%{x}: %{y} recommendations to %{customdata} people<extra></extra>"))
    by_reason.update_layout(title=f"Recommendations by source ({reached:,} of {people:,} people reached)",
                            yaxis_title="recommendations")
    charts.append(Chart("recommendation-sources", by_reason))
    runs = tables.get(MODEL_RUNS)
    latest = (runs.filter(F.col("model") == "recommendations_als").orderBy(F.col("recorded_at").desc()).first()
              if runs is not None else None)
    if latest is not None and "als_ndcg_at_k" in (latest["metrics"] or {}):
        metrics, k = latest["metrics"], latest["params"].get("k", "k")
        names = [name for name in RECOMMENDATION_METRICS if f"als_{name}" in metrics]
        labels = [RECOMMENDATION_METRICS[name].replace("@k", f"@{k}") for name in names]
        compared = go.Figure([
            go.Bar(name=model_label, x=labels, y=[metrics.get(f"{prefix}_{name}", 0.0) for name in names],
                   marker_color=colour, texttemplate="%{y:.3f}", textposition="outside")
            for prefix, model_label, colour in (("als", "ALS", PALETTE[0]), ("popularity", "popularity", PALETTE[8]))])
        compared.update_layout(title=f"ALS vs popularity on the hold-out "
                                     f"({metrics.get('als_people_evaluated', 0):.0f} people)", barmode="group")
        charts.append(Chart("recommendation-metrics", compared))
        headlines.append(Headline("als-ndcg", f"ALS NDCG@{k} (popularity {metrics.get('popularity_ndcg_at_k', 0):.3f})",
                                  metrics["als_ndcg_at_k"], f"{metrics['als_ndcg_at_k']:.3f}",
                                  "ops.model_runs recommendations_als"))
    else:
        note = ("ALS vs popularity was not measured: the data has no first purchases in the hold-out days "
                "before the profile date" if latest is not None else "No recommendations_als model run is recorded")
        return Section("recommendations", title, intro, charts, note=note + ".")
    return Section("recommendations", title, intro, charts)


def funnel_section(tables: Tables, headlines: list[Headline]) -> Section:
    title, intro = "Conversion funnel", ("Sessions to purchases over all days, channels and campaigns "
                                         "(gold.funnel_daily).")
    funnel = tables.get("gold.funnel_daily")
    if funnel is None:
        return _missing("funnel", title, intro, "gold.funnel_daily", CAMPAIGN_JOB)
    stages = [column for column in FUNNEL_STAGES if column in funnel.columns]
    if not stages:
        return Section("funnel", title, intro, tables=[_df_table(funnel)])
    totals = funnel.agg(*[F.sum(c).alias(c) for c in stages]).first()
    figure = go.Figure(go.Funnel(y=[FUNNEL_STAGES[c] for c in stages], x=[totals[c] or 0 for c in stages],
                                 textinfo="value+percent initial", marker_color=PALETTE[:len(stages)]))
    figure.update_layout(title="Funnel, all days")
    return Section("funnel", title, intro, [Chart("funnel", figure)])


def campaigns_section(tables: Tables, headlines: list[Headline]) -> Section:
    title, intro = "Campaigns", ("Spend, attributed orders and revenue, ROI and CAC per campaign "
                                 "(gold.campaign_performance), and A/B test read-outs (gold.ab_test_results).")
    performance, ab_tests = tables.get("gold.campaign_performance"), tables.get("gold.ab_test_results")
    missing = [_missing("campaigns", title, intro, table, CAMPAIGN_JOB).note for table, df in
               (("gold.campaign_performance", performance), ("gold.ab_test_results", ab_tests)) if df is None]
    section = Section("campaigns", title, intro, note=" ".join(missing) or None)
    if performance is not None:
        if {"campaign_id", *CAMPAIGN_ROI} <= set(performance.columns):
            rows = performance.select("campaign_id", *CAMPAIGN_ROI).orderBy("campaign_id").collect()
            roi = go.Figure([go.Bar(name=label, x=[r["campaign_id"] for r in rows], y=[r[column] for r in rows],
                                    marker_color=PALETTE[i % len(PALETTE)])
                             for i, (column, label) in enumerate(CAMPAIGN_ROI.items())])
            roi.update_layout(title="ROI per campaign by attribution model", barmode="group", yaxis_title="ROI")
            section.charts.append(Chart("campaign-roi", roi))
        section.tables.append(_df_table(performance))
    if ab_tests is not None:
        if set(AB_ARMS) <= set(ab_tests.columns):
            rows = ab_tests.select(*AB_ARMS).orderBy(*AB_ARMS[:2]).collect()
            arms = go.Figure(go.Bar(x=[f"{r['campaign_id']} {r['variant']}" for r in rows],
                                    y=[r["conversion_rate"] for r in rows], marker_color=PALETTE[4],
                                    texttemplate="%{y:.1%}", textposition="outside"))
            arms.update_layout(title="A/B tests: conversion per arm", yaxis_tickformat=".0%")
            section.charts.append(Chart("ab-tests", arms))
        section.tables.append(_df_table(ab_tests))
    return section


def quality_section(tables: Tables, headlines: list[Headline]) -> Section:
    title, intro = "Data quality", ("Rows each run set aside in quarantine, per table (ops.job_runs), and what is "
                                    "in quarantine now. Every gate's expectations per run are in the Data Docs.")
    job_runs = tables.get(JOB_RUNS)
    if job_runs is None:
        return Section("quality", title, intro, note="No job runs are recorded yet: run `dmp pipeline run`.")
    per_run = (job_runs.filter(F.col("table_name") != "").groupBy("run_id", "table_name")
               .agg(F.sum("quarantined").alias("quarantined"), F.min("started_at").alias("started_at"))
               .orderBy("started_at").collect())
    quarantining = sorted({r["table_name"] for r in per_run if r["quarantined"]})
    run_order = list(dict.fromkeys(r["run_id"] for r in per_run))
    trend = go.Figure([
        go.Scatter(name=table, x=run_order, mode="lines+markers", line={"color": PALETTE[i % len(PALETTE)]},
                   y=[sum(r["quarantined"] for r in per_run if r["run_id"] == run and r["table_name"] == table)
                      for run in run_order])
        for i, table in enumerate(quarantining)])
    trend.update_layout(title="Quarantined rows per table and run", xaxis_title="run", yaxis_title="rows",
                        xaxis_type="category")
    summaries = quarantine_summaries(tables.spark, tables.config)
    held = sum(q.rows for q in summaries)
    headlines.append(Headline("quarantined-now", "rows in quarantine now", held, f"{held:,}", "quarantine.*"))
    table = _html_table(["table", "rows", "rules broken (rows)"],
                        [(q.table, f"{q.rows:,}", ", ".join(f"{rule} ({n:,})" for rule, n in q.rules.items()))
                         for q in summaries])
    return Section("quality", title, intro, [Chart("quarantine-trend", trend)], [table] if summaries else [])


SECTIONS: Sequence[Callable[[Tables, list[Headline]], Section]] = (
    segments_section, rfm_section, clv_section, lifecycle_section, rules_section, recommendations_section,
    funnel_section, campaigns_section, quality_section)


# --- Rendering -------------------------------------------------------------------------------------------------


def render_html(report: Report, data_docs_href: str | None = None) -> str:
    """The whole page: Plotly's library inlined once, then every section's charts and tables."""
    tiles = "\n".join(_headline_html(h) for h in report.headlines)
    nav = " ".join(f'<a href="#{s.key}">{html.escape(s.title)}</a>' for s in report.sections)
    docs = (f'<a id="data-docs-link" href="{html.escape(data_docs_href)}">Data-quality docs (Great Expectations)</a>'
            if data_docs_href else "")
    body = "\n".join(_section_html(s) for s in report.sections)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>dmp marketing report</title>
<style>{_CSS}</style>
<script>{get_plotlyjs()}</script>
</head><body>
<header><h1>Marketing report</h1>
<p class="meta">Lakehouse <code>{html.escape(report.lakehouse)}</code>, read
{report.generated_at:%Y-%m-%d %H:%M} UTC. {docs}</p>
<nav>{nav}</nav></header>
<section id="headlines" class="tiles">{tiles}</section>
{body}
<script>
// Charts are drawn as the page is parsed, before the grid knows how many charts share a row: fit them to their
// final boxes once everything is laid out.
window.addEventListener('load', () => document.querySelectorAll('.js-plotly-plot').forEach(
  plot => Plotly.Plots.resize(plot)));
</script>
<footer>Generated by <code>dmp report</code>; every number is read from the gold and ops tables named with it.</footer>
</body></html>
"""


def _headline_html(h: Headline) -> str:
    shown = h.shown or f"{h.value:,}"
    return (f'<div class="tile" id="kpi-{h.key}" data-value="{html.escape(json.dumps(h.value))}" '
            f'title="{html.escape(h.source)}"><div class="value">{html.escape(shown)}</div>'
            f'<div class="label">{html.escape(h.label)}</div></div>')


def _section_html(section: Section) -> str:
    charts = "\n".join(
        f'<div class="chart" data-chart="{c.key}">'
        + _layout(c.figure).to_html(full_html=False, include_plotlyjs=False, div_id=f"chart-{c.key}",
                                    config={"displaylogo": False, "displayModeBar": False,
                                                                    "responsive": True})
        + "</div>" for c in section.charts)
    note = f'<p class="note">{html.escape(section.note)}</p>' if section.note else ""
    return (f'<section id="{section.key}"><h2>{html.escape(section.title)}</h2>'
            f'<p class="intro">{html.escape(section.intro)}</p>{note}'
            f'<div class="charts">{charts}</div>{"".join(section.tables)}</section>')


def _layout(figure: go.Figure) -> go.Figure:
    return figure.update_layout(template="plotly_white", height=400, margin={"l": 60, "r": 20, "t": 50, "b": 70},
                                font={"family": "system-ui, sans-serif", "size": 12}, title_font_size=15)


def _html_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _df_table(df: DataFrame) -> str:
    return _html_table(df.columns, [[_cell(v) for v in row] for row in df.limit(TABLE_ROWS).collect()])


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}"
    return "" if value is None else str(value)


def _segment_label(row) -> str:
    return f"{row['segment_id']}: {row['name']}"


def _index(value: float | None, average: float) -> float | None:
    return None if value is None or not average else 100.0 * value / average


def _rule_text(row) -> str:
    return f"{' + '.join(row['antecedent'])} → {' + '.join(row['consequent'])}"


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; background: #f6f7f9;
       color: #1f2933; }
header { background: #0f172a; color: #f8fafc; padding: 20px 32px 14px; }
header h1 { margin: 0 0 4px; font-size: 24px; }
header .meta { margin: 0 0 10px; color: #cbd5e1; font-size: 13px; }
header code { color: #e2e8f0; }
header a { color: #93c5fd; }
nav a { color: #e2e8f0; margin-right: 14px; font-size: 13px; text-decoration: none; }
.tiles { display: flex; flex-wrap: wrap; gap: 12px; padding: 18px 32px 0; }
.tile { background: #fff; border-radius: 8px; padding: 12px 16px; min-width: 170px; flex: 1;
        box-shadow: 0 1px 2px rgba(15, 23, 42, .08); }
.tile .value { font-size: 26px; font-weight: 650; color: #1d4ed8; }
.tile .label { font-size: 12px; color: #52606d; }
section { margin: 18px 32px; background: #fff; border-radius: 8px; padding: 6px 20px 14px;
          box-shadow: 0 1px 2px rgba(15, 23, 42, .08); }
section.tiles { background: none; box-shadow: none; margin: 0; }
h2 { font-size: 18px; margin: 12px 0 2px; }
.intro { color: #52606d; font-size: 13px; margin: 0 0 8px; }
.note { background: #fff7ed; border-left: 4px solid #f97316; padding: 8px 12px; font-size: 13px; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(460px, 1fr)); gap: 12px; }
.chart { min-height: 400px; min-width: 0; }
table { border-collapse: collapse; font-size: 13px; margin: 10px 0; }
th, td { border-bottom: 1px solid #e5e7eb; padding: 4px 10px; text-align: left; }
th { background: #f3f4f6; }
footer { color: #7b8794; font-size: 12px; padding: 4px 32px 24px; }
"""
