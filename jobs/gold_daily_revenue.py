"""spark-submit entry point: `./spark-submit.sh gold_daily_revenue [spark-submit options]`."""

from lib.cli import run_submitted_job

if __name__ == "__main__":
    run_submitted_job("gold_daily_revenue")
