"""Batch inference: the champion model over one snapshot of the feature table.

Scoring is ``PipelineModel.transform`` (JVM, no Python UDF). The predictions table is
partitioned by score_date; re-scoring a date atomically replaces that date's rows of the
same alias and leaves every other date alone, so history is kept and nothing duplicates.
"""

from __future__ import annotations

import logging
import time
from datetime import date

from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakeml import features
from lakeml.core import tables, tracking
from lakeml.core.config import EnvConfig, UseCaseConfig
from lakeml.core.errors import MissingDataError
from lakeml.ml import metrics

log = logging.getLogger(__name__)


def score_batch(model: PipelineModel, rows: DataFrame, entity: str, ref: tracking.ModelRef, probability: str) -> DataFrame:
    """Predictions for feature rows: one output row per input row, P(label = 1) in the
    column ``probability``. Pure."""
    return model.transform(rows).select(
        F.col(entity),
        F.col("as_of_date").alias("score_date"),
        metrics.positive_probability().alias(probability),
        F.col("prediction").cast("int").alias("prediction"),
        F.lit(ref.name).alias("model_name"),
        F.lit(ref.version).alias("model_version"),
        F.lit(ref.run_id).alias("model_run_id"),
        F.lit(ref.alias).alias("model_alias"),
        F.current_timestamp().alias("scored_at"),
    )


def run(spark: SparkSession, env: EnvConfig, uc: UseCaseConfig, score_date: date | None = None, alias: str = tracking.CHAMPION,
        version: str | None = None) -> dict:
    """Score ``score_date`` (default: the newest snapshot) with the model the alias names
    (or, with ``version``, that version, recorded under ``alias``: how a date whose features
    late rows changed is scored again by the model that scored it first)."""
    t0 = time.perf_counter()
    client = tracking.configure(env)
    if version is None:
        model, ref = tracking.load_spark_model(client, uc.model.name, alias)
    else:
        model, ref = tracking.load_spark_model_version(client, uc.model.name, version, alias)
    loaded = time.perf_counter()
    d = score_date or features.newest_snapshot(spark, uc)
    ft = tables.read(spark, uc.table(uc.tables.features), made_by=tables.FEATURES_JOB)
    rows = ft.where(F.col("as_of_date") == F.lit(d))
    if rows.isEmpty():
        have = [str(r[0]) for r in ft.select("as_of_date").distinct().orderBy("as_of_date").collect()]
        raise MissingDataError(
            f"{uc.table(uc.tables.features)} has no rows for {d}; it has {', '.join(have[-5:]) or 'none'} "
            f"(newest last). Compute that date with: jobs/features.py --as-of {d}"
        )
    preds = score_batch(model, rows, uc.entity, ref, uc.probability)
    pt = uc.table(uc.tables.predictions)
    tables.replace_where(
        preds.coalesce(max(1, spark.sparkContext.defaultParallelism)),
        pt,
        f"score_date = {tables.sql_literal(d)} AND model_alias = {tables.sql_literal(alias)}",
        partition_by=["score_date"],
    )
    perf = uc.table(uc.tables.performance_metrics)
    if tables.exists(spark, perf):  # measured on the earlier predictions of this date: measure again
        spark.sql(f"DELETE FROM {perf} WHERE score_date = {tables.sql_literal(d)}")
    n = spark.table(pt).where((F.col("score_date") == F.lit(d)) & (F.col("model_alias") == alias)).count()
    log.info("scored %d rows (one per %s) for %s with %s version %s into %s", n, uc.entity, d, ref.name, ref.version, pt)
    return {"score_date": d, "rows": n, "model_version": ref.version, "model_run_id": ref.run_id, "table": pt,
            "model_load_seconds": round(loaded - t0, 2), "score_write_seconds": round(time.perf_counter() - loaded, 2)}
