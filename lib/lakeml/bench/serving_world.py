"""The lake the serving benchmark (:mod:`lakeml.bench.serving`) serves from, built in one
process and one Spark session; the servers it measures then run without a JVM beside them.

    python -m lakeml.bench.serving_world --data-dir DIR --out world.json [--entities N] [--days D]
        [--first-after-days N] [--usecase NAME] [--no-stream]

In the embedded env, on a fresh data folder ``--data-dir`` (emptied first): the use case's
demo data, then the pipeline stages a served model needs (ingest, features, materialize: the
newest snapshot into the online store, train: the first version becomes ``@champion``, with
its ONNX copy). Then the request bodies, written beside ``--out``: the entities of the
store's snapshot and their feature rows (``rows.jsonl``, one ``{entity, features}`` object a
line); the champion's ONNX copy logged again with MLflow's ``onnx`` flavour, for the peer
(``mlflow models serve``); and the streaming job's latency from a landed micro-batch to its
predictions (``lakeml.serving.stream.measure_latency``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

from lakeml.core.paths import CONF_DIR

DEFAULT_TRIGGER_SECONDS = 2.0  # jobs/stream.py --trigger-seconds' default

log = logging.getLogger("lakeml.bench")

ROWS_FILE = "rows.jsonl"
# what a served model needs (the online store filled after features, a trained @champion): no
# quality, validate, score or monitor
STAGES = ["ingest", "features", "materialize", "train"]
STREAM_FILES = 5  # landed files timed one after another (after one that warms the query up)


def build(data_dir: Path, entities: int | None, days: int | None, out: Path, usecase: str | None = None, stream: bool = True,
          first_after_days: int | None = None) -> dict:
    """The lake in ``data_dir`` (emptied first: never the env's own data folder), its
    description written to ``out``."""
    from lakeml import pipeline
    from lakeml.core import session, tables
    from lakeml.core.config import load_env, load_usecase
    from lakeml.demo import maker
    from lakeml.serving import materialize

    if data_dir.exists():
        shutil.rmtree(data_dir)
    os.environ["LAKEML_DATA_DIR"] = str(data_dir)  # its own warehouse, metastore, MLflow and online store
    env = load_env(CONF_DIR, "embedded")
    uc = load_usecase(CONF_DIR, usecase, env)
    uc = uc.model_copy(update={"model": uc.model.model_copy(update={"auc_floor": 0.0})})  # measure, do not gate
    if first_after_days is not None:  # fewer days of data still give a train and a test snapshot
        snaps = uc.features.snapshots.model_copy(update={"first_after_days": first_after_days})
        uc = uc.model_copy(update={"features": uc.features.model_copy(update={"snapshots": snaps})})
    spec = maker.spec_of(uc, entities=entities, days=days)
    steps: dict[str, float] = {}
    t0 = time.perf_counter()
    spark = session.get_spark(env, "lakeml-bench-serving")
    steps["session"] = round(time.perf_counter() - t0, 1)

    def step(name, fn, *args, **kw):
        t = time.perf_counter()
        log.info("[bench serving] %s ...", name)
        r = fn(*args, **kw)
        steps[name] = round(time.perf_counter() - t, 1)
        log.info("[bench serving] %s: %.1f s", name, steps[name])
        return r

    step("generate", maker.run, spark, uc, env.landing_zone(uc.name), spec, force=True)
    summary = step("pipeline", pipeline.run, spark, env, uc, STAGES, leakage_check=False)
    steps.update({f"pipeline:{k}": v["seconds"] for k, v in summary.get("stages", {}).items()})
    from lakeml.serving.store import open_store

    with open_store(env, uc) as store:
        meta = store.meta()
    if not meta or not meta.get("rows"):
        raise RuntimeError(f"the online store is empty after the pipeline's materialize stage ({summary.get('stages')}): nothing to serve")
    cols = materialize.feature_columns(uc)
    t = time.perf_counter()
    snap = (tables.read(spark, uc.table(uc.tables.features)).where(f"as_of_date = DATE'{meta['as_of_date']}'")
            .select(uc.entity, *cols).orderBy(uc.entity).toPandas())
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / ROWS_FILE, "w") as f:
        for rec in snap.to_dict("records"):
            ent = rec.pop(uc.entity)
            f.write(json.dumps({"entity": ent, "features": {k: _plain(v) for k, v in rec.items()}}, allow_nan=False) + "\n")
    steps["dump_rows"] = round(time.perf_counter() - t, 1)
    result = {
        "usecase": uc.name, "entity": uc.entity, "entities": spec.entities, "days": spec.days, "data_dir": str(data_dir),
        "steps_seconds": steps, "store": {"kind": env.online.store, **meta}, "rows_file": str(out.parent / ROWS_FILE),
        "served_rows": len(snap), "model": {"name": uc.model.name, "version": summary.get("champion_version")},
        "features": cols, "tracking_uri": env.tracking_uri,
    }
    t = time.perf_counter()
    result["peer_model_uri"] = peer_model(env, uc)
    steps["peer_model"] = round(time.perf_counter() - t, 1)
    if stream:
        result["streaming"] = stream_latency(spark, env, uc, steps)
    spark.stop()
    out.write_text(json.dumps(result, indent=2, default=str))
    log.info("[bench serving] wrote %s", out)
    return result


def peer_model(env, uc) -> str:
    """The champion's ONNX copy logged again with MLflow's ``onnx`` flavour, in the bench's own
    MLflow (experiment ``<experiment>-bench``): ``mlflow models serve`` serves that without a
    JVM. Returns its model URI."""
    from lakeml.core import tracking
    from lakeml.ml import score

    client = tracking.configure(env)
    ref = tracking.get_alias(client, uc.model.name, tracking.CHAMPION)
    if ref is None:
        raise RuntimeError(f"no @{tracking.CHAMPION} version of {uc.model.name} after training")
    model = score.onnx_model(client, ref, uc)
    return tracking.log_onnx_model(model, tracking.experiment(env, f"{uc.model.experiment}-bench"), f"onnx copy of version {ref.version}")


def _plain(v):
    """A feature value as JSON has it: None for a missing one (NaN is no JSON), ints as ints."""
    if v is None:
        return None
    if hasattr(v, "item"):  # numpy scalars
        v = v.item()
    if isinstance(v, float) and v != v:
        return None
    return v


def stream_latency(spark, env, uc, steps: dict) -> dict:
    """A landed micro-batch to its committed predictions, at the streaming job's default
    trigger, by the streaming job's own measurement (``lakeml.serving.stream.measure_latency``:
    a landing-folder query, files of entity rows landed one after another)."""
    import statistics

    from lakeml.serving import stream

    t = time.perf_counter()
    try:
        r = stream.measure_latency(spark, env, uc, trigger_seconds=DEFAULT_TRIGGER_SECONDS, files=STREAM_FILES)
    except Exception as e:  # a failed measurement is a result; the HTTP part still runs
        log.warning("streaming latency: %s: %s", type(e).__name__, e)
        return {"error": f"{type(e).__name__}: {e}"}
    finally:
        steps["streaming"] = round(time.perf_counter() - t, 1)
    return {"batches": len(r["each"]), "max_seconds": r["seconds"], "median_seconds": statistics.median(r["each"]),
            "each_seconds": r["each"], "warm_up_seconds": r["warm_up"], "trigger_seconds": r["trigger_seconds"],
            "rows_per_batch": r["rows"]}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, required=True, help="the lake's folder (emptied first)")
    p.add_argument("--entities", type=int, help="entities of the demo (default: the use case's demo block)")
    p.add_argument("--days", type=int, help="days of demo data (default: the use case's demo block)")
    p.add_argument("--first-after-days", type=int, help="override features.snapshots.first_after_days of the use case")
    p.add_argument("--usecase")
    p.add_argument("--no-stream", action="store_true", help="skip the streaming measurement")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    from lakeml import cli

    cli.setup_logging()
    build(a.data_dir.resolve(), a.entities, a.days, a.out.resolve(), a.usecase, stream=not a.no_stream,
          first_after_days=a.first_after_days)


if __name__ == "__main__":
    sys.exit(main())
