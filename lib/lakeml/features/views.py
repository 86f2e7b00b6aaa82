"""The temporary views the feature and label SQL sees.

- one view per source, named as the source, holding the latest row per key of its bronze
  table (a key re-sent in a later batch replaces the earlier one), and
  ``<source>_history`` with every version of every row and its ``_batch_date`` (arrival);
- ``snapshots(as_of_date)``: the as-of dates being computed;
- ``population(<entity>, as_of_date)``: who is scored at each date (the population SQL).
"""

from __future__ import annotations

from datetime import date, timedelta

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from lakeml.core import tables
from lakeml.core.config import UseCaseConfig
from lakeml.core.errors import MissingTableError
from lakeml.features.sql import run_sql


def latest_per_key(df: DataFrame, keys: list[str]) -> DataFrame:
    """The newest row per key, newest meaning the latest arrival batch.

    One window over every row. (Counting the re-sent keys first and broadcasting them, so
    that keys sent once skip the shuffle, measured slower at 100 000 entities: the extra
    aggregate per source cost more than the window it saved; see docs/benchmarks.md.)"""
    w = Window.partitionBy(*keys).orderBy(F.col("_batch_date").desc(), F.col("_source_file").desc())
    return df.withColumn("_rn", F.row_number().over(w)).where("_rn = 1").drop("_rn")


def register_source_views(spark: SparkSession, uc: UseCaseConfig, frames: dict[str, DataFrame] | None = None) -> None:
    """Register the source views from the bronze tables (or from ``frames``, bronze-shaped
    DataFrames by source name, which is how tests feed the SQL)."""
    for name, spec in uc.sources.items():
        bronze = frames[name] if frames is not None else tables.read(spark, uc.table(spec.table), made_by=tables.INGEST_JOB)
        bronze.createOrReplaceTempView(f"{name}_history")
        latest_per_key(bronze, spec.keys).createOrReplaceTempView(name)


def batch_range(spark: SparkSession, uc: UseCaseConfig) -> tuple[date, date]:
    """The first and newest arrival batch over all bronze tables."""
    lo, hi = None, None
    for spec in uc.sources.values():
        r = tables.read(spark, uc.table(spec.table), made_by=tables.INGEST_JOB).agg(
            F.min("_batch_date").alias("lo"), F.max("_batch_date").alias("hi")
        ).first()
        if r.lo is not None:
            lo = r.lo if lo is None else min(lo, r.lo)
            hi = r.hi if hi is None else max(hi, r.hi)
    if lo is None:
        raise MissingTableError(f"The bronze tables of {uc.name} are empty. Run {tables.INGEST_JOB} first.")
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
