"""`dmp report` and the Data Docs site on the shared end-to-end run: the numbers on the page are the gold tables',
the page is self-contained and renders in headless Chromium, and every validation has its GX page."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess

import pytest
from pyspark.sql import functions as F

from lib import PROJECT_ROOT, io
from lib.data_docs import NOT_GX
from lib.report import CAMPAIGN_JOB, write_report
from lib.runner import MODEL_RUNS, QUALITY_RESULTS

ARTIFACTS = PROJECT_ROOT / "build" / "test-artifacts"
# table: (section, chart drawn from it)
CAMPAIGN_TABLES = {"gold.funnel_daily": ("funnel", "funnel"),
                   "gold.campaign_performance": ("campaigns", "campaign-roi"),
                   "gold.ab_test_results": ("campaigns", "ab-tests")}
# Recorded as soon as the page starts parsing, before any chart script runs.
ERROR_PROBE = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || e)));
window.addEventListener('unhandledrejection', e => window.__errors.push('unhandled rejection: ' + e.reason));
const consoleError = console.error;
console.error = (...args) => { window.__errors.push(args.join(' ')); consoleError(...args); };
</script>"""
# Runs after the page has loaded and Plotly has drawn: every chart's size and whether Plotly drew its SVG.
SIZE_PROBE = """<script>
window.addEventListener('load', () => setTimeout(() => {
  const charts = [...document.querySelectorAll('[data-chart]')].map(el => {
    const plot = el.querySelector('.plotly-graph-div');
    const box = (plot || el).getBoundingClientRect();
    return {chart: el.dataset.chart, width: box.width, height: box.height,
            drawn: !!(plot && plot.classList.contains('js-plotly-plot') && plot.querySelector('svg.main-svg'))};
  });
  const out = document.createElement('pre');
  out.id = 'probe';
  out.textContent = JSON.stringify({errors: window.__errors, charts: charts});
  document.body.appendChild(out);
}, 500));
</script>"""


@pytest.fixture(scope="module")
def written(spark, e2e_run, tmp_path_factory):
    config, _, _ = e2e_run
    folder = tmp_path_factory.mktemp("report")
    # The Data Docs go next to the report, not into the shared lakehouse.
    return config, write_report(spark, config, folder / "report.html", docs_folder=folder / "data_docs")


def _headline(page: str, key: str):
    match = re.search(rf'id="kpi-{key}" data-value="([^"]*)"', page)
    assert match, f"no headline kpi-{key} on the page"
    return json.loads(html.unescape(match.group(1)))


def test_headline_numbers_are_the_gold_tables_values(spark, written):
    config, report = written
    page = report.path.read_text()
    largest = io.read_table(spark, config, "gold.segments").agg(F.max("people")).first()[0]
    top_lift = io.read_table(spark, config, "gold.purchase_rules").agg(F.max("lift")).first()[0]
    profiled = io.read_table(spark, config, "gold.customer_profile").count()
    assert largest > 0 and top_lift > 1
    assert _headline(page, "largest-segment") == largest
    assert _headline(page, "top-rule-lift") == top_lift
    assert _headline(page, "people-profiled") == profiled
    assert f">{largest:,}<" in page and f">{top_lift:.2f}<" in page


def test_report_is_one_self_contained_page_with_every_section(spark, written):
    config, report = written
    page = report.path.read_text()
    assert not re.search(r"<script[^>]+src=", page) and not re.search(r"<link[^>]+href=\"https?:", page)
    assert page.count("Plotly.newPlot") == len(re.findall(r'data-chart="', page))
    assert len(re.findall(r"\* plotly\.js v\d", page)) == 1  # the library inlined once, not per chart
    for chart in ("segment-sizes", "segment-profiles", "rfm-grid", "lifecycle-stages", "rules-lift-support",
                  "recommendation-sources", "quarantine-trend"):
        assert f'data-chart="{chart}"' in page, chart
    # Six days of data: too few repeat buyers for CLV and no hold-out week for ALS; the page says so.
    measured = {name for run in io.read_table(spark, config, MODEL_RUNS).collect() for name in run["metrics"]}
    assert ('data-chart="recommendation-metrics"' in page) == ("als_ndcg_at_k" in measured)
    assert ('data-chart="clv-distribution"' in page) == ("bgnbd_log_likelihood" in measured)
    for table, (section, chart) in CAMPAIGN_TABLES.items():
        built = io.table_exists(spark, config, table)
        assert (f"{table} is not built yet: run job {CAMPAIGN_JOB}" in page) != built
        assert (f'data-chart="{chart}"' in page) == built, chart
        assert f'<section id="{section}">' in page
    docs_link = re.search(r'id="data-docs-link" href="([^"]+)"', page).group(1)
    assert (report.path.parent / docs_link).resolve() == report.data_docs.resolve()


def test_data_docs_have_a_gx_page_for_every_validation(spark, written):
    config, report = written
    site = report.data_docs.parent
    index = report.data_docs.read_text()
    validations = (io.read_table(spark, config, QUALITY_RESULTS).filter(F.col("expectation_type") != NOT_GX)
                   .select("table_name", "run_id").distinct().count())
    links = re.findall(r'href="(validations/[^"]+)"', index)
    assert len(links) == validations > 0
    assert all((site / html.unescape(link)).is_file() for link in links)
    suites = re.findall(r'href="(expectations/[^"]+)"', index)
    assert suites and all((site / suite).is_file() for suite in suites)
    # The e2e landing data is dirty: the silver.orders gate failed rules, and GX's page names them.
    orders = next(link for link in links if link.startswith("validations/silver/orders/"))
    orders_page = (site / html.unescape(orders)).read_text()
    assert "Expectation Validation Result" in orders_page and "customer_id" in orders_page
    assert 'class="failed"' in index


def test_report_renders_in_headless_chromium_without_errors(written):
    _, report = written
    browser = shutil.which("chromium")
    assert browser, "Debian's chromium is not installed: run ./dev.sh setup (apt-get install chromium)"
    probed = report.path.with_name("probed.html")
    page = report.path.read_text()
    probed.write_text(page.replace("<head>", "<head>" + ERROR_PROBE, 1).replace("</body>", SIZE_PROBE + "</body>"))
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             f"--user-data-dir={report.path.parent / 'chromium'}", "--virtual-time-budget=20000"]
    dom = subprocess.run([*flags, "--window-size=1400,1000", "--dump-dom", probed.as_uri()], capture_output=True,
                         text=True, timeout=120)
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, re.DOTALL)
    assert found, f"the probe did not report (chromium exit {dom.returncode}): {dom.stderr[-2000:]}"
    probe = json.loads(html.unescape(found.group(1)))
    assert probe["errors"] == []
    assert len(probe["charts"]) == page.count('data-chart="') > 0
    assert [c for c in probe["charts"] if not (c["drawn"] and c["width"] > 0 and c["height"] > 0)] == []

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = ARTIFACTS / "report.png"
    screenshot.unlink(missing_ok=True)
    subprocess.run([*flags, "--window-size=1400,4200", f"--screenshot={screenshot}", report.path.as_uri()],
                   capture_output=True, timeout=120)
    assert screenshot.is_file() and screenshot.stat().st_size > 10_000
    shutil.copy(report.path, ARTIFACTS / "report.html")
