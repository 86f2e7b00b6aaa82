"""Which snapshots a features run computes, and which labels: what the day brings.

The feature table remembers, as Delta table properties,

- ``lakeml.features.fingerprint``: a hash of everything that decides feature values (the
  population and feature SQL, their lookbacks, the entity, the sources' schemas);
- ``lakeml.features.watermark``: the newest ``ingested_at`` of the ingest log it has seen;

and the labels table ``lakeml.labels.fingerprint`` (the label SQL, column, horizon and delay)
and ``lakeml.labels.observed_until`` (every label window closed by then is final).

A default run computes the scheduled snapshots the table does not have, the newest batch
date, and the snapshots that rows ingested since the watermark can change: a row of batch
``b`` happened at ``b - late_days`` at the earliest, so the snapshots after
``min(new batches) - late_days`` are computed again. Labels are computed for every date of the
feature table whose window was not yet closed. A changed fingerprint recomputes everything,
and says so; ``--as-of`` and ``--backfill`` choose the dates by hand.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakeml.core import tables
from lakeml.core.config import UseCaseConfig
from lakeml.features.views import batch_range, snapshot_dates

log = logging.getLogger(__name__)

FEATURES_FINGERPRINT = "lakeml.features.fingerprint"
WATERMARK = "lakeml.features.watermark"
LABELS_FINGERPRINT = "lakeml.labels.fingerprint"
OBSERVED_UNTIL = "lakeml.labels.observed_until"


def _sha(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def features_fingerprint(uc: UseCaseConfig) -> str:
    f = uc.features
    return _sha({
        "entity": f.entity,
        "population": uc.read_sql(f.population_sql),
        "sql": [(s.file, uc.read_sql(s.file), s.lookback_days) for s in f.sql],
        "sources": {n: s.model_dump(exclude={"description"}) for n, s in uc.sources.items()},
    })


def labels_fingerprint(uc: UseCaseConfig) -> str:
    lb = uc.label
    return _sha({"fingerprint": features_fingerprint(uc), "sql": uc.read_sql(lb.sql), "column": lb.column,
                 "horizon": lb.horizon_days, "delay": lb.delay_days})


def properties(spark: SparkSession, name: str) -> dict[str, str]:
    """The table's properties, none while it does not exist yet."""
    return tables.properties(spark, name) if tables.exists(spark, name) else {}


def as_of_dates(spark: SparkSession, name: str) -> set[date]:
    """The as-of dates a table partitioned by ``as_of_date`` holds (partition values: no data read)."""
    if not tables.exists(spark, name):
        return set()
    return {r[0] for r in tables.read(spark, name).select("as_of_date").distinct().collect()}


@dataclass
class Plan:
    first: date
    newest: date
    schedule: list[date]  # every date the feature table should hold
    compute: list[date]  # the snapshots this run computes
    labels: list[date]  # the dates whose labels this run computes
    observed_until: date
    reason: str
    watermark: str | None
    fingerprints: dict[str, str] = field(default_factory=dict)
    labels_full: bool = False  # the label SQL or its conf changed: every label again, final ones too
    new_sql: bool = False  # the table has no fingerprint or another one: SQL it has not been built with


def plan(
    spark: SparkSession,
    uc: UseCaseConfig,
    as_of: list[date] | None = None,
    backfill: tuple[date | None, date | None] | None = None,
) -> Plan:
    """The dates of one features run: ``as_of`` (given dates), ``backfill`` (every date of
    the table and the schedule in ``[from, to]``, either end open), or what the day brings."""
    features_table, labels_table = uc.table(uc.tables.features), uc.table(uc.tables.labels)
    first, newest = batch_range(spark, uc)
    snaps = uc.features.snapshots
    computed = as_of_dates(spark, features_table)
    schedule = sorted(set(snapshot_dates(first, newest, snaps.every_days, snaps.first_after_days)) | computed)
    features_props = properties(spark, features_table)
    features_fp = features_fingerprint(uc)
    log_max = tables.read(spark, uc.table(uc.tables.ingest_log)).agg(F.max("ingested_at")).first()[0]
    watermark = str(log_max) if log_max is not None else None

    if as_of:
        compute, reason = sorted(set(as_of)), "the dates asked for (--as-of)"
    elif backfill is not None:
        lo, hi = backfill
        compute = [d for d in schedule if (lo is None or d >= lo) and (hi is None or d <= hi)]
        reason = f"backfill {lo or 'start'} .. {hi or 'end'}"
    elif not computed:
        compute, reason = schedule, "the feature table is new: every snapshot"
    elif features_props.get(FEATURES_FINGERPRINT) != features_fp:
        compute = schedule
        built_with = features_props.get(FEATURES_FINGERPRINT)
        reason = (f"full recompute: the feature SQL or its conf changed (fingerprint {built_with} -> {features_fp})"
                  if built_with else "full recompute: the table has no fingerprint yet")
    else:
        missing = set(schedule) - computed
        since = features_props.get(WATERMARK)
        new_batches = _batches_since(spark, uc, since)
        touched: set[date] = set()
        if new_batches:
            earliest = min(new_batches) - timedelta(days=uc.features.late_days)
            touched = {d for d in computed if d > earliest}
        compute = sorted(missing | touched)
        reason = (f"{len(missing)} new snapshot(s), {len(touched)} touched by {len(new_batches)} batch(es) ingested since the last run "
                  f"(late_days {uc.features.late_days})")

    labels_props = properties(spark, labels_table)
    observed_until = newest - timedelta(days=uc.label.delay_days)
    labelled = as_of_dates(spark, labels_table)
    observed_before = labels_props.get(OBSERVED_UNTIL)
    labels_full = (labels_props.get(LABELS_FINGERPRINT) != labels_fingerprint(uc) or observed_before is None
                   or backfill == (None, None))
    if labels_full:
        label_dates = sorted(set(schedule) | set(compute))
    else:
        closed = date.fromisoformat(observed_before)
        # not labelled yet, or its window was still open last time: a final label never changes
        horizon = timedelta(days=uc.label.horizon_days)
        label_dates = sorted(d for d in set(schedule) | set(compute) if d not in labelled or d + horizon > closed)
    return Plan(first, newest, schedule, compute, label_dates, observed_until, reason, watermark,
                {FEATURES_FINGERPRINT: features_fp, LABELS_FINGERPRINT: labels_fingerprint(uc)}, labels_full,
                new_sql=features_props.get(FEATURES_FINGERPRINT) != features_fp)


def _batches_since(spark: SparkSession, uc: UseCaseConfig, since: str | None) -> set[date]:
    log_df = tables.read(spark, uc.table(uc.tables.ingest_log))
    if since is not None:
        log_df = log_df.where(F.col("ingested_at") > F.lit(datetime.fromisoformat(since)))
    return {r[0] for r in log_df.select("batch_date").distinct().collect()}
