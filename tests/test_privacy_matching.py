"""Which rows an erasure finds: typed columns by their identifier kind, raw records (bronze, quarantine) by the
quoted strings in their text."""

from __future__ import annotations

from lib.privacy import person_rows

ERASED = {"customer_id": {"c-000001"}, "anonymous_id": {"anon-7"}, "email": {"ann@example.com"},
          "email_hash": {"h-ann"}}


def _matched_records(spark, records: list[str | None]) -> list[str | None]:
    rows = spark.createDataFrame([(r,) for r in records], "value string")
    return [r["value"] for r in rows.filter(person_rows(rows.schema, ERASED)).collect()]


def test_a_raw_record_names_the_person_by_a_whole_quoted_string_whatever_its_case_or_blanks(spark):
    named = ['{"customer_id": "C-000001", "total": 3}', '{"email": "  Ann@Example.com\t"}', '["x", "anon-7"]']
    others = ['{"customer_id": "c-0000012"}', '{"note": "c-000001 wrote"}', '{"email_hash": "h-ann"}',
              "c-000001,no quotes at all", "", None]
    assert _matched_records(spark, named + others) == named


def test_a_raw_record_missing_a_quote_still_shows_the_strings_after_it(spark):
    cut = ['{customer_id": "c-000001", "total": 3}', '{"order": "o-1", "anonymous_id": "anon-7']
    assert _matched_records(spark, cut) == cut[:1]


def test_typed_columns_match_their_own_identifier_kind_only(spark):
    rows = spark.createDataFrame([("c-000001", "h-x"), ("c-2", "h-ann"), ("anon-7", "h-y"), ("c-3", None)],
                                 "customer_id string, email_hash string")
    found = rows.filter(person_rows(rows.schema, ERASED)).collect()
    assert [(r["customer_id"], r["email_hash"]) for r in found] == [("c-000001", "h-x"), ("c-2", "h-ann")]
