"""The sample-data generator: deterministic, balanced ground truth, and planted faults and structure that are real."""

from __future__ import annotations

import csv
import filecmp
import json
from collections import Counter
from itertools import combinations
from pathlib import Path

import pytest

from lib.generate import DirtRates, GeneratorSettings, generate

SMALL = GeneratorSettings(customers=300, days=12, seed=5, products=60,
                          rates=DirtRates(exact_duplicate=0.03, resent_newer=0.03, null_required=0.02,
                                          malformed_json=0.02, wrong_type=0.02, negative_price=0.02,
                                          future_timestamp=0.02, unknown_customer=0.02))


@pytest.fixture(scope="module")
def landing(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("landing")
    generate(root, SMALL)
    return root


def truth(landing: Path) -> dict:
    return json.loads((landing / "ground_truth" / "dirt.json").read_text())


def dirt_records(landing: Path) -> list[dict]:
    with (landing / "ground_truth" / "dirt_records.csv").open() as handle:
        return list(csv.DictReader(handle))


def jsonl_lines(landing: Path, source: str) -> list[str]:
    return [line for f in sorted((landing / source).iterdir()) for line in f.read_text().splitlines()]


def parsed(landing: Path, source: str) -> list[dict]:
    records = []
    for line in jsonl_lines(landing, source):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return records


def orders(landing: Path) -> list[dict]:
    return parsed(landing, "orders")


def test_same_seed_writes_identical_files_and_another_seed_does_not(landing, tmp_path):
    again, other = tmp_path / "again", tmp_path / "other"
    generate(again, SMALL)
    generate(other, GeneratorSettings(**{**SMALL.__dict__, "seed": 6}))
    for source in ("orders", "events", "customers"):
        names = sorted(p.name for p in (landing / source).iterdir())
        match, mismatch, errors = filecmp.cmpfiles(landing / source, again / source, names, shallow=False)
        assert mismatch == [] and errors == [] and len(match) == len(names)
    assert (landing / "orders" / "orders_20260102.jsonl").read_text() != \
        (other / "orders" / "orders_20260102.jsonl").read_text()


def test_rows_written_balance_clean_plus_dirt_per_source(landing):
    for name, source in truth(landing)["sources"].items():
        assert source["rows_written"] == source["clean"] + sum(source["kinds"].values()), name
    assert truth(landing)["sources"]["orders"]["rows_written"] == len(jsonl_lines(landing, "orders"))
    assert truth(landing)["sources"]["events"]["rows_written"] == len(jsonl_lines(landing, "events"))


def test_every_dirt_record_points_at_its_line_and_kinds_match_the_counts(landing):
    records = dirt_records(landing)
    counted = Counter((r["source"], r["kind"]) for r in records)
    for name, source in truth(landing)["sources"].items():
        for kind, count in source["kinds"].items():
            assert counted[(name, kind)] == count, (name, kind)
            assert count > 0, f"{name}/{kind} never planted at the test's rates"
    for record in records:
        line = (landing / record["file"]).read_text().splitlines()[int(record["line_no"]) - 1]
        assert record["key"] in line, record


def test_only_malformed_lines_fail_to_parse(landing):
    malformed = {(r["file"], int(r["line_no"])) for r in dirt_records(landing) if r["kind"] == "malformed_json"}
    for source in ("orders", "events"):
        for path in sorted((landing / source).iterdir()):
            for number, line in enumerate(path.read_text().splitlines(), start=1):
                key = (f"{source}/{path.name}", number)
                try:
                    json.loads(line)
                    assert key not in malformed, key
                except json.JSONDecodeError:
                    assert key in malformed, key


def test_unknown_customer_orders_reference_no_customer_and_future_orders_lie_past_the_period(landing):
    customer_ids = {row["customer_id"] for f in (landing / "customers").iterdir()
                    for row in csv.DictReader(f.open())}
    by_id = {}
    for order in orders(landing):
        by_id.setdefault(order["order_id"], []).append(order)
    for record in dirt_records(landing):
        if record["kind"] == "unknown_customer":
            assert all(o["customer_id"] not in customer_ids for o in by_id[record["key"]])
        if record["kind"] == "future_timestamp" and record["source"] == "orders":
            assert any(o["order_ts"] >= "2031" for o in by_id[record["key"]])


def test_resent_orders_have_a_newer_version_later(landing):
    versions = Counter(o["order_id"] for o in orders(landing))
    resent = [r["key"] for r in dirt_records(landing) if r["source"] == "orders" and r["kind"] == "resent_newer"]
    assert resent and all(versions[k] >= 2 for k in resent)


def test_planted_bundles_co_occur_far_above_chance(landing):
    baskets = [{i["product_id"] for i in o["items"]} for o in orders(landing)
               if isinstance(o.get("items"), list)]
    n = len(baskets)
    support = Counter(p for b in baskets for p in b)
    bundles = json.loads((landing / "ground_truth" / "bundles.json").read_text())
    for bundle in bundles:
        for a, b in combinations(bundle, 2):
            together = sum(1 for basket in baskets if a in basket and b in basket)
            lift = together * n / (support[a] * support[b])
            assert lift > 2, (bundle, a, b, lift)


def test_archetypes_differ_in_purchase_frequency(landing):
    with (landing / "ground_truth" / "archetypes.csv").open() as handle:
        archetype = {r["customer_id"]: r["archetype"] for r in csv.DictReader(handle)}
    bought = Counter(archetype.get(o["customer_id"]) for o in orders(landing))
    members = Counter(archetype.values())
    rate = {a: bought[a] / members[a] for a in members}
    assert rate["champion"] > rate["loyal"] > rate["window_shopper"]


def test_ground_truth_names_identity_links_bots_and_the_ab_test(landing):
    folder = landing / "ground_truth"
    identity = list(csv.DictReader((folder / "identity.csv").open()))
    logins = [e for e in parsed(landing, "events") if e["event_type"] == "login"]
    linked = {r["anonymous_id"]: r["customer_id"] for r in identity}
    assert logins and all(linked[e["anonymous_id"]] == e["customer_id"] for e in logins)
    assert list(csv.DictReader((folder / "bots.csv").open()))
    uplift = json.loads((folder / "campaign_uplift.json").read_text())
    assert uplift["planted_absolute_uplift"] > 0
