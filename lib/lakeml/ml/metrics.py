"""Binary classification metrics computed in Spark, never by collecting the scored rows.

Curves (ROC, PR, F1 by threshold) come from a histogram of the predicted probability
(``bins`` buckets), which is small whatever the data size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F


@dataclass
class Curves:
    thresholds: np.ndarray  # lower edge of each bin, descending
    tpr: np.ndarray
    fpr: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray


def positive_probability(prob_col: str = "probability") -> Column:
    """P(label = 1) from MLlib's probability vector, without a Python UDF."""
    from pyspark.ml.functions import vector_to_array

    return vector_to_array(F.col(prob_col))[1]


def histogram(df: DataFrame, label: str, p: str, bins: int = 1000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bin index, positives, negatives) per probability bin, from a Spark aggregation."""
    b = F.least(F.floor(F.col(p) * bins), F.lit(bins - 1)).cast("int")
    rows = (
        df.groupBy(b.alias("b"))
        .agg(F.sum(F.col(label)).alias("pos"), F.sum(1 - F.col(label)).alias("neg"))
        .collect()
    )
    pos = np.zeros(bins)
    neg = np.zeros(bins)
    for r in rows:
        pos[r.b] = r.pos
        neg[r.b] = r.neg
    return np.arange(bins), pos, neg


def curves(df: DataFrame, label: str, p: str, bins: int = 1000) -> Curves:
    idx, pos, neg = histogram(df, label, p, bins)
    # predict positive when p >= threshold; walk thresholds from high to low
    tp = np.cumsum(pos[::-1])
    fp = np.cumsum(neg[::-1])
    P, N = max(pos.sum(), 1e-12), max(neg.sum(), 1e-12)
    tpr, fpr = tp / P, fp / N
    precision = np.divide(tp, tp + fp, out=np.ones_like(tp), where=(tp + fp) > 0)
    recall = tpr
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=(precision + recall) > 0)
    return Curves(idx[::-1] / bins, tpr, fpr, precision, recall, f1)


def best_f1_threshold(c: Curves) -> float:
    return float(c.thresholds[int(np.argmax(c.f1))])


def evaluate(df: DataFrame, label: str, p: str, threshold: float) -> dict[str, float]:
    """ROC AUC, PR AUC, log loss, precision/recall/F1 at ``threshold``, top-decile lift."""
    df = df.select(F.col(label).cast("double").alias("y"), F.col(p).cast("double").alias("p")).persist()
    try:
        ev = BinaryClassificationEvaluator(rawPredictionCol="p", labelCol="y")
        roc = ev.setMetricName("areaUnderROC").evaluate(df)
        pr = ev.setMetricName("areaUnderPR").evaluate(df)
        eps = 1e-15
        pc = F.least(F.greatest(F.col("p"), F.lit(eps)), F.lit(1 - eps))
        hit = (F.col("p") >= threshold).cast("double")
        agg = df.agg(
            F.count(F.lit(1)).alias("n"),
            F.sum("y").alias("pos"),
            F.avg(-(F.col("y") * F.log(pc) + (1 - F.col("y")) * F.log(1 - pc))).alias("log_loss"),
            F.sum(hit * F.col("y")).alias("tp"),
            F.sum(hit * (1 - F.col("y"))).alias("fp"),
        ).first()
        q = df.approxQuantile("p", [0.9], 1e-4)[0]
        top = df.where(F.col("p") >= q).agg(F.avg("y").alias("rate")).first().rate or 0.0
    finally:
        df.unpersist()
    base = agg.pos / agg.n if agg.n else 0.0
    tp, fp, fn = agg.tp, agg.fp, agg.pos - agg.tp
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "roc_auc": roc,
        "pr_auc": pr,
        "log_loss": float(agg.log_loss),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "lift_top_decile": (top / base) if base else 0.0,
        "positive_rate": base,
        "rows": float(agg.n),
    }
