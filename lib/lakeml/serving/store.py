"""The online feature store: the newest feature row of every entity, for the scoring server.

``lakeml.serving.materialize`` fills it after the features stage; the server reads it with
``get_many``. Every materialization is one snapshot, versioned by the Delta version of the
feature table it was read from, and a reader sees the old snapshot or the new one, never a
mix: the new one is written beside the old and a pointer is switched at the end.

* ``sqlite`` (embedded env): a file ``<online.path or data_dir/online>/<use case>.sqlite`` in
  WAL mode, so the server reads while the pipeline writes. Rows carry a generation number;
  a read is one statement that picks the generation the ``meta`` pointer names, and one
  statement sees one snapshot of the database.
* ``redis`` (cluster env): keys ``lakeml:<use case>:v<feature version>:<entity>`` and the
  pointer ``lakeml:<use case>:current`` (the meta JSON). A read is one Lua script (one round
  trip, atomic on the server): it reads the pointer and MGETs the keys of its version.

A row is one JSON text per entity: ``{"as_of_date": "YYYY-MM-DD", "features": {...}}``
(dates as ISO strings, null as None; Python's JSON round-trips doubles exactly, NaN too).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from lakeml.core.config.env import EnvConfig
from lakeml.core.config.usecase import UseCaseConfig
from lakeml.core.errors import LakemlError

log = logging.getLogger(__name__)

PASSWORD_ENV = "LAKEML_REDIS_PASSWORD"
# the meta keys a caller sees; the rest (the sqlite generation) is the store's own
META_KEYS = ("as_of_date", "feature_version", "rows", "written_at")


class OnlineStoreError(LakemlError):
    """The online store cannot be opened or reached; the message names it and how to fix it."""


@dataclass(frozen=True)
class OnlineRow:
    entity: str
    features: dict[str, Any]  # feature name -> value (None for null); dates as ISO strings
    as_of_date: date
    feature_version: int  # the Delta version of the feature table it was read from


@dataclass(frozen=True)
class EncodedBatch:
    """Rows already in their stored form (``encode_body``): what the materialization's
    executors make, so the driver only moves text. Equivalent to the OnlineRows it encodes."""

    entities: list[str]
    bodies: list[str]

    def __len__(self) -> int:
        return len(self.entities)


def encode_body(as_of_date: str, features: dict[str, Any]) -> str:
    """The stored text of a row (without entity and version: the key holds those)."""
    return json.dumps({"as_of_date": as_of_date, "features": features}, separators=(",", ":"), default=_plain)


def encode(row: OnlineRow) -> str:
    return encode_body(row.as_of_date.isoformat(), row.features)


def _plain(v: Any) -> Any:
    if isinstance(v, (date, datetime)):
        return v.isoformat()
    if isinstance(v, Decimal):  # a decimal feature reaches the model as a double anyway
        return float(v)
    raise TypeError(f"cannot store {type(v).__name__} {v!r} in the online store")


def pairs(batch: Sequence[OnlineRow] | EncodedBatch) -> Iterable[tuple[str, str]]:
    """(entity, stored text) of every row of a batch."""
    if isinstance(batch, EncodedBatch):
        return zip(batch.entities, batch.bodies, strict=True)
    return ((r.entity, encode(r)) for r in batch)


def decode(entity: str, text: str | bytes, feature_version: int) -> OnlineRow:
    d = json.loads(text)
    return OnlineRow(entity, d["features"], date.fromisoformat(d["as_of_date"]), int(feature_version))


def new_meta(as_of_date: date, feature_version: int, rows: int) -> dict:
    return {"as_of_date": as_of_date.isoformat(), "feature_version": int(feature_version), "rows": int(rows),
            "written_at": datetime.now(UTC).isoformat(timespec="seconds")}


class OnlineStore:
    """What the server and the materialization need of a store."""

    kind = ""
    where = ""

    def get_many(self, entities: list[str]) -> dict[str, OnlineRow]:
        """The current snapshot's rows of ``entities`` (an unknown entity is absent), in one
        round trip."""
        raise NotImplementedError

    def meta(self) -> dict | None:
        """``{"as_of_date", "feature_version", "rows", "written_at"}`` of the current
        snapshot, or None when nothing was ever materialized."""
        raise NotImplementedError

    def write(self, batches: Iterable[Sequence[OnlineRow] | EncodedBatch], meta: dict) -> None:
        """Write a new snapshot from ``batches`` (lists of rows, or EncodedBatch) of
        ``meta``'s feature version and make it current once all are written; then drop the
        old one. Readers see the old snapshot until the switch. One writer at a time (the
        pipeline's lock)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> OnlineStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --- SQLite ------------------------------------------------------------------------------

_SCHEMA = [
    "create table if not exists meta (k text primary key, v)",
    "create table if not exists rows (gen integer not null, entity text not null, feature_version integer not null,"
    " body text not null, primary key (gen, entity)) without rowid",
]
# one statement: the generation the pointer names and its rows, from one database snapshot
_SELECT = "select entity, body, feature_version from rows where gen = (select v from meta where k = 'gen') and entity in ({})"
_MAX_VARS = 30_000  # below SQLite's limit of host parameters per statement (32766)


class SqliteStore(OnlineStore):
    """An embedded file. Thread-safe: every thread that reads gets its own connection
    (``threading.local``), as SQLite connections must not be shared while in use."""

    kind = "sqlite"

    def __init__(self, path: str | Path, read_only: bool = True):
        self.path = Path(path)
        self.where = str(self.path)
        self.read_only = read_only
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = self._con()
            con.execute("pragma journal_mode=wal")
            for stmt in _SCHEMA:
                con.execute(stmt)

    def _con(self) -> sqlite3.Connection | None:
        con = getattr(self._local, "con", None)
        if con is not None:
            return con
        if self.read_only:
            # a reader may start before the first materialization: it opens the file once there
            if not self.path.exists():
                return None
            con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False, isolation_level=None)
        else:
            con = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            con.execute("pragma synchronous=normal")  # WAL: durable at checkpoints, never corrupt
        con.execute("pragma busy_timeout=5000")
        self._local.con = con
        with self._lock:
            self._all.append(con)
        return con

    def get_many(self, entities: list[str]) -> dict[str, OnlineRow]:
        con = self._con()
        if con is None or not entities:
            return {}
        out: dict[str, OnlineRow] = {}
        uniq = list(dict.fromkeys(entities))
        for i in range(0, len(uniq), _MAX_VARS):
            part = uniq[i: i + _MAX_VARS]
            try:
                cur = con.execute(_SELECT.format(",".join("?" * len(part))), part)
            except sqlite3.OperationalError as e:
                if "no such table" in str(e):  # created, never written
                    return {}
                raise
            for entity, body, fv in cur:
                out[entity] = decode(entity, body, fv)
        return out

    def meta(self) -> dict | None:
        con = self._con()
        if con is None:
            return None
        try:
            row = con.execute("select v from meta where k = 'current'").fetchone()
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):
                return None
            raise
        return None if row is None else json.loads(row[0])

    def write(self, batches: Iterable[Sequence[OnlineRow] | EncodedBatch], meta: dict) -> None:
        if self.read_only:
            raise OnlineStoreError(f"the online store {self.path} was opened read-only")
        version = int(meta["feature_version"])
        con = self._con()
        cur = con.execute("select v from meta where k = 'gen'").fetchone()
        gen = (int(cur[0]) if cur else 0) + 1
        # a write that died before its switch left rows of generations above the current one
        con.execute("delete from rows where gen >= ?", (gen,))
        n = 0
        for batch in batches:
            # one transaction per batch: a reader never waits long, and never sees them (the
            # pointer still names the old generation)
            con.execute("begin immediate")
            try:
                con.executemany("insert into rows values (?, ?, ?, ?)", ((gen, e, version, body) for e, body in pairs(batch)))
                con.execute("commit")
            except BaseException:
                con.execute("rollback")
                raise
            n += len(batch)
        meta = {**{k: meta[k] for k in META_KEYS if k in meta}, "rows": n}
        con.execute("begin immediate")
        con.execute("insert or replace into meta values ('gen', ?)", (gen,))
        con.execute("insert or replace into meta values ('current', ?)", (json.dumps(meta),))
        con.execute("commit")
        # old generations go after the switch; a reader mid-statement keeps its snapshot
        con.execute("delete from rows where gen <> ?", (gen,))
        con.execute("pragma wal_checkpoint(truncate)")
        log.info("online store %s: %d rows of feature version %s (%s)", self.path, n, meta.get("feature_version"), meta.get("as_of_date"))

    def close(self) -> None:
        with self._lock:
            cons, self._all = self._all, []
        for con in cons:
            con.close()
        self._local = threading.local()


# --- Redis -------------------------------------------------------------------------------

# KEYS[1]: the pointer; ARGV[1]: the key prefix; ARGV[2..]: entities. Returns the feature
# version and the entities' values (false when absent), or nil before the first write.
_GET_LUA = """
local cur = redis.call('GET', KEYS[1])
if not cur then return nil end
local v = tostring(cjson.decode(cur)['feature_version'])
local keys = {}
for i = 2, #ARGV do keys[#keys + 1] = ARGV[1] .. 'v' .. v .. ':' .. ARGV[i] end
if #keys == 0 then return {v, {}} end
return {v, redis.call('MGET', unpack(keys))}
"""
_LUA_CHUNK = 5000  # entities per script call (Lua's unpack has a stack limit near 8000)
_SCAN_BATCH = 1000


class RedisStore(OnlineStore):
    """A Redis server (``online.redis_url``; the password only from ``LAKEML_REDIS_PASSWORD``).
    The redis client's connection pool is thread-safe: one store serves every thread."""

    kind = "redis"

    def __init__(self, url: str, usecase: str, read_only: bool = True):
        import redis

        self.url, self.read_only = url, read_only
        self.where = url
        self.prefix = f"lakeml:{usecase}:"
        self._pointer = self.prefix + "current"
        self._r = redis.Redis.from_url(url, password=os.environ.get(PASSWORD_ENV) or None, socket_timeout=10, socket_connect_timeout=5)
        self._get = self._r.register_script(_GET_LUA)

    def _call(self, fn, *args, **kw):
        import redis

        try:
            return fn(*args, **kw)
        except redis.AuthenticationError as e:
            raise OnlineStoreError(f"the online store {self.url} refused the password (set {PASSWORD_ENV}): {e}") from e
        except redis.ConnectionError as e:
            raise OnlineStoreError(f"the online store {self.url} does not answer ({e}); "
                                   "start it with scripts/cluster.sh up redis") from e

    def get_many(self, entities: list[str]) -> dict[str, OnlineRow]:
        out: dict[str, OnlineRow] = {}
        uniq = list(dict.fromkeys(entities))
        for i in range(0, len(uniq), _LUA_CHUNK):
            part = uniq[i: i + _LUA_CHUNK]
            res = self._call(self._get, keys=[self._pointer], args=[self.prefix, *part])
            if res is None:
                return {}
            version, values = int(res[0]), res[1]
            for entity, body in zip(part, values, strict=True):
                if body:
                    out[entity] = decode(entity, body, version)
        return out

    def meta(self) -> dict | None:
        raw = self._call(self._r.get, self._pointer)
        return None if raw is None else json.loads(raw)

    def write(self, batches: Iterable[Sequence[OnlineRow] | EncodedBatch], meta: dict) -> None:
        if self.read_only:
            raise OnlineStoreError(f"the online store {self.url} was opened read-only")
        version = int(meta["feature_version"])
        vprefix = f"{self.prefix}v{version}:"
        n = 0
        for batch in batches:
            self.write_batch(vprefix, batch)
            n += len(batch)
        meta = {**{k: meta[k] for k in META_KEYS if k in meta}, "rows": n}
        self._call(self._r.set, self._pointer, json.dumps(meta))
        self.drop_other_versions(version)
        log.info("online store %s: %d rows of feature version %s (%s)", self.url, n, version, meta.get("as_of_date"))

    def write_batch(self, vprefix: str, batch: Sequence[OnlineRow] | EncodedBatch) -> None:
        if len(batch):
            self._call(self._r.mset, {vprefix + e: body for e, body in pairs(batch)})

    def drop_other_versions(self, keep: int) -> int:
        """Delete the keys of every version but ``keep`` (the one before, and any a failed
        write left). The pointer already names ``keep``, and a read is one atomic script, so
        no reader can be halfway through an old version."""
        keep_prefix = f"{self.prefix}v{keep}:".encode()
        gone, doomed = 0, []
        for key in self._r.scan_iter(match=f"{self.prefix}v*", count=_SCAN_BATCH):
            if not key.startswith(keep_prefix):
                doomed.append(key)
            if len(doomed) >= _SCAN_BATCH:
                gone += self._call(self._r.unlink, *doomed)
                doomed = []
        if doomed:
            gone += self._call(self._r.unlink, *doomed)
        return gone

    def close(self) -> None:
        self._r.close()


def sqlite_path(env: EnvConfig, uc: UseCaseConfig) -> Path:
    folder = env._abs(env.online.path) if env.online.path else f"{env.data_dir}/online"
    return Path(folder) / f"{uc.name}.sqlite"


def open_store(env: EnvConfig, uc: UseCaseConfig, read_only: bool = True) -> OnlineStore:
    """The env's online store of a use case (``env.online``)."""
    if env.online.store == "sqlite":
        return SqliteStore(sqlite_path(env, uc), read_only=read_only)
    if not env.online.redis_url:
        raise OnlineStoreError(f"{env.source_file or env.name}: online.store is redis but online.redis_url is not set")
    return RedisStore(env.online.redis_url, uc.name, read_only=read_only)
