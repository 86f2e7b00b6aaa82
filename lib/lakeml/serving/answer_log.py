"""Every answer of the scoring server, appended to a Delta table by a buffered writer, so the
feedback loop and drift monitoring see online traffic beside the batch predictions.

The table is ``<warehouse>/<database>.db/<tables.online_predictions>``, where Spark keeps a
use case's tables, written with ``deltalake`` (delta-rs: no JVM in the server) and readable by
Spark; ``register`` names it in the metastore. A request only appends its rows to a list in
memory; a background thread appends them to the table when ``serving.log_flush_rows`` wait or
the oldest has waited ``serving.log_flush_seconds``, and once more at shutdown. A failed write
keeps its rows for the next attempt (at most ``MAX_PENDING_FLUSHES`` flushes' worth; beyond
that the oldest are dropped and counted, so a broken disk cannot exhaust the memory).

Columns: the entity (``features.entity``), ``as_of_date`` and ``feature_version`` of the
features (null for rows the caller gave), ``model_name``, ``model_version``, ``model_alias``,
P(label = 1) under the predictions table's name (``model.probability_column``),
``prediction``, ``request_id``, ``answered_at`` (UTC) and ``answer_date`` (its date, the
partition).
"""

from __future__ import annotations

import logging
import threading
import time

from lakeml.core.config import EnvConfig, UseCaseConfig

log = logging.getLogger(__name__)

MAX_PENDING_FLUSHES = 20
US_PER_DAY = 86_400_000_000


def table_path(env: EnvConfig, uc: UseCaseConfig) -> str:
    """Where Spark's warehouse keeps the use case's tables: ``<warehouse>/<db>.db/<table>``."""
    return f"{env.warehouse_dir.rstrip('/')}/{uc.database}.db/{uc.tables.online_predictions}"


def schema(uc: UseCaseConfig):
    import pyarrow as pa

    return pa.schema([
        pa.field(uc.entity, pa.string()),
        pa.field("as_of_date", pa.date32()),
        pa.field("feature_version", pa.int64()),
        pa.field("model_name", pa.string()),
        pa.field("model_version", pa.string()),
        pa.field("model_alias", pa.string()),
        pa.field(uc.probability, pa.float64()),
        pa.field("prediction", pa.int32()),
        pa.field("request_id", pa.string()),
        pa.field("answered_at", pa.timestamp("us", tz="UTC")),
        pa.field("answer_date", pa.date32()),
    ])


# what a request appends per answer, in this order (answered_at in microseconds since 1970, UTC)
FIELDS = ("entity", "as_of_date", "feature_version", "model_name", "model_version", "model_alias",
          "probability", "prediction", "request_id", "answered_at")


def to_arrow(uc: UseCaseConfig, rows: list[tuple]):
    """The rows (tuples of ``FIELDS``) as an Arrow table of ``schema(uc)``."""
    import pyarrow as pa

    sch = schema(uc)
    cols = list(zip(*rows, strict=True)) if rows else [()] * len(FIELDS)
    arrays = [pa.array(c, type=sch.field(i).type) for i, c in enumerate(cols[:9])]
    micros = pa.array(cols[9], type=pa.int64())
    arrays.append(micros.cast(pa.timestamp("us", tz="UTC")))
    arrays.append(pa.array([m // US_PER_DAY for m in cols[9]], type=pa.int32()).cast(pa.date32()))
    return pa.Table.from_arrays(arrays, schema=sch)


def ensure_table(env: EnvConfig, uc: UseCaseConfig) -> str:
    """Create the empty table if there is none (so it can be registered before any answer);
    returns its path."""
    from deltalake import write_deltalake

    path = table_path(env, uc)
    write_deltalake(path, to_arrow(uc, []), mode="ignore", partition_by=["answer_date"])
    return path


def register(spark, env: EnvConfig, uc: UseCaseConfig) -> str:
    """Name the answer log in the metastore as ``<database>.<tables.online_predictions>`` (a
    Delta table at its path; created empty if the server never wrote). Idempotent."""
    from lakeml.core import tables

    path = ensure_table(env, uc)
    name = uc.table(uc.tables.online_predictions)
    tables.ensure_database(spark, uc.database)
    tables.register_external(spark, name, path)
    return name


class AnswerLog:
    """The buffer and its writer thread. ``add`` is all a request does (a list extend under
    a lock); ``close`` writes what is left."""

    def __init__(self, env: EnvConfig, uc: UseCaseConfig, flush_rows: int | None = None, flush_seconds: float | None = None):
        self.env, self.uc = env, uc
        self.path = table_path(env, uc)
        self.flush_rows = flush_rows or env.serving.log_flush_rows
        self.flush_seconds = flush_seconds or env.serving.log_flush_seconds
        self.max_pending = self.flush_rows * MAX_PENDING_FLUSHES
        self.written = self.failures = self.dropped = 0
        self._buf: list[tuple] = []
        self._oldest = 0.0  # monotonic time of the oldest buffered row
        self._not_before = 0.0  # after a failed write: no attempt before this time
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="answer-log", daemon=True)
        self._thread.start()

    def add(self, rows: list[tuple]) -> None:
        if not rows:
            return
        with self._lock:
            was_empty = not self._buf
            if was_empty:
                self._oldest = time.monotonic()
            self._buf.extend(rows)
            full = len(self._buf) >= self.flush_rows
        if was_empty or full:
            self._wake.set()

    def stats(self) -> dict:
        return {"written": self.written, "pending": len(self._buf), "failures": self.failures, "dropped": self.dropped}

    def _due(self) -> float | None:
        """Seconds until the next write is due (0: now), None when there is nothing to write."""
        with self._lock:
            n, oldest = len(self._buf), self._oldest
        if n == 0:
            return None
        due = oldest + self.flush_seconds if n < self.flush_rows else 0.0
        return max(0.0, max(due, self._not_before) - time.monotonic())

    def _run(self) -> None:
        while not self._stop:
            wait = self._due()
            if wait == 0.0:
                self.flush()
                continue
            self._wake.wait(wait)
            self._wake.clear()

    def flush(self) -> int:
        """Write what is buffered now; returns the rows written (0 on failure: kept)."""
        with self._lock:
            rows, self._buf = self._buf, []
        if not rows:
            return 0
        from deltalake import write_deltalake

        try:
            write_deltalake(self.path, to_arrow(self.uc, rows), mode="append", partition_by=["answer_date"])
        except Exception as e:  # noqa: BLE001 - the server keeps answering; the rows wait for the next attempt
            self.failures += 1
            self._not_before = time.monotonic() + max(1.0, self.flush_seconds)
            with self._lock:
                self._buf[:0] = rows
                over = len(self._buf) - self.max_pending
                if over > 0:
                    del self._buf[:over]
                    self.dropped += over
                self._oldest = time.monotonic()
            log.warning("answer log: cannot append %d rows to %s (%s: %s); retrying", len(rows), self.path, type(e).__name__, e)
            return 0
        self._not_before = 0.0
        self.written += len(rows)
        log.debug("answer log: %d rows appended to %s", len(rows), self.path)
        return len(rows)

    def close(self, timeout: float = 30.0) -> None:
        """Stop the thread and write the rest (one attempt)."""
        self._stop = True
        self._wake.set()
        self._thread.join(timeout)
        self.flush()
        if self._buf:
            log.error("answer log: %d answers could not be written to %s at shutdown", len(self._buf), self.path)
