"""Point-in-time features and labels from the use case's Spark SQL files: the views the SQL
sees (``views``), running it (``sql``), the rows (``build``), what a run computes (``plan``),
the no-leakage probe (``leakage``) and the tables read back (``read``). The stage that writes
the tables is ``lakeml.features.job`` (imported by the pipeline and the jobs only)."""

from lakeml.features.build import build_features, build_labels, check_sql
from lakeml.features.read import labelled_dates, labelled_features, newest_snapshot
from lakeml.features.sql import render, run_sql
from lakeml.features.views import batch_range, latest_per_key, population, register_source_views, snapshot_dates

__all__ = [
    "batch_range", "build_features", "build_labels", "check_sql", "labelled_dates", "labelled_features", "latest_per_key",
    "newest_snapshot", "population", "register_source_views", "render", "run_sql", "snapshot_dates",
]
