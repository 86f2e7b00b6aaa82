"""Train the MLlib pipeline of the use case, evaluate it on a later snapshot, and register it.

Pipeline: Imputer (median) -> StringIndexer (+ OneHotEncoder for logistic regression) ->
VectorAssembler -> classifier from conf, with class weights. The feature stages are fitted
once on the training rows; the classifier is tuned on their cached output with a parameter
grid from conf (TrainValidationSplit or CrossValidator, ``parallelism`` models at a time).

Time-based split: the test set is the newest labelled snapshot; training uses only the
snapshots whose label window had closed by then (as_of + horizon <= test as_of), so no
training label peeks past the test date.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, timedelta

from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.classification import GBTClassifier, LogisticRegression, RandomForestClassifier
from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.ml.feature import Imputer, OneHotEncoder, StringIndexer, VectorAssembler
from pyspark.ml.tuning import CrossValidator, ParamGridBuilder, TrainValidationSplit
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakeml import features
from lakeml.core import tables, tracking
from lakeml.core.config import EnvConfig, ModelSpec, UseCaseConfig, to_yaml
from lakeml.core.errors import ConfigError, LakemlError, first_line
from lakeml.ml import metrics, plots, portable, xgb

log = logging.getLogger(__name__)

# the max-F1 threshold is chosen on at most this many training rows (a seeded sample): its
# curve, from 1 000 probability bins, is steady long before, and scoring every training row
# again cost 8 s of the train stage at 1 M entities
THRESHOLD_ROWS = 200_000

CLASSIFIERS = {"logistic_regression": LogisticRegression, "random_forest": RandomForestClassifier, "gbt": GBTClassifier}


def _classifier(spec: ModelSpec, label: str, weight: str | None = "weight", num_workers: int | None = None):
    """The unfitted classifier stage the conf names (XGBoost's estimator is a Python one)."""
    if spec.classifier == xgb.NAME:
        return xgb.estimator(label, spec.seed, num_workers)
    clf = CLASSIFIERS[spec.classifier](featuresCol="features", labelCol=label, **({"weightCol": weight} if weight else {}))
    if clf.hasParam("seed"):
        clf.setSeed(spec.seed)
    return clf


def _xgb_workers(spec: ModelSpec, rows: int | None = None) -> int | None:
    """XGBoost trains in one barrier stage of ``num_workers`` tasks, which must all run at
    once, and the tuning fits ``parallelism`` models at once: each gets its share of the
    task slots the session has now (its cores, not ``spark.default.parallelism``), and,
    when the training ``rows`` are known, no more workers than ``xgb.MIN_ROWS_PER_WORKER``
    rows each make."""
    if spec.classifier != xgb.NAME or "num_workers" in spec.params:
        return None
    active = SparkSession.getActiveSession()
    share = max(1, xgb.task_slots(active) // max(1, spec.tuning.parallelism)) if active is not None else 1
    return share if rows is None else max(1, min(share, rows // xgb.MIN_ROWS_PER_WORKER))


class TrainingError(LakemlError):
    """Training cannot give a model: no labelled snapshot yet, or a test ROC AUC below the floor."""


def _set_params(est, params: dict, key: str, source: str) -> None:
    for name, value in params.items():
        if not est.hasParam(name):
            raise ConfigError(f"{source}: {key}.{name}: {type(est).__name__} has no parameter {name!r}")
        try:
            est.set(est.getParam(name), value)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{source}: {key}.{name}: {value!r} is not a valid {name} for {type(est).__name__} ({e})") from None


def check_model(spec: ModelSpec, label: str, source: str = "model spec") -> None:
    """Every ``model.params`` value and every point of ``model.grid`` handed, one at a time,
    to the classifier and to the JVM, whose validators check ranges (``subsamplingRate:
    1.5``): a bad value names its conf key before any data is read. Needs a Spark session
    (no data)."""
    build_pipeline(spec, label, source)  # unknown names and wrong types
    bare = _classifier(spec, label, weight=None)
    checks = [("model.params", name, v) for name, v in spec.params.items()]
    for name, values in spec.grid.items():
        if not bare.hasParam(name):
            raise ConfigError(f"{source}: model.grid.{name}: {type(bare).__name__} has no parameter {name!r}")
        checks += [("model.grid", name, v) for v in values]
    for key, name, value in checks:
        param = bare.getParam(name)
        try:
            converted = param.typeConverter(value)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{source}: {key}.{name}: {value!r} is not a valid {name} for {type(bare).__name__} ({e})") from None
        if spec.classifier == xgb.NAME:
            continue  # a Python estimator: XGBoost checks its values when it trains
        try:
            bare.copy({param: converted})._transfer_params_to_java()
        except Exception as e:  # noqa: BLE001 - the JVM's IllegalArgumentException, through py4j
            msg = first_line(getattr(e, "java_exception", e))
            raise ConfigError(f"{source}: {key}.{name}: {value!r} is out of range for {type(bare).__name__} ({msg})") from None


def build_pipeline(spec: ModelSpec, label: str, source: str = "model spec", rows: int | None = None) -> tuple[Pipeline, object]:
    """The unfitted Pipeline and its classifier stage (for the parameter grid); ``rows``:
    how many it will be fitted on, if known (XGBoost's worker count)."""
    imputed = [f"{c}__imp" for c in spec.numeric]
    indexed = [f"{c}__idx" for c in spec.categorical]
    stages: list = []
    if spec.numeric:
        stages.append(Imputer(inputCols=spec.numeric, outputCols=imputed, strategy="median"))
    if spec.categorical:
        stages.append(StringIndexer(inputCols=spec.categorical, outputCols=indexed, handleInvalid="keep", stringOrderType="alphabetAsc"))
    if not spec.categorical:
        cat_vec = []
    elif spec.classifier == "logistic_regression":
        onehot = [f"{c}__ohe" for c in spec.categorical]
        stages.append(OneHotEncoder(inputCols=indexed, outputCols=onehot, handleInvalid="keep"))
        cat_vec = onehot
    else:
        cat_vec = indexed  # trees split categorical indices directly
    stages.append(VectorAssembler(inputCols=imputed + cat_vec, outputCol="features", handleInvalid="keep"))
    clf = _classifier(spec, label, num_workers=_xgb_workers(spec, rows))
    _set_params(clf, spec.params, "model.params", source)
    if spec.classifier == xgb.NAME and xgb.early_stopping(clf):
        clf.set(clf.getParam("validationIndicatorCol"), xgb.VALIDATION_COL)
    stages.append(clf)
    return Pipeline(stages=stages), clf


def param_grid(clf, spec: ModelSpec, source: str = "model spec") -> list:
    b = ParamGridBuilder()
    for name, values in spec.grid.items():
        if not clf.hasParam(name):
            raise ConfigError(f"{source}: model.grid.{name}: {type(clf).__name__} has no parameter {name!r}")
        b = b.addGrid(clf.getParam(name), values)
    return b.build()


def with_class_weights(df: DataFrame, label: str, mode: str) -> DataFrame:
    """weight = n / (2 * n_class) for 'balanced', 1 otherwise."""
    if mode == "none":
        return df.withColumn("weight", F.lit(1.0))
    counts = {r[0]: r[1] for r in df.groupBy(label).count().collect()}
    n = sum(counts.values())
    w = {k: n / (2.0 * v) for k, v in counts.items()}
    expr = F.lit(1.0)
    for k, v in w.items():
        expr = F.when(F.col(label) == k, F.lit(v)).otherwise(expr)
    return df.withColumn("weight", expr)


def training_rows(df: DataFrame, label: str, spec: ModelSpec) -> DataFrame:
    """What the pipeline is fitted on: the rows with their class weights (and, for XGBoost,
    the seeded share its early stopping validates on)."""
    out = with_class_weights(df, label, spec.class_weight)
    return xgb.with_validation(out, spec.seed) if spec.classifier == xgb.NAME else out


def time_split(labelled_dates: list[date], horizon_days: int) -> tuple[list[date], date]:
    if not labelled_dates:
        raise TrainingError("No labelled snapshot yet: generate more days of data (the label window must close).")
    test = max(labelled_dates)
    train = [d for d in labelled_dates if d + timedelta(days=horizon_days) <= test]
    if not train:
        raise TrainingError(
            f"Need a labelled snapshot at least {horizon_days} days before the test snapshot {test}; "
            f"have {sorted(labelled_dates)}. Generate more days of data."
        )
    return sorted(train), test


def set_threshold(model: PipelineModel, t: float) -> PipelineModel:
    """Make the fitted pipeline predict 1 exactly when P(1) >= t: the classifier's own
    threshold (MLlib), or a ``PositiveThreshold`` stage after it (XGBoost, which predicts the
    likelier class). Returns the model (a new one when a stage was added)."""
    clf = model.stages[-1]
    if type(clf).__name__ == "SparkXGBClassifierModel":
        return PipelineModel(stages=[*model.stages, xgb.PositiveThreshold(threshold=t)])
    if isinstance(clf, xgb.PositiveThreshold):
        clf.set(clf.threshold, t)
    elif clf.hasParam("threshold") and not clf.hasParam("thresholds"):
        clf.set(clf.getParam("threshold"), t)
    else:
        clf.set(clf.getParam("thresholds"), [1.0 - t, t])
    return model


def feature_importances(model: PipelineModel, scored: DataFrame) -> list[tuple[str, float]]:
    """(feature, importance) from the fitted classifier: tree importances, or |coefficient|.

    Slot names come from the assembler's metadata on ``scored`` (one-hot slots are named
    ``column_value``)."""
    clf = xgb.classifier_stage(model) or model.stages[-1]
    attrs = scored.schema["features"].metadata.get("ml_attr", {}).get("attrs", {})
    names = {a["idx"]: a["name"] for group in attrs.values() for a in group}
    if hasattr(clf, "get_booster"):
        vals = xgb.importances(clf, scored.schema["features"].metadata.get("ml_attr", {}).get("num_attrs", len(names)))
    elif hasattr(clf, "featureImportances"):
        vals = clf.featureImportances.toArray()
    else:
        vals = abs(clf.coefficients.toArray())
    clean = [names.get(i, f"f{i}").replace("__imp", "").replace("__idx", "").replace("__ohe", "") for i in range(len(vals))]
    return sorted(zip(clean, (float(v) for v in vals), strict=True), key=lambda p: -p[1])


def tree_count(model: PipelineModel) -> int | None:
    """Trees (boosting rounds) the fitted classifier predicts with; None for a linear model."""
    clf = xgb.classifier_stage(model)
    if clf is not None:
        return xgb.trees_used(clf)
    last = model.stages[-1]
    return int(last.getNumTrees) if hasattr(last, "getNumTrees") else None


@dataclass
class TrainResult:
    model: tracking.ModelRef
    metrics: dict[str, float]
    threshold: float
    train_dates: list[date]
    test_date: date
    became_champion: bool
    best_params: dict = field(default_factory=dict)
    train_rows: int = 0
    test_rows: int = 0
    trees: int | None = None


def labelled_dates(data: DataFrame) -> list[date]:
    return [r[0] for r in data.select("as_of_date").distinct().collect()]


def fit(spark: SparkSession, uc: UseCaseConfig, data: DataFrame, dates: list[date] | None = None) -> dict:
    """Split, tune, fit and evaluate; no MLflow. Returns the fitted model and numbers.
    ``dates``: the labelled snapshots of ``data``, if known."""
    spec, label, p1 = uc.model, uc.label.column, uc.probability
    train_dates, test_date = time_split(labelled_dates(data) if dates is None else dates, uc.label.horizon_days)
    train = training_rows(data.where(F.col("as_of_date").isin(train_dates)), label, spec).persist()
    test = data.where(F.col("as_of_date") == F.lit(test_date)).persist()
    n_train = train.count()
    if test.isEmpty():  # dates from both tables' partitions: their rows must meet too
        raise TrainingError(f"no feature row of {test_date} has a label in {uc.table(uc.tables.labels)}: "
                            f"recompute that snapshot with jobs/features.py --as-of {test_date}")
    pipe, clf = build_pipeline(spec, label, uc.source_file, n_train)
    grid = param_grid(clf, spec, uc.source_file)
    ev = BinaryClassificationEvaluator(labelCol=label, metricName=spec.tuning.metric)
    t = spec.tuning
    if t.method == "cross_validator":
        tuner = CrossValidator(estimator=clf, estimatorParamMaps=grid, evaluator=ev, numFolds=t.folds,
                               parallelism=t.parallelism, seed=spec.seed)
    else:
        tuner = TrainValidationSplit(estimator=clf, estimatorParamMaps=grid, evaluator=ev, trainRatio=t.train_ratio,
                                     parallelism=t.parallelism, seed=spec.seed)
    # the feature stages (imputer medians, category indices, encoder, assembler) are fitted
    # once, on every training row, and their output cached: the grid and the refit then fit
    # the classifier alone, where a whole pipeline per model fitted each feature stage again
    prep = Pipeline(stages=pipe.getStages()[:-1]).fit(train)
    keep = ["features", label, "weight", *([xgb.VALIDATION_COL] if xgb.VALIDATION_COL in train.columns else [])]
    prepared = prep.transform(train).select(*keep).persist()
    prepared.count()
    train.unpersist()
    tuned = tuner.fit(prepared)
    model = PipelineModel(stages=[*prep.stages, tuned.bestModel])
    scores = tuned.avgMetrics if hasattr(tuned, "avgMetrics") else tuned.validationMetrics
    best_i = max(range(len(scores)), key=lambda i: scores[i])
    best_params = {p.name: v for p, v in grid[best_i].items()}
    if spec.threshold == "max_f1":
        chosen_on = prepared if n_train <= THRESHOLD_ROWS else prepared.sample(fraction=THRESHOLD_ROWS / n_train, seed=spec.seed)
        chosen_scored = tuned.bestModel.transform(chosen_on).withColumn(p1, metrics.positive_probability())
        threshold = metrics.best_f1_threshold(metrics.curves(chosen_scored, label, p1))
    else:
        threshold = float(spec.threshold)
    model = set_threshold(model, threshold)
    test_scored = model.transform(test).withColumn(p1, metrics.positive_probability()).persist()
    result = {
        "model": model,
        "threshold": threshold,
        "train_dates": train_dates,
        "test_date": test_date,
        "train_rows": n_train,
        "test_rows": test.count(),
        "metrics": metrics.evaluate(test_scored, label, p1, threshold),
        "curves": metrics.curves(test_scored, label, p1),
        "importances": feature_importances(model, test_scored),
        "best_params": best_params,
        "trees": tree_count(model),
        "tuning_scores": scores,
        "test_scored": test_scored,
    }
    prepared.unpersist()
    test.unpersist()
    return result


def run(spark: SparkSession, env: EnvConfig, uc: UseCaseConfig) -> TrainResult:
    """Train, log to MLflow, register; alias the version ``challenger`` (and ``champion``
    if the model has none yet). Fails if test ROC AUC is below ``model.auc_floor``."""
    check_model(uc.model, uc.label.column, uc.source_file)  # before any data is read
    client = tracking.configure(env)
    exp_id = tracking.experiment(env, uc.model.experiment)
    tracking.fail_abandoned_runs(client, exp_id)  # a training killed before it finished
    tracking.tag_orphan_versions(client, uc.model.name)  # versions such a crash (or an older release) left: never chosen
    ft, lt = uc.table(uc.tables.features), uc.table(uc.tables.labels)
    data = features.labelled_features(spark, uc)
    dates = features.labelled_dates(spark, uc)
    time_split(dates, uc.label.horizon_days)  # too few days of data: said before a run is started
    versions = {ft: tables.version(spark, ft), lt: tables.version(spark, lt)}
    # all or nothing: the run logs everything and ends; only then is a version registered
    # (with its tags, in one call) and aliased. A crash before leaves no version; a run left
    # RUNNING is marked FAILED by the next training
    with tracking.start_run(exp_id, f"train-{uc.model.classifier}") as run:
        tracking.mlflow.set_tags(
            {"git_commit": tracking.git_commit(env.project_root), "usecase": uc.name, "env": env.name, "stage": "train"}
        )
        for t, v in versions.items():
            tracking.log_table_input(tables.read(spark, t), t, v, "training")
        r = fit(spark, uc, data, dates)
        m = r["metrics"]
        tracking.mlflow.log_params(
            {
                "classifier": uc.model.classifier,
                "class_weight": uc.model.class_weight,
                "tuning": uc.model.tuning.method,
                "threshold": round(r["threshold"], 4),
                "train_rows": r["train_rows"],
                "test_rows": r["test_rows"],
                "train_from": r["train_dates"][0],
                "train_to": r["train_dates"][-1],
                "test_as_of": r["test_date"],
                **({"trees": r["trees"]} if r["trees"] is not None else {}),
                **{f"param.{k}": v for k, v in uc.model.params.items()},
                **{f"best.{k}": v for k, v in r["best_params"].items()},
            }
        )
        tracking.mlflow.log_metrics({f"test_{k}": v for k, v in m.items()})
        for i, s in enumerate(r["tuning_scores"]):
            tracking.mlflow.log_metric(f"tuning_{uc.model.tuning.metric}", s, step=i)
        sql_files = {rel: uc.read_sql(rel) for rel in [uc.features.population_sql, uc.label.sql, *(f.file for f in uc.features.sql)]}
        tracking.log_text_artifacts({"usecase.yaml": to_yaml(uc), "env.yaml": to_yaml(env), **sql_files}, "conf")
        tracking.mlflow.log_artifacts(plots.training_plots(r["curves"], r["importances"]), "plots")
        if m["roc_auc"] < uc.model.auc_floor:
            tracking.mlflow.set_tag("rejected", f"test ROC AUC {m['roc_auc']:.4f} < auc_floor {uc.model.auc_floor}")
            raise TrainingError(
                f"test ROC AUC {m['roc_auc']:.4f} is below model.auc_floor {uc.model.auc_floor} "
                f"({uc.source_file}); the model was logged (run {run.info.run_id}) but not registered"
            )
        signature = _signature(r["test_scored"], uc)
        model_uri = tracking.log_spark_model(r["model"], signature)
        if uc.export.onnx:
            portable_rows = r["test_scored"].select(*uc.model.categorical, *uc.model.numeric)  # the test rows, cached
            portable.log_portable(r["model"], portable_rows, run.info.run_id, None, uc.export)
    r["test_scored"].unpersist()
    run_tags = client.get_run(run.info.run_id).data.tags
    version_tags = {"test_roc_auc": round(m["roc_auc"], 4), "threshold": round(r["threshold"], 4), "test_as_of": r["test_date"],
                    "git_commit": tracking.git_commit(env.project_root)}
    assert set(version_tags) == set(tracking.TRAIN_TAGS)  # what tells a whole version from an orphan
    ref = tracking.register(model_uri, uc.model.name, run.info.run_id,
                            {**version_tags, **{k: v for k, v in run_tags.items() if k.startswith("portable_")}})
    why = tracking.usable(client, uc.model.name, ref.version)
    if why is not None:  # cannot happen unless the registry changed under us; an orphan is never aliased
        raise RuntimeError(f"the version just registered is not usable: {why}")
    tracking.set_alias(client, uc.model.name, tracking.CHALLENGER, ref.version)
    champion = tracking.get_alias(client, uc.model.name, tracking.CHAMPION)
    became = champion is None
    if became:
        # the first model of a name is the champion until the validation gate exists
        tracking.set_alias(client, uc.model.name, tracking.CHAMPION, ref.version)
    log.info("trained %s version %s: test ROC AUC %.4f, PR AUC %.4f", uc.model.name, ref.version, m["roc_auc"], m["pr_auc"])
    return TrainResult(ref, m, r["threshold"], r["train_dates"], r["test_date"], became, r["best_params"], r["train_rows"], r["test_rows"],
                       r["trees"])


def _signature(test_scored: DataFrame, uc: UseCaseConfig):
    """Input/output schema of the model, from five of the scored test rows (cached: reading
    the labelled features and scoring them again cost 25 s at 1 M entities)."""
    from mlflow.models import infer_signature

    cols = [uc.entity, "as_of_date", *uc.model.categorical, *uc.model.numeric]
    rows = test_scored.select(*cols, uc.probability, "prediction").limit(5).toPandas()
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the integer-columns hint: features are imputed
            return infer_signature(rows[cols], rows[[uc.probability, "prediction"]])
    except Exception as e:  # the signature is documentation; never fail training on it
        log.warning("no model signature: %s", e)
        return None
