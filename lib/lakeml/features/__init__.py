"""Point-in-time features and labels from the use case's Spark SQL files: the views the SQL
sees (``views``), running it (``sql``), and the feature and label tables (``build``)."""

from lakeml.features.build import build_features, build_labels, check_sql, labelled_dates, labelled_features, newest_snapshot, run
from lakeml.features.sql import render, run_sql
from lakeml.features.views import batch_range, latest_per_key, population, register_source_views, snapshot_dates

__all__ = [
    "batch_range", "build_features", "build_labels", "check_sql", "labelled_dates", "labelled_features", "latest_per_key",
    "newest_snapshot", "population", "register_source_views", "render", "run", "run_sql", "snapshot_dates",
]
