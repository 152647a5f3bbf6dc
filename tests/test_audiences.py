"""Audiences: definitions compile to Spark filters only when they fit the profile schema; injection attempts are
refused or stay plain literals; members need the channel's consent; activation files carry pseudonymous ids only."""

from __future__ import annotations

import datetime as dt

import pytest
import yaml
from pyspark.sql import functions as F
from typer.testing import CliRunner

from lib.audiences import (
    DEFAULT_DEFINITIONS,
    Audience,
    AudienceError,
    audience_candidates,
    audience_condition,
    load_audiences,
    profile_with_derived_columns,
)
from lib.cli import app

AS_OF = dt.date(2026, 2, 14)
PROFILE_SCHEMA = (
    "person_id string, rfm_segment string, lifecycle_stage string, clv double, favourite_category string, "
    "consent_email boolean, consent_ads boolean, orders_lifetime long, r_score int, m_score int, "
    "last_purchase_ts timestamp, as_of date"
)
# p1..p6: clv ranks 0.8, 0.6, 1.0, 0.2, 0.0, 0.4 (percent_rank of 500, 300, 800, 10, 0, 50).
PROFILE_ROWS = [
    ("p1", "Champions", "active", 500.0, "Shoes", True, True, 10, 5, 5, dt.datetime(2026, 2, 10), AS_OF),
    ("p2", "Loyal", "active", 300.0, "Books", False, True, 5, 4, 4, dt.datetime(2026, 2, 1), AS_OF),
    ("p3", "At risk", "at_risk", 800.0, "Shoes", None, None, 4, 1, 5, dt.datetime(2025, 11, 1), AS_OF),
    ("p4", "Lost", "churned", 10.0, None, True, False, 1, 1, 1, dt.datetime(2025, 6, 1), AS_OF),
    ("p5", "No purchase", "prospect", 0.0, None, True, True, 0, 0, 0, None, AS_OF),
    ("p6", "New", "new", 50.0, "Toys", True, True, 1, 5, 1, dt.datetime(2026, 2, 12), AS_OF),
]
EMAIL_HASHES = [(f"p{i}", f"{i:064x}") for i in (1, 2, 3, 4, 5)]  # p6 has no email address


@pytest.fixture(scope="module")
def profile(spark):
    return spark.createDataFrame(PROFILE_ROWS, PROFILE_SCHEMA)


def _audience(filter_, channel="email", name="test_audience") -> Audience:
    return Audience(name, channel, "", filter_, "test")


def _matching(profile, filters) -> list[set[str]]:
    """Per filter, the people it selects (one Spark job for all of them)."""
    conditions = [audience_condition(_audience(f), profile.schema).alias(f"f{i}") for i, f in enumerate(filters)]
    rows = profile_with_derived_columns(profile).select("person_id", *conditions).collect()
    return [{row["person_id"] for row in rows if row[f"f{i}"]} for i in range(len(filters))]


FILTER_CASES = [
    ({"column": "rfm_segment", "in": ["Champions", "Loyal"]}, {"p1", "p2"}),
    ({"all": [{"column": "orders_lifetime", "ge": 4}, {"column": "favourite_category", "eq": "Shoes"}]},
     {"p1", "p3"}),
    ({"any": [{"column": "lifecycle_stage", "eq": "churned"}, {"column": "r_score", "between": [4, 5]}]},
     {"p1", "p2", "p4", "p6"}),
    ({"not": {"column": "lifecycle_stage", "in": ["churned", "prospect"]}}, {"p1", "p2", "p3", "p6"}),
    ({"column": "clv_percentile", "ge": 0.8}, {"p1", "p3"}),
    ({"column": "favourite_category", "is_null": True}, {"p4", "p5"}),
    # Unknown values match no condition but is_null: p4 and p5 have no favourite category.
    ({"column": "favourite_category", "ne": "Shoes"}, {"p2", "p6"}),
    ({"column": "last_purchase_ts", "gt": dt.date(2026, 2, 5)}, {"p1", "p6"}),
    ({"column": "last_purchase_ts", "lt": "2025-12-01T00:00:00"}, {"p3", "p4"}),
    ({"column": "as_of", "eq": "2026-02-14"}, {"p1", "p2", "p3", "p4", "p5", "p6"}),
    ({"column": "consent_ads", "eq": False}, {"p4"}),
    ({"column": "clv", "not_in": [0, 10.0]}, {"p1", "p2", "p3", "p6"}),
]


def test_filters_select_the_people_they_describe(profile):
    selected = _matching(profile, [filter_ for filter_, _ in FILTER_CASES])
    for (filter_, expected), people in zip(FILTER_CASES, selected):
        assert people == expected, filter_


def test_a_timestamp_without_a_zone_is_read_in_the_session_time_zone(spark, driver_in_another_time_zone):
    # Purchase times as Spark reads them from the tables: in the session's zone, UTC.
    bought = spark.createDataFrame([("before", "2026-02-09 23:59:59"), ("at", "2026-02-10 00:00:00")],
                                   "person_id string, ts string").select(
        "person_id", F.col("ts").cast("timestamp").alias("last_purchase_ts"))
    for value in ("2026-02-10T00:00:00", dt.datetime(2026, 2, 10), dt.date(2026, 2, 10)):
        for filter_, expected in [({"column": "last_purchase_ts", "ge": value}, {"at"}),
                                  ({"column": "last_purchase_ts", "in": [value]}, {"at"}),
                                  ({"column": "last_purchase_ts", "between": [value, "2026-02-11"]}, {"at"})]:
            condition = audience_condition(_audience(filter_), bought.schema)
            assert {row["person_id"] for row in bought.filter(condition).collect()} == expected, filter_


def test_an_injected_column_name_is_refused_naming_the_audience_and_the_column(profile):
    for column in ("1=1; DROP TABLE x", "rfm_segment` = 'x' OR 1=1 --", "person_id OR 1=1"):
        with pytest.raises(AudienceError) as refused:
            audience_condition(_audience({"column": column, "eq": "x"}, name="evil"), profile.schema)
        assert "audience 'evil'" in str(refused.value)
        assert f"column {column!r} is not a column of gold.customer_profile" in str(refused.value)


def test_an_injected_value_is_a_plain_literal_that_matches_no_one(profile):
    injected = "' OR 1=1 --"
    equal, within, different = _matching(profile, [
        {"column": "rfm_segment", "eq": injected},
        {"column": "rfm_segment", "in": [injected, "x') OR ('1'='1"]},
        {"column": "rfm_segment", "ne": injected},
    ])
    assert equal == within == set()
    # The same literal compared the other way round: everyone with a segment differs from it.
    assert different == {f"p{i}" for i in range(1, 7)}


@pytest.mark.parametrize("filter_, named", [
    ({"column": "rfm_segmnt", "eq": "Champions"}, ["column 'rfm_segmnt' is not a column", "did you mean rfm_segment"]),
    ({"column": "rfm_segment", "gt": "Champions"},
     ["(column rfm_segment)", "operator 'gt' is not allowed on a string column; allowed: eq, ne, in, not_in, is_null"]),
    ({"column": "r_score", "ge": "high"}, ["ge value 'high' (str) is not a number"]),
    ({"column": "orders_lifetime", "eq": True}, ["eq value True (bool) is not a number"]),
    ({"column": "consent_email", "eq": "yes"}, ["eq value 'yes' (str) is not true or false"]),
    ({"column": "consent_email", "lt": True}, ["operator 'lt' is not allowed on a boolean column; allowed: eq, ne"]),
    ({"column": "clv", "gte": 100}, ["operator 'gte' is not an operator", "allowed: eq, ne, gt, ge, lt, le"]),
    ({"column": "clv", "gt": 1, "lt": 5}, ["exactly one operator, got ['gt', 'lt']"]),
    ({"column": "rfm_segment", "in": []}, ["in takes a non-empty list"]),
    ({"column": "clv", "between": [5, 1]}, ["low is above high"]),
    ({"column": "as_of", "gt": "yesterday"}, ["gt value 'yesterday' (str) is not a date (YYYY-MM-DD)"]),
    ({"column": "favourite_category", "is_null": "yes"}, ["is_null takes true or false"]),
    ({"all": {"column": "clv", "gt": 1}}, ["filter: all takes a non-empty list of conditions"]),
    ({"all": [{"column": "clv", "gt": 1}, {"or": []}]}, ["filter.all[1]", "exactly one of all, any, not"]),
    ("rfm_segment = 'Champions'", ["expected a condition"]),
])
def test_a_bad_filter_is_refused_with_a_message_naming_the_problem(profile, filter_, named):
    with pytest.raises(AudienceError) as refused:
        audience_condition(_audience(filter_, name="broken"), profile.schema)
    message = str(refused.value)
    assert message.startswith("audience 'broken' (test), filter")
    for part in named:
        assert part in message


def _definitions(tmp_path, entries, name="audiences.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(entries))
    return path


@pytest.mark.parametrize("entry, named", [
    ({"name": "sms_blast", "channel": "sms", "filter": {"column": "clv", "gt": 1}},
     "audience 'sms_blast' (audiences.yaml entry 1): unknown channel 'sms'; allowed: email, ads"),
    ({"name": "../../etc", "channel": "email", "filter": {"column": "clv", "gt": 1}},
     "name '../../etc' must be lower-case letters, digits and underscores"),
    ({"name": "vip\n", "channel": "ads", "filter": {"column": "clv", "gt": 1}}, "name 'vip\\n' must be"),
    ({"name": "no_filter", "channel": "ads"}, "audience 'no_filter' (audiences.yaml entry 1): has no filter"),
    ({"name": "typo", "channel": "ads", "filters": {}}, "unknown key(s) filters"),
])
def test_a_bad_definition_file_entry_is_refused(tmp_path, entry, named):
    with pytest.raises(AudienceError) as refused:
        load_audiences(_definitions(tmp_path, [entry]))
    assert named in str(refused.value)


def test_audience_names_are_unique_across_files_and_only_picks_defined_ones(tmp_path):
    entry = {"name": "vip", "channel": "ads", "filter": {"column": "clv", "gt": 100}}
    _definitions(tmp_path, [entry], "a.yaml")
    _definitions(tmp_path, [{**entry, "name": "buyers"}], "b.yaml")
    assert [a.name for a in load_audiences(tmp_path, only=["vip", "vip"])] == ["vip"]
    with pytest.raises(AudienceError, match="unknown audience\\(s\\) 'viip'; defined: buyers, vip"):
        load_audiences(tmp_path, only=["viip"])
    _definitions(tmp_path, [entry], "c.yaml")
    with pytest.raises(AudienceError, match="'vip' is defined twice: in a.yaml entry 1 and c.yaml entry 1"):
        load_audiences(tmp_path)


def test_shipped_audiences_compile_against_the_profile_columns_they_use(profile):
    shipped = load_audiences(DEFAULT_DEFINITIONS)
    assert {a.name for a in shipped} >= {"champions_email", "at_risk_high_value", "win_back_churned",
                                         "new_customers"}
    for audience in shipped:
        audience_condition(audience, profile.schema)


def test_members_need_consent_for_the_channel_and_email_members_an_email_hash(spark, profile):
    email_hashes = spark.createDataFrame(EMAIL_HASHES, "person_id string, email_hash string")
    everyone = {"column": "orders_lifetime", "ge": 0}
    candidates = audience_candidates(
        profile, [_audience(everyone, "email", "all_email"), _audience(everyone, "ads", "all_ads")], email_hashes)
    reachable = {(row["audience"], row["person_id"]): row["email_hash"]
                 for row in candidates.filter("reachable").collect()}
    # p2 refused email, p3's consent is unknown, p6 has no email address; p3 (unknown) and p4 (no) for ads.
    assert reachable == {("all_email", "p1"): f"{1:064x}", ("all_email", "p4"): f"{4:064x}",
                         ("all_email", "p5"): f"{5:064x}", ("all_ads", "p1"): None, ("all_ads", "p2"): None,
                         ("all_ads", "p5"): None, ("all_ads", "p6"): None}
    assert candidates.count() == 12


def test_cli_lists_audiences_and_refuses_a_bad_file_before_starting_spark(tmp_path, monkeypatch):
    monkeypatch.setenv("DMP_AUDIENCES__DEFINITIONS", str(DEFAULT_DEFINITIONS))
    listed = CliRunner().invoke(app, ["audience", "list"])
    assert listed.exit_code == 0, listed.output
    assert "champions_email" in listed.output and "win_back_churned" in listed.output
    bad = _definitions(tmp_path, [{"name": "x", "channel": "fax", "filter": {"column": "clv", "gt": 1}}])
    monkeypatch.setenv("DMP_AUDIENCES__DEFINITIONS", str(bad))
    refused = CliRunner().invoke(app, ["audience", "build"])
    assert refused.exit_code == 2
    assert "unknown channel 'fax'" in refused.output

