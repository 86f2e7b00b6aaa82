"""The features stage: compute what the plan names and write it, the feature table (one
slice of as-of dates replaced per run) and the labels table (merged, or replaced when the
label SQL changed), with the fingerprints and watermark the next run plans from.

``lakeml.features.plan`` decides the dates, ``lakeml.features.build`` builds the rows, and
``lakeml.features.leakage`` first proves feature SQL the table was not built with.
"""

from __future__ import annotations

import logging
from datetime import date

from pyspark.sql import DataFrame, SparkSession

from lakeml.core import tables
from lakeml.core.config import UseCaseConfig
from lakeml.features import leakage
from lakeml.features.build import build_features, build_labels, check_sql
from lakeml.features.plan import FEATURES_FINGERPRINT, LABELS_FINGERPRINT, OBSERVED_UNTIL, WATERMARK, plan

log = logging.getLogger(__name__)


def run(spark: SparkSession, uc: UseCaseConfig, as_of: list[date] | None = None,
        backfill: tuple[date | None, date | None] | None = None, leakage_check: bool = True) -> dict:
    """Compute the snapshots the plan names (``lakeml.features.plan``: by default the new
    ones and those late rows may have changed; ``as_of`` or ``backfill`` by hand) into the
    feature table, and merge the labels of every date whose window was still open. Returns
    what it did and why."""
    check_sql(spark, uc)  # a syntax error names its file before any data is read
    tables.ensure_database(spark, uc.database)
    todo = plan(spark, uc, as_of, backfill)
    features_table, labels_table = uc.table(uc.tables.features), uc.table(uc.tables.labels)
    log.info("features of %s: %s", uc.name, todo.reason)
    if todo.compute and todo.new_sql and leakage_check:
        # SQL the table was not built with: proven point-in-time on a sample before it writes
        leakage.check(spark, uc, todo.schedule[len(todo.schedule) // 2])
    if todo.compute:
        features = build_features(spark, uc, todo.compute)
        tables.widen_for(features, features_table)  # a source column widened in conf widens the features made of it
        # hashed on (as_of_date, entity), not on as_of_date alone: that put each snapshot in
        # one task and one file, so scoring a snapshot ran on one core
        tables.replace_where(
            features.repartition("as_of_date", uc.features.entity), features_table,
            tables.in_predicate("as_of_date", todo.compute), partition_by=["as_of_date"], merge_schema=True,
        )
    props = {FEATURES_FINGERPRINT: todo.fingerprints[FEATURES_FINGERPRINT]}
    if todo.watermark is not None and not as_of and backfill is None:
        props[WATERMARK] = todo.watermark  # a run by hand covers its dates only: the daily plan still owes the rest
    if tables.exists(spark, features_table):
        tables.set_properties(spark, features_table, props)
    if todo.labels:
        labels = build_labels(spark, uc, todo.labels, todo.observed_until)
        if todo.labels_full:
            tables.overwrite(labels, labels_table, partition_by=["as_of_date"])  # no coalesce(1): that ran the label join in one task
        else:
            merge_labels(spark, uc, labels, todo.labels)
        tables.set_properties(spark, labels_table, {
            LABELS_FINGERPRINT: todo.fingerprints[LABELS_FINGERPRINT],
            OBSERVED_UNTIL: todo.observed_until.isoformat(),
        })
    spark.catalog.clearCache()
    dates = [str(d) for d in todo.compute]
    log.info("features for %d as-of dates into %s, labels for %d dates into %s",
             len(dates), features_table, len(todo.labels), labels_table)
    return {"as_of_dates": dates, "label_dates": [str(d) for d in todo.labels], "reason": todo.reason,
            "observed_until": todo.observed_until, "newest_batch": todo.newest}


def merge_labels(spark: SparkSession, uc: UseCaseConfig, labels: DataFrame, dates: list[date]) -> None:
    """Labels of ``dates`` into the labels table: a label that is known (not NULL) is final
    and never changes; an open one (NULL) takes the new value; rows the population no longer
    has are removed while open. The first write creates the table."""
    labels_table, entity, label = uc.table(uc.tables.labels), uc.entity, uc.label.column
    if not tables.exists(spark, labels_table):
        tables.append(labels, labels_table, partition_by=["as_of_date"])
        return
    scope = tables.in_predicate("as_of_date", dates)
    tables.merge(
        labels, labels_table,
        f"t.`{entity}` = s.`{entity}` AND t.as_of_date = s.as_of_date AND t.{scope}",
        update_when=f"t.`{label}` IS NULL",
        delete_unmatched_when=f"t.{scope} AND t.`{label}` IS NULL",
    )
