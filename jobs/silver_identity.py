"""spark-submit entry point: `./spark-submit.sh silver_identity [spark-submit options]`."""

from lib.cli import run_submitted_job

if __name__ == "__main__":
    run_submitted_job("silver_identity")
