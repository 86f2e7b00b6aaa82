"""Point-in-time features and labels from the use case's Spark SQL files.

The SQL sees, as temporary views:

- one view per source, named as the source, holding the latest row per key of its
  bronze table (a key re-sent in a later batch replaces the earlier one), and
  ``<source>_history`` with every version of every row and its ``_batch_date`` (arrival),
  for attributes that change: take the newest version with ``_batch_date <= as_of_date``;
- ``snapshots(as_of_date)``: the as-of dates being computed;
- ``population(<entity>, as_of_date)``: who is scored at each date (population SQL).

Feature SQL must use only events strictly before ``as_of_date``; the label SQL only events
on or after it. ``tests/test_leakage.py`` proves it for every use case's SQL by changing
events on and after an as-of date and checking that no feature moves.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakeml.core import tables
from lakeml.core.config import UseCaseConfig
from lakeml.core.errors import ConfigError, MissingTableError
from lakeml.features.plan import FEATURES_FINGERPRINT, LABELS_FINGERPRINT, OBSERVED_UNTIL, WATERMARK, plan, set_properties
from lakeml.features.sql import parse, render, run_sql
from lakeml.features.views import EventWindow, population, register_source_views

log = logging.getLogger(__name__)

def _window(as_of_dates: list[date], lookback_days: int | None) -> EventWindow:
    """Events a feature file may read: strictly before the newest as-of date, and from
    ``lookback_days`` before the oldest one (open when the file does not say)."""
    lo = min(as_of_dates) - timedelta(days=lookback_days) if lookback_days is not None else None
    return lo, max(as_of_dates)


def build_features(spark: SparkSession, uc: UseCaseConfig, as_of_dates: list[date], frames: dict[str, DataFrame] | None = None,
                   prune: bool = True) -> DataFrame:
    """One row per population member and as-of date, one column per feature.

    The source views come from the lake, or from ``frames`` (bronze-shaped DataFrames by
    source name: how tests feed the SQL). With ``prune`` each feature file sees only the
    events of its window (``lookback_days``); without, all of them (the same result when the
    lookbacks are right: ``tests/test_incremental.py`` checks it for every use case)."""
    key = [uc.features.entity, "as_of_date"]
    sources = register_source_views(spark, uc, frames)
    pop = population(spark, uc, as_of_dates).persist()
    out = pop
    seen = set(key)
    for spec in uc.features.sql:
        rel = spec.file
        register_source_views(spark, uc, window=_window(as_of_dates, spec.lookback_days) if prune else None, sources=sources)
        df = run_sql(spark, uc.read_sql(rel), f"{uc.conf_dir}/{rel}")
        missing = [k for k in key if k not in df.columns]
        if missing:
            raise ConfigError(f"{uc.conf_dir}/{rel}: the query must return {key}; missing {missing}")
        dup = (set(df.columns) - set(key)) & seen
        if dup:
            raise ConfigError(f"{uc.conf_dir}/{rel}: columns {sorted(dup)} are already produced by another feature file")
        seen |= set(df.columns)
        out = out.join(df, key, "left")
    register_source_views(spark, uc, sources=sources)  # leave the full views, as a caller would expect
    return out


def build_labels(spark: SparkSession, uc: UseCaseConfig, as_of_dates: list[date], observed_until: date,
                 frames: dict[str, DataFrame] | None = None, prune: bool = True) -> DataFrame:
    """The label of every population member at ``as_of_dates``; NULL while its window is
    not observed (it ends after ``observed_until``). The label SQL sees only the events of
    ``[min(as_of), max(as_of) + horizon)`` with ``prune``."""
    sources = register_source_views(spark, uc, frames)
    population(spark, uc, as_of_dates)
    if prune:
        register_source_views(spark, uc, window=(min(as_of_dates), max(as_of_dates) + timedelta(days=uc.label.horizon_days)), sources=sources)
    params = {
        "horizon_days": uc.label.horizon_days,
        "observed_until": tables.sql_literal(observed_until),
        "label_column": uc.label.column,
    }
    where = f"{uc.conf_dir}/{uc.label.sql}"
    sql = render(uc.read_sql(uc.label.sql), params, where)
    out = run_sql(spark, sql, where).withColumn(uc.label.column, F.col(uc.label.column).cast("int"))
    register_source_views(spark, uc, sources=sources)
    return out


def check_sql(spark: SparkSession, uc: UseCaseConfig) -> None:
    """Parse every SQL file of the use case (population, features, label): a syntax error
    names its file before any data is read."""
    f = uc.features
    for rel in [f.population_sql, *(s.file for s in f.sql)]:
        parse(spark, uc.read_sql(rel), f"{uc.conf_dir}/{rel}")
    where = f"{uc.conf_dir}/{uc.label.sql}"
    params = {"horizon_days": uc.label.horizon_days, "observed_until": tables.sql_literal(date(2000, 1, 1)), "label_column": uc.label.column}
    parse(spark, render(uc.read_sql(uc.label.sql), params, where), where)


def run(spark: SparkSession, uc: UseCaseConfig, as_of: list[date] | None = None,
        backfill: tuple[date | None, date | None] | None = None, leakage_check: bool = True) -> dict:
    """Compute the snapshots the plan names (``lakeml.features.plan``: by default the new
    ones and those late rows may have changed; ``as_of`` or ``backfill`` by hand) into the
    feature table, and merge the labels of every date whose window was still open. Returns
    what it did and why."""
    check_sql(spark, uc)  # a syntax error names its file before any data is read
    tables.ensure_database(spark, uc.database)
    p = plan(spark, uc, as_of, backfill)
    ft, lt = uc.table(uc.tables.features), uc.table(uc.tables.labels)
    log.info("features of %s: %s", uc.name, p.reason)
    if p.compute and p.new_sql and leakage_check:
        # SQL the table was not built with: proven point-in-time on a sample before it writes
        from lakeml.features import leakage

        leakage.check(spark, uc, p.schedule[len(p.schedule) // 2])
    if p.compute:
        feats = build_features(spark, uc, p.compute)
        # hashed on (as_of_date, entity), not on as_of_date alone: that put each snapshot in
        # one task and one file, so scoring a snapshot ran on one core
        tables.replace_where(
            feats.repartition("as_of_date", uc.features.entity), ft, tables.in_predicate("as_of_date", p.compute),
            partition_by=["as_of_date"], merge_schema=True,
        )
    props = {FEATURES_FINGERPRINT: p.fingerprints[FEATURES_FINGERPRINT]}
    if p.watermark is not None and not as_of and backfill is None:
        props[WATERMARK] = p.watermark  # a run by hand covers its dates only: the daily plan still owes the rest
    if tables.exists(spark, ft):
        set_properties(spark, ft, props)
    if p.labels:
        labels = build_labels(spark, uc, p.labels, p.observed_until)
        if p.labels_full:
            tables.overwrite(labels, lt, partition_by=["as_of_date"])  # no coalesce(1): that ran the label join in one task
        else:
            merge_labels(spark, uc, labels, p.labels)
        set_properties(spark, lt, {LABELS_FINGERPRINT: p.fingerprints[LABELS_FINGERPRINT], OBSERVED_UNTIL: p.observed_until.isoformat()})
    spark.catalog.clearCache()
    dates = [str(d) for d in p.compute]
    log.info("features for %d as-of dates into %s, labels for %d dates into %s", len(dates), ft, len(p.labels), lt)
    return {"as_of_dates": dates, "label_dates": [str(d) for d in p.labels], "reason": p.reason,
            "observed_until": p.observed_until, "newest_batch": p.newest}


def merge_labels(spark: SparkSession, uc: UseCaseConfig, labels: DataFrame, dates: list[date]) -> None:
    """Labels of ``dates`` into the labels table: a label that is known (not NULL) is final
    and never changes; an open one (NULL) takes the new value; rows the population no longer
    has are removed while open."""
    from delta.tables import DeltaTable

    lt, e, y = uc.table(uc.tables.labels), uc.entity, uc.label.column
    if not tables.exists(spark, lt):
        labels.write.format("delta").partitionBy("as_of_date").saveAsTable(lt)
        return
    scope = tables.in_predicate("as_of_date", dates)
    (
        DeltaTable.forName(spark, lt).alias("t")
        .merge(labels.alias("s"), f"t.`{e}` = s.`{e}` AND t.as_of_date = s.as_of_date AND t.{scope}")
        .whenMatchedUpdateAll(condition=f"t.`{y}` IS NULL")
        .whenNotMatchedInsertAll()
        .whenNotMatchedBySourceDelete(condition=f"t.{scope} AND t.`{y}` IS NULL")
        .execute()
    )


def newest_snapshot(spark: SparkSession, uc: UseCaseConfig) -> date:
    ft = uc.table(uc.tables.features)
    d = tables.read(spark, ft, made_by=tables.FEATURES_JOB).agg(F.max("as_of_date")).first()[0]
    if d is None:
        raise MissingTableError(f"Table {ft} is empty. Run {tables.FEATURES_JOB}.")
    return d


def labelled_features(spark: SparkSession, uc: UseCaseConfig) -> DataFrame:
    """Feature rows that have a known label (the training set)."""
    ft = tables.read(spark, uc.table(uc.tables.features), made_by=tables.FEATURES_JOB)
    lb = tables.read(spark, uc.table(uc.tables.labels), made_by=tables.FEATURES_JOB)
    return ft.join(lb, [uc.features.entity, "as_of_date"]).where(F.col(uc.label.column).isNotNull())


def labelled_dates(spark: SparkSession, uc: UseCaseConfig) -> list[date]:
    """The snapshot dates that have feature rows and known labels, from both tables'
    ``as_of_date`` partitions (no join of the rows: that cost 15 s at 1 M entities)."""
    ft = tables.read(spark, uc.table(uc.tables.features), made_by=tables.FEATURES_JOB).select("as_of_date").distinct()
    lb = tables.read(spark, uc.table(uc.tables.labels), made_by=tables.FEATURES_JOB)
    lb = lb.where(F.col(uc.label.column).isNotNull()).select("as_of_date").distinct()
    return sorted(r[0] for r in ft.join(lb, "as_of_date").collect())
