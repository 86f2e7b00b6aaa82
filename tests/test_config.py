"""Config is validated on load; every error names the file and the key."""


import pytest

from conftest import CONF
from conftest import edit_yaml as _edit
from lakeml.config import ConfigError, load_env, load_usecase


def test_shipped_conf_loads():
    env = load_env(CONF, "embedded")
    uc = load_usecase(CONF, env.usecase)
    assert env.spark.master == "local[*]"
    assert uc.table(uc.tables.predictions) == "churn.predictions"
    assert set(uc.model.categorical).isdisjoint(uc.model.numeric)
    assert all(spec.columns[k].required for spec in uc.sources.values() for k in spec.keys)


def test_misspelled_key_names_file_and_key(conf_copy):
    path = conf_copy / "churn" / "usecase.yaml"
    _edit(path, lambda d: d["model"].update({"clasifier": "gbt"}))
    with pytest.raises(ConfigError) as e:
        load_usecase(conf_copy, "churn")
    msg = str(e.value)
    assert str(path) in msg
    assert "model.clasifier: unknown key" in msg


def test_wrong_value_names_key_and_value(conf_copy):
    path = conf_copy / "churn" / "usecase.yaml"
    _edit(path, lambda d: d["model"].update({"classifier": "xgboost"}))
    with pytest.raises(ConfigError, match=r"model\.classifier: .*'xgboost'"):
        load_usecase(conf_copy, "churn")


def test_wrong_column_type(conf_copy):
    path = conf_copy / "churn" / "usecase.yaml"
    _edit(path, lambda d: d["sources"]["payments"]["columns"]["amount"].update({"type": "money"}))
    with pytest.raises(ConfigError, match=r"sources\.payments\.columns\.amount\.type: .*unknown column type 'money'"):
        load_usecase(conf_copy, "churn")


def test_key_not_a_column(conf_copy):
    path = conf_copy / "churn" / "usecase.yaml"
    _edit(path, lambda d: d["sources"]["payments"].update({"keys": ["invoice_no"]}))
    with pytest.raises(ConfigError, match=r"sources\.payments: .*\['invoice_no'\] are not declared"):
        load_usecase(conf_copy, "churn")


def test_missing_sql_file_names_key(conf_copy):
    (conf_copy / "churn" / "sql" / "features" / "usage.sql").unlink()
    with pytest.raises(ConfigError, match=r"usecase\.yaml: features\.sql\.1: SQL file 'sql/features/usage.sql' not found"):
        load_usecase(conf_copy, "churn")


def test_unknown_env_lists_known_ones():
    with pytest.raises(ConfigError, match=r"unknown env 'prod'; known envs: .*embedded"):
        load_env(CONF, "prod")


def test_unknown_usecase():
    with pytest.raises(ConfigError, match=r"unknown use case 'fraud'; known use cases: churn"):
        load_usecase(CONF, "fraud")


def test_secrets_come_from_the_environment(conf_copy, monkeypatch):
    path = conf_copy / "envs" / "embedded.yaml"
    _edit(path, lambda d: d["mlflow"].update({"tracking_uri": "postgresql://ml:${LAKEML_TEST_PW}@127.0.0.1/mlflow"}))
    monkeypatch.delenv("LAKEML_TEST_PW", raising=False)
    with pytest.raises(ConfigError, match=r"environment variable LAKEML_TEST_PW is not set"):
        load_env(conf_copy, "embedded")
    monkeypatch.setenv("LAKEML_TEST_PW", "s3cret")
    assert load_env(conf_copy, "embedded").tracking_uri == "postgresql://ml:s3cret@127.0.0.1/mlflow"


def test_data_dir_override(monkeypatch, tmp_path):
    monkeypatch.setenv("LAKEML_DATA_DIR", str(tmp_path))
    env = load_env(CONF, "embedded")
    assert env.warehouse_dir == f"{tmp_path}/warehouse"
    assert env.tracking_uri == f"sqlite:///{tmp_path}/mlflow/mlflow.db"
    assert f"databaseName={tmp_path}/metastore_db" in env.spark_conf()["spark.hadoop.javax.jdo.option.ConnectionURL"]
