"""Fault soak: SIGKILL the pipeline's driver at random points of bronze, the silver MERGEs and the gold writes, run
it again, and check every table ends as an uninterrupted run leaves it.

``python -m bench.soak --kills 20`` generates a small landing batch and runs the pipeline (``dmp pipeline run`` in a
child process, jobs up to each ``--last-job``) once without interruption as the reference, one phase at a time,
keeping a copy of the lakehouse as each phase found it. Then per phase and kill: copies the lakehouse the phase
started from, runs the pipeline from that phase on, kills its driver (Python and JVM: the whole process group) at a
point drawn uniformly from the phase, or from one job's run with ``--kill-in JOB`` (see KillPoint), runs it again
to the end and compares every bronze, silver, gold and quarantine table with the reference as a multiset of rows
(ingestion and run metadata aside). Any difference, a duplicate or a lost row, fails the soak. Config (Spark
memory) comes from ``DMP_*`` variables."""

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

from pyspark.sql import functions as F
from pyspark.sql.types import MapType
from rich.console import Console
from rich.table import Table

from lib import io
from lib.config import load_config
from lib.generate import GeneratorSettings, generate
from lib.pipeline import selected_jobs, upstream
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
_STARTED = re.compile(r"^\s*started (\S+)")


@dataclass
class ChildRun:
    returncode: int
    started: dict[str, float]  # job -> seconds since the child started when the job started
    finished: dict[str, float]  # job -> seconds since the child started when the job finished
    output: list[str]
    killed_at: float | None = None  # seconds after the start; None: not killed

    def span(self, jobs: list[str]) -> float:
        """Seconds from the start of the first of ``jobs`` to the end of the last to finish."""
        return max(self.finished[job] for job in jobs) - self.started[jobs[0]]


@dataclass(frozen=True)
class KillPoint:
    """Where to kill: ``fraction`` of a window of the reference run (the whole phase, or one job's run), counted in
    the killed run from the moment the window's first job starts. On a machine busier than during the reference the
    window only lasts longer, so a kill still lands inside it; on a quieter one a kill can land after it, which the
    kill's report names. ``first_job`` is the phase's: the killed run starts there."""

    first_job: str
    window_start: str
    reference_length: float
    fraction: float

    @classmethod
    def window(cls, run: ChildRun, first_job: str, jobs: list[str]) -> KillPoint:
        """The window from the start of ``jobs[0]`` to the end of the last of ``jobs``, as ``run`` ran them."""
        return cls(first_job, jobs[0], run.span(jobs), 0.0)

    def due(self, started: dict[str, float], elapsed: float) -> bool:
        return (self.window_start in started
                and elapsed >= started[self.window_start] + self.fraction * self.reference_length)


@dataclass(frozen=True)
class Kill:
    target: str  # a phase, or the one job of --kill-in
    number: int
    seconds_into_phase: float
    job: str  # the last job started before the kill
    in_target: bool  # False: the killed run was past (or not yet at) the target's jobs when killed
    problems: list[str]


def run_child(env: dict[str, str], jobs: list[str], kill: KillPoint | None = None) -> ChildRun:
    """``dmp pipeline run --only ...`` in its own process group; SIGKILLed when ``kill`` is due."""
    dmp = str(Path(sys.executable).with_name("dmp"))
    command = [dmp, "pipeline", "run", *[a for job in jobs for a in ("--only", job)]]
    begun = time.monotonic()
    child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True)
    started: dict[str, float] = {}
    finished: dict[str, float] = {}
    output: list[str] = []

    def read() -> None:
        for line in child.stdout:
            output.append(line)
            if match := _STARTED.match(line):
                started[match.group(1)] = time.monotonic() - begun
            elif match := _FINISHED.match(line):
                finished[match.group(2)] = time.monotonic() - begun

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    killed_at = None
    while kill is not None and child.poll() is None:
        if kill.due(started, time.monotonic() - begun):
            os.killpg(child.pid, signal.SIGKILL)
            killed_at = time.monotonic() - begun
            break
        time.sleep(0.1)
    child.wait()
    reader.join(timeout=10)
    return ChildRun(child.returncode, started, finished, output, killed_at)


def phase_segments(jobs: list[str], phases: dict[str, list[str]]) -> dict[str, list[str]]:
    """Per phase with jobs, the jobs from its first one up to the next phase's first (``privacy`` runs with silver)."""
    firsts = sorted((jobs.index(members[0]), phase) for phase, members in phases.items() if members)
    bounds = [index for index, _ in firsts] + [len(jobs)]
    return {phase: jobs[bounds[n]:bounds[n + 1]] for n, (_, phase) in enumerate(firsts)}


def comparable(spark, config, table):
    df = io.read_table(spark, config, table)
    # Spark's set operations refuse map columns (gold.segments' centroids); their JSON text (keys in the order
    # written) compares.
    return df.select(*[F.to_json(field.name).alias(field.name) if isinstance(field.dataType, MapType)
                       else F.col(field.name) for field in df.schema.fields if field.name not in RUN_METADATA])


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
    parser.add_argument("--last-job", action="append", dest="last_jobs", metavar="JOB",
                        help="run the pipeline up to this job, everything it depends on included (repeat for several; "
                             "default: gold_customer_features)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the data and of the kill times")
    parser.add_argument("--phase", action="append", choices=PHASES, dest="phases",
                        help="kill only in this phase (repeat for several; default: all three)")
    parser.add_argument("--kill-in", action="append", dest="kill_in", metavar="JOB",
                        help="kill only while this job runs, at a point drawn from its run in the reference (repeat "
                             "for several; they take turns); replaces the phases' whole windows")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="dmp-soak-"))
    landing = workdir / "landing"
    if not landing.exists():
        generate(landing, GeneratorSettings(customers=args.customers, days=args.days, seed=args.seed, products=40))
    jobs = selected_jobs(set().union(*map(upstream, args.last_jobs or ["gold_customer_features"])))
    phases = {phase: [job for job in jobs if job.split("_")[0] == phase] for phase in PHASES}
    if unknown := sorted(set(args.kill_in or []) - set(jobs)):
        raise SystemExit(f"--kill-in {', '.join(unknown)}: not among the jobs run ({', '.join(jobs)}); add --last-job")
    # What each kill aims at: a phase's jobs, or (--kill-in) one job; the phase the job belongs to is replayed.
    targets = ({job: (phase, [job]) for job in args.kill_in for phase, members in phases.items() if job in members}
               if args.kill_in else
               {phase: (phase, members) for phase, members in phases.items()
                if members and (not args.phases or phase in args.phases)})
    # A small sample's injected dirt is a larger share than the default gate allows. One PII key for every lakehouse:
    # without it each would make its own and no hashed column would compare.
    base_env = {"DMP_GATES__MAX_ERROR_RATIO": "0.3", "DMP_PII_SALT": "soak", **os.environ,
                "DMP_LANDING_ROOT": str(landing)}

    def lakehouse(name: str) -> dict[str, str]:
        folder = workdir / name
        shutil.rmtree(folder, ignore_errors=True)
        return {**base_env, "DMP_LAKEHOUSE_ROOT": str(folder)}

    reference_env = lakehouse("reference")
    reference_lakehouse = Path(reference_env["DMP_LAKEHOUSE_ROOT"])
    points: dict[str, KillPoint] = {}
    for phase, segment in phase_segments(jobs, phases).items():
        # The lakehouse this phase starts from (none before bronze), copied into every kill of the phase.
        shutil.rmtree(workdir / f"before-{phase}", ignore_errors=True)
        if reference_lakehouse.exists():
            shutil.copytree(reference_lakehouse, workdir / f"before-{phase}")
        console.print(f"reference run of {phase}: {', '.join(segment)} ...")
        reference = run_child(reference_env, segment)
        if reference.returncode != 0:
            raise SystemExit(f"the uninterrupted run failed in {phase} (exit {reference.returncode}); "
                             f"see {reference_lakehouse}:\n{''.join(reference.output[-20:])}")
        for target, (target_phase, members) in targets.items():
            if target_phase == phase:
                points[target] = KillPoint.window(reference, phases[phase][0], members)
    config = load_config()
    spark = spark_session(config)
    reference_config = replace(config, lakehouse_root=str(reference_lakehouse))
    draw = random.Random(args.seed)
    kills: list[Kill] = []
    # Targets take turns, so a soak cut short has still killed every one about as often.
    for number in range(1, args.kills + 1):
        for target, point in points.items():
            phase, members = targets[target]
            env = lakehouse("killed")
            if (workdir / f"before-{phase}").exists():
                shutil.copytree(workdir / f"before-{phase}", env["DMP_LAKEHOUSE_ROOT"])
            rest = jobs[jobs.index(point.first_job):]
            killed = run_child(env, rest, replace(point, fraction=draw.random()))
            if killed.killed_at is None:
                console.print(f"{target} #{number}: the run ended (exit {killed.returncode}) before its kill point; "
                              "not counted")
                if killed.returncode == 0:
                    # The reference ran slower than this machine runs now: later kills are drawn from this run.
                    faster = KillPoint.window(killed, point.first_job, members)
                    points[target] = replace(faster, reference_length=min(point.reference_length,
                                                                          faster.reference_length))
                continue
            rerun = run_child(env, rest)
            problems = (differences(spark, reference_config, replace(config, lakehouse_root=env["DMP_LAKEHOUSE_ROOT"]))
                        if rerun.returncode == 0 else [f"re-run failed with exit {rerun.returncode}"])
            if problems:
                kept = _keep_failure(workdir, f"{target}-{number}", Path(env["DMP_LAKEHOUSE_ROOT"]), killed, rerun)
                problems.append(f"kept in {kept}")
            # The last job started before the kill: still running, or just finished with the next not begun.
            job = list(killed.started)[-1]
            kill = Kill(target, number, killed.killed_at - killed.started[point.first_job], job, job in members,
                        problems)
            kills.append(kill)
            where = "" if kill.in_target else f", outside {target} (not counted in it)"
            console.print(f"{target} #{number}: killed {kill.seconds_into_phase:.1f} s into the phase in {job}{where}, "
                          f"re-run {'; '.join(problems) or 'ok'}")
            spark.catalog.clearCache()
    table = Table("target", "kills in it", "length kills were drawn from (s)",
                  "re-runs equal to the reference", "killed outside it (re-runs equal)", "differences",
                  title=f"SIGKILL soak: {len(jobs)} jobs, {args.customers} customers x {args.days} days")
    for target, point in points.items():
        inside = [k for k in kills if k.target == target and k.in_target]
        after = [k for k in kills if k.target == target and not k.in_target]
        differing = "; ".join(f"#{k.number}: {', '.join(k.problems)}" for k in kills
                              if k.target == target and k.problems)
        table.add_row(target, str(len(inside)), f"{point.reference_length:.1f}",
                      f"{sum(not k.problems for k in inside)} / {len(inside)}",
                      f"{len(after)} ({sum(not k.problems for k in after)})", differing or "-")
    console.print(table)
    if any(k.problems for k in kills):
        raise SystemExit(1)


def _keep_failure(workdir: Path, name: str, lakehouse: Path, killed: ChildRun, rerun: ChildRun) -> Path:
    """The lakehouse a failed re-run left and both runs' output, for reading after the soak."""
    kept = workdir / f"failed-{name}"
    shutil.rmtree(kept, ignore_errors=True)
    shutil.copytree(lakehouse, kept / "lakehouse")
    (kept / "killed.log").write_text("".join(killed.output))
    (kept / "rerun.log").write_text("".join(rerun.output))
    return kept


if __name__ == "__main__":
    main()
