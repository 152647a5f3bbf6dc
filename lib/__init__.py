"""dmp: marketing data-management platform on Spark + Delta Lake."""

import os
from pathlib import Path

# schemas/ and expectations/ are data beside the package. When lib runs from a zip shipped with --py-files,
# spark-submit.sh points DMP_HOME at the checkout so the driver still finds them.
PROJECT_ROOT = Path(os.environ.get("DMP_HOME") or Path(__file__).resolve().parent.parent)
