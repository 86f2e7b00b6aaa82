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
from lakeml.features.sql import render, run_sql
from lakeml.features.views import batch_range, population, register_source_views, snapshot_dates

log = logging.getLogger(__name__)

def build_features(spark: SparkSession, uc: UseCaseConfig, as_of_dates: list[date]) -> DataFrame:
    """One row per population member and as-of date, one column per feature.

    Needs the source views (``register_source_views``)."""
    key = [uc.features.entity, "as_of_date"]
    pop = population(spark, uc, as_of_dates).persist()
    out = pop
    seen = set(key)
    for rel in uc.features.sql:
        df = run_sql(spark, uc.read_sql(rel), f"{uc.conf_dir}/{rel}")
        missing = [k for k in key if k not in df.columns]
        if missing:
            raise ConfigError(f"{uc.conf_dir}/{rel}: the query must return {key}; missing {missing}")
        dup = (set(df.columns) - set(key)) & seen
        if dup:
            raise ConfigError(f"{uc.conf_dir}/{rel}: columns {sorted(dup)} are already produced by another feature file")
        seen |= set(df.columns)
        out = out.join(df, key, "left")
    return out


def build_labels(spark: SparkSession, uc: UseCaseConfig, as_of_dates: list[date], observed_until: date) -> DataFrame:
    population(spark, uc, as_of_dates)
    params = {
        "horizon_days": uc.label.horizon_days,
        "observed_until": tables.sql_literal(observed_until),
        "label_column": uc.label.column,
    }
    where = f"{uc.conf_dir}/{uc.label.sql}"
    sql = render(uc.read_sql(uc.label.sql), params, where)
    return run_sql(spark, sql, where).withColumn(uc.label.column, F.col(uc.label.column).cast("int"))


def run(spark: SparkSession, uc: UseCaseConfig, as_of: list[date] | None = None) -> dict:
    """Compute and write features for ``as_of`` (default: every snapshot date) and the
    labels of every snapshot date and of every other as-of date the feature table holds
    (e.g. an earlier newest batch that was scored). Returns what it wrote."""
    tables.ensure_database(spark, uc.database)
    register_source_views(spark, uc)
    first, newest = batch_range(spark, uc)
    snaps = snapshot_dates(first, newest, uc.features.snapshots.every_days, uc.features.snapshots.first_after_days)
    dates = sorted(set(as_of or snaps))
    feats = build_features(spark, uc, dates)
    ft = uc.table(uc.tables.features)
    # hashed on (as_of_date, entity), not on as_of_date alone: that put each snapshot in
    # one task and one file, so scoring a snapshot ran on one core
    tables.replace_where(
        feats.repartition("as_of_date", uc.features.entity), ft, tables.in_predicate("as_of_date", dates),
        partition_by=["as_of_date"], merge_schema=True,
    )
    observed_until = newest - timedelta(days=uc.label.delay_days)
    # labels for every as-of date the feature table holds, not only today's schedule: a
    # date scored when it was the newest batch (off the every_days schedule as soon as a
    # later batch arrives) must get its label once observed, or its live performance
    # is never measured
    have = {r[0] for r in spark.table(ft).select("as_of_date").distinct().collect()}
    labels = build_labels(spark, uc, sorted(set(snaps) | have), observed_until)
    tables.overwrite(labels, uc.table(uc.tables.labels))  # no coalesce(1): that ran the label join in one task
    spark.catalog.clearCache()
    log.info("features for %d as-of dates (%s .. %s) into %s", len(dates), dates[0], dates[-1], ft)
    return {"as_of_dates": dates, "observed_until": observed_until, "newest_batch": newest}


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
