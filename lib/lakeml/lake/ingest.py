"""Landing batches -> bronze Delta tables, with a quarantine for what does not fit.

Every source is first read with every column as a string (plus the raw record when the
parser could not split it), then typed by ``validate`` against the schema in conf. A row
is accepted when every value parses and no required value is missing; otherwise it goes to
the quarantine table with its source file, raw text and the reasons. Nothing is dropped:
for every (source, batch), rows read = rows accepted + rows quarantined, and the ingest
log records the three numbers.

Ingest is idempotent: each (source, batch) slice of the bronze, quarantine and log tables
is replaced in one Delta transaction per table, and the log is written last, so a batch
whose files have not changed since it was logged is skipped, and a crash half-way is
repaired by the next run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date
from functools import reduce

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from lakeml.core import tables
from lakeml.core.config import ColumnSpec, EnvConfig, SourceSpec, UseCaseConfig
from lakeml.core.errors import MissingDataError
from lakeml.lake import landing, silver
from lakeml.lake.readers import CORRUPT, META, read_raw

log = logging.getLogger(__name__)


def _parse(raw: Column, spec: ColumnSpec) -> Column:
    if spec.type == "timestamp" and spec.format:
        return F.try_to_timestamp(raw, F.lit(spec.format))
    if spec.type == "date" and spec.format:
        return F.try_to_date(raw, spec.format)
    if spec.type == "boolean":
        low = F.lower(F.trim(raw))
        return F.when(low.isin("true", "1", "yes"), True).when(low.isin("false", "0", "no"), False)
    return F.trim(raw).try_cast(spec.type) if spec.type != "string" else raw


def validate(raw: DataFrame, spec: SourceSpec) -> DataFrame:
    """Type the string columns of ``raw``; ``_reason`` is null for a good row, else why not.

    Pure: DataFrame in, DataFrame out. ``_raw`` is the record as it arrived, for the
    rows that are quarantined (null for accepted rows).
    """
    checks = [(F.col(CORRUPT).isNotNull(), F.coalesce(F.col("_problem"), F.lit("malformed record")))]
    values: dict[str, Column] = {}
    for name, cs in spec.columns.items():
        r = F.col(name)
        empty = r.isNull() | (F.trim(r) == "")
        value = F.when(~empty, _parse(r, cs))
        if cs.required:
            checks.append((empty & F.col(CORRUPT).isNull(), F.lit(f"missing required {name}")))
        checks.append((~empty & value.isNull(), F.concat(F.lit(f"{name}: cannot read '"), F.substring(r, 1, 80), F.lit(f"' as {cs.type}"))))
        values[name] = value
    # the message (an array of every reason, joined) is built only for a row that has one
    bad = reduce(lambda a, b: a | b, [c for c, _ in checks])
    reason = F.when(bad, F.concat_ws("; ", F.array_compact(F.array(*[F.when(c, msg) for c, msg in checks]))))
    # one row per key and batch: later duplicates are quarantined, not silently dropped.
    # Ranked on the raw strings (the first file, then a hash of the record, wins), so the
    # record text is built only for the rows that are quarantined.
    w = Window.partitionBy(*[values[k] for k in spec.keys], F.col("_batch_date")).orderBy("_source_file", F.xxhash64(*[F.col(c) for c in spec.columns], F.col(CORRUPT)))
    df = raw.withColumn("_pre", reason)
    df = df.withColumn("_pre", F.when(F.col("_pre").isNull() & (F.row_number().over(w) > 1), F.lit("duplicate key within batch")).otherwise(F.col("_pre")))
    raw_text = F.coalesce(F.col(CORRUPT), F.to_json(F.struct(*[F.col(c) for c in spec.columns])))
    return df.select(*[v.alias(n) for n, v in values.items()], F.when(F.col("_pre").isNotNull(), raw_text).alias("_raw"), F.col("_pre").alias("_reason"), *META)


def accepted_rows(validated: DataFrame, spec: SourceSpec) -> DataFrame:
    return validated.where(F.col("_reason").isNull()).select(*spec.columns, *META)


def quarantined_rows(validated: DataFrame, source: str) -> DataFrame:
    return validated.where(F.col("_reason").isNotNull()).select(
        F.lit(source).alias("source"),
        F.col("_batch_date").alias("batch_date"),
        F.col("_source_file").alias("source_file"),
        F.col("_raw").alias("raw"),
        F.col("_reason").alias("reason"),
    )


@dataclass
class SourceReport:
    source: str
    batches: int
    rows_read: int
    rows_accepted: int
    rows_quarantined: int
    batch_dates: list[date] = field(default_factory=list)  # the batches this run ingested


def logged(spark: SparkSession, uc: UseCaseConfig) -> dict[tuple[str, date], str]:
    """(source, batch date) -> fingerprint of every batch in the ingest log."""
    log_table = uc.table(uc.tables.ingest_log)
    if not tables.exists(spark, log_table):
        return {}
    return {(r.source, r.batch_date): r.fingerprint for r in spark.table(log_table).select("source", "batch_date", "fingerprint").collect()}


def pending(spark: SparkSession, uc: UseCaseConfig, batches: list[landing.Batch], force: bool,
            done: dict[tuple[str, date], str] | None = None) -> dict[str, list[landing.Batch]]:
    """Per source, the batches whose files are new or changed since they were logged."""
    done = {} if force else (logged(spark, uc) if done is None else done)
    out: dict[str, list[landing.Batch]] = {}
    for source in uc.sources:
        out[source] = [
            b for b in batches if b.files.get(source) and done.get((source, b.batch_date)) != b.fingerprint(source)
        ]
    return out


def ingest(
    spark: SparkSession,
    env: EnvConfig,
    uc: UseCaseConfig,
    batch_dates: list[date] | None = None,
    force: bool = False,
) -> list[SourceReport]:
    """Ingest pending landing batches (or just ``batch_dates``) of every source."""
    tables.ensure_database(spark, uc.database)
    zone = env.landing_zone(uc.name)
    batches = landing.list_batches(spark, zone)
    if batch_dates:
        wanted = set(batch_dates)
        missing = wanted - {b.batch_date for b in batches}
        if missing:
            raise MissingDataError(f"no landing batch for {', '.join(sorted(str(d) for d in missing))} under {zone}")
        batches = [b for b in batches if b.batch_date in wanted]
        force = True
    if not batches:
        if not tables.exists(spark, uc.table(uc.tables.ingest_log)):
            raise MissingDataError(empty_zone_message(uc, zone))
        log.warning("landing zone %s has no batches (all archived?): nothing to ingest", zone)
    done = logged(spark, uc)
    reports = []
    for source, todo in pending(spark, uc, batches, force, done).items():
        if not todo:
            log.info("%s: nothing new", source)
            continue
        # a batch ingested before, now with other files, may take versions away: silver is
        # then rebuilt from bronze; new batches are merged
        again = force or any((source, b.batch_date) in done for b in todo)
        reports.append(ingest_source(spark, uc, source, todo, rebuild_silver=again))
    return reports


def ingest_source(spark: SparkSession, uc: UseCaseConfig, source: str, batches: list[landing.Batch], rebuild_silver: bool = False) -> SourceReport:
    """One source's batches: bronze slices replaced, silver merged (or rebuilt), quarantine
    slices replaced, and the ingest log written last (what makes the batches done)."""
    spec = uc.sources[source]
    files = [f.path for b in batches for f in b.files[source]]
    validated = validate(read_raw(spark, spec, files), spec).persist()
    try:
        dates = [b.batch_date for b in batches]
        bronze = uc.table(spec.table)
        stats = {
            r["_batch_date"]: (r["read"], r["bad"])
            for r in validated.groupBy("_batch_date")
            .agg(F.count(F.lit(1)).alias("read"), F.count("_reason").alias("bad"))
            .collect()
        }
        accepted = sum(read - bad for read, bad in stats.values())
        # not partitioned (a partition per arrival day makes many small files): the files are
        # range-partitioned on the source's time, so a time filter skips the rest by their
        # min/max statistics, and the replaceWhere on _batch_date touches only these batches
        _, span = silver.layout(accepted_rows(validated, spec), spec) if accepted else (0, 0)
        good = silver.laid_out(accepted_rows(validated, spec), spec, accepted, span)
        tables.replace_where(good, bronze, tables.in_predicate("_batch_date", dates))
        if rebuild_silver:
            silver.rebuild(spark, uc, source)
        else:
            silver.merge(spark, uc, source, accepted_rows(validated, spec))
        slice_pred = f"source = {tables.sql_literal(source)} AND {tables.in_predicate('batch_date', dates)}"
        tables.replace_where(quarantined_rows(validated, source).coalesce(1), uc.table(uc.tables.quarantine), slice_pred)
        log_rows = []
        for b in batches:
            read, bad = stats.get(b.batch_date, (0, 0))
            log_rows.append((source, b.batch_date, b.fingerprint(source), len(b.files[source]), read, read - bad, bad))
        log_df = spark.createDataFrame(
            log_rows,
            "source string, batch_date date, fingerprint string, files int, rows_read long, rows_accepted long, rows_quarantined long",
        ).withColumn("ingested_at", F.current_timestamp())
        tables.replace_where(log_df.coalesce(1), uc.table(uc.tables.ingest_log), slice_pred)
    finally:
        validated.unpersist()
    rep = SourceReport(
        source,
        len(batches),
        sum(r[4] for r in log_rows),
        sum(r[5] for r in log_rows),
        sum(r[6] for r in log_rows),
        sorted(dates),
    )
    log.info("ingested %s: %d batches, %d read, %d accepted, %d quarantined", source, rep.batches, rep.rows_read, rep.rows_accepted, rep.rows_quarantined)
    return rep


def empty_zone_message(uc: UseCaseConfig, zone: str) -> str:
    """What to do about a landing zone that has never held anything."""
    how = f"land files as {zone}/<YYYY-MM-DD>/<source>/<files> (./spark-submit.sh --usecase {uc.name} jobs/landing.py upload ...)"
    if uc.demo is not None:
        how += f", or write the demo data with ./spark-submit.sh --usecase {uc.name} jobs/generate.py"
    else:
        how += f"; {uc.name} has no demo data maker (no demo: in {uc.source_file})"
    return f"the landing zone {zone} of use case {uc.name} is empty and nothing was ever ingested: {how}"
