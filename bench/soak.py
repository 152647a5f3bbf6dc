"""Fault soak: SIGKILL the pipeline's driver at random points of bronze, the silver MERGEs and the gold writes, run
it again, and check every table ends as an uninterrupted run leaves it.

``python -m bench.soak --kills 20`` generates a small landing batch, runs the pipeline (``dmp pipeline run`` in a
child process, jobs up to ``--last-job``) once without interruption as the reference, then per phase and kill:
starts the same run on a fresh lakehouse, kills its driver (Python and JVM: the whole process group) at a point
drawn uniformly from that phase (its length in the reference run, stretched by how much slower this run reached the
phase: see KillPoint), runs it again to the end and compares every bronze,
silver, gold and quarantine table with the reference as a multiset of rows (ingestion and run metadata aside).
Any difference, a duplicate or a lost row, fails the soak. Config (Spark memory) comes from ``DMP_*`` variables.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from rich.console import Console
from rich.table import Table

from lib import io
from lib.config import load_config
from lib.generate import GeneratorSettings, generate
from lib.pipeline import selected_jobs
from lib.spark import spark_session

console = Console()
# Columns that differ between any two runs by design: when and in which run or batch a row was written, and what
# is measured from that moment (how far a future order is ahead of its ingestion).
RUN_METADATA = {"_record_id", "_ingested_at", "_batch_id", "_quarantined_at", "_run_id", "model_path",
                "model_run_id", "_seconds_ahead_of_ingest"}
COMPARED_LAYERS = ("bronze", "silver", "gold", "quarantine")
# Kill phases, named for the layer their jobs write (bronze, silver_*, gold_*).
PHASES = ("bronze", "silver", "gold")
_FINISHED = re.compile(r"^\s*(succeeded|failed|skipped) (\S+) \(([\d.]+) s\)")


@dataclass
class ChildRun:
    returncode: int
    # job -> (seconds since the child started when the job finished, the job's own seconds)
    finished: dict[str, tuple[float, float]]
    output: list[str]
    killed_at: float | None = None  # seconds after the start; None: not killed


@dataclass(frozen=True)
class KillPoint:
    """Where in a phase to kill: ``fraction`` of its length in the reference run, counted from the moment the job
    before the phase (``after_job``; None: the child's start) finishes, and stretched by how much slower than the
    reference the child reached that moment. A machine busier than during the reference still gets its kill inside
    the phase, instead of after the run has ended."""

    after_job: str | None
    reference_start: float
    reference_length: float
    fraction: float

    def due(self, finished: dict[str, tuple[float, float]], elapsed: float) -> bool:
        if self.after_job is None:
            start = 0.0
        elif self.after_job in finished:
            start = finished[self.after_job][0]
        else:
            return False
        slowdown = start / self.reference_start if self.reference_start > 0 else 1.0
        return elapsed >= start + self.fraction * self.reference_length * slowdown


def run_child(env: dict[str, str], jobs: list[str], kill: KillPoint | None = None) -> ChildRun:
    """``dmp pipeline run --only ...`` in its own process group; SIGKILLed when ``kill`` is due."""
    dmp = str(Path(sys.executable).with_name("dmp"))
    command = [dmp, "pipeline", "run", *[a for job in jobs for a in ("--only", job)]]
    started = time.monotonic()
    child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True)
    finished: dict[str, tuple[float, float]] = {}
    output: list[str] = []

    def read() -> None:
        for line in child.stdout:
            output.append(line)
            match = _FINISHED.match(line)
            if match:
                finished[match.group(2)] = (time.monotonic() - started, float(match.group(3)))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    killed_at = None
    while kill is not None and child.poll() is None:
        if kill.due(finished, time.monotonic() - started):
            os.killpg(child.pid, signal.SIGKILL)
            killed_at = time.monotonic() - started
            break
        time.sleep(0.1)
    child.wait()
    reader.join(timeout=10)
    return ChildRun(child.returncode, finished, output, killed_at)


def kill_points(reference: ChildRun, jobs: list[str], phases: dict[str, list[str]]) -> dict[str, KillPoint]:
    """Per phase that ran, where it starts and how long it took in the reference run (``fraction`` still 0)."""
    points = {}
    for phase, members in phases.items():
        ran = [job for job in members if job in reference.finished]
        if not ran:
            continue
        first = jobs.index(ran[0])
        before = jobs[first - 1] if first > 0 else None
        start = reference.finished[before][0] if before else 0.0
        points[phase] = KillPoint(before, start, max(reference.finished[job][0] for job in ran) - start, 0.0)
    return points


def comparable(spark, config, table):
    df = io.read_table(spark, config, table)
    return df.drop(*[c for c in df.columns if c in RUN_METADATA])


def differences(spark, reference, candidate) -> list[str]:
    """Tables missing, extra or with different rows (as multisets) in ``candidate`` against ``reference``."""
    expected = set(io.list_tables(spark, reference, COMPARED_LAYERS))
    found = set(io.list_tables(spark, candidate, COMPARED_LAYERS))
    problems = [f"missing {t}" for t in sorted(expected - found)] + [f"extra {t}" for t in sorted(found - expected)]
    for table in sorted(expected & found):
        left, right = comparable(spark, reference, table), comparable(spark, candidate, table)
        extra, lost = right.exceptAll(left).count(), left.exceptAll(right).count()
        if extra or lost:
            problems.append(f"{table}: {extra} extra rows, {lost} lost rows")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20, help="kills per phase (bronze, silver, gold)")
    parser.add_argument("--customers", type=int, default=60)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--last-job", default="gold_customer_features",
                        help="run the pipeline up to this job (everything it depends on included)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the data and of the kill times")
    parser.add_argument("--phase", action="append", choices=PHASES, dest="phases",
                        help="kill only in this phase (repeat for several; default: all three)")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="dmp-soak-"))
    landing = workdir / "landing"
    if not landing.exists():
        generate(landing, GeneratorSettings(customers=args.customers, days=args.days, seed=args.seed, products=40))
    jobs = [job for job in selected_jobs() if job in _needed(args.last_job)]
    phases = {phase: [job for job in jobs if job.split("_")[0] == phase] for phase in PHASES}
    # A small sample's injected dirt is a larger share than the default gate allows. One PII key for every lakehouse:
    # without it each would make its own and no hashed column would compare.
    base_env = {"DMP_GATES__MAX_ERROR_RATIO": "0.3", "DMP_PII_SALT": "soak", **os.environ,
                "DMP_LANDING_ROOT": str(landing)}

    def lakehouse(name: str) -> dict[str, str]:
        folder = workdir / name
        shutil.rmtree(folder, ignore_errors=True)
        return {**base_env, "DMP_LAKEHOUSE_ROOT": str(folder)}

    console.print(f"reference run of {len(jobs)} jobs in {workdir} ...")
    reference = run_child(lakehouse("reference"), jobs)
    if reference.returncode != 0:
        raise SystemExit(f"the uninterrupted run failed (exit {reference.returncode}); see {workdir}/reference")
    points = {phase: point for phase, point in kill_points(reference, jobs, phases).items()
              if not args.phases or phase in args.phases}
    config = load_config()
    spark = spark_session(config)
    reference_config = replace(config, lakehouse_root=str(workdir / "reference"))
    draw = random.Random(args.seed)
    results = []
    # Phases take turns, so a soak cut short has still killed every phase about as often.
    for number in range(1, args.kills + 1):
        for phase, point in points.items():
            env = lakehouse("killed")
            killed = run_child(env, jobs, replace(point, fraction=draw.random()))
            if killed.killed_at is None:
                results.append((phase, number, None, "-", killed.returncode, []))
                console.print(f"{phase} #{number}: the run ended before its kill point; not counted")
                continue
            rerun = run_child(env, jobs)
            problems = (differences(spark, reference_config, replace(config, lakehouse_root=env["DMP_LAKEHOUSE_ROOT"]))
                        if rerun.returncode == 0 else [f"re-run failed with exit {rerun.returncode}"])
            if problems:
                kept = _keep_failure(workdir, f"{phase}-{number}", Path(env["DMP_LAKEHOUSE_ROOT"]), killed, rerun)
                problems.append(f"kept in {kept}")
            done = [job for job in jobs if job in killed.finished]
            results.append((phase, number, killed.killed_at, done[-1] if done else "-", killed.returncode, problems))
            console.print(f"{phase} #{number}: killed at {killed.killed_at:.1f} s (last finished: "
                          f"{done[-1] if done else '-'}), re-run {'ok' if not problems else '; '.join(problems)}")
            spark.catalog.clearCache()
    table = Table("phase", "kills", "reference window (s after start)", "re-runs equal to the reference",
                  "differences", title=f"SIGKILL soak: {len(jobs)} jobs, {args.customers} customers x {args.days} days")
    for phase, point in points.items():
        mine = [r for r in results if r[0] == phase and r[2] is not None]
        failed = [r for r in mine if r[5]]
        window = f"{point.reference_start:.1f} - {point.reference_start + point.reference_length:.1f}"
        table.add_row(phase, str(len(mine)), window, f"{len(mine) - len(failed)} / {len(mine)}",
                      "; ".join(f"#{r[1]}: {', '.join(r[5])}" for r in failed) or "-")
    console.print(table)
    if any(r[5] for r in results):
        raise SystemExit(1)


def _keep_failure(workdir: Path, name: str, lakehouse: Path, killed: ChildRun, rerun: ChildRun) -> Path:
    """The lakehouse a failed re-run left and both runs' output, for reading after the soak."""
    kept = workdir / f"failed-{name}"
    shutil.rmtree(kept, ignore_errors=True)
    shutil.copytree(lakehouse, kept / "lakehouse")
    (kept / "killed.log").write_text("".join(killed.output))
    (kept / "rerun.log").write_text("".join(rerun.output))
    return kept


def _needed(last_job: str) -> set[str]:
    from lib.jobs import PIPELINE

    needed, pending = set(), [last_job]
    while pending:
        job = pending.pop()
        if job not in needed:
            needed.add(job)
            pending.extend(PIPELINE[job].depends_on)
    return needed


if __name__ == "__main__":
    main()
