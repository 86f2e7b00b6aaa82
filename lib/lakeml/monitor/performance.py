"""Live performance statistics in Spark: for scored rows joined with their observed labels
(the monitor job, ``lakeml.monitor.job.run_performance``, joins ``labels.as_of_date =
predictions.score_date``), ``performance`` computes per group (score date, model version
and alias): ROC AUC (exact Mann-Whitney statistic, ties counted one half, from
per-probability counts aggregated in Spark), precision and lift in the top decile
(probability >= the 90th percentile), base rate, Brier score and calibration:
``calibration_bins`` equal-width probability bins, their mean prediction and observed rate
(JSON), and ECE = sum_b n_b / n * |mean_p_b - rate_b|. ``PERF_SCHEMA``: the columns of
``<db>.performance_metrics`` (the job adds ``computed_at``).
"""

from __future__ import annotations

import json

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

PERF_SCHEMA = T.StructType(
    [
        T.StructField("score_date", T.DateType(), False),
        T.StructField("model_name", T.StringType(), True),
        T.StructField("model_version", T.StringType(), True),
        T.StructField("model_alias", T.StringType(), True),
        T.StructField("n", T.LongType(), False),
        T.StructField("positives", T.LongType(), False),
        T.StructField("base_rate", T.DoubleType(), True),
        T.StructField("roc_auc", T.DoubleType(), True),
        T.StructField("precision_top_decile", T.DoubleType(), True),
        T.StructField("lift_top_decile", T.DoubleType(), True),
        T.StructField("brier", T.DoubleType(), True),
        T.StructField("ece", T.DoubleType(), True),
        T.StructField("calibration", T.StringType(), True),
    ]
)


def performance(df: DataFrame, keys: list[str], p: str = "p", y: str = "y", calibration_bins: int = 10) -> list[dict]:
    """Per group of ``keys``: n, positives, base_rate, roc_auc, precision/lift in the top
    decile, brier, ece and calibration (JSON), for labelled rows ``(keys, p, y)``.

    Aggregated in Spark; only per-group (and per-group-and-bin) rows reach the driver."""
    df = df.select(*keys, F.col(p).cast("double").alias("p"), F.col(y).cast("double").alias("y")).persist()
    try:
        B = calibration_bins
        b = F.least(F.floor(F.col("p") * B), F.lit(B - 1)).cast("int")
        cal = (
            df.groupBy(*keys, b.alias("bin"))
            .agg(
                F.count(F.lit(1)).alias("n"),
                F.sum("y").alias("pos"),
                F.sum("p").alias("sp"),
                F.sum((F.col("p") - F.col("y")) ** 2).alias("se"),
            )
            .collect()
        )
        # exact ROC AUC (Mann-Whitney): for each distinct probability, the negatives strictly
        # below it plus half the tied ones, weighted by its positives
        g = df.groupBy(*keys, "p").agg(F.sum("y").alias("pos"), F.sum(1 - F.col("y")).alias("neg"))
        w = Window.partitionBy(*keys).orderBy("p").rowsBetween(Window.unboundedPreceding, -1)
        g = g.withColumn("below", F.coalesce(F.sum("neg").over(w), F.lit(0.0)))
        u = g.groupBy(*keys).agg(F.sum(F.col("pos") * (F.col("below") + 0.5 * F.col("neg"))).alias("u"))
        auc = {tuple(r[k] for k in keys): r["u"] for r in u.collect()}
        # top decile: probability >= the group's 90th percentile (as lakeml.metrics.evaluate)
        q = df.groupBy(*keys).agg(F.percentile_approx("p", 0.9, 10000).alias("q90"))
        q = q.select(*[F.col(k).alias(f"_q_{k}") for k in keys], "q90")
        cond = [F.col(k).eqNullSafe(F.col(f"_q_{k}")) for k in keys]
        top_rows = df.join(F.broadcast(q), cond).where(F.col("p") >= F.col("q90")).groupBy(*keys).agg(F.avg("y").alias("rate")).collect()
        top = {tuple(r[k] for k in keys): r["rate"] for r in top_rows}
    finally:
        df.unpersist()
    groups: dict[tuple, list] = {}
    for r in cal:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    out = []
    for key, bins in sorted(groups.items(), key=lambda kv: tuple(str(v) for v in kv[0])):
        n = sum(r["n"] for r in bins)
        pos = sum(r["pos"] for r in bins)
        neg = n - pos
        base = pos / n if n else None
        ece = sum(abs(r["sp"] / r["n"] - r["pos"] / r["n"]) * r["n"] for r in bins) / n if n else None
        curve = [
            {"bin": r["bin"], "lo": r["bin"] / B, "hi": (r["bin"] + 1) / B, "n": r["n"],
             "mean_predicted": r["sp"] / r["n"], "observed": r["pos"] / r["n"]}
            for r in sorted(bins, key=lambda r: r["bin"])
        ]
        prec = top.get(key)
        out.append(
            {
                **dict(zip(keys, key, strict=True)),
                "n": int(n),
                "positives": int(pos),
                "base_rate": base,
                "roc_auc": (auc[key] / (pos * neg)) if pos and neg else None,
                "precision_top_decile": prec,
                "lift_top_decile": (prec / base) if prec is not None and base else None,
                "brier": sum(r["se"] for r in bins) / n if n else None,
                "ece": ece,
                "calibration": json.dumps(curve),
            }
        )
    return out
