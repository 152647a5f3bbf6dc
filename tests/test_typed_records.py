"""Typing bronze records: layout drift is named per record, whatever order a record's keys come in."""

from __future__ import annotations

from lib.schemas import table_schema
from lib.silver import typed_records

SCHEMA = table_schema("campaigns")


def _bronze(spark, *values: str):
    rows = [(f"0#{i}", value, None, "landing/campaigns/day1.jsonl", None) for i, value in enumerate(values)]
    return spark.createDataFrame(
        rows, "_record_id string, value string, _parse_error string, _source_file string, _ingested_at timestamp")


def _record(keys: list[str], extra: dict[str, str] | None = None) -> str:
    fields = {key: f"v-{key}" for key in keys} | (extra or {})
    return "{" + ",".join(f'"{key}":"{value}"' for key, value in fields.items()) + "}"


def test_drift_is_named_sorted_and_records_in_another_key_order_are_not_drift(spark):
    names = list(SCHEMA.column_names)
    as_schema = _record(names)
    reordered = _record(list(reversed(names)))
    drifted = _record([n for n in names if n != names[1]], {"zeta_tier": "gold", "alpha_code": "x"})
    typed = typed_records(_bronze(spark, as_schema, reordered, drifted), SCHEMA).orderBy("_record_id").collect()
    assert [(r["_new_columns"], r["_missing_columns"]) for r in typed] == [
        (None, None), (None, None), ("alpha_code,zeta_tier", names[1])]
    assert typed[1][names[0]] == typed[0][names[0]] == f"v-{names[0]}"


def test_a_malformed_record_names_no_drift(spark):
    [typed] = typed_records(_bronze(spark, '{"campaign_id": "c1", "na'), SCHEMA).collect()
    assert (typed["_new_columns"], typed["_missing_columns"]) == (None, None)
