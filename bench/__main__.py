"""Pipeline benchmark against the floor: ``python -m bench --scale S`` (or ``--scale S --scale M``).

Per scale, in one Spark session: generate landing files unless the scale's folder has them (S: 20k customers over
12 days, about 1M events; M: 200k customers, about 10M; XS: 2k for a quick look; or ``--customers``/``--days``),
then time

* the **floor**: one Spark pass that reads every landing file as text and writes it once as Delta, no parsing;
* the **whole pipeline** (``run_pipeline``), per job: seconds, rows in (its tables' ``rows_in``), rows/s, time in
  gates (the ``gate_ms`` every gate records), Spark jobs launched (each costs scheduling and planning whatever
  its data: at small scales the pipeline's time is mostly this), shuffle bytes written (Spark's status API,
  executors' totals before and after the job), the driver JVM's peak heap in use during the job (``HeapSampler``)
  and its heap in use after a full GC at the job's end (what it retained);
* **DuckDB** computing the same RFM scores and daily revenue straight from the landing files (newest version per
  order, revenue statuses), the single-machine tool a user would pick instead; needs ``pip install -e '.[bench]'``.

Prints one table per scale and the ratios: pipeline / floor, gate share of the pipeline, DuckDB against the Spark
jobs on the path to the same two tables, and time from the first scale to each next. Config (Spark master, memory)
comes from ``DMP_*`` variables / dmp.toml as for ``dmp``; the folders are the benchmark's own.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench import spark_jobs_so_far, status_api
from bench.profile_scoring import HeapSampler
from lib.config import Config, load_config
from lib.generate import GeneratorSettings, generate
from lib.orders import REVENUE_STATUSES
from lib.pipeline import run_pipeline, upstream
from lib.runner import JobRun
from lib.schemas import sources
from lib.spark import spark_session

# Wide enough for the job table when the output goes to a file.
console = Console(width=None if sys.stdout.isatty() else 140)
SCALES = {"XS": (2_000, 12), "S": (20_000, 12), "M": (200_000, 12)}
# The jobs a DuckDB user would replace with one script: everything on the path to daily revenue and RFM.
DUCKDB_PATH_TARGETS = ("gold_daily_revenue", "gold_customer_profile")


@dataclasses.dataclass
class JobMeasure:
    job: str
    seconds: float
    rows_in: int
    gate_seconds: float | None  # None: this version's gates record no gate_ms
    spark_jobs: int
    shuffle_bytes: int
    peak_heap_mb: float
    retained_heap_mb: float


def shuffle_written(spark) -> int:
    """Shuffle bytes written so far by all executors (cumulative, unlike the UI's bounded list of stages)."""
    return sum(executor["totalShuffleWrite"] for executor in status_api(spark, "allexecutors"))


def floor_seconds(spark, landing: Path, out: Path) -> tuple[float, int]:
    """One pass: every landing file read as text lines and written once as Delta. Returns (seconds, lines)."""
    clock, lines = time.monotonic(), 0
    for source in sources().values():
        folder = landing / source.path
        if not folder.exists():
            continue
        text = spark.read.option("recursiveFileLookup", "true").text(str(folder))
        text.write.format("delta").mode("overwrite").save(str(out / source.name))
        lines += spark.read.format("delta").load(str(out / source.name)).count()
    return time.monotonic() - clock, lines


def measured_pipeline(spark, config: Config) -> tuple[float, list[JobMeasure]]:
    measures: list[JobMeasure] = []
    started: dict[str, tuple[int, int]] = {}
    # Seconds spent measuring between jobs (status API, full GC), kept out of the pipeline's time.
    measuring = [0.0]

    heap = HeapSampler(spark)

    def on_start(job: str) -> None:
        clock = time.monotonic()
        heap.take()
        started[job] = (spark_jobs_so_far(spark), shuffle_written(spark))
        measuring[0] += time.monotonic() - clock

    def on_done(run: JobRun) -> None:
        clock = time.monotonic()
        jobs, shuffled = spark_jobs_so_far(spark), shuffle_written(spark)
        jobs_before, shuffled_before = started.get(run.job, (jobs, shuffled))
        measure = JobMeasure(
            run.job, run.seconds, sum(t.rows_in for t in run.tables),
            (sum(t.details["gate_ms"] for t in run.tables if "gate_ms" in t.details) / 1000
             if any("gate_ms" in t.details for t in run.tables) else None),
            jobs - jobs_before, shuffled - shuffled_before, heap.take(), heap.retained())
        measures.append(measure)
        # A long run shows where it is, and a run cut short leaves its figures so far.
        gates = "" if measure.gate_seconds is None else f"gates {measure.gate_seconds:.1f} s, "
        console.print(f"  {run.status} {run.job}: {measure.seconds:.1f} s, {measure.rows_in:,} rows in, {gates}"
                      f"{measure.spark_jobs:,} Spark jobs, {measure.shuffle_bytes / 2**20:,.1f} MB shuffled, "
                      f"peak heap {measure.peak_heap_mb:,.0f} MB, {measure.retained_heap_mb:,.0f} MB after GC")
        measuring[0] += time.monotonic() - clock

    clock = time.monotonic()
    runs = run_pipeline(spark, config, on_job_start=on_start, on_job_done=on_done)
    seconds = time.monotonic() - clock - measuring[0]
    heap.stop()
    failed = [f"{run.job}: {run.error}" for run in runs if not run.ok]
    if failed:
        raise SystemExit(f"pipeline failed in {config.lakehouse_root}: {'; '.join(failed)}")
    return seconds, measures


def duckdb_seconds(landing: Path, out: Path) -> tuple[float, dict[str, int]]:
    """RFM (quintile scores of recency, frequency, monetary among buyers) and daily revenue from the landing orders
    with DuckDB, written as Parquet. Returns (seconds, row counts)."""
    try:
        import duckdb
    except ImportError as missing:
        raise SystemExit("DuckDB is not installed: .venv/bin/pip install -e '.[bench]'") from missing
    out.mkdir(parents=True, exist_ok=True)
    statuses = ", ".join(f"'{status}'" for status in REVENUE_STATUSES)
    clock = time.monotonic()
    db = duckdb.connect()
    db.execute(f"""
        CREATE TABLE orders AS
        SELECT * FROM (
            SELECT *, row_number() OVER (PARTITION BY order_id ORDER BY updated_at DESC) AS version_rank
            FROM read_json('{landing}/orders/*.jsonl', format = 'newline_delimited', ignore_errors = true,
                           columns = {{order_id: 'VARCHAR', customer_id: 'VARCHAR', order_ts: 'TIMESTAMPTZ',
                                       updated_at: 'TIMESTAMPTZ', status: 'VARCHAR', total_amount: 'DECIMAL(12,2)'}})
            WHERE order_id IS NOT NULL AND customer_id IS NOT NULL AND total_amount >= 0
        ) WHERE version_rank = 1 AND status IN ({statuses})""")
    db.execute(f"""COPY (SELECT CAST(order_ts AS DATE) AS day, sum(total_amount) AS revenue, count(*) AS orders
                         FROM orders GROUP BY 1 ORDER BY 1) TO '{out}/daily_revenue.parquet'""")
    db.execute(f"""COPY (
        WITH per_customer AS (
            SELECT customer_id, date_diff('day', max(order_ts), (SELECT max(order_ts) FROM orders)) AS recency_days,
                   count(*) AS frequency, sum(total_amount) AS monetary
            FROM orders GROUP BY customer_id)
        SELECT *, ntile(5) OVER (ORDER BY recency_days DESC) AS r_score, ntile(5) OVER (ORDER BY frequency) AS f_score,
               ntile(5) OVER (ORDER BY monetary) AS m_score
        FROM per_customer) TO '{out}/rfm.parquet'""")
    seconds = time.monotonic() - clock
    counts = {name: db.execute(f"SELECT count(*) FROM '{out}/{name}.parquet'").fetchone()[0]
              for name in ("daily_revenue", "rfm")}
    return seconds, counts


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def run_scale(spark, base: Config, name: str, customers: int, days: int, workdir: Path, seed: int) -> dict:
    landing = workdir / name / "landing"
    if landing.exists():
        console.print(f"[bold]{name}[/bold]: landing files already in {landing} (delete the folder to generate anew)")
    else:
        console.print(f"[bold]{name}[/bold]: generating {customers:,} customers x {days} days ...")
        generate(landing, GeneratorSettings(customers=customers, days=days, seed=seed))
    events = sum(sum(1 for _ in path.open()) for path in (landing / "events").glob("*.jsonl"))
    # What an earlier run left would turn this into an incremental run: jobs skipped as up to date, a ratio of nothing.
    earlier = [path for path in (workdir / name / output for output in ("lakehouse", "floor", "duckdb"))
               if path.exists()]
    if earlier:
        console.print(f"[bold]{name}[/bold]: removing what an earlier run wrote: {', '.join(map(str, earlier))}")
        for output in earlier:
            shutil.rmtree(output)
    config = dataclasses.replace(base, landing_root=str(landing), lakehouse_root=str(workdir / name / "lakehouse"))
    floor, floor_lines = floor_seconds(spark, landing, workdir / name / "floor")
    console.print(f"floor: {floor:.1f} s for {floor_lines:,} lines")
    pipeline, measures = measured_pipeline(spark, config)
    duck, duck_rows = duckdb_seconds(landing, workdir / name / "duckdb")
    path_seconds = sum(m.seconds for m in measures if m.job in set().union(*map(upstream, DUCKDB_PATH_TARGETS)))
    table = Table("job", "seconds", "rows in", "rows/s", "gates s", "Spark jobs", "shuffle MB", "peak heap MB",
                  "after GC MB",
                  title=f"{name}: {customers:,} customers, {days} days, {events:,} events")
    for m in measures:
        table.add_row(m.job, f"{m.seconds:.1f}", f"{m.rows_in:,}", f"{m.rows_in / m.seconds:,.0f}" if m.seconds else "",
                      _seconds(m.gate_seconds), f"{m.spark_jobs:,}", f"{m.shuffle_bytes / 2**20:,.1f}",
                      f"{m.peak_heap_mb:,.0f}", f"{m.retained_heap_mb:,.0f}")
    gated = [m.gate_seconds for m in measures if m.gate_seconds is not None]
    gates, peak_heap = (sum(gated) if gated else None), max(m.peak_heap_mb for m in measures)
    retained_heap = max(m.retained_heap_mb for m in measures)
    table.add_row("[bold]pipeline[/bold]", f"{pipeline:.1f}", "", "", _seconds(gates),
                  f"{sum(m.spark_jobs for m in measures):,}", f"{sum(m.shuffle_bytes for m in measures) / 2**20:,.1f}",
                  f"{peak_heap:,.0f}", f"{retained_heap:,.0f}")
    table.add_row("floor (read + write once)", f"{floor:.1f}", f"{floor_lines:,}", f"{floor_lines / floor:,.0f}")
    table.add_row("DuckDB: RFM + daily revenue", f"{duck:.1f}", "", "", "", "", "", "", "")
    console.print(table)
    result = {"scale": name, "customers": customers, "days": days, "events": events, "floor_s": floor,
              "pipeline_s": pipeline, "pipeline_over_floor": pipeline / floor,
              "gate_share": None if gates is None else gates / pipeline,
              "duckdb_s": duck, "duckdb_rows": duck_rows, "spark_path_s": path_seconds,
              "spark_path_over_duckdb": path_seconds / duck,
              "peak_heap_mb": peak_heap, "retained_heap_mb": retained_heap,
              "python_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
              "jobs": [dataclasses.asdict(m) for m in measures]}
    share = ("not measured (gates record no gate_ms)" if gates is None else
             f"{100 * result['gate_share']:.1f}% of the pipeline (target <= 25%)")
    console.print(f"pipeline / floor = {result['pipeline_over_floor']:.2f}x (target <= 4); gates: {share}; "
                  f"Spark jobs on the path to "
                  f"RFM + daily revenue {path_seconds:.1f} s = {result['spark_path_over_duckdb']:.1f}x DuckDB's "
                  f"{duck:.1f} s (DuckDB: no gates, quarantine, identity, history or MERGE)")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--scale", action="append", choices=sorted(SCALES), help="XS, S or M (repeatable)")
    parser.add_argument("--customers", type=int, help="instead of --scale: customers to generate")
    parser.add_argument("--days", type=int, default=12, help="with --customers: days to generate")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--workdir", type=Path, help="where landing files and lakehouses go (default: a temp dir)")
    args = parser.parse_args()
    scales = ({"custom": (args.customers, args.days)} if args.customers else
              {name: SCALES[name] for name in (args.scale or ["S"])})
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="dmp-bench-"))
    base = load_config()
    # The status API (shuffle bytes) needs the UI server; nothing else changes.
    base = dataclasses.replace(base, spark=dataclasses.replace(base.spark, ui_enabled=True))
    spark = spark_session(base)
    results = [run_scale(spark, base, name, customers, days, workdir, args.seed)
               for name, (customers, days) in scales.items()]
    for first, later in zip(results, results[1:]):
        console.print(f"{first['scale']} -> {later['scale']}: events x{later['events'] / first['events']:.1f}, "
                      f"pipeline time x{later['pipeline_s'] / first['pipeline_s']:.1f} (target <= 10), peak heap "
                      f"{first['peak_heap_mb']:,.0f} -> {later['peak_heap_mb']:,.0f} MB, after GC "
                      f"{first['retained_heap_mb']:,.0f} -> {later['retained_heap_mb']:,.0f} MB")
    (workdir / "bench.json").write_text(json.dumps(results, indent=2, default=str))
    console.print(f"figures: {workdir / 'bench.json'}")


if __name__ == "__main__":
    main()
