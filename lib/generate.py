"""Sample landing data for every source, with dirt injected at known rates and the truth written beside it.

Deterministic: one ``random.Random(seed)`` is drawn in a fixed order and nothing depends on set or hash order, so
the same settings write byte-identical files (on the same Python version; the stdlib generator is pinned by it).

Streaming: each day's files are written line by line as records are drawn. Memory holds the catalogue, per-customer
state and the few lines held back for the next day's file (re-sends and late duplicates), never the events or
orders themselves, so a run's memory grows with the number of customers, not with the number of days or events.

Every landing line is either clean or carries exactly one kind of dirt. ``ground_truth/`` records what later stages
must find: per source the rows written, distinct keys and dirt counts (``dirt.json``), the file and line of every
dirty record (``dirt_records.csv``), each customer's behavioural archetype and category tastes, the planted item
bundles, which cookie belongs to whom, bots, duplicate-person groups, the planted A/B uplift and privacy requests.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import itertools
import json
import math
import random
import zlib
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

# --- public settings -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DirtRates:
    """Share of a source's records that get each kind of dirt; a dirty record gets exactly one kind.

    A kind only applies to the sources where it makes sense (``SOURCE_KINDS``)."""

    exact_duplicate: float = 0.01
    resent_newer: float = 0.01
    null_required: float = 0.005
    malformed_json: float = 0.003
    wrong_type: float = 0.005
    negative_price: float = 0.003
    future_timestamp: float = 0.003
    unknown_customer: float = 0.003
    mixed_case_email: float = 0.05


@dataclass(frozen=True)
class GeneratorSettings:
    customers: int = 2000
    days: int = 60
    seed: int = 42
    start_date: dt.date = dt.date(2026, 1, 1)  # fixed, so the default output is deterministic
    products: int = 200
    rates: DirtRates = field(default_factory=DirtRates)

    def __post_init__(self) -> None:
        if self.customers < 1 or self.days < 1:
            raise ValueError("customers and days must be at least 1")
        if self.products < MIN_PRODUCTS:
            raise ValueError(f"products must be at least {MIN_PRODUCTS} (bundles and every category need some)")
        for source, kinds in SOURCE_KINDS.items():
            if sum(getattr(self.rates, kind) for kind in kinds) > 1:
                raise ValueError(f"dirt rates of {source} add up to more than 1")
            if any(getattr(self.rates, kind) < 0 for kind in kinds):
                raise ValueError("dirt rates must not be negative")


# Which kinds each source can carry: a products file is one JSON array and stays valid, emails only exist on
# customers, and campaigns and privacy requests are small hand-kept files that land clean.
SOURCE_KINDS: dict[str, list[str]] = {
    "customers": ["exact_duplicate", "resent_newer", "null_required", "mixed_case_email"],
    "products": ["negative_price"],
    "campaigns": [],
    "orders": ["exact_duplicate", "resent_newer", "null_required", "malformed_json", "wrong_type", "negative_price",
               "future_timestamp", "unknown_customer"],
    "events": ["exact_duplicate", "null_required", "malformed_json", "future_timestamp"],
    "privacy_requests": [],
}
FOLDERS = [*SOURCE_KINDS, "ground_truth"]

# --- the shape of the sample ---------------------------------------------------------------------------------

CATEGORIES = ["apparel", "shoes", "beauty", "home", "kitchen", "electronics", "books", "toys", "sports", "garden"]
MIN_PRODUCTS = 20
BUNDLE_SIZES = [2, 2, 3, 3, 2]
BUNDLE_SEED_SHARE = 0.25  # baskets that start from some bundle's first product
BUNDLE_COMPLETION = 0.6  # chance a basket holding a bundle's first product also gets the rest of the bundle
PRICE_UPDATE_SHARE = 1 / 30  # products re-priced in the mid-period products update file

ORDER_STATUSES = ["placed", "shipped", "delivered", "delivered", "delivered", "cancelled", "returned"]
LATER_STATUSES = ["shipped", "delivered", "cancelled"]  # what a re-sent order moved on to from "placed"
STORE_ORDER_SHARE = 0.12  # orders placed in a shop: no web session, no events
NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]

LOGIN_SHARE = 0.3  # browsing sessions of a known customer that log in (buying sessions always do)
AD_ARRIVAL_SHARE = 0.12  # sessions that start from an ad click while an ads/social campaign runs
LATE_DUPLICATE_SHARE = 0.3  # exact duplicates that land in the next day's file instead of the same one
BOT_EVENTS = 150
FUTURE_YEARS = 5

USER_AGENTS = ["Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/131.0", "Mozilla/5.0 (iPhone; iOS 18) Safari/18.1",
               "Mozilla/5.0 (Macintosh; Mac OS X 14) Firefox/133.0", "DMPShop-App/4.2 (Android 15)"]
BOT_AGENTS = ["Googlebot/2.1 (+http://www.google.com/bot.html)", "AhrefsBot/7.0", "python-requests/2.32 crawler"]
# A bot that hides behind a browser's user agent: only its event rate gives it away.
DISGUISED_BOT_AGENT = "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0"


@dataclass(frozen=True)
class City:
    name: str
    iso2: str
    country: str
    calling_code: str
    area_code: str


CITIES = [City("Berlin", "DE", "Germany", "+49", "30"), City("Munich", "DE", "Germany", "+49", "89"),
          City("Hamburg", "DE", "Germany", "+49", "40"), City("Paris", "FR", "France", "+33", "1"),
          City("Lyon", "FR", "France", "+33", "4"), City("Madrid", "ES", "Spain", "+34", "91"),
          City("Milan", "IT", "Italy", "+39", "2"), City("Vienna", "AT", "Austria", "+43", "1"),
          City("Amsterdam", "NL", "Netherlands", "+31", "20")]
FIRST_NAMES = ["Anna", "Ben", "Clara", "David", "Elena", "Felix", "Greta", "Hugo", "Ines", "Jonas", "Lea", "Marco",
               "Nora", "Oskar", "Paula", "Rafael"]
LAST_NAMES = ["Muller", "Schmidt", "Dubois", "Garcia", "Rossi", "Novak", "Jansen", "Weber", "Martin", "Lopez",
              "Bauer", "Moreau"]
EMAIL_DOMAINS = ["example.com", "mail.example", "post.example"]
CUSTOMER_FIELDS = ["customer_id", "email", "phone", "first_name", "last_name", "birth_date", "gender", "city",
                   "country", "signup_ts", "updated_at", "consent_email", "consent_ads"]
CAMPAIGN_FIELDS = ["campaign_id", "name", "channel", "objective", "start_date", "end_date", "daily_budget",
                   "currency", "variants", "updated_at"]
PRIVACY_FIELDS = ["request_id", "customer_id", "email", "request_type", "received_at"]
EVENT_FIELDS = ["anonymous_id", "customer_id", "event_type", "product_id", "order_id", "campaign_id", "variant",
                "channel", "user_agent", "page_url"]

CAMPAIGN_PLANS = [("email", "retention"), ("email", "conversion"), ("ads", "awareness"), ("ads", "conversion"),
                  ("social", "awareness"), ("email", "winback"), ("social", "conversion"), ("ads", "retargeting")]
UPLIFT_CAMPAIGN = "cmp-02"  # email A/B test: arm B converts more often (the planted uplift)
NO_UPLIFT_CAMPAIGN = "cmp-04"  # ads A/B test whose arms behave the same (a null result to check against)
CONVERSION_PROBABILITY = {"A": 0.08, "B": 0.16}
NEWSLETTER_EVERY_DAYS = 7  # the other email campaigns send from their start day on, once a week
NEWSLETTER_OPEN_SHARE = 0.25
NEWSLETTER_CLICK_SHARE = 0.2  # of opens; a click lands a browsing session


@dataclass(frozen=True)
class Archetype:
    share: float  # of all customers
    orders_per_day: float
    basket_mean: float
    price_band: str  # "low" / "any" / "high": which half of a category's price range the customer shops in
    sessions_per_day: float  # browsing sessions, on top of the session of each online order
    active_until: float = 1.0  # share of the period after which the customer stops buying (churn)
    joins_after: float = 0.0  # share of the period before which the customer has not signed up


ARCHETYPES = {
    "champion": Archetype(0.06, 0.30, 3.0, "high", 0.5),
    "loyal": Archetype(0.20, 0.14, 2.2, "any", 0.3),
    "bargain_hunter": Archetype(0.16, 0.09, 2.5, "low", 0.35),
    "window_shopper": Archetype(0.18, 0.005, 1.2, "any", 0.55),
    "one_timer": Archetype(0.15, 0.0, 1.5, "any", 0.08),  # exactly one order, on a drawn day
    "churned": Archetype(0.12, 0.15, 2.0, "any", 0.3, active_until=0.5),
    "new": Archetype(0.13, 0.14, 2.0, "any", 0.35, joins_after=0.5),
}
CHURNED_VISIT_FACTOR = 0.2  # a churned customer still drops by now and then, but never buys


# --- the drawn world: catalogue, people, campaigns -----------------------------------------------------------

@dataclass
class Catalogue:
    products: list[dict]  # as first landed (dirty prices included)
    dirt: dict[str, str]  # product_id -> kind of dirt its first record carries
    price: dict[str, float]  # current selling price of every sellable product (changes with price updates)
    shelves: dict[str, dict[str, list[str]]]  # price band -> category -> sellable product ids
    bundles: list[list[str]]
    price_updates: list[dict]  # records of the mid-period products file


@dataclass
class Customer:
    number: int
    customer_id: str
    archetype: str
    tastes: list[float]  # probability of each of CATEGORIES
    cookies: list[str]  # anonymous ids, used one after another over the period
    signup_day: int
    home: City
    record: dict[str, str]  # the clean CRM record
    dirt_kind: str | None  # dirt of the customer's first landed record
    one_time_purchase_day: int | None
    email_arm: str | None = None
    # Cookies some event ties to this customer (login, purchase, email): what identity stitching can recover.
    identified_cookies: set[str] = field(default_factory=set)

    @property
    def record_is_quarantined(self) -> bool:
        return self.dirt_kind == "null_required"

    def cookie_on(self, day: int, days: int) -> str:
        return self.cookies[min(len(self.cookies) - 1, day * len(self.cookies) // days)]


@dataclass(frozen=True)
class DuplicatePerson:
    """A second registration of an existing customer: another customer_id, the same email in another spelling."""

    original: Customer
    day: int
    record: dict[str, str]


@dataclass(frozen=True)
class Arrival:
    """How a session began when a campaign brought the visitor (utm landing)."""

    campaign_id: str
    variant: str | None
    channel: str
    ad_click: bool  # an ad_click opens the session; an email's click is written with the email's events


class CookieJar:
    """Issues opaque, unique anonymous ids ("a-" + hex), so a cookie reveals nothing of its owner."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.issued: set[str] = set()

    def issue(self) -> str:
        while True:
            cookie = f"a-{self.rng.getrandbits(48):012x}"
            if cookie not in self.issued:
                self.issued.add(cookie)
                return cookie


def _draw_catalogue(rng: random.Random, settings: GeneratorSettings) -> Catalogue:
    created = _iso(_midnight(settings.start_date))
    products, dirt = [], {}
    for number in range(1, settings.products + 1):
        category = CATEGORIES[(number - 1) % len(CATEGORIES)]
        product = {"product_id": f"p-{number:04d}", "name": f"{category.title()} item {number}",
                   "category": category, "brand": f"brand-{rng.randint(1, 25):02d}",
                   "price": round(min(500.0, rng.lognormvariate(3.2, 0.7)), 2), "currency": "EUR",
                   "updated_at": created}
        kind = _dirt_kind(rng, settings.rates, "products")
        if kind == "negative_price":
            product["price"] = -product["price"]
            dirt[product["product_id"]] = kind
        products.append(product)
    # A product landed with a broken price is quarantined downstream, so it is never sold: an order holding it
    # would otherwise fail as an order for an unknown product, which is not the fault it was planted with.
    sellable = [p for p in products if p["product_id"] not in dirt]
    if len(sellable) < sum(BUNDLE_SIZES):
        raise ValueError("too few products with a valid price to plant the bundles; raise products")
    price = {p["product_id"]: p["price"] for p in sellable}
    bundles = _draw_bundles(rng, [p["product_id"] for p in sellable])
    catalogue = Catalogue(products, dirt, price, _shelves(sellable), bundles, [])
    catalogue.price_updates = _draw_price_updates(rng, settings, sellable)
    return catalogue


def _shelves(sellable: list[dict]) -> dict[str, dict[str, list[str]]]:
    """Sellable product ids per price band and category; a band or category left empty falls back to all."""
    everything = [p["product_id"] for p in sellable]
    shelves: dict[str, dict[str, list[str]]] = {"low": {}, "any": {}, "high": {}}
    for category in CATEGORIES:
        by_price = sorted((p for p in sellable if p["category"] == category), key=lambda p: (p["price"],
                                                                                              p["product_id"]))
        ids = [p["product_id"] for p in by_price] or everything
        half = max(1, len(ids) // 2)
        shelves["low"][category], shelves["any"][category], shelves["high"][category] = ids[:half], ids, ids[-half:]
    return shelves


def _draw_bundles(rng: random.Random, sellable_ids: list[str]) -> list[list[str]]:
    """Products bought together far more often than chance; bundles never share a product."""
    chosen = rng.sample(sellable_ids, sum(BUNDLE_SIZES))
    bundles, start = [], 0
    for size in BUNDLE_SIZES:
        bundles.append(chosen[start:start + size])
        start += size
    return bundles


def _draw_price_updates(rng: random.Random, settings: GeneratorSettings, sellable: list[dict]) -> list[dict]:
    """A few re-priced products, landed in a products file of the mid-period day (a genuine change, not dirt)."""
    if settings.days < 2:
        return []
    day = settings.days // 2
    updated_at = _iso(_midnight(settings.start_date + dt.timedelta(days=day)))
    chosen = rng.sample(sellable, max(1, round(len(sellable) * PRICE_UPDATE_SHARE)))
    return [dict(p, price=round(p["price"] * rng.uniform(0.8, 1.2), 2), updated_at=updated_at)
            for p in sorted(chosen, key=lambda p: p["product_id"])]


def _draw_customers(rng: random.Random, settings: GeneratorSettings, cookies: CookieJar) -> list[Customer]:
    names = list(ARCHETYPES)
    weights = [ARCHETYPES[name].share for name in names]
    customers = []
    for number in range(1, settings.customers + 1):
        archetype = rng.choices(names, weights)[0]
        profile = ARCHETYPES[archetype]
        signup_day = rng.randrange(int(settings.days * profile.joins_after), settings.days) if profile.joins_after \
            else 0
        home = rng.choice(CITIES)
        record = _customer_record(rng, settings, number, signup_day, home, late_joiner=profile.joins_after > 0)
        customers.append(Customer(
            number=number, customer_id=record["customer_id"], archetype=archetype,
            tastes=_dirichlet(rng, 0.4, len(CATEGORIES)),
            cookies=[cookies.issue() for _ in range(rng.choice([1, 1, 2, 3]))],
            signup_day=signup_day, home=home, record=record,
            dirt_kind=_dirt_kind(rng, settings.rates, "customers"),
            one_time_purchase_day=rng.randrange(signup_day, settings.days) if archetype == "one_timer" else None,
        ))
    return customers


def _customer_record(rng: random.Random, settings: GeneratorSettings, number: int, signup_day: int, home: City,
                     late_joiner: bool) -> dict[str, str]:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    if late_joiner:  # signs up early on the day, before any of the day's sessions
        signed_up = _midnight(settings.start_date) + dt.timedelta(days=signup_day, seconds=rng.randrange(6 * 3600))
    else:  # an existing customer, exported on the first day
        signed_up = _midnight(settings.start_date) - dt.timedelta(days=rng.randrange(1, 700),
                                                                  seconds=rng.randrange(86400))
    return {
        "customer_id": f"c-{number:06d}",
        "email": f"{first.lower()}.{last.lower()}{number}@{rng.choice(EMAIL_DOMAINS)}",
        "phone": _phone(rng, home),
        "first_name": first, "last_name": last,
        "birth_date": (dt.date(1950, 1, 1) + dt.timedelta(days=rng.randrange(365 * 55))).isoformat(),
        "gender": rng.choice(["f", "m", "f", "m", "d"]),
        "city": home.name,
        "country": rng.choice([home.iso2, home.country, home.iso2.lower(), home.country.lower()]),
        "signup_ts": _iso(signed_up, rng), "updated_at": _iso(signed_up, rng),
        "consent_email": _bool(rng.random() < 0.7), "consent_ads": _bool(rng.random() < 0.5),
    }


def _phone(rng: random.Random, home: City) -> str:
    """One number in one of the formats a CRM collects: international, national with dash or parentheses."""
    subscriber = f"{rng.randint(1000000, 9999999)}"
    return rng.choice([f"{home.calling_code} {home.area_code} {subscriber}", f"0{home.area_code}-{subscriber}",
                       f"(0{home.area_code}) {subscriber}", f"{home.calling_code}{home.area_code}{subscriber}"])


def _draw_duplicate_people(rng: random.Random, settings: GeneratorSettings,
                           customers: list[Customer]) -> list[DuplicatePerson]:
    """About 1% of customers register a second time with the same email in another case or with spaces."""
    # The shared email is what links the two records, so an original whose email lands empty is not chosen.
    eligible = [c for c in customers if not c.record_is_quarantined]
    chosen = rng.sample(eligible, min(len(eligible), max(1, len(customers) // 100)))
    duplicates = []
    for offset, original in enumerate(chosen, start=1):
        day = min(settings.days - 1, original.signup_day + rng.randrange(5))
        registered = _iso(_midnight(settings.start_date) + dt.timedelta(days=day, seconds=rng.randrange(86400)))
        record = dict(original.record, customer_id=f"c-{len(customers) + offset:06d}",
                      email=_respelled_email(rng, original.record["email"]), signup_ts=registered,
                      updated_at=registered)
        duplicates.append(DuplicatePerson(original, day, record))
    return duplicates


def _respelled_email(rng: random.Random, email: str) -> str:
    local, domain = email.split("@")
    return rng.choice([email.upper(), f" {email} ", f"{local.title()}@{domain}", f"{local}@{domain.upper()}  "])


def _draw_campaigns(rng: random.Random, settings: GeneratorSettings) -> list[dict]:
    last_day = settings.start_date + dt.timedelta(days=settings.days - 1)
    campaigns = []
    for number, (channel, objective) in enumerate(CAMPAIGN_PLANS, start=1):
        campaign_id = f"cmp-{number:02d}"
        start = settings.start_date + dt.timedelta(days=rng.randrange(max(1, settings.days // 2)))
        campaigns.append({
            "campaign_id": campaign_id, "name": f"{objective.title()} {channel} {number}", "channel": channel,
            "objective": objective, "start_date": start.isoformat(), "end_date": last_day.isoformat(),
            "daily_budget": f"{rng.choice([50, 100, 250, 500])}.00", "currency": "EUR",
            "variants": "A|B" if campaign_id in (UPLIFT_CAMPAIGN, NO_UPLIFT_CAMPAIGN) else "",
            "updated_at": _iso(_midnight(start) - dt.timedelta(days=3)),
        })
    return campaigns


def _assign_email_arms(rng: random.Random, customers: list[Customer], send_day: int) -> None:
    """Half of the reachable customers get arm A of the A/B email, half arm B (drawn per person)."""
    for customer in customers:
        reachable = customer.record["consent_email"] == "true" and customer.signup_day <= send_day
        if reachable and not customer.record_is_quarantined:
            customer.email_arm = rng.choice("AB")


def _draw_privacy_requests(rng: random.Random, settings: GeneratorSettings,
                           customers: list[Customer]) -> list[dict]:
    """About 0.5% of customers ask for erasure or an opt-out, on two days of the period."""
    days = sorted({settings.days // 3, (2 * settings.days) // 3})
    requests = []
    for number in range(1, max(1, len(customers) // 200) + 1):
        day = days[number % len(days)]
        signed_up = [c for c in customers if c.signup_day <= day] or customers
        customer = rng.choice(signed_up)
        received = _midnight(settings.start_date) + dt.timedelta(days=day, seconds=rng.randrange(8 * 3600,
                                                                                                 20 * 3600))
        requests.append({"request_id": f"pr-{number:05d}", "customer_id": customer.customer_id,
                         "email": customer.record["email"],
                         "request_type": rng.choice(["erasure", "opt_out_email", "opt_out_ads"]),
                         "received_at": _iso(received), "day": day})
    return requests


# --- landing files -------------------------------------------------------------------------------------------

Dirt = tuple[str, str]  # (kind, key)


class Landing:
    """Every landing line goes through here.

    Rows, distinct keys and dirt are counted per source as lines are written, and each dirty line is streamed to
    ``ground_truth/dirt_records.csv`` with its file and line number, so nothing has to be re-read or kept.
    """

    def __init__(self, root: Path, dirt_records: IO[str]):
        self.root = root
        self.rows: Counter[str] = Counter()
        self.clean: Counter[str] = Counter()
        self.keys: Counter[str] = Counter()
        self.kinds: dict[str, Counter[str]] = {source: Counter() for source in SOURCE_KINDS}
        self._dirt_out = csv.writer(dirt_records, lineterminator="\n")
        self._dirt_out.writerow(["source", "kind", "key", "file", "line_no"])
        # Lines held back for the source's next file: newer versions of re-sent records and late exact duplicates.
        self._deferred: dict[str, list[tuple[str, Dirt | None]]] = {source: [] for source in SOURCE_KINDS}

    @contextmanager
    def open(self, source: str, relative: str, csv_header: list[str] | None = None,
             last: bool = False) -> Iterator[LandingFile]:
        """A landing file of ``source``; it starts with the lines held back for it and, if it is the source's
        last file, also ends with the lines held back while it was written."""
        with (self.root / relative).open("w", newline="", encoding="utf-8") as handle:
            file = LandingFile(self, source, relative, handle)
            if csv_header:
                file.frame(",".join(csv_header))
            self._write_deferred(file)
            yield file
            if last:
                self._write_deferred(file)

    def defer(self, source: str, text: str, dirt: Dirt | None = None) -> None:
        self._deferred[source].append((text, dirt))

    def _write_deferred(self, file: LandingFile) -> None:
        waiting, self._deferred[file.source] = self._deferred[file.source], []
        for text, dirt in waiting:
            file.write(text, dirt=dirt)

    def count(self, source: str, file: str, line_no: int, new_key: bool, dirt: Dirt | None) -> None:
        self.rows[source] += 1
        self.keys[source] += new_key
        if dirt is None:
            self.clean[source] += 1
            return
        kind, key = dirt
        self.kinds[source][kind] += 1
        self._dirt_out.writerow([source, kind, key, file, line_no])


class LandingFile:
    def __init__(self, landing: Landing, source: str, name: str, handle: IO[str]):
        self.landing, self.source, self.name, self.handle = landing, source, name, handle
        self.lines = 0

    def frame(self, text: str) -> None:
        """A line that is not a record (CSV header, JSON array bracket): it counts for line numbers only."""
        self.handle.write(text + "\n")
        self.lines += 1

    def write(self, text: str, new_key: bool = False, dirt: Dirt | None = None) -> None:
        """One record's line; ``new_key`` when it is the first line of its business key."""
        self.frame(text)
        self.landing.count(self.source, self.name, self.lines, new_key, dirt)


# --- the run -------------------------------------------------------------------------------------------------

def generate(out_dir: Path, settings: GeneratorSettings = GeneratorSettings()) -> dict:
    """Write landing files of every source under ``out_dir`` and the truth about them under
    ``out_dir/ground_truth``; return the dirt summary (the content of ``ground_truth/dirt.json``)."""
    out_dir = Path(out_dir)
    for folder in FOLDERS:
        (out_dir / folder).mkdir(parents=True, exist_ok=True)
    with (out_dir / "ground_truth" / "dirt_records.csv").open("w", newline="", encoding="utf-8") as dirt_records:
        sample = SampleWriter(settings, Landing(out_dir, dirt_records))
        sample.write_landing()
    truth = sample.summary()
    sample.write_ground_truth(out_dir / "ground_truth", truth)
    return truth


class SampleWriter:
    """Draws the world once, then writes it day by day: customers, products, orders and events, privacy requests."""

    def __init__(self, settings: GeneratorSettings, landing: Landing):
        self.settings, self.landing = settings, landing
        self.rng = rng = random.Random(settings.seed)
        self.start = _midnight(settings.start_date)
        self.end = self.start + dt.timedelta(days=settings.days)  # exclusive
        self.future_from = _years_later(self.end, FUTURE_YEARS)

        self.cookies = CookieJar(rng)
        self.catalogue = _draw_catalogue(rng, settings)
        self.bundle_of_head = {bundle[0]: bundle for bundle in self.catalogue.bundles}
        self.sellable_ids = list(self.catalogue.price)
        self.customers = _draw_customers(rng, settings, self.cookies)
        self.duplicates = _draw_duplicate_people(rng, settings, self.customers)
        self.unused_customer_number = len(self.customers) + len(self.duplicates) + 1
        self.campaigns = _draw_campaigns(rng, settings)
        self.campaign_start_day = {c["campaign_id"]: (dt.date.fromisoformat(c["start_date"])
                                                      - settings.start_date).days for c in self.campaigns}
        self.send_day = self.campaign_start_day[UPLIFT_CAMPAIGN]
        _assign_email_arms(rng, self.customers, self.send_day)
        self.privacy_requests = _draw_privacy_requests(rng, settings, self.customers)
        self.visitors = [self.cookies.issue() for _ in range(max(10, settings.customers // 2))]

        self.order_numbers = itertools.count(1)
        self.event_numbers = itertools.count(1)
        self.seen_cookies: set[str] = set()
        self.bots: list[tuple[str, str]] = []
        self.email_results = {arm: Counter() for arm in "AB"}

    # --- per-day files ---------------------------------------------------------------------------------------

    def write_landing(self) -> None:
        self._write_products_file(self.settings.start_date, self.catalogue.products, first_landing=True)
        self._write_campaigns()
        for day in range(self.settings.days):
            date = self.settings.start_date + dt.timedelta(days=day)
            last = day == self.settings.days - 1
            self._write_customers_day(day, date, last)
            if self.catalogue.price_updates and day == self.settings.days // 2:
                self._apply_price_updates(date)
            self._write_activity_day(day, date, last)
            self._write_privacy_requests_day(day, date)

    def _write_products_file(self, date: dt.date, products: list[dict], first_landing: bool) -> None:
        """One JSON array, one product per line, so each product has a line number of its own."""
        with self.landing.open("products", f"products/products_{_stamp(date)}.json") as file:
            file.frame("[")
            for index, product in enumerate(products):
                comma = "," if index < len(products) - 1 else ""
                kind = self.catalogue.dirt.get(product["product_id"]) if first_landing else None
                file.write(_json(product) + comma, new_key=first_landing,
                           dirt=(kind, product["product_id"]) if kind else None)
            file.frame("]")

    def _apply_price_updates(self, date: dt.date) -> None:
        self._write_products_file(date, self.catalogue.price_updates, first_landing=False)
        for product in self.catalogue.price_updates:
            self.catalogue.price[product["product_id"]] = product["price"]

    def _write_campaigns(self) -> None:
        with self.landing.open("campaigns", "campaigns/campaigns.csv", CAMPAIGN_FIELDS) as file:
            for campaign in self.campaigns:
                file.write(_csv_line(CAMPAIGN_FIELDS, campaign), new_key=True)

    def _write_privacy_requests_day(self, day: int, date: dt.date) -> None:
        requests = [r for r in self.privacy_requests if r["day"] == day]
        if requests:
            relative = f"privacy_requests/privacy_requests_{_stamp(date)}.csv"
            with self.landing.open("privacy_requests", relative, PRIVACY_FIELDS) as file:
                for request in requests:
                    file.write(_csv_line(PRIVACY_FIELDS, request), new_key=True)

    def _write_customers_day(self, day: int, date: dt.date, last: bool) -> None:
        """Day one's file holds every existing customer; later files hold sign-ups, second registrations and
        re-sent records."""
        relative = f"customers/customers_{_stamp(date)}.csv"
        with self.landing.open("customers", relative, CUSTOMER_FIELDS, last=last) as file:
            for customer in self.customers:
                if customer.signup_day == day:
                    self._land_customer(file, customer, day)
            for duplicate in self.duplicates:
                if duplicate.day == day:
                    file.write(_csv_line(CUSTOMER_FIELDS, duplicate.record), new_key=True)

    def _land_customer(self, file: LandingFile, customer: Customer, day: int) -> None:
        kind = customer.dirt_kind
        landed = dict(customer.record)
        newer = None
        if kind == "null_required":
            landed["email"] = ""
        elif kind == "mixed_case_email":
            local, domain = landed["email"].split("@")
            landed["email"] = f"  {local.title()}@{domain.upper()} "
        elif kind == "resent_newer":  # the customer changed their phone number
            newer = _csv_line(CUSTOMER_FIELDS, dict(customer.record, phone=_phone(self.rng, customer.home),
                                                    updated_at=_iso(self._resend_time(day))))
        self._land(file, customer.customer_id, kind, _csv_line(CUSTOMER_FIELDS, landed), newer)

    def _land(self, file: LandingFile, key: str, kind: str | None, text: str, newer: str | None = None) -> None:
        """Write one record as landed (``text`` already spoiled for in-line kinds of dirt).

        An exact duplicate is followed by its copy, in this file or the source's next one; a re-sent record lands
        as its older version (the dirty line) now and its newer version, a clean line, in the next file."""
        if kind is None:
            file.write(text, new_key=True)
        elif kind == "exact_duplicate":
            file.write(text, new_key=True)
            if self.rng.random() < LATE_DUPLICATE_SHARE:
                self.landing.defer(file.source, text, (kind, key))
            else:
                file.write(text, dirt=(kind, key))
        elif kind == "resent_newer":
            file.write(text, new_key=True, dirt=(kind, key))
            self.landing.defer(file.source, newer)
        else:
            file.write(text, new_key=True, dirt=(kind, key))

    def _resend_time(self, day: int) -> dt.datetime:
        """When a re-sent record was updated: some time the next day (the last day: later the same evening)."""
        if day + 1 < self.settings.days:
            return self.start + dt.timedelta(days=day + 1, seconds=self.rng.randrange(86400))
        return self.start + dt.timedelta(days=day, hours=23, seconds=self.rng.randrange(3600))

    def _write_activity_day(self, day: int, date: dt.date, last: bool) -> None:
        with self.landing.open("orders", f"orders/orders_{_stamp(date)}.jsonl", last=last) as orders, \
                self.landing.open("events", f"events/events_{_stamp(date)}.jsonl", last=last) as events:
            self.orders_file, self.events_file = orders, events
            for customer in self.customers:
                if customer.signup_day <= day:
                    self._customer_day(customer, day)
            for _ in range(self.rng.randint(self.settings.customers // 25, self.settings.customers // 12)):
                visitor = self.rng.choice(self.visitors)
                self._session(visitor, None, self._session_start(day), buy=False,
                              arrival=self._ad_arrival(day, visitor))
            if day == 0 or self.rng.random() < 0.5:
                self._bot_session(day)

    # --- a customer's day ------------------------------------------------------------------------------------

    def _customer_day(self, customer: Customer, day: int) -> None:
        profile = ARCHETYPES[customer.archetype]
        active = day < self.settings.days * profile.active_until
        buys = self.rng.random() < profile.orders_per_day if active else False
        buys = buys or day == customer.one_time_purchase_day
        cookie = customer.cookie_on(day, self.settings.days)
        clicked_at = self._ab_email(customer, cookie, day) if customer.email_arm and day == self.send_day else None
        buys = buys or clicked_at is not None  # a click on the A/B email is a conversion: its landing session buys
        for newsletter in self._newsletters_sent(day):
            if customer.record["consent_email"] == "true":
                self._newsletter(customer, cookie, day, newsletter)
        # An order of a customer whose CRM record is quarantined would fail downstream as an unknown customer,
        # a fault it was not planted with: such customers browse but do not buy.
        buys = buys and not customer.record_is_quarantined

        visits = _poisson(self.rng, profile.sessions_per_day * (1.0 if active else CHURNED_VISIT_FACTOR))
        for _ in range(visits):
            self._session(cookie, customer, self._session_start(day), buy=False,
                          arrival=self._ad_arrival(day, customer.customer_id))
        if not buys:
            return
        if clicked_at is not None:
            self._session(cookie, customer, clicked_at + dt.timedelta(seconds=self.rng.randrange(5, 120)), buy=True,
                          arrival=Arrival(UPLIFT_CAMPAIGN, customer.email_arm, "email", ad_click=False))
        elif self.rng.random() < STORE_ORDER_SHARE:
            self._order(customer, [], self._session_start(day), "store")
        else:
            self._session(cookie, customer, self._session_start(day), buy=True,
                          arrival=self._ad_arrival(day, customer.customer_id))

    def _ab_email(self, customer: Customer, cookie: str, day: int) -> dt.datetime | None:
        """Every assigned customer opens the A/B email (the open names the arm); a click converts, with the arm's
        probability. Returns when the customer clicked, or None."""
        arm = customer.email_arm
        email = {"anonymous_id": cookie, "customer_id": customer.customer_id, "channel": "email",
                 "campaign_id": UPLIFT_CAMPAIGN, "variant": arm}
        opened_at = self.start + dt.timedelta(days=day, hours=8, seconds=self.rng.randrange(2 * 3600))
        self._event(opened_at, dict(email, event_type="email_open"))
        customer.identified_cookies.add(cookie)
        self.email_results[arm]["assigned"] += 1
        if self.rng.random() >= CONVERSION_PROBABILITY[arm]:
            return None
        clicked_at = opened_at + dt.timedelta(seconds=self.rng.randrange(10, 1800))
        self._event(clicked_at, dict(email, event_type="email_click"))
        self.email_results[arm]["converted"] += 1
        return clicked_at

    def _newsletters_sent(self, day: int) -> list[dict]:
        return [c for c in self.campaigns if c["channel"] == "email" and c["campaign_id"] != UPLIFT_CAMPAIGN
                and day >= self.campaign_start_day[c["campaign_id"]]
                and (day - self.campaign_start_day[c["campaign_id"]]) % NEWSLETTER_EVERY_DAYS == 0]

    def _newsletter(self, customer: Customer, cookie: str, day: int, campaign: dict) -> None:
        """Some customers open a newsletter, a few click through and browse."""
        if self.rng.random() >= NEWSLETTER_OPEN_SHARE:
            return
        email = {"anonymous_id": cookie, "customer_id": customer.customer_id, "channel": "email",
                 "campaign_id": campaign["campaign_id"]}
        opened_at = self.start + dt.timedelta(days=day, hours=7, seconds=self.rng.randrange(12 * 3600))
        self._event(opened_at, dict(email, event_type="email_open"))
        customer.identified_cookies.add(cookie)
        if self.rng.random() < NEWSLETTER_CLICK_SHARE:
            clicked_at = opened_at + dt.timedelta(seconds=self.rng.randrange(10, 1800))
            self._event(clicked_at, dict(email, event_type="email_click"))
            self._session(cookie, customer, clicked_at + dt.timedelta(seconds=self.rng.randrange(2, 30)), buy=False,
                          arrival=Arrival(campaign["campaign_id"], None, "email", ad_click=False))

    def _ad_arrival(self, day: int, person: str) -> Arrival | None:
        """Now and then a session starts from an ad of a running ads/social campaign."""
        running = [c for c in self.campaigns if c["channel"] in ("ads", "social")
                   and self.campaign_start_day[c["campaign_id"]] <= day]
        if not running or self.rng.random() >= AD_ARRIVAL_SHARE:
            return None
        campaign = self.rng.choice(running)
        variant = _person_variant(person) if campaign["variants"] else None
        return Arrival(campaign["campaign_id"], variant, campaign["channel"], ad_click=True)

    def _session_start(self, day: int) -> dt.datetime:
        return self.start + dt.timedelta(days=day, seconds=self.rng.randrange(6 * 3600, 22 * 3600))

    def _session(self, cookie: str, customer: Customer | None, start: dt.datetime, buy: bool,
                 arrival: Arrival | None) -> None:
        """A visit: a landing page, a few product views and cart adds, maybe a login, and a purchase if buying."""
        agent = self.rng.choice(USER_AGENTS)
        visitor = {"anonymous_id": cookie, "customer_id": None, "channel": "app" if "App/" in agent else "web",
                   "user_agent": agent}
        clock = start
        landing_page: dict = {"page_url": "/"}
        if arrival is not None:
            if arrival.ad_click:
                self._event(clock, dict(visitor, event_type="ad_click", campaign_id=arrival.campaign_id,
                                        variant=arrival.variant, channel=arrival.channel))
                clock += dt.timedelta(seconds=self.rng.randrange(1, 5))
            landing_page = {"page_url": f"/?utm_source={arrival.channel}&utm_campaign={arrival.campaign_id}",
                            "campaign_id": arrival.campaign_id, "variant": arrival.variant}
        self._event(clock, dict(visitor, event_type="page_view", **landing_page))
        viewed = [self._pick_product(customer) for _ in range(1 + _poisson(self.rng, 2.0))]
        for product_id in viewed:
            clock += dt.timedelta(seconds=self.rng.randrange(20, 240))
            self._event(clock, dict(visitor, event_type="product_view", product_id=product_id,
                                    page_url=f"/p/{product_id}"))
            if self.rng.random() < (0.6 if buy else 0.12):
                clock += dt.timedelta(seconds=self.rng.randrange(5, 60))
                self._event(clock, dict(visitor, event_type="add_to_cart", product_id=product_id,
                                        page_url=f"/p/{product_id}"))
        if customer is not None and (buy or self.rng.random() < LOGIN_SHARE):
            visitor["customer_id"] = customer.customer_id  # from the login on, the session's events carry it
            customer.identified_cookies.add(cookie)
            clock += dt.timedelta(seconds=self.rng.randrange(10, 120))
            self._event(clock, dict(visitor, event_type="login", page_url="/login"))
        if buy and customer is not None:
            clock += dt.timedelta(seconds=self.rng.randrange(30, 300))
            self._event(clock, dict(visitor, event_type="checkout", page_url="/checkout"))
            order_id = self._order(customer, viewed, clock, visitor["channel"])
            self._event(clock + dt.timedelta(seconds=5), dict(visitor, event_type="purchase", order_id=order_id,
                                                              page_url="/thanks"))

    def _bot_session(self, day: int) -> None:
        """A crawler: 150 product views in under a minute, named by its user agent or only by its rate."""
        cookie = self.cookies.issue()
        agent = self.rng.choice([*BOT_AGENTS, DISGUISED_BOT_AGENT])
        # Starting on the minute with steps of at most 0.35 s keeps all 150 events inside one clock minute, so a
        # per-minute rate check sees every one of them.
        clock = self.start + dt.timedelta(days=day, hours=self.rng.randrange(5), minutes=self.rng.randrange(60))
        for _ in range(BOT_EVENTS):
            clock += dt.timedelta(milliseconds=self.rng.randrange(50, 350))
            product_id = self.rng.choice(self.sellable_ids)
            self._event(clock, {"anonymous_id": cookie, "event_type": "product_view", "product_id": product_id,
                                "channel": "web", "user_agent": agent, "page_url": f"/p/{product_id}"}, bot=True)
        self.bots.append((cookie, "rate" if agent == DISGUISED_BOT_AGENT else "user_agent"))

    def _pick_product(self, customer: Customer | None) -> str:
        """A product from a category drawn from the customer's tastes, in the customer's price band."""
        if customer is None:
            return self.rng.choice(self.catalogue.shelves["any"][self.rng.choice(CATEGORIES)])
        category = self.rng.choices(CATEGORIES, customer.tastes)[0]
        band = ARCHETYPES[customer.archetype].price_band
        return self.rng.choice(self.catalogue.shelves[band][category])

    # --- orders ----------------------------------------------------------------------------------------------

    def _order(self, customer: Customer, viewed: list[str], when: dt.datetime, channel: str) -> str:
        items = [{"product_id": product_id, "quantity": 1 + _poisson(self.rng, 0.3),
                  "unit_price": self.catalogue.price[product_id]} for product_id in self._basket(customer, viewed)]
        order_id = f"o-{next(self.order_numbers):07d}"
        record = {"order_id": order_id, "customer_id": customer.customer_id, "order_ts": _iso(when, self.rng),
                  "updated_at": _iso(when), "status": self.rng.choice(ORDER_STATUSES), "channel": channel,
                  "currency": "EUR", "items": items, "total_amount": _total(items)}
        kind = _dirt_kind(self.rng, self.settings.rates, "orders")
        newer = None
        if kind == "resent_newer":  # first sent when placed, re-sent once it moved on
            record["status"] = "placed"
            newer = _json(dict(record, status=self.rng.choice(LATER_STATUSES),
                               updated_at=_iso(self._order_update_time(when))))
        self._land(self.orders_file, order_id, kind, self._landed_order(record, kind), newer)
        return order_id

    def _basket(self, customer: Customer, viewed: list[str]) -> list[str]:
        """Viewed products first, topped up from the customer's tastes; a bundle's first product mostly brings the
        rest of its bundle along."""
        size = max(1, min(8, 1 + _poisson(self.rng, ARCHETYPES[customer.archetype].basket_mean - 1)))
        basket: list[str] = []
        if self.rng.random() < BUNDLE_SEED_SHARE:
            basket.append(self.rng.choice(self.catalogue.bundles)[0])
        for product_id in viewed + [self._pick_product(customer) for _ in range(size)]:
            if len(basket) >= size:
                break
            if product_id not in basket:
                basket.append(product_id)
        for product_id in list(basket):
            if product_id in self.bundle_of_head and self.rng.random() < BUNDLE_COMPLETION:
                basket.extend(p for p in self.bundle_of_head[product_id][1:] if p not in basket)
        return basket

    def _order_update_time(self, placed: dt.datetime) -> dt.datetime:
        if placed < self.end - dt.timedelta(days=1):
            return placed + dt.timedelta(seconds=self.rng.randrange(2 * 3600, 30 * 3600))
        return placed + dt.timedelta(seconds=self.rng.randrange(60, 1800))  # last day: shortly after

    def _landed_order(self, record: dict, kind: str | None) -> str:
        """The order's line as landed: spoiled in place for the kinds of dirt that live inside one line."""
        record = json.loads(json.dumps(record))  # a deep copy: spoiling must not touch the clean record
        first_item = record["items"][0]
        if kind == "null_required":
            record["customer_id"] = None
        elif kind == "wrong_type":
            if self.rng.random() < 0.5 and first_item["quantity"] < len(NUMBER_WORDS):
                first_item["quantity"] = NUMBER_WORDS[first_item["quantity"]]
            else:
                record["total_amount"] = f"{record['total_amount']:.2f}".replace(".", ",")
        elif kind == "negative_price":
            first_item["unit_price"] = -first_item["unit_price"]
            record["total_amount"] = _total(record["items"])  # the total stays consistent: the price is the fault
        elif kind == "future_timestamp":
            record["order_ts"] = _iso(self._future_time())
        elif kind == "unknown_customer":  # an id in the customers' format that no customers file holds
            record["customer_id"] = f"c-{self.unused_customer_number + self.rng.randrange(10**5):06d}"
        text = _json(record)
        return _truncated(text, record["order_id"]) if kind == "malformed_json" else text

    def _future_time(self) -> dt.datetime:
        return self.future_from + dt.timedelta(days=self.rng.randrange(365), seconds=self.rng.randrange(86400))

    # --- events ----------------------------------------------------------------------------------------------

    def _event(self, when: dt.datetime, fields: dict, bot: bool = False) -> None:
        event_id = f"e-{next(self.event_numbers):09d}"
        record = {"event_id": event_id, "event_ts": _iso(when), **dict.fromkeys(EVENT_FIELDS), **fields}
        self.seen_cookies.add(record["anonymous_id"])
        # A bot's session is a planted fault of its own (bots.csv), set aside whole: its events carry no other dirt.
        kind = None if bot else _dirt_kind(self.rng, self.settings.rates, "events")
        if kind == "null_required":
            record["event_type"] = None
        elif kind == "future_timestamp":
            record["event_ts"] = _iso(self._future_time())
        text = _json(record)
        if kind == "malformed_json":
            text = _truncated(text, event_id)
        self._land(self.events_file, event_id, kind, text)

    # --- ground truth ----------------------------------------------------------------------------------------

    def summary(self) -> dict:
        sources = {}
        for source, kinds in SOURCE_KINDS.items():
            counted = {kind: self.landing.kinds[source][kind] for kind in kinds}
            sources[source] = {"rows_written": self.landing.rows[source], "distinct_keys": self.landing.keys[source],
                               "clean": self.landing.clean[source], "kinds": counted}
        sources["products"]["price_updates"] = len(self.catalogue.price_updates)
        settings = dataclasses.asdict(self.settings)
        settings["start_date"] = self.settings.start_date.isoformat()
        return {"settings": settings,
                "period": {"start": _iso(self.start), "end": _iso(self.end),
                           "future_timestamps_from": _iso(self.future_from)},
                "sources": sources}

    def write_ground_truth(self, folder: Path, truth: dict) -> None:
        (folder / "dirt.json").write_text(json.dumps(truth, indent=2) + "\n", encoding="utf-8")
        _write_csv(folder / "archetypes.csv", ["customer_id", "archetype"],
                   [(c.customer_id, c.archetype) for c in self.customers])
        _write_csv(folder / "tastes.csv", ["customer_id", *CATEGORIES],
                   [(c.customer_id, *(f"{t:.4f}" for t in c.tastes)) for c in self.customers])
        (folder / "bundles.json").write_text(json.dumps(self.catalogue.bundles) + "\n", encoding="utf-8")
        _write_csv(folder / "identity.csv", ["anonymous_id", "customer_id", "identified"], self._identity_rows())
        _write_csv(folder / "person_groups.csv", ["customer_id", "person_key"],
                   [row for d in self.duplicates for row in ((d.original.customer_id, d.original.customer_id),
                                                             (d.record["customer_id"], d.original.customer_id))])
        _write_csv(folder / "bots.csv", ["anonymous_id", "reason"], self.bots)
        (folder / "campaign_uplift.json").write_text(json.dumps(self._uplift_truth(), indent=2) + "\n",
                                                     encoding="utf-8")
        _write_csv(folder / "ab_assignments.csv", ["customer_id", "campaign_id", "variant"],
                   [(c.customer_id, UPLIFT_CAMPAIGN, c.email_arm) for c in self.customers if c.email_arm])
        _write_csv(folder / "privacy_requests.csv", ["request_id", "customer_id", "request_type", "received_at"],
                   [(r["request_id"], r["customer_id"], r["request_type"], r["received_at"])
                    for r in self.privacy_requests])

    def _identity_rows(self) -> list[tuple[str, str, str]]:
        """Every anonymous id that appears in events: its owner (empty for visitors who never signed up and for
        bots) and whether some event ties the two together (only then can stitching recover the link)."""
        rows = [(cookie, c.customer_id, _bool(cookie in c.identified_cookies))
                for c in self.customers for cookie in c.cookies if cookie in self.seen_cookies]
        rows += [(cookie, "", "false") for cookie in self.visitors if cookie in self.seen_cookies]
        rows += [(cookie, "", "false") for cookie, _ in self.bots]
        return rows

    def _uplift_truth(self) -> dict:
        return {
            "campaign_id": UPLIFT_CAMPAIGN,
            "send_date": (self.settings.start_date + dt.timedelta(days=self.send_day)).isoformat(),
            "assignment": "per customer, A or B with probability 1/2 (customers with email consent signed up by "
                          "the send date); every assigned customer has an email_open event naming the arm",
            "conversion": "an email_click on the campaign, followed by a purchase in the session it lands",
            "conversion_probability": CONVERSION_PROBABILITY,
            "planted_absolute_uplift": round(CONVERSION_PROBABILITY["B"] - CONVERSION_PROBABILITY["A"], 4),
            "realised": {arm: {"assigned": counts["assigned"], "converted": counts["converted"]}
                         for arm, counts in self.email_results.items()},
            "no_uplift_campaigns": [NO_UPLIFT_CAMPAIGN],
        }


# --- small helpers -------------------------------------------------------------------------------------------

def _dirt_kind(rng: random.Random, rates: DirtRates, source: str) -> str | None:
    """At most one kind of dirt for a record, each with its rate (one draw, so kinds never combine)."""
    draw = rng.random()
    for kind in SOURCE_KINDS[source]:
        draw -= getattr(rates, kind)
        if draw < 0:
            return kind
    return None


def _person_variant(person: str) -> str:
    """A stable A/B arm for a person that does not consume draws (crc32: the same on every run and platform)."""
    return "AB"[zlib.crc32(person.encode()) % 2]


def _poisson(rng: random.Random, mean: float) -> int:
    if mean <= 0:
        return 0
    count, threshold, product = 0, math.exp(-mean), rng.random()
    while product > threshold:
        count += 1
        product *= rng.random()
    return count


def _dirichlet(rng: random.Random, concentration: float, size: int) -> list[float]:
    """Sparse category tastes: with a concentration below 1 most weight falls on two or three categories."""
    draws = [rng.gammavariate(concentration, 1.0) for _ in range(size)]
    total = sum(draws) or 1.0
    return [d / total for d in draws]


def _total(items: list[dict]) -> float:
    return round(sum(item["quantity"] * item["unit_price"] for item in items), 2)


def _truncated(text: str, key: str) -> str:
    """A line cut off past its middle, and always past its key, so the broken line still names its record."""
    return text[: max(len(text) // 2, text.index(key) + len(key) + 1)]


def _json(record: dict) -> str:
    return json.dumps(record, separators=(",", ":"))


def _csv_line(fields: list[str], record: dict) -> str:
    buffer = io.StringIO()
    csv.DictWriter(buffer, fieldnames=fields, lineterminator="", extrasaction="ignore").writerow(record)
    return buffer.getvalue()


def _write_csv(path: Path, header: list[str], rows) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle, lineterminator="\n")
        out.writerow(header)
        out.writerows(rows)


def _midnight(date: dt.date) -> dt.datetime:
    return dt.datetime.combine(date, dt.time())


def _years_later(moment: dt.datetime, years: int) -> dt.datetime:
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:  # 29 February
        return moment.replace(year=moment.year + years, month=3, day=1)


def _stamp(date: dt.date) -> str:
    return date.strftime("%Y%m%d")


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _iso(moment: dt.datetime, rng: random.Random | None = None) -> str:
    """UTC ISO-8601 with Z; given an rng, one in five is written as local time with a +01:00 or +02:00 offset."""
    if rng is not None and rng.random() < 0.2:
        hours = rng.choice([1, 2])
        return (moment + dt.timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%S") + f"+0{hours}:00"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
