"""Streaming scoring (``jobs/stream.py``): Spark Structured Streaming scores records as they
arrive, with the ``@champion`` version's ONNX copy in ONNX Runtime (``score_frame``, in
``mapInArrow``), into the Delta table ``tables.stream_predictions``, exactly once.

Sources (``source``):

* ``features``: the feature table's **change data feed**. The features job writes a
  snapshot by ``replaceWhere`` on its as-of dates, and a daily run rewrites the snapshots of
  the last ``late_days`` in the same commit as the new one: a plain Delta stream fails on such
  a commit, and ``skipChangeCommits`` would skip it whole, the new snapshot with it. The change
  feed gives every inserted row of every commit (a rewritten snapshot's rows too: scored again,
  with the feature table version in ``feature_version``). The job turns the feed on
  (``delta.enableChangeDataFeed``, one metadata commit) the first time. A query's first start
  scores the newest snapshot then and every row committed after, for that date and later (a
  backfill of older dates is not streamed): that date is kept beside the checkpoint.
* ``landing``: JSON lines files dropped into ``<data_dir>/stream/<usecase>/in/``
  (``lakeml.serving.stream_records``: entity rows joined to the entity's newest feature row,
  feature rows scored as given, everything else a reject with its raw text and reason in
  ``<stream_predictions>_rejects``). Write a file under a name starting with ``.`` or ``_``
  and rename it: Spark lists the others, and would read a file half-written.

Exactly once: ``foreachBatch`` writes each micro-batch with Delta's idempotent writes
(``txnAppId`` = the query's id, kept beside the checkpoint; ``txnVersion`` = the batch id), so
a batch run again after a crash (``kill -9`` between the table's commit and the checkpoint's)
is skipped by the tables that have it. The feature table version an entity row is joined with
is pinned per batch before anything is written, so a batch run again makes the same rows and
rejects. A canary (``lakeml.lifecycle.canary.running``: ``scoring.canary.share > 0`` and a
challenger in canary) scores its share of the entities with the challenger, each row recorded
with its alias (``lakeml.serving.stream_score``: both versions in one ``mapInArrow`` pass, the
faster by measurement). The models are loaded once, at start: restart the job after a promotion.

Triggers: ``once`` (``availableNow``: everything available, then stop) or every
``trigger_seconds``; SIGTERM stops the query between micro-batches. One log line per
micro-batch, in the log file only. ``jobs/stream.py`` holds the data folder's lock with the
Derby metastore (one process at a time anyway) and none with an external one, where it runs
beside the daily jobs (turning the change data feed on is one metadata commit to the feature
table: make the first start of a features stream while no features job runs).
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakeml.core import parallel, tables
from lakeml.core.config import EnvConfig, UseCaseConfig
from lakeml.core.errors import LakemlError, MissingDataError
from lakeml.serving import stream_records as records
from lakeml.serving.stream_score import Models, load_models, score_rows

log = logging.getLogger(__name__)

SOURCES = ("features", "landing")
MARKER = "lakeml_stream.json"  # beside Spark's files in the checkpoint folder: the query's id and first date
PINS = "lakeml_feature_versions"  # batch id -> feature table version joined, for a batch run again
KEEP_PINS = 100


class StreamError(LakemlError):
    """A streaming query that cannot start as asked (its checkpoint, its source)."""


def landing_dir(env: EnvConfig, uc: UseCaseConfig) -> str:
    return f"{env.data_dir}/stream/{uc.name}/in"


def checkpoint_dir(env: EnvConfig, uc: UseCaseConfig, source: str) -> str:
    return f"{env.data_dir}/checkpoints/{uc.name}/stream_{source}"


def rejects_table(predictions_table: str) -> str:
    return f"{predictions_table}_rejects"


# --------------------------------------------------------------------------- files beside the checkpoint


def _fs(spark: SparkSession, path: str):
    p = spark._jvm.org.apache.hadoop.fs.Path(path)
    return p.getFileSystem(spark._jsc.hadoopConfiguration()), p


def _read_text(spark: SparkSession, path: str) -> str | None:
    fs, p = _fs(spark, path)
    if not fs.exists(p):
        return None
    stream = fs.open(p)
    try:
        return bytes(spark._jvm.org.apache.commons.io.IOUtils.toByteArray(stream)).decode("utf-8")
    finally:
        stream.close()


def _write_text(spark: SparkSession, path: str, text: str) -> None:
    """A new file, whole or not at all (written aside, then renamed: a crash leaves no half)."""
    fs, p = _fs(spark, path)
    _, tmp = _fs(spark, f"{path}.tmp")
    out = fs.create(tmp, True)
    try:
        out.write(bytearray(text.encode("utf-8")))
    finally:
        out.close()
    if not fs.rename(tmp, p):
        raise StreamError(f"could not write {path}")


def _mkdirs(spark: SparkSession, path: str) -> None:
    fs, p = _fs(spark, path)
    fs.mkdirs(p)


def _delete(spark: SparkSession, path: str) -> None:
    fs, p = _fs(spark, path)
    fs.delete(p, False)


def _batch_ids(spark: SparkSession, folder: str) -> set[int]:
    fs, p = _fs(spark, folder)
    if not fs.exists(p):
        return set()
    return {int(st.getPath().getName()) for st in fs.listStatus(p) if st.getPath().getName().isdigit()}


def unfinished(spark: SparkSession, checkpoint: str) -> list[int]:
    """The micro-batches Spark planned and did not record as done (a crash): run again first."""
    return sorted(_batch_ids(spark, f"{checkpoint}/offsets") - _batch_ids(spark, f"{checkpoint}/commits"))


def query_marker(spark: SparkSession, checkpoint: str, source: str, first_date=lambda: None) -> dict:
    """The query's id and (features) first as-of date (``first_date()``), kept in the
    checkpoint folder: made on the first start, read on every later one. A checkpoint that has batches but no marker was
    not made by this job: refused (its batches would be written again)."""
    path = f"{checkpoint}/{MARKER}"
    text = _read_text(spark, path)
    if text is not None:
        marker = json.loads(text)
        if marker.get("source") != source:
            raise StreamError(f"checkpoint {checkpoint} is the {marker.get('source')} stream's, not the {source} stream's: "
                              "give each source its own --checkpoint")
        return marker
    fs, p = _fs(spark, f"{checkpoint}/offsets")
    if fs.exists(p):
        raise StreamError(f"checkpoint {checkpoint} has batches but no {MARKER}: it was not made by jobs/stream.py. "
                          "Give another --checkpoint, or delete that folder to start over")
    first = first_date()
    marker = {"query": uuid.uuid4().hex, "source": source, "first_date": None if first is None else str(first),
              "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    _mkdirs(spark, checkpoint)
    _write_text(spark, path, json.dumps(marker))
    return marker


def pinned_version(spark: SparkSession, checkpoint: str, batch_id: int, current) -> int:
    """The feature table version batch ``batch_id`` joins with: the one recorded when the
    batch first ran, else ``current()``, recorded now (before the batch writes anything)."""
    path = f"{checkpoint}/{PINS}/{batch_id}"
    text = _read_text(spark, path)
    if text is not None:
        return int(text)
    v = int(current())
    _write_text(spark, path, str(v))
    if batch_id >= KEEP_PINS:
        _delete(spark, f"{checkpoint}/{PINS}/{batch_id - KEEP_PINS}")
    return v


# --------------------------------------------------------------------------- the query


@dataclass
class Totals:
    batches: int = 0
    scored: int = 0
    rejected: int = 0
    last: dict = field(default_factory=dict)


def _sink_rows(scored: DataFrame, uc: UseCaseConfig, source: str, batch_id: int) -> DataFrame:
    return scored.select(
        uc.entity, F.col("as_of_date").alias("score_date"), uc.probability, "prediction",
        "model_name", "model_version", "model_run_id", "model_alias", F.current_timestamp().alias("scored_at"),
        F.lit(source).alias("source"), "source_file", "feature_version", F.lit(int(batch_id)).cast("long").alias("batch_id"))


class _Batches:
    """The ``foreachBatch`` function of one query: score, write once, count, log."""

    def __init__(self, uc, models, source, app_id, predictions, checkpoint, feature_table, schema, trigger_seconds):
        self.uc, self.models, self.source, self.app_id, self.schema = uc, models, source, app_id, schema
        self.trigger_seconds = trigger_seconds  # None: availableNow
        self.predictions, self.rejects = predictions, rejects_table(predictions)
        self.checkpoint, self.feature_table = checkpoint, feature_table
        self.newest: tuple[int, DataFrame] | None = None  # (feature table version, its newest rows, persisted)
        self.totals = Totals()

    def _newest(self, spark: SparkSession, version: int) -> DataFrame:
        if self.newest is None or self.newest[0] != version:
            if self.newest is not None:
                self.newest[1].unpersist()
            rows = records.newest_rows(tables.read_version(spark, self.feature_table, version), self.uc).persist()
            rows.count()
            self.newest = (version, rows)
        return self.newest[1]

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        t0 = time.perf_counter()
        spark = batch.sparkSession
        keep = [self.uc.entity, "as_of_date", "source_file", "feature_version"]
        if self.source == "features":
            rows, rejects = batch.select(*keep[:2], *records.feature_columns(self.uc), F.lit(None).cast("string").alias("source_file"),
                                         F.col("_commit_version").cast("long").alias("feature_version")), None
        else:
            parsed = records.parse(batch, self.uc, self.schema).persist()
            version = pinned_version(spark, self.checkpoint, batch_id, lambda: tables.version(spark, self.feature_table))
            rows, rejects = records.split(parsed, self._newest(spark, version), self.uc, version)
        scored = _sink_rows(score_rows(rows, self.models, self.uc, keep), self.uc, self.source, batch_id).persist()
        n, bad, frames = scored.count(), 0, [scored]
        if rejects is not None:
            rejects = rejects.select("source_file", "raw", "reason", F.lit(int(batch_id)).cast("long").alias("batch_id"),
                                     F.current_timestamp().alias("rejected_at")).persist()
            bad = rejects.count()
            frames.append(rejects)
        t1 = time.perf_counter()
        # the two tables side by side: a small Delta append is mostly the driver's latency
        writes = [(df, name) for df, name, k in [(scored, self.predictions, n), (rejects, self.rejects, bad)] if k]
        parallel.map_all(spark, lambda w: tables.append(w[0], w[1], txn=(self.app_id, batch_id)), writes)
        for df in frames:
            df.unpersist()
        if rejects is not None:
            parsed.unpersist()
        t = self.totals
        t.batches, t.scored, t.rejected = t.batches + 1, t.scored + n, t.rejected + bad
        t.last = {"batch": batch_id, "scored": n, "rejected": bad, "seconds": round(time.perf_counter() - t0, 2),
                  "score_seconds": round(t1 - t0, 2)}
        behind = " (longer than the trigger: falling behind)" if self.trigger_seconds and t.last["seconds"] > self.trigger_seconds else ""
        log.info("batch %d: %d rows scored (%.2f s), %d rejected, written in %.2f s%s", batch_id, n, t.last["score_seconds"], bad,
                 t.last["seconds"] - t.last["score_seconds"], behind, extra={"file_only": True})


def _quiet(spark: SparkSession, logger: str) -> None:
    """Spark's log4j ``logger`` at ERROR: for warnings that are no news here (AQE is off in a
    streaming plan, at every start: the micro-batches' own queries keep it; a micro-batch
    longer than the trigger, on the console at every batch: the batch's own line in the log
    file has its time; a stop between micro-batches finds no job to cancel)."""
    try:
        jvm = spark._jvm
        jvm.org.apache.logging.log4j.core.config.Configurator.setLevel(logger, jvm.org.apache.logging.log4j.Level.ERROR)
    except Exception as e:  # noqa: BLE001 - another logging backend: the warning shows, nothing else changes
        log.debug("could not quiet %s: %s", logger, e)


def start(spark: SparkSession, env: EnvConfig, uc: UseCaseConfig, source: str, *, once: bool = False,
          trigger_seconds: float = 2.0, landing: str | None = None, checkpoint: str | None = None,
          max_files: int | None = None, predictions_table: str | None = None, models: Models | None = None):
    """Start the streaming query of ``source``; returns (query, the foreachBatch function
    holding the totals, a description)."""
    if source not in SOURCES:
        raise StreamError(f"unknown stream source {source!r}: use one of {', '.join(SOURCES)}")
    models = models or load_models(env, uc)
    ft = uc.table(uc.tables.features)
    checkpoint = checkpoint or checkpoint_dir(env, uc, source)
    predictions = predictions_table or uc.table(uc.tables.stream_predictions)
    tables.read(spark, ft, made_by=tables.FEATURES_JOB)  # a missing feature table names its job
    if source == "features":
        if tables.properties(spark, ft).get("delta.enableChangeDataFeed", "false").lower() != "true":
            log.info("turning on the change data feed of %s (the features stream reads it)", ft)
            tables.set_properties(spark, ft, {"delta.enableChangeDataFeed": "true"})
        marker = query_marker(spark, checkpoint, source, first_date=lambda: _newest_date(spark, ft))
        stream = (tables.read_stream(spark, ft, made_by=tables.FEATURES_JOB, readChangeFeed="true")
                  .where(F.col("_change_type").isin("insert", "update_postimage"))
                  .where(F.col("as_of_date") >= F.lit(marker["first_date"]).cast("date")))
        what = f"{ft} (change data feed, as-of dates from {marker['first_date']})"
    else:
        landing = landing or landing_dir(env, uc)
        _mkdirs(spark, landing)
        marker = query_marker(spark, checkpoint, source)
        reader = spark.readStream.format("text")
        if max_files:
            reader = reader.option("maxFilesPerTrigger", int(max_files))
        stream = reader.load(landing).select(
            "value", F.col("_metadata.file_path").alias("source_file"), F.col("_metadata.file_modification_time").alias("landed"))
        what = f"JSON lines files in {landing}"
    fn = _Batches(uc, models, source, f"lakeml-stream-{marker['query']}", predictions, checkpoint, ft,
                  records.declared_schema(uc, tables.schema(spark, ft)), None if once else trigger_seconds)
    writer = stream.writeStream.queryName(f"lakeml_{uc.name}_{source}").option("checkpointLocation", checkpoint).foreachBatch(fn)
    writer = writer.trigger(availableNow=True) if once else writer.trigger(processingTime=f"{trigger_seconds} seconds")
    again = unfinished(spark, checkpoint)
    if again:
        log.info("micro-batch %s did not finish (the job ended in it): it runs again, and a table that has its rows skips them",
                 ", ".join(map(str, again)))
    _quiet(spark, "org.apache.spark.sql.execution.streaming.runtime.ResolveWriteToStream")
    _quiet(spark, "org.apache.spark.sql.execution.streaming.runtime.ProcessingTimeExecutor")  # "falling behind": our batch line says it
    q = writer.start()
    champion = models.champion[1]
    canary_text = (f", challenger version {models.challenger[1].version} for {models.share:.0%} of the entities"
                   if models.challenger else "")
    desc = (f"{what} -> {predictions} with {champion.name} version {champion.version}{canary_text}; "
            f"{'every available record, then stop' if once else f'a micro-batch every {trigger_seconds:g} s'}; checkpoint {checkpoint}")
    return q, fn, desc


def _newest_date(spark: SparkSession, ft: str):
    newest = tables.read(spark, ft).agg(F.max("as_of_date")).first()[0]
    if newest is None:
        raise MissingDataError(f"Table {ft} is empty. Run {tables.FEATURES_JOB}.")
    return newest


class _JvmSignal:
    """A JVM signal handler (a py4j callback) that asks the query to stop. Without it the
    JVM, the process a scheduler signals (``spark-submit`` execs it, the Python driver is
    its child), runs its shutdown hooks on SIGTERM and ends the driver in the middle of a
    batch."""

    def __init__(self, stop: threading.Event):
        self.stop = stop

    def handle(self, sig) -> None:
        self.stop.set()

    class Java:
        implements = ["sun.misc.SignalHandler"]


def _on_signals(spark: SparkSession, stop: threading.Event):
    """SIGTERM and SIGINT set ``stop``, in this process and in its JVM; returns what undoes it."""
    undo = []
    for s in (signal.SIGTERM, signal.SIGINT):
        prev = signal.signal(s, lambda *_: stop.set())
        undo.append(lambda s=s, prev=prev: signal.signal(s, prev))
    try:
        jvm = spark._jvm
        for name in ("TERM", "INT"):
            sig = jvm.sun.misc.Signal(name)
            prev = jvm.sun.misc.Signal.handle(sig, _JvmSignal(stop))
            undo.append(lambda sig=sig, prev=prev: jvm.sun.misc.Signal.handle(sig, prev))
    except Exception as e:  # noqa: BLE001 - a JVM that refuses (another vendor's): its default, a stop mid-batch, is safe too
        log.warning("the JVM's signals stay as they were (%s): SIGTERM to it ends the stream mid-batch, which the next start runs again", e)
    return lambda: [u() for u in reversed(undo)]


def run(spark: SparkSession, env: EnvConfig, uc: UseCaseConfig, source: str, *, once: bool = False, trigger_seconds: float = 2.0,
        landing: str | None = None, checkpoint: str | None = None, max_files: int | None = None) -> dict:
    """Run the query until it has nothing left (``once``) or SIGTERM / SIGINT; returns what it did."""
    q, fn, desc = start(spark, env, uc, source, once=once, trigger_seconds=trigger_seconds, landing=landing,
                        checkpoint=checkpoint, max_files=max_files)
    log.info("streaming %s", desc)
    stop = threading.Event()
    undo = _on_signals(spark, stop)
    stopped_by = "nothing left (availableNow)" if once else None
    try:
        while q.isActive and not stop.is_set():
            q.awaitTermination(0.5)
        if stop.is_set() and q.isActive:
            stopped_by = "signal"
            log.info("stopping the stream (signal): after the running micro-batch, if one runs")
            deadline = time.monotonic() + 60
            while q.isActive and q.status.get("isTriggerActive") and time.monotonic() < deadline:
                time.sleep(0.1)  # let the running micro-batch finish: it is then not run again
            _quiet(spark, "org.apache.spark.scheduler.DAGScheduler")
            q.stop()
        q.awaitTermination()  # raises the query's failure, if it failed
    finally:
        undo()
    t = fn.totals
    log.info("stream stopped (%s): %d micro-batches, %d rows scored, %d rejected", stopped_by, t.batches, t.scored, t.rejected)
    return {"source": source, "stopped_by": stopped_by, "batches": t.batches, "rows_scored": t.scored, "rows_rejected": t.rejected,
            "table": fn.predictions, "rejects_table": fn.rejects, "checkpoint": fn.checkpoint}


def measure_latency(spark: SparkSession, env: EnvConfig, uc: UseCaseConfig, *, trigger_seconds: float = 2.0, files: int = 3,
                    rows: int = 100, timeout: float = 120.0, models: Models | None = None) -> dict:
    """End-to-end latency of the landing stream at ``trigger_seconds``, in this process (local
    Spark: the files are written to a local temporary folder): a query is started, a file of
    ``rows`` entity rows lands (renamed into the folder, as a sender should), and the time until
    all its predictions are committed is taken; a first file warms the query up, then ``files``
    files are timed one after another. The predictions go to ``<stream_predictions>_latency``.
    Returns {"seconds": the worst timed file, "each": [...], "warm_up": s}."""
    import shutil
    import tempfile
    from pathlib import Path

    work = Path(tempfile.mkdtemp(prefix="lakeml-stream-latency-"))
    landing, ft = work / "in", uc.table(uc.tables.features)
    ids = [r[0] for r in tables.read(spark, ft).select(uc.entity).distinct().orderBy(uc.entity).limit(rows).collect()]
    lines = "".join(json.dumps({uc.entity: e}) + "\n" for e in ids)
    q, fn, _ = start(spark, env, uc, "landing", trigger_seconds=trigger_seconds, landing=str(landing),
                     checkpoint=str(work / "checkpoint"), predictions_table=uc.table(uc.tables.stream_predictions) + "_latency",
                     models=models)
    took = []
    try:
        for i in range(files + 1):
            (landing / f".f{i}.jsonl").write_text(lines)
            t0, want = time.perf_counter(), fn.totals.scored + len(ids)
            (landing / f".f{i}.jsonl").rename(landing / f"f{i}.jsonl")
            while fn.totals.scored < want:  # foreachBatch counts a batch's rows once they are committed
                if not q.isActive or time.perf_counter() - t0 > timeout:
                    q.awaitTermination(0)  # a failed query raises its failure here
                    raise StreamError(f"the stream did not score a landed file within {timeout:g} s")
                time.sleep(0.02)
            took.append(round(time.perf_counter() - t0, 2))
    finally:
        q.stop()
        shutil.rmtree(work, ignore_errors=True)
    log.info("stream latency at a %g s trigger: %s s (warm-up file %s s)", trigger_seconds, took[1:], took[0])
    return {"seconds": max(took[1:]), "each": took[1:], "warm_up": took[0], "trigger_seconds": trigger_seconds, "rows": len(ids)}
