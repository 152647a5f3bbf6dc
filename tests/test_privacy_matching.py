"""Which rows an erasure finds: typed columns by their identifier kind, raw records (bronze, quarantine) by the
quoted strings in their text."""

from __future__ import annotations

from lib.privacy import erased_identifiers, person_rows, request_probes, rows_per_request

ERASED = {"customer_id": {"c-000001"}, "anonymous_id": {"anon-7"}, "email": {"ann@example.com"},
          "email_hash": {"h-ann"}}


def _matched_records(spark, records: list[str | None]) -> list[str | None]:
    rows = spark.createDataFrame([(r,) for r in records], "value string")
    return [r["value"] for r in rows.filter(person_rows(rows.schema, ERASED)).collect()]


def test_a_raw_record_names_the_person_by_a_whole_quoted_string_whatever_its_case_or_blanks(spark):
    named = ['{"customer_id": "C-000001", "total": 3}', '{"email": "  Ann@Example.com\t"}', '["x", "anon-7"]']
    others = ['{"customer_id": "c-0000012"}', '{"note": "c-000001 wrote"}', '{"email_hash": "h-ann"}',
              "c-000001,no quotes at all", "c-000001", 'anon-7 "before the first quote"',
              '"after the last quote" anon-7', "", None]
    assert _matched_records(spark, named + others) == named


def test_a_raw_record_missing_a_quote_still_shows_the_strings_after_it(spark):
    cut = ['{customer_id": "c-000001", "total": 3}', '{"order": "o-1", "anonymous_id": "anon-7']
    assert _matched_records(spark, cut) == cut[:1]


def test_typed_columns_match_their_own_identifier_kind_only(spark):
    rows = spark.createDataFrame([("c-000001", "h-x"), ("c-2", "h-ann"), ("anon-7", "h-y"), ("c-3", None)],
                                 "customer_id string, email_hash string")
    found = rows.filter(person_rows(rows.schema, ERASED)).collect()
    assert [(r["customer_id"], r["email_hash"]) for r in found] == [("c-000001", "h-x"), ("c-2", "h-ann")]


def test_found_rows_are_counted_for_each_request_whose_person_they_carry(spark):
    requests = {"r-ann": ERASED, "r-bob": {"customer_id": {"c-2"}, "email": {"bob@example.com"}},
                "r-nobody": {"customer_id": {"c-404"}}}
    rows = spark.createDataFrame(
        [("c-000001", None), ("c-2", '{"email": " BOB@example.com"}'), ("c-3", '{"anonymous_id": "anon-7"}'),
         ("c-2", '{"customer_id": "c-000001"}'), ("c-9", "no one")],
        "customer_id string, value string")
    probes = spark.createDataFrame(request_probes(requests), "request_id string, tag string, value string")
    counted = {r["request_id"]: r["rows"] for r in rows_per_request(rows, probes).collect()}
    # The same rows as each request's own condition finds; a row naming two people counts for both.
    each_alone = {request_id: rows.filter(person_rows(rows.schema, identifiers)).count()
                  for request_id, identifiers in requests.items()}
    assert counted == {"r-ann": 3, "r-bob": 2} == {k: n for k, n in each_alone.items() if n}


def test_an_erasure_does_not_reach_customers_who_only_share_the_persons_name(spark):
    customers = spark.createDataFrame(
        [("c-1", "e-ann", "p-ann", "n-anna-lopez"), ("c-2", "e-other", "p-other", "n-anna-lopez")],
        "customer_id string, email_hash string, phone_hash string, name_hash string")
    requests = spark.createDataFrame([("r-1", None)], "request_id string, email string")
    named = spark.createDataFrame([("r-1", "c-1")], "request_id string, customer_id string")
    identifiers: dict[str, set[str]] = {}
    for row in erased_identifiers(named, requests, None, customers, None, None).collect():
        identifiers.setdefault(row["kind"], set()).add(row["value"])
    assert identifiers == {"customer_id": {"c-1"}, "email_hash": {"e-ann"}, "phone_hash": {"p-ann"}}
    assert [r["customer_id"] for r in customers.filter(person_rows(customers.schema, identifiers)).collect()] == ["c-1"]
