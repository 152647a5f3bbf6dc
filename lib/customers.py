"""Customers: standardised contact data, pseudonymised silver.customers and the restricted silver.customer_pii."""

from __future__ import annotations

from itertools import chain

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from lib.pii import keyed_hash
from lib.silver import LINEAGE

E164 = r"^\+[1-9][0-9]{6,14}$"
EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
PII_COLUMNS = ["email", "phone", "first_name", "last_name"]


def standardised_customers(customers: DataFrame, countries: tuple[dict, ...]) -> DataFrame:
    """Emails trimmed and lower-cased, countries as ISO-3166 alpha-2, phones in E.164.

    Adds ``_email_valid``, ``_phone_unparsed`` and ``_country_unknown`` for the gate: a value that was given but
    could not be standardised is reported, never silently dropped.
    """
    spellings = {}
    for country in countries:
        for spelling in (country["iso2"], country["iso3"], country["name"]):
            spellings[spelling.lower()] = country["iso2"]
    iso = _lookup(spellings)[F.lower(F.trim("country"))]
    calling_code = _lookup({c["iso2"]: c["calling_code"] for c in countries})[iso]
    email = F.lower(F.trim("email"))
    phone = _e164(F.trim("phone"), calling_code)
    return (
        customers.withColumn("email", email)
        .withColumn("_email_valid", F.when(email.isNotNull(), email.rlike(EMAIL)))
        .withColumn("_country_unknown", F.when(F.col("country").isNotNull(), iso.isNull()))
        .withColumn("country", iso)
        .withColumn("_phone_unparsed", F.when(F.col("phone").isNotNull(), phone.isNull()))
        .withColumn("phone", phone)
    )


def _e164(raw: Column, calling_code: Column) -> Column:
    digits = F.regexp_replace(raw, "[^0-9]", "")
    candidate = (
        F.when(raw.startswith("+"), F.concat(F.lit("+"), digits))
        .when(digits.startswith("00"), F.concat(F.lit("+"), F.substring(digits, 3, 32)))
        .when(digits.startswith("0"), F.concat(calling_code, F.substring(digits, 2, 32)))
        .otherwise(F.concat(calling_code, digits))
    )
    return F.when(candidate.rlike(E164), candidate)


def _lookup(mapping: dict[str, str]) -> Column:
    return F.create_map(*chain.from_iterable((F.lit(k), F.lit(v)) for k, v in mapping.items()))


def pseudonymised_customers(customers: DataFrame, key: bytes) -> DataFrame:
    """silver.customers: contact data only as keyed hashes, so nothing downstream can read an email or phone."""
    full_name = F.lower(F.concat_ws(" ", F.trim("first_name"), F.trim("last_name")))
    return customers.select(
        "customer_id",
        keyed_hash(F.col("email"), key).alias("email_hash"),
        keyed_hash(F.col("phone"), key).alias("phone_hash"),
        keyed_hash(F.when(full_name != "", full_name), key).alias("name_hash"),
        "birth_date",
        "gender",
        "city",
        "country",
        "signup_ts",
        "updated_at",
        "consent_email",
        "consent_ads",
        *LINEAGE,
    )


def customer_pii(customers: DataFrame) -> DataFrame:
    """silver.customer_pii: the one table with raw contact data, where erasure requests reach it."""
    return customers.select("customer_id", *PII_COLUMNS, "updated_at", *LINEAGE)
