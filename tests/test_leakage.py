"""Point-in-time correctness of EVERY use case's feature SQL, tested generically from conf,
with the probe the features job runs (``lakeml.features.leakage``).

For each use case in conf/: its demo maker's rows (bronze-shaped, small) give the features
of an as-of date D. Then the future is rewritten, using only what conf says about the
sources (keys, types, ``event_time``; see ``leakage.future_of``). No feature of D may move.
The same rewrite must move the features of a later snapshot (otherwise the test would prove
nothing). And a leaky feature file is refused at runtime, named, before anything is written.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from conftest import CONF, usecases
from lakeml import features
from lakeml.core.config import UseCaseConfig, load_usecase
from lakeml.demo import maker
from lakeml.features import leakage


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
    future = {k: v.persist() for k, v in leakage.future_of(uc, bronze, d).items()}
    grown = {src: future[src].count() - bronze[src].count() for src in uc.sources}
    assert grown and min(grown.values()) > 0, f"the rewrite must add rows to every source: {grown}"

    # no feature of d moves, built beside a later date as a run builds them (``moved_columns``)
    assert features.build_features(spark, uc, [d], frames=bronze).count() > 50
    assert leakage.moved_columns(spark, uc, bronze, d) == {}
    before_later = features.build_features(spark, uc, [later], frames=bronze).persist()
    assert before_later.count() > 50
    moved_later = features.build_features(spark, uc, [later], frames=future).exceptAll(before_later).count()
    assert moved_later > 0, f"the rewrite did not reach the features of {later}: the test proves nothing"
    for df in [*bronze.values(), *future.values(), before_later]:
        df.unpersist()


def test_the_probe_names_a_leaky_feature_file_and_its_columns(spark, conf_copy):
    """usage.sql made to read events on the as-of date itself (<= instead of <): the probe
    names it and the columns that move; the shipped SQL moves nothing."""
    usage = conf_copy / "churn" / "sql" / "features" / "usage.sql"
    text = usage.read_text()
    assert "< p.as_of_date" in text
    usage.write_text(text.replace("< p.as_of_date", "<= p.as_of_date"))
    uc = load_usecase(conf_copy, "churn")
    snaps = uc.features.snapshots
    spec, bronze = demo_bronze(spark, uc, 150, snaps.first_after_days + 10)
    d = spec.start_date + timedelta(days=snaps.first_after_days)
    moved = leakage.moved_columns(spark, uc, bronze, d)
    assert list(moved) == ["sql/features/usage.sql"] and moved["sql/features/usage.sql"], moved
    assert leakage.moved_columns(spark, load_usecase(CONF, "churn"), bronze, d) == {}
    for df in bronze.values():
        df.unpersist()
