"""Layout drift and broken files land in bronze and are reported in silver; nothing crashes, nothing is lost."""

from __future__ import annotations

import pytest
from pyspark.sql import functions as F

from lib import io
from lib.pipeline import run_pipeline
from tests.conftest import make_config

pytestmark = pytest.mark.slow

HEADER = "customer_id,email,phone,first_name,last_name,birth_date,gender,city,country,signup_ts,updated_at," \
         "consent_email,consent_ads"
ROW = "{id},{id}@example.com,+49301234567,Anna,Lopez,1990-01-01,f,Berlin,DE,2026-01-01T00:00:00Z," \
      "2026-01-01T00:00:00Z,true,false"


def test_new_and_missing_csv_columns_land_and_are_reported(spark, tmp_path):
    customers = tmp_path / "landing" / "customers"
    customers.mkdir(parents=True)
    (customers / "day1.csv").write_text(HEADER + "\n" + ROW.format(id="c1") + "\n")
    # Day 2: a new column appears at the front; day 3: `phone` is gone; day 4: a row with a stray field.
    (customers / "day2.csv").write_text("loyalty_tier," + HEADER + "\ngold," + ROW.format(id="c2") + "\n")
    (customers / "day3.csv").write_text(HEADER.replace("phone,", "") + "\n"
                                        + ROW.format(id="c3").replace("+49301234567,", "") + "\n")
    (customers / "day4.csv").write_text(HEADER + "\n" + ROW.format(id="c4") + ",surprise\n")
    config = make_config(tmp_path, max_error_ratio=0.5)
    runs = {r.job: r for r in run_pipeline(spark, config, ["bronze", "silver_customers"])}
    assert runs["silver_customers"].status == "succeeded", runs["silver_customers"].error
    silver = {t.table: t for t in runs["silver_customers"].tables}["silver.customers"]
    assert (silver.rows_in, silver.published, silver.quarantined) == (4, 3, 1)
    assert silver.details["records_with_new_columns"] == 1 and silver.details["records_missing_columns"] == 1
    published = {r["customer_id"]: r for r in io.read_table(spark, config, "silver.customers").collect()}
    assert published["c2"]["city"] == "Berlin"  # mapped by name despite the shifted position
    assert published["c3"]["phone_hash"] is None
    bronze = io.read_table(spark, config, "bronze.customers")
    assert bronze.filter(F.col("value").contains('"loyalty_tier":"gold"')).count() == 1
    broken = bronze.filter("_parse_error IS NOT NULL").first()
    assert "14 fields, header has 13" in broken["_parse_error"] and broken["_line"] == 2


def test_a_products_file_that_is_not_a_json_array_is_kept_whole_and_quarantined(spark, tmp_path):
    products = tmp_path / "landing" / "products"
    products.mkdir(parents=True)
    (products / "good.json").write_text('[{"product_id": "p1", "category": "books", "price": 3.5, '
                                        '"updated_at": "2026-01-01T00:00:00Z"}]')
    (products / "broken.json").write_text('[{"product_id": "p2", "category": ')
    config = make_config(tmp_path, max_error_ratio=0.6)
    runs = {r.job: r for r in run_pipeline(spark, config, ["bronze", "silver_products"])}
    assert runs["silver_products"].status == "succeeded", runs["silver_products"].error
    bronze = io.read_table(spark, config, "bronze.products")
    assert bronze.count() == 2
    assert bronze.filter("_parse_error LIKE 'not a JSON array%'").count() == 1
    quarantined = io.read_table(spark, config, "quarantine.products").first()
    assert "parses" in quarantined["_failed_rules"]
