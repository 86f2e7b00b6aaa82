"""Config is validated on load; every error names the file and the key."""


import pytest

from conftest import CONF, usecases
from conftest import edit_yaml as _edit
from lakeml.core.config import load_env, load_usecase
from lakeml.core.errors import ConfigError


@pytest.mark.parametrize("name", usecases())
def test_shipped_conf_loads(name):
    env = load_env(CONF, "embedded")
    uc = load_usecase(CONF, name, env)
    assert env.spark.master == "local[*]"
    assert uc.table(uc.tables.predictions) == f"{uc.database}.predictions"
    assert set(uc.model.categorical).isdisjoint(uc.model.numeric)
    keys = [(spec, k) for spec in uc.sources.values() for k in spec.keys]
    assert keys and all(spec.columns[k].required for spec, k in keys)
    assert uc.demo is not None and (CONF / name / uc.demo.maker).is_file()


def test_the_env_names_the_default_use_case():
    env = load_env(CONF, "embedded")
    assert load_usecase(CONF, None, env).name == env.usecase == "churn"


def test_no_use_case_anywhere_says_how_to_name_one(conf_copy):
    _edit(conf_copy / "envs" / "embedded.yaml", lambda d: d.pop("usecase"))
    env = load_env(conf_copy, "embedded")
    with pytest.raises(ConfigError, match=r"no use case given: pass --usecase NAME or set usecase: in .*embedded.yaml; "
                                          r"known use cases: churn, maintenance"):
        load_usecase(conf_copy, None, env)


def test_mleap_fails_at_load_naming_the_maven_artifact(conf_copy):
    _edit(conf_copy / "churn" / "usecase.yaml", lambda d: d["export"].update({"mleap": True}))
    with pytest.raises(ConfigError, match=r"export\.mleap: .*ml\.combust\.mleap:mleap-spark_2\.13:0\.25\.2.*set export\.mleap: false"):
        load_usecase(conf_copy, "churn")


def test_event_time_must_be_a_date_or_timestamp_column(conf_copy):
    path = conf_copy / "churn" / "usecase.yaml"
    _edit(path, lambda d: d["sources"]["payments"].update({"event_time": "amount"}))
    with pytest.raises(ConfigError, match=r"sources\.payments: .*event_time 'amount' must be a date or timestamp column, not double"):
        load_usecase(conf_copy, "churn")


def test_the_probability_column_may_not_shadow_another(conf_copy):
    _edit(conf_copy / "churn" / "usecase.yaml", lambda d: d["model"].update({"probability_column": "customer_id"}))
    with pytest.raises(ConfigError, match=r"model\.probability_column: 'customer_id' is already features\.entity"):
        load_usecase(conf_copy, "churn")


def test_a_missing_demo_maker_names_the_key(conf_copy):
    (conf_copy / "churn" / "demo.py").unlink()
    with pytest.raises(ConfigError, match=r"usecase\.yaml: demo\.maker: Python file 'demo.py' not found"):
        load_usecase(conf_copy, "churn")


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
    _edit(path, lambda d: d["model"].update({"classifier": "xgbost"}))
    with pytest.raises(ConfigError, match=r"model\.classifier: .*'xgbost'"):
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
    with pytest.raises(ConfigError, match=r"unknown use case 'fraud'; known use cases: churn, maintenance"):
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


# --------------------------------------------------------------------------- checked before data is read


def test_a_sql_syntax_error_names_the_file_and_the_line_before_any_data(spark, conf_copy):
    from lakeml import pipeline

    usage = conf_copy / "churn" / "sql" / "features" / "usage.sql"
    usage.write_text(usage.read_text().replace("SELECT", "SELEC", 1))
    uc = load_usecase(conf_copy, "churn")
    with pytest.raises(ConfigError) as e:
        pipeline.check_conf(spark, uc)
    msg = str(e.value)
    assert msg.startswith(f"{uc.conf_dir}/sql/features/usage.sql: ") and "Syntax error" in msg and "line" in msg, msg
    assert "\n" not in msg


@pytest.mark.parametrize("params, key", [
    ({"maxIter": "forty"}, "model.params.maxIter"),
    ({"subsamplingRate": 1.5}, "model.params.subsamplingRate"),
    ({"maxBins": 1}, "model.params.maxBins"),
])
def test_bad_model_params_name_their_key_before_any_data(spark, conf_copy, params, key):
    from lakeml.ml import train

    # MLlib's own validators check the ranges (gbt; xgboost's names are checked by name)
    _edit(conf_copy / "churn" / "usecase.yaml", lambda d: d["model"].update(classifier="gbt", params={"maxIter": 40, **params}, grid={}))
    uc = load_usecase(conf_copy, "churn")
    with pytest.raises(ConfigError, match=rf"usecase\.yaml: {key}: ") as e:
        train.check_model(uc.model, uc.label.column, uc.source_file)
    assert "\n" not in str(e.value)


def test_a_grid_value_out_of_range_names_its_key(spark, conf_copy):
    from lakeml.ml import train

    _edit(conf_copy / "churn" / "usecase.yaml", lambda d: d["model"].update(classifier="gbt", params={}, grid={"stepSize": [0.1, 0.0]}))
    uc = load_usecase(conf_copy, "churn")
    with pytest.raises(ConfigError, match=r"model\.grid\.stepSize: 0\.0 is out of range"):
        train.check_model(uc.model, uc.label.column, uc.source_file)
    # the shipped conf passes
    for name in usecases():
        u = load_usecase(CONF, name)
        train.check_model(u.model, u.label.column, u.source_file)
