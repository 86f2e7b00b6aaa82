"""Point-in-time features and labels from the use case's Spark SQL files.

The SQL sees, as temporary views:

- one view per source, named as the source, holding the latest row per key of its
  bronze table (a key re-sent in a later batch replaces the earlier one), and
  ``<source>_history`` with every version of every row and its ``_batch_date`` (arrival),
  for attributes that change: take the newest version with ``_batch_date <= as_of_date``;
- ``snapshots(as_of_date)``: the as-of dates being computed;
- ``population(customer_id, as_of_date)``: who is scored at each date (population SQL).

Feature SQL must use only events strictly before ``as_of_date``; the label SQL only events
on or after it. ``tests/test_features.py`` proves it for the shipped SQL by changing
events on and after an as-of date and checking that no feature moves.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta
from string import Template

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from lakeml import tables
from lakeml.config import ConfigError, UseCaseConfig

log = logging.getLogger(__name__)

INGEST_JOB = "jobs/ingest.py (or jobs/pipeline.py)"
FEATURES_JOB = "jobs/features.py (or jobs/pipeline.py --only features)"


def render(sql: str, params: dict[str, object], where: str = "SQL") -> str:
    """Fill ``${name}`` placeholders; an unknown placeholder names the file."""
    try:
        return Template(sql).substitute({k: str(v) for k, v in params.items()})
    except KeyError as e:
        raise ConfigError(f"{where}: unknown placeholder ${{{e.args[0]}}}; known: {', '.join(sorted(params))}") from None


def run_sql(spark: SparkSession, sql: str, where: str) -> DataFrame:
    """spark.sql with errors that name the SQL file instead of a JVM trace."""
    from pyspark.errors import AnalysisException

    try:
        return spark.sql(sql)
    except AnalysisException as e:
        msg = str(e).split("\n")[0]
        raise ConfigError(f"{where}: {msg}") from None


def latest_per_key(df: DataFrame, keys: list[str]) -> DataFrame:
    """The newest row per key, newest meaning the latest arrival batch.

    One window over every row. (Counting the re-sent keys first and broadcasting them, so
    that keys sent once skip the shuffle, measured slower at 100 000 customers: the extra
    aggregate per source cost more than the window it saved; see docs/benchmarks.md.)"""
    w = Window.partitionBy(*keys).orderBy(F.col("_batch_date").desc(), F.col("_source_file").desc())
    return df.withColumn("_rn", F.row_number().over(w)).where("_rn = 1").drop("_rn")


def register_source_views(spark: SparkSession, uc: UseCaseConfig, frames: dict[str, DataFrame] | None = None) -> None:
    """Register the source views from the bronze tables (or from ``frames``, bronze-shaped
    DataFrames by source name, which is how tests feed the SQL)."""
    for name, spec in uc.sources.items():
        bronze = frames[name] if frames is not None else tables.read(spark, uc.table(spec.table), made_by=INGEST_JOB)
        bronze.createOrReplaceTempView(f"{name}_history")
        latest_per_key(bronze, spec.keys).createOrReplaceTempView(name)


def batch_range(spark: SparkSession, uc: UseCaseConfig) -> tuple[date, date]:
    """The first and newest arrival batch over all bronze tables."""
    lo, hi = None, None
    for spec in uc.sources.values():
        r = tables.read(spark, uc.table(spec.table), made_by=INGEST_JOB).agg(
            F.min("_batch_date").alias("lo"), F.max("_batch_date").alias("hi")
        ).first()
        if r.lo is not None:
            lo = r.lo if lo is None else min(lo, r.lo)
            hi = r.hi if hi is None else max(hi, r.hi)
    if lo is None:
        raise tables.MissingTableError(f"The bronze tables of {uc.name} are empty. Run {INGEST_JOB} first.")
    return lo, hi


def snapshot_dates(first_batch: date, newest_batch: date, every_days: int, first_after_days: int) -> list[date]:
    """As-of dates anchored at the first batch (so they stay put as data grows), plus the
    newest batch date: the snapshot that sees every event that has arrived."""
    d = first_batch + timedelta(days=first_after_days)
    out = []
    while d < newest_batch:
        out.append(d)
        d += timedelta(days=every_days)
    out.append(newest_batch)
    return out


def _snapshots_view(spark: SparkSession, as_of_dates: list[date]) -> None:
    spark.createDataFrame([(d,) for d in sorted(set(as_of_dates))], "as_of_date date").createOrReplaceTempView("snapshots")


def population(spark: SparkSession, uc: UseCaseConfig, as_of_dates: list[date]) -> DataFrame:
    _snapshots_view(spark, as_of_dates)
    pop = run_sql(spark, uc.read_sql(uc.features.population_sql), f"{uc.conf_dir}/{uc.features.population_sql}")
    pop.createOrReplaceTempView("population")
    return pop


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
    labels of every snapshot date. Returns what it wrote."""
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
    labels = build_labels(spark, uc, snaps, observed_until)
    tables.overwrite(labels, uc.table(uc.tables.labels))  # no coalesce(1): that ran the label join in one task
    spark.catalog.clearCache()
    log.info("features for %d as-of dates (%s .. %s) into %s", len(dates), dates[0], dates[-1], ft)
    return {"as_of_dates": dates, "observed_until": observed_until, "newest_batch": newest}


def newest_snapshot(spark: SparkSession, uc: UseCaseConfig) -> date:
    ft = uc.table(uc.tables.features)
    d = tables.read(spark, ft, made_by=FEATURES_JOB).agg(F.max("as_of_date")).first()[0]
    if d is None:
        raise tables.MissingTableError(f"Table {ft} is empty. Run {FEATURES_JOB}.")
    return d


def labelled_features(spark: SparkSession, uc: UseCaseConfig) -> DataFrame:
    """Feature rows that have a known label (the training set)."""
    ft = tables.read(spark, uc.table(uc.tables.features), made_by=FEATURES_JOB)
    lb = tables.read(spark, uc.table(uc.tables.labels), made_by=FEATURES_JOB)
    return ft.join(lb, [uc.features.entity, "as_of_date"]).where(F.col(uc.label.column).isNotNull())
