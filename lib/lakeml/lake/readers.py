"""Read landed files of one source as strings, whatever their format, losing nothing.

Every declared column comes back as a string, plus ``_corrupt_record`` (the raw text of a
record that could not be read), ``_problem`` (why not, when known), ``_source_file``,
``_batch_date`` (the arrival date from the landing layout ``<zone>/<date>/<source>/<file>``)
and ``_lines`` (the physical lines of the record). Typing against the schema is
``lakeml.lake.ingest.validate``'s job. Nothing is dropped here: every line of a text file is
in one row (blank lines and headers marked), so lines can be counted per file.
"""

from __future__ import annotations

import gzip
import logging
import re
import threading
import urllib.parse
import zlib
from datetime import date
from functools import reduce

import pyarrow as pa
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, BooleanType, DateType, LongType, MapType, StringType, StructField, StructType

from lakeml.core.config import SourceSpec
from lakeml.core.errors import LakemlError
from lakeml.lake import csvfile, landing
from lakeml.lake.stores import local_path

log = logging.getLogger(__name__)

CORRUPT = "_corrupt_record"
LINES = "_lines"  # the physical lines of a row's record (0: a file quarantined whole)
RESCUED = "_rescued_data"  # a row's values of columns conf does not declare, as a JSON object (schema_drift: rescue)
DRIFT = "_drift"  # how the columns of the row's file (CSV) or of the row (JSON, Parquet) differ from conf, or null
META = ["_batch_date", "_source_file"]
SKIP = "_skip"  # a line that is no record: "blank", or "header" (a CSV file's header line)
SHAPE = "_shape"  # why values have the wrong shape for their column (a JSON object in a string), or null
NOT_UTF8 = csvfile.NOT_UTF8
# compressions and archives Spark's readers do not open as the files they hold (.gz is read)
NOT_READ = (".zip", ".7z", ".rar", ".tar", ".tgz", ".xz", ".bz2", ".zst", ".lz4", ".snappy", ".deflate", ".br", ".lzo", ".z")


class ConservationError(LakemlError):
    """Rows of a landed file are neither accepted nor quarantined (a bug, never a data
    problem): the message names the files."""


def spark_path(path: str) -> str:
    """``path`` as Spark's readers take it: glob characters escaped (``a[1].csv`` is a file
    name, not a pattern)."""
    return re.sub(r"([\\\[\]{}*?])", r"\\\1", path)


def _real_path(uri: str) -> str:
    """Spark's ``_metadata.file_path`` is a URI (``a%20b.csv``); the real path, without the
    ``file:`` scheme, as the listing has it (``+`` is literal in a URI path)."""
    return urllib.parse.unquote(re.sub(r"^file:/+", "/", uri))


def real_path(path: str) -> str:
    """A listed path (``file:/x``, ``/x`` or ``hdfs://…``) as ``_source_file`` stores it."""
    return local_path(path)


def batch_of_path(path: str) -> date | None:
    """The arrival date of a file from the layout ``<zone>/<date>/<source>/[<sub-folders>/]<file>``."""
    found = re.findall(r"/(\d{4}-\d{2}-\d{2})/[^/]+/", path)
    return date.fromisoformat(found[-1]) if found else None


def unreadable_reason(spark: SparkSession, path: str, fmt: str) -> str | None:
    """Why a landed file cannot be read at all (then it is quarantined whole, with this
    reason), or None. Checked on the driver from its name and first bytes."""
    name = path.rsplit("/", 1)[-1]
    low = name.lower()
    if ":" in re.sub(r"^[A-Za-z][\w+.-]*://[^/]*", "", path).removeprefix("file:"):  # the path, not hdfs://host:port
        return "unreadable file: Hadoop paths cannot hold ':' in a file or folder name; rename it"
    ext = next((e for e in NOT_READ if low.endswith(e)), None)
    if ext is not None:
        return f"unreadable file: {ext} files are not read; land the files uncompressed, or gzip-compressed (.gz)"
    if low.endswith(".gz"):
        if fmt == "parquet":
            return "unreadable file: a Parquet file is compressed inside; a .gz around it is not read"
        if landing.head_bytes(spark, path, 2) != b"\x1f\x8b":
            return "unreadable file: named .gz but not gzip-compressed"
    return None


def unreadable_files(spark: SparkSession, spec: SourceSpec, files: list[str]) -> dict[str, str]:
    """The files that cannot be read at all, with the reason (``unreadable_reason``)."""
    return {f: why for f in files for why in [unreadable_reason(spark, f, spec.format)] if why}


def _messages(pairs: list[tuple[Column, Column | str]]) -> Column:
    """The messages whose condition holds, joined with '; ', or null when none does."""
    if not pairs:
        return F.lit(None).cast("string")
    msgs = F.array_compact(F.array(*[F.when(c, m if isinstance(m, Column) else F.lit(m)) for c, m in pairs]))
    return F.when(F.size(msgs) > 0, F.concat_ws("; ", msgs))


def _string_schema(spec: SourceSpec) -> StructType:
    return StructType([StructField(c, StringType()) for c in spec.columns])


def _batch_of(f: str, batches: dict[str, date] | None) -> date | None:
    return (batches or {}).get(f) or batch_of_path(real_path(f))


def _with_files(df: DataFrame, files: list[str], batches: dict[str, date] | None) -> DataFrame:
    """``df`` (a file source's rows) with each row's file: its real path (``_source_file``)
    and batch. Joined on Spark's own URI of the file (``_metadata.file_path``),
    which ``inputFiles()`` gives from the listing without reading a row: no line decodes its
    path (decoding it per line cost a fifth of the read)."""
    listed = {real_path(f): f for f in files}
    rows = []
    for uri in df.inputFiles():
        f = listed.get(_real_path(uri))
        if f is None:
            raise ConservationError(f"Spark reads {uri}, which is not one of the listed files {sorted(listed)[:3]}...")
        # a local file is file:///x in inputFiles() and file:/x in _metadata: both are keys (a
        # row matches one; one that matched neither would fail the conservation check loudly)
        rows += [(key, real_path(f), _batch_of(f, batches)) for key in {uri, re.sub(r"^file:/+", "file:/", uri)}]
    info = df.sparkSession.createDataFrame(rows, "_uri string, _source_file string, _batch_date date")
    # left: a line never disappears here
    return df.withColumn("_uri", F.col("_metadata.file_path")).join(F.broadcast(info), "_uri", "left").drop("_uri")


def _lines(spark: SparkSession, spec: SourceSpec, files: list[str], batches: dict[str, date] | None) -> DataFrame:
    """Every line of the files (blank ones too), with its file's real path and batch, its
    length in bytes (``_len``) and whether that is beyond ``max_line_bytes`` (``_long``)."""
    lines = _with_files(spark.read.text([spark_path(f) for f in files]), files, batches)
    return lines.withColumn("_len", F.octet_length("value")).withColumn("_long", F.col("_len") > spec.max_line_bytes)


def _unreadable(spark: SparkSession, spec: SourceSpec, bad: dict[str, str], batches: dict[str, date] | None) -> DataFrame:
    """One quarantined row per unreadable file (no record text: the file as a whole failed)."""
    rows = [(real_path(f), _batch_of(f, batches), why) for f, why in bad.items()]
    df = spark.createDataFrame(rows, "_source_file string, _batch_date date, _problem string")
    none = F.lit(None).cast("string")
    return df.select(*[none.alias(c) for c in spec.columns], F.lit("").alias(CORRUPT), "_problem", none.alias(SKIP), none.alias(SHAPE),
                     *META, F.lit(0).cast("long").alias(LINES), none.alias(RESCUED), none.alias(DRIFT))


def read_raw(spark: SparkSession, spec: SourceSpec, files: list[str], batches: dict[str, date] | None = None,
             unreadable: dict[str, str] | None = None) -> DataFrame:
    """Read landed files of one source: every declared column as a string, plus
    ``_corrupt_record`` (the raw text of a record that could not be read), ``_problem``
    (why not, when known), ``_skip`` (a line that is no record: blank, or a CSV header),
    ``_shape`` (values of the wrong shape for their column), ``_source_file`` (the real
    path), ``_batch_date`` (from ``batches``, else the landing layout) and ``_lines`` (the
    physical lines the row spans; 0 for a file quarantined whole).

    Nothing is filtered: every line of a CSV or JSON file is in one row (blank lines and
    headers marked in ``_skip``), so lines can be counted per file from this frame.
    ``unreadable`` (path -> reason; default ``unreadable_files``) are files not read at all:
    one quarantined row each.

    Schema drift (``spec.schema_drift``): a value in a column conf does not declare is kept
    as JSON in ``_rescued_data`` (rescue, and fail, which ingest refuses on ``_drift``) or
    makes the row a corrupt record (quarantine); ``_drift`` says how the columns differ
    (CSV: the file's header; JSON, Parquet: the row's undeclared values).

    CSV is read as RFC 4180 says (``lakeml.lake.csvfile``, in Arrow batches on the
    executors): quoted fields may hold separators, line breaks and doubled quotes; a record
    with too few or too many fields, or a quote out of place, is a corrupt record (Spark's
    CSV reader would pad, cut or guess). Values are taken by the header's names, in any
    order; a file whose header lacks a required column, or names one twice or not at all,
    has all its records (the header too) come back as corrupt.

    JSON is read line by line, each line parsed as one object by a strict reader (RFC 8259,
    ``lakeml.spark.JsonLine``): a line holding two objects or trailing garbage is a corrupt
    record (Spark's JSON reader would keep the first object and drop the rest silently), so
    is an object holding a key twice; a number's value is its token as written. A JSON
    object or array where a string is declared is reported in ``_shape``. In CSV and JSON a line that is not valid UTF-8 is a
    corrupt record (it would otherwise be read with replacement characters), a line longer
    than ``max_line_bytes`` is a corrupt record ("line too long"), and a leading byte-order
    mark is ignored. ``.gz`` files are decompressed.

    Parquet files that cannot be read (empty, truncated, not Parquet) each come back as
    one corrupt record, and files that disagree on a column's type are read separately.
    """
    if unreadable is None:
        unreadable = unreadable_files(spark, spec, files)
    readable = [f for f in files if f not in unreadable]
    frames = [_unreadable(spark, spec, {f: unreadable[f] for f in files if f in unreadable}, batches)] if len(readable) < len(files) else []
    if readable:
        frames.insert(0, _read_parquet(spark, spec, readable, batches) if spec.format == "parquet" else
                      _read_csv(spark, spec, readable, batches) if spec.format == "csv" else
                      _read_json(spark, spec, readable, batches))
    if not frames:
        return _unreadable(spark, spec, {}, batches)
    return reduce(DataFrame.unionByName, frames)


def _too_long(spec: SourceSpec) -> Column:
    return F.concat(F.lit("line too long: "), F.col("_len").cast("string"),
                    F.lit(f" bytes, the limit is {spec.max_line_bytes} (max_line_bytes)"))


JSON_LINE = "lakeml_json_line"  # lakeml.spark.JsonLine (jvm/src), registered per session
JSON_LINE_TYPE = StructType([StructField("values", ArrayType(StringType())), StructField("blank", BooleanType()),
                             StructField("problem", StringType()), StructField("rescued", StringType()),
                             StructField("drift", StringType()), StructField("shape", StringType())])


_REGISTERING = threading.Lock()


def _register_json_line(spark: SparkSession) -> None:
    """``lakeml.spark.JsonLine`` as the session's ``JSON_LINE`` function, once (sources are
    read side by side: registered again, Spark would warn that it replaced it)."""
    with _REGISTERING:
        if not spark.catalog.functionExists(JSON_LINE):
            spark.udf.registerJavaFunction(JSON_LINE, "lakeml.spark.JsonLine", JSON_LINE_TYPE)


def _read_json(spark: SparkSession, spec: SourceSpec, files: list[str], batches: dict[str, date] | None) -> DataFrame:
    """Each line parsed once, strictly, by Jackson's streaming parser on the executors
    (``lakeml.spark.JsonLine``, a Java function of the project's jar): the declared values
    as text (a number's token as written), and why the line is no record, its undeclared
    fields and the shape of its values. Validity as UTF-8 and the line's length are checked
    first, here."""
    _register_json_line(spark)
    conf = "\u0001".join([str(spec.max_line_bytes), spec.schema_drift, *[x for c, cs in spec.columns.items() for x in (c, cs.type)]])
    lines = _lines(spark, spec, files, batches).withColumn("_utf8", F.is_valid_utf8(F.col("value")))
    # one call per line, its answer a column of its own (not inlined into each use)
    lines = lines.withColumn("_j", F.when(~F.col("_long"), F.call_function(JSON_LINE, F.col("value"), F.lit(conf))))
    skip = F.when(F.col("_j.blank"), F.lit("blank"))  # blank lines are not records
    ok = F.col("_utf8") & F.col("_j.problem").isNull() & F.col("_j.values").isNotNull()
    problem = F.when(~F.col("_utf8"), F.lit(NOT_UTF8)).when(F.col("_long"), _too_long(spec)).otherwise(F.col("_j.problem"))
    return lines.withColumn(SKIP, skip).withColumn("_ok", ok).select(
        *[F.when(F.col("_ok"), F.col("_j.values")[i]).alias(c) for i, c in enumerate(spec.columns)],
        F.when(~F.col("_ok") & F.col(SKIP).isNull(), F.make_valid_utf8(F.col("value"))).alias(CORRUPT),
        F.when(F.col(SKIP).isNull(), problem).alias("_problem"),
        SKIP,
        F.when(F.col("_ok"), F.col("_j.shape")).alias(SHAPE),
        *META,
        F.lit(1).cast("long").alias(LINES),
        F.when(F.col("_ok"), F.col("_j.rescued")).alias(RESCUED),
        F.when(F.col("_utf8"), F.col("_j.drift")).alias(DRIFT),
    )


def _read_csv(spark: SparkSession, spec: SourceSpec, files: list[str], batches: dict[str, date] | None) -> DataFrame:
    """The files' bytes (Spark's binaryFile source: any Hadoop file system) parsed by
    ``csvfile.read`` in Arrow batches on the executors, one file at a time."""
    cols = list(spec.columns)
    max_bytes, drift = spec.max_line_bytes, spec.schema_drift
    required = [c for c, cs in spec.columns.items() if cs.required]
    where = {real_path(f): (real_path(f), _batch_of(f, batches)) for f in files}
    schema = StructType([*[StructField(c, StringType()) for c in cols], StructField(CORRUPT, StringType()),
                         StructField("_problem", StringType()), StructField(SKIP, StringType()), StructField(SHAPE, StringType()),
                         StructField("_batch_date", DateType()), StructField("_source_file", StringType()),
                         StructField(LINES, LongType()), StructField(RESCUED, StringType()), StructField(DRIFT, StringType())])

    def parse(chunks):
        for chunk in chunks:
            paths = chunk.column("path").to_pylist()
            for i, uri in enumerate(paths):
                data = chunk.column("content")[i].as_py()
                # binaryFile names a file by its Hadoop path (not URI-encoded, unlike _metadata);
                # an unknown one is named by the conservation check
                path, batch = where.get(real_path(uri), (real_path(uri), None))
                table = _decoded_csv(path, data, cols, max_bytes, required, drift)
                n = table.num_rows
                table = table.append_column(SHAPE, pa.nulls(n, pa.string()))
                table = table.append_column("_batch_date", pa.array([batch] * n, pa.date32()))
                table = table.append_column("_source_file", pa.array([path] * n, pa.string()))
                yield from table.select([f.name for f in schema.fields]).to_batches(max_chunksize=100_000)

    raw = spark.read.format("binaryFile").load([spark_path(f) for f in files]).select("path", "content")
    return raw.mapInArrow(parse, schema)


def _decoded_csv(path: str, data: bytes, cols: list[str], max_bytes: int, required: list[str], drift: str) -> pa.Table:
    """``csvfile.read`` of a file's bytes, gunzipped first for a ``.gz``; a compressed file
    that breaks off is one row, the file quarantined whole."""
    if path.lower().endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (EOFError, OSError, zlib.error) as e:
            why = f"unreadable file: corrupt or truncated gzip data ({e})"
            none = pa.nulls(1, pa.string())
            return pa.table({**{c: none for c in cols}, CORRUPT: pa.array([""]), "_problem": pa.array([why]), SKIP: none,
                             LINES: pa.array([0], pa.int64()), RESCUED: none, DRIFT: none})
    return csvfile.read(data, cols, max_bytes, required, drift)


def _read_parquet(spark: SparkSession, spec: SourceSpec, files: list[str], batches: dict[str, date] | None) -> DataFrame:
    none = F.lit(None).cast("string")

    def as_strings(df: DataFrame) -> DataFrame:
        df = _with_files(df, files, batches)
        types = {f.name: f.dataType for f in df.schema.fields}
        complex_ = [c for c in spec.columns if c in types and isinstance(types[c], (StructType, ArrayType, MapType))]
        shape = _messages([(F.col(c).isNotNull(),
                            f"{c}: a {types[c].simpleString()} in the Parquet file where a {spec.columns[c].type} is declared")
                           for c in complex_])
        # a value in a column conf does not declare: schema drift (the source's schema_drift)
        extra = [c for c in df.columns if c not in spec.columns and c not in META]
        as_text = {c: F.to_json(F.col(c)) if isinstance(types[c], (StructType, ArrayType, MapType)) else F.col(c).cast("string")
                   for c in extra}
        kept = F.to_json(F.struct(*[v.alias(c) for c, v in as_text.items()])) if extra else none  # null values left out
        df = df.withColumn("_kept", F.when(kept != "{}", kept))
        undeclared = F.concat_ws(", ", *[F.when(F.col(f"`{c}`").isNotNull(), F.lit(c)) for c in extra]) if extra else none
        refused = F.col("_kept").isNotNull() & F.lit(spec.schema_drift == "quarantine")
        everything = F.to_json(F.struct(*[F.col(f"`{c}`") for c in df.columns if c not in META and c != "_kept"]))
        return df.select(
            *[(F.col(c).cast("string") if c in types and c not in complex_ else none).alias(c) for c in spec.columns],
            F.when(refused, everything).alias(CORRUPT),
            F.when(refused, F.concat(F.lit("schema drift: undeclared column(s) "), undeclared, F.lit(" (schema_drift: quarantine)")))
            .alias("_problem"),
            none.alias(SKIP), shape.alias(SHAPE), *META,
            F.lit(1).cast("long").alias(LINES),
            F.when(~refused, F.col("_kept")).alias(RESCUED),
            F.when(F.col("_kept").isNotNull(), F.concat(F.lit(f"{csvfile.UNDECLARED}: "), undeclared)).alias(DRIFT),
        )

    paths = [spark_path(f) for f in files]
    try:
        # one job reads every footer: the merged schema, or an error when a file is not
        # Parquet or two files disagree on a column's type
        return as_strings(spark.read.option("mergeSchema", "true").parquet(*paths))
    except Exception as e:  # noqa: BLE001 - sorted out file by file below, which re-raises what it cannot explain
        log.warning("parquet files of one batch do not read together (%s); reading them one by one", str(e).split("\n")[0][:200])
    by_schema: dict[str, list[str]] = {}
    unreadable: dict[str, str] = {}
    for f, p in zip(files, paths, strict=True):
        try:
            by_schema.setdefault(spark.read.parquet(p).schema.json(), []).append(p)
        except Exception as e:
            msg = str(e)
            if "CANNOT_READ_FILE_FOOTER" not in msg:
                raise
            why = re.search(r"is (not a Parquet file[^\n]*)", msg)
            unreadable[f] = f"unreadable file: {why.group(1) if why else 'cannot read the Parquet footer'}"
    frames = [as_strings(spark.read.parquet(*group)) for group in by_schema.values()]
    if unreadable:
        frames.append(_unreadable(spark, spec, unreadable, batches))
    return reduce(DataFrame.unionByName, frames)


def failed_file(error: BaseException, files: list[str]) -> str | None:
    """The compressed file (of ``files``) whose read broke ``error`` (a truncated or corrupt
    .gz that started well), or None: any other failure is no property of one file."""
    found = re.search(r"while reading file (\S+?)\.?\s", str(error))
    if not found:
        return None
    path = real_path(urllib.parse.unquote(found.group(1)))
    return next((f for f in files if real_path(f) == path and f.lower().endswith(".gz")), None)


def broken_reason(error: BaseException) -> str:
    causes = re.findall(r"Caused by: ([\w.$]+(?:Exception|Error)): ([^\n]*)", str(error))
    why = causes[-1][1].strip() if causes else "the data breaks off"
    return f"unreadable file: corrupt or truncated gzip data ({why})"


def count_rows(spark: SparkSession, spec: SourceSpec, files: list[str]) -> dict[str, int]:
    """Per file (real path), its lines (CSV, JSON: every line, blank ones and headers too) or
    its rows (Parquet, from the footers), counted straight from the files, apart from the
    reader that parses them: what conservation is checked against."""
    if not files:
        return {}

    def grouped(paths: list[str]) -> dict[str, int]:
        df = spark.read.parquet(*paths) if spec.format == "parquet" else spark.read.text(paths)
        # grouped by Spark's URI of the file; its path is decoded once per file, not per line
        per_uri = df.groupBy(F.col("_metadata.file_path").alias("f")).agg(F.count(F.lit(1)).alias("n")).collect()
        return {_real_path(r.f): r.n for r in per_uri}

    paths = [spark_path(f) for f in files]
    try:
        return grouped(paths)
    except Exception:  # noqa: BLE001 - Parquet files that do not read together (or at all): one by one
        if spec.format != "parquet":
            raise
    out: dict[str, int] = {}
    for p in paths:
        try:
            out |= grouped([p])
        except Exception as e:
            if "CANNOT_READ_FILE_FOOTER" not in str(e):
                raise
    return out
