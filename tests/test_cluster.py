"""The pipeline submitted with `./spark-submit.sh pipeline` to a real Spark standalone cluster.

A master and one worker are started from the pip-installed pyspark (which ships `bin/spark-class` but no
`sbin/start-*.sh`), bound to loopback only. Executors then run in JVMs the worker launches, apart from the driver,
so this is the path a real cluster takes: the Delta jars fetched by --packages, `lib` shipped as a zip with
--py-files, schemas/ and expectations/ found by the driver through DMP_HOME.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pyspark
import pytest

from lib.generate import GeneratorSettings, generate
from lib.pipeline import selected_jobs, upstream

ROOT = Path(__file__).resolve().parent.parent
SPARK_CLASS = ROOT / ".venv" / "bin" / "spark-class"
# Landing to the customer profile, purchase patterns and recommendations: every layer, the Python UDF that needs lib
# on the executors (lib/clv.py) and the three MLlib models (KMeans, FPGrowth, ALS with its checkpoints). The other
# gold jobs and the campaigns need nothing else from a cluster, and each costs this 1-core cluster half a minute.
CLUSTER_JOBS = selected_jobs(upstream("gold_recommendations") - {"silver_campaigns"}
                             | {"gold_daily_revenue", "gold_patterns"})
# One fit per model: the models' choices are tested elsewhere, here that they run on executors.
ONE_FIT_EACH = {"DMP_SEGMENTS__RESTARTS": "1", "DMP_SEGMENTS__K_MAX": "4", "DMP_RECOMMENDATIONS__RANKS": "10",
                "DMP_RECOMMENDATIONS__ALPHAS": "10", "DMP_RECOMMENDATIONS__HOLDOUT_DAYS": "1"}
# Small enough for a 2-core machine that also runs the test session's own local Spark.
RESOURCES = ["--driver-memory", "1g", "--executor-memory", "1g", "--total-executor-cores", "1",
             # Short-lived JVMs on tiny data: C2 compilation costs more CPU than it ever saves here.
             "--driver-java-options", "-XX:TieredStopAtLevel=1",
             "--conf", "spark.executor.extraJavaOptions=-XX:TieredStopAtLevel=1"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def cluster_env() -> dict[str, str]:
    # SPARK_HOME spares spark-class its lookup through whatever `python3` is on PATH (which may lack pyspark).
    return {**os.environ, "SPARK_HOME": str(Path(pyspark.__file__).parent), "SPARK_LOCAL_IP": "127.0.0.1"}


def read_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


@dataclass
class Cluster:
    master_url: str
    master_json: str
    worker_json: str
    work_dir: Path
    logs: list[Path]

    def log_tails(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text()[-2000:]}" for log in self.logs if log.exists())


def _start(args: list[str], log: Path) -> subprocess.Popen:
    # A session of its own, so the finalizer can kill the JVM and every executor it launched as one group.
    return subprocess.Popen([str(SPARK_CLASS), *args], env=cluster_env(), stdout=log.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def _stop(process: subprocess.Popen) -> None:
    for sig, grace in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(grace)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture
def standalone_cluster(tmp_path):
    port, ui, worker_port, worker_ui = (free_port() for _ in range(4))
    logs, work_dir = [tmp_path / "master.log", tmp_path / "worker.log"], tmp_path / "worker-work"
    master_url = f"spark://127.0.0.1:{port}"
    processes = [_start(["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
                         "--webui-port", str(ui)], logs[0])]
    try:
        processes.append(_start(["org.apache.spark.deploy.worker.Worker", master_url, "--host", "127.0.0.1",
                                 "--port", str(worker_port), "--webui-port", str(worker_ui), "--cores", "1",
                                 "--memory", "1g", "--work-dir", str(work_dir)], logs[1]))
        cluster = Cluster(master_url, f"http://127.0.0.1:{ui}/json/", f"http://127.0.0.1:{worker_ui}/json/",
                          work_dir, logs)
        deadline = time.monotonic() + 90
        while True:
            try:
                if [w["state"] for w in read_json(cluster.master_json)["workers"]] == ["ALIVE"]:
                    break
            except OSError:
                pass  # the master's web UI is not up yet
            assert time.monotonic() < deadline, "worker did not register with the master\n" + cluster.log_tails()
            assert all(p.poll() is None for p in processes), "master or worker exited\n" + cluster.log_tails()
            time.sleep(1)
        yield cluster
    finally:
        for process in reversed(processes):
            _stop(process)


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_pipeline_submitted_to_a_standalone_cluster_publishes_bronze_to_gold(standalone_cluster, tmp_path, spark):
    cluster = standalone_cluster
    landing, lake = tmp_path / "landing", tmp_path / "lake"
    generate(landing, GeneratorSettings(customers=60, days=3, seed=3, products=30))
    env = {**cluster_env(), "DMP_LANDING_ROOT": str(landing), "DMP_LAKEHOUSE_ROOT": str(lake),
           # A few hundred rows: one shuffle partition, not one per task slot of a bigger machine.
           "DMP_SPARK__SHUFFLE_PARTITIONS": "1", **ONE_FIT_EACH}

    only = [option for job in CLUSTER_JOBS for option in ("--only", job)]
    done = subprocess.run([str(ROOT / "spark-submit.sh"), "pipeline", "--master", cluster.master_url, *RESOURCES,
                           "--", *only], env=env, capture_output=True, text=True, timeout=1400)
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"

    # One application on this master, with its executor on the worker.
    apps = read_json(cluster.master_json)["completedapps"]
    assert [(app["name"], app["state"]) for app in apps] == [("dmp-pipeline", "FINISHED")]
    worker = read_json(cluster.worker_json)
    # The executor may still be shutting down: it counts wherever the worker lists it.
    executors = worker["executors"] + worker["finishedexecutors"]
    assert {e["appid"] for e in executors} == {apps[0]["id"]}
    # --py-files delivered the lib zip into the executor's working directory, where its Python workers run.
    for executor in executors:
        assert (cluster.work_dir / executor["appid"] / str(executor["id"]) / "dmp_lib.zip").is_file()

    runs = spark.read.format("delta").load(str(lake / "ops" / "job_runs")).collect()
    in_order = dict.fromkeys(r["job"] for r in sorted(runs, key=lambda r: r["started_at"]))
    assert list(in_order) == selected_jobs(CLUSTER_JOBS), "--only after `--` chose the jobs"
    assert all(r["status"] == "succeeded" and r["balanced"] for r in runs), [r.asDict() for r in runs]
    assert len({r["run_id"] for r in runs}) == 1, "one spark-submit is one pipeline run"
    for table in ("silver/orders", "gold/daily_revenue", "gold/customer_profile", "gold/frequent_itemsets",
                  "gold/recommendations", "gold/similar_products"):
        assert spark.read.format("delta").load(str(lake / table)).count() > 0, table
