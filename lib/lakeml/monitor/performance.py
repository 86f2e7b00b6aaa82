"""Live performance (``run_performance``) joins every scored date with its labels once they
are observed (``labels.as_of_date = predictions.score_date``) and computes, per score
date, model version and alias: ROC AUC (exact Mann-Whitney statistic, ties counted one
half, from per-probability counts aggregated in Spark), precision and lift in the top
decile (probability >= the 90th percentile), base rate, Brier score and calibration:
``calibration_bins`` equal-width probability bins, their mean prediction and observed
rate (JSON), and ECE = sum_b n_b / n * |mean_p_b - rate_b|.
"""

from __future__ import annotations

import json
import logging

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lakeml.core import tables, tracking
from lakeml.core.config import EnvConfig, UseCaseConfig

log = logging.getLogger(__name__)

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
            .agg(F.count(F.lit(1)).alias("n"), F.sum("y").alias("pos"), F.sum("p").alias("sp"), F.sum((F.col("p") - F.col("y")) ** 2).alias("se"))
            .collect()
        )
        # exact ROC AUC (Mann-Whitney): for each distinct probability, the negatives strictly
        # below it plus half the tied ones, weighted by its positives
        g = df.groupBy(*keys, "p").agg(F.sum("y").alias("pos"), F.sum(1 - F.col("y")).alias("neg"))
        w = Window.partitionBy(*keys).orderBy("p").rowsBetween(Window.unboundedPreceding, -1)
        g = g.withColumn("below", F.coalesce(F.sum("neg").over(w), F.lit(0.0)))
        auc = {tuple(r[k] for k in keys): r["u"] for r in g.groupBy(*keys).agg(F.sum(F.col("pos") * (F.col("below") + 0.5 * F.col("neg"))).alias("u")).collect()}
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
            {"bin": r["bin"], "lo": r["bin"] / B, "hi": (r["bin"] + 1) / B, "n": r["n"], "mean_predicted": r["sp"] / r["n"], "observed": r["pos"] / r["n"]}
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


def _dates(spark: SparkSession, name: str, column: str) -> set:
    """The distinct values of a (partition) column of a table; none when it does not exist."""
    if not tables.exists(spark, name):
        return set()
    return {r[0] for r in spark.table(name).select(column).distinct().collect()}


def run_performance(spark: SparkSession, env: EnvConfig, uc: UseCaseConfig) -> dict:
    """Live metrics of every score date whose labels are observed and that has none yet,
    into ``<db>.performance_metrics``. Only those dates are read (the predictions and labels
    tables are partitioned by date), so a day costs its new dates, not the history; a date
    scored again loses its rows (``lakeml.ml.score``) and is measured again."""
    pt = uc.table(uc.tables.performance_metrics)
    tables.read(spark, uc.table(uc.tables.predictions), made_by=tables.SCORE_JOB)
    tables.read(spark, uc.table(uc.tables.labels), made_by=tables.FEATURES_JOB)
    entity, label, p1 = uc.entity, uc.label.column, uc.probability
    candidates = sorted(_dates(spark, uc.table(uc.tables.predictions), "score_date") - _dates(spark, pt, "score_date"))
    labels = spark.table(uc.table(uc.tables.labels)).where(F.col("as_of_date").isin(candidates) & F.col(label).isNotNull())
    todo = sorted(r[0] for r in labels.select("as_of_date").distinct().collect()) if candidates else []
    rows = []
    if todo:
        preds = spark.table(uc.table(uc.tables.predictions)).where(F.col("score_date").isin(todo))
        keys = ["score_date", "model_name", "model_version"] + (["model_alias"] if "model_alias" in preds.columns else [])
        joined = preds.select(entity, *keys, p1).join(
            labels.where(F.col("as_of_date").isin(todo)).select(entity, F.col("as_of_date").alias("score_date"), F.col(label).alias("y")),
            [entity, "score_date"],
        )
        rows = performance(joined, keys, p1, "y", uc.monitoring.calibration_bins)
    tables.ensure_database(spark, uc.database)
    if rows:
        data = [tuple(r.get(f.name) for f in PERF_SCHEMA.fields) for r in rows]
        df = spark.createDataFrame(data, PERF_SCHEMA).withColumn("computed_at", F.current_timestamp())
        tables.replace_where(df.coalesce(1), pt, tables.in_predicate("score_date", todo))
        log.info("live performance for %d new score dates (%s .. %s) into %s", len(todo), todo[0], todo[-1], pt)
    elif not tables.exists(spark, pt):
        # created empty, so the table is there to query before ground truth arrives
        empty = spark.createDataFrame([], PERF_SCHEMA).withColumn("computed_at", F.current_timestamp())
        empty.write.format("delta").saveAsTable(pt)
    else:
        log.info("no new score date with observed labels; %s unchanged", pt)
    # the newest date, the champion's row when several aliases were scored
    newest = spark.table(pt).orderBy(F.col("score_date").desc(), (F.coalesce(F.col("model_alias"), F.lit(tracking.CHAMPION)) == tracking.CHAMPION).desc()).first()
    return {
        "score_dates": sorted(_dates(spark, pt, "score_date")),
        "computed": todo,
        "table": pt,
        "latest": None if newest is None else {k: newest[k] for k in ("score_date", "model_version", "n", "base_rate", "roc_auc", "precision_top_decile", "ece")},
    }
