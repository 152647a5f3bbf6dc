"""Customer standardisation and pseudonymisation on hand-made rows."""

from __future__ import annotations

import hashlib
import hmac

from pyspark.sql import functions as F

from lib.customers import pseudonymised_customers, standardised_customers
from lib.schemas import countries


def standardise(spark, rows):
    df = spark.createDataFrame(rows, "customer_id string, email string, phone string, country string")
    return {r["customer_id"]: r for r in standardised_customers(df, countries()).collect()}


def test_emails_are_trimmed_and_lower_cased_and_invalid_ones_flagged(spark):
    out = standardise(spark, [("c1", "  Anna.Lopez@Example.COM ", None, "DE"), ("c2", "not-an-email", None, "DE"),
                              ("c3", None, None, "DE")])
    assert out["c1"]["email"] == "anna.lopez@example.com" and out["c1"]["_email_valid"]
    assert out["c2"]["_email_valid"] is False
    assert out["c3"]["_email_valid"] is None  # missing is its own rule (has_email), not an invalid format


def test_phones_become_e164_using_the_country_calling_code(spark):
    out = standardise(spark, [
        ("intl", None, "+49 30 1234567", "DE"), ("national", None, "030-1234567", "Germany"),
        ("brackets", None, "(030) 1234567", "de"), ("double_zero", None, "0033 6 12 34 56 78", "FR"),
        ("garbage", None, "call me", "FR"), ("none", None, None, "FR"),
    ])
    assert {k: out[k]["phone"] for k in ("intl", "national", "brackets", "double_zero")} == {
        "intl": "+49301234567", "national": "+49301234567", "brackets": "+49301234567",
        "double_zero": "+33612345678"}
    assert out["garbage"]["phone"] is None and out["garbage"]["_phone_unparsed"] is True
    assert out["none"]["_phone_unparsed"] is None


def test_countries_become_iso_alpha2_from_codes_and_names_in_any_case(spark):
    out = standardise(spark, [("a", None, None, "Germany"), ("b", None, None, "fra"), ("c", None, None, " nl "),
                              ("d", None, None, "NO"), ("e", None, None, "Atlantis")])
    assert [out[k]["country"] for k in "abcd"] == ["DE", "FR", "NL", "NO"]
    assert out["e"]["country"] is None and out["e"]["_country_unknown"] is True


def test_pseudonymised_customers_hold_hmac_hashes_not_contact_data(spark):
    key = b"test-key"
    df = spark.createDataFrame(
        [("c1", "anna@example.com", "+49301234567", "Anna", "Lopez")],
        "customer_id string, email string, phone string, first_name string, last_name string",
    )
    for column in ("birth_date", "gender", "city", "country", "signup_ts", "updated_at", "consent_email",
                   "consent_ads", "_record_id", "_source_file", "_ingested_at"):
        df = df.withColumn(column, F.lit(None).cast("string"))
    row = pseudonymised_customers(df, key).first().asDict()
    assert row["email_hash"] == hmac.new(key, b"anna@example.com", hashlib.sha256).hexdigest()
    assert row["name_hash"] == hmac.new(key, b"anna lopez", hashlib.sha256).hexdigest()
    assert not {"email", "phone", "first_name", "last_name"} & set(row)
    assert "anna@example.com" not in repr(row) and "+49301234567" not in repr(row)
