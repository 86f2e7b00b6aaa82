"""Point-in-time correctness of EVERY use case's feature SQL, tested generically from conf.

For each use case in conf/: its demo maker's rows (bronze-shaped, small) give the features
of an as-of date D. Then the future is rewritten, using only what conf says about the
sources (keys, types, ``event_time``):

- every event with event_time on or after D changes every other value and moves later;
- past events are copied to D .. D+4 (D itself at midnight: "strictly before" is tested at
  its edge) under new keys, so entities without future events get some;
- every attribute row (a source without event_time) gets a new version arriving after D
  with every non-key value changed.

No feature of D may move. The same rewrite must move the features of a later snapshot
(otherwise the test would prove nothing).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from conftest import CONF, usecases
from lakeml import features
from lakeml.core.config import SourceSpec, UseCaseConfig, load_usecase
from lakeml.demo import maker


def _bronze(uc: UseCaseConfig, frames: dict[str, DataFrame]) -> dict[str, DataFrame]:
    """The maker's rows typed as declared, with the bronze metadata columns."""
    out = {}
    for name, spec in uc.sources.items():
        df = frames[name]
        out[name] = df.select(
            *[F.col(c).cast(cs.type).alias(c) for c, cs in spec.columns.items()],
            F.col("arrival_date").cast("date").alias("_batch_date"),
            F.lit("demo").alias("_source_file"),
        )
    return out


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


def _at(d, days: F.Column, type_: str):
    """D + days, as the event_time's type (a timestamp at midnight: the very edge)."""
    day = F.date_add(F.lit(d), days)
    return day.cast("timestamp") if type_ == "timestamp" else day


def _new_key(col: str, type_: str):
    c = F.col(col)
    if type_ in ("int", "bigint", "double"):
        return (-c - 1).cast(type_)  # negative: never an existing key of the demo data
    if type_ == "string":
        return F.concat(c, F.lit("#future"))
    return c


def _future(uc: UseCaseConfig, bronze: dict[str, DataFrame], d) -> dict[str, DataFrame]:
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
        if t is None:  # attributes: a new version of every row arrives after D, every value changed
            changed = df.select(
                *[(F.col(c) if c in fixed else _other(c, cs.type)).alias(c) for c, cs in spec.columns.items()],
                F.lit(d + timedelta(days=1)).alias("_batch_date"),
                F.lit("future").alias("_source_file"),
            )
            out[name] = df.unionByName(changed)
            continue
        ttype = spec.columns[t].type
        t_day = F.to_date(F.col(t))
        # events on or after D: every other value changed, and later still
        future = F.coalesce(t_day >= F.lit(d), F.lit(False))
        # keys and the entity stay (the same events), every other value changes
        moved = df.select(
            *[(F.col(c) if c in fixed and c != t else F.when(future, _other(c, cs.type)).otherwise(F.col(c))).alias(c) for c, cs in spec.columns.items()],
            "_batch_date",
            "_source_file",
        )
        # copies of past events at D .. D+4 under keys that do not exist yet
        past = df.where(t_day < F.lit(d))
        shift = F.pmod(F.xxhash64(*[F.col(k) for k in spec.keys]), F.lit(5)).cast("int")
        alterable = [k for k in spec.keys if k not in (entity, t)]
        if alterable or t in spec.keys:
            template = past
        else:  # keyed by the entity alone (one event per entity): entities that have none
            template = everyone.join(df.select(entity), entity, "left_anti").crossJoin(past.drop(entity).limit(1))
        copies = template.select(
            *[
                (_at(d, shift, ttype) if c == t else _new_key(c, cs.type) if c in alterable else F.col(c)).alias(c)
                for c, cs in spec.columns.items()
            ],
            F.date_add(F.lit(d), shift + 1).alias("_batch_date"),
            F.lit("future").alias("_source_file"),
        )
        out[name] = moved.unionByName(copies)
    return out


def demo_bronze(spark, uc: UseCaseConfig, entities: int, days: int):
    """The use case's demo data (no damage) as cached bronze-shaped frames: (spec, frames)."""
    spec = maker.spec_of(uc, entities=entities, days=days, bad_row_rate=0.0)
    return spec, {k: v.persist() for k, v in _bronze(uc, maker.frames(spark, uc, spec)).items()}


@pytest.mark.parametrize("name", usecases())
def test_no_feature_moves_when_the_future_changes(spark, name):
    uc = load_usecase(CONF, name)
    snaps = uc.features.snapshots
    _, bronze = demo_bronze(spark, uc, 250, snaps.first_after_days + 3 * snaps.every_days + 10)
    first = min(r[0] for r in [df.agg(F.min("_batch_date")).first() for df in bronze.values()] if r[0] is not None)
    newest = max(r[0] for r in [df.agg(F.max("_batch_date")).first() for df in bronze.values()] if r[0] is not None)
    dates = features.snapshot_dates(first, newest, snaps.every_days, snaps.first_after_days)
    assert len(dates) >= 3, dates
    d, later = dates[0], dates[2]
    future = {k: v.persist() for k, v in _future(uc, bronze, d).items()}
    grown = {src: future[src].count() - bronze[src].count() for src in uc.sources}
    assert grown and min(grown.values()) > 0, f"the rewrite must add rows to every source: {grown}"

    before = features.build_features(spark, uc, [d], frames=bronze).persist()
    before_later = features.build_features(spark, uc, [later], frames=bronze).persist()
    assert before.count() > 50

    assertDataFrameEqual(features.build_features(spark, uc, [d], frames=future), before, checkRowOrder=False)
    moved_later = features.build_features(spark, uc, [later], frames=future).exceptAll(before_later).count()
    assert moved_later > 0, f"the rewrite did not reach the features of {later}: the test proves nothing"
    for df in [*bronze.values(), *future.values(), before, before_later]:
        df.unpersist()
