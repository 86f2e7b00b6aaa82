"""Materialize the newest feature snapshot into the online store (after the features stage).

The rows of the feature table's newest ``as_of_date``, the model's input features only (plus
the entity and the date), go to the env's online store (lakeml.serving.store) as one new
snapshot, versioned by the Delta version of the feature table. Point-in-time: the online row
of an entity is the feature table's row of its ``as_of_date``, value for value.

Idempotent: a store that already holds the table's current version is left alone, and that
check costs no Spark job, so a daily run without new features costs ~nothing; a run that
died halfway is simply run again (the store switches to a snapshot only once it is whole).

How the rows travel: the executors encode them (JSON per entity, inside ``mapInArrow``) and
pack each Arrow batch into one Arrow IPC blob; the driver pulls the blobs a partition at a
time (``toLocalIterator``) and hands them to the store. The driver never holds the whole
snapshot and moves a few large values, not a Python object per row. Measured against
``toLocalIterator`` of the rows (encoded on the driver), 2 cores under load: at 100k rows the
blobs wrote the store 0.6-5.8 s sooner in 4 of 4 runs (sqlite 10-19 s vs 16-21 s, redis
4-12 s vs 6-15 s); at 10k they cost 1-2 s more (the Python workers of mapInArrow start).
Larger snapshots and more executors favour the blobs: the encoding runs where the rows are.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import date

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakeml.core import tables
from lakeml.core.config import EnvConfig, UseCaseConfig
from lakeml.core.errors import ConfigError, MissingTableError
from lakeml.serving.store import EncodedBatch, encode_body, new_meta, open_store

log = logging.getLogger(__name__)

_BLOB_SCHEMA = "n long, blob binary"
_PAIR_SCHEMA = pa.schema([("entity", pa.string()), ("body", pa.string())])


def feature_columns(uc: UseCaseConfig) -> list[str]:
    """What the model reads, in the model's order (categorical, then numeric)."""
    return list(dict.fromkeys([*uc.model.categorical, *uc.model.numeric]))


def run(spark: SparkSession, env: EnvConfig, uc: UseCaseConfig, as_of_dates: list[date] | None = None) -> dict | None:
    """Materialize the newest snapshot of the feature table (the newest of ``as_of_dates``
    when given: e.g. the dates the features stage just wrote) into the online store.
    Returns ``{rows, as_of_date, feature_version, seconds, store}``, or None when the store
    already holds the table's current version (or the table has no rows)."""
    t0 = time.time()
    name = uc.table(uc.tables.features)
    if not tables.exists(spark, name):
        raise MissingTableError(f"Table {name} does not exist: the online store is filled from it. Create it by running "
                                f"{tables.FEATURES_JOB}.")
    version = tables.version(spark, name)
    store = open_store(env, uc, read_only=False)
    try:
        held = store.meta()
        if held is not None and int(held["feature_version"]) == version:
            log.info("online store %s already holds %s version %d (%s): nothing to do", store.where, name, version, held["as_of_date"])
            return None
        # read at the version recorded, so the snapshot is that version even if a write came in between
        df = tables.read_version(spark, name, version)
        cols = [uc.entity, "as_of_date", *feature_columns(uc)]
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise ConfigError(f"{uc.source_file}: model features {missing} are not columns of {name}")
        as_of = max(as_of_dates) if as_of_dates else df.agg(F.max("as_of_date")).first()[0]
        if as_of is None:
            log.info("%s has no rows: nothing to materialize", name)
            return None
        snapshot = df.where(F.col("as_of_date") == F.lit(as_of)).select(*cols)
        store.write(encoded_batches(snapshot, uc.entity), new_meta(as_of, version, 0))
        rows = int(store.meta()["rows"])
    finally:
        store.close()
    out = {"rows": rows, "as_of_date": as_of.isoformat(), "feature_version": version,
           "seconds": round(time.time() - t0, 2), "store": f"{store.kind} {store.where}"}
    log.info("online store: %s", out)
    return out


def encoded_batches(snapshot: DataFrame, entity: str) -> Iterator[EncodedBatch]:
    """The rows of ``snapshot`` (entity, as_of_date, features...) as stored texts, streamed
    to the driver one Arrow batch at a time."""
    features = [c for c in snapshot.columns if c not in (entity, "as_of_date")]

    def encode(batches):
        # on the executors: one output row (a whole Arrow IPC stream) per input batch
        for b in batches:
            n = b.num_rows
            if n == 0:
                continue
            ents = b.column(entity).cast(pa.string())  # the store keys text (a bigint id as its digits)
            dates = [d.isoformat() for d in b.column("as_of_date").to_pylist()]
            vals = [b.column(c).to_pylist() for c in features]
            bodies = [encode_body(dates[i], {c: v[i] for c, v in zip(features, vals, strict=True)}) for i in range(n)]
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, _PAIR_SCHEMA) as w:
                w.write_batch(pa.record_batch([ents, pa.array(bodies, pa.string())], schema=_PAIR_SCHEMA))
            yield pa.record_batch([pa.array([n], pa.int64()), pa.array([sink.getvalue().to_pybytes()], pa.binary())],
                                  names=["n", "blob"])

    for row in snapshot.mapInArrow(encode, _BLOB_SCHEMA).toLocalIterator(prefetchPartitions=True):
        t = pa.ipc.open_stream(row["blob"]).read_all()
        yield EncodedBatch(t.column("entity").to_pylist(), t.column("body").to_pylist())
