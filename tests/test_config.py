from pathlib import Path

import pytest

from lib.config import Config, ConfigError, load_config


def test_defaults_work_with_nothing_set(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config(environ={})
    assert config == Config()
    assert config.table_path("silver.orders") == "data/lakehouse/silver/orders"


def test_file_values_are_overridden_by_dmp_environment_variables(tmp_path):
    file = tmp_path / "dmp.toml"
    file.write_text(
        'lakehouse_root = "s3a://bucket/lake"\n[spark]\nmaster = "spark://h:7077"\n'
        '[gates]\nmax_error_ratio = 0.1\ntable_max_error_ratio = {"silver.orders" = 0.01}\n'
    )
    config = load_config(file, environ={"DMP_SPARK__MASTER": "local[2]", "DMP_SPARK__SHUFFLE_PARTITIONS": "8"})
    assert config.lakehouse_root == "s3a://bucket/lake"
    assert config.spark.master == "local[2]"
    assert config.spark.shuffle_partitions == 8
    assert config.gates.max_ratio_for("silver.orders") == 0.01
    assert config.gates.max_ratio_for("gold.daily_revenue") == 0.1


def test_config_file_named_by_dmp_config_is_read(tmp_path):
    file = tmp_path / "other.toml"
    file.write_text('landing_root = "/landing"\n')
    assert load_config(environ={"DMP_CONFIG": str(file)}).landing_root == "/landing"


def test_bad_environment_value_names_the_variable():
    with pytest.raises(ConfigError, match="DMP_GATES__MAX_ERROR_RATIO"):
        load_config(environ={"DMP_GATES__MAX_ERROR_RATIO": "lots"})


def test_unknown_key_in_file_is_an_error_not_ignored(tmp_path):
    file = tmp_path / "dmp.toml"
    file.write_text('[spark]\nmastr = "local"\n')
    with pytest.raises(ConfigError, match="mastr"):
        load_config(file, environ={})


def test_missing_config_file_says_so(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(Path(tmp_path / "nope.toml"), environ={})


def test_table_name_without_layer_is_rejected():
    with pytest.raises(ConfigError, match="<layer>.<name>"):
        Config().table_path("orders")


def test_dict_settings_come_from_json_environment_variables():
    config = load_config(environ={"DMP_RECOMMENDATIONS__WEIGHTS": '{"purchase": 2, "product_view": 0.5}',
                                  "DMP_GATES__TABLE_MAX_ERROR_RATIO": '{"silver.orders": 0.01}',
                                  "DMP_RECOMMENDATIONS__ALPHAS": "1, 5"})
    assert config.recommendations.weights == {"purchase": 2.0, "product_view": 0.5}
    assert config.gates.max_ratio_for("silver.orders") == 0.01
    assert config.recommendations.alphas == (1.0, 5.0)


def test_a_setting_out_of_its_range_says_which_and_what_to_use():
    with pytest.raises(ConfigError, match="segments.restarts = 0; use at least 1"):
        load_config(environ={"DMP_SEGMENTS__RESTARTS": "0"})
