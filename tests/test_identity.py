"""Identity resolution on a hand-made graph: stitching, shared-identifier cut, blocked values, stable ids."""

from __future__ import annotations

from lib.config import IdentitySettings
from lib.identity import assign_person_ids, connected_components, identity_edges, identity_nodes

EVENT_SCHEMA = "anonymous_id string, customer_id string, event_type string"
CUSTOMER_SCHEMA = "customer_id string, email_hash string"


def people(spark, events, customers, settings=IdentitySettings(max_customers_per_identifier=3), previous=None):
    ev = spark.createDataFrame(events, EVENT_SCHEMA)
    cu = spark.createDataFrame(customers, CUSTOMER_SCHEMA)
    components = connected_components(identity_nodes(ev, cu), identity_edges(ev, cu), settings)
    mapping, changes = assign_person_ids(components.labels, previous)
    return {r["node"]: r["person_id"] for r in mapping.collect()}, changes, components, mapping


def test_cookies_customers_and_shared_emails_join_into_one_person(spark):
    events = [("a1", "c1", "login"), ("a2", "c1", "purchase"), ("a3", "c2", "login"), ("a4", None, "page_view"),
              ("a5", "c3", "page_view")]  # a page view with a customer id is not a login: no link
    customers = [("c1", "h1"), ("c2", "h1"), ("c3", "h3")]
    person, _, _, _ = people(spark, events, customers)
    same = ["anonymous_id:a1", "anonymous_id:a2", "anonymous_id:a3", "customer_id:c1", "customer_id:c2",
            "email_hash:h1"]
    assert len({person[n] for n in same}) == 1
    assert person["anonymous_id:a4"] not in (person["customer_id:c1"], person["customer_id:c3"])
    assert person["anonymous_id:a5"] != person["customer_id:c3"]


def test_a_cookie_shared_by_many_customers_is_cut_instead_of_merging_them(spark):
    events = [("kiosk", f"c{i}", "login") for i in range(5)] + [("a1", "c1", "login")]
    customers = [(f"c{i}", f"h{i}") for i in range(5)]
    person, _, components, _ = people(spark, events, customers)
    assert len({person[f"customer_id:c{i}"] for i in range(5)}) == 5
    assert person["anonymous_id:a1"] == person["customer_id:c1"]
    assert [r["node"] for r in components.cut_identifiers.collect()] == ["anonymous_id:kiosk"]


def test_blocked_identifier_values_never_link(spark):
    events = [("anonymous", "c1", "login"), ("anonymous", "c2", "login")]
    person, _, _, _ = people(spark, events, [("c1", "h1"), ("c2", "h2")])
    assert person["customer_id:c1"] != person["customer_id:c2"]


def test_person_ids_survive_new_data_and_merges_are_recorded(spark):
    first, _, _, first_mapping = people(spark, [("a1", "c1", "login"), ("a2", "c2", "login")],
                                        [("c1", "h1"), ("c2", "h2")])
    second, changes, _, _ = people(spark, [("a1", "c1", "login"), ("a2", "c2", "login"), ("a9", "c1", "login")],
                                   [("c1", "h1"), ("c2", "h2")], previous=first_mapping)
    assert second["customer_id:c1"] == first["customer_id:c1"]
    assert second["anonymous_id:a9"] == first["customer_id:c1"]
    assert second["customer_id:c2"] == first["customer_id:c2"]
    assert changes.count() == 0
    # c2 turns out to share c1's email: the two people merge, keeping one of their ids.
    third, changes, _, _ = people(spark, [("a1", "c1", "login"), ("a2", "c2", "login")],
                                  [("c1", "h1"), ("c2", "h1")], previous=first_mapping)
    assert third["customer_id:c1"] == third["customer_id:c2"] in (first["customer_id:c1"], first["customer_id:c2"])
    assert [r["change"] for r in changes.collect()] == ["merge"]


def test_a_person_with_hundreds_of_cookies_stays_one_person(spark):
    events = [(f"a{i}", "c1", "login") for i in range(300)] + [("b1", "c2", "login")]
    person, _, components, _ = people(spark, events, [("c1", "h1"), ("c2", "h2")])
    assert len({person[f"anonymous_id:a{i}"] for i in range(300)} | {person["customer_id:c1"]}) == 1
    assert person["anonymous_id:b1"] == person["customer_id:c2"] != person["customer_id:c1"]
    assert components.iterations <= 4
