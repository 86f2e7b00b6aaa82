"""Batch inference: the champion model over one snapshot of the feature table.

Scoring is ``PipelineModel.transform`` (engine ``native``), or the version's ONNX copy in
ONNX Runtime inside ``mapInArrow`` (engine ``onnx``), ``scoring.engine`` in the use case
file; the default ``auto`` takes the ONNX copy where the version has one (faster on the
benchmark) and ``transform`` otherwise. The same table either way. The predictions table
is partitioned by score_date; re-scoring a date atomically replaces that date's rows of the
same alias and leaves every other date alone, so history is kept and nothing duplicates;
the live performance measured on a re-scored date's earlier predictions is dropped, so the
monitor job measures it again.

Served rows: the column ``served`` marks, per score date, the one row each entity was
served (``WHERE served`` is the live batch). Without a canary these are the champion's rows;
while a canary runs (``scoring.canary``, ``lakeml.ml.canary.running``), scoring the
champion writes its rows for the entities outside the canary share and the challenger's
(``model_alias = 'challenger'``) for those inside, both served, in one commit. Rows of any
other alias (a challenger in shadow, ``previous`` while a promotion is watched) are shadows,
``served = false``. ``plan`` says which slices a write scores. A predictions table from before
this column gains it once (``ensure_served_column``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import date
from functools import reduce

from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakeml import features
from lakeml.core import tables, tracking
from lakeml.core.config import EnvConfig, UseCaseConfig
from lakeml.core.errors import MissingDataError
from lakeml.ml import canary, metrics, onnx_runtime, portable

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


SERVED = "served"  # the row is the prediction its entity was served on that date: one per entity and date


@dataclass(frozen=True)
class Slice:
    """What one part of a write scores: ``population`` is ``all`` the date's entities, or
    those ``outside`` / ``inside`` the canary share."""

    score_date: date
    alias: str
    version: str | None  # None: the version the alias names now
    population: str
    served: bool


def plan(todo: list[tuple[date, str, str | None]], canary_version: str | None, share: float,
         served_before: dict[date, dict[str, str]]) -> list[Slice]:
    """The slices a write of ``todo`` (dates resolved) must score so that every entity keeps
    exactly one served row per date. Pure.

    * A date is a canary date when it is scored live (an item for ``champion`` or
      ``challenger`` without a version) while a canary runs (``canary_version``), or when it
      is scored again with given versions (``jobs/pipeline.py``'s re-score of late rows) and
      its served rows (``served_before``: alias -> version) include the challenger's, with a
      share configured. Its champion rows cover the entities outside the share, its
      challenger rows those inside, both served: both slices are written together, whichever
      of them was asked for.
    * Any other date: ``champion`` rows are served and cover every entity; every other alias
      (a challenger in shadow, ``previous`` while a promotion is watched) is a shadow over
      every entity. A date whose served rows included a challenger's (a canary since ended,
      or a share since set to 0) gets its champion rows for every entity in the same write.
    """
    by_date: dict[date, dict[str, str | None]] = {}
    live: set[date] = set()
    for d, alias, version in todo:
        by_date.setdefault(d, {})[alias] = version
        if version is None and alias in (tracking.CHAMPION, tracking.CHALLENGER):
            live.add(d)
    out: list[Slice] = []
    for d, items in by_date.items():
        before = served_before.get(d, {})
        canary_v = None
        if d in live and canary_version is not None:
            canary_v = canary_version
        elif d not in live and share > 0 and tracking.CHALLENGER in before:
            canary_v = items.get(tracking.CHALLENGER) or before[tracking.CHALLENGER]
        if canary_v is not None:
            if tracking.CHAMPION in items:
                champion_v = items[tracking.CHAMPION]
            else:
                champion_v = None if d in live else before.get(tracking.CHAMPION)
            out += [Slice(d, tracking.CHAMPION, champion_v, "outside", True), Slice(d, tracking.CHALLENGER, canary_v, "inside", True)]
            out += [Slice(d, a, v, "all", False) for a, v in items.items() if a not in (tracking.CHAMPION, tracking.CHALLENGER)]
            continue
        out += [Slice(d, a, v, "all", a == tracking.CHAMPION) for a, v in items.items()]
        if tracking.CHAMPION not in items and any(a != tracking.CHAMPION for a in before):
            out.append(Slice(d, tracking.CHAMPION, before.get(tracking.CHAMPION), "all", True))
    return out


def served_before(spark: SparkSession, pt: str, dates: list[date]) -> dict[date, dict[str, str]]:
    """Per date, alias -> version of the rows served on it now."""
    if not tables.exists(spark, pt):
        return {}
    t = tables.read(spark, pt)
    if SERVED not in t.columns:
        return {}
    rows = (t.where(F.col("score_date").isin(dates) & F.col(SERVED))
            .select("score_date", "model_alias", "model_version").distinct().collect())
    out: dict[date, dict[str, str]] = {}
    for r in rows:
        out.setdefault(r.score_date, {})[r.model_alias] = r.model_version
    return out


def ensure_served_column(spark: SparkSession, pt: str) -> None:
    """A predictions table written before canaries existed gains the column ``served``, its
    rows ``served = (model_alias = 'champion')`` (what was served then): one commit that
    rewrites the table once, logged."""
    if not tables.exists(spark, pt):
        return
    t = tables.read(spark, pt)
    if SERVED in t.columns:
        return
    log.warning("schema change: %s gains the column %s (boolean); its existing rows get %s = (model_alias = '%s'), "
                "in one commit that rewrites the table", pt, SERVED, SERVED, tracking.CHAMPION)
    tables.overwrite(t.withColumn(SERVED, F.coalesce(F.col("model_alias") == tracking.CHAMPION, F.lit(False))), pt,
                     partition_by=["score_date"])


def run(spark: SparkSession, env: EnvConfig, uc: UseCaseConfig, score_date: date | None = None, alias: str = tracking.CHAMPION,
        version: str | None = None) -> dict:
    """Score ``score_date`` (default: the newest snapshot) with the model the alias names
    (or, with ``version``, that version, recorded under ``alias``: how a date whose features
    late rows changed is scored again by the model that scored it first). While a canary
    runs, the champion's live scoring also writes the challenger's rows for the canary share
    (``plan``)."""
    return run_many(spark, env, uc, [(score_date, alias, version)])[0]


def run_many(spark: SparkSession, env: EnvConfig, uc: UseCaseConfig, todo: list[tuple[date | None, str, str | None]]) -> list[dict]:
    """Score several ``(score_date, alias, version)`` (as ``run`` does one) in one write: each
    model loaded once, one commit for all of them. Each date's served rows stay one per
    entity (``plan``); one result per item of ``todo``."""
    t0 = time.perf_counter()
    client = tracking.configure(env)
    ftn = uc.table(uc.tables.features)
    ft = tables.read(spark, ftn, made_by=tables.FEATURES_JOB)
    newest = features.newest_snapshot(spark, uc) if any(d is None for d, _, _ in todo) else None
    todo = [(d or newest, alias, version) for d, alias, version in todo]
    dates = sorted({d for d, _, _ in todo})
    have = {r[0] for r in ft.where(F.col("as_of_date").isin(dates)).select("as_of_date").distinct().collect()}
    missing = [d for d in dates if d not in have]
    if missing:
        known = [str(r[0]) for r in ft.select("as_of_date").distinct().orderBy("as_of_date").collect()]
        raise MissingDataError(
            f"{ftn} has no rows for {', '.join(map(str, missing))}; it has {', '.join(known[-5:]) or 'none'} "
            f"(newest last). Compute that date with: jobs/features.py --as-of {missing[0]}"
        )
    pt = uc.table(uc.tables.predictions)
    share = uc.scoring.canary.share
    canary_ref = canary.running(client, uc)
    slices = plan(todo, canary_ref.version if canary_ref else None, share, served_before(spark, pt, dates))
    models = {}
    for s in slices:
        if (s.alias, s.version) not in models:
            models[(s.alias, s.version)] = load(client, uc, s.alias, s.version)
    loaded = time.perf_counter()

    def rows_of(s: Slice) -> DataFrame:
        rows = ft.where(F.col("as_of_date") == F.lit(s.score_date))
        if s.population == "all":
            return rows
        inside = canary.in_canary_col(uc.entity, share)
        return rows.where(inside if s.population == "inside" else ~inside)

    preds = reduce(DataFrame.unionByName, [
        score_batch(models[(s.alias, s.version)][0], rows_of(s), uc.entity, models[(s.alias, s.version)][1], uc.probability)
        .withColumn(SERVED, F.lit(s.served)) for s in slices
    ])
    by_alias: dict[str, set[date]] = {}
    for s in slices:
        by_alias.setdefault(s.alias, set()).add(s.score_date)
    predicate = tables.slices_predicate("model_alias", "score_date", by_alias)
    served_dates = {s.score_date for s in slices if s.served}
    ensure_served_column(spark, pt)
    if served_dates and tables.exists(spark, pt):  # every served row of these dates is replaced: one served row per entity
        predicate = f"({predicate}) OR (`{SERVED}` AND {tables.in_predicate('score_date', served_dates)})"
    tables.replace_where(preds.coalesce(max(1, spark.sparkContext.defaultParallelism)), pt, predicate, partition_by=["score_date"])
    perf = uc.table(uc.tables.performance_metrics)
    if tables.exists(spark, perf):  # measured on the earlier predictions of these dates: measure again
        # their rows replaced by none (a delete; core.tables has no delete verb)
        no_rows = tables.read(spark, perf).limit(0)
        tables.replace_where(no_rows, perf, tables.in_predicate("score_date", dates))
    written = tables.read(spark, pt).where(F.expr(tables.slices_predicate("model_alias", "score_date", by_alias)))
    n = {(r.score_date, r.model_alias): r["count"] for r in written.groupBy("score_date", "model_alias").count().collect()}
    for s in slices:
        model, ref, engine = models[(s.alias, s.version)]
        log.info("scored %d rows (%s%s) for %s with %s version %s (engine %s) into %s",
                 n.get((s.score_date, s.alias), 0), "served" if s.served else "shadow",
                 f", {s.population} the canary share {share}" if s.population != "all" else "",
                 s.score_date, ref.name, ref.version, engine, pt)
    seconds = {"model_load_seconds": round(loaded - t0, 2), "score_write_seconds": round(time.perf_counter() - loaded, 2)}
    out = []
    for d, alias, _ in todo:
        s = next(x for x in slices if x.score_date == d and x.alias == alias)
        _, ref, engine = models[(s.alias, s.version)]
        r = {"score_date": d, "rows": n.get((d, alias), 0), "model_version": ref.version, "model_run_id": ref.run_id, "table": pt,
             "engine": engine, "served": s.served, **seconds}
        canary_slice = next((x for x in slices if x.score_date == d and x.population == "inside"), None)
        if canary_slice is not None:
            cref = models[(canary_slice.alias, canary_slice.version)][1]
            r["canary"] = {"version": cref.version, "share": share, "rows": n.get((d, canary_slice.alias), 0)}
        out.append(r)
    return out
