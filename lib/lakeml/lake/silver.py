"""Silver "current" tables: per source, the latest row per key, kept by MERGE.

Bronze is the append-only history (every version of every row, with ``_batch_date`` and
``_source_file``); silver holds, per key, the version a full ``latest_per_key`` over all of
bronze would pick: the newest ``_batch_date``, then the greatest ``_source_file``. A run
merges only the rows it ingested (deduplicated the same way), so its cost follows the new
batches, not the history:

- a key not in silver is inserted;
- a key in silver is replaced when the new version is at least as new (a re-sent key, a
  correction), and left alone when it is older (a late batch of an earlier date);
- a row whose ``delete_flag`` (if the source declares one) is true is kept as a tombstone:
  it is the key's newest version, and the ``<source>`` view leaves it out.

A batch that is ingested again with other files (a correction of a batch, ``--all``) can
take versions away, which a merge cannot know: that source's silver table is then rebuilt
from bronze in full. Both ways give the same table (``tests/test_incremental.py``).
"""

from __future__ import annotations

import logging
from functools import reduce

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from lakeml.core import tables
from lakeml.core.config import SourceSpec, UseCaseConfig

log = logging.getLogger(__name__)

# how ingest and silver cache landed rows, read two or three times each: serialized on local
# disk. At 1 M entities the default (deserialized in memory) spills anyway, with a warning per
# block; in one sitting both took the same time (537 s and 548 s, docs/benchmarks.md)
LANDED = StorageLevel.DISK_ONLY

ROWS_PER_FILE = 2_000_000  # at most, per file written by a load (range-partitioned by time)
FILE_DAYS = 7  # a load spanning more event time is cut into files of about a week each ...
MIN_ROWS_PER_FILE = 2_000  # ... unless that makes files smaller than this


def latest_per_key(df: DataFrame, keys: list[str]) -> DataFrame:
    """The newest row per key, newest meaning the latest arrival batch, then the greatest
    source file name.

    One window over every row. (Counting the re-sent keys first and broadcasting them, so
    that keys sent once skip the shuffle, measured slower at 100 000 entities: the extra
    aggregate per source cost more than the window it saved; see docs/benchmarks.md.)"""
    w = Window.partitionBy(*keys).orderBy(F.col("_batch_date").desc(), F.col("_source_file").desc())
    return df.withColumn("_rn", F.row_number().over(w)).where("_rn = 1").drop("_rn")


def time_column(spec: SourceSpec) -> str:
    """What a source's rows are ordered by on disk: its event time, else its arrival batch."""
    return spec.event_time or "_batch_date"


def layout(df: DataFrame, spec: SourceSpec) -> tuple[int, int]:
    """Rows of ``df`` and the days its time column spans (one pass; ``df`` is cached by callers)."""
    t = time_column(spec)
    r = df.agg(F.count(F.lit(1)).alias("n"), F.min(t).alias("lo"), F.max(t).alias("hi")).first()
    return r.n, (span_days(r.lo, r.hi) if r.lo is not None else 0)


def span_days(lo, hi) -> int:
    """Days from ``lo`` to ``hi`` (dates or timestamps), both counted."""
    lo, hi = (x.date() if hasattr(x, "date") else x for x in (lo, hi))
    return (hi - lo).days + 1


def laid_out(df: DataFrame, spec: SourceSpec, rows: int, span_days: int = 0) -> DataFrame:
    """``df`` range-partitioned on the source's time column, so that each file holds a
    stretch of time and Delta's min/max statistics let a time filter skip the rest: at most
    ``ROWS_PER_FILE`` rows and, for a load spanning many days (a first load, a backfill),
    about ``FILE_DAYS`` of event time per file (not below ``MIN_ROWS_PER_FILE`` rows). A
    daily batch is one file."""
    by_rows = -(-rows // ROWS_PER_FILE)
    by_time = min(-(-span_days // FILE_DAYS), rows // MIN_ROWS_PER_FILE)
    return df.repartitionByRange(max(1, by_rows, by_time), F.col(time_column(spec)))


def _newer(s: str = "s", t: str = "t") -> Column:
    return (F.col(f"{s}._batch_date") > F.col(f"{t}._batch_date")) | (
        (F.col(f"{s}._batch_date") == F.col(f"{t}._batch_date")) & (F.col(f"{s}._source_file") >= F.col(f"{t}._source_file"))
    )


def rebuild(spark: SparkSession, uc: UseCaseConfig, source: str, bronze: DataFrame | None = None) -> None:
    """Silver of ``source`` recomputed from all of bronze (a full recompute). ``bronze``:
    the rows bronze holds, when the caller has them at hand (a first load's cached rows)."""
    spec = uc.sources[source]
    bronze = tables.read(spark, uc.table(spec.table)) if bronze is None else bronze
    current = latest_per_key(bronze, spec.keys).persist(LANDED)
    try:
        rows, span = layout(current, spec)
        tables.overwrite(laid_out(current, spec, rows, span), uc.silver(source))
    finally:
        current.unpersist()
    log.info("silver %s rebuilt from %s: %d rows", uc.silver(source), uc.table(spec.table), rows)


def write_copy(spark: SparkSession, uc: UseCaseConfig, source: str, bronze_rows: DataFrame) -> None:
    """Silver of ``source`` when bronze holds no key twice (a first load without re-sent
    keys): ``latest_per_key`` would keep every row, so silver is written from bronze's own
    rows (laid out as bronze's), without the window."""
    tables.overwrite(bronze_rows, uc.silver(source))
    log.info("silver %s written as a copy of %s (no key in two batches)", uc.silver(source), uc.table(uc.sources[source].table))


def merge(spark: SparkSession, uc: UseCaseConfig, source: str, new_rows: DataFrame, unique_keys: bool = False,
          rows: int = 0, span_days: int = 0, time_range: tuple | None = None) -> None:
    """Merge the bronze rows one run ingested (``new_rows``: bronze-shaped; ``rows`` of them
    spanning ``span_days``, their event times within ``time_range``) into silver. With
    ``unique_keys`` they have one row per key already (one batch: ingest quarantines a key's
    duplicates within a batch; or no key in two of them). When no key of them is in silver yet (new events, new entities) they are
    appended: the same result as the MERGE, without its copy of the source and its rewrite.
    For a source whose keys keep their event time, the keys are looked for only among the
    rows of ``time_range``: Delta skips the other files by their statistics."""
    spec = uc.sources[source]
    name = uc.silver(source)
    latest = new_rows if unique_keys else latest_per_key(new_rows, spec.keys)
    if not tables.exists(spark, name):
        rebuild(spark, uc, source)  # the first run, or a lake from before silver tables: all of bronze
        return
    on = reduce(lambda a, b: a & b, [F.col(f"t.`{k}`") == F.col(f"s.`{k}`") for k in spec.keys])  # keys are never null
    bound = _time_bound(spec, time_range)
    if bound is not None:
        on = on & bound("t.")
    if latest.join(key_lookup(spark, uc, source, time_range).select(*spec.keys), spec.keys, "left_semi").isEmpty():
        tables.append(laid_out(latest, spec, rows, span_days), name)
        return
    tables.merge(latest, name, on, update_when=_newer())


def _time_bound(spec: SourceSpec, time_range: tuple | None):
    """For keys that keep their event time: the condition that a row's event time is in
    ``time_range`` (a function of the column prefix), else None."""
    if not spec.time_bound_keys or time_range is None or time_range[0] is None:
        return None
    lo, hi = time_range
    return lambda prefix="": F.col(f"{prefix}`{spec.event_time}`").between(F.lit(lo), F.lit(hi))


def key_lookup(spark: SparkSession, uc: UseCaseConfig, source: str, time_range: tuple | None = None) -> DataFrame:
    """The silver rows among which new rows of event times ``time_range`` can find their
    keys: all of silver, or for keys that keep their event time only the rows of that range
    (Delta skips the other files)."""
    target = tables.read(spark, uc.silver(source))
    bound = _time_bound(uc.sources[source], time_range)
    return target if bound is None else target.where(bound())


def current(spark: SparkSession, uc: UseCaseConfig, source: str) -> DataFrame:
    """The ``<source>`` view: silver without tombstones."""
    return without_tombstones(tables.read(spark, uc.silver(source), made_by=tables.INGEST_JOB), uc.sources[source])


def without_tombstones(df: DataFrame, spec: SourceSpec) -> DataFrame:
    """The rows of ``df`` whose ``delete_flag`` (if the source declares one) is not true."""
    if spec.delete_flag:
        df = df.where(~F.coalesce(F.col(spec.delete_flag), F.lit(False)))
    return df
