"""`./spark-submit.sh gold_customer_profile [spark-submit options]`; also the python_file of its Databricks task."""

import sys
from pathlib import Path

# spark-submit.sh ships lib as a zip (first on the path); a Databricks bundle syncs lib/ one level above this file.
sys.path.append(str(Path(__file__).resolve().parent.parent))

from lib.cli import run_submitted_job  # noqa: E402 - needs the path above

if __name__ == "__main__":
    run_submitted_job("gold_customer_profile", sys.argv[1:])
