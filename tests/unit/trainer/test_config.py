from __future__ import annotations

import re

import pytest

from forecast_trainer.cli import build_parser
from forecast_trainer.config import (
    MIGRATE_OPTIONS,
    SAMPLE_DATA_OPTIONS,
    TRAIN_OPTIONS,
    migrate_config,
    resolve,
    sample_data_config,
    train_config,
)
from forecast_trainer.errors import ConfigError


def parse_train(argv: list[str], env: dict[str, str]):
    args = build_parser().parse_args(["train", *argv])
    return train_config(resolve(TRAIN_OPTIONS, vars(args), env))


def test_every_train_option_comes_from_its_env_var() -> None:
    env = {
        "TRAINER_PRODUCTS_JSON": '["a", "b"]',
        "TRAINER_DATA_DSN": "postgresql://u:p@127.0.0.1:5432/db",
        "TRAINER_DATA_TABLE": "shop.sales",
        "TRAINER_PRODUCT_COLUMN": "sku",
        "TRAINER_TIME_COLUMN": "day",
        "TRAINER_VALUE_COLUMN": "qty",
        "TRAINER_OUTPUT_SCHEMA": "forecasting",
        "TRAINER_OUTPUT_DIR": "/tmp/out",
        "TRAINER_HORIZON_DAYS": "14",
        "TRAINER_FREQUENCY": "W",
        "TRAINER_TRIALS": "7",
        "TRAINER_METRIC": "mae",
        "TRAINER_FOLDS": "2",
        "TRAINER_TIMEOUT_SECONDS": "12.5",
        "TRAINER_WARM_START": "false",
        "TRAINER_TRAININGJOB": "ns/job",
        "TRAINER_RUN_KEY": "0b8e3f1c-uid",
        "TRAINER_BUSINESS_TIMEZONE": "Europe/Berlin",
        "TRAINER_TERMINATION_LOG": "/tmp/term",
        "TRAINER_FILL_MISSING": "interpolate",
        "TRAINER_IMPROVEMENT_MARGIN": "0.05",
        "TRAINER_COUNTRY_HOLIDAYS": "de",
        "TRAINER_TUNING_SEED": "3",
        "TRAINER_PUSHGATEWAY": "127.0.0.1:9091",
        "TRAINER_DB_CONNECT_TIMEOUT": "3",
        "TRAINER_DB_QUERY_TIMEOUT": "4",
        "TRAINER_DB_RETRIES": "1",
        "TRAINER_LOG_FORMAT": "json",
    }
    cfg = parse_train([], env)
    assert cfg.products == ["a", "b"]
    assert cfg.data_dsn == env["TRAINER_DATA_DSN"]
    assert cfg.output_dsn == env["TRAINER_DATA_DSN"]  # output defaults to the data database
    assert (cfg.data_table, cfg.product_column, cfg.time_column) == ("shop.sales", "sku", "day")
    assert cfg.value_column == "qty"
    assert (cfg.output_schema, cfg.output_dir) == ("forecasting", "/tmp/out")
    assert (cfg.horizon_days, cfg.frequency, cfg.trials, cfg.metric, cfg.folds) == (14, "W", 7, "mae", 2)
    assert (cfg.timeout_seconds, cfg.warm_start, cfg.trainingjob) == (12.5, False, "ns/job")
    assert (cfg.termination_log, cfg.fill_missing, cfg.improvement_margin) == ("/tmp/term", "interpolate", 0.05)
    assert (cfg.country_holidays, cfg.tuning_seed, cfg.log_format) == ("DE", 3, "json")
    assert cfg.pushgateway == "127.0.0.1:9091"
    assert (cfg.run_key, cfg.business_timezone, cfg.product_id) == ("0b8e3f1c-uid", "Europe/Berlin", None)
    assert (cfg.db.connect_timeout, cfg.db.query_timeout, cfg.db.retries) == (3.0, 4.0, 1)


def test_defaults_when_nothing_is_set() -> None:
    cfg = parse_train(["--data-csv", "x.csv"], {})
    assert cfg.products == [] and cfg.output_dsn is None and not cfg.persists
    assert cfg.product_id is None and cfg.run_key is None and cfg.business_timezone is None
    assert (cfg.data_table, cfg.product_column, cfg.time_column, cfg.value_column) == ("sales", "product_id", "ds", "y")
    assert (cfg.horizon_days, cfg.frequency, cfg.trials, cfg.metric, cfg.folds) == (30, "D", None, "smape", 3)
    assert (cfg.warm_start, cfg.termination_log, cfg.improvement_margin) == (True, "/dev/termination-log", 0.02)
    assert cfg.fill_missing == "zero" and cfg.timeout_seconds is None


def test_command_line_wins_over_environment() -> None:
    env = {"TRAINER_DATA_CSV": "env.csv", "TRAINER_HORIZON_DAYS": "60", "TRAINER_WARM_START": "true"}
    cfg = parse_train(["--data-csv", "cli.csv", "--horizon-days", "7", "--no-warm-start"], env)
    assert (cfg.data_csv, cfg.horizon_days, cfg.warm_start) == ("cli.csv", 7, False)


@pytest.mark.parametrize(("value", "expected"), [("auto", None), ("", None), ("0", 0), ("12", 12)])
def test_trials_auto_zero_or_count(value: str, expected: int | None) -> None:
    assert parse_train(["--data-csv", "x"], {"TRAINER_TRIALS": value}).trials == expected


@pytest.mark.parametrize(
    "product_id",
    [" x", "x ", "[]", '["a","b"]', "a,b", "a b", "null", "'quoted'", "é" * 253, "\tx"],
)
def test_product_id_is_taken_verbatim_from_env_and_flag(product_id: str) -> None:
    from_env = parse_train(["--data-csv", "x"], {"TRAINER_PRODUCT_ID": product_id})
    assert from_env.products == [product_id] and from_env.product_id == product_id
    assert parse_train(["--data-csv", "x", "--product-id", product_id], {}).products == [product_id]


@pytest.mark.parametrize("blank", ["", " ", "\t", "\n  "])
@pytest.mark.parametrize("variable", ["TRAINER_PRODUCT_ID", "TRAINER_PRODUCT", "TRAINER_PRODUCTS_JSON"])
def test_blank_product_never_means_every_product(variable: str, blank: str) -> None:
    with pytest.raises(ConfigError, match=variable) as info:
        parse_train(["--data-csv", "x"], {variable: blank})
    assert info.value.exit_code == 2


@pytest.mark.parametrize("flag", ["--product-id", "--product"])
@pytest.mark.parametrize("blank", ["", "  "])
def test_blank_product_flag_is_a_config_error(flag: str, blank: str) -> None:
    with pytest.raises(ConfigError, match=f"{flag}: product id .* is empty or only whitespace"):
        parse_train(["--data-csv", "x", flag, blank], {})


def test_product_id_excludes_the_list_forms() -> None:
    for env in ({"TRAINER_PRODUCT": "b"}, {"TRAINER_PRODUCTS_JSON": '["b"]'}):
        with pytest.raises(ConfigError, match="exactly one product"):
            parse_train(["--data-csv", "x"], {"TRAINER_PRODUCT_ID": "a", **env})
    with pytest.raises(ConfigError, match="exactly one product"):
        parse_train(["--data-csv", "x", "--product-id", "a", "--product", "b"], {})


def test_product_id_longer_than_253_characters_is_refused() -> None:
    with pytest.raises(ConfigError, match="longer than 253"):
        parse_train(["--data-csv", "x"], {"TRAINER_PRODUCT_ID": "p" * 254})


@pytest.mark.parametrize(
    ("product_env", "cli", "expected"),
    [
        ("single-id", [], ["single-id"]),
        ('["a","b","a"]', [], ['["a","b","a"]']),  # a leading "[" is no longer JSON: one literal id
        ("[not json", [], ["[not json"]),
        (" padded ", [], [" padded "]),
        ("env", ["--product", "x", "--product", '["y","z"]', "--product", "x"], ["x", '["y","z"]']),
    ],
)
def test_product_ids_are_verbatim(product_env: str, cli: list[str], expected: list[str]) -> None:
    assert parse_train(["--data-csv", "x", *cli], {"TRAINER_PRODUCT": product_env}).products == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [('["a","b","a"]', ["a", "b"]), ('[" ", "x"]', None), ("[]", None), ('"a"', None), ("[1]", None), ("a", None)],
)
def test_products_json_is_the_explicit_list_form(value: str, expected: list[str] | None) -> None:
    if expected is None:
        with pytest.raises(ConfigError, match="TRAINER_PRODUCTS_JSON"):
            parse_train(["--data-csv", "x"], {"TRAINER_PRODUCTS_JSON": value})
    else:
        assert parse_train(["--data-csv", "x"], {"TRAINER_PRODUCTS_JSON": value}).products == expected
    both = parse_train(["--data-csv", "x", "--product", "z", "--products-json", '["a","z"]'], {})
    assert both.products == ["z", "a"]


@pytest.mark.parametrize("value", ["", "  "])
def test_blank_run_key_is_an_error_not_silently_no_key(value: str) -> None:
    with pytest.raises(ConfigError, match="TRAINER_RUN_KEY"):
        parse_train(["--data-csv", "x"], {"TRAINER_RUN_KEY": value})


@pytest.mark.parametrize("zone", ["Mars/Olympus", "America", "../etc/passwd", "/etc/localtime", "+02:00"])
def test_unknown_business_timezone_is_a_config_error(zone: str) -> None:
    with pytest.raises(ConfigError, match=r"TRAINER_BUSINESS_TIMEZONE: .* is not a known IANA time zone") as info:
        parse_train(["--data-csv", "x"], {"TRAINER_BUSINESS_TIMEZONE": zone})
    assert info.value.exit_code == 2


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires", "Etc/GMT-2"])
def test_known_business_timezones(zone: str) -> None:
    assert parse_train(["--data-csv", "x", "--business-timezone", zone], {}).business_timezone == zone


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"TRAINER_HORIZON_DAYS": "soon"}, "TRAINER_HORIZON_DAYS"),
        ({"TRAINER_FOLDS": "0"}, "TRAINER_FOLDS"),
        ({"TRAINER_METRIC": "r2"}, "TRAINER_METRIC"),
        ({"TRAINER_WARM_START": "maybe"}, "TRAINER_WARM_START"),
        ({"TRAINER_FREQUENCY": "H"}, "TRAINER_FREQUENCY"),
        ({"TRAINER_IMPROVEMENT_MARGIN": "nan"}, "TRAINER_IMPROVEMENT_MARGIN"),
        ({"TRAINER_TRIALS": "-1"}, "TRAINER_TRIALS"),
        ({"TRAINER_TIMEOUT_SECONDS": "0"}, "TRAINER_TIMEOUT_SECONDS"),
    ],
)
def test_bad_env_values_name_the_variable(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_train(["--data-csv", "x"], env)
    assert needle in info.value.message and info.value.exit_code == 2 and "\n" not in info.value.message


def test_bad_cli_value_names_the_flag() -> None:
    with pytest.raises(ConfigError, match="--horizon-days"):
        parse_train(["--data-csv", "x", "--horizon-days", "-3"], {})


def test_data_source_is_required_and_exclusive() -> None:
    with pytest.raises(ConfigError, match="no data source"):
        parse_train([], {})
    with pytest.raises(ConfigError, match="only one data source"):
        parse_train(["--data-csv", "x", "--data-dsn", "postgresql://h/db"], {})


def test_dsn_must_be_a_postgres_url_and_is_never_echoed() -> None:
    with pytest.raises(ConfigError) as info:
        parse_train(["--data-dsn", "mysql://user:s3cret@h/db"], {})
    assert "s3cret" not in info.value.message


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--data-table", "sales; DROP TABLE sales; --"),
        ("--data-table", 'sales" OR 1=1 --'),
        ("--data-table", "a.b.c"),
        ("--product-column", "product_id) OR (1=1"),
        ("--time-column", "ds--"),
        ("--value-column", "1y"),
        ("--output-schema", "public; DROP SCHEMA public CASCADE"),
    ],
)
def test_sql_injection_identifiers_are_refused(flag: str, value: str) -> None:
    with pytest.raises(ConfigError, match=r"not a valid SQL identifier|must be 'table' or 'schema\.table'"):
        parse_train(["--data-csv", "x", flag, value], {})


def test_unknown_option_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        build_parser().parse_args(["train", "--no-such-option"])


@pytest.mark.parametrize(
    ("command", "options"),
    [("train", TRAIN_OPTIONS), ("migrate", MIGRATE_OPTIONS), ("sample-data", SAMPLE_DATA_OPTIONS)],
)
def test_help_documents_every_option_and_env_var(command: str, options, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    text = re.sub(r"\s+", " ", capsys.readouterr().out)
    for option in options:
        assert option.flag in text, option.flag
        assert option.env in text, option.env


def test_migrate_and_sample_data_configs() -> None:
    parser = build_parser()
    args = parser.parse_args(["migrate"])
    cfg = migrate_config(resolve(MIGRATE_OPTIONS, vars(args), {"TRAINER_DATA_DSN": "postgresql://h/db"}))
    assert cfg.output_dsn == "postgresql://h/db" and cfg.output_schema == "public"
    with pytest.raises(ConfigError, match="needs a database"):
        migrate_config(resolve(MIGRATE_OPTIONS, vars(args), {}))
    args = parser.parse_args(["sample-data", "--csv", "out.csv"])
    sample = sample_data_config(resolve(SAMPLE_DATA_OPTIONS, vars(args), {"TRAINER_PRODUCTS": "5"}))
    assert (sample.products, sample.days, sample.csv) == (5, 1095, "out.csv")
    with pytest.raises(ConfigError, match="exactly one place"):
        sample_data_config(resolve(SAMPLE_DATA_OPTIONS, vars(parser.parse_args(["sample-data"])), {}))
