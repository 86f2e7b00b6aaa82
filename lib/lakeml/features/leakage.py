"""The no-leakage probe: feature SQL must use only events strictly before ``as_of_date``.

The probe rewrites the future of a sample, using only what conf says about the sources
(keys, types, ``event_time``), and checks that no feature of an as-of date D moves:

- every event with event_time on or after D changes every other value;
- past events are copied to D .. D+4 (D itself at midnight: "strictly before" is tested at
  its edge) under new keys, so entities without future events get some;
- every attribute row (a source without event_time) gets a new version arriving after D
  with every non-key value changed.

``tests/test_leakage.py`` runs it on every shipped use case's demo data (and checks that the
same rewrite does move a later snapshot, so the probe proves something). The features job
runs it on a sample of the lake before it writes with feature SQL it has not seen before
(a new or changed fingerprint), and refuses, naming the file, when a feature moves.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakeml.core import tables
from lakeml.core.config import SourceSpec, UseCaseConfig
from lakeml.core.errors import ConfigError
from lakeml.features.build import build_features
from lakeml.features.sql import run_sql
from lakeml.features.views import population, register_source_views

log = logging.getLogger(__name__)

SAMPLE_ENTITIES = 300  # entities of the lake the probe runs on


class LeakageError(ConfigError):
    """A feature file reads events on or after the as-of date."""


def _other(col: str, type_: str):
    """A different value of the same type."""
    c = F.col(col)
    return {
        "int": (c * 3 + 7).cast("int"),
        "bigint": (c * 3 + 7).cast("bigint"),
        "double": c * 3 + 7.5,
        "string": F.concat(c, F.lit("~future")),
        "date": F.date_add(c, 10),
        "timestamp": c + F.expr("INTERVAL 10 DAYS"),
        "boolean": ~c,
    }[type_]


def _at(d, days, type_: str):
    """D + days, as the event_time's type (a timestamp at midnight: the very edge)."""
    day = F.date_add(F.lit(d), days)
    return day.cast("timestamp") if type_ == "timestamp" else day


def _new_key(col: str, type_: str):
    c = F.col(col)
    if type_ in ("int", "bigint", "double"):
        return (-c - 1).cast(type_)  # negative: never an existing key
    if type_ == "string":
        return F.concat(c, F.lit("#future"))
    return c


def future_of(uc: UseCaseConfig, bronze: dict[str, DataFrame], d: date) -> dict[str, DataFrame]:
    """``bronze`` (bronze-shaped frames by source) with its future, from ``d`` on, rewritten."""
    entity = uc.entity
    everyone = None
    for df in bronze.values():
        if entity in df.columns:
            ids = df.select(entity).distinct()
            everyone = ids if everyone is None else everyone.unionByName(ids).distinct()
    out = {}
    for name, df in bronze.items():
        spec: SourceSpec = uc.sources[name]
        t = spec.event_time
        fixed = set(spec.keys) | {entity, t}
        meta = [c for c in df.columns if c.startswith("_") and c not in spec.columns]
        if t is None:  # attributes: a new version of every row arrives after D, every value changed
            changed = df.select(
                *[(F.col(c) if c in fixed else _other(c, cs.type)).alias(c) for c, cs in spec.columns.items()],
                *[(F.lit(d + timedelta(days=1)) if c == "_batch_date" else F.lit("future") if c == "_source_file" else F.col(c)).alias(c)
                  for c in meta],
            )
            out[name] = df.unionByName(changed)
            continue
        ttype = spec.columns[t].type
        t_day = F.to_date(F.col(t))
        future = F.coalesce(t_day >= F.lit(d), F.lit(False))
        # keys and the entity stay (the same events), every other value changes
        moved = df.select(
            *[(F.col(c) if c in fixed and c != t else F.when(future, _other(c, cs.type)).otherwise(F.col(c))).alias(c)
              for c, cs in spec.columns.items()],
            *meta,
        )
        # copies of past events at D .. D+4 under keys that do not exist yet
        past = df.where(t_day < F.lit(d))
        shift = F.pmod(F.xxhash64(*[F.col(k) for k in spec.keys]), F.lit(5)).cast("int")
        alterable = [k for k in spec.keys if k not in (entity, t)]
        if alterable or t in spec.keys or everyone is None:
            template = past
        else:  # keyed by the entity alone (one event per entity): entities that have none
            template = everyone.join(df.select(entity), entity, "left_anti").crossJoin(past.drop(entity).limit(1))
        copies = template.select(
            *[
                (_at(d, shift, ttype) if c == t else _new_key(c, cs.type) if c in alterable else F.col(c)).alias(c)
                for c, cs in spec.columns.items()
            ],
            *[(F.date_add(F.lit(d), shift + 1) if c == "_batch_date" else F.lit("future") if c == "_source_file" else F.col(c)).alias(c)
              for c in meta],
        )
        out[name] = moved.unionByName(copies)
    return out


def later_date(uc: UseCaseConfig, d: date) -> date:
    """The second as-of date of a probe at ``d``: one snapshot period later."""
    return d + timedelta(days=max(7, uc.features.snapshots.every_days))


def moved_columns(spark: SparkSession, uc: UseCaseConfig, frames: dict[str, DataFrame], d: date) -> dict[str, list[str]]:
    """Per feature file, its columns whose values at ``d`` change when the future of
    ``frames`` is rewritten (``population`` when who is in the snapshot changes).

    The features are built for ``d`` and a later date together, as a run builds several
    snapshots: the views then hold events up to the later date, so SQL that reads events on
    or after ``d`` for the snapshot of ``d`` shows it (with ``d`` alone, the event window
    ends at ``d`` and would hide it)."""
    key = [uc.features.entity, "as_of_date"]
    dates = [d, later_date(uc, d)]
    at_d = F.col("as_of_date") == F.lit(d)
    before = build_features(spark, uc, dates, frames=frames).where(at_d).persist()
    after = build_features(spark, uc, dates, frames=future_of(uc, frames, d)).where(at_d)
    cols = [c for c in before.columns if c not in key]
    j = before.alias("a").join(after.alias("b"), key, "full")
    row = j.agg(
        F.count_if(F.col("a.as_of_date").isNull() | F.col("b.as_of_date").isNull()).alias("__population"),
        *[F.count_if(~F.col(f"a.`{c}`").eqNullSafe(F.col(f"b.`{c}`"))).alias(c) for c in cols],
    ).first()
    before.unpersist()
    moved = {c for c in cols if row[c]}
    out: dict[str, list[str]] = {}
    if row["__population"]:
        out[uc.features.population_sql] = ["population"]
    if moved:  # which file makes which column: its query's columns (analysed, not run)
        register_source_views(spark, uc, frames)
        population(spark, uc, [d])
        for spec in uc.features.sql:
            mine = sorted(moved & set(run_sql(spark, uc.read_sql(spec.file), f"{uc.conf_dir}/{spec.file}").columns))
            if mine:
                out[spec.file] = mine
    return out


def _sample(spark: SparkSession, uc: UseCaseConfig, entities: int) -> dict[str, DataFrame]:
    """Bronze of the lake restricted to about ``entities`` entities (hash-sampled), cached."""
    e = uc.entity
    bronze = {n: tables.read(spark, uc.table(s.table), made_by=tables.INGEST_JOB) for n, s in uc.sources.items()}
    keyed = [df for df in bronze.values() if e in df.columns]
    n = keyed[0].select(F.approx_count_distinct(e)).first()[0] if keyed else 0
    every = max(1, int(n // max(1, entities)))
    pick = F.pmod(F.xxhash64(F.col(e)), F.lit(every)) == 0
    return {name: (df.where(pick) if e in df.columns else df).persist() for name, df in bronze.items()}


def check(spark: SparkSession, uc: UseCaseConfig, as_of: date, entities: int = SAMPLE_ENTITIES) -> None:
    """Run the probe on a sample of the lake at ``as_of``; raise ``LeakageError`` naming every
    file whose features move."""
    frames = _sample(spark, uc, entities)
    try:
        moved = moved_columns(spark, uc, frames, as_of)
    finally:
        for df in frames.values():
            df.unpersist()
    if moved:
        files = "; ".join(f"{uc.conf_dir}/{f}: {', '.join(cols)}" for f, cols in moved.items())
        raise LeakageError(
            f"feature SQL reads the future: at as-of date {as_of} these change when only events on or after it change: {files}. "
            f"Use only events strictly before as_of_date (or run with --skip-leakage-check)"
        )
    log.info("no-leakage probe at %s on about %d entities: no feature moves", as_of, entities)
