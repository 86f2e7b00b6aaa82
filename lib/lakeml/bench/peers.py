"""What a user would pick instead of the project's stage, run on the same data.

- training: one MLlib GBT fit and one XGBoost (PySpark) fit vs LightGBM in-process, same
  split, the same boosting settings (``boosting``: trees, rate, depth, subsample, from the
  use case's tuned parameters); ROC AUC on the same test snapshot;
- scoring: ``PipelineModel.transform`` (the project's score stage) vs
  ``mlflow.pyfunc.spark_udf`` on the same registered model vs a ``pandas_udf`` with a
  broadcast scikit-learn model trained on the same features; every path ends in a Delta
  write, so each number is "predictions in a table".
"""

from __future__ import annotations

import logging
import time

import pandas as pd
from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakeml.core import tables
from lakeml.core.config import UseCaseConfig
from lakeml.ml import metrics, train

log = logging.getLogger(__name__)


def split(data: DataFrame, train_dates, test_date) -> tuple[DataFrame, DataFrame]:
    return data.where(F.col("as_of_date").isin(train_dates)), data.where(F.col("as_of_date") == F.lit(test_date))


def _one_fit(uc: UseCaseConfig, spec, train_df: DataFrame, test_df: DataFrame) -> dict:
    """One fit of the pipeline ``spec`` describes (no grid): its seconds and test ROC AUC."""
    label = uc.label.column
    pipe, _ = train.build_pipeline(spec, label, uc.source_file)
    tr = train.training_rows(train_df, label, spec).persist()
    te = test_df.persist()
    rows = tr.count() + te.count()  # materialise the cache outside the timed fit
    t0 = time.perf_counter()
    model = pipe.fit(tr)
    fit_s = time.perf_counter() - t0
    scored = model.transform(te).withColumn("p1", metrics.positive_probability())
    auc = BinaryClassificationEvaluator(labelCol=label, rawPredictionCol="p1", metricName="areaUnderROC", numBins=0).evaluate(scored)
    tr.unpersist()
    te.unpersist()
    return {"fit_seconds": round(fit_s, 2), "roc_auc": round(auc, 4), "rows": rows}


# trees of every peer fit when the use case's count is a cap for early stopping. Not the
# stage model's count (300 at 1 M): MLlib's GBT at 300 trees ran 7 min and failed with a
# StackOverflowError serialising its lineage (2026-12-01)
PEER_TREES = 40


def boosting(params: dict) -> dict:
    """The settings every boosting peer shares (trees, learning rate, depth, row subsample),
    from the use case's tuned parameters in MLlib's names (gbt) or XGBoost's (xgboost)."""
    def pick(*names, default):
        return next((params[n] for n in names if n in params), default)

    trees = pick("maxIter", default=None) or (PEER_TREES if "early_stopping_rounds" in params else pick("n_estimators", default=PEER_TREES))
    return {
        "trees": int(trees),
        "rate": float(pick("stepSize", "learning_rate", default=0.1)),
        "depth": int(pick("maxDepth", "max_depth", default=5)),
        "subsample": float(pick("subsamplingRate", "subsample", default=1.0)),
    }


def mllib_gbt(uc: UseCaseConfig, train_df: DataFrame, test_df: DataFrame, b: dict) -> dict:
    """One fit of the use case's pipeline with MLlib's GBT as its last stage (``classifier:
    gbt``) and the shared boosting settings ``b``, no grid."""
    mapped = {"maxIter": b["trees"], "stepSize": b["rate"], "maxDepth": b["depth"], "subsamplingRate": b["subsample"], "maxBins": 32}
    spec = uc.model.model_copy(update={"classifier": "gbt", "params": mapped, "grid": {}})
    return {**_one_fit(uc, spec, train_df, test_df), "params": mapped}


def xgboost_fit(uc: UseCaseConfig, train_df: DataFrame, test_df: DataFrame, b: dict) -> dict:
    """One fit of the use case's pipeline with XGBoost's PySpark estimator as its last stage
    (``classifier: xgboost``) and the shared boosting settings ``b``, no grid, no early stopping."""
    mapped = {"n_estimators": b["trees"], "learning_rate": b["rate"], "max_depth": b["depth"], "subsample": b["subsample"]}
    spec = uc.model.model_copy(update={"classifier": "xgboost", "params": mapped, "grid": {},
                                       "tuning": uc.model.tuning.model_copy(update={"parallelism": 1})})
    return {**_one_fit(uc, spec, train_df, test_df), "params": mapped}


def score_floor(uc: UseCaseConfig, rows: DataFrame, table: str) -> int:
    """The scoring stage without the model: the same snapshot read (every column the model
    reads) and a prediction table of the same columns written, with a constant score.

    The score is 0.5 + 0 × a hash of the model's feature columns: a literal alone would let
    Parquet read two columns of the snapshot where the engines read all of them."""
    feats = [*uc.model.categorical, *uc.model.numeric]
    constant = (F.lit(0.5) + F.hash(*feats).cast("double") * F.lit(0.0)).alias(uc.probability)
    out = rows.select(
        F.col(uc.entity), F.col("as_of_date").alias("score_date"), constant, F.lit(0).alias("prediction"),
        F.lit(uc.model.name).alias("model_name"), F.lit("0").alias("model_version"), F.lit("floor").alias("model_run_id"),
        F.lit("floor").alias("model_alias"), F.current_timestamp().alias("scored_at"),
    )
    tables.overwrite(out, table, partition_by=["score_date"])
    return tables.read(rows.sparkSession, table).count()


def to_pandas(df: DataFrame, uc: UseCaseConfig, categories: dict[str, list[str]] | None = None) -> tuple[pd.DataFrame, dict]:
    """Features (+ label) as pandas, categoricals as pandas categories with fixed levels
    (those of the training frame), so train and test encode alike."""
    cols = [*uc.model.categorical, *uc.model.numeric] + ([uc.label.column] if uc.label.column in df.columns else [])
    pdf = df.select(*cols).toPandas()
    return as_model_frame(pdf, uc, categories)


def as_model_frame(pdf: pd.DataFrame, uc: UseCaseConfig, categories: dict[str, list[str]] | None = None) -> tuple[pd.DataFrame, dict]:
    categories = categories or {c: sorted(pdf[c].dropna().unique().tolist()) for c in uc.model.categorical}
    for c in uc.model.categorical:
        pdf[c] = pd.Categorical(pdf[c], categories=categories[c])
    for c in uc.model.numeric:
        pdf[c] = pdf[c].astype("float64")
    return pdf, categories


def lightgbm_fit(uc: UseCaseConfig, train_pdf: pd.DataFrame, test_pdf: pd.DataFrame, b: dict, threads: int) -> dict:
    import lightgbm as lgb
    from sklearn.metrics import roc_auc_score

    label = uc.label.column
    feats = [*uc.model.categorical, *uc.model.numeric]
    clf = lgb.LGBMClassifier(
        n_estimators=b["trees"],
        learning_rate=b["rate"],
        max_depth=b["depth"],
        num_leaves=2 ** b["depth"],
        subsample=b["subsample"],
        subsample_freq=1,
        class_weight="balanced" if uc.model.class_weight == "balanced" else None,
        random_state=uc.model.seed,
        n_jobs=threads,
        verbose=-1,
    )
    t0 = time.perf_counter()
    clf.fit(train_pdf[feats], train_pdf[label])
    fit_s = time.perf_counter() - t0
    auc = roc_auc_score(test_pdf[label], clf.predict_proba(test_pdf[feats])[:, 1])
    return {"fit_seconds": round(fit_s, 2), "roc_auc": round(float(auc), 4), "rows": len(train_pdf) + len(test_pdf)}


def sklearn_model(uc: UseCaseConfig, train_pdf: pd.DataFrame, b: dict):
    """A scikit-learn gradient-boosting model on the same features (categoricals native)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    clf = HistGradientBoostingClassifier(
        max_iter=b["trees"],
        learning_rate=b["rate"],
        max_depth=b["depth"],
        max_leaf_nodes=2 ** b["depth"],
        categorical_features="from_dtype",
        class_weight="balanced" if uc.model.class_weight == "balanced" else None,
        random_state=uc.model.seed,
    )
    return clf.fit(train_pdf[[*uc.model.categorical, *uc.model.numeric]], train_pdf[uc.label.column])


def score_pandas_udf(spark: SparkSession, uc: UseCaseConfig, model, categories: dict, rows: DataFrame, table: str) -> int:
    """Broadcast the scikit-learn model; a pandas_udf (Arrow batches) predicts; Delta write."""
    from pyspark.sql.functions import pandas_udf

    bc = spark.sparkContext.broadcast((model, categories))
    cat, num = list(uc.model.categorical), list(uc.model.numeric)

    @pandas_udf("double")
    def predict(*cols: pd.Series) -> pd.Series:
        m, levels = bc.value
        pdf = pd.concat(cols, axis=1, keys=cat + num)
        pdf, _ = as_model_frame(pdf, uc, levels)
        return pd.Series(m.predict_proba(pdf[cat + num])[:, 1])

    out = rows.select(uc.features.entity, F.col("as_of_date").alias("score_date"), predict(*cat, *num).alias(uc.probability))
    tables.overwrite(out, table)
    return tables.read(spark, table).count()


def score_spark_udf(spark: SparkSession, uc: UseCaseConfig, model_uri: str, rows: DataFrame, table: str) -> int:
    """``mlflow.pyfunc.spark_udf`` over the registered Spark model: each Python worker loads
    the model into a Spark session of its own and transforms pandas batches with it."""
    import mlflow

    udf = mlflow.pyfunc.spark_udf(spark, model_uri, result_type="double", env_manager="local")
    cols = [uc.features.entity, "as_of_date", *uc.model.categorical, *uc.model.numeric]
    out = rows.select(uc.features.entity, F.col("as_of_date").alias("score_date"), udf(*[F.col(c) for c in cols]).alias("prediction"))
    tables.overwrite(out, table)
    return tables.read(spark, table).count()


def python_error(e: Exception) -> str:
    """The last line of the Python error a Spark task raised (else the exception's first line)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    raised = [ln for ln in lines if ln.split(":", 1)[0].endswith(("Error", "Exception")) and not ln.startswith(("org.", "at "))]
    return (raised[-1] if raised else lines[0] if lines else type(e).__name__)[:300]
