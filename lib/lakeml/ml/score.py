"""Batch inference: the champion model over one snapshot of the feature table.

Scoring is ``PipelineModel.transform`` (engine ``native``), or the version's ONNX copy in
ONNX Runtime inside ``mapInArrow`` (engine ``onnx``), ``scoring.engine`` in the use case
file; the default ``auto`` takes the ONNX copy where the version has one (faster on the
benchmark) and ``transform`` otherwise. The same table either way. The predictions table
is partitioned by score_date; re-scoring a date atomically replaces that date's rows of the
same alias and leaves every other date alone, so history is kept and nothing duplicates;
the live performance measured on a re-scored date's earlier predictions is dropped, so the
monitor job measures it again.
"""

from __future__ import annotations

import logging
import time
from datetime import date
from functools import reduce

from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakeml import features
from lakeml.core import tables, tracking
from lakeml.core.config import EnvConfig, UseCaseConfig
from lakeml.core.errors import MissingDataError
from lakeml.ml import metrics, onnx_runtime, portable

log = logging.getLogger(__name__)


def score_batch(model: PipelineModel | bytes, rows: DataFrame, entity: str, ref: tracking.ModelRef, probability: str) -> DataFrame:
    """Predictions for feature rows: one output row per input row, P(label = 1) in the
    column ``probability``. ``model``: the Spark pipeline, or the bytes of its ONNX copy
    (scored in ONNX Runtime on the executors). Pure."""
    if isinstance(model, bytes):
        scored = onnx_runtime.score_frame(rows, model, [entity, "as_of_date"], probability)
    else:
        scored = model.transform(rows).select(
            entity, "as_of_date", metrics.positive_probability().alias(probability), F.col("prediction").cast("int").alias("prediction"))
    return scored.select(
        F.col(entity),
        F.col("as_of_date").alias("score_date"),
        F.col(probability),
        F.col("prediction"),
        F.lit(ref.name).alias("model_name"),
        F.lit(ref.version).alias("model_version"),
        F.lit(ref.run_id).alias("model_run_id"),
        F.lit(ref.alias).alias("model_alias"),
        F.current_timestamp().alias("scored_at"),
    )


_ONNX: dict[tuple, bytes] = {}  # a registered version never changes: its ONNX copy is fetched once per process


def onnx_missing(client, ref: tracking.ModelRef) -> str | None:
    """Why version ``ref`` has no ONNX copy, or None when it has one."""
    tags = client.get_model_version(ref.name, ref.version).tags
    if "onnx" in tags.get(portable.FORMATS_TAG, "").split(","):
        return None
    return tags.get("portable_onnx_missing", "it was trained before ONNX copies were made, or with export.onnx: false")


def onnx_model(client, ref: tracking.ModelRef, uc: UseCaseConfig) -> bytes:
    """The bytes of the ONNX copy logged with version ``ref`` (scoring.engine: onnx), or an
    error saying why there is none and what to do."""
    key = (tracking.mlflow.get_registry_uri(), ref.name, ref.version, ref.run_id)
    if key not in _ONNX:
        why = onnx_missing(client, ref)
        if why is not None:
            raise MissingDataError(
                f"scoring.engine is onnx ({uc.source_file}) but {ref.name} version {ref.version} has no ONNX copy: {why}. "
                "Score it with scoring.engine: native (or auto), or train a version whose pipeline converts"
            )
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            _ONNX[key] = portable.download(ref.run_id, portable.ONNX_ARTIFACT, d).read_bytes()
    return _ONNX[key]


def load(client, uc: UseCaseConfig, alias: str, version: str | None = None) -> tuple[PipelineModel | bytes, tracking.ModelRef, str]:
    """(model, ref, engine) for the version ``alias`` names (or ``version``, reported under
    ``alias``), in the form ``scoring.engine`` asks for: the Spark pipeline (``native``) or
    the bytes of its ONNX copy (``onnx``); ``auto`` takes the ONNX copy where there is one."""
    engine = uc.scoring.engine
    if engine != "native":
        if version is None:
            ref = tracking.get_alias(client, uc.model.name, alias)
        else:
            ref = tracking.version_ref(client, uc.model.name, version, alias)
        if ref is None:
            tracking.load_spark_model(client, uc.model.name, alias)  # raises the error that says how to get one
        why = onnx_missing(client, ref)
        if why is None or engine == "onnx":
            return onnx_model(client, ref, uc), ref, "onnx"
        log.warning("%s version %s has no ONNX copy (%s): scoring it with the Spark pipeline", ref.name, ref.version, why)
    if version is None:
        model, ref = tracking.load_spark_model(client, uc.model.name, alias)
    else:
        model, ref = tracking.load_spark_model_version(client, uc.model.name, version, alias)
    return model, ref, "native"


def run(spark: SparkSession, env: EnvConfig, uc: UseCaseConfig, score_date: date | None = None, alias: str = tracking.CHAMPION,
        version: str | None = None) -> dict:
    """Score ``score_date`` (default: the newest snapshot) with the model the alias names
    (or, with ``version``, that version, recorded under ``alias``: how a date whose features
    late rows changed is scored again by the model that scored it first)."""
    return run_many(spark, env, uc, [(score_date, alias, version)])[0]


def run_many(spark: SparkSession, env: EnvConfig, uc: UseCaseConfig, todo: list[tuple[date | None, str, str | None]]) -> list[dict]:
    """Score several ``(score_date, alias, version)`` (as ``run`` does one) in one write: each
    model loaded once, one commit for all of them."""
    t0 = time.perf_counter()
    client = tracking.configure(env)
    refs = [(d, *load(client, uc, alias, version)) for d, alias, version in todo]  # (date, model, ref, engine)
    loaded = time.perf_counter()
    ftn = uc.table(uc.tables.features)
    ft = tables.read(spark, ftn, made_by=tables.FEATURES_JOB)
    newest = None
    if any(d is None for d, *_ in refs):
        newest = features.newest_snapshot(spark, uc)
    refs = [(d or newest, *rest) for d, *rest in refs]
    dates = sorted({d for d, *_ in refs})
    have = {r[0] for r in ft.where(F.col("as_of_date").isin(dates)).select("as_of_date").distinct().collect()}
    missing = [d for d in dates if d not in have]
    if missing:
        known = [str(r[0]) for r in ft.select("as_of_date").distinct().orderBy("as_of_date").collect()]
        raise MissingDataError(
            f"{ftn} has no rows for {', '.join(map(str, missing))}; it has {', '.join(known[-5:]) or 'none'} "
            f"(newest last). Compute that date with: jobs/features.py --as-of {missing[0]}"
        )
    preds = reduce(DataFrame.unionByName, [
        score_batch(model, ft.where(F.col("as_of_date") == F.lit(d)), uc.entity, ref, uc.probability) for d, model, ref, _ in refs
    ])
    pt = uc.table(uc.tables.predictions)
    slices: dict[str, set[date]] = {}
    for d, _, ref, _ in refs:
        slices.setdefault(ref.alias, set()).add(d)
    tables.replace_where(
        preds.coalesce(max(1, spark.sparkContext.defaultParallelism)),
        pt,
        tables.slices_predicate("model_alias", "score_date", slices),
        partition_by=["score_date"],
    )
    perf = uc.table(uc.tables.performance_metrics)
    if tables.exists(spark, perf):  # measured on the earlier predictions of these dates: measure again
        # their rows replaced by none (a delete; core.tables has no delete verb)
        no_rows = tables.read(spark, perf).limit(0)
        tables.replace_where(no_rows, perf, tables.in_predicate("score_date", dates))
    written = tables.read(spark, pt).where(F.expr(tables.slices_predicate("model_alias", "score_date", slices)))
    n = {(r.score_date, r.model_alias): r["count"] for r in written.groupBy("score_date", "model_alias").count().collect()}
    out = []
    for d, _, ref, engine in refs:
        rows = n.get((d, ref.alias), 0)
        log.info("scored %d rows (one per %s) for %s with %s version %s (engine %s) into %s",
                 rows, uc.entity, d, ref.name, ref.version, engine, pt)
        out.append({"score_date": d, "rows": rows, "model_version": ref.version, "model_run_id": ref.run_id, "table": pt, "engine": engine,
                    "model_load_seconds": round(loaded - t0, 2), "score_write_seconds": round(time.perf_counter() - loaded, 2)})
    return out
