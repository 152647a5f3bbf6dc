"""`./spark-submit.sh pipeline [spark-submit options]`: the whole job graph in one application, in dependency order,
skipping what is up to date (the same run as `dmp pipeline run`)."""

import sys
from pathlib import Path

# spark-submit.sh ships lib as a zip (first on the path); a Databricks bundle syncs lib/ one level above this file.
sys.path.append(str(Path(__file__).resolve().parent.parent))

from lib.cli import run_submitted_job  # noqa: E402 - needs the path above

if __name__ == "__main__":
    run_submitted_job(None, sys.argv[1:])
