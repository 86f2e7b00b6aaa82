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
repaired by the next run. A slice known to be absent (a batch the log does not know, in a
table still at the version the last completed ingest recorded) is appended rather than
replaced: the same result without the replace's scan of the table's file list.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import date
from functools import reduce

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from lakeml.core import parallel, tables
from lakeml.core.config import EnvConfig, SourceSpec, UseCaseConfig
from lakeml.core.errors import MissingDataError
from lakeml.lake import conform, conservation, drift, landing, readers, silver
from lakeml.lake.readers import CORRUPT, DRIFT, LINES, META, RESCUED, SHAPE, SKIP, read_raw
from lakeml.lake.values import parse_columns

log = logging.getLogger(__name__)

PARALLEL_SOURCES = 8  # sources loaded at once


def validate(raw: DataFrame, spec: SourceSpec, duplicates: bool = True) -> DataFrame:
    """Type the string columns of ``raw``; ``_reason`` is null for a good row, else why not.

    Pure: DataFrame in, DataFrame out. ``_raw`` is the record as it arrived, for the
    rows that are quarantined (null for accepted rows). Rows marked in ``_skip`` (blank
    lines, CSV headers) are no records: no reason, not accepted, kept for the counts.
    ``duplicates``: rank the rows of each key and batch (a window: every row shuffled) to
    quarantine the later ones; without it the rows are typed only, which is the same
    result when :func:`key_repeats` finds no key and batch with more than one row.
    """
    for c in (SKIP, SHAPE):
        if c not in raw.columns:
            raw = raw.withColumn(c, F.lit(None).cast("string"))
    record = F.col(SKIP).isNull()
    checks = [(F.col(CORRUPT).isNotNull(), F.coalesce(F.col("_problem"), F.lit("malformed record"))),
              (F.col(SHAPE).isNotNull(), F.col(SHAPE))]
    values: dict[str, Column] = {}
    raw = parse_columns(raw, spec.columns, spec.years)  # __v{i}, __w{i}: column i's typed value, and why not
    for i, (name, cs) in enumerate(spec.columns.items()):
        r = F.col(name)
        empty = r.isNull() | (F.trim(r) == "")
        value, why = F.col(f"__v{i}"), F.col(f"__w{i}")
        if cs.required:
            checks.append((empty & F.col(CORRUPT).isNull(), F.lit(f"missing required {name}")))
        checks.append((~empty & why.isNotNull(), why))
        values[name] = F.when(~empty, value)
    # the message (an array of every reason, joined) is built only for a row that has one
    bad = record & reduce(lambda a, b: a | b, [c for c, _ in checks])
    reason = F.when(bad, F.concat_ws("; ", F.array_compact(F.array(*[F.when(c, msg) for c, msg in checks]))))
    # one row per key and batch: later duplicates are quarantined, not silently dropped.
    # Ranked on the raw strings (the first file, then a hash of the record, wins), so the
    # record text is built only for the rows that are quarantined.
    w = Window.partitionBy(*[values[k] for k in spec.keys], F.col("_batch_date")).orderBy(
        "_source_file", F.xxhash64(*[F.col(c) for c in spec.columns], F.col(CORRUPT)))
    df = raw.withColumn("_pre", reason)
    if duplicates:
        dup = record & F.col("_pre").isNull() & (F.row_number().over(w) > 1)
        df = df.withColumn("_pre", F.when(dup, F.lit("duplicate key within batch")).otherwise(F.col("_pre")))
    # the record as read: its declared values and, when there are any, the rescued ones
    # (to_json leaves null fields out: a row without rescued values is unchanged)
    rescued = [F.col(RESCUED).alias(RESCUED)] if RESCUED in raw.columns else []
    raw_text = F.coalesce(F.col(CORRUPT), F.to_json(F.struct(*[F.col(c) for c in spec.columns], *rescued)))
    return df.select(*[v.alias(n) for n, v in values.items()], F.when(F.col("_pre").isNotNull(), raw_text).alias("_raw"),
                     F.col("_pre").alias("_reason"),
                     SKIP, F.coalesce(F.col(CORRUPT) == "", F.lit(False)).alias("_whole"), *META,
                     *[c for c in (LINES, RESCUED, DRIFT) if c in raw.columns])


@dataclass(frozen=True)
class KeyRepeats:
    """What :func:`key_repeats` found among the good rows' keys."""

    within_batch: bool  # a key and batch may have more than one row: the duplicate ranking can change something
    across_batches: bool  # a key has good rows in more than one batch: silver must pick the newest


def key_repeats(typed: DataFrame, spec: SourceSpec) -> KeyRepeats:
    """Whether a good row of ``typed`` (:func:`validate` without ``duplicates``) shares its
    key with another row of its batch (then the duplicate ranking can change something), and
    whether a key has good rows in more than one batch (then silver is more than bronze).
    One aggregate of the keys: the usual answer, no and no, costs a shuffle of the keys,
    where the ranking and silver's newest-per-key window shuffle whole rows. Within a batch it
    errs only towards yes (a key with three rows over two batches), which costs the ranking,
    never a row. Grouped on a 64-bit hash of the key, not the key: half the time at 46 M keys
    (29 s against 61 s); two keys that share a hash err towards yes too."""
    good = F.col("_reason").isNull() & F.col(SKIP).isNull()
    keys = typed.where(F.col(SKIP).isNull()).groupBy(F.xxhash64(*spec.keys).alias("_key")).agg(
        F.count(F.lit(1)).alias("n"), F.count(F.when(good, 1)).alias("g"), F.min("_batch_date").alias("lo"),
        F.max("_batch_date").alias("hi"), F.min(F.when(good, F.col("_batch_date"))).alias("glo"),
        F.max(F.when(good, F.col("_batch_date"))).alias("ghi"))
    within = (F.col("n") > 1) & (F.col("g") > 0) & ((F.col("lo") == F.col("hi")) | (F.col("n") > 2))
    r = keys.agg(F.max(within).alias("within"), F.max(F.col("glo") < F.col("ghi")).alias("across")).first()
    return KeyRepeats(bool(r.within), bool(r.across))


def accepted_rows(validated: DataFrame, spec: SourceSpec) -> DataFrame:
    """The accepted rows as bronze holds them: the declared columns, the batch and file, and
    the values of undeclared columns (``_rescued_data``, null for most rows)."""
    rescued = F.col(RESCUED) if RESCUED in validated.columns else F.lit(None).cast("string")
    return validated.where(F.col("_reason").isNull() & F.col(SKIP).isNull()).select(*spec.columns, *META, rescued.alias(RESCUED))


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
    schema_drift: list[str] = field(default_factory=list)  # per file whose columns differ from conf: what was done


class Ingested(list):
    """What a run ingested: a ``SourceReport`` per source, and the folders it left in landing."""

    def __init__(self, reports: list[SourceReport], refused: list[landing.Refused]):
        super().__init__(reports)
        self.refused = refused


LOG_SCHEMA = (
    "source string, batch_date date, fingerprint string, files int, rows_read long, rows_accepted long, "
    "rows_quarantined long, bronze_version long, quarantine_version long, "
    "file_counts array<struct<file: string, rows_read: long, rows_accepted: long, rows_quarantined: long>>, "
    "schema_drift string"
)


@dataclass
class LogState:
    """What the ingest log says: each logged batch's fingerprint, and the versions of the
    bronze tables (per source) and of the quarantine table that the last completed ingest
    left. A table still at that version holds no slice of a batch the log does not know
    (what a run that crashed before writing the log leaves behind)."""

    fingerprints: dict[tuple[str, date], str] = field(default_factory=dict)
    bronze_versions: dict[str, int] = field(default_factory=dict)
    quarantine_version: int | None = None


def read_log(spark: SparkSession, uc: UseCaseConfig) -> LogState:
    log_table = uc.table(uc.tables.ingest_log)
    if not tables.exists(spark, log_table):
        return LogState()
    df = tables.read(spark, log_table)
    versions = [c for c in ("bronze_version", "quarantine_version") if c in df.columns]  # a log from before them: none
    state = LogState()
    for r in df.select("source", "batch_date", "fingerprint", *versions).collect():
        state.fingerprints[(r.source, r.batch_date)] = r.fingerprint
        d = r.asDict()
        if d.get("bronze_version") is not None:
            state.bronze_versions[r.source] = max(state.bronze_versions.get(r.source, -1), d["bronze_version"])
        if d.get("quarantine_version") is not None:
            state.quarantine_version = max(state.quarantine_version or -1, d["quarantine_version"])
    return state


def logged(spark: SparkSession, uc: UseCaseConfig) -> dict[tuple[str, date], str]:
    """(source, batch date) -> fingerprint of every batch in the ingest log."""
    return read_log(spark, uc).fingerprints


def pending(spark: SparkSession, uc: UseCaseConfig, batches: list[landing.Batch], force: bool,
            done: dict[tuple[str, date], str] | None = None) -> dict[str, list[landing.Batch]]:
    """Per source, the batches whose files are new or changed since they were logged."""
    done = {} if force else (logged(spark, uc) if done is None else done)
    out: dict[str, list[landing.Batch]] = {}
    for source in uc.sources:
        out[source] = [
            b for b in batches if b.files.get(source) and not b.ingested(source, done)
        ]
    return out


def _version(spark: SparkSession, name: str) -> int | None:
    return tables.version(spark, name) if tables.exists(spark, name) else None


def _untouched(spark: SparkSession, name: str, recorded: int | None) -> tuple[bool, int | None]:
    """Whether ``name`` does not exist or is still at the version the last completed ingest
    left; and its version (None: no table)."""
    current = _version(spark, name)
    return current is None or current == recorded, current


def _write_slices(df: DataFrame, name: str, predicate: str, absent: bool, merge_schema: bool = False) -> None:
    """Replace the slices ``predicate`` names with ``df``; when they are known to be absent
    (new batches, no leftover of a crashed run) a plain append does it without the
    replaceWhere's scan of the table's file list (about 3x the cost of the append)."""
    if absent and tables.exists(df.sparkSession, name):
        tables.append(df, name, merge_schema=merge_schema)
    else:
        tables.replace_where(df, name, predicate, merge_schema=merge_schema)


def ingest(
    spark: SparkSession,
    env: EnvConfig,
    uc: UseCaseConfig,
    batch_dates: list[date] | None = None,
    force: bool = False,
    today: date | None = None,
) -> Ingested:
    """Ingest pending landing batches (or just ``batch_dates``) of every source; a folder
    dated beyond ``today`` (UTC) and the use case's ``landing.max_days_ahead`` stays in landing.

    Per source: its bronze slices, then its silver table. Then, for every source at once,
    the quarantine slices and last the ingest log (what makes the batches done): a crash
    before the log leaves batches that the next run ingests again, replacing what the
    crashed run wrote."""
    tables.ensure_database(spark, uc.database)
    zone = env.landing_zone(uc.name)
    batches, refused = landing.dated_batches(spark, zone, uc.landing.max_days_ahead, batch_dates, today)
    force = force or bool(batch_dates)
    for r in refused:
        log.warning("%s: %s", r.folder, r.reason)
    for folder in sorted({f"{zone}/{b.batch_date}/{s}" for b in batches for s in b.files if s not in uc.sources}):
        log.warning("%s: not a source of use case %s (sources: in %s): not read", folder, uc.name, uc.source_file or "conf")
    if not batches:
        if not tables.exists(spark, uc.table(uc.tables.ingest_log)):
            raise MissingDataError(landing.empty_zone_message(uc, zone, refused))
        log.warning("landing zone %s has no batches (all archived?): nothing to ingest", zone)
    t0 = time.perf_counter()
    state = read_log(spark, uc)
    done = state.fingerprints
    log.info("ingest: %d landed batches listed, the log read in %.1f s", len(batches), time.perf_counter() - t0)

    def one(source: str, todo: list[landing.Batch]):
        # new batches into a bronze table that holds nothing the log does not know: appended,
        # and merged into silver. A batch ingested before (now with other files), or a leftover
        # of a crashed run, may take versions away: its slices are replaced and silver is
        # rebuilt from bronze
        again = force or any((source, b.batch_date) in done for b in todo)
        untouched, version = _untouched(spark, uc.table(uc.sources[source].table), state.bronze_versions.get(source))
        clean = not again and untouched and version is not None
        return ingest_source(spark, uc, source, todo, rebuild_silver=not clean, append_to=version if clean else None)

    work = {s: todo for s, todo in pending(spark, uc, batches, force, done).items() if todo}
    conform.conform(spark, uc, list(work))  # conf and tables agree before anything is written, or it stops here
    for source in uc.sources:
        if source not in work:
            log.info("%s: nothing new", source)
    # the sources are independent tables: loaded side by side, so that one source's Delta
    # commits overlap another's reading and typing (a daily batch is mostly commit latency)
    futures = parallel.submit_all(spark, lambda st: one(*st), work.items(), PARALLEL_SOURCES)
    reports, log_rows, quarantined, errors = [], [], [], []
    for f in futures:
        if f.exception() is not None:
            errors.append(f.exception())
            continue
        rep, rows, bad = f.result()
        reports.append(rep)
        log_rows += rows
        if bad is not None:
            quarantined.append(bad)
    if errors:
        for q in quarantined:
            q.unpersist()
        raise errors[0]  # the log is not written: the next run ingests these batches again
    if not reports:
        return Ingested(reports, refused)
    t0 = time.perf_counter()
    try:
        _finish(spark, uc, state, done, log_rows, quarantined)
        log.info("ingest: quarantine and log written in %.1f s", time.perf_counter() - t0)
    finally:
        for q in quarantined:
            q.unpersist()
    return Ingested(reports, refused)


def _finish(spark: SparkSession, uc: UseCaseConfig, state: LogState, done: dict, log_rows: list[tuple],
            quarantined: list[DataFrame]) -> None:
    """The quarantine slices of every ingested batch, then the ingest log, one commit each."""
    slices: dict[str, list[date]] = {}
    for r in log_rows:
        slices.setdefault(r[0], []).append(r[1])
    new = not any(k in done for k in ((s, d) for s, ds in slices.items() for d in ds))
    q_table = uc.table(uc.tables.quarantine)
    absent = new and _untouched(spark, q_table, state.quarantine_version)[0]
    if quarantined or not absent or not tables.exists(spark, q_table):
        frames = quarantined or [quarantined_rows(spark.createDataFrame([], QUARANTINE_SCHEMA), "")]
        q = reduce(DataFrame.unionByName, frames) if len(frames) > 1 else frames[0]
        _write_slices(q.coalesce(1), q_table, tables.slices_predicate("source", "batch_date", slices), absent)
    q_version = _version(spark, q_table)
    log_df = spark.createDataFrame([(*r[:8], q_version, *r[8:]) for r in log_rows], LOG_SCHEMA)
    log_df = log_df.withColumn("ingested_at", F.current_timestamp())
    _write_slices(log_df.coalesce(1), uc.table(uc.tables.ingest_log), tables.slices_predicate("source", "batch_date", slices), new,
                  merge_schema=True)


QUARANTINE_SCHEMA = "_batch_date date, _source_file string, _raw string, _reason string"


def ingest_source(spark: SparkSession, uc: UseCaseConfig, source: str, batches: list[landing.Batch],
                  rebuild_silver: bool = False, append_to: int | None = None) -> tuple[SourceReport, list[tuple], DataFrame | None]:
    """One source's batches: bronze slices written, silver merged (or rebuilt). With
    ``append_to`` (bronze's version, which holds no slice of these batches) the rows are
    appended, else the slices replaced. Returns the report, the source's ingest log rows
    (without the quarantine version) and its quarantined rows (cached; None when there are
    none)."""
    spec = uc.sources[source]
    listed = {f.path: (b.batch_date, f) for b in batches for f in b.files[source]}
    files = list(listed)
    took = [time.perf_counter()]  # phase ends: read and typed, bronze, silver

    def phase():
        took.append(time.perf_counter())

    t = F.when(F.col("_reason").isNull() & F.col(SKIP).isNull(), F.col(silver.time_column(spec)))
    unreadable = readers.unreadable_files(spark, spec, files)
    # the conservation count reads the files apart from the reader: its own small job, run
    # beside the typing pass (a daily batch is mostly job latency); again after it, should
    # the typing pass find a file that breaks off mid-way
    scanned = [f for f in files if f not in unreadable]
    scan = parallel.start(spark, lambda: readers.count_rows(spark, spec, scanned))
    while True:
        raw = read_raw(spark, spec, files, batches={p: d for p, (d, _) in listed.items()}, unreadable=unreadable)
        validated = validate(raw, spec, duplicates=False).persist(silver.LANDED)
        try:
            # the rows are typed and cached once; only when a key of a batch has more than
            # one row are they read and typed again with the duplicate ranking
            repeats = key_repeats(validated, spec)
            if repeats.within_batch:
                validated.unpersist()
                validated = validate(raw, spec).persist(silver.LANDED)
            # one pass: per file, its records and lines (blank ones and headers apart), rows
            # quarantined, and the time span of the accepted rows
            per_file = (
                validated.groupBy("_source_file", "_batch_date")
                .agg(F.count(F.lit(1)).alias("records"), F.sum(LINES).alias("lines"), F.count(SKIP).alias("skipped"),
                     F.count("_reason").alias("bad"),
                     F.min(t).alias("lo"), F.max(t).alias("hi"), F.max("_whole").alias("whole"), F.max(DRIFT).alias("drift"))
                .collect()
            )
            break
        except Exception as e:
            validated.unpersist()
            broken = readers.failed_file(e, files)  # a compressed file that breaks off mid-way
            if broken is None or broken in unreadable:
                raise
            unreadable[broken] = readers.broken_reason(e)
            log.warning("%s: %s: %s", source, broken, unreadable[broken])
    try:
        whole = {r["_source_file"] for r in per_file if r["whole"]}  # a compressed file that broke off, found by the reader
        readable = [f for f in files if f not in unreadable and readers.real_path(f) not in whole]
        in_files = scan.result() if readable == scanned and scan.exception() is None else readers.count_rows(spark, spec, readable)
        counts = conservation.check(spec, source, listed, per_file, in_files)
        drifted = drift.per_file(spec, source, per_file)
        stats: dict[date, dict] = {}
        for r in per_file:
            st = stats.setdefault(r["_batch_date"], {"read": 0, "bad": 0, "lo": None, "hi": None})
            st["read"] += r["records"] - r["skipped"]
            st["bad"] += r["bad"]
            for k, pick in (("lo", min), ("hi", max)):
                if r[k] is not None:
                    st[k] = r[k] if st[k] is None else pick(st[k], r[k])
        dates = [b.batch_date for b in batches]
        bronze = uc.table(spec.table)
        drift.add_rescued_column(spark, uc, source)
        phase()
        accepted = sum(r["read"] - r["bad"] for r in stats.values())
        bad = sum(r["bad"] for r in stats.values())
        # not partitioned (a partition per arrival day makes many small files): the files are
        # range-partitioned on the source's time, so a time filter skips the rest by their
        # min/max statistics, and the replaceWhere on _batch_date touches only these batches
        los = [r["lo"] for r in stats.values() if r["lo"] is not None]
        his = [r["hi"] for r in stats.values() if r["hi"] is not None]
        span = silver.span_days(min(los), max(his)) if los else 0
        good = silver.laid_out(accepted_rows(validated, spec), spec, accepted, span)
        first_load = not tables.exists(spark, bronze)
        # a first load with no key in two batches: silver is bronze, row for row (no newest-per-key
        # window), written from the same laid-out rows, kept for the second write
        copy = rebuild_silver and first_load and not repeats.across_batches
        if copy:
            good = good.persist(silver.LANDED)
        try:
            _write_slices(good, bronze, tables.in_predicate("_batch_date", dates), append_to is not None)
            phase()
            # the version the append made, unless another writer committed in between: then the
            # next run finds bronze at another version than recorded and replaces (safe, slower)
            bronze_version = append_to + 1 if append_to is not None else _version(spark, bronze)
            if copy:
                silver.write_copy(spark, uc, source, good)
            elif rebuild_silver:  # a first load's bronze is these rows: silver from the cached ones, not a second read
                silver.rebuild(spark, uc, source, accepted_rows(validated, spec) if first_load else None)
            else:
                silver.merge(spark, uc, source, accepted_rows(validated, spec), unique_keys=len(batches) == 1 or not repeats.across_batches,
                             rows=accepted, span_days=span, time_range=(min(los), max(his)) if los else None)
        finally:
            good.unpersist()
        phase()
        q = None
        if bad:  # kept (they are few) for the one quarantine write of the run
            q = quarantined_rows(validated, source).persist()
            q.count()
    finally:
        validated.unpersist()
    log_rows = []
    for b in batches:
        r = stats.get(b.batch_date)
        read, nbad = (r["read"], r["bad"]) if r else (0, 0)
        files_of = sorted(b.files[source], key=lambda f: f.rel)
        detail = [(f.rel, *counts[readers.real_path(f.path)]) for f in files_of]
        drift_note = "; ".join(f"{f.rel}: {drifted[readers.real_path(f.path)]}" for f in files_of if readers.real_path(f.path) in drifted)
        log_rows.append((source, b.batch_date, b.fingerprint(source), len(b.files[source]), read, read - nbad, nbad, bronze_version,
                         detail, drift_note or None))
    rep = SourceReport(source, len(batches), sum(r[4] for r in log_rows), sum(r[5] for r in log_rows), sum(r[6] for r in log_rows),
                       sorted(dates), [f"{p}: {how}" for p, how in sorted(drifted.items())])
    read_s, bronze_s, silver_s = (b - a for a, b in zip(took, took[1:], strict=False))
    log.info("ingested %s: %d batches, %d read, %d accepted, %d quarantined (%.1f s: read and typed %.1f, bronze %.1f, silver %.1f)",
             source, rep.batches, rep.rows_read, rep.rows_accepted, rep.rows_quarantined, time.perf_counter() - took[0],
             read_s, bronze_s, silver_s)
    return rep, log_rows, q
