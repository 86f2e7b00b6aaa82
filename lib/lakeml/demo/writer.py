"""Rows of a demo maker -> files in the landing zone, as an upstream export delivers them.

Each source is written in the format its conf declares (CSV with a header in the declared
column order, JSON lines, Parquet typed as declared), one folder per arrival date
(``<zone>/<arrival_date>/<source>/``). A ``bad_row_rate`` share of rows is damaged on
purpose, so that ingest's quarantine has work to do; which rows and how is decided from the
conf alone, by a hash of the row's key:

- every format: the first key is missing (a required value);
- CSV and JSON: a typed column holds text that is not of its type (``n/a``);
- JSON: the line is cut short (not a JSON object).
"""

from __future__ import annotations

import logging

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from lakeml.core.config import DemoSpec, SourceSpec, UseCaseConfig
from lakeml.core.errors import ConfigError
from lakeml.demo.draws import uniform
from lakeml.lake import landing

log = logging.getLogger(__name__)

ARRIVAL = "arrival_date"
UNREADABLE = "n/a"
EXTENSIONS = {"csv": "csv", "json": "jsonl", "parquet": None}  # parquet part files keep theirs


def _damage_draw(src: SourceSpec, seed: int, source: str) -> Column:
    return uniform(seed, f"bad:{source}", F.concat_ws("|", *[F.col(k).cast("string") for k in src.keys]))


def _typed_column(src: SourceSpec) -> str | None:
    """The first non-key column whose type is not string: where unreadable text goes."""
    return next((c for c, cs in src.columns.items() if cs.type != "string" and c not in src.keys), None)


def as_landed(df: DataFrame, src: SourceSpec, spec: DemoSpec, source: str) -> DataFrame:
    """The rows as they land: the declared columns in order (CSV: all text; JSON: one
    ``value`` line; Parquet: typed as declared) plus ``arrival_date``, a share damaged."""
    cols, key = list(src.columns), src.keys[0]
    u = _damage_draw(src, spec.seed, source)
    typed = _typed_column(src)
    if src.format == "parquet":
        out = df.select(*[F.col(c).cast(src.columns[c].type).alias(c) for c in cols], ARRIVAL)
        if spec.bad_row_rate > 0:
            out = out.withColumn(key, F.when(u < spec.bad_row_rate, F.lit(None)).otherwise(F.col(key)))
        return out
    if src.format == "csv":
        out = df.select(*[F.col(c).cast("string").alias(c) for c in cols], ARRIVAL)
        if spec.bad_row_rate > 0:
            damage = {key: F.lit(None).cast("string")}
            if typed:
                damage[typed] = F.lit(UNREADABLE)
            step = spec.bad_row_rate / len(damage)
            for i, (c, bad) in enumerate(damage.items()):
                hit = (u >= i * step) & (u < (i + 1) * step)
                out = out.withColumn(c, F.when(hit, bad).otherwise(F.col(c)))
        return out
    # json lines: typed values as JSON numbers, booleans and strings
    rows = df.select(*[F.col(c) for c in cols], ARRIVAL, u.alias("_u"))
    if spec.bad_row_rate > 0:
        rows = rows.withColumn(key, F.when(F.col("_u") < spec.bad_row_rate / 3, F.lit(None)).otherwise(F.col(key)))
    line = F.to_json(F.struct(*[F.col(c) for c in cols]))
    if spec.bad_row_rate > 0:
        third = spec.bad_row_rate / 3
        unreadable = F.regexp_replace(line, f'"{typed}":("[^"]*"|[^,}}]*)', f'"{typed}":"{UNREADABLE}"') if typed else line
        line = (
            F.when((F.col("_u") >= third) & (F.col("_u") < 2 * third), unreadable)
            .when((F.col("_u") >= 2 * third) & (F.col("_u") < spec.bad_row_rate), F.substring(line, 1, 25))
            .otherwise(line)
        )
    return rows.select(line.alias("value"), ARRIVAL)


def write(spark: SparkSession, uc: UseCaseConfig, spec: DemoSpec, frames: dict[str, DataFrame], zone: str,
          written: set[str] | None = None) -> dict[str, int]:
    """Write every source's rows into the landing zone ``zone``; rows written per source.
    ``written``, when given, receives the batch dates written."""
    where = f"{uc.conf_dir}/{spec.maker}"
    staging = f"{zone}/_staging"
    counts: dict[str, int] = {}
    for source, df in frames.items():
        if source not in uc.sources:
            raise ConfigError(f"{where}: make() returned source {source!r}, which {uc.source_file} does not declare; "
                              f"its sources: {', '.join(uc.sources)}")
        src = uc.sources[source]
        missing = [c for c in [*src.columns, ARRIVAL] if c not in df.columns]
        if missing:
            raise ConfigError(f"{where}: the rows of source {source} lack {', '.join(missing)} "
                              f"(declared in {uc.source_file}, plus {ARRIVAL})")
        landed = as_landed(df, src, spec, source).repartition(ARRIVAL).persist()
        counts[source] = landed.count()
        path = f"{staging}/{source}"
        w = landed.write.mode("overwrite").partitionBy(ARRIVAL)
        if src.format == "csv":
            w.option("header", True).csv(path)
        elif src.format == "json":
            w.text(path)
        else:
            w.parquet(path)
        landed.unpersist()
        days = landing.move_partitions_into_batches(spark, path, zone, source, EXTENSIONS[src.format])
        if written is not None:
            written.update(days)
        log.info("demo %s: %d rows in %d batches (%s)", source, counts[source], len(days), src.format)
    landing.delete(spark, staging)
    return counts
