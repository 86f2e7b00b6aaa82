"""``classifier: xgboost``: XGBoost's own distributed PySpark estimator
(``xgboost.spark.SparkXGBClassifier``) as the last stage of the same MLlib pipeline.

The imputer, indexers and assembler stay; XGBoost trains across ``num_workers`` Spark tasks
(barrier mode; by default every core the session has, divided by the tuning's
``parallelism``, and at most one per ``MIN_ROWS_PER_WORKER`` training rows), with the
class weights as ``weight_col``. ``early_stopping_rounds`` in ``model.params`` stops on
a validation share of the training rows (``VALIDATION_SHARE``, a seeded random fifth).
The fitted pipeline gets one more stage, :class:`PositiveThreshold`, so that
``prediction`` is 1 exactly when P(1) >= the chosen threshold, as with the MLlib
classifiers; it saves and loads with the pipeline (Python
stages persist through pyspark's own pipeline writer, and MLflow's Spark flavour uses it).

For ONNX, :func:`trees` reads the booster's JSON model into the tree lists that
``lakeml.ml.onnx_export`` turns into one TreeEnsemble: XGBoost compares float32 values
(``x < split``), so the export casts the features to float32 first and keeps every split
exactly; leaves add up in float64, which differs from XGBoost's float32 sums by ~1e-7.
"""

from __future__ import annotations

import json
import logging
import math

from pyspark import keyword_only
from pyspark.ml import Transformer
from pyspark.ml.functions import vector_to_array
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lakeml.core.errors import first_line

log = logging.getLogger(__name__)

NAME = "xgboost"
VALIDATION_COL = "_xgb_validation"
VALIDATION_SHARE = 0.2
# fewer training rows than this per worker and the data is not split further: a worker's
# histograms and its share of the early-stopping rows get too small to be steady (on the
# tests' 1 500 demo entities two workers gave a test ROC AUC of 0.67, one 0.73), and a barrier
# stage's start costs more than the split saves
MIN_ROWS_PER_WORKER = 50_000


def estimator_class():
    from xgboost.spark import SparkXGBClassifier  # imported when asked for: the MLlib classifiers do not need it

    return SparkXGBClassifier


def estimator(label: str, seed: int, num_workers: int | None = None):
    """The unfitted classifier on ``features`` / ``label`` / ``weight``."""
    clf = estimator_class()(features_col="features", label_col=label, weight_col="weight", random_state=seed)
    if num_workers is not None:
        clf.set(clf.getParam("num_workers"), num_workers)
    return clf


def task_slots(spark) -> int:
    """Tasks the session can run at once now (local: its cores; a cluster: the registered
    executors' cores); at least 1."""
    jsc = spark.sparkContext._jsc.sc()
    try:
        return max(1, int(jsc.maxNumConcurrentTasks(jsc.resourceProfileManager().defaultResourceProfile())))
    except Exception as e:  # noqa: BLE001 - an internal Spark API (py4j's error types vary): one worker always fits
        log.warning("cannot ask Spark how many tasks it runs at once (%s: %s): XGBoost falls back to one worker",
                    type(e).__name__, first_line(e))
        return 1


def early_stopping(clf) -> bool:
    return clf.isDefined("early_stopping_rounds") and clf.getOrDefault("early_stopping_rounds") is not None


def with_validation(df: DataFrame, seed: int) -> DataFrame:
    """The training rows, a seeded ``VALIDATION_SHARE`` of them marked for early stopping."""
    return df.withColumn(VALIDATION_COL, F.rand(seed) < F.lit(VALIDATION_SHARE))


class PositiveThreshold(Transformer, DefaultParamsReadable, DefaultParamsWritable):
    """``prediction`` = 1.0 when P(1), the second slot of ``probability``, is >= ``threshold``."""

    threshold = Param(Params._dummy(), "threshold", "predict 1 when P(1) >= threshold", typeConverter=TypeConverters.toFloat)

    @keyword_only
    def __init__(self, threshold: float = 0.5):
        super().__init__()
        self._setDefault(threshold=0.5)
        self._set(**self._input_kwargs)

    def _transform(self, df: DataFrame) -> DataFrame:
        p1 = vector_to_array(F.col("probability"))[1]
        return df.withColumn("prediction", (p1 >= F.lit(self.getOrDefault("threshold"))).cast("double"))


def classifier_stage(model):
    """The fitted XGBoost model of a pipeline (the stage before ``PositiveThreshold``), or None."""
    return next((st for st in reversed(model.stages) if type(st).__name__ == "SparkXGBClassifierModel"), None)


def trees_used(clf) -> int:
    """How many boosting rounds the fitted model predicts with (to its best iteration after
    early stopping)."""
    booster = clf.get_booster()
    best = booster.attr("best_iteration")
    return int(best) + 1 if best is not None else int(booster.num_boosted_rounds())


def importances(clf, n: int) -> list[float]:
    """Total gain per feature slot (0 for a slot no tree splits on)."""
    score = clf.get_booster().get_score(importance_type="total_gain")
    return [float(score.get(f"f{i}", 0.0)) for i in range(n)]


def _tree(t: dict) -> dict:
    """One tree of the booster's JSON model as the flat lists of onnx_export._tree_ensemble:
    interior nodes (x < split goes to ``true``; a missing value follows ``default_left``) and
    leaf values."""
    left, right = t["left_children"], t["right_children"]
    split_idx, cond, default_left = t["split_indices"], t["split_conditions"], t["default_left"]
    nodes, leaves = [], []

    def visit(i: int) -> tuple[int, int]:
        if left[i] == -1:
            leaves.append(float(cond[i]))  # a leaf's split_condition is its value
            return 1, len(leaves) - 1
        rec = {"feature": int(split_idx[i]), "mode": 1, "split": float(_f32(cond[i])), "missing_true": int(bool(default_left[i]))}
        k = len(nodes)
        nodes.append(rec)
        rec["true"] = visit(left[i])
        rec["false"] = visit(right[i])
        return 0, k

    root = visit(0)
    if root[0]:
        nodes.append({"feature": 0, "mode": 1, "split": 0.0, "missing_true": 1, "true": root, "false": root})
    return {"nodes": nodes, "leaves": leaves}


def _f32(v: float) -> float:
    import numpy as np

    return float(np.float32(v))


def trees(clf) -> tuple[list[dict], float]:
    """The trees XGBoost predicts with (up to the best iteration after early stopping) and
    the base margin: P(1) = sigmoid(base_margin + sum of leaves)."""
    booster = clf.get_booster()
    model = json.loads(booster.save_raw("json"))["learner"]
    objective = model["objective"]["name"]
    if objective != "binary:logistic":
        raise ValueError(f"only binary:logistic XGBoost models are exported (this one: {objective})")
    raw = model["learner_model_param"]["base_score"]
    base = float(json.loads(raw)[0]) if raw.strip().startswith("[") else float(raw)
    gb = model["gradient_booster"]
    if gb["name"] != "gbtree":
        raise ValueError(f"only gbtree boosters are exported (this one: {gb['name']})")
    all_trees = gb["model"]["trees"]
    per_round = max(1, int(gb["model"]["gbtree_model_param"].get("num_parallel_tree", 1)))
    best = booster.attr("best_iteration")
    used = all_trees if best is None else all_trees[: (int(best) + 1) * per_round]
    margin = math.log(base / (1.0 - base))  # base_score is a probability for binary:logistic
    return [_tree(t) for t in used], margin
