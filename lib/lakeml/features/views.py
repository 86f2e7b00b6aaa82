"""The temporary views the feature and label SQL sees.

- one view per source, named as the source: the latest row per key (the silver table; a key
  re-sent in a later batch replaces the earlier one, a tombstone hides it), and
  ``<source>_history``: every version of every row and its ``_batch_date`` (bronze);
- ``snapshots(as_of_date)``: the as-of dates being computed;
- ``population(<entity>, as_of_date)``: who is scored at each date (the population SQL).

A *window* ``[lo, hi)`` on event time prunes both views of every source that declares an
``event_time`` (attribute sources are never pruned): a feature file that looks back
``lookback_days`` gets the events of ``[min(as_of) - lookback, max(as_of))`` only, and the
tables are laid out by time so that Delta skips the files outside it.
"""

from __future__ import annotations

from datetime import date, timedelta

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakeml.core import tables
from lakeml.core.config import SourceSpec, UseCaseConfig
from lakeml.core.errors import MissingTableError
from lakeml.features.sql import run_sql
from lakeml.lake import silver
from lakeml.lake.silver import latest_per_key

EventWindow = tuple[date | None, date | None]  # [lo, hi) on event time; None: open on that side


def _in_window(df: DataFrame, spec: SourceSpec, window: EventWindow | None) -> DataFrame:
    if window is None or spec.event_time is None:
        return df
    t, lo, hi = spec.event_time, window[0], window[1]
    kind = spec.columns[t].type  # literals of the column's type: the filter reaches the file statistics
    cond = F.lit(True)
    if lo is not None:
        cond = cond & (F.col(t) >= F.lit(lo).cast(kind))
    if hi is not None:
        cond = cond & (F.col(t) < F.lit(hi).cast(kind))
    return df.where(cond)


Sources = dict[str, tuple[DataFrame, DataFrame]]  # source -> (history, current), before any window


def source_frames(spark: SparkSession, uc: UseCaseConfig, frames: dict[str, DataFrame] | None = None) -> Sources:
    """Per source, its history (bronze) and current (silver without tombstones) frames, from
    the lake (a silver table missing from a lake made before them is built from bronze) or
    from ``frames``, bronze-shaped DataFrames by source name (how tests feed the SQL)."""
    out: Sources = {}
    for name, spec in uc.sources.items():
        if frames is not None:
            history = frames[name]
            current = silver.without_tombstones(latest_per_key(history, spec.keys), spec)
        else:
            history = tables.read(spark, uc.table(spec.table), made_by=tables.INGEST_JOB)
            if not tables.exists(spark, uc.silver(name)):
                silver.rebuild(spark, uc, name)
            current = silver.current(spark, uc, name)
        out[name] = (history, current)
    return out


def register_source_views(
    spark: SparkSession, uc: UseCaseConfig, frames: dict[str, DataFrame] | None = None, window: EventWindow | None = None,
    sources: Sources | None = None,
) -> Sources:
    """Register the source views (see ``source_frames``; or ``sources``, frames it returned
    before, so that one build reads the catalog once). ``window`` prunes the event sources.
    Returns the unpruned frames."""
    sources = sources if sources is not None else source_frames(spark, uc, frames)
    for name, spec in uc.sources.items():
        history, current = sources[name]
        _in_window(history, spec, window).createOrReplaceTempView(f"{name}_history")
        _in_window(current, spec, window).createOrReplaceTempView(name)
    return sources


def batch_range(spark: SparkSession, uc: UseCaseConfig) -> tuple[date, date]:
    """The first and newest arrival batch of the use case, from the ingest log (one row per
    source and batch: no scan of the data)."""
    name = uc.table(uc.tables.ingest_log)
    r = tables.read(spark, name, made_by=tables.INGEST_JOB).agg(F.min("batch_date").alias("lo"), F.max("batch_date").alias("hi")).first()
    if r.lo is None:
        raise MissingTableError(f"Nothing of {uc.name} was ingested yet ({name} is empty). Run {tables.INGEST_JOB} first.")
    return r.lo, r.hi


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
