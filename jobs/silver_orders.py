"""spark-submit entry point for the `silver_orders` job: `./spark-submit.sh silver_orders [spark-submit options]`."""

from lib.cli import run_submitted_job

if __name__ == "__main__":
    run_submitted_job("silver_orders")
