"""A small lakehouse where orders arrive before their customer: built through the CLI, shared by the status and
quarantine tests (one pipeline run for both)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from typer.testing import CliRunner, Result

from lib.cli import app

CUSTOMER_COLUMNS = ("customer_id,email,phone,first_name,last_name,birth_date,gender,city,country,signup_ts,"
                    "updated_at,consent_email,consent_ads")


def customer(customer_id: str) -> str:
    return (f"{customer_id},{customer_id}@example.com,+33612345678,Ana,Ruiz,1980-01-01,f,Paris,FR,"
            f"2026-01-01T09:00:00Z,2026-01-01T09:00:00Z,true,false")


def order(order_id: str, customer_id: str, updated_at: str = "2026-01-05T10:00:00Z", unit_price: float = 10.0,
          quantity: int = 2) -> str:
    return json.dumps({
        "order_id": order_id, "customer_id": customer_id, "order_ts": "2026-01-05T10:00:00Z",
        "updated_at": updated_at, "status": "placed", "channel": "web", "currency": "EUR",
        "items": [{"product_id": "p-1", "quantity": quantity, "unit_price": unit_price}],
        "total_amount": quantity * unit_price,
    })


# o-late-1 and both versions of o-late-2 belong to c-late, who arrives a day later; o-never's customer never
# arrives and o-negative breaks another rule.
ORDERS = {
    "o-1": order("o-1", "c-1"),
    "o-2": order("o-2", "c-2"),
    "o-late-1": order("o-late-1", "c-late"),
    "o-late-2 v1": order("o-late-2", "c-late", quantity=1),
    "o-late-2 v2": order("o-late-2", "c-late", updated_at="2026-01-05T12:00:00Z", quantity=3),
    "o-never": order("o-never", "c-never"),
    "o-negative": order("o-negative", "c-1", unit_price=-1.0),
}
PIPELINE_JOBS = ["bronze", "silver_customers", "silver_products", "silver_orders"]


@dataclass(frozen=True)
class LateCustomerLakehouse:
    root: Path
    env: dict[str, str]
    first_replay: Result
    second_replay: Result

    def invoke(self, *args: str) -> Result:
        return CliRunner().invoke(app, list(args), env=self.env)


def build(root: Path) -> LateCustomerLakehouse:
    """Land customers c-1, c-2, one product and ORDERS; run the pipeline (the c-late and c-never orders and
    o-negative are quarantined); land c-late; run bronze and silver_customers; replay orders twice."""
    landing = root / "landing"
    env = {"DMP_LANDING_ROOT": str(landing), "DMP_LAKEHOUSE_ROOT": str(root / "lakehouse"),
           # Most of these few orders are dirty on purpose: the gate must quarantine them, not stop the job.
           "DMP_GATES__MAX_ERROR_RATIO": "1.0"}
    for folder in ("customers", "products", "orders"):
        (landing / folder).mkdir(parents=True)
    (landing / "customers" / "customers_1.csv").write_text(
        "\n".join([CUSTOMER_COLUMNS, customer("c-1"), customer("c-2")]) + "\n")
    (landing / "products" / "products_1.json").write_text(json.dumps([{
        "product_id": "p-1", "name": "Mug", "category": "kitchen", "brand": "b-1", "price": 10.0, "currency": "EUR",
        "updated_at": "2026-01-01T00:00:00Z"}]))
    (landing / "orders" / "orders_1.jsonl").write_text("\n".join(ORDERS.values()) + "\n")

    def invoke(*args: str) -> Result:
        result = CliRunner().invoke(app, list(args), env=env)
        assert result.exit_code == 0, result.output
        return result

    invoke("pipeline", "run", *[arg for job in PIPELINE_JOBS for arg in ("--only", job)])
    (landing / "customers" / "customers_2.csv").write_text("\n".join([CUSTOMER_COLUMNS, customer("c-late")]) + "\n")
    invoke("pipeline", "run", "--only", "bronze", "--only", "silver_customers")
    first, second = invoke("quarantine", "replay", "orders"), invoke("quarantine", "replay", "orders")
    return LateCustomerLakehouse(root, env, first, second)
