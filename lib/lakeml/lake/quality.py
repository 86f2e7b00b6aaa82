"""Declarative data-quality checks on the use case's tables (conf: ``quality.checks``).

Each check runs per batch of its table (``_batch_date`` of a bronze table, ``as_of_date``
of the features and labels, ``score_date`` of the predictions) and counts what violates
it, in Spark, in few passes over the data:

1. rows per batch over the whole table (which batches exist, the newest one, and the
   previous batch's count for ``row_count_change``): one aggregation on the batch column;
2. ``not_null``, ``range``, ``accepted_values`` and ``freshness`` of every checked batch:
   one aggregation, a conditional count (or max) per check;
3. ``unique``: a groupBy on the batch and the check's columns, every unique check of the
   table in one job.

Results go to ``<database>.dq_results`` (``table, batch, check, type, severity,
observed_value, threshold, status, checked_at``); re-checking a batch replaces that
table's rows for that batch. ``gate`` raises ``QualityError`` when an ``error`` check
failed and logs the ``warn`` ones.
"""

from __future__ import annotations

import logging
from dataclasses import astuple, dataclass
from datetime import UTC, date, datetime
from functools import reduce

from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DateType, DoubleType, FloatType, NumericType, TimestampNTZType, TimestampType

from lakeml.core import parallel, tables
from lakeml.core.config import CheckSpec, QualitySpec, UseCaseConfig
from lakeml.core.errors import ConfigError, LakemlError, UsageError

log = logging.getLogger(__name__)

RESULT_SCHEMA = (
    "table string, batch date, check string, type string, severity string, "
    "observed_value double, threshold string, status string, checked_at timestamp"
)


@dataclass(frozen=True)
class CheckResult:
    table: str
    batch: date
    check: str
    type: str
    severity: str
    observed_value: float | None
    threshold: str
    status: str  # pass | warn | fail
    checked_at: datetime

    def describe(self) -> str:
        return (
            f"{self.table} batch {self.batch}: check {self.check!r} ({self.type}) "
            f"observed {_fmt(self.observed_value)} vs threshold {self.threshold}"
        )


class QualityError(LakemlError):
    """An ``error``-severity data-quality check failed; the message names each one."""

    def __init__(self, failures: list[CheckResult]):
        self.failures = failures
        lines = [f"data quality check failed: {r.describe()}" for r in failures]
        super().__init__(lines[0] if len(lines) == 1 else f"{len(lines)} data quality checks failed:\n  " + "\n  ".join(lines))


def _fmt(v: float | None) -> str:
    if v is None:
        return "no value"
    return str(int(v)) if float(v).is_integer() else f"{v:.4g}"


def _made_by(uc: UseCaseConfig, table_key: str) -> str:
    if table_key in (uc.tables.features, uc.tables.labels):
        return tables.FEATURES_JOB
    if table_key == uc.tables.predictions:
        return tables.SCORE_JOB
    return tables.INGEST_JOB


def logged_batches(spark: SparkSession, uc: UseCaseConfig) -> dict[str, list[date]]:
    """Per source, the batches with accepted rows, from the ingest log (one row per source and
    batch): what each bronze table holds, without reading it."""
    if not tables.exists(spark, uc.table(uc.tables.ingest_log)):
        return {}
    out: dict[str, list[date]] = {}
    accepted = tables.read(spark, uc.table(uc.tables.ingest_log)).where(F.col("rows_accepted") > 0)
    for r in accepted.select("source", "batch_date").distinct().collect():
        out.setdefault(r.source, []).append(r.batch_date)
    return {k: sorted(v) for k, v in out.items()}


def _batches(spark: SparkSession, uc: UseCaseConfig, table_key: str, df: DataFrame, batch_col: str,
             logged: dict[str, list[date]] | None = None) -> list[date]:
    """The batches a table holds, oldest first, read from where it is cheap: the ingest log
    for a bronze table (``logged``, read once per run), a scan of that one column otherwise."""
    source = next((n for n, s in uc.sources.items() if s.table == table_key), None)
    if source is not None:
        logged = logged_batches(spark, uc) if logged is None else logged
        if logged:
            return logged.get(source, [])
    return sorted(r[0] for r in df.select(batch_col).distinct().collect())


def _key(uc: UseCaseConfig, table_key: str, i: int, field: str) -> str:
    return f"{uc.source_file}: quality.checks.{table_key}.{i}.{field}"


def _check_against_table(uc: UseCaseConfig, table_key: str, df: DataFrame, checks: list[CheckSpec]) -> None:
    """What conf validation cannot know: the columns of the table and the ``where`` SQL."""
    types = {f.name: f.dataType for f in df.schema.fields}
    for i, c in enumerate(checks):
        key = _key(uc, table_key, i, "columns")
        for col in c.columns:
            if col not in types:
                raise ConfigError(f"{key}: {uc.table(table_key)} has no column {col!r}; its columns: {', '.join(types)}")
            if c.type == "range" and not isinstance(types[col], NumericType):
                raise ConfigError(f"{key}: a range check needs a numeric column; {col} is {types[col].simpleString()}")
            if c.type in ("freshness", "not_future") and not isinstance(types[col], (DateType, TimestampType, TimestampNTZType)):
                raise ConfigError(f"{key}: a {c.type} check needs a date or timestamp column; {col} is {types[col].simpleString()}")
        if c.where:
            try:
                df.where(c.where)
            except AnalysisException as e:
                raise ConfigError(f"{_key(uc, table_key, i, 'where')}: {str(e).splitlines()[0]}") from None


def _where(c: CheckSpec) -> Column:
    return F.expr(c.where) if c.where else F.lit(True)


def _any(conds: list[Column]) -> Column:
    return reduce(lambda a, b: a | b, conds)


def _violations(c: CheckSpec, types: dict, batch_col: str) -> Column:
    """The pass-1 aggregate of a counting check: rows violating it."""
    w = _where(c)
    if c.type == "not_null":
        return F.count_if(w & _any([F.col(x).isNull() for x in c.columns]))
    if c.type == "not_future":
        ref = F.col(batch_col) if c.reference != "today" else F.current_date()
        limit = F.date_add(ref, c.max_ahead_days or 0)
        return F.count_if(w & _any([F.to_date(F.col(x)) > limit for x in c.columns]))
    if c.type == "range":
        outside = []
        for x in c.columns:
            if isinstance(types[x], (DoubleType, FloatType)):
                # NaN compares above every number in Spark and Infinity passes a one-sided range
                outside.append(F.isnan(F.col(x)) | (F.abs(F.col(x)) == F.lit(float("inf"))))
            if c.min is not None:
                outside.append(F.col(x) < F.lit(c.min))
            if c.max is not None:
                outside.append(F.col(x) > F.lit(c.max))
        return F.count_if(w & _any(outside))
    if c.type == "accepted_values":
        # the values typed as the column, so that comparing never fails on a cast
        return F.count_if(
            w & _any([F.col(x).isNotNull() & ~F.col(x).isin(*[F.lit(v).try_cast(types[x]) for v in c.values]) for x in c.columns])
        )
    raise AssertionError(c.type)


def _threshold(c: CheckSpec, batch_col: str, prev: tuple[date, int] | None = None, types: dict | None = None) -> str:
    cols = ", ".join(c.columns)
    if c.type == "not_null":
        return f"<= 0 rows with a null in [{cols}]"
    if c.type == "unique":
        return f"<= 0 duplicate rows on [{cols}]"
    if c.type == "range":
        if c.min is not None and c.max is not None:
            rule = f"outside {_fmt(c.min)}..{_fmt(c.max)}"
        else:
            rule = f"< {_fmt(c.min)}" if c.min is not None else f"> {_fmt(c.max)}"
        fractional = any(isinstance((types or {}).get(x), (DoubleType, FloatType)) for x in c.columns)
        return f"<= 0 rows with [{cols}] {rule}{' or not finite' if fractional else ''}"
    if c.type == "accepted_values":
        return f"<= 0 rows with [{cols}] not in {{{', '.join(str(v) for v in c.values)}}}"
    if c.type == "not_future":
        ref = "the batch date" if c.reference != "today" else "today"
        ahead = f" + {c.max_ahead_days} days" if c.max_ahead_days else ""
        return f"<= 0 rows with [{cols}] after {ref}{ahead}"
    if c.type == "freshness":
        target = c.columns[0] if c.columns else batch_col
        ref = "the batch date" if c.reference != "today" else "today"
        return f"<= {c.max_age_days} days from max({target}) to {ref}"
    if prev is None:
        return f"<= {_fmt(c.max_change)} relative change (no previous batch)"
    return f"<= {_fmt(c.max_change)} relative change vs {prev[0]} ({prev[1]} rows)"


def run_checks(spark: SparkSession, uc: UseCaseConfig, table_key: str, batch_dates: list[date] | None = None) -> list[CheckResult]:
    """Run every check of ``table_key`` on ``batch_dates`` (default: the table's newest
    batch; dates the table has no rows for are left out), record the results in
    ``dq_results`` (replacing this table's earlier results for those batches) and return
    them. Does not raise on a failed check: see ``gate``."""
    results = check(spark, uc, table_key, batch_dates)
    write(spark, uc, results)
    return results


def check(spark: SparkSession, uc: UseCaseConfig, table_key: str, batch_dates: list[date] | None = None,
          logged: dict[str, list[date]] | None = None) -> list[CheckResult]:
    """The results of ``table_key``'s checks on ``batch_dates`` (see ``run_checks``), not recorded."""
    checks = uc.quality.checks.get(table_key)
    if not checks:
        return []
    batch_col = QualitySpec.batch_columns(uc.sources, uc.tables)[table_key]
    name = uc.table(table_key)
    df = tables.read(spark, name, made_by=_made_by(uc, table_key)).where(F.col(batch_col).isNotNull())
    _check_against_table(uc, table_key, df, checks)
    types = {f.name: f.dataType for f in df.schema.fields}

    # which batches the table has (without reading it); the batches checked and the ones
    # before them (for row_count_change) are read, not the history
    present = _batches(spark, uc, table_key, df, batch_col, logged)
    if batch_dates is None:
        todo = present[-1:]
    else:
        todo = sorted(set(batch_dates) & set(present))
        absent = sorted(set(batch_dates) - set(present))
        if absent:
            log.info("%s has no rows for %d of the requested batches (%s .. %s): not checked", name, len(absent), absent[0], absent[-1])
    if not todo:
        log.info("%s: no batch to check", name)
        return []
    previous = {b: max((p for p in present if p < b), default=None) for b in todo}
    counted = sorted(set(todo) | {p for p in previous.values() if p is not None})

    # pass 1, one aggregation per batch read: rows (and rows matching a row_count_change's
    # where), the counting checks and freshness (for a previous batch only its counts are used)
    rcc = [(i, c) for i, c in enumerate(checks) if c.type == "row_count_change"]
    aggs = [F.count(F.lit(1)).alias("_rows")] + [F.count_if(_where(c)).alias(f"_n{i}") for i, c in rcc if c.where]
    for i, c in enumerate(checks):
        if c.type in ("not_null", "range", "accepted_values", "not_future"):
            aggs.append(_violations(c, types, batch_col).alias(f"_c{i}"))
        elif c.type == "freshness":
            target = F.to_date(F.col(c.columns[0] if c.columns else batch_col))
            ref = F.col(batch_col) if c.reference != "today" else F.current_date()
            aggs.append(F.datediff(ref, F.max(F.when(_where(c), target))).alias(f"_c{i}"))
    counts = {r[batch_col]: r for r in df.where(F.col(batch_col).isin(counted)).groupBy(batch_col).agg(*aggs).collect()}
    todo = [b for b in todo if b in counts]
    observed: dict[tuple[date, int], float | None] = {
        (b, int(k[2:])): v for b in todo for k, v in counts[b].asDict().items() if k.startswith("_c")
    }

    # pass 2: duplicates per batch, every unique check in one job
    uniq = [(i, c) for i, c in enumerate(checks) if c.type == "unique"]
    if uniq and todo:
        scoped = df.where(F.col(batch_col).isin(todo))
        frames = [
            scoped.where(_where(c) & ~_any([F.col(x).isNull() for x in c.columns]))
            .groupBy(batch_col, *c.columns)
            .agg(F.count(F.lit(1)).alias("_n"))
            .where("_n > 1")
            .groupBy(batch_col)
            .agg(F.sum(F.col("_n") - 1).alias("_dups"))
            .select(F.lit(i).alias("_check"), F.col(batch_col).alias("_batch"), "_dups")
            for i, c in uniq
        ]
        for r in reduce(DataFrame.unionByName, frames).collect():
            observed[(r["_batch"], r["_check"])] = r["_dups"]

    now = datetime.now(UTC)
    results = []
    for b in todo:
        prev_batch = previous[b] if previous[b] in counts else None
        for i, c in enumerate(checks):
            prev = None
            if c.type == "row_count_change":
                col = f"_n{i}" if c.where else "_rows"
                cur = counts[b][col]
                prev = (prev_batch, counts[prev_batch][col]) if prev_batch is not None else None
                value = abs(cur - prev[1]) / prev[1] if prev and prev[1] else None
                bad = value is not None and value > c.max_change
            elif c.type == "freshness":
                value = observed.get((b, i))
                bad = value is None or value > c.max_age_days  # no value at all is not fresh
            else:  # counts of violating rows; a batch without any is absent from pass 2
                value = observed.get((b, i)) or 0
                bad = value > 0
            status = ("fail" if c.severity == "error" else "warn") if bad else "pass"
            results.append(
                CheckResult(table_key, b, c.name, c.type, c.severity, None if value is None else float(value),
                            _threshold(c, batch_col, prev, types), status, now)
            )
    n = {s: sum(r.status == s for r in results) for s in ("pass", "warn", "fail")}
    log.info("quality %s: %d batch(es), %d pass, %d warn, %d fail", name, len(todo), n["pass"], n["warn"], n["fail"])
    return results


def write(spark: SparkSession, uc: UseCaseConfig, results: list[CheckResult]) -> None:
    """Replace, in dq_results, the results of each (table, batch) in ``results``, in one transaction."""
    if not results:
        return
    slices: dict[str, set[date]] = {}
    for r in results:
        slices.setdefault(r.table, set()).add(r.batch)
    df = spark.createDataFrame([astuple(r) for r in results], RESULT_SCHEMA)
    tables.ensure_database(spark, uc.database)
    tables.replace_where(df.coalesce(1), uc.table(uc.tables.dq_results), tables.slices_predicate("table", "batch", slices))


def gate(results: list[CheckResult]) -> list[CheckResult]:
    """Log every ``warn`` result; raise ``QualityError`` naming every failed ``error`` check."""
    for r in results:
        if r.status == "warn":
            log.warning("data quality warning: %s", r.describe())
    failed = [r for r in results if r.status == "fail"]
    if failed:
        raise QualityError(failed)
    return results


def run(
    spark: SparkSession,
    uc: UseCaseConfig,
    batch_dates: list[date] | None = None,
    only: list[str] | None = None,
    fail_on_error: bool = True,
) -> dict:
    """Check every configured table (or ``only`` these) on ``batch_dates`` (default: each
    table's newest batch), record the results, then ``gate`` them (unless
    ``fail_on_error`` is False). Without ``only``, a table that does not exist yet is
    skipped (the pipeline checks bronze after ingest, features after features).
    Returns a summary per table."""
    configured = list(uc.quality.checks)
    if only:
        unknown = [t for t in only if t not in uc.quality.checks]
        if unknown:
            raise UsageError(
                f"no quality checks configured for {', '.join(unknown)}; tables with checks: {', '.join(configured) or 'none'}"
            )
    summary: dict = {"tables": {}, "skipped": [], "warnings": [], "failures": []}
    results: list[CheckResult] = []
    logged = logged_batches(spark, uc)
    todo = []
    for t in only or configured:
        if not only and not tables.exists(spark, uc.table(t)):
            summary["skipped"].append(t)
            continue
        todo.append(t)
    # the tables side by side: each check is a couple of small jobs, mostly latency
    for t, res in zip(todo, parallel.map_all(spark, lambda t: check(spark, uc, t, batch_dates, logged), todo), strict=True):
        results += res
        batches = sorted({r.batch for r in res})
        summary["tables"][t] = {
            "batches": len(batches),
            "first": str(batches[0]) if batches else None,
            "last": str(batches[-1]) if batches else None,
            **{s: sum(r.status == s for r in res) for s in ("pass", "warn", "fail")},
        }
    write(spark, uc, results)  # every table's results in one commit
    summary["warnings"] = [r.describe() for r in results if r.status == "warn"]
    summary["failures"] = [r.describe() for r in results if r.status == "fail"]
    if fail_on_error:
        gate(results)
    return summary
