"""`./spark-submit.sh optimize [spark-submit options] [-- TABLE ... --zorder-by COLUMN]`: `dmp optimize` under
spark-submit; also the python_file of the Databricks maintenance task."""

import sys
from pathlib import Path

# spark-submit.sh ships lib as a zip (first on the path); a Databricks bundle syncs lib/ one level above this file.
sys.path.append(str(Path(__file__).resolve().parent.parent))

from lib.cli import app, apply_task_parameters  # noqa: E402 - needs the path above

if __name__ == "__main__":
    app(["optimize", *apply_task_parameters(sys.argv[1:])],
        prog_name="./spark-submit.sh optimize [spark-submit options] --")
