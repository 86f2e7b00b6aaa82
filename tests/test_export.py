"""Portable models: the ONNX model scores like the Spark pipeline.

A pipeline of the project's shape (train.build_pipeline: Imputer -> StringIndexer ->
(OneHotEncoder for LR) -> VectorAssembler -> classifier, class weights, a set threshold),
for logistic regression, GBT (the conf's default), random forest and XGBoost (its PySpark
estimator, early stopping on), is fitted on 10 000
generated rows with nulls, NaN and a category the fit never saw; then the same rows are
scored by ``PipelineModel.transform`` and by the ONNX model (ONNX Runtime, no Spark), and
P(class 1) must agree to ``ExportSpec().parity_tolerance`` (1e-6).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pyspark.ml import PipelineModel
from pyspark.ml.functions import vector_to_array
from pyspark.sql import functions as F

from lakeml.core import tracking
from lakeml.core.config import ExportSpec
from lakeml.ml import onnx_export, onnx_runtime, portable, train

N = 10_000
NUMERIC = ["age", "tenure_days", "minutes_30d", "monthly_fee"]
CATEGORICAL = ["plan", "region"]
SCHEMA = ("customer_id string, age int, tenure_days int, minutes_30d double, monthly_fee double, "
          "plan string, region string, churned int")
TOL = ExportSpec().parity_tolerance


def _rows(n: int = N, seed: int = 20261125) -> list[tuple]:
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, n)
    tenure = rng.integers(0, 2000, n)
    minutes = rng.gamma(2.0, 300.0, n)
    fee = rng.choice([9.99, 19.99, 29.99, 49.5], n) + rng.normal(0, 0.01, n)
    plan = rng.choice(["basic", "premium", "family", "student"], n, p=[0.5, 0.25, 0.2, 0.05])
    region = rng.choice(["north", "south", "east", "west", "islands"], n, p=[0.3, 0.3, 0.2, 0.18, 0.02])
    logit = -1.0 + 0.002 * (1000 - tenure) - 0.002 * minutes + 0.8 * (plan == "basic") + 0.03 * (fee - 20) + 0.01 * (age - 45)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return [
        (
            f"C{i:05d}",
            None if i % 13 == 0 else int(age[i]),
            None if i % 17 == 0 else int(tenure[i]),
            None if i % 11 == 0 else float(minutes[i]),
            float("nan") if i % 19 == 0 else float(fee[i]),  # NaN, which the Imputer fills like null
            None if i % 23 == 0 else str(plan[i]),
            None if i % 29 == 0 else str(region[i]),
            int(y[i]),
        )
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def rows(spark):
    r = _rows()
    df = spark.createDataFrame(r, SCHEMA).localCheckpoint()
    pdf = pd.DataFrame(r, columns=[c.split()[0] for c in SCHEMA.split(", ")])
    return df, pdf


PARAMS = {"logistic_regression": {"maxIter": 20}, "gbt": {"maxIter": 20}, "random_forest": {"numTrees": 20},
          "xgboost": {"n_estimators": 60, "max_depth": 4, "learning_rate": 0.3, "early_stopping_rounds": 5}}


@pytest.fixture(scope="module", params=list(PARAMS))
def fitted(request, spark, uc, rows):
    """(classifier, PipelineModel, native P(1), native prediction) on the 10 000 rows."""
    df, _ = rows
    clf = request.param
    spec = uc.model.model_copy(
        update={"classifier": clf, "params": PARAMS[clf], "grid": {}, "categorical": CATEGORICAL, "numeric": NUMERIC}
    )
    pipe, _ = train.build_pipeline(spec, "churned")
    fit_rows = df.where(F.coalesce(F.col("region"), F.lit("")) != "islands")  # 'islands' is unseen: StringIndexer 'keep'
    model = pipe.fit(train.training_rows(fit_rows, "churned", spec))
    model = train.set_threshold(model, 0.4)
    out = model.transform(df).select("customer_id", vector_to_array("probability")[1].alias("p"), "prediction").orderBy("customer_id")
    native = out.toPandas()
    return clf, model, native["p"].to_numpy(), native["prediction"].to_numpy()


def _report(fmt: str, clf: str, diff: float) -> None:
    print(f"\nparity {fmt} {clf}: max |P(1) - Spark P(1)| = {diff:.3g} over {N} rows")


def test_onnx_scores_like_spark(spark, rows, fitted, tmp_path):
    df, pdf = rows
    clf, model, p_native, pred_native = fitted
    path = onnx_export.to_onnx(spark, model, df, tmp_path / "model.onnx")
    assert path is not None and path.is_file()
    p = onnx_runtime.score_onnx(path, pdf)
    assert p.shape == (N,) and p.dtype == np.float64
    diff = float(np.max(np.abs(p - p_native)))
    _report("onnx", clf, diff)
    assert diff <= TOL
    out = onnx_runtime.run_onnx(path, pdf)  # the decision too, with the model's threshold
    assert np.array_equal(out["prediction"], pred_native.astype(np.int64))
    assert np.allclose(out["probability"].sum(axis=1), 1.0)


def test_scoring_a_pandas_frame_in_spark_is_the_native_transform(spark, rows, fitted):
    """score_spark (the parity check's Spark side) turns pandas rows into the same Spark rows:
    None/NaN stay missing, whole numbers stay numbers."""
    _, pdf = rows
    _, model, p_native, _ = fitted
    assert np.array_equal(portable.score_spark(model, pdf.drop(columns="churned"), spark), p_native)


def test_onnx_inputs_are_the_raw_columns(spark, rows, fitted):
    df, _ = rows
    _, model, _, _ = fitted
    assert onnx_export.onnx_input_types(model, df) == [(c, "double") for c in NUMERIC] + [(c, "string") for c in CATEGORICAL]


def test_onnx_refuses_a_stage_it_cannot_express(spark, rows, fitted, tmp_path, caplog):
    df, _ = rows
    _, model, _, _ = fitted
    indexer = model.stages[1].copy()
    indexer.setHandleInvalid("skip")  # drops rows: no model can do that
    skipping = PipelineModel([model.stages[0], indexer, *model.stages[2:]])
    assert onnx_export.to_onnx(spark, skipping, df, tmp_path / "skip.onnx") is None
    assert "handleInvalid='skip'" in caplog.text
    from pyspark.ml.feature import SQLTransformer

    other = PipelineModel([SQLTransformer(statement="SELECT * FROM __THIS__"), *model.stages])
    assert onnx_export.to_onnx(spark, other, df, tmp_path / "sql.onnx") is None
    assert "no ONNX converter for stage(s) SQLTransformer" in caplog.text
    assert not (tmp_path / "skip.onnx").exists() and not (tmp_path / "sql.onnx").exists()


def test_log_portable_logs_artifacts_and_tags_the_version(spark, env, rows, fitted, tmp_path):
    df, pdf = rows
    clf, model, p_native, _ = fitted
    client = tracking.configure(env)
    exp = tracking.experiment(env, "t_export")
    with tracking.mlflow.start_run(experiment_id=exp) as run:
        ref = tracking.log_and_register_spark_model(model, f"t_export_{clf}")
        logged = portable.log_portable(model, df.drop("churned"), run.info.run_id, ref, ExportSpec())
    assert logged == {"onnx": "onnx/model.onnx"}  # ONNX always converts for this pipeline
    assert [a.path for a in client.list_artifacts(run.info.run_id, "onnx")] == ["onnx/model.onnx"]
    mv = client.get_model_version(ref.name, ref.version)
    assert mv.tags[portable.FORMATS_TAG] == "onnx" and "portable_onnx_missing" not in mv.tags
    r = client.get_run(run.info.run_id).data
    assert r.metrics["portable_onnx_max_abs_diff"] <= TOL
    onnx_file = portable.download(run.info.run_id, portable.ONNX_ARTIFACT, tmp_path)
    assert float(np.max(np.abs(onnx_runtime.score_onnx(onnx_file, pdf) - p_native))) <= TOL


def test_a_copy_that_cannot_be_made_says_why_and_training_goes_on(spark, env, uc, rows, fitted):
    """... and scoring.engine auto scores that version with the Spark pipeline, while onnx
    refuses it with the reason."""
    from pyspark.ml.feature import SQLTransformer

    from lakeml.core.errors import MissingDataError
    from lakeml.ml import score

    df, _ = rows
    clf, model, _, _ = fitted
    other = PipelineModel([SQLTransformer(statement="SELECT * FROM __THIS__"), *model.stages])
    client = tracking.configure(env)
    with tracking.mlflow.start_run(experiment_id=tracking.experiment(env, "t_export")) as run:
        ref = tracking.log_and_register_spark_model(other, f"t_export_nc_{clf}")
        logged = portable.log_portable(other, df.drop("churned"), run.info.run_id, ref, ExportSpec())
    assert logged == {}
    assert client.list_artifacts(run.info.run_id, "onnx") == []
    mv = client.get_model_version(ref.name, ref.version)
    assert mv.tags[portable.FORMATS_TAG] == "none"
    assert mv.tags["portable_onnx_missing"] == "a pipeline stage has no ONNX form (see the log)"
    assert client.get_run(run.info.run_id).data.tags["portable_onnx_missing"] == mv.tags["portable_onnx_missing"]

    def engine(name):
        return uc.model_copy(update={"model": uc.model.model_copy(update={"name": ref.name}),
                                     "scoring": uc.scoring.model_copy(update={"engine": name})})

    model, got, used = score.load(client, engine("auto"), "challenger", ref.version)
    assert used == "native" and isinstance(model, PipelineModel) and got.version == ref.version
    with pytest.raises(MissingDataError, match="has no ONNX copy: a pipeline stage has no ONNX form"):
        score.load(client, engine("onnx"), "challenger", ref.version)
