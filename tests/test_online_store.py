"""The online feature store (lakeml.serving.store) and its materialization
(lakeml.serving.materialize), on a real Delta feature table written in-process, typed as the
features job writes it, with the values a text encoding could bend (NaN, infinities, -0.0,
subnormals, 64-bit integers, nulls):

- every online row equals the feature table's row of its as_of_date, value for value (doubles
  bit for bit, nulls as nulls), an unknown entity is absent;
- a second run on the same table version is a no-op; a new table version replaces the
  snapshot and leaves no row of the old one;
- a reader during a write sees the old snapshot or the new one, never a mix;
- a real redis-server (started by the cluster stack's recipe on a free port, with a
  password) holds the same rows as the embedded SQLite store.
"""

from __future__ import annotations

import secrets
import socket
import threading
from datetime import date

import pytest
from pyspark.sql import functions as F

from lakeml.core import tables
from lakeml.core.config.env import OnlineSettings
from lakeml.serving import materialize
from lakeml.serving.store import OnlineRow, RedisStore, SqliteStore, new_meta, open_store

DB = "online_t"


# doubles a text encoding could bend: NaN, the infinities, -0.0, the smallest subnormal,
# the last bit of 0.1 + 0.2
EDGES = [float("nan"), float("inf"), float("-inf"), -0.0, 5e-324, 0.1 + 0.2, 1.7976931348623157e308, None]
TYPES = ["double", "int", "bigint"]


@pytest.fixture(scope="module")
def feat(spark, uc):
    """A use case of its own (database and store file ``online_t``) and its feature table,
    typed as the features job writes it (model columns: strings, doubles, ints, longs; plus a
    column the model does not read), with two snapshots: an entity of the older one only must
    stay out of the store. Built directly (seconds; the demo's feature SQL takes a minute)."""
    import random

    u = uc.model_copy(update={"name": DB, "database": DB})
    cats, nums = u.model.categorical, u.model.numeric
    ddl = ", ".join([f"{u.entity} string", "as_of_date date", *[f"{c} string" for c in cats],
                     *[f"{c} {TYPES[i % 3]}" for i, c in enumerate(nums)], "not_a_feature double"])
    rnd = random.Random(5)

    def value(i, typ, k):
        if k % 13 == 0:
            return None
        if typ == "double":
            return EDGES[k % len(EDGES)] if k % 5 == 0 else rnd.uniform(-1e6, 1e6)
        return rnd.randint(-(2**31), 2**31 - 1) if typ == "int" else rnd.randint(-(2**62), 2**62)

    older, newest = date(2026, 4, 10), date(2026, 4, 17)
    rows = []
    for d, n in ((older, 1200), (newest, 1000)):  # entities 1000..1199: in the older snapshot only
        for k in range(n):
            rows.append((f"E{k:06d}", d, *[None if (k + j) % 11 == 0 else f"{c}-{k % (j + 3)}" for j, c in enumerate(cats)],
                         *[value(i, TYPES[i % 3], k + i) for i, _ in enumerate(nums)], rnd.random()))
    tables.ensure_database(spark, DB)
    name = u.table(u.tables.features)
    tables.replace_where(spark.createDataFrame(rows, ddl).repartition(3), name,
                         tables.in_predicate("as_of_date", [older, newest]), partition_by=["as_of_date"])
    return u, name, newest


def _env(env, **online):
    return env.model_copy(update={"online": OnlineSettings(**online)})


def _exact(v):
    """A value compared bit for bit: a double by its hex form (NaN, -0.0 and the last bit count)."""
    return ("double", v.hex()) if isinstance(v, float) else v


def _table_rows(spark, u, name, as_of: date) -> dict[str, dict]:
    cols = materialize.feature_columns(u)
    rows = tables.read(spark, name).where(F.col("as_of_date") == as_of).select(u.entity, *cols).collect()
    return {r[u.entity]: {c: _exact(r[c].isoformat() if isinstance(r[c], date) else r[c]) for c in cols} for r in rows}


def _online_rows(store, entities) -> dict[str, dict]:
    return {e: {c: _exact(v) for c, v in r.features.items()} for e, r in store.get_many(list(entities)).items()}


def test_every_online_row_is_the_feature_row_of_its_date_and_a_rerun_is_a_noop(spark, env, feat, tmp_path):
    u, name, newest = feat
    e = _env(env, store="sqlite", path=str(tmp_path))
    version = tables.version(spark, name)
    done = materialize.run(spark, e, u)
    expected = _table_rows(spark, u, name, newest)
    nulls = sum(v is None for row in expected.values() for v in row.values())
    doubles = sum(isinstance(v, tuple) for row in expected.values() for v in row.values())
    nans = sum(v == ("double", "nan") for row in expected.values() for v in row.values())
    assert len(expected) == 1000 and nulls > 1000 and doubles > 5000 and nans > 50  # the comparison covers nulls and doubles
    assert {k: done[k] for k in ("rows", "as_of_date", "feature_version")} == {
        "rows": len(expected), "as_of_date": newest.isoformat(), "feature_version": version}

    with open_store(e, u) as store:
        got = store.get_many([*expected, "no-such-entity"])
        first = sorted(expected)[0]
        assert _online_rows(store, expected) == expected
        assert "no-such-entity" not in got and "E001100" not in got and {r.as_of_date for r in got.values()} == {newest}
        assert {c for r in got.values() for c in r.features} == set(materialize.feature_columns(u))
        assert {r.feature_version for r in got.values()} == {version}
        meta = store.meta()
        # the same table version again: nothing written
        assert materialize.run(spark, e, u) is None and store.meta() == meta

        # a new table version (an entity added to the newest snapshot): a new snapshot, whole
        tables.append(spark.createDataFrame([("E999999", newest, *[None] * (len(expected[first]) + 1))], tables.schema(spark, name)),
                      name)
        again = materialize.run(spark, e, u)
        assert again["feature_version"] == version + 1 and again["rows"] == len(expected) + 1
        assert _online_rows(store, [*expected, "E999999"]) == {**expected, "E999999": dict.fromkeys(expected[first])}
    with SqliteStore(tmp_path / f"{DB}.sqlite") as raw:  # the old generation is gone
        assert raw._con().execute("select count(*), count(distinct gen) from rows").fetchone() == (len(expected) + 1, 1)


def _versions(entities: list[str], n: int, version: int) -> list[list[OnlineRow]]:
    rows = [OnlineRow(x, {"v": version, "x": i / 7}, date(2026, 1, version), version) for i, x in enumerate(entities)]
    return [rows[i: i + n] for i in range(0, len(rows), n)]


def _reads_during_a_write(store, reader) -> tuple[list[set], list[set], int]:
    """Write version 1, then version 2 in 5 batches; between batches (and all along, from a
    second thread) read every entity. Returns the versions each read saw."""
    entities = [f"E{i:05d}" for i in range(500)]
    store.write(_versions(entities, 100, 1), new_meta(date(2026, 1, 1), 1, 0))
    between, concurrent, stop = [], [], threading.Event()

    def hammer():
        while not stop.is_set():
            got = reader.get_many(entities)
            concurrent.append({(r.feature_version, r.features["v"], r.as_of_date.day) for r in got.values()} | {len(got)})

    def paused(batches):
        for b in batches:
            between.append({r.feature_version for r in reader.get_many(entities).values()})
            yield b

    t = threading.Thread(target=hammer)
    t.start()
    try:
        store.write(paused(_versions(entities, 100, 2)), new_meta(date(2026, 1, 2), 2, 0))
    finally:
        stop.set()
        t.join()
    after = {r.feature_version for r in reader.get_many(entities).values()}
    return between + [after], concurrent, len(entities)


def test_a_reader_during_a_write_sees_the_old_or_the_new_snapshot_never_a_mix(tmp_path):
    path = tmp_path / "atomic.sqlite"
    with SqliteStore(path, read_only=False) as w, SqliteStore(path) as r:
        between, concurrent, n = _reads_during_a_write(w, r)
        assert between == [{1}] * 5 + [{2}]
        assert {frozenset(s) for s in concurrent} <= {frozenset({(1, 1, 1), n}), frozenset({(2, 2, 2), n})}
        assert r.meta()["rows"] == n and r.meta()["feature_version"] == 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.subprocess
def test_redis_holds_the_same_rows_as_sqlite(spark, env, feat, tmp_path, monkeypatch):
    from lakeml.ops.cluster.stack import ClusterStack

    u, name, newest = feat
    port = _free_port()
    monkeypatch.setenv("LAKEML_REDIS_PORT", str(port))
    monkeypatch.setenv("LAKEML_REDIS_PASSWORD", secrets.token_hex(8))
    stack = ClusterStack(tmp_path / "cluster")
    stack.up(["redis"])
    try:
        url = f"redis://127.0.0.1:{port}/0"
        red = _env(env, store="redis", redis_url=url)
        expected = _table_rows(spark, u, name, newest)
        ents = list(expected)
        assert materialize.run(spark, red, u)["rows"] == len(expected)
        lite = _env(env, store="sqlite", path=str(tmp_path / "lite"))
        materialize.run(spark, lite, u)
        with open_store(red, u) as rs, open_store(lite, u) as ls:
            assert isinstance(rs, RedisStore) and rs.meta()["feature_version"] == ls.meta()["feature_version"]
            assert _online_rows(rs, ents) == _online_rows(ls, ents) == expected
            assert "no-such-entity" not in rs.get_many([ents[0], "no-such-entity"])
            assert materialize.run(spark, red, u) is None

        # the same atomicity on another use case's keys of the same server
        with RedisStore(url, "atomic", read_only=False) as w, RedisStore(url, "atomic") as r:
            between, concurrent, n = _reads_during_a_write(w, r)
            assert between == [{1}] * 5 + [{2}]
            assert {frozenset(s) for s in concurrent} <= {frozenset({(1, 1, 1), n}), frozenset({(2, 2, 2), n})}
            assert len(list(w._r.scan_iter(match="lakeml:atomic:v1:*"))) == 0  # the old version's keys are gone
        # a restart keeps the store (append-only file)
        stack.down(["redis"])
        stack.up(["redis"])
        with open_store(red, u) as rs:
            assert _online_rows(rs, ents) == expected
    finally:
        stack.down(["redis"])
