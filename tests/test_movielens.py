"""MovieLens ratings as landing files: every rating a view, every liked rating an order, and silver takes them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lib.datasets import movielens
from lib.pipeline import run_pipeline
from tests.conftest import make_config

USERS = 3


@pytest.fixture(scope="module")
def sample():
    frame = movielens.ratings()
    return frame[frame["userId"].isin(sorted(frame["userId"].unique())[:USERS])]


@pytest.fixture(scope="module")
def landing(sample, tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("movielens")
    return root, movielens.load(root, users=USERS)


def _lines(folder: Path) -> list[dict]:
    return [json.loads(line) for path in sorted(folder.glob("*.jsonl")) for line in path.read_text().splitlines()]


def test_every_rating_is_a_view_and_every_liked_rating_an_order_of_that_movie(sample, landing):
    root, written = landing
    events, orders = _lines(root / "events"), _lines(root / "orders")
    assert written["ratings"] == len(sample) == len(events) == written["events"]
    assert {(e["customer_id"], e["product_id"]) for e in events} == {
        (f"ml-u-{r.userId}", f"ml-m-{r.movieId}") for r in sample.itertuples()}
    liked = sample[sample["rating"] >= movielens.LIKED_RATING]
    assert len(orders) == len(liked) == written["orders"] > 0
    assert sorted((o["customer_id"], o["items"][0]["product_id"], o["order_ts"]) for o in orders) == sorted(
        (f"ml-u-{r.userId}", f"ml-m-{r.movieId}", movielens._iso(r.timestamp)) for r in liked.itertuples())
    products = json.loads((root / "products" / "movielens_products.json").read_text())
    assert len(products) == sample["movieId"].nunique() == written["products"]
    assert all(p["category"] and "|" not in p["category"] for p in products)
    assert written["customers"] == USERS


@pytest.mark.slow
def test_silver_publishes_every_customer_product_and_order_unchanged(spark, landing, tmp_path):
    root, written = landing
    config = make_config(tmp_path, root)
    runs = run_pipeline(spark, config, ["bronze", "silver_customers", "silver_products", "silver_orders"])
    assert all(run.ok for run in runs), [(run.job, run.error) for run in runs]
    tables = {t.table: t for run in runs for t in run.tables}
    assert tables["silver.customers"].published == written["customers"]
    assert tables["silver.products"].published == written["products"]
    assert tables["silver.orders"].published == written["orders"]
    assert sum(t.quarantined for t in tables.values()) == 0
