#!/usr/bin/env bash
# Submit one dmp job to any Spark master: ./spark-submit.sh <job> [spark-submit options ...] [-- job arguments ...]
#   ./spark-submit.sh bronze                                  # local[*]
#   ./spark-submit.sh silver_orders --master spark://host:7077 --executor-memory 4g
#   ./spark-submit.sh pipeline --master spark://host:7077 -- --from silver_orders   # pipeline: --only/--from/--force
# Adds the Delta package (resolved from Maven Central) and its configs, ships the `lib` package to executors as a
# zip, and passes config through DMP_* environment variables (see README). Set SPARK_HOME to use an installed
# Spark; otherwise the spark-submit that pyspark installed into .venv is used.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
job=${1:-}
if [ -z "$job" ] || [ ! -f "$here/jobs/$job.py" ]; then
  echo "usage: ./spark-submit.sh <job> [spark-submit options]; jobs: $(cd "$here/jobs" && ls *.py | sed 's/\.py$//' | tr '\n' ' ')" >&2
  exit 2
fi
shift
python=${DMP_PYTHON:-$here/.venv/bin/python}
[ -x "$python" ] || { echo "no Python at $python: run ./dev.sh setup first (or set DMP_PYTHON)" >&2; exit 2; }
if [ -n "${SPARK_HOME:-}" ]; then submit="$SPARK_HOME/bin/spark-submit"; else submit="$(dirname "$python")/spark-submit"; fi
# One interpreter start for both: the Delta package matching the installed pyspark, and lib's JVM options.
settings=$(cd "$here" && "$python" - <<'PY'
from importlib.metadata import version
from lib.spark import JVM_OPTIONS
spark = ".".join(version("pyspark").split(".")[:2])
print(f"io.delta:delta-spark_{spark}_2.13:{version('delta-spark')}")
print(JVM_OPTIONS)
PY
)
delta_package=${settings%%$'\n'*} jvm_options=${settings#*$'\n'}
mkdir -p "$here/build"
(cd "$here" && rm -f build/dmp_lib.zip && zip -qr build/dmp_lib.zip lib -x '*__pycache__*')
# The driver builds its session from DMP_* config, so tell it the master and app name actually used: a `--master`
# among the options wins over DMP_SPARK__MASTER, and each job shows up as dmp-<job> in the cluster's UI.
master=${DMP_SPARK__MASTER:-local[*]}
previous=
submit_options=()
while [ $# -gt 0 ]; do
  option=$1
  shift
  # What follows `--` goes to the job itself, after its script.
  [ "$option" = -- ] && break
  case "$option" in --master=*) master=${option#--master=} ;; esac
  [ "$previous" = --master ] && master=$option
  previous=$option
  submit_options+=("$option")
done
export DMP_SPARK__MASTER="$master" DMP_SPARK__APP_NAME="${DMP_SPARK__APP_NAME:-dmp-$job}"
export DMP_HOME="$here" PYSPARK_PYTHON="${PYSPARK_PYTHON:-$python}" PYSPARK_DRIVER_PYTHON="${PYSPARK_DRIVER_PYTHON:-$python}"
exec "$submit" \
  --master "$master" \
  --name "$DMP_SPARK__APP_NAME" \
  --packages "$delta_package" \
  --conf spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension \
  --conf spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog \
  --conf spark.sql.session.timeZone=UTC \
  --conf spark.ui.showConsoleProgress=false \
  --conf "spark.driver.extraJavaOptions=$jvm_options" \
  --conf "spark.executor.extraJavaOptions=$jvm_options" \
  --py-files "$here/build/dmp_lib.zip" \
  "${submit_options[@]}" \
  "$here/jobs/$job.py" "$@"
