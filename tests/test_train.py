"""Model building blocks: the pipeline from conf, class weights, the time split, thresholds."""

import os
from datetime import date, timedelta

import pytest
from pyspark.sql import functions as F

from conftest import CLASSIFIER_PARAMS
from lakeml.core import tracking
from lakeml.core.errors import ConfigError
from lakeml.ml import metrics, score, train, xgb


def test_unknown_classifier_parameter_names_the_key(spark, uc):
    spec = uc.model.model_copy(update={"classifier": "gbt", "params": {"maxDepht": 3}, "grid": {}})
    with pytest.raises(ConfigError, match=r"model\.params\.maxDepht: GBTClassifier has no parameter 'maxDepht'"):
        train.build_pipeline(spec, "y", "usecase.yaml")
    spec = uc.model.model_copy(update={"classifier": "gbt", "params": {}, "grid": {"regParam": [0.1]}})
    _, clf = train.build_pipeline(spec, "y")
    with pytest.raises(ConfigError, match=r"model\.grid\.regParam"):
        train.param_grid(clf, spec)


def test_time_split_keeps_a_gap_of_one_horizon():
    d0 = date(2026, 4, 1)
    dates = [d0 + timedelta(days=14 * i) for i in range(6)]  # test = d0 + 70
    train_dates, test = train.time_split(dates, 30)
    assert test == dates[-1]
    assert train_dates == dates[:3]  # d0+28 + 30 <= d0+70; d0+42 + 30 > d0+70
    with pytest.raises(train.TrainingError, match="at least 30 days before"):
        train.time_split(dates[-2:], 30)


def test_balanced_class_weights(spark):
    df = spark.createDataFrame([(1,)] * 10 + [(0,)] * 90, "y int")
    w = train.with_class_weights(df, "y", "balanced").groupBy("y").agg(F.sum("weight").alias("w"))
    sums = {r.y: r.w for r in w.collect()}
    assert sums[0] == pytest.approx(sums[1]) == pytest.approx(50.0)


@pytest.mark.parametrize("classifier", list(CLASSIFIER_PARAMS))
def test_each_classifier_fits_and_scores_with_its_threshold(spark, uc, classifier):
    params = CLASSIFIER_PARAMS[classifier]
    spec = uc.model.model_copy(
        update={"classifier": classifier, "params": params, "grid": {}, "categorical": ["plan"], "numeric": ["age", "minutes_30d"]}
    )
    rows = [(f"C{i}", date(2026, 4, 1), "basic" if i % 3 else "premium", 20 + i % 50,
             None if i % 7 == 0 else float(i % 40), int(i % 40 < 8))
            for i in range(400)]
    df = spark.createDataFrame(rows, "customer_id string, as_of_date date, plan string, age int, minutes_30d double, y int")
    pipe, _ = train.build_pipeline(spec, "y")
    model = pipe.fit(train.training_rows(df, "y", spec))
    model = train.set_threshold(model, 0.7)
    ref = tracking.ModelRef("m", "3", "run", "champion")
    out = score.score_batch(model, df, "customer_id", ref, "p_y")  # the column names come from the caller (conf)
    assert out.count() == df.count()
    assert out.columns == ["customer_id", "score_date", "p_y", "prediction", "model_name", "model_version",
                           "model_run_id", "model_alias", "scored_at"]
    assert out.where((F.col("prediction") == 1) != (F.col("p_y") >= 0.7)).count() == 0
    assert out.where(F.col("p_y").isNull()).count() == 0  # the imputer filled the gaps
    m = metrics.evaluate(out.join(df, "customer_id"), "y", "p_y", 0.7)
    assert m["roc_auc"] > 0.9  # the label is a function of minutes_30d
    names = [n for n, _ in train.feature_importances(model, model.transform(df))]
    assert "minutes_30d" in names[:2] or any(n.startswith("minutes_30d") for n in names[:2])


def test_xgboost_params_are_checked_by_name_and_early_stopping_validates_on_a_share(spark, uc):
    spec = uc.model.model_copy(update={"classifier": "xgboost", "params": {"n_estimator": 10}, "grid": {}})
    with pytest.raises(ConfigError, match=r"model\.params\.n_estimator: SparkXGBClassifier has no parameter 'n_estimator'"):
        train.check_model(spec, "y", "usecase.yaml")
    spec = uc.model.model_copy(update={"classifier": "xgboost", "params": {"early_stopping_rounds": 5}, "grid": {"max_depth": [2, 4]}})
    train.check_model(spec, "y", "usecase.yaml")
    _, clf = train.build_pipeline(spec, "y")
    assert clf.getOrDefault("validationIndicatorCol") == "_xgb_validation" and clf.getOrDefault("weightCol") == "weight"
    # all of a barrier stage's tasks run at once: the workers fit the cores, not spark.default.parallelism
    assert clf.getOrDefault("num_workers") == max(1, os.cpu_count() // spec.tuning.parallelism)
    # ... and no more than the training rows make MIN_ROWS_PER_WORKER each: small data is not split
    assert train.build_pipeline(spec, "y", rows=xgb.MIN_ROWS_PER_WORKER - 1)[1].getOrDefault("num_workers") == 1
    many = train.build_pipeline(spec, "y", rows=100 * xgb.MIN_ROWS_PER_WORKER)[1]
    assert many.getOrDefault("num_workers") == clf.getOrDefault("num_workers")
    rows = train.training_rows(spark.range(2000).select((F.col("id") % 5 == 0).cast("int").alias("y")), "y", spec)
    share = rows.where("_xgb_validation").count() / 2000
    assert 0.15 < share < 0.25
