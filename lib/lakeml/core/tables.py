"""All Delta table reads and writes of the library go through here (a test keeps it so).

The verbs: ``read`` (or fail naming the job that makes the table), ``append``,
``replace_where`` (one slice), ``overwrite`` (the whole table), ``merge`` (upsert by a
condition), plus what is asked of a table without reading its rows (``exists``,
``version``, ``row_counts``, ``input_files``, ``last_operation_metrics``, ``properties``),
``delete_where`` and ``set_properties``.

Writes are idempotent by construction: a job replaces exactly the slice it owns
(``replaceWhere`` on the batch, snapshot or score date it computed), in one Delta
transaction, so running it twice, or again after a crash, leaves the same table. A plain
``append`` is for a caller that knows its slice is absent (new batches) or for an audit log.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import date, datetime

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql.types import StructType

from lakeml.core import typechange
from lakeml.core.errors import MissingTableError

log = logging.getLogger(__name__)

# the jobs that make each kind of table, named when a table a stage needs is missing
INGEST_JOB = "jobs/ingest.py (or jobs/pipeline.py)"
FEATURES_JOB = "jobs/features.py (or jobs/pipeline.py --only features)"
SCORE_JOB = "jobs/score.py (or jobs/pipeline.py)"
MONITOR_JOB = "jobs/monitor.py"


def exists(spark: SparkSession, name: str) -> bool:
    return spark.catalog.tableExists(name)


def read(spark: SparkSession, name: str, made_by: str | None = None) -> DataFrame:
    """Read a table, or fail with the name of the job that creates it."""
    if not exists(spark, name):
        how = f" Create it by running {made_by}." if made_by else ""
        raise MissingTableError(f"Table {name} does not exist.{how}")
    return spark.table(name)


def version(spark: SparkSession, name: str) -> int:
    """Current Delta version of a table (recorded with every model trained on it).

    Asked of the table's Delta log on the driver (its newest commit file, no Spark job:
    ~0.03 s); ``DESCRIBE HISTORY`` reads the commit files with Spark jobs (~0.3 s), and a
    daily run asks this a few dozen times. That query is the fallback should the Delta API
    differ."""
    try:
        jvm, js = spark._jvm, spark._jsparkSession
        log_ = jvm.org.apache.spark.sql.delta.DeltaLog.forTable(js, js.sessionState().sqlParser().parseTableIdentifier(name))
        return int(log_.update(False, jvm.scala.Option.empty(), jvm.scala.Option.empty()).version())
    except Exception as e:  # noqa: BLE001 - py4j's error types vary with the failure
        if "DELTA_MISSING_DELTA_TABLE" in str(e) or "TABLE_OR_VIEW_NOT_FOUND" in str(e):
            raise
        row = spark.sql(f"DESCRIBE HISTORY {name} LIMIT 1").select("version").first()
        return int(row["version"])


def sql_literal(v) -> str:
    if isinstance(v, datetime):
        return f"TIMESTAMP'{v.isoformat(sep=' ')}'"
    if isinstance(v, date):
        return f"DATE'{v.isoformat()}'"
    if isinstance(v, (int, float)):
        return repr(v)
    return "'" + str(v).replace("\\", "\\\\").replace("'", "\\'") + "'"


def in_predicate(column: str, values: Iterable) -> str:
    vals = sorted(set(values))
    if not vals:
        return "false"
    return f"`{column}` IN ({', '.join(sql_literal(v) for v in vals)})"


def slices_predicate(key_column: str, values_column: str, slices: dict) -> str:
    """Rows of several slices: ``key = k AND values_column IN (...)`` for each key ``k`` of
    ``slices`` (key -> values), joined by OR."""
    return " OR ".join(f"(`{key_column}` = {sql_literal(k)} AND {in_predicate(values_column, vs)})" for k, vs in sorted(slices.items()))


def ensure_database(spark: SparkSession, database: str) -> None:
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {database}")


def register_external(spark: SparkSession, name: str, path: str) -> None:
    """Name in the metastore a Delta table another writer keeps at ``path`` (e.g. the scoring
    server's answer log, written by delta-rs). Idempotent."""
    spark.sql(f"CREATE TABLE IF NOT EXISTS {name} USING delta LOCATION {sql_literal(path)}")


def replace_where(
    df: DataFrame,
    name: str,
    predicate: str,
    partition_by: list[str] | None = None,
    merge_schema: bool = False,
) -> None:
    """Atomically replace the rows of ``name`` matching ``predicate`` with ``df``.

    Every row of ``df`` must satisfy ``predicate`` (Delta checks it). The first write
    creates the table.
    """
    writer = df.write.format("delta")
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    if not exists(df.sparkSession, name):
        log.info("creating %s", name)
        writer.mode("errorifexists").saveAsTable(name)
        return
    check_types(df, name)
    writer = writer.mode("overwrite").option("replaceWhere", predicate)
    if merge_schema:
        writer = writer.option("mergeSchema", "true")
    writer.saveAsTable(name)


def append(df: DataFrame, name: str, partition_by: list[str] | None = None, merge_schema: bool = False,
           txn: tuple[str, int] | None = None) -> None:
    """Append ``df`` to ``name``; the first write creates the table (partitioned by
    ``partition_by``). An empty ``df`` creates the table empty, so it is there to query.
    ``txn = (app_id, version)``: skipped when a write of ``app_id`` with a version at least
    this one was committed already (Delta's idempotent writes, ``txnAppId`` / ``txnVersion``:
    how a streaming ``foreachBatch`` that runs a batch again after a crash writes it once)."""
    if exists(df.sparkSession, name):
        check_types(df, name)
    writer = df.write.format("delta").mode("append")
    if txn is not None:
        writer = writer.option("txnAppId", txn[0]).option("txnVersion", int(txn[1]))
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    if merge_schema:
        writer = writer.option("mergeSchema", "true")
    writer.saveAsTable(name)


def merge(
    source: DataFrame,
    name: str,
    on: str | Column,
    *,
    update_when: str | Column | None = None,
    insert: bool = True,
    delete_unmatched_when: str | None = None,
) -> None:
    """One Delta MERGE of ``source`` (alias ``s``) into the table ``name`` (alias ``t``) on
    ``on``: matched rows are updated with all of the source's columns (only where
    ``update_when`` holds, if given), unmatched source rows inserted (``insert``), and
    target rows no source row matches deleted where ``delete_unmatched_when`` holds."""
    from delta.tables import DeltaTable

    check_types(source, name)
    builder = DeltaTable.forName(source.sparkSession, name).alias("t").merge(source.alias("s"), on)
    builder = builder.whenMatchedUpdateAll(condition=update_when)
    if insert:
        builder = builder.whenNotMatchedInsertAll()
    if delete_unmatched_when is not None:
        builder = builder.whenNotMatchedBySourceDelete(condition=delete_unmatched_when)
    builder.execute()


def delete_where(spark: SparkSession, name: str, predicate: str) -> None:
    """Delete the rows of ``name`` matching ``predicate`` (one Delta commit)."""
    spark.sql(f"DELETE FROM {name} WHERE {predicate}")


def properties(spark: SparkSession, name: str) -> dict[str, str]:
    """The table's properties (``TBLPROPERTIES``: Delta's own and those a job set)."""
    return {r["key"]: r["value"] for r in spark.sql(f"SHOW TBLPROPERTIES {name}").collect()}


def set_properties(spark: SparkSession, name: str, props: dict[str, str]) -> None:
    kv = ", ".join(f"{sql_literal(k)} = {sql_literal(v)}" for k, v in sorted(props.items()))
    spark.sql(f"ALTER TABLE {name} SET TBLPROPERTIES ({kv})")


def schema(spark: SparkSession, name: str) -> StructType:
    return spark.table(name).schema


def check_types(df: DataFrame, name: str) -> None:
    """Stop a write of ``df`` into the existing table ``name`` when a column of ``df`` has a
    type the table's column cannot hold exactly: Delta would cast its values silently
    (``lakeml.core.typechange``)."""
    bad = typechange.casts(schema(df.sparkSession, name), df.schema)
    if bad:
        raise typechange.TypeChangeError(typechange.write_message(name, bad, widen_sql(name, [c for c in bad if c.widening])))


def widen_sql(name: str, changes: list[typechange.Change]) -> list[str]:
    """The statements that widen the columns ``changes`` of ``name`` in place (Delta type
    widening: metadata only, the files keep their type and readers widen the old values)."""
    return [f"ALTER TABLE {name} SET TBLPROPERTIES ('delta.enableTypeWidening' = 'true')",
            *(f"ALTER TABLE {name} ALTER COLUMN `{c.column}` TYPE {c.new}" for c in changes)]


def widen(spark: SparkSession, name: str, changes: list[typechange.Change], why: str) -> None:
    """Widen the columns ``changes`` of ``name`` (each a ``Change.widening``): one commit per
    statement of :func:`widen_sql`, and a logged line per column saying ``why``."""
    for stmt in widen_sql(name, changes):
        spark.sql(stmt)
    for c in changes:
        log.warning("schema change: %s.%s widened from %s to %s (%s)", name, c.column, c.old, c.new, why)


def widen_for(df: DataFrame, name: str) -> list[typechange.Change]:
    """Widen the columns of the existing table ``name`` whose type in ``df`` is a widening of
    theirs (a derived table whose inputs were widened: ``int`` rows now ``double``), logged;
    returns the changes. Anything else stays for :func:`check_types` to refuse."""
    if not exists(df.sparkSession, name):
        return []
    rows = {f.name: f.dataType.simpleString() for f in df.schema.fields}
    cs = [c for c in typechange.changes(schema(df.sparkSession, name), rows) if c.widening]
    if cs:
        widen(df.sparkSession, name, cs, "the rows written have the wider type")
    return cs


def drop_column_sql(name: str, column: str) -> list[str]:
    """The statements that drop a column of ``name`` (Delta needs column mapping by name)."""
    return [f"ALTER TABLE {name} SET TBLPROPERTIES ('delta.columnMapping.mode' = 'name')", f"ALTER TABLE {name} DROP COLUMN {column}"]


def add_column(spark: SparkSession, name: str, column: str, sql_type: str) -> None:
    """Add a nullable column (one Delta commit, metadata only: existing rows read it as null)."""
    spark.sql(f"ALTER TABLE {name} ADD COLUMNS (`{column}` {sql_type})")


def input_files(spark: SparkSession, name: str) -> list[str]:
    """The data files of the table's current version (URIs, as Spark names them)."""
    return list(spark.table(name).inputFiles())


def last_operation_metrics(spark: SparkSession, name: str) -> dict[str, str]:
    """The operation metrics of the table's newest commit (e.g. ``numOutputRows``)."""
    return dict(spark.sql(f"DESCRIBE HISTORY {name} LIMIT 1").first()["operationMetrics"])


def overwrite(df: DataFrame, name: str, partition_by: list[str] | None = None) -> None:
    """Replace the whole table (for tables that are recomputed in full, e.g. labels)."""
    writer = df.write.format("delta").mode("overwrite").option("overwriteSchema", "true")
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    writer.saveAsTable(name)


def row_counts(spark: SparkSession, names: Iterable[str]) -> dict[str, int | None]:
    """Rows per table (None for a table that does not exist yet). Delta answers a count from
    its log's statistics; the tables are asked side by side (each answer is mostly latency)."""
    from lakeml.core import parallel

    names = list(names)
    return dict(zip(names, parallel.map_all(spark, lambda n: spark.table(n).count() if exists(spark, n) else None, names), strict=True))


def read_version(spark: SparkSession, name: str, version: int) -> DataFrame:
    """The table as it was at Delta version ``version`` (time travel)."""
    return spark.read.option("versionAsOf", int(version)).table(name)


def read_stream(spark: SparkSession, name: str, made_by: str | None = None, **options: str) -> DataFrame:
    """A streaming read of a Delta table (``options``: Delta's source options, e.g.
    ``readChangeFeed``), or fail with the name of the job that creates it."""
    if not exists(spark, name):
        how = f" Create it by running {made_by}." if made_by else ""
        raise MissingTableError(f"Table {name} does not exist.{how}")
    reader = spark.readStream
    for k, v in options.items():
        reader = reader.option(k, v)
    return reader.table(name)
