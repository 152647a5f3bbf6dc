"""Properties of the pure cleaning functions on arbitrary text (hypothesis): they never raise, keep the row shape,
produce only standard forms, and are idempotent. Spark examples are batched (one DataFrame per example list)."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lib.csv_safety import FORMULA_TRIGGERS, formula_safe, neutralised_cell
from lib.customers import E164, standardised_customers
from lib.schemas import countries

# Text as it arrives from a CRM: anything, plus the near-misses that exercise each branch.
HOSTILE_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", " ", "=1+1", "@a", "-3", "+49 30 1234567", "0049301234567", "030 1234567", "DEU",
                     " germany ", "de", "A@B.CO ", "a@b", "\t=cmd", "\r@x", "'=already", "ÄÖÜ@ß.de"]),
    st.from_regex(r"[+0-9 ()\-]{0,20}", fullmatch=True),
)
SPARK_EXAMPLES = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@given(st.text())
def test_neutralised_cell_never_starts_with_a_formula_trigger(value):
    assert not neutralised_cell(value).startswith(FORMULA_TRIGGERS)


@given(st.text())
def test_neutralised_cell_is_idempotent_and_only_ever_prefixes_a_quote(value):
    once = neutralised_cell(value)
    assert neutralised_cell(once) == once
    assert once in (value, "'" + value)
    assert (once != value) == value.startswith(FORMULA_TRIGGERS)


def test_neutralised_cell_keeps_null():
    assert neutralised_cell(None) is None


@SPARK_EXAMPLES
@given(st.lists(st.one_of(st.none(), HOSTILE_TEXT), min_size=1, max_size=40))
def test_formula_safe_on_spark_agrees_with_the_python_rule_and_leaves_other_types_alone(spark, values):
    df = spark.createDataFrame([(i, v) for i, v in enumerate(values)], "n long, cell string")
    rows = sorted(formula_safe(df).collect())
    assert [r["n"] for r in rows] == list(range(len(values)))
    assert [r["cell"] for r in rows] == [neutralised_cell(v) for v in values]


@SPARK_EXAMPLES
@given(st.lists(st.tuples(HOSTILE_TEXT, HOSTILE_TEXT, HOSTILE_TEXT), min_size=1, max_size=40))
def test_standardised_customers_never_raise_keep_rows_give_standard_forms_and_are_idempotent(spark, contacts):
    raw = spark.createDataFrame([(i, *c) for i, c in enumerate(contacts)],
                                "n long, email string, phone string, country string")
    table = countries()
    once = standardised_customers(raw, table)
    twice = standardised_customers(once.select("n", "email", "phone", "country"), table)
    first = sorted(once.collect())
    second = sorted(twice.collect())
    assert len(first) == len(contacts)
    iso_codes = {c["iso2"] for c in table}
    for row, (email, phone, country) in zip(first, contacts):
        assert (row["email"] is None) == (email is None)
        assert row["email"] is None or row["email"] == row["email"].strip(" ")
        assert (row["_email_valid"] is None) == (email is None)
        assert row["phone"] is None or re.fullmatch(E164, row["phone"])
        assert row["country"] is None or row["country"] in iso_codes
        # A value that was given but could not be standardised is flagged, never silently dropped.
        assert row["_phone_unparsed"] == (None if phone is None else row["phone"] is None)
        assert row["_country_unknown"] == (None if country is None else row["country"] is None)
    assert [(r["email"], r["phone"], r["country"]) for r in second] == \
        [(r["email"], r["phone"], r["country"]) for r in first]
