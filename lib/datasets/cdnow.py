"""CDNOW: 18 months (1997-01 .. 1998-06) of CD purchases by the customers who first bought in 1997 Q1.

The data set of Fader, Hardie & Lee (2005), shipped in the PyPI package ``Lifetimes`` (pinned in pyproject.toml).
``CDNOW_master.txt`` holds all 23,570 customers, ``CDNOW_sample.txt`` the 2,357-customer sample the published
BG/NBD and Gamma-Gamma parameters were estimated on. Customer ids are the master file's, so a sample customer has
the same id either way.

CDNOW has no contact data and no products. Customers get a pseudonymous, undeliverable email (the silver gate
requires one; ``.invalid`` is reserved by RFC 2606) and nothing else; consent is false. Every transaction becomes
one order of the single product ``cdnow-cd``, placed at noon UTC of its day; its lines are priced in whole cents
so that they add up to the transaction's dollar value exactly. Free transactions ($0) are kept: they are purchase
days in the published summaries.
"""

from __future__ import annotations

import csv
import datetime as dt
import importlib.util
import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from lib.schemas import table_schema

PRODUCT_ID = "cdnow-cd"
EMAIL_DOMAIN = "cdnow.invalid"


@dataclass(frozen=True)
class Transaction:
    customer_id: str
    day: dt.date
    cds: int
    cents: int


def dataset_file(name: str) -> Path:
    """A file of Lifetimes' ``datasets`` folder, found without importing lifetimes (it needs pkg_resources)."""
    spec = importlib.util.find_spec("lifetimes")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the CDNOW data ships in the `Lifetimes` package; install the project's dependencies")
    return Path(spec.submodule_search_locations[0]) / "datasets" / name


def transactions(full: bool = False) -> list[Transaction]:
    """CDNOW transactions in file order: the 2,357-customer sample, or all 23,570 customers with ``full``."""
    if full:
        path, id_field, date_field = dataset_file("CDNOW_master.txt"), 0, 1
    else:
        path, id_field, date_field = dataset_file("CDNOW_sample.txt"), 0, 2
    rows = []
    with path.open() as handle:
        for line in handle:
            fields = line.split()
            if not fields or not fields[0].isdigit():  # blank lines and the master file's header
                continue
            cds, dollars = fields[-2:]
            day = dt.datetime.strptime(fields[date_field], "%Y%m%d").date()
            rows.append(Transaction(f"cdnow-{fields[id_field]}", day, int(cds), int(Decimal(dollars) * 100)))
    return rows


def load(landing: Path, full: bool = False) -> dict:
    """Write CDNOW as landing files (customers CSV, products JSON, orders JSON lines per month); return counts."""
    landing = Path(landing)
    rows = transactions(full)
    first_day: dict[str, dt.date] = {}
    for row in rows:
        first_day[row.customer_id] = min(row.day, first_day.get(row.customer_id, row.day))
    _write_customers(landing / "customers" / "cdnow_customers.csv", first_day)
    _write_products(landing / "products" / "cdnow_products.json", rows)
    files = _write_orders(landing / "orders", rows)
    return {
        "dataset": "cdnow_master" if full else "cdnow_sample",
        "customers": len(first_day),
        "orders": len(rows),
        "zero_amount_orders": sum(1 for row in rows if row.cents == 0),
        "products": 1,
        "first_order_day": min(row.day for row in rows).isoformat(),
        "last_order_day": max(row.day for row in rows).isoformat(),
        "order_files": files,
    }


def _noon(day: dt.date) -> str:
    return f"{day.isoformat()}T12:00:00Z"


def _amount(cents: int) -> float:
    return cents / 100


def _write_customers(path: Path, first_day: dict[str, dt.date]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = table_schema("customers").column_names
    with path.open("w", newline="") as handle:
        out = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n", restval="")
        out.writeheader()
        for customer_id, day in sorted(first_day.items()):
            out.writerow({"customer_id": customer_id, "email": f"{customer_id}@{EMAIL_DOMAIN}",
                          "signup_ts": _noon(day), "updated_at": _noon(day),
                          "consent_email": "false", "consent_ads": "false"})


def _write_products(path: Path, rows: list[Transaction]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    mean_price_cents = round(sum(row.cents for row in rows) / sum(row.cds for row in rows))
    product = {"product_id": PRODUCT_ID, "name": "CD", "category": "music", "brand": "CDNOW",
               "price": _amount(mean_price_cents), "currency": "USD", "active": True,
               "updated_at": _noon(min(r.day for r in rows))}
    path.write_text(json.dumps([product], indent=1) + "\n")


def order_items(cds: int, cents: int) -> list[dict]:
    """``cds`` units whose prices, in whole cents, add up to ``cents``: at most two lines, one cent apart."""
    base, extra = divmod(cents, cds)
    lines = [(cds - extra, base), (extra, base + 1)]
    return [{"product_id": PRODUCT_ID, "quantity": quantity, "unit_price": _amount(price)}
            for quantity, price in lines if quantity]


def _write_orders(folder: Path, rows: list[Transaction]) -> dict[str, int]:
    folder.mkdir(parents=True, exist_ok=True)
    by_month: dict[str, list[dict]] = defaultdict(list)
    sequence: Counter[str] = Counter()
    for row in rows:
        sequence[row.customer_id] += 1
        by_month[row.day.strftime("%Y%m")].append({
            "order_id": f"{row.customer_id}-{sequence[row.customer_id]:03d}", "customer_id": row.customer_id,
            "order_ts": _noon(row.day), "updated_at": _noon(row.day), "status": "delivered", "channel": "web",
            "currency": "USD", "items": order_items(row.cds, row.cents), "total_amount": _amount(row.cents),
        })
    files = {}
    for month, orders in sorted(by_month.items()):
        name = f"cdnow_orders_{month}.jsonl"
        orders.sort(key=lambda order: (order["order_ts"], order["order_id"]))
        (folder / name).write_text("".join(json.dumps(o, separators=(",", ":")) + "\n" for o in orders))
        files[name] = len(orders)
    return files
