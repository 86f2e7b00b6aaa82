"""Data-quality checks: each check type on small Delta tables, exact observed values,
idempotent results, the error gate, the warn path, the job, and conf validation."""

import argparse
import importlib.util
import itertools
import json
import logging
from datetime import date

import pytest
import yaml
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from conftest import ROOT
from conftest import edit_yaml as _edit
from lakeml import cli
from lakeml.core import tables
from lakeml.core.config import CheckSpec, QualitySpec, load_usecase
from lakeml.core.errors import ConfigError, MissingTableError, UsageError
from lakeml.lake import quality

B1, B2, B3 = date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 3)

CUSTOMERS = "customer_id string, plan string, monthly_fee double, age int, signup_date date, _batch_date date"
CUSTOMER_ROWS = [
    ("C1", "basic", 9.99, 30, date(2026, 2, 20), B1),
    ("C2", "gold", 5.0, 200, date(2026, 2, 27), B1),  # unknown plan, implausible age, cheap gold
    ("C3", "premium", None, 40, date(2026, 2, 25), B1),  # a null fee is not out of range
    ("C1", "basic", 9.99, 30, date(2026, 2, 20), B2),  # C1 again in a later batch: not a duplicate
    ("C1", "standard", 14.99, 30, date(2026, 2, 20), B2),  # duplicate key within B2
    ("C2", None, 150.0, 31, date(2026, 2, 26), B2),  # a null plan is not an unknown one; fee above max
    (None, "basic", -1.0, 17, date(2026, 2, 10), B2),  # null key (not counted by unique), fee below min, age below min
    ("C4", "gold", 24.99, 50, None, B2),
    ("C5", "gold", 24.99, 50, None, B2),
]
CUSTOMER_CHECKS = [
    {"name": "id_not_null", "type": "not_null", "columns": ["customer_id"]},
    {"name": "id_unique", "type": "unique", "columns": ["customer_id"]},
    {"name": "plan_known", "type": "accepted_values", "columns": ["plan"], "values": ["basic", "standard", "premium"]},
    {"name": "fee_range", "type": "range", "columns": ["monthly_fee"], "min": 0, "max": 100},
    {"name": "age_plausible", "type": "range", "columns": ["age"], "min": 18, "max": 120, "severity": "warn"},
    {"name": "signup_fresh", "type": "freshness", "columns": ["signup_date"], "max_age_days": 3},
    {"name": "volume", "type": "row_count_change", "max_change": 0.5},
    {"name": "gold_fee", "type": "range", "columns": ["monthly_fee"], "min": 20, "where": "plan = 'gold'", "severity": "warn"},
]
# (batch, check, observed_value, status): worked out by hand from the rows above
CUSTOMER_EXPECTED = [
    (B1, "id_not_null", 0.0, "pass"),
    (B1, "id_unique", 0.0, "pass"),
    (B1, "plan_known", 1.0, "fail"),
    (B1, "fee_range", 0.0, "pass"),
    (B1, "age_plausible", 1.0, "warn"),
    (B1, "signup_fresh", 2.0, "pass"),  # newest signup 02-27, batch 03-01
    (B1, "volume", None, "pass"),  # no previous batch
    (B1, "gold_fee", 1.0, "warn"),
    (B2, "id_not_null", 1.0, "fail"),
    (B2, "id_unique", 1.0, "fail"),
    (B2, "plan_known", 2.0, "fail"),
    (B2, "fee_range", 2.0, "fail"),
    (B2, "age_plausible", 1.0, "warn"),
    (B2, "signup_fresh", 4.0, "fail"),  # newest signup 02-26, batch 03-02
    (B2, "volume", 1.0, "fail"),  # 6 rows after 3
    (B2, "gold_fee", 0.0, "pass"),
]

_db = itertools.count()


def _uc(uc, checks: dict):
    return uc.model_copy(update={"database": f"t_quality_{next(_db)}", "quality": QualitySpec.model_validate({"checks": checks})})


def _table(spark, uc, name, rows, schema):
    tables.ensure_database(spark, uc.database)
    tables.overwrite(spark.createDataFrame(rows, schema), uc.table(name))


def _results(spark, uc):
    return spark.table(uc.table(uc.tables.dq_results)).select("table", "batch", "check", "observed_value", "status")


@pytest.fixture()
def customers_uc(spark, uc):
    u = _uc(uc, {"bronze_customers": CUSTOMER_CHECKS})
    _table(spark, u, "bronze_customers", CUSTOMER_ROWS, CUSTOMERS)
    return u


def test_every_check_type_observed_exactly(spark, customers_uc):
    u = customers_uc
    results = quality.run_checks(spark, u, "bronze_customers", [B1, B2])
    expected = [("bronze_customers", *e) for e in CUSTOMER_EXPECTED]
    assert {(r.table, r.batch, r.check, r.observed_value, r.status) for r in results} == set(expected)
    assertDataFrameEqual(_results(spark, u), expected, checkRowOrder=False)
    by = {(r.batch, r.check): r for r in results}
    assert by[(B2, "id_not_null")].threshold == "<= 0 rows with a null in [customer_id]"
    assert by[(B2, "plan_known")].threshold == "<= 0 rows with [plan] not in {basic, standard, premium}"
    assert by[(B2, "fee_range")].threshold == "<= 0 rows with [monthly_fee] outside 0..100 or not finite"
    assert by[(B2, "signup_fresh")].threshold == "<= 3 days from max(signup_date) to the batch date"
    assert by[(B2, "volume")].threshold == "<= 0.5 relative change vs 2026-03-01 (3 rows)"
    assert by[(B1, "volume")].threshold == "<= 0.5 relative change (no previous batch)"
    row = spark.table(u.table(u.tables.dq_results)).where("batch = DATE'2026-03-02' AND check = 'fee_range'").first()
    assert (row.type, row.severity, row.checked_at is not None) == ("range", "error", True)


def test_rerun_replaces_results_without_duplicates(spark, customers_uc):
    u = customers_uc
    dq = u.table(u.tables.dq_results)
    quality.run_checks(spark, u, "bronze_customers", [B1, B2])
    first = spark.table(dq).drop("checked_at").collect()
    quality.run_checks(spark, u, "bronze_customers", [B1, B2])
    assertDataFrameEqual(spark.table(dq).drop("checked_at"), first, checkRowOrder=False)
    assert spark.table(dq).count() == len(CUSTOMER_EXPECTED)
    # the data of B2 is fixed: re-checking B2 (the default: the newest batch) replaces only B2's rows
    fixed = [r for r in CUSTOMER_ROWS if r[-1] == B1] + [("C1", "basic", 9.99, 30, date(2026, 2, 28), B2)]
    _table(spark, u, "bronze_customers", fixed, CUSTOMERS)
    results = quality.run_checks(spark, u, "bronze_customers")
    assert {r.batch for r in results} == {B2}
    b2 = {(r.check, r.observed_value, r.status) for r in results}
    assert ("volume", 2 / 3, "fail") in b2 and ("signup_fresh", 2.0, "pass") in b2 and ("id_unique", 0.0, "pass") in b2
    assert spark.table(dq).count() == len(CUSTOMER_EXPECTED)
    assertDataFrameEqual(spark.table(dq).where(F.col("batch") == B1).drop("checked_at"), [r for r in first if r.batch == B1],
                         checkRowOrder=False)


def test_unique_is_per_batch_and_checks_work_on_the_feature_table(spark, uc):
    u = _uc(
        uc,
        {
            "customer_features": [
                {"name": "one_row_per_customer", "type": "unique", "columns": ["customer_id"]},
                {"name": "pair_unique", "type": "unique", "columns": ["customer_id", "plan"]},
                {"name": "days_known", "type": "accepted_values", "columns": ["active_days_7d"], "values": [0, 1, 2, 3, 4, 5, 6, 7]},
                {"name": "population_stable", "type": "row_count_change", "max_change": 0.25, "where": "plan = 'basic'"},
            ]
        },
    )
    rows = [
        ("C1", "basic", 1, B1),
        ("C2", "basic", 2, B1),
        ("C3", "premium", 0, B1),
        ("C1", "basic", 3, B2),
        ("C1", "premium", 9, B2),  # C1 twice (pair unique), 9 days in a week
        ("C2", "basic", 8, B2),
        ("C2", "basic", 7, B2),  # C2 twice, also as a pair
        ("C2", "basic", 7, B2),  # and three times
        (None, "basic", 1, B2),
    ]
    _table(spark, u, "customer_features", rows, "customer_id string, plan string, active_days_7d int, as_of_date date")
    results = quality.run_checks(spark, u, "customer_features", [B1, B2, B3])  # B3: no rows, not checked
    got = {(r.batch, r.check): (r.observed_value, r.status) for r in results}
    assert got == {
        (B1, "one_row_per_customer"): (0.0, "pass"),
        (B1, "pair_unique"): (0.0, "pass"),
        (B1, "days_known"): (0.0, "pass"),
        (B1, "population_stable"): (None, "pass"),
        (B2, "one_row_per_customer"): (3.0, "fail"),  # C1: 1 extra row, C2: 2 extra rows
        (B2, "pair_unique"): (2.0, "fail"),  # (C2, basic) 3 times
        (B2, "days_known"): (2.0, "fail"),  # 9 and 8
        (B2, "population_stable"): (1.5, "fail"),  # 5 basic rows after 2
    }


def test_freshness_of_timestamps_and_against_today(spark, uc):
    today = spark.range(1).select(F.current_date()).first()[0]
    u = _uc(
        uc,
        {
            "bronze_usage_events": [
                {"name": "events_fresh", "type": "freshness", "columns": ["event_ts"], "max_age_days": 1, "where": "device = 'web'"},
                {"name": "arrived_lately", "type": "freshness", "max_age_days": 2, "reference": "today", "severity": "warn"},
            ]
        },
    )
    from datetime import datetime, timedelta

    rows = [
        ("E1", "web", datetime(2026, 2, 28, 23, 59), B1),
        ("E2", "tv", datetime(2026, 3, 1, 8, 0), B1),  # newer, but not web
        ("E3", "web", None, B2),  # no web event time in B2 at all: not fresh
        ("E4", "web", datetime(2026, 3, 3, 1, 0), today - timedelta(days=5)),
    ]
    _table(spark, u, "bronze_usage_events", rows, "event_id string, device string, event_ts timestamp, _batch_date date")
    results = quality.run_checks(spark, u, "bronze_usage_events", [B1, B2, today - timedelta(days=5)])
    got = {(r.batch, r.check): (r.observed_value, r.status) for r in results}
    assert got[(B1, "events_fresh")] == (1.0, "pass")
    assert got[(B2, "events_fresh")] == (None, "fail")
    assert got[(today - timedelta(days=5), "arrived_lately")] == (5.0, "warn")
    assert got[(B1, "arrived_lately")] == (float((today - B1).days), "warn")
    r = next(r for r in results if r.check == "arrived_lately")
    assert r.threshold == "<= 2 days from max(_batch_date) to today"


def test_nan_and_infinity_fail_a_range_and_not_future_catches_a_year_typed_2099(spark, uc):
    from datetime import datetime

    nan, inf = float("nan"), float("inf")
    u = _uc(
        uc,
        {
            "bronze_payments": [
                {"name": "amount_min", "type": "range", "columns": ["amount"], "min": 0},
                {"name": "amount_max", "type": "range", "columns": ["amount"], "max": 1000},
                {"name": "paid_not_future", "type": "not_future", "columns": ["payment_date"]},
                {"name": "ts_not_future", "type": "not_future", "columns": ["ts"], "max_ahead_days": 1, "severity": "warn"},
                {"name": "not_after_today", "type": "not_future", "columns": ["payment_date"], "reference": "today"},
            ]
        },
    )
    rows = [
        ("P1", 1.0, date(2026, 3, 1), datetime(2026, 3, 1, 23, 0), B1),
        ("P2", nan, date(2026, 2, 1), datetime(2026, 3, 2, 5, 0), B1),  # the next day: within max_ahead_days
        ("P3", inf, date(2099, 1, 1), datetime(2026, 3, 3, 0, 0), B1),  # two days ahead
        ("P4", -inf, None, None, B1),
        ("P5", None, date(2026, 3, 1), None, B1),  # nulls pass
    ]
    _table(spark, u, "bronze_payments", rows, "payment_id string, amount double, payment_date date, ts timestamp, _batch_date date")
    results = quality.run_checks(spark, u, "bronze_payments", [B1])
    got = {r.check: (r.observed_value, r.status) for r in results}
    assert got == {"amount_min": (3.0, "fail"), "amount_max": (3.0, "fail"), "paid_not_future": (1.0, "fail"),
                   "ts_not_future": (1.0, "warn"), "not_after_today": (1.0, "fail")}
    by = {r.check: r.threshold for r in results}
    assert by["amount_min"] == "<= 0 rows with [amount] < 0 or not finite"
    assert by["ts_not_future"] == "<= 0 rows with [ts] after the batch date + 1 days"
    assert by["not_after_today"] == "<= 0 rows with [payment_date] after today"


def test_gate_names_check_table_batch_observed_and_threshold(spark, customers_uc):
    results = quality.run_checks(spark, customers_uc, "bronze_customers", [B1, B2])
    with pytest.raises(quality.QualityError) as e:
        quality.gate(results)
    msg = str(e.value)
    assert msg.startswith("7 data quality checks failed:")
    assert (
        "data quality check failed: bronze_customers batch 2026-03-02: check 'id_not_null' (not_null) "
        "observed 1 vs threshold <= 0 rows with a null in [customer_id]"
    ) in msg
    assert ("bronze_customers batch 2026-03-02: check 'volume' (row_count_change) "
            "observed 1 vs threshold <= 0.5 relative change vs 2026-03-01 (3 rows)") in msg
    assert "age_plausible" not in msg and "gold_fee" not in msg  # warnings do not stop anything
    assert {r.check for r in e.value.failures} == {"plan_known", "id_not_null", "id_unique", "fee_range", "signup_fresh", "volume"}
    one = [r for r in results if r.status == "fail"][:1]
    with pytest.raises(quality.QualityError, match=r"^data quality check failed: bronze_customers batch 2026-03-01: check 'plan_known' "):
        quality.gate(one)


def test_warn_results_are_logged_and_do_not_stop(spark, customers_uc, caplog):
    results = quality.run_checks(spark, customers_uc, "bronze_customers", [B1])
    warn_only = [r for r in results if r.check != "plan_known"]
    with caplog.at_level(logging.WARNING, logger="lakeml.quality"):
        assert quality.gate(warn_only) == warn_only
    warnings = [m for m in caplog.messages if m.startswith("data quality warning")]
    assert warnings == [
        "data quality warning: bronze_customers batch 2026-03-01: check 'age_plausible' (range) "
        "observed 1 vs threshold <= 0 rows with [age] outside 18..120",
        "data quality warning: bronze_customers batch 2026-03-01: check 'gold_fee' (range) "
        "observed 1 vs threshold <= 0 rows with [monthly_fee] < 20 or not finite",
    ]


def test_run_records_everything_then_fails_and_skips_tables_not_built_yet(spark, uc):
    u = _uc(
        uc,
        {
            "bronze_customers": CUSTOMER_CHECKS,
            "customer_features": [{"name": "keys", "type": "not_null", "columns": ["customer_id"]}],
        },
    )
    _table(spark, u, "bronze_customers", CUSTOMER_ROWS, CUSTOMERS)
    with pytest.raises(quality.QualityError, match="6 data quality checks failed"):
        quality.run(spark, u)  # default: the newest batch, B2
    assertDataFrameEqual(_results(spark, u), [("bronze_customers", *e) for e in CUSTOMER_EXPECTED if e[0] == B2], checkRowOrder=False)
    summary = quality.run(spark, u, batch_dates=[B1], fail_on_error=False)
    assert summary["skipped"] == ["customer_features"]
    assert summary["tables"] == {"bronze_customers": {"batches": 1, "first": "2026-03-01", "last": "2026-03-01",
                                                      "pass": 5, "warn": 2, "fail": 1}}
    assert len(summary["warnings"]) == 2 and summary["failures"] == [
        "bronze_customers batch 2026-03-01: check 'plan_known' (accepted_values) "
        "observed 1 vs threshold <= 0 rows with [plan] not in {basic, standard, premium}"
    ]
    with pytest.raises(MissingTableError, match=r"customer_features does not exist\. Create it by running jobs/features\.py"):
        quality.run(spark, u, only=["customer_features"])
    with pytest.raises(UsageError, match=r"no quality checks configured for labels; "
                                         r"tables with checks: bronze_customers, customer_features"):
        quality.run(spark, u, only=["labels"])


def test_column_and_where_errors_name_file_and_key(spark, uc):
    u = _uc(uc, {"bronze_customers": [{"name": "a", "type": "not_null", "columns": ["customer_id"]},
                                      {"name": "b", "type": "not_null", "columns": ["cust_id"]}]})
    _table(spark, u, "bronze_customers", CUSTOMER_ROWS, CUSTOMERS)
    with pytest.raises(ConfigError) as e:
        quality.run_checks(spark, u, "bronze_customers")
    assert str(e.value).startswith(f"{uc.source_file}: quality.checks.bronze_customers.1.columns: "
                                   f"{u.database}.bronze_customers has no column 'cust_id'")
    u.quality.checks["bronze_customers"][1] = u.quality.checks["bronze_customers"][0].model_copy(update={"where": "plna = 'gold'"})
    with pytest.raises(ConfigError, match=r"usecase\.yaml: quality\.checks\.bronze_customers\.1\.where: .*plna"):
        quality.run_checks(spark, u, "bronze_customers")
    u.quality.checks["bronze_customers"][1] = CheckSpec(name="b", type="range", columns=["plan"], min=0)
    with pytest.raises(ConfigError, match=r"quality\.checks\.bronze_customers\.1\.columns: "
                                          r"a range check needs a numeric column; plan is string"):
        quality.run_checks(spark, u, "bronze_customers")
    assert not tables.exists(spark, u.table(u.tables.dq_results))


def _job():
    spec = importlib.util.spec_from_file_location("lakeml_job_quality", ROOT / "jobs" / "quality.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_quality_job_exits_2_naming_the_failed_check(spark, customers_uc, conf_copy, capsys):
    path = conf_copy / "churn" / "usecase.yaml"
    _edit(path, lambda d: d.update({"database": customers_uc.database, "quality": {"checks": {"bronze_customers": CUSTOMER_CHECKS}}}))
    job = _job()
    args = argparse.Namespace(env="embedded", conf_dir=str(conf_copy), usecase="churn", table=["bronze_customers"], batch=[B1])
    with pytest.raises(SystemExit) as e:
        cli.main(job.run, args)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "error: data quality check failed: bronze_customers batch 2026-03-01: check 'plan_known' (accepted_values) observed 1" in err
    _edit(path, lambda d: d["quality"]["checks"].update({"bronze_customers": CUSTOMER_CHECKS[:2]}))
    cli.main(job.run, argparse.Namespace(env="embedded", conf_dir=str(conf_copy), usecase="churn", table=None, batch=[B1]))
    summary = json.loads(capsys.readouterr().out)
    assert summary["tables"] == {"bronze_customers": {"batches": 1, "first": "2026-03-01", "last": "2026-03-01",
                                                      "pass": 2, "warn": 0, "fail": 0}}


# --------------------------------------------------------------------------- conf


def _with_check(check: dict, table: str = "bronze_customers"):
    return lambda d: d.update({"quality": {"checks": {table: [check]}}})


@pytest.mark.parametrize(
    ("table", "check", "key", "message"),
    [
        ("bronze_customers", {"name": "x", "type": "nullness", "columns": ["customer_id"]}, "quality.checks.bronze_customers.0.type",
         "Input should be 'not_null', 'unique', 'range', 'accepted_values', 'freshness', 'row_count_change' or 'not_future' "
         "(got 'nullness')"),
        ("bronze_customers", {"name": "x", "type": "range", "columns": ["age"]}, "quality.checks.bronze_customers.0",
         "a range check needs min or max"),
        ("bronze_customers", {"name": "x", "type": "accepted_values", "columns": ["plan"]}, "quality.checks.bronze_customers.0",
         "a check of type accepted_values needs values"),
        ("bronze_payments", {"name": "x", "type": "row_count_change"}, "quality.checks.bronze_payments.0",
         "a check of type row_count_change needs max_change"),
        ("bronze_payments", {"name": "x", "type": "freshness", "max_age_days": 2}, "quality.checks.bronze_payments.0",
         "a freshness check against the batch date needs columns"),
        ("bronze_customers", {"name": "x", "type": "not_null", "columns": ["plan"], "max": 3}, "quality.checks.bronze_customers.0",
         "max does not apply to a check of type not_null"),
        ("bronze_customers", {"name": "x", "type": "not_null", "columns": ["plan"], "severity": "fatal"},
         "quality.checks.bronze_customers.0.severity", "Input should be 'error' or 'warn'"),
        ("bronze_customers", {"name": "x", "type": "not_null", "colums": ["plan"]}, "quality.checks.bronze_customers.0.colums",
         "unknown key"),
        ("bronze_custmers", {"name": "x", "type": "not_null", "columns": ["plan"]}, "quality.checks.bronze_custmers.[key]",
         "not a table of this use case; checks run on: bronze_churn_events, bronze_customers, bronze_payments"),
    ],
)
def test_bad_quality_conf_names_file_and_key(conf_copy, table, check, key, message):
    path = conf_copy / "churn" / "usecase.yaml"
    _edit(path, _with_check(check, table))
    with pytest.raises(ConfigError) as e:
        load_usecase(conf_copy, "churn")
    msg = str(e.value)
    assert msg.startswith(f"{path}: {key}: "), msg
    assert message in msg


def test_duplicate_check_name_and_renamed_feature_table(conf_copy):
    path = conf_copy / "churn" / "usecase.yaml"
    dup = [{"name": "x", "type": "not_null", "columns": ["plan"]}, {"name": "x", "type": "unique", "columns": ["customer_id"]}]
    _edit(path, lambda d: d.update({"quality": {"checks": {"bronze_customers": dup}}}))
    with pytest.raises(ConfigError, match=r"quality\.checks\.bronze_customers: .*check name 'x' is used twice"):
        load_usecase(conf_copy, "churn")
    # the tables a check may name follow the use case's own table names
    _edit(path, lambda d: d.update({"tables": {"features": "feats"}, "quality": {"checks": {"feats": dup[1:]}}}))
    assert list(load_usecase(conf_copy, "churn").quality.checks) == ["feats"]
    _edit(path, lambda d: d.update({"quality": {"checks": {"customer_features": dup[1:]}}}))
    with pytest.raises(ConfigError, match=r"quality\.checks\.customer_features\.\[key\]: .*not a table of this use case"):
        load_usecase(conf_copy, "churn")


def test_shipped_quality_checks_name_real_columns(uc):
    """Every column the shipped checks name exists: bronze columns from the sources, feature
    columns from the model's inputs (the feature SQL outputs them)."""
    assert uc.quality.checks, "conf/churn/usecase.yaml has a quality block"
    cols = {s.table: set(s.columns) | {"_batch_date", "_source_file"} for s in uc.sources.values()}
    cols[uc.tables.features] = set(uc.model.categorical) | set(uc.model.numeric) | {uc.features.entity, "as_of_date"}
    unknown = {(table, c.name): sorted(set(c.columns) - cols[table]) for table, checks in uc.quality.checks.items() for c in checks}
    assert unknown and {k: v for k, v in unknown.items() if v} == {}
    types = {c.type for checks in uc.quality.checks.values() for c in checks}
    assert types == {"not_null", "unique", "range", "accepted_values", "freshness", "row_count_change", "not_future"}
    # the resolved conf (logged with every training run) loads again as it is
    assert QualitySpec.model_validate(yaml.safe_load(yaml.safe_dump(uc.quality.model_dump(mode="json")))) == uc.quality
