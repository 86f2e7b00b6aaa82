"""Read landed files of one source as strings, whatever their format, losing nothing.

Every declared column comes back as a string, plus ``_corrupt_record`` (the raw text of a
record that could not be read), ``_problem`` (why not, when known), ``_source_file`` and
``_batch_date`` (the arrival date from the landing layout ``<zone>/<date>/<source>/<file>``).
Typing against the schema is ``lakeml.lake.ingest.validate``'s job.
"""

from __future__ import annotations

import logging
import re
from functools import reduce

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, StringType, StructField, StructType

from lakeml.core.config import SourceSpec
from lakeml.lake import landing

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
