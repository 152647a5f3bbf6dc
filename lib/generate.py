"""Sample landing data for every source, with dirt injected at known rates and the truth written beside it.

Deterministic for a seed (``random.Random`` streams drawn in a fixed order) and streamed: each day's orders and
events are written as they are drawn, so memory holds per-customer state, never the events themselves.

``ground_truth/`` records what later stages must find: the count and the line of every injected fault, each
customer's behavioural archetype, category tastes and style tastes (with each product's style), the planted item
bundles, the cookie -> customer identity links, bots, duplicate-person groups, privacy requests and the planted A/B
uplift.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import json
import random
import shutil
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

CATEGORIES = ["apparel", "shoes", "beauty", "home", "kitchen", "electronics", "books", "toys", "sports", "garden"]
# Drawn uniformly: 90% of orders end up as revenue, 5% cancelled, 5% returned.
STATUSES = ["placed", "shipped", *["delivered"] * 16, "cancelled", "returned"]
CHANNELS = ["web", "app", "store"]
# Within a category a known customer picks products by style (a latent taste no product column shows): each product
# has one of STYLES styles, each customer a Dirichlet(STYLE_CONCENTRATION) preference over them, so a few styles
# dominate. STYLE_FLOOR keeps every product reachable.
STYLES, STYLE_CONCENTRATION, STYLE_FLOOR = 5, 0.2, 0.02
# Every so many products is discontinued (active false): still in the history, never to be recommended.
DISCONTINUED_EVERY = 20
CITIES = [("Berlin", "DE", "Germany", "+49"), ("Munich", "DE", "Germany", "+49"), ("Paris", "FR", "France", "+33"),
          ("Lyon", "FR", "France", "+33"), ("Madrid", "ES", "Spain", "+34"), ("Milan", "IT", "Italy", "+39"),
          ("Vienna", "AT", "Austria", "+43"), ("Amsterdam", "NL", "Netherlands", "+31")]
FIRST_NAMES = ["Anna", "Ben", "Clara", "David", "Elena", "Felix", "Greta", "Hugo", "Ines", "Jonas", "Lea", "Marco"]
LAST_NAMES = ["Muller", "Schmidt", "Dubois", "Garcia", "Rossi", "Novak", "Jansen", "Weber", "Martin", "Lopez"]
USER_AGENTS = ["Mozilla/5.0 (Windows NT 10.0) Chrome/131", "Mozilla/5.0 (iPhone) Safari/18",
               "Mozilla/5.0 (Macintosh) Firefox/133", "DMPShop-App/4.2 (Android 15)"]
BOT_AGENTS = ["Googlebot/2.1 (+http://www.google.com/bot.html)", "AhrefsBot/7.0", "python-requests/2.32 crawler"]


@dataclass(frozen=True)
class Archetype:
    orders_per_day: float
    basket_mean: float
    spend: float  # price level multiplier the customer gravitates to
    sessions_per_day: float
    active_until: float = 1.0  # share of the period after which the customer stops buying (churn)
    joins_after: float = 0.0  # share of the period before which the customer has not signed up


# Each archetype has one behaviour that sets it apart, so a segmentation can find them again: champions buy and
# visit most, bargain hunters buy the cheapest quarter, window shoppers browse and never buy, one-timers buy once,
# churned customers stop buying and visiting after the first third, new customers sign up in the last third.
ARCHETYPES = {
    "champion": Archetype(0.35, 3.0, 1.4, 1.0),
    "loyal": Archetype(0.10, 2.2, 1.0, 0.35),
    "bargain_hunter": Archetype(0.10, 2.5, 0.5, 0.35),
    "window_shopper": Archetype(0.0, 1.2, 1.0, 0.8),
    "one_timer": Archetype(0.0, 1.5, 1.0, 0.1),
    "churned": Archetype(0.2, 2.0, 1.0, 0.5, active_until=0.35),
    "new": Archetype(0.15, 2.0, 1.0, 0.5, joins_after=0.6),
}
ARCHETYPE_WEIGHTS = {"champion": 0.06, "loyal": 0.2, "bargain_hunter": 0.16, "window_shopper": 0.18,
                     "one_timer": 0.15, "churned": 0.12, "new": 0.13}


@dataclass(frozen=True)
class DirtRates:
    """Share of a source's records that get each kind of dirt; a dirty record gets exactly one kind."""

    exact_duplicate: float = 0.01
    resent_newer: float = 0.01
    null_required: float = 0.005
    malformed_json: float = 0.003
    wrong_type: float = 0.005
    negative_price: float = 0.003
    future_timestamp: float = 0.003
    unknown_customer: float = 0.003
    mixed_case_email: float = 0.05


# Which kinds each source can carry (a products JSON array stays valid; emails only exist on customers).
SOURCE_KINDS = {
    "orders": ["exact_duplicate", "resent_newer", "null_required", "malformed_json", "wrong_type", "negative_price",
               "future_timestamp", "unknown_customer"],
    "customers": ["exact_duplicate", "resent_newer", "null_required", "mixed_case_email"],
    "events": ["exact_duplicate", "null_required", "malformed_json", "future_timestamp"],
}


@dataclass(frozen=True)
class GeneratorSettings:
    customers: int = 2000
    days: int = 60
    seed: int = 42
    start_date: dt.date = dt.date(2026, 1, 1)
    products: int = 200
    rates: DirtRates = field(default_factory=DirtRates)


@dataclass
class Customer:
    customer_id: str
    archetype: str
    tastes: list[float]
    cookies: list[str]
    signup_day: int
    record: dict
    arm: str | None = None
    style_tastes: list[float] = field(default_factory=list)
    # A customer whose CRM record is broken (required field missing) places no orders in the sample, so every
    # order's ground truth stays exact; orphaned orders are a pipeline behaviour tested on their own.
    record_broken: bool = False


class LandingWriter:
    """Appends records to per-source landing files and keeps the counts and lines of injected dirt."""

    def __init__(self, root: Path):
        self.root = root
        self.rows_written: Counter[str] = Counter()
        self.kinds: dict[str, Counter[str]] = {source: Counter() for source in SOURCE_KINDS}
        self.dirt_records: list[tuple[str, str, str, str, int]] = []
        self.bots: list[tuple[str, str]] = []
        self._lines: Counter[str] = Counter()

    def line(self, source: str, handle: IO[str], text: str) -> int:
        handle.write(text + "\n")
        self.rows_written[source] += 1
        self._lines[handle.name] += 1
        return self._lines[handle.name]

    def header(self, handle: IO[str], fields: list[str]) -> None:
        """A CSV header: a line of the file (line numbers stay true) but not a record."""
        handle.write(",".join(fields) + "\n")
        self._lines[handle.name] += 1

    def dirt(self, source: str, kind: str, key: str, handle: IO[str], line_no: int) -> None:
        self.kinds[source][kind] += 1
        self.dirt_records.append((source, kind, key, str(Path(handle.name).relative_to(self.root)), line_no))


def generate(out_dir: Path, settings: GeneratorSettings = GeneratorSettings()) -> dict:
    """Write landing files for every source under ``out_dir`` and ``out_dir/ground_truth``; return the dirt summary."""
    out_dir = Path(out_dir)
    for folder in ("customers", "products", "orders", "events", "campaigns", "privacy_requests", "ground_truth"):
        (out_dir / folder).mkdir(parents=True, exist_ok=True)
    rng = random.Random(settings.seed)
    writer = LandingWriter(out_dir)
    products = _products(rng, settings)
    bundles = _bundles(rng, products)
    customers = _customers(rng, settings)
    duplicate_people = _duplicate_people(rng, customers)
    campaigns, ab_test = _campaigns(rng, settings)
    _assign_arms(rng, customers, ab_test)
    product_styles = _assign_styles(random.Random(f"styles-{settings.seed}"), products, customers)

    _write_products(out_dir, settings, products)
    _write_campaigns(out_dir, settings, campaigns)
    pending_resends: dict[str, list[dict]] = {"orders": [], "customers": []}
    order_counter = iter(range(1, 10**9))
    event_counter = iter(range(1, 10**9))
    for day in range(settings.days):
        date = settings.start_date + dt.timedelta(days=day)
        stamp = date.strftime("%Y%m%d")
        with (out_dir / "customers" / f"customers_{stamp}.csv").open("w", newline="") as handle:
            _write_customers_day(rng, writer, handle, settings, day, customers, duplicate_people, pending_resends)
        with (out_dir / "orders" / f"orders_{stamp}.jsonl").open("w") as orders_file, \
                (out_dir / "events" / f"events_{stamp}.jsonl").open("w") as events_file:
            day_writer = DayWriter(rng, writer, settings, date, day, orders_file, events_file, products, bundles,
                                   campaigns, ab_test, order_counter, event_counter, pending_resends,
                                   product_styles)
            day_writer.write(customers)
    privacy = _write_privacy_requests(rng, out_dir, settings, customers)

    truth = _dirt_summary(writer, settings)
    _write_ground_truth(out_dir / "ground_truth", truth, writer, customers, duplicate_people, bundles, ab_test,
                        privacy, product_styles)
    return truth


# --- catalogue, people, campaigns ---------------------------------------------------------------------------

def _products(rng: random.Random, settings: GeneratorSettings) -> list[dict]:
    products = []
    for i in range(1, settings.products + 1):
        category = CATEGORIES[(i - 1) % len(CATEGORIES)]
        price = round(min(500.0, rng.lognormvariate(3.2, 0.7)), 2)
        products.append({"product_id": f"p-{i:04d}", "name": f"{category.title()} item {i}", "category": category,
                         "brand": f"brand-{rng.randint(1, 25):02d}", "price": price, "currency": "EUR",
                         "active": i % DISCONTINUED_EVERY != 0,
                         "updated_at": _iso(dt.datetime.combine(settings.start_date, dt.time(0, 0)))})
    return products


def _assign_styles(rng: random.Random, products: list[dict], customers: list[Customer]) -> dict[str, int]:
    """Each product's style and each customer's style tastes, from a stream of their own so that adding them left
    every other draw of a seed as it was."""
    for customer in customers:
        gammas = [rng.gammavariate(STYLE_CONCENTRATION, 1.0) for _ in range(STYLES)]
        customer.style_tastes = [g / sum(gammas) for g in gammas]
    return {p["product_id"]: rng.randrange(STYLES) for p in products}


def _bundles(rng: random.Random, products: list[dict]) -> list[list[str]]:
    """Products bought together far more often than chance; bundle members never overlap."""
    chosen = rng.sample([p["product_id"] for p in products], 13)
    return [chosen[0:2], chosen[2:4], chosen[4:7], chosen[7:10], chosen[10:13]]


def _customers(rng: random.Random, settings: GeneratorSettings) -> list[Customer]:
    names, weights = list(ARCHETYPE_WEIGHTS), list(ARCHETYPE_WEIGHTS.values())
    customers = []
    for i in range(1, settings.customers + 1):
        archetype = rng.choices(names, weights)[0]
        profile = ARCHETYPES[archetype]
        signup_day = int(settings.days * profile.joins_after) + (rng.randrange(max(1, settings.days // 3))
                                                                 if profile.joins_after else 0)
        signup_day = min(signup_day, settings.days - 1)
        gammas = [rng.gammavariate(0.4, 1.0) for _ in CATEGORIES]
        tastes = [g / sum(gammas) for g in gammas]
        cookies = [f"a-{i:06d}-{k}" for k in range(rng.choice([1, 1, 2, 3]))]
        city, country, country_name, prefix = rng.choice(CITIES)
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        signed_up = dt.datetime.combine(settings.start_date, dt.time()) + dt.timedelta(
            days=signup_day - (0 if profile.joins_after else rng.randrange(1, 700)), seconds=rng.randrange(86400))
        record = {
            "customer_id": f"c-{i:06d}", "email": f"{first.lower()}.{last.lower()}.{i}@example.com",
            "phone": _phone(rng, prefix), "first_name": first, "last_name": last,
            "birth_date": (dt.date(1950, 1, 1) + dt.timedelta(days=rng.randrange(365 * 55))).isoformat(),
            "gender": rng.choice(["f", "m", "f", "m", "d"]), "city": city,
            "country": rng.choice([country, country_name, country.lower()]),
            "signup_ts": _iso(signed_up, rng), "updated_at": _iso(signed_up, rng),
            "consent_email": str(rng.random() < 0.7).lower(), "consent_ads": str(rng.random() < 0.5).lower(),
        }
        customers.append(Customer(record["customer_id"], archetype, tastes, cookies, signup_day, record))
    return customers


def _phone(rng: random.Random, prefix: str) -> str:
    number = f"{rng.randint(30, 89)}{rng.randint(1000000, 9999999)}"
    return rng.choice([f"{prefix} {number[:2]} {number[2:]}", f"0{number[:2]}-{number[2:]}",
                       f"(0{number[:2]}) {number[2:]}", f"{prefix}{number}"])


def _duplicate_people(rng: random.Random, customers: list[Customer]) -> dict[str, str]:
    """~1% of customers register twice with the same email in another case: new customer_id -> original id."""
    duplicates = {}
    for original in rng.sample(customers, max(1, len(customers) // 100)):
        duplicates[f"c-9{original.customer_id[2:]}"] = original.customer_id
    return duplicates


def _campaigns(rng: random.Random, settings: GeneratorSettings) -> tuple[list[dict], dict]:
    last = settings.start_date + dt.timedelta(days=settings.days - 1)
    campaigns = []
    for i, (channel, objective) in enumerate([("email", "retention"), ("email", "conversion"), ("ads", "awareness"),
                                              ("ads", "conversion"), ("social", "awareness"), ("email", "winback"),
                                              ("social", "conversion"), ("ads", "retargeting")], start=1):
        start = settings.start_date + dt.timedelta(days=rng.randrange(max(1, settings.days // 2)))
        campaigns.append({"campaign_id": f"cmp-{i:02d}", "name": f"{objective.title()} {channel} {i}",
                          "channel": channel, "objective": objective, "start_date": start.isoformat(),
                          "end_date": last.isoformat(), "daily_budget": f"{rng.choice([50, 100, 250, 500])}.00",
                          "currency": "EUR", "variants": "", "updated_at": _iso(dt.datetime.combine(start, dt.time()))})
    ab = campaigns[1]
    ab["variants"] = "A|B"
    ab_test = {"campaign_id": ab["campaign_id"], "start_day": (dt.date.fromisoformat(ab["start_date"])
                                                               - settings.start_date).days,
               "conversion_probability": {"A": 0.10, "B": 0.16}}
    ab_test["planted_absolute_uplift"] = round(ab_test["conversion_probability"]["B"]
                                               - ab_test["conversion_probability"]["A"], 4)
    # "A|B" plans an even split (_assign_arms draws the arm uniformly); A is the control, B the treatment.
    ab_test.update(control_variant="A", treatment_variant="B", planned_split={"A": 0.5, "B": 0.5})
    return campaigns, ab_test


def _assign_arms(rng: random.Random, customers: list[Customer], ab_test: dict) -> None:
    for customer in customers:
        if customer.record["consent_email"] == "true" and customer.signup_day <= ab_test["start_day"]:
            customer.arm = rng.choice("AB")


# --- per-day writing -------------------------------------------------------------------------------------

def _write_customers_day(rng, writer: LandingWriter, handle, settings, day, customers, duplicate_people,
                         pending_resends) -> None:
    out = csv.DictWriter(handle, fieldnames=list(customers[0].record), lineterminator="\n")
    writer.header(handle, out.fieldnames)
    rates = settings.rates
    for customer in customers:
        if customer.signup_day != day:
            continue
        kind = _write_customer(rng, writer, handle, out, dict(customer.record), rates, pending_resends, day, settings)
        customer.record_broken = kind == "null_required"
    if day == 0:
        for duplicate_id, original_id in duplicate_people.items():
            original = next(c for c in customers if c.customer_id == original_id).record
            # A second registration of the same person: a person-level duplicate (person_groups.csv), not dirt.
            record = dict(original, customer_id=duplicate_id, email=original["email"].upper())
            writer.line("customers", handle, _csv_line(out, record))
    for record in pending_resends["customers"]:
        writer.line("customers", handle, _csv_line(out, record))
    pending_resends["customers"] = []


def _write_customer(rng, writer, handle, out, record, rates, pending_resends, day, settings) -> str | None:
    kind = _dirt_kind(rng, rates, "customers")
    key = record["customer_id"]
    if kind == "null_required":
        record["email"] = ""
    elif kind == "mixed_case_email":
        local, domain = record["email"].split("@")
        record["email"] = f"  {local.title()}@{domain.upper()} "
    line_no = writer.line("customers", handle, _csv_line(out, record))
    if kind in ("null_required", "mixed_case_email"):
        writer.dirt("customers", kind, key, handle, line_no)
    elif kind == "exact_duplicate":
        writer.dirt("customers", kind, key, handle, writer.line("customers", handle, _csv_line(out, record)))
    elif kind == "resent_newer":
        writer.dirt("customers", kind, key, handle, line_no)
        newer = dict(record, city=rng.choice(CITIES)[0], updated_at=_iso(
            dt.datetime.combine(settings.start_date, dt.time()) + dt.timedelta(days=day + 1, hours=3)))
        if day + 1 < settings.days:
            pending_resends["customers"].append(newer)
        else:
            writer.line("customers", handle, _csv_line(out, newer))
    return kind


def _csv_line(out: csv.DictWriter, record: dict) -> str:
    """Render one CSV row without its newline (LandingWriter.line adds it)."""
    buffer = io.StringIO()
    csv.DictWriter(buffer, fieldnames=out.fieldnames, lineterminator="").writerow(record)
    return buffer.getvalue()


class DayWriter:
    """One day's sessions, events and orders for every active customer, plus anonymous visitors and bots."""

    def __init__(self, rng, writer, settings, date, day, orders_file, events_file, products, bundles, campaigns,
                 ab_test, order_counter, event_counter, pending_resends, product_styles):
        self.rng, self.writer, self.settings, self.date, self.day = rng, writer, settings, date, day
        self.orders_file, self.events_file = orders_file, events_file
        self.products, self.bundles, self.campaigns, self.ab_test = products, bundles, campaigns, ab_test
        self.order_counter, self.event_counter = order_counter, event_counter
        self.pending_resends, self.product_styles = pending_resends, product_styles
        self.by_category = {c: [p for p in products if p["category"] == c] for c in CATEGORIES}
        self.bundle_of = {b[0]: b for b in bundles}
        self.midnight = dt.datetime.combine(date, dt.time())

    def write(self, customers: list[Customer]) -> None:
        for record in self.pending_resends["orders"]:
            self._order_line(record, clean=True)
        self.pending_resends["orders"] = []
        for customer in customers:
            if customer.signup_day <= self.day:
                self._customer_day(customer)
        for visitor in range(self.rng.randint(len(customers) // 20, len(customers) // 10)):
            self._session(f"a-anon-{self.rng.randrange(len(customers) * 3):06d}", None, None, buy=False)
        if self.rng.random() < 0.5:
            self._bot_session()

    def _customer_day(self, customer: Customer) -> None:
        profile = ARCHETYPES[customer.archetype]
        active = self.day < self.settings.days * profile.active_until
        rate = profile.orders_per_day if active else 0.0
        # A new customer is one whose first purchase is recent (someone who signed up without buying is a
        # prospect): "new" buy on the day they join, then at their own rate.
        buys = self.rng.random() < rate or (customer.archetype == "one_timer" and self.day == customer.signup_day
                                            + hash_day(customer.customer_id, self.settings.days - customer.signup_day)
                                            ) or (customer.archetype == "new" and self.day == customer.signup_day)
        campaign = None
        if customer.arm and self.day == self.ab_test["start_day"]:
            campaign = (self.ab_test["campaign_id"], customer.arm)
            self._email_event(customer, campaign, "email_open")
            if self.rng.random() < self.ab_test["conversion_probability"][customer.arm]:
                self._email_event(customer, campaign, "email_click")
                buys = True
            else:
                campaign = None  # only clicks convert through the campaign; other purchases are organic
        if customer.record_broken:
            buys, campaign = False, None
        sessions = _poisson(self.rng, profile.sessions_per_day if active else profile.sessions_per_day / 10) + (
            1 if buys else 0)
        for index in range(sessions):
            cookie = customer.cookies[min(len(customer.cookies) - 1, self.day * len(customer.cookies)
                                          // self.settings.days)]
            self._session(cookie, customer, campaign, buy=buys and index == sessions - 1)

    def _email_event(self, customer: Customer, campaign, event_type: str) -> None:
        self._event({"anonymous_id": customer.cookies[0], "customer_id": customer.customer_id,
                     "event_type": event_type, "campaign_id": campaign[0], "variant": campaign[1],
                     "channel": "email"}, self.midnight + dt.timedelta(hours=8, seconds=self.rng.randrange(3600)))

    def _session(self, cookie: str, customer: Customer | None, campaign, buy: bool) -> None:
        start = self.midnight + dt.timedelta(seconds=self.rng.randrange(6 * 3600, 23 * 3600))
        agent = self.rng.choice(USER_AGENTS)
        channel = "app" if "App" in agent else "web"
        base = {"anonymous_id": cookie, "customer_id": None, "channel": channel, "user_agent": agent,
                "campaign_id": campaign[0] if campaign else None, "variant": campaign[1] if campaign else None}
        clock = start
        self._event(dict(base, event_type="page_view", page_url="/"), clock)
        tastes = customer.tastes if customer else None
        viewed = [self._pick_product(tastes, customer) for _ in range(1 + _poisson(self.rng, 2.0))]
        logged_in = customer is not None and (buy or self.rng.random() < 0.3)
        for product in viewed:
            clock += dt.timedelta(seconds=self.rng.randrange(20, 240))
            self._event(dict(base, event_type="product_view", product_id=product["product_id"],
                             page_url=f"/p/{product['product_id']}"), clock)
            if self.rng.random() < (0.6 if buy else 0.15):
                clock += dt.timedelta(seconds=self.rng.randrange(5, 60))
                self._event(dict(base, event_type="add_to_cart", product_id=product["product_id"]), clock)
        if logged_in:
            base["customer_id"] = customer.customer_id
            clock += dt.timedelta(seconds=self.rng.randrange(10, 120))
            self._event(dict(base, event_type="login", page_url="/login"), clock)
        if buy and customer is not None:
            clock += dt.timedelta(seconds=self.rng.randrange(30, 300))
            self._event(dict(base, event_type="checkout", page_url="/checkout"), clock)
            order_id = self._order(customer, viewed, clock, channel)
            self._event(dict(base, event_type="purchase", order_id=order_id, page_url="/thanks"),
                        clock + dt.timedelta(seconds=5))

    def _bot_session(self) -> None:
        cookie = f"a-bot-{self.day:03d}"
        agent = self.rng.choice(BOT_AGENTS + ["Mozilla/5.0 (X11; Linux) Chrome/131"])
        clock = self.midnight + dt.timedelta(hours=3)
        for _ in range(150):
            clock += dt.timedelta(milliseconds=self.rng.randrange(50, 400))
            product = self.rng.choice(self.products)
            self._event({"anonymous_id": cookie, "customer_id": None, "event_type": "product_view",
                         "product_id": product["product_id"], "channel": "web", "user_agent": agent,
                         "page_url": f"/p/{product['product_id']}"}, clock)
        self.writer.bots.append((cookie, "user_agent" if agent in BOT_AGENTS else "rate"))

    def _pick_product(self, tastes: list[float] | None, customer: Customer | None) -> dict:
        category = self.rng.choices(CATEGORIES, tastes)[0] if tastes else self.rng.choice(CATEGORIES)
        candidates = self.by_category[category]
        if customer is not None and ARCHETYPES[customer.archetype].spend < 0.8:
            candidates = sorted(candidates, key=lambda p: p["price"])[: max(1, len(candidates) // 4)]
        if customer is None:
            return self.rng.choice(candidates)
        weights = [customer.style_tastes[self.product_styles[p["product_id"]]] + STYLE_FLOOR for p in candidates]
        return self.rng.choices(candidates, weights)[0]

    def _order(self, customer: Customer, viewed: list[dict], when: dt.datetime, channel: str) -> str:
        profile = ARCHETYPES[customer.archetype]
        size = max(1, min(8, _poisson(self.rng, profile.basket_mean - 1) + 1))
        basket: list[str] = []
        if self.rng.random() < 0.25:
            basket.append(self.rng.choice(self.bundles)[0])
        for product in viewed + [self._pick_product(customer.tastes, customer) for _ in range(size)]:
            if len(basket) >= size:
                break
            if product["product_id"] not in basket:
                basket.append(product["product_id"])
        for product_id in list(basket):
            if product_id in self.bundle_of and self.rng.random() < 0.7:
                basket.extend(p for p in self.bundle_of[product_id][1:] if p not in basket)
        prices = {p["product_id"]: p["price"] for p in self.products}
        items = [{"product_id": pid, "quantity": 1 + _poisson(self.rng, 0.3), "unit_price": prices[pid]}
                 for pid in basket]
        order_id = f"o-{next(self.order_counter):07d}"
        record = {"order_id": order_id, "customer_id": customer.customer_id, "order_ts": _iso(when, self.rng),
                  "updated_at": _iso(when), "status": self.rng.choice(STATUSES), "channel": channel,
                  "currency": "EUR", "items": items, "total_amount": _total(items)}
        self._order_line(record, clean=False)
        return order_id

    def _order_line(self, record: dict, clean: bool) -> None:
        kind = None if clean else _dirt_kind(self.rng, self.settings.rates, "orders")
        key = record["order_id"]
        record = json.loads(json.dumps(record))
        if kind == "null_required":
            record["customer_id"] = None
        elif kind == "wrong_type":
            if self.rng.random() < 0.5:
                record["items"][0]["quantity"] = "two"
            else:
                record["total_amount"] = f"{record['total_amount']:.2f}".replace(".", ",")
        elif kind == "negative_price":
            record["items"][0]["unit_price"] = -abs(record["items"][0]["unit_price"])
            record["total_amount"] = _total(record["items"])
        elif kind == "future_timestamp":
            record["order_ts"] = _iso(self.midnight + dt.timedelta(days=365 * 6))
        elif kind == "unknown_customer":
            record["customer_id"] = f"c-x{self.rng.randrange(10**6):06d}"
        text = json.dumps(record, separators=(",", ":"))
        if kind == "malformed_json":
            text = text[: len(text) // 2]
        line_no = self.writer.line("orders", self.orders_file, text)
        if kind in ("null_required", "wrong_type", "negative_price", "future_timestamp", "unknown_customer",
                    "malformed_json"):
            self.writer.dirt("orders", kind, key, self.orders_file, line_no)
        elif kind == "exact_duplicate":
            self.writer.dirt("orders", kind, key, self.orders_file, self.writer.line("orders", self.orders_file,
                                                                                       text))
        elif kind == "resent_newer":
            self.writer.dirt("orders", kind, key, self.orders_file, line_no)
            newer = dict(record, status="shipped" if record["status"] == "placed" else "delivered",
                         updated_at=_iso(self.midnight + dt.timedelta(days=1, hours=9)))
            if self.day + 1 < self.settings.days:
                self.pending_resends["orders"].append(newer)
            else:
                self.writer.line("orders", self.orders_file, json.dumps(newer, separators=(",", ":")))

    def _event(self, fields: dict, when: dt.datetime) -> None:
        event_id = f"e-{next(self.event_counter):09d}"
        record = {"event_id": event_id, "event_ts": _iso(when), "anonymous_id": None, "customer_id": None,
                  "event_type": None, "product_id": None, "order_id": None, "campaign_id": None, "variant": None,
                  "channel": None, "user_agent": None, "page_url": None}
        record.update(fields)
        # Bots are a planted fault of their own (bots.csv); their events carry no other dirt.
        is_bot = str(fields.get("anonymous_id")).startswith("a-bot-")
        kind = None if is_bot else _dirt_kind(self.rng, self.settings.rates, "events")
        if kind == "null_required":
            record["event_type"] = None
        elif kind == "future_timestamp":
            record["event_ts"] = _iso(when + dt.timedelta(days=365 * 6))
        text = json.dumps(record, separators=(",", ":"))
        if kind == "malformed_json":
            text = text[: len(text) // 2]
        line_no = self.writer.line("events", self.events_file, text)
        if kind in ("null_required", "future_timestamp", "malformed_json"):
            self.writer.dirt("events", kind, event_id, self.events_file, line_no)
        elif kind == "exact_duplicate":
            self.writer.dirt("events", kind, event_id, self.events_file,
                             self.writer.line("events", self.events_file, text))


def hash_day(customer_id: str, span: int) -> int:
    """A stable day offset for a one-time buyer's single purchase (not drawn, so it does not shift the stream)."""
    return sum(map(ord, customer_id)) % max(1, span)


def _dirt_kind(rng: random.Random, rates: DirtRates, source: str) -> str | None:
    draw = rng.random()
    for kind in SOURCE_KINDS[source]:
        draw -= getattr(rates, kind)
        if draw < 0:
            return kind
    return None


def _poisson(rng: random.Random, mean: float) -> int:
    if mean <= 0:
        return 0
    count, threshold, product = 0, pow(2.718281828459045, -mean), rng.random()
    while product > threshold:
        count += 1
        product *= rng.random()
    return count


def _total(items: list[dict]) -> float:
    return round(sum(i["quantity"] * i["unit_price"] for i in items), 2)


def _iso(moment: dt.datetime, rng: random.Random | None = None) -> str:
    """UTC ISO-8601 with Z; given an rng, one in five is written in local time with a +01:00/+02:00 offset."""
    if rng is not None and rng.random() < 0.2:
        hours = rng.choice([1, 2])
        local = moment + dt.timedelta(hours=hours)
        return local.strftime("%Y-%m-%dT%H:%M:%S") + f"+0{hours}:00"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# --- files written once -----------------------------------------------------------------------------------

def _write_products(out_dir: Path, settings: GeneratorSettings, products: list[dict]) -> None:
    stamp = settings.start_date.strftime("%Y%m%d")
    (out_dir / "products" / f"products_{stamp}.json").write_text(json.dumps(products, indent=1) + "\n")


def _write_campaigns(out_dir: Path, settings: GeneratorSettings, campaigns: list[dict]) -> None:
    with (out_dir / "campaigns" / "campaigns.csv").open("w", newline="") as handle:
        out = csv.DictWriter(handle, fieldnames=list(campaigns[0]), lineterminator="\n")
        out.writeheader()
        out.writerows(campaigns)


def _write_privacy_requests(rng, out_dir: Path, settings: GeneratorSettings, customers: list[Customer]) -> list[dict]:
    requests = []
    chosen = rng.sample(customers, max(1, len(customers) // 200))
    days = sorted({settings.days // 3, (2 * settings.days) // 3})
    for index, customer in enumerate(chosen, start=1):
        day = days[index % len(days)]
        moment = dt.datetime.combine(settings.start_date, dt.time(12)) + dt.timedelta(days=day)
        requests.append({"request_id": f"pr-{index:05d}", "customer_id": customer.customer_id,
                         "email": customer.record["email"],
                         "request_type": rng.choice(["erasure", "opt_out_email", "opt_out_ads"]),
                         "received_at": _iso(moment), "_day": day})
    for day in days:
        stamp = (settings.start_date + dt.timedelta(days=day)).strftime("%Y%m%d")
        with (out_dir / "privacy_requests" / f"privacy_requests_{stamp}.csv").open("w", newline="") as handle:
            out = csv.DictWriter(handle, fieldnames=["request_id", "customer_id", "email", "request_type",
                                                     "received_at"], lineterminator="\n", extrasaction="ignore")
            out.writeheader()
            out.writerows(r for r in requests if r["_day"] == day)
    return requests


def _dirt_summary(writer: LandingWriter, settings: GeneratorSettings) -> dict:
    sources = {}
    for source, kinds in writer.kinds.items():
        full = {kind: kinds.get(kind, 0) for kind in SOURCE_KINDS[source]}
        rows = writer.rows_written[source]
        sources[source] = {"rows_written": rows, "clean": rows - sum(full.values()), "kinds": full}
    settings_dict = dataclasses.asdict(settings)
    settings_dict["start_date"] = settings.start_date.isoformat()
    return {"settings": settings_dict, "sources": sources}


def _write_ground_truth(folder: Path, truth: dict, writer: LandingWriter, customers: list[Customer],
                        duplicate_people: dict[str, str], bundles: list[list[str]], ab_test: dict,
                        privacy: list[dict], product_styles: dict[str, int]) -> None:
    (folder / "dirt.json").write_text(json.dumps(truth, indent=2) + "\n")
    _csv(folder / "dirt_records.csv", ["source", "kind", "key", "file", "line_no"], writer.dirt_records)
    _csv(folder / "archetypes.csv", ["customer_id", "archetype"], [(c.customer_id, c.archetype) for c in customers])
    _csv(folder / "tastes.csv", ["customer_id", *CATEGORIES],
         [(c.customer_id, *(f"{t:.4f}" for t in c.tastes)) for c in customers])
    _csv(folder / "style_tastes.csv", ["customer_id", *(f"style_{k}" for k in range(STYLES))],
         [(c.customer_id, *(f"{t:.4f}" for t in c.style_tastes)) for c in customers])
    _csv(folder / "product_styles.csv", ["product_id", "style"], sorted(product_styles.items()))
    (folder / "bundles.json").write_text(json.dumps(bundles) + "\n")
    _csv(folder / "identity.csv", ["anonymous_id", "customer_id"],
         [(cookie, c.customer_id) for c in customers for cookie in c.cookies])
    _csv(folder / "person_groups.csv", ["customer_id", "person_key"],
         [row for duplicate, original in duplicate_people.items() for row in ((original, original),
                                                                              (duplicate, original))])
    _csv(folder / "bots.csv", ["anonymous_id", "reason"], sorted(set(writer.bots)))
    (folder / "campaign_uplift.json").write_text(json.dumps(ab_test, indent=2) + "\n")
    _csv(folder / "privacy_requests.csv", ["request_id", "customer_id", "request_type", "day"],
         [(r["request_id"], r["customer_id"], r["request_type"], r["_day"]) for r in privacy])


def _csv(path: Path, header: list[str], rows) -> None:
    with path.open("w", newline="") as handle:
        out = csv.writer(handle, lineterminator="\n")
        out.writerow(header)
        out.writerows(rows)


def _landing_files_by_stamp(source: Path) -> dict[Path, str]:
    """Every generated landing file under ``source`` with the stamp its name ends in (``orders_20260101.csv``)."""
    folders = [f for f in sorted(source.iterdir()) if f.is_dir() and f.name != "ground_truth"]
    return {file: file.stem.rsplit("_", 1)[-1] for folder in folders for file in sorted(folder.iterdir())}


def landing_days(source: Path) -> list[str]:
    """The days (YYYYMMDD, oldest first) that the landing files generated under ``source`` belong to."""
    return sorted({stamp for stamp in _landing_files_by_stamp(source).values() if stamp.isdigit()})


def copy_landing_days(
    source: Path, target: Path, days: Iterable[str], sources: Iterable[str] | None = None
) -> list[Path]:
    """Copy the landing files of ``days`` (YYYYMMDD) of ``sources`` (default: all) from ``source`` to ``target``, as
    if those days had just arrived. Files without a day stamp (campaigns.csv) arrive on the first generated day."""
    stamps = _landing_files_by_stamp(source)
    first_day = landing_days(source)[0]
    wanted, chosen = set(days), set(sources) if sources is not None else {file.parent.name for file in stamps}
    copied = []
    for file, stamp in stamps.items():
        if file.parent.name in chosen and (stamp if stamp.isdigit() else first_day) in wanted:
            (target / file.parent.name).mkdir(parents=True, exist_ok=True)
            copied.append(Path(shutil.copy(file, target / file.parent.name)))
    return copied
