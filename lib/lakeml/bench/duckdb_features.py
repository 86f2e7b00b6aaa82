"""The feature stage in DuckDB: the use case's own Spark SQL files, transpiled, over the
Parquet files of the same bronze Delta tables. A peer for benchmarks, not a second
implementation: the SQL is the one ``lakeml.features`` runs, and the views it sees are
built the same way:

- ``<source>_history``: every row of the bronze table (``read_parquet`` of its current
  data files, ``union_by_name``);
- ``<source>``: the latest row per key, newest ``_batch_date`` then newest ``_source_file``
  (as ``lakeml.features.views.latest_per_key``);
- ``snapshots(as_of_date)`` and ``population`` (the population SQL; materialised, as the
  Spark stage persists it);
- the features: population LEFT JOIN each feature query on (entity, as_of_date), columns
  in the order Spark's ``build_features`` returns them.

Transpiling is ``sqlglot.transpile(sql, read="spark", write="duckdb")``, which already
gets most of the Spark semantics right: ``0D`` -> ``CAST(0 AS DOUBLE)``, ``try_divide(a, b)``
-> ``CASE WHEN b <> 0 THEN a / b END`` (NULL on division by zero; DuckDB's own ``/`` gives
inf), ``a / b`` -> ``a / NULLIF(b, 0)``, ``to_date(ts)`` -> a cast to DATE, Spark's
``ASC`` -> ``ASC NULLS FIRST``, ``CAST(x AS TIMESTAMP)`` -> ``TIMESTAMPTZ`` (Spark's
TIMESTAMP is an instant). On top of it, ``to_duckdb`` makes two fixes, both about types:

1. ``date_add(d, n)`` / ``date_sub(d, n)`` (two arguments): ``CAST(d AS DATE) + n``, a DATE
   as in Spark, instead of sqlglot's ``d + INTERVAL n DAY``, which is a TIMESTAMP in DuckDB.
2. ``datediff(end, start)`` (two arguments) is cast to INTEGER, Spark's type (DuckDB's
   ``date_diff`` returns BIGINT).

and ``build_features`` normalises the result: HUGEINT columns (DuckDB's ``sum`` of integers)
become BIGINT, Spark's type for the same ``sum``.

Time zone: the DuckDB session runs in ``time_zone``, which must be the Spark session time
zone (``spark.sql.session.timeZone``; UTC in the shipped envs) so that ``to_date(ts)`` and
``CAST(date AS TIMESTAMP)`` draw day boundaries where Spark does. Timestamps that DuckDB
reads without a zone (Parquet INT96) are instants in UTC and are converted accordingly.

Limits: ``source_files`` lists the data files of the current Delta snapshot, which is the
table only without deletion vectors and without column mapping (both off for the bronze
tables); it refuses tables that have either turned on.
"""

from __future__ import annotations

import time
from datetime import date

import duckdb
import sqlglot
from sqlglot import exp

from lakeml.core import tables
from lakeml.core.config import UseCaseConfig
from lakeml.core.errors import ConfigError
from lakeml.lake.stores import local_path

DUCKDB_TYPES = {
    "string": "VARCHAR",
    "int": "INTEGER",
    "bigint": "BIGINT",
    "double": "DOUBLE",
    "date": "DATE",
    "timestamp": "TIMESTAMPTZ",
    "boolean": "BOOLEAN",
}
META = {"_batch_date": "DATE", "_source_file": "VARCHAR"}
FEATURES_TABLE = "features"


# --------------------------------------------------------------------------- transpiling


def _is_minus_one(e: exp.Expression) -> bool:
    return isinstance(e, exp.Neg) and isinstance(e.this, exp.Literal) and e.this.name == "1"


def _fix(node: exp.Expression) -> exp.Expression:
    # Spark's two-argument date_add/date_sub (parsed as TsOrDsAdd, unit DAY): DATE + n is a DATE
    if isinstance(node, exp.TsOrDsAdd) and node.text("unit").upper() in ("", "DAY"):
        start = exp.cast(node.this.copy(), exp.DataType.Type.DATE)
        n = node.expression
        if isinstance(n, exp.Mul) and _is_minus_one(n.expression):  # date_sub(d, n) = date_add(d, n * -1)
            return exp.paren(exp.Sub(this=start, expression=exp.cast(n.this.copy(), exp.DataType.Type.INT)), copy=False)
        return exp.paren(exp.Add(this=start, expression=exp.cast(n.copy(), exp.DataType.Type.INT)), copy=False)
    # Spark's two-argument datediff(end, start) is an INT
    if isinstance(node, exp.DateDiff) and node.args.get("unit") is None and not isinstance(node.parent, exp.Cast):
        return exp.cast(node.copy(), exp.DataType.Type.INT)
    return node


def to_duckdb(sql: str) -> str:
    """Spark SQL -> DuckDB SQL (sqlglot plus the fixes in the module docstring).

    Several statements come back joined by ``;``."""
    trees = [t for t in sqlglot.parse(sql, read="spark") if t is not None]
    return ";\n".join(t.transform(_fix).sql(dialect="duckdb") for t in trees)


# --------------------------------------------------------------------------- inputs


def source_files(spark, uc: UseCaseConfig) -> dict[str, list[str]]:
    """The Parquet data files of each source's bronze Delta table (current snapshot)."""
    out: dict[str, list[str]] = {}
    for name, spec in uc.sources.items():
        table = uc.table(spec.table)
        props = tables.properties(spark, table)
        if props.get("delta.enableDeletionVectors", "false").lower() == "true":
            raise ConfigError(f"{table}: deletion vectors are on; its Parquet files alone are not the table")
        if props.get("delta.columnMapping.mode", "none").lower() != "none":
            raise ConfigError(f"{table}: column mapping is on; its Parquet column names are not the table's")
        out[name] = sorted(local_path(f) for f in tables.input_files(spark, table))
    return out


# --------------------------------------------------------------------------- the build


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def connect(threads: int | None = None, time_zone: str = "UTC") -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(config={"threads": threads} if threads else {})
    con.execute(f"SET TimeZone = {_lit(time_zone)}")
    return con


def _register_sources(con: duckdb.DuckDBPyConnection, uc: UseCaseConfig, files: dict[str, list[str]]) -> None:
    for name, spec in uc.sources.items():
        paths = files.get(name) or []
        if paths:
            scan = f"read_parquet([{', '.join(_lit(p) for p in paths)}], union_by_name = true)"
            probe = con.sql(f"SELECT * FROM {scan}")
            types = {c: str(t) for c, t in zip(probe.columns, probe.types, strict=True)}
            # INT96 (and other zone-less) timestamps of a Spark TIMESTAMP column are UTC instants
            naive = [
                c
                for c, cs in spec.columns.items()
                if cs.type == "timestamp" and types.get(c, "").startswith("TIMESTAMP") and "ZONE" not in types[c]
            ]
            utc = [f"timezone('UTC', {_q(c)}) AS {_q(c)}" for c in naive]
            replace = f" REPLACE ({', '.join(utc)})" if utc else ""
            history = f"SELECT *{replace} FROM {scan}"
        else:  # an empty table has no files: its schema from the use case
            cols = {**{c: DUCKDB_TYPES[cs.type] for c, cs in spec.columns.items()}, **META}
            history = "SELECT " + ", ".join(f"CAST(NULL AS {t}) AS {_q(c)}" for c, t in cols.items()) + " WHERE false"
        con.execute(f"CREATE OR REPLACE VIEW {_q(name + '_history')} AS {history}")
        keys = ", ".join(_q(k) for k in spec.keys)
        con.execute(
            f"CREATE OR REPLACE VIEW {_q(name)} AS SELECT * FROM {_q(name + '_history')} "
            f"QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY _batch_date DESC NULLS LAST, _source_file DESC NULLS LAST) = 1"
        )


def _snapshots(con: duckdb.DuckDBPyConnection, as_of_dates: list[date]) -> None:
    dates = sorted(set(as_of_dates))
    if dates:
        body = "SELECT * FROM (VALUES " + ", ".join(f"(DATE {_lit(d.isoformat())})" for d in dates) + ") AS t(as_of_date)"
    else:
        body = "SELECT CAST(NULL AS DATE) AS as_of_date WHERE false"
    con.execute(f"CREATE OR REPLACE VIEW snapshots AS {body}")


def _run(con: duckdb.DuckDBPyConnection, sql: str, where: str, ddl: str) -> None:
    try:
        con.execute(f"{ddl} {to_duckdb(sql)}")
    except (duckdb.Error, sqlglot.errors.SqlglotError) as e:
        raise ConfigError(f"{where} (DuckDB): {str(e).splitlines()[0]}") from None


def features_query(con: duckdb.DuckDBPyConnection, uc: UseCaseConfig, as_of_dates: list[date]) -> str:
    """Create the snapshots, population and feature views on ``con`` (whose source views
    exist); returns the query of the features, columns as Spark's build_features orders them."""
    key = [uc.features.entity, "as_of_date"]
    _snapshots(con, as_of_dates)
    _run(
        con,
        uc.read_sql(uc.features.population_sql),
        f"{uc.conf_dir}/{uc.features.population_sql}",
        "CREATE OR REPLACE TEMP TABLE population AS",
    )
    pop_cols = con.table("population").columns
    select = [f"p.{_q(c)}" for c in key] + [f"p.{_q(c)}" for c in pop_cols if c not in key]
    joins = []
    seen = set(key)
    for i, rel in enumerate(f.file for f in uc.features.sql):
        where = f"{uc.conf_dir}/{rel}"
        view = f"_feature_{i}"
        _run(con, uc.read_sql(rel), where, f"CREATE OR REPLACE TEMP VIEW {view} AS")
        cols = con.table(view).columns
        missing = [k for k in key if k not in cols]
        if missing:
            raise ConfigError(f"{where}: the query must return {key}; missing {missing}")
        dup = (set(cols) - set(key)) & seen
        if dup:
            raise ConfigError(f"{where}: columns {sorted(dup)} are already produced by another feature file")
        seen |= set(cols)
        alias = f"f{i}"
        select += [f"{alias}.{_q(c)}" for c in cols if c not in key]
        joins.append(f"LEFT JOIN {view} AS {alias} ON " + " AND ".join(f"{alias}.{_q(k)} = p.{_q(k)}" for k in key))
    query = f"SELECT {', '.join(select)} FROM population AS p " + " ".join(joins)
    rel = con.sql(query)
    # Spark's sum of integers is a BIGINT; DuckDB's a HUGEINT
    fixed = [
        f"CAST({_q(c)} AS BIGINT) AS {_q(c)}" if str(t) in ("HUGEINT", "UHUGEINT") else _q(c)
        for c, t in zip(rel.columns, rel.types, strict=True)
    ]
    return f"SELECT {', '.join(fixed)} FROM ({query})"


def _build(
    con: duckdb.DuckDBPyConnection, uc: UseCaseConfig, files: dict[str, list[str]], as_of_dates: list[date], out_path: str | None
) -> dict:
    t0 = time.perf_counter()
    _register_sources(con, uc, files)
    query = features_query(con, uc, as_of_dates)
    if out_path:
        rows = con.execute(f"COPY ({query}) TO {_lit(out_path)} (FORMAT parquet)").fetchall()[0][0]
        columns = con.sql(query).columns
    else:
        con.execute(f"CREATE OR REPLACE TABLE {FEATURES_TABLE} AS {query}")
        rows = con.execute(f"SELECT count(*) FROM {FEATURES_TABLE}").fetchall()[0][0]
        columns = con.table(FEATURES_TABLE).columns
    return {"rows": int(rows), "seconds": time.perf_counter() - t0, "columns": columns}


def build_features(
    uc: UseCaseConfig,
    files: dict[str, list[str]],
    as_of_dates: list[date],
    out_path: str | None = None,
    threads: int | None = None,
    time_zone: str = "UTC",
) -> dict:
    """Build the features in a fresh in-memory DuckDB: into the Parquet file ``out_path``,
    or else into a DuckDB table. Returns ``{"rows", "seconds", "columns"}``; seconds is the
    wall time of the whole build (connecting, views, population, features, writing)."""
    t0 = time.perf_counter()
    con = connect(threads, time_zone)
    try:
        out = _build(con, uc, files, as_of_dates, out_path)
    finally:
        con.close()
    out["seconds"] = time.perf_counter() - t0
    return out


def features_arrow(
    uc: UseCaseConfig, files: dict[str, list[str]], as_of_dates: list[date], threads: int | None = None, time_zone: str = "UTC"
):
    """The features as a pyarrow Table (``spark.createDataFrame`` takes it as it is)."""
    con = connect(threads, time_zone)
    try:
        _build(con, uc, files, as_of_dates, None)
        return con.table(FEATURES_TABLE).to_arrow_table()
    finally:
        con.close()


def features_frame(
    uc: UseCaseConfig, files: dict[str, list[str]], as_of_dates: list[date], threads: int | None = None, time_zone: str = "UTC"
):
    """The features as a pandas DataFrame (dates as ``datetime.date``)."""
    con = connect(threads, time_zone)
    try:
        _build(con, uc, files, as_of_dates, None)
        return con.table(FEATURES_TABLE).df(date_as_object=True)
    finally:
        con.close()
