"""`./spark-submit.sh optimize [spark-submit options] [-- TABLE ... --zorder-by COLUMN]`: `dmp optimize` under
spark-submit; also the python_file of the Databricks maintenance task."""

import os
import sys
from pathlib import Path

# spark-submit.sh ships lib as a zip (first on the path); a Databricks bundle syncs lib/ one level above this file.
sys.path.append(str(Path(__file__).resolve().parent.parent))
# Task parameters of the form DMP_<SETTING>=value (the bundle passes the job's parameters so) override the
# environment for this run only.
os.environ.update(arg.split("=", 1) for arg in sys.argv[1:] if arg.startswith("DMP_") and "=" in arg)

from lib.cli import app  # noqa: E402 - needs the path above

if __name__ == "__main__":
    app(["optimize", *(arg for arg in sys.argv[1:] if not (arg.startswith("DMP_") and "=" in arg))],
        prog_name="./spark-submit.sh optimize [spark-submit options] --")
