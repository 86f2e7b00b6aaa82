"""Metrics computed in Spark agree with scikit-learn on the same data."""

import numpy as np
import pytest
from sklearn.metrics import f1_score, log_loss, precision_score, recall_score, roc_auc_score

from lakeml.ml import metrics


@pytest.fixture(scope="module")
def scored(spark):
    rng = np.random.default_rng(3)
    y = (rng.random(4000) < 0.1).astype(int)
    p = np.clip(0.1 + 0.35 * y + rng.normal(0, 0.18, len(y)), 0.001, 0.999).round(6)
    df = spark.createDataFrame([(int(a), float(b)) for a, b in zip(y, p, strict=True)], "y int, p double")
    return df, y, p


def test_evaluate_matches_sklearn(scored):
    df, y, p = scored
    m = metrics.evaluate(df, "y", "p", threshold=0.3)
    hat = (p >= 0.3).astype(int)
    # the evaluator down-samples the curve to 1000 bins: exact to ~1e-5
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-4)
    assert m["log_loss"] == pytest.approx(log_loss(y, p), rel=1e-9)
    assert m["f1"] == pytest.approx(f1_score(y, hat))
    assert m["precision"] == pytest.approx(precision_score(y, hat))
    assert m["recall"] == pytest.approx(recall_score(y, hat))
    top = p >= np.quantile(p, 0.9)
    assert m["lift_top_decile"] == pytest.approx(y[top].mean() / y.mean(), rel=0.02)
    assert m["rows"] == len(y) and m["positive_rate"] == pytest.approx(y.mean())


def test_curves_from_the_histogram(scored):
    df, y, p = scored
    c = metrics.curves(df, "y", "p", bins=1000)
    # trapezoid area under the binned ROC is the AUC up to the binning
    assert np.trapezoid(c.tpr, c.fpr) == pytest.approx(roc_auc_score(y, p), abs=2e-3)
    t = metrics.best_f1_threshold(c)
    best = max(f1_score(y, (p >= s).astype(int)) for s in np.arange(0.0, 1.0, 0.001))
    assert f1_score(y, (p >= t).astype(int)) == pytest.approx(best, abs=1e-9)
