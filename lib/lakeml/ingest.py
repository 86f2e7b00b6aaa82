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
import re
from dataclasses import dataclass
from datetime import date
from functools import reduce

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, StringType, StructField, StructType

from lakeml import landing, tables
from lakeml.config import ColumnSpec, EnvConfig, SourceSpec, UseCaseConfig

log = logging.getLogger(__name__)

CORRUPT = "_corrupt_record"
META = ["_batch_date", "_source_file"]
NOT_UTF8 = "malformed record: not valid UTF-8 text"
# trimmed from both ends of a JSON line: what Java regex \s matches, and the byte-order mark
WHITESPACE = " \t\n\x0b\f\r\ufeff"


def _norm_path(c: Column) -> Column:
    # Spark reports file:///x, Hadoop file:/x; compare without the scheme
    return F.regexp_replace(c, r"^file:/+", "/")


def _batch_of(path: Column) -> Column:
    return F.to_date(F.regexp_extract(path, r"/(\d{4}-\d{2}-\d{2})/[^/]+/[^/]+$", 1))


def csv_header(spec: SourceSpec) -> str:
    return ",".join(spec.columns)


def _string_schema(spec: SourceSpec) -> StructType:
    return StructType([StructField(c, StringType()) for c in spec.columns])


def _with_meta(df: DataFrame) -> DataFrame:
    path = F.col("_metadata.file_path")
    return df.withColumn("_source_file", _norm_path(path)).withColumn("_batch_date", _batch_of(path))


def read_raw(spark: SparkSession, spec: SourceSpec, files: list[str], headers: dict[str, str | None] | None = None) -> DataFrame:
    """Read landed files of one source: every declared column as a string, plus
    ``_corrupt_record`` (the raw text of a record that could not be read), ``_problem``
    (why not, when known), ``_source_file`` and ``_batch_date``.

    CSV is read line by line so that a line with too few or too many fields is caught
    (Spark's CSV reader would pad or cut it silently), and files whose header is not the
    declared one are not parsed by position: their lines come back as corrupt records.
    Quoted fields may hold commas, not line breaks.

    JSON is read line by line too, each line parsed as one object: a line holding two
    objects or trailing garbage is a corrupt record (Spark's JSON reader would keep the
    first object and drop the rest silently). In CSV and JSON a line that is not valid
    UTF-8 is a corrupt record (it would otherwise be read with replacement characters),
    and a leading byte-order mark is ignored.

    Parquet files that cannot be read (empty, truncated, not Parquet) each come back as
    one corrupt record, and files that disagree on a column's type are read separately.
    """
    cols = list(spec.columns)
    if spec.format == "parquet":
        return _read_parquet(spark, spec, files)
    utf8 = F.is_valid_utf8(F.col("value"))
    raw_line = F.make_valid_utf8(F.col("value"))
    if spec.format == "json":
        # each derived value is its own column, computed once per line (a regex or a JSON
        # parse repeated inside every CASE WHEN made this read four times slower)
        lines = _with_meta(spark.read.text(files)).withColumn("_t", F.btrim(F.col("value"), F.lit(WHITESPACE)))
        lines = lines.where(F.col("_t") != "")  # blank lines are not records
        # wrapped in [ ]: one object parses to an array of one; a second object or
        # trailing garbage makes the array invalid (or longer) instead of being dropped
        parsed = F.from_json(F.concat(F.lit("["), F.col("_t"), F.lit("]")), ArrayType(_string_schema(spec)), {"mode": "PERMISSIVE"})
        lines = lines.withColumn("_p", parsed).withColumn("_n", F.coalesce(F.size("_p"), F.lit(0))).withColumn("_utf8", utf8)
        lines = lines.withColumn("_ok", F.col("_utf8") & F.col("_t").startswith("{") & F.col("_t").endswith("}") & (F.col("_n") == 1))
        problem = (
            F.when(~F.col("_utf8"), F.lit(NOT_UTF8))
            .when(F.col("_n") > 1, F.lit("malformed record: more than one JSON object on the line"))
            .when(~F.col("_ok"), F.lit("malformed record: not a JSON object"))
        )
        return lines.select(
            *[F.when(F.col("_ok"), F.col("_p")[0][c]).alias(c) for c in cols],
            F.when(~F.col("_ok"), raw_line).alias(CORRUPT),
            problem.alias("_problem"),
            *META,
        )
    # CSV
    expected = csv_header(spec)
    headers = headers if headers is not None else {f: landing.first_line(spark, f) for f in files}
    hdr = spark.createDataFrame(_norm(headers, files), "_f string, _h string")
    lines = _with_meta(spark.read.text(files)).join(F.broadcast(hdr), F.col("_source_file") == F.col("_f"))
    # each file's first line is its header (compared byte for byte: a first line that is
    # not UTF-8 text is no header but a malformed record); a byte-order mark before it is
    # not part of it (Hadoop's line reader drops it, Python's keeps it); blank lines are
    # not records
    header = (F.col("value") == F.col("_h")) | (F.col("value") == F.concat(F.lit("\ufeff"), F.col("_h")))
    lines = lines.where(~header & (F.trim(F.col("value")) != ""))
    good_header = F.trim(F.col("_h")) == F.lit(expected)
    fields = F.size(F.split(F.col("value"), r',(?=(?:[^"]*"[^"]*")*[^"]*$)'))
    parsed = F.from_csv(F.col("value"), ", ".join(f"`{c}` STRING" for c in cols), {"mode": "PERMISSIVE"})
    # computed once per line, as columns (see the JSON branch)
    lines = lines.withColumn("_fields", fields).withColumn("_p", parsed).withColumn("_utf8", utf8).withColumn("_good_header", good_header)
    lines = lines.withColumn("_ok", F.col("_utf8") & F.col("_good_header") & (F.col("_fields") == len(cols)))
    problem = (
        F.when(~F.col("_utf8"), F.lit(NOT_UTF8))
        .when(~F.col("_good_header"), F.concat(F.lit(f"header mismatch: expected '{expected}', file has '"), F.col("_h"), F.lit("'")))
        .when(F.col("_fields") != len(cols), F.concat(F.lit(f"malformed record: expected {len(cols)} fields, found "), F.col("_fields").cast("string")))
    )
    return lines.select(
        *[F.when(F.col("_ok"), F.col("_p")[c]).alias(c) for c in cols],
        F.when(~F.col("_ok"), raw_line).alias(CORRUPT),
        problem.alias("_problem"),
        *META,
    )


def _read_parquet(spark: SparkSession, spec: SourceSpec, files: list[str]) -> DataFrame:
    none = F.lit(None).cast("string")

    def as_strings(df: DataFrame) -> DataFrame:
        df = _with_meta(df)
        present = set(df.columns)
        return df.select(
            *[(F.col(c).cast("string") if c in present else none).alias(c) for c in spec.columns], none.alias(CORRUPT), none.alias("_problem"), *META
        )

    try:
        # one job reads every footer: the merged schema, or an error when a file is not
        # Parquet or two files disagree on a column's type
        return as_strings(spark.read.option("mergeSchema", "true").parquet(*files))
    except Exception as e:  # noqa: BLE001 - sorted out file by file below, which re-raises what it cannot explain
        log.warning("parquet files of one batch do not read together (%s); reading them one by one", str(e).split("\n")[0][:200])
    by_schema: dict[str, list[str]] = {}
    unreadable: list[tuple[str, str]] = []
    for f in files:
        try:
            by_schema.setdefault(spark.read.parquet(f).schema.json(), []).append(f)
        except Exception as e:
            msg = str(e)
            if "CANNOT_READ_FILE_FOOTER" not in msg:
                raise
            why = re.search(r"is (not a Parquet file[^\n]*)", msg)
            unreadable.append((f, f"unreadable file: {why.group(1) if why else 'cannot read the Parquet footer'}"))
    frames = [as_strings(spark.read.parquet(*group)) for group in by_schema.values()]
    if unreadable:
        bad = spark.createDataFrame(unreadable, "_path string, _problem string")
        frames.append(
            bad.select(
                *[none.alias(c) for c in spec.columns],
                F.lit("").alias(CORRUPT),  # no record text: the whole file is unreadable
                "_problem",
                _batch_of(F.col("_path")).alias("_batch_date"),
                _norm_path(F.col("_path")).alias("_source_file"),
            )
        )
    return reduce(DataFrame.unionByName, frames)


def _norm(headers: dict[str, str | None], files: list[str]) -> list[tuple[str, str]]:
    return [(landing.local_path(f), (headers.get(f) or "").removeprefix("\ufeff")) for f in files]


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


def pending(spark: SparkSession, uc: UseCaseConfig, batches: list[landing.Batch], force: bool) -> dict[str, list[landing.Batch]]:
    """Per source, the batches whose files are new or changed since they were logged."""
    done: dict[tuple[str, date], str] = {}
    log_table = uc.table(uc.tables.ingest_log)
    if not force and tables.exists(spark, log_table):
        for r in spark.table(log_table).select("source", "batch_date", "fingerprint").collect():
            done[(r.source, r.batch_date)] = r.fingerprint
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
    batches = landing.list_batches(spark, env.landing_dir)
    if batch_dates:
        wanted = set(batch_dates)
        missing = wanted - {b.batch_date for b in batches}
        if missing:
            raise FileNotFoundError(f"no landing batch for {sorted(str(d) for d in missing)} under {env.landing_dir}")
        batches = [b for b in batches if b.batch_date in wanted]
        force = True
    if not batches:
        log.warning("landing zone %s has no batches; run jobs/generate.py or upload files", env.landing_dir)
    reports = []
    for source, todo in pending(spark, uc, batches, force).items():
        if not todo:
            log.info("%s: nothing new", source)
            continue
        reports.append(ingest_source(spark, uc, source, todo))
    return reports


def ingest_source(spark: SparkSession, uc: UseCaseConfig, source: str, batches: list[landing.Batch]) -> SourceReport:
    spec = uc.sources[source]
    files = [f.path for b in batches for f in b.files[source]]
    validated = validate(read_raw(spark, spec, files), spec).persist()
    try:
        dates = [b.batch_date for b in batches]
        bronze = uc.table(spec.table)
        # not partitioned: a partition per arrival day makes many small files; the
        # replaceWhere on _batch_date still touches only files holding those batches
        tables.replace_where(accepted_rows(validated, spec), bronze, tables.in_predicate("_batch_date", dates))
        slice_pred = f"source = {tables.sql_literal(source)} AND {tables.in_predicate('batch_date', dates)}"
        tables.replace_where(quarantined_rows(validated, source).coalesce(1), uc.table(uc.tables.quarantine), slice_pred)
        stats = {
            r["_batch_date"]: (r["read"], r["bad"])
            for r in validated.groupBy("_batch_date")
            .agg(F.count(F.lit(1)).alias("read"), F.count("_reason").alias("bad"))
            .collect()
        }
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
    )
    log.info("ingested %s: %d batches, %d read, %d accepted, %d quarantined", *vars(rep).values())
    return rep
