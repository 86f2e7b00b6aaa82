"""One scale of the benchmark, in one process and one Spark session (scripts/bench.py
starts one of these per scale, so each scale starts from a cold JVM).

    python -m lakeml.bench.run --entities N [--usecase NAME] [--days D] --out results.json

Runs the project's stages in the order of the pipeline on a fresh data folder
(``var/bench/<usecase>_<N>_d<D>`` unless LAKEML_DATA_DIR is set): generate (the use case's demo maker), ingest, features,
quality, train, score, monitor; then the peers on the same data: features in DuckDB,
MLlib GBT vs LightGBM, and scoring through mlflow's spark_udf and a pandas_udf.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from lakeml.bench import figures
from lakeml.core.paths import CONF_DIR, PROJECT_ROOT

log = logging.getLogger("lakeml.bench")


def _cores(master: str) -> int:
    """Task slots of a local master (local, local[N], local[*])."""
    if master.startswith("local[") and master[6:-1].isdigit():
        return int(master[6:-1])
    return 1 if master == "local" else os.cpu_count() or 1


def run(entities: int, days: int, udf_rows: int, out: Path, keep_data: bool = False, first_after_days: int | None = None,
        usecase: str | None = None, master: str | None = None, peers: bool = True, driver_memory: str | None = None) -> dict:
    from lakeml.core.config import load_env, load_usecase

    env = load_env(CONF_DIR, os.environ.get("LAKEML_ENV", "embedded"))
    if master:
        env = on_master(env, master)
    if driver_memory:
        conf = {**env.spark.conf, "spark.driver.memory": driver_memory}
        env = env.model_copy(update={"spark": env.spark.model_copy(update={"conf": conf})})
    uc = load_usecase(CONF_DIR, usecase, env)
    data_dir = Path(os.environ.get("LAKEML_DATA_DIR") or PROJECT_ROOT / "var" / "bench" / f"{uc.name}_{entities}_d{days}")
    if data_dir.exists() and not keep_data:
        shutil.rmtree(data_dir)
    os.environ["LAKEML_DATA_DIR"] = str(data_dir)
    uc = uc.model_copy(update={"model": uc.model.model_copy(update={"auc_floor": 0.0})})  # measure, do not gate
    if first_after_days is not None:  # fewer days of data still give a train and a test snapshot
        snaps = uc.features.snapshots.model_copy(update={"first_after_days": first_after_days})
        uc = uc.model_copy(update={"features": uc.features.model_copy(update={"snapshots": snaps})})

    from lakeml.bench import harness

    sampler = harness.MemorySampler().start()
    result: dict = {
        "usecase": uc.name,
        "scale": {
            "entities": entities,
            "entity": uc.entity,
            "days": days,
            "first_snapshot_after_days": uc.features.snapshots.first_after_days,
            "snapshot_every_days": uc.features.snapshots.every_days,
        },
        "env": env.name,
        "data_dir": str(data_dir),
        "started_at": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    t0 = time.perf_counter()
    from lakeml.core import session

    events = data_dir / "eventlog"
    events.mkdir(parents=True, exist_ok=True)
    event_log = {"spark.eventLog.enabled": "true", "spark.eventLog.dir": events.as_uri(), "spark.eventLog.compress": "false"}
    spark = session.get_spark(env, f"lakeml-bench-{entities}", event_log)
    result["session_start_seconds"] = round(time.perf_counter() - t0, 2)
    result["session_memory"] = sampler.take_peak()
    runtime = spark._jvm.java.lang.Runtime.getRuntime()
    sampler.heap_used = lambda: runtime.totalMemory() - runtime.freeMemory()
    cores = _cores(spark.sparkContext.master)
    result.update(
        master=spark.sparkContext.master,
        cores=cores,
        spark=spark.version,
        spark_conf={k: spark.conf.get(k) for k in ("spark.driver.memory", "spark.sql.shuffle.partitions", "spark.sql.adaptive.enabled")},
    )
    log.info("[bench] spark session up in %.1f s (%s, %d cores)", result["session_start_seconds"], spark.sparkContext.master, cores)
    rec = harness.Recorder(cores, sampler, on_start=lambda name: spark.sparkContext.setJobGroup(name, f"bench stage {name}"))
    try:
        done = _stages(spark, env, uc, entities, days, rec, result)
        if peers:
            _peers(spark, uc, udf_rows, rec, done)
    finally:
        result["stages"] = rec.results
        result["total_seconds"] = round(time.perf_counter() - t0, 1)
        sampler.stop()
        spark.stop()  # flushes the event log
        from lakeml.bench import profile

        try:
            result["profile"] = profile.summarise(events)
        except Exception as e:  # a profile is a bonus; never lose the measurements for it
            log.warning("no profile from %s: %s", events, e)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2, default=str))
        log.info("[bench] wrote %s", out)
    return result


# a driver that only drives: the sizes of the cluster env (conf/envs/cluster.yaml)
CLUSTER_SIZES = ("spark.driver.memory", "spark.executor.memory", "spark.executor.cores")


def on_master(env, master: str):
    """``env`` with its storage, but tasks on ``master`` (e.g. the stack's standalone
    cluster): executors are other JVMs, so the driver's memory is the driver's alone. The
    driver and executor sizes are the cluster env's."""
    from lakeml.core.config import load_env

    sizes = load_env(CONF_DIR, "cluster").spark.conf
    conf = {**env.spark.conf, **{k: sizes[k] for k in CLUSTER_SIZES if k in sizes}}
    return env.model_copy(update={"spark": env.spark.model_copy(update={"master": master, "conf": conf})})


def _stages(spark, env, uc, entities: int, days: int, rec, result: dict) -> dict:
    """The project's stages; returns what the peers need (snapshot dates, train and score results)."""
    from lakeml import monitor
    from lakeml.core import tables
    from lakeml.demo import maker
    from lakeml.features import job as features_job
    from lakeml.lake import ingest, quality
    from lakeml.ml import score, train

    spec = maker.spec_of(uc, entities=entities, days=days)
    with rec.stage("generate") as r:
        g = maker.run(spark, uc, env.landing_zone(uc.name), spec, force=True)
        r["output_rows"] = sum(g["rows"].values())
        r["note"] = "input = rows written to the landing zone"
        r["input_rows"] = r["output_rows"]
    result["rows"] = {"landing": g["rows"]}

    from pathlib import Path

    from lakeml.bench.history import ingest_floor

    # the floor first: it starts as warm as ingest would (after generate), and ingest gets no
    # warm-up the floor did not have; run after ingest, the floor reused ingest's warm JVM and
    # read 20.4 s against 26.7-30.2 s in a fresh process at 30 000 entities (docs/benchmarks.md)
    with rec.stage("floor:ingest") as r:
        fl = ingest_floor(spark, uc, Path(env.landing_zone(uc.name)))
        r["input_rows"] = r["output_rows"] = fl["rows"]
        r["note"] = "plain spark.read of the landing files + two Delta appends per source (bronze, silver), no validation; before ingest"

    with rec.stage("ingest") as r:
        reports = ingest.ingest(spark, env, uc)
        r["input_rows"] = sum(x.rows_read for x in reports)
        r["quarantined"] = sum(x.rows_quarantined for x in reports)
    result["rows"]["bronze"] = tables.row_counts(spark, [uc.table(s.table) for s in uc.sources.values()])
    bronze_rows = sum(result["rows"]["bronze"].values())

    with rec.stage("features", bronze_rows) as r:
        # the feature computation; the no-leakage probe of new SQL (once per SQL change, on a
        # sample) is not part of it
        f = features_job.run(spark, uc, leakage_check=False)
        r["as_of_dates"] = len(f["as_of_dates"])
    result["rows"]["features"] = rec.results["features"]["output_rows"] = tables.read(spark, uc.table(uc.tables.features)).count()
    result["as_of_dates"] = f["as_of_dates"]

    checked = tables.row_counts(spark, [uc.table(t) for t in uc.quality.checks])
    with rec.stage("quality", sum(n for n in checked.values() if n)) as r:
        q = quality.run(spark, uc, fail_on_error=False)
        r["checks"] = sum(t["pass"] + t["warn"] + t["fail"] for t in q["tables"].values())
        r["note"] = "each table's newest batch is checked; input = rows of the checked tables"

    with rec.stage("train") as r:
        tr = train.run(spark, env, uc)
        r["input_rows"] = tr.train_rows + tr.test_rows
        r["roc_auc"] = round(tr.metrics["roc_auc"], 4)
        r["classifier"] = uc.model.classifier
        r["best_params"] = tr.best_params
        r["trees"] = tr.trees
        r["note"] = "grid of models + refit + MLflow logging + ONNX export with parity check"
    result["train"] = {
        "train_dates": tr.train_dates, "test_date": tr.test_date, "version": tr.model.version,
        "best_params": tr.best_params, "trees": tr.trees,
    }

    with rec.stage("score") as r:
        s = score.run(spark, env, uc)
        r["input_rows"] = s["rows"]
        r["model_load_seconds"] = s["model_load_seconds"]
        r["transform_write_seconds"] = s["score_write_seconds"]
        r["transform_write_rows_per_s_per_core"] = round(s["rows"] / max(s["score_write_seconds"], 1e-3) / rec.cores)
        r["engine"] = s["engine"]
        r["note"] = (f"load the champion from MLflow, then {figures.ENGINES[s['engine']]} (scoring.engine: {uc.scoring.engine}) "
                     "+ Delta replaceWhere of one snapshot")
    result["score_date"] = s["score_date"]

    with rec.stage("monitor", s["rows"]) as r:
        monitor.run(spark, env, uc)
        r["note"] = "input = scored rows (the reference rows are read as well)"
    return {"as_of_dates": f["as_of_dates"], "bronze_rows": bronze_rows, "train": tr, "score": s, "env": env}


def _peers(spark, uc, udf_rows: int, rec, done: dict) -> None:
    from pyspark.sql import functions as F

    from lakeml import features
    from lakeml.bench import duckdb_features, peers
    from lakeml.core import tables

    cores = rec.cores
    tr, sc = done["train"], done["score"]
    # features: the same SQL files in DuckDB over the bronze tables' Parquet files
    files = duckdb_features.source_files(spark, uc)
    with tempfile.TemporaryDirectory(dir=os.environ["LAKEML_DATA_DIR"]) as tmp, rec.stage("peer:features_duckdb", done["bronze_rows"]) as r:
        as_of = [date.fromisoformat(x) for x in done["as_of_dates"]]
        d = duckdb_features.build_features(uc, files, as_of, out_path=f"{tmp}/features.parquet", threads=cores,
                                           time_zone=spark.conf.get("spark.sql.session.timeZone"))
        r["output_rows"] = d["rows"]
        r["note"] = "the use case's SQL transpiled with sqlglot, features written to one Parquet file"

    # training: one GBT and one xgboost fit vs LightGBM on the project's split, the same
    # boosting settings (the tuned ones)
    params = peers.boosting({**uc.model.params, **tr.best_params})
    train_df, test_df = peers.split(features.labelled_features(spark, uc), tr.train_dates, tr.test_date)
    with rec.stage("peer:train_mllib_gbt") as r:
        r.update(peers.mllib_gbt(uc, train_df, test_df, params))
        r["input_rows"] = r["rows"]
    with rec.stage("peer:train_xgboost") as r:
        r.update(peers.xgboost_fit(uc, train_df, test_df, params))
        r["input_rows"] = r["rows"]
        r["note"] = "classifier: xgboost, one fit of the project's pipeline (xgboost.spark, num_workers = cores)"
    with rec.stage("peer:train_collect_to_pandas") as r:
        train_pdf, levels = peers.to_pandas(train_df, uc)
        test_pdf, _ = peers.to_pandas(test_df, uc, levels)
        r["input_rows"] = len(train_pdf) + len(test_pdf)
        r["note"] = "what an in-process learner needs first: the training set on the driver"
    with rec.stage("peer:train_lightgbm") as r:
        r.update(peers.lightgbm_fit(uc, train_pdf, test_pdf, params, threads=cores))
        r["input_rows"] = r["rows"]

    # scoring: the same snapshot rows through the other two paths
    snapshot = tables.read(spark, uc.table(uc.tables.features)).where(F.col("as_of_date") == F.lit(sc["score_date"]))
    with rec.stage("floor:score", sc["rows"]) as r:
        r["output_rows"] = peers.score_floor(uc, snapshot, uc.table("bench_scores_floor"))
        r["note"] = "the snapshot read and a predictions table of the same columns written, constant score, no model"
    from lakeml.ml import score

    other = "native" if sc["engine"] == "onnx" else "onnx"  # the engine the stage did not run
    other_uc = uc.model_copy(update={"scoring": uc.scoring.model_copy(update={"engine": other}),
                                     "tables": uc.tables.model_copy(update={"predictions": f"bench_scores_{other}"})})
    with rec.stage(f"peer:score_{other}_engine", sc["rows"]) as r:
        o = score.run(spark, done["env"], other_uc, score_date=sc["score_date"], version=sc["model_version"])
        r["output_rows"] = o["rows"]
        r["model_load_seconds"] = o["model_load_seconds"]
        r["note"] = f"scoring.engine: {other}, {figures.ENGINES[other]}, the same version and snapshot, Delta replaceWhere"
    with rec.stage("peer:score_sklearn_fit") as r:
        model = peers.sklearn_model(uc, train_pdf, params)
        r["input_rows"] = len(train_pdf)
        r["note"] = "not scoring: fitting the scikit-learn model the pandas_udf path broadcasts"
    del train_pdf, test_pdf
    with rec.stage("peer:score_pandas_udf", sc["rows"]) as r:
        r["output_rows"] = peers.score_pandas_udf(spark, uc, model, levels, snapshot, uc.table("bench_scores_pandas_udf"))
        r["note"] = "broadcast scikit-learn HistGradientBoosting, pandas_udf, Delta overwrite"
    n_udf = min(udf_rows, sc["rows"])
    sample = snapshot.limit(n_udf).repartition(cores).persist()
    sample.count()
    version = sc["model_version"]  # the version the native path scored with
    with rec.stage("peer:score_mlflow_spark_udf", n_udf) as r:
        r["note"] = f"mlflow.pyfunc.spark_udf on registered version {version}, first {n_udf:,} rows of the snapshot, Delta overwrite"
        try:
            model_uri = f"models:/{uc.model.name}/{version}"
            r["output_rows"] = peers.score_spark_udf(spark, uc, model_uri, sample, uc.table("bench_scores_spark_udf"))
        except Exception as e:  # a peer that cannot score this model is a result, not a crash of the bench
            r["error"] = peers.python_error(e)
            r["note"] = f"mlflow.pyfunc.spark_udf on registered version {version} could not score it: {r['error']}"
            log.warning("peer:score_mlflow_spark_udf failed: %s", r["error"])
    sample.unpersist()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--entities", type=int, required=True, help="how many entities the use case's demo maker simulates")
    p.add_argument("--usecase", help="the use case (default: the env's); it needs a demo maker")
    p.add_argument("--days", type=int, default=180)
    p.add_argument("--first-after-days", type=int, help="override features.snapshots.first_after_days of the use case")
    p.add_argument("--udf-rows", type=int, default=100_000, help="rows scored through mlflow's spark_udf (it is slow; rows/s is compared)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--keep-data", action="store_true", help="do not empty the data folder first")
    p.add_argument("--master", help="run the tasks there (e.g. spark://127.0.0.1:7077) with the cluster env's driver and "
                                    "executor sizes; storage stays the env's")
    p.add_argument("--no-peers", action="store_true", help="the project's stages only")
    p.add_argument("--driver-memory", help="spark.driver.memory for this run (e.g. 1g: what the driver needs, not what it may take)")
    a = p.parse_args(argv)
    from lakeml import cli

    cli.setup_logging()
    run(a.entities, a.days, a.udf_rows, a.out, a.keep_data, a.first_after_days, a.usecase, a.master, not a.no_peers, a.driver_memory)


if __name__ == "__main__":
    sys.exit(main())
