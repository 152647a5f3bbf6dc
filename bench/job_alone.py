"""One job alone on a copy of a benchmark lakehouse's inputs: ``python -m bench.job_alone --lakehouse L --job J``.

Copies the tables the job reads (and the PII key) from ``L`` into a fresh lakehouse, restores each to the version
the job last read in ``L`` (``ops.job_inputs``: a later job, privacy, may have rewritten it since), runs the job
there as the pipeline would (``run_job``) and prints its time, the Spark jobs it launched, the shuffle partitions it
started from, and from Spark's status API the shuffle bytes written, the bytes spilled to disk and in memory form,
the tasks of every stage that wrote more than 200 MB, and (``--longest N``) the N stages that took longest with the
line of code that ran them.
For before/after measurements of one job at M without re-running what precedes it; pass ``DMP_*`` variables
(``DMP_SPARK__INPUT_BYTES_PER_SHUFFLE_PARTITION``) to compare settings.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import shutil
import tempfile
import time
from pathlib import Path

from delta import DeltaTable

from bench import spark_jobs_so_far, status_api
from lib import io
from lib.config import load_config
from lib.jobs import PIPELINE
from lib.runner import last_successes, new_run_id, run_job
from lib.spark import spark_session

BIG_STAGE_BYTES = 200 * 2**20


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.job_alone", description=__doc__.splitlines()[0])
    parser.add_argument("--lakehouse", type=Path, required=True, help="a lakehouse holding the job's input tables")
    parser.add_argument("--job", required=True, choices=sorted(PIPELINE))
    parser.add_argument("--workdir", type=Path, help="where the copy goes (default: a temp dir)")
    parser.add_argument("--longest", type=int, default=0, metavar="N",
                        help="also list the N longest stages: seconds, tasks, shuffle MB and the code that ran them")
    args = parser.parse_args()
    copy = (args.workdir or Path(tempfile.mkdtemp(prefix="dmp-job-alone-"))) / "lakehouse"
    shutil.rmtree(copy, ignore_errors=True)
    job = PIPELINE[args.job]
    for folder in ["_secrets", *(table.replace(".", "/") for table in job.reads)]:
        shutil.copytree(args.lakehouse / folder, copy / folder)
    config = load_config()
    # The status API (stage metrics) needs the UI server.
    config = dataclasses.replace(config, lakehouse_root=str(copy),
                                 spark=dataclasses.replace(config.spark, ui_enabled=True))
    spark = spark_session(config)
    source = dataclasses.replace(config, lakehouse_root=str(args.lakehouse))
    last = last_successes(spark, source).get(args.job)
    for table, version in (last.input_versions if last else {}).items():
        if table in job.reads and io.table_version(spark, config, table) != version:
            DeltaTable.forPath(spark, config.table_path(table)).restoreToVersion(version)
            print(f"{table}: restored to version {version}, as {args.job} read it")
    jobs_before = spark_jobs_so_far(spark)
    clock = time.monotonic()
    run = run_job(args.job, job.run, spark, config, new_run_id(), reads=job.reads)
    seconds = time.monotonic() - clock
    spark_jobs = spark_jobs_so_far(spark) - jobs_before
    stages = status_api(spark, "stages?status=complete")
    mb = 2**20
    big = [(round(s["shuffleWriteBytes"] / mb), s["numTasks"]) for s in stages
           if s["shuffleWriteBytes"] > BIG_STAGE_BYTES]
    print(f"{args.job}: {run.status} {run.error or ''}in {seconds:,.1f} s, {spark_jobs:,} Spark jobs; "
          f"shuffles started at {spark.conf.get('spark.sql.adaptive.coalescePartitions.initialPartitionNum')} "
          f"partitions; "
          f"shuffle written {sum(s['shuffleWriteBytes'] for s in stages) / mb:,.0f} MB; spilled to disk "
          f"{sum(s['diskBytesSpilled'] for s in stages) / mb:,.0f} MB "
          f"({sum(s['memoryBytesSpilled'] for s in stages) / mb:,.0f} MB in memory form); stages writing > 200 MB "
          f"(MB, tasks): {big}")
    longest = sorted(stages, key=_stage_seconds, reverse=True)[:args.longest] if args.longest else []
    for stage in longest:
        print(f"  {_stage_seconds(stage):7.1f} s  {stage['numTasks']:5d} tasks  "
              f"{stage['shuffleWriteBytes'] / mb:8,.0f} MB shuffled  stage {stage['stageId']}: {stage['name']}")


def _stage_seconds(stage: dict) -> float:
    """Wall time from the stage's first task to its end (the status API's times are ISO strings ending in GMT)."""
    start, end = (dt.datetime.strptime(stage[key], "%Y-%m-%dT%H:%M:%S.%f%Z")
                  for key in ("firstTaskLaunchedTime", "completionTime"))
    return (end - start).total_seconds()


if __name__ == "__main__":
    main()
