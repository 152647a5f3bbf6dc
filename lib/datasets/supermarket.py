"""Weka's supermarket.arff: 4,627 real baskets of a New Zealand supermarket, as the product's landing files.

The ARFF has 217 nominal attributes: 216 departments, each ``t`` (the basket holds something from it) or ``?``
(it does not), and ``total {low, high}`` (the basket's value below / above 100). A department is a product
(``dept-001`` ... ``dept-216``, named after the attribute); its category is the block of department numbers it sits
in (``CATEGORY_BLOCKS``: the store numbers its departments by section). Each basket becomes one order of one
synthetic customer (``sm-c-00001`` ...), one line per department at quantity 1 and ``UNIT_PRICE``: the data set
has no prices, and ``total`` is a value band, not an item, so it is not carried over. Orders are placed one
minute apart from ``FIRST_ORDER``. Every record passes the silver gates' critical rules.

The ARFF ships in Debian's ``weka`` package with the Weka jar, whose Apriori the tests use as the independent
reference; ``fetch_weka`` downloads and unpacks that package into a cache directory.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CACHE = Path.home() / ".cache" / "dmp" / "weka"
UNIT_PRICE = 1.00
CURRENCY = "NZD"
FIRST_ORDER = dt.datetime(2020, 1, 6, 8, 0, tzinfo=dt.timezone.utc)
PRESENT = "t"
VALUE_BAND = "total"
# (first department number, last, category): the store's numbering groups its sections.
CATEGORY_BLOCKS = [
    (1, 47, "grocery"), (48, 57, "health and beauty"), (58, 70, "deli and dairy"), (71, 81, "meat"),
    (82, 89, "produce"), (90, 102, "variety"), (103, 130, "grocery"), (131, 179, "service counters"),
    (180, 199, "liquor"), (200, 216, "other"),
]
_ATTRIBUTE = re.compile(r"^@attribute\s+(?:'(?P<quoted>[^']*)'|(?P<bare>\S+))\s+(?P<type>.*)$", re.IGNORECASE)


class WekaUnavailable(RuntimeError):
    """The Weka package could not be fetched; the message says what is missing."""


@dataclass(frozen=True)
class Arff:
    attributes: list[str]
    rows: list[list[str]]

    @property
    def departments(self) -> list[str]:
        return [a for a in self.attributes if a != VALUE_BAND]

    def baskets(self) -> list[list[str]]:
        """Per row, the departments flagged ``t``, in attribute order."""
        return [[name for name, value in zip(self.attributes, row) if name != VALUE_BAND and value == PRESENT]
                for row in self.rows]


def read_arff(path: Path) -> Arff:
    """Parse a (possibly gzipped) ARFF file with unquoted data values, as supermarket.arff is."""
    opener = gzip.open if path.suffix == ".gz" else open
    attributes: list[str] = []
    rows: list[list[str]] = []
    in_data = False
    with opener(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            text = line.strip()
            if not text or text.startswith("%"):
                continue
            if in_data:
                rows.append([value.strip() for value in text.split(",")])
            elif text.lower().startswith("@attribute"):
                match = _ATTRIBUTE.match(text)
                if not match:
                    raise ValueError(f"{path}: cannot read attribute line {text!r}")
                attributes.append(match["quoted"] if match["quoted"] is not None else match["bare"])
            elif text.lower().startswith("@data"):
                in_data = True
    widths = {len(row) for row in rows}
    if widths != {len(attributes)}:
        raise ValueError(f"{path}: data rows have {sorted(widths)} values, expected {len(attributes)}")
    return Arff(attributes, rows)


def product_id(department_number: int) -> str:
    return f"dept-{department_number:03d}"


def category(department_number: int) -> str:
    for first, last, name in CATEGORY_BLOCKS:
        if first <= department_number <= last:
            return name
    raise ValueError(f"department {department_number} is in no block of CATEGORY_BLOCKS")


def load(landing: Path, arff: Path | None = None) -> dict:
    """Write products (JSON array), customers (CSV) and orders (JSON lines) for every non-empty basket."""
    data = read_arff(arff or fetch_weka()[0])
    number = {name: i for i, name in enumerate(data.departments, start=1)}
    stamp = FIRST_ORDER.strftime("%Y-%m-%dT%H:%M:%SZ")
    products = [{"product_id": product_id(i), "name": name, "category": category(i), "brand": None,
                 "price": UNIT_PRICE, "currency": CURRENCY, "active": True, "updated_at": stamp}
                for name, i in number.items()]
    baskets = [b for b in data.baskets() if b]
    for folder in ("products", "customers", "orders"):
        (landing / folder).mkdir(parents=True, exist_ok=True)
    (landing / "products" / "supermarket_products.json").write_text(json.dumps(products, indent=1) + "\n")
    with (landing / "customers" / "supermarket_customers.csv").open("w", newline="") as handle:
        out = csv.writer(handle, lineterminator="\n")
        out.writerow(["customer_id", "email", "phone", "first_name", "last_name", "birth_date", "gender", "city",
                      "country", "signup_ts", "updated_at", "consent_email", "consent_ads"])
        for i in range(1, len(baskets) + 1):
            out.writerow([f"sm-c-{i:05d}", f"shopper{i:05d}@example.com", "", "", "", "", "", "", "", stamp, stamp,
                          "false", "false"])
    lines = 0
    with (landing / "orders" / "supermarket_orders.jsonl").open("w") as handle:
        for i, basket in enumerate(baskets, start=1):
            placed = (FIRST_ORDER + dt.timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%SZ")
            items = [{"product_id": product_id(number[d]), "quantity": 1, "unit_price": UNIT_PRICE} for d in basket]
            lines += len(items)
            handle.write(json.dumps({
                "order_id": f"sm-o-{i:05d}", "customer_id": f"sm-c-{i:05d}", "order_ts": placed, "updated_at": placed,
                "status": "delivered", "channel": "store", "currency": CURRENCY, "items": items,
                "total_amount": round(len(items) * UNIT_PRICE, 2),
            }) + "\n")
    return {"baskets": len(data.rows), "orders": len(baskets), "empty_baskets_skipped": len(data.rows) - len(baskets),
            "order_lines": lines, "products": len(products), "customers": len(baskets)}


def fetch_weka(cache_dir: Path | None = None) -> tuple[Path, Path]:
    """(supermarket.arff, weka.jar) from Debian's ``weka`` package, downloaded with apt-get on first use."""
    cache = Path(cache_dir or DEFAULT_CACHE)
    arff, jar = cache / "supermarket.arff", cache / "weka.jar"
    if arff.exists() and jar.exists():
        return arff, jar
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise WekaUnavailable(
                f"{tool} not found: fetching Weka needs a Debian/Ubuntu machine (apt-get download weka). Elsewhere, "
                f"put supermarket.arff and weka.jar (Weka 3.6) into {cache} yourself"
            )
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as work:
        download = subprocess.run(["apt-get", "download", "weka"], cwd=work, capture_output=True, text=True)
        packages = sorted(Path(work).glob("weka_*.deb"))
        if download.returncode != 0 or not packages:
            raise WekaUnavailable(
                f"`apt-get download weka` failed ({download.stderr.strip()[-300:]}); if apt does not know the "
                f"package yet, run `apt-get update` first"
            )
        unpacked = Path(work) / "unpacked"
        subprocess.run(["dpkg-deb", "-x", str(packages[0]), str(unpacked)], check=True)
        examples = unpacked / "usr" / "share" / "doc" / "weka" / "examples"
        found = [p for p in (examples / "supermarket.arff", examples / "supermarket.arff.gz") if p.exists()]
        weka_jar = unpacked / "usr" / "share" / "java" / "weka.jar"
        if not found or not weka_jar.exists():
            raise WekaUnavailable(f"{packages[0].name} holds no examples/supermarket.arff(.gz) or java/weka.jar")
        with (gzip.open if found[0].suffix == ".gz" else open)(found[0], "rb") as source, arff.open("wb") as target:
            shutil.copyfileobj(source, target)
        shutil.copyfile(weka_jar.resolve(), jar)
    return arff, jar
