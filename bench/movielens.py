"""Real-data check: recommendations on MovieLens latest-small, ALS against the popularity baseline.

``python -m bench.movielens`` loads MovieLens into landing files (``dmp datasets load movielens``), runs the
unchanged pipeline up to ``gold_recommendations`` and prints the hold-out metrics that job wrote to
``ops.model_runs``: precision@10, recall@10, NDCG@10, MAP and coverage for ALS and for popularity, and the NDCG
ratio. The hold-out is the job's own time-based split: the last ``--holdout-days`` before the newest rating.
MovieLens users rate in a few bursts: everyone who first "bought" a film in the held-out days is judged, but only
those with ratings before the cut (warm) get ALS lists; the others (cold, most of them on the 365-day hold-out) get
the cold-start fallback the job chose on the hold-out (their segment's popular films then everyone's, or
everyone's only). A second table gives the same metrics for the warm and the cold people apart, with how many are
judged in each, and the NDCG of each fallback for the cold. Config (Spark master, memory) comes from ``DMP_*``
variables / dmp.toml as for ``dmp``.

The served lists keep no place for never-rated films unless ``--new-product-slots`` says so: the pipeline's
default (1) gives the last place to a film nobody rated, which popularity never does, so this comparison of ranking
accuracy would charge ALS for the exploration the baseline does not make.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from lib import io
from lib.config import load_config
from lib.datasets import movielens
from lib.jobs import PIPELINE
from lib.pipeline import dependency_order, run_pipeline
from lib.spark import spark_session

console = Console()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.movielens", description=__doc__.splitlines()[0])
    parser.add_argument("--holdout-days", type=int, default=365, help="days before the newest rating held out")
    parser.add_argument("--half-life-days", type=float, default=365.0, help="interaction half-life")
    parser.add_argument("--workdir", type=Path, help="where landing files and the lakehouse go (default: temp dir)")
    parser.add_argument("--new-product-slots", type=int, default=0,
                        help="last places of each list kept for never-rated films (the pipeline's default is 1)")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="dmp-movielens-"))
    base = load_config()
    config = dataclasses.replace(
        base, landing_root=str(workdir / "landing"), lakehouse_root=str(workdir / "lakehouse"),
        recommendations=dataclasses.replace(base.recommendations, holdout_days=args.holdout_days,
                                            half_life_days=args.half_life_days,
                                            new_product_slots=args.new_product_slots))
    written = movielens.load(Path(config.landing_root))
    console.print(f"landing: {written}")
    spark = spark_session(config)
    clock = time.monotonic()
    needed = {"gold_recommendations"}
    for name in reversed(dependency_order()):
        if name in needed:
            needed.update(PIPELINE[name].depends_on)
    runs = run_pipeline(spark, config, jobs=[name for name in dependency_order() if name in needed])
    seconds = time.monotonic() - clock
    failed = [f"{run.job}: {run.error}" for run in runs if not run.ok]
    if failed:
        raise SystemExit(f"pipeline failed in {config.lakehouse_root}: {'; '.join(failed)}")
    model_run = (io.read_table(spark, config, "ops.model_runs").filter("model = 'recommendations_als'")
                 .orderBy("recorded_at", ascending=False).first())
    metrics, params = dict(model_run["metrics"]), dict(model_run["params"])
    table = Table("metric @10", "ALS", "popularity", title=f"MovieLens hold-out: last {args.holdout_days} days, "
                  f"{args.new_product_slots} new-product slot(s)")
    for name in ("precision_at_k", "recall_at_k", "ndcg_at_k", "map", "coverage", "people_evaluated"):
        table.add_row(name, f"{metrics.get('als_' + name, float('nan')):.4f}",
                      f"{metrics.get('popularity_' + name, float('nan')):.4f}")
    console.print(table)
    groups = Table("metric @10", "ALS warm", "popularity warm", "ALS cold", "popularity cold",
                   title="judged people with ratings before the cut (warm) and without (cold)")
    for name in ("precision_at_k", "recall_at_k", "ndcg_at_k", "map", "people_evaluated"):
        groups.add_row(name, *(f"{metrics.get(f'{model}_{group}_{name}', float('nan')):.4f}"
                               for group in ("warm", "cold") for model in ("als", "popularity")))
    console.print(groups)
    fallbacks = {key: round(value, 4) for key, value in metrics.items() if key.startswith("cold_start_")}
    console.print(f"cold-start fallback {params.get('cold_start_fallback')} "
                  f"(setting {params.get('cold_start_fallback_setting')}); cold NDCG@10 by fallback {fallbacks}")
    ratio = metrics["als_ndcg_at_k"] / metrics["popularity_ndcg_at_k"] if metrics.get("popularity_ndcg_at_k") else None
    console.print(f"chosen parameters {params}; NDCG@10 ALS / popularity = {ratio}; pipeline {seconds:.0f} s; "
                  f"lakehouse {config.lakehouse_root}")


if __name__ == "__main__":
    main()
