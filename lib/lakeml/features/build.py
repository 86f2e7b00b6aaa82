"""Point-in-time features and labels from the use case's Spark SQL files, as DataFrames
(no table is written here: ``lakeml.features.job`` writes them).

The SQL sees, as temporary views (``lakeml.features.views``):

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

from datetime import date, timedelta

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakeml.core import tables
from lakeml.core.config import UseCaseConfig
from lakeml.core.errors import ConfigError
from lakeml.features.sql import parse, render, run_sql
from lakeml.features.views import EventWindow, population, register_source_views


def _lookback_window(as_of_dates: list[date], lookback_days: int | None) -> EventWindow:
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
    out = population(spark, uc, as_of_dates).persist()
    produced = set(key)  # the columns the files before this one made
    for spec in uc.features.sql:
        rel = spec.file
        window = _lookback_window(as_of_dates, spec.lookback_days) if prune else None
        register_source_views(spark, uc, window=window, sources=sources)
        file_features = run_sql(spark, uc.read_sql(rel), f"{uc.conf_dir}/{rel}")
        missing = [k for k in key if k not in file_features.columns]
        if missing:
            raise ConfigError(f"{uc.conf_dir}/{rel}: the query must return {key}; missing {missing}")
        twice = (set(file_features.columns) - set(key)) & produced
        if twice:
            raise ConfigError(f"{uc.conf_dir}/{rel}: columns {sorted(twice)} are already produced by another feature file")
        produced |= set(file_features.columns)
        out = out.join(file_features, key, "left")
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
        window = (min(as_of_dates), max(as_of_dates) + timedelta(days=uc.label.horizon_days))
        register_source_views(spark, uc, window=window, sources=sources)
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
    params = {
        "horizon_days": uc.label.horizon_days,
        "observed_until": tables.sql_literal(date(2000, 1, 1)),  # any date: only the syntax is checked
        "label_column": uc.label.column,
    }
    parse(spark, render(uc.read_sql(uc.label.sql), params, where), where)
