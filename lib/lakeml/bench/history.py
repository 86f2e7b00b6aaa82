"""The "history growth" benchmark: what one daily run costs as the lake grows.

    python -m lakeml.bench.history --entities N --history 90,180,360,720 [--usecase NAME] --out history.json

One process, one Spark session, a fresh data folder. The use case's demo maker writes
``max(H) + 3`` days into an upstream folder once; then, for each history length H in turn:
batches up to day H are moved into the landing zone and caught up with one scheduled run
(not measured), and two days are run as a scheduler would, each with its new batch:

- ``full``: day H + 1 landed, the scheduled run with ``full=True`` (every snapshot, every
  label, every scored date and the silver tables recomputed from bronze: what each day cost
  before runs were incremental), timed per stage;
- ``incremental``: day H + 2 landed, the scheduled run (``pipeline.run_scheduled``), timed
  per stage;
- ``ingest_floor``: day H + 2's files read with a plain ``spark.read`` and appended to a
  Delta table, per source: the floor of the ingest stage.

Then (``--cold-day``, a fresh process started by ``scripts/bench.py``) the next day runs as
a scheduler runs it: Python and the JVM started for it, timed from the process's start,
beside the warm daily run of the largest H.

The growth exponent of the daily run's time against H (b in time ~ H^b, fitted on every
H) says whether a day costs the day or the history.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import time
from datetime import timedelta
from pathlib import Path

from lakeml.core.paths import CONF_DIR, PROJECT_ROOT

log = logging.getLogger("lakeml.bench")


def _move(upstream: Path, zone: Path, upto) -> int:
    zone.mkdir(parents=True, exist_ok=True)
    moved = 0
    for d in sorted(os.listdir(upstream)):
        if len(d) == 10 and d[4] == "-" and d <= str(upto):
            shutil.move(str(upstream / d), str(zone / d))
            moved += 1
    return moved


def _stage_seconds(summary: dict) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, st in summary["stages"].items():
        name = key.split("#")[0]
        out[name] = round(out.get(name, 0.0) + st.get("seconds", 0.0), 1)
    return out


def ingest_floor(spark, uc, zone: Path, day=None) -> dict:
    """A plain read of one batch's files (``day``; every batch when None) and, per source, the
    two Delta appends ingest makes of its rows (bronze, the history, and silver, the current
    rows; here both from the one read, cached): the same I/O as the ingest stage without its
    work (typing, quarantine, newest-per-key, layout, log)."""
    from lakeml.core import tables

    tables.ensure_database(spark, uc.database)  # the floor may run before ingest made it
    t0 = time.perf_counter()
    rows = 0
    for name, spec in uc.sources.items():
        folders = [zone / str(day) / name] if day is not None else sorted(zone.glob(f"*/{name}"))
        files = [str(p) for folder in folders if folder.is_dir() for p in folder.rglob("*")
                 if p.is_file() and not p.name.startswith((".", "_"))]
        if not files:
            continue
        reader = spark.read
        if spec.format == "csv":
            df = reader.option("header", True).csv(files)
        elif spec.format == "json":
            df = reader.json(files)
        else:
            df = reader.parquet(*files)
        # a day's JSON may lack a field the first day had (inferred schemas differ): merged
        floor = uc.table(f"bench_floor_{name}")
        df = df.persist()
        try:
            tables.append(df, floor, merge_schema=True)
            tables.append(df, uc.table(f"bench_floor_current_{name}"), merge_schema=True)
        finally:
            df.unpersist()
        rows += int(tables.last_operation_metrics(spark, floor)["numOutputRows"])
    return {"seconds": round(time.perf_counter() - t0, 2), "rows": rows}


def run(entities: int, histories: list[int], out: Path, usecase: str | None = None) -> dict:
    from lakeml.core.config import load_env, load_usecase

    env = load_env(CONF_DIR, os.environ.get("LAKEML_ENV", "embedded"))
    uc = load_usecase(CONF_DIR, usecase, env)
    data_dir = Path(os.environ.get("LAKEML_DATA_DIR") or PROJECT_ROOT / "var" / "bench" / f"history_{uc.name}_{entities}")
    if data_dir.exists():
        shutil.rmtree(data_dir)
    os.environ["LAKEML_DATA_DIR"] = str(data_dir)
    env = load_env(CONF_DIR, env.name)
    from lakeml import pipeline
    from lakeml.core import session, tables
    from lakeml.demo import maker
    from lakeml.lake import landing

    histories = sorted(histories)
    spark = session.get_spark(env, f"lakeml-bench-history-{entities}")
    uc = _measured(uc)
    # two days more than the runs below use: the cold daily runs (cold_day) land them. The
    # history ends before today: ingest refuses batch folders dated in the future
    days = max(histories) + 5
    spec = maker.spec_of(uc, entities=entities, days=days, start_date=min(maker.spec_of(uc).start_date,
                                                                           landing.today_utc() - timedelta(days=days)))
    upstream = data_dir / "upstream"
    result: dict = {"usecase": uc.name, "entities": entities, "histories": histories, "points": [],
                    "start_date": str(spec.start_date), "data_dir": str(data_dir)}
    t0 = time.perf_counter()
    g = maker.run(spark, uc, str(upstream), spec)
    result["generate_seconds"] = round(time.perf_counter() - t0, 1)
    result["landing_rows"] = g["rows"]
    zone = Path(env.landing_zone(uc.name))
    for h in histories:
        t = time.perf_counter()
        _move(upstream, zone, spec.start_date + timedelta(days=h))
        pipeline.run_scheduled(spark, env, uc)  # catch up to day H (not measured)
        catch_up = round(time.perf_counter() - t, 1)
        _move(upstream, zone, spec.start_date + timedelta(days=h + 1))
        t = time.perf_counter()
        full = pipeline.run_scheduled(spark, env, uc, full=True)
        full_s = round(time.perf_counter() - t, 1)
        day = spec.start_date + timedelta(days=h + 2)
        _move(upstream, zone, day)
        t = time.perf_counter()
        inc = pipeline.run_scheduled(spark, env, uc)
        inc_s = round(time.perf_counter() - t, 1)
        floor = ingest_floor(spark, uc, zone, day)
        counts = tables.row_counts(spark, [uc.table(s.table) for s in uc.sources.values()])
        point = {
            "history_days": h, "catch_up_seconds": catch_up,
            "incremental_seconds": inc_s, "incremental_stages": _stage_seconds(inc),
            "full_seconds": full_s, "full_stages": _stage_seconds(full),
            "ingest_floor": floor, "bronze_rows": sum(v or 0 for v in counts.values()),
            "snapshots_computed": {"incremental": len(inc["stages"]["features"]["result"]["as_of_dates"]),
                                   "full": len(full["stages"]["features"]["result"]["as_of_dates"])},
        }
        result["points"].append(point)
        log.info("[bench history] H=%d: daily run %.1f s (full %.1f s), ingest %.1f s vs floor %.1f s", h, inc_s, full_s,
                 point["incremental_stages"].get("ingest", 0), floor["seconds"])
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2, default=str))
    spark.stop()
    return result


def _measured(uc):
    """The use case as the history runs measure it: measure, do not gate (a small model may
    miss the demo's floor; one champion throughout), and snapshots from day 14, so that the
    shortest history (90 days, the newest 33 of them not yet labelled) still has a labelled
    train and test snapshot 30 days apart and the catch-up run trains the champion."""
    snaps = uc.features.snapshots.model_copy(update={"first_after_days": min(uc.features.snapshots.first_after_days, 14)})
    return uc.model_copy(update={
        "features": uc.features.model_copy(update={"snapshots": snaps}),
        "model": uc.model.model_copy(update={"auc_floor": 0.0}),
        "retraining": uc.retraining.model_copy(update={"psi_threshold": 1e9, "min_live_auc": 0.0}),
    })


def cold_day(out: Path, started: float) -> dict:
    """The daily run as a scheduler runs it, in a fresh process (this one: its JVM starts
    here): the next day after the last the lake holds. ``started``: the wall time at which
    the caller started this process, so that the seconds include Python's and the JVM's
    start. Recorded in ``out`` beside the warm daily run of the largest H: as
    ``cold_daily``, or ``cold_daily_without_cds`` when the driver's class-data-sharing
    archive was off (``LAKEML_CDS=0``; lakeml.bench.cds)."""
    from lakeml import pipeline
    from lakeml.core import session
    from lakeml.core.config import load_env, load_usecase

    result = json.loads(out.read_text())
    last = result["points"][-1]
    key = "cold_daily_without_cds" if not session.cds_opts(PROJECT_ROOT) else "cold_daily"
    before = sum(k in result for k in ("cold_daily", "cold_daily_without_cds"))
    os.environ["LAKEML_DATA_DIR"] = result["data_dir"]
    env = load_env(CONF_DIR, os.environ.get("LAKEML_ENV", "embedded"))
    uc = _measured(load_usecase(CONF_DIR, result["usecase"], env))
    from datetime import date

    day = date.fromisoformat(result["start_date"]) + timedelta(days=last["history_days"] + 3 + before)
    _move(Path(result["data_dir"]) / "upstream", Path(env.landing_zone(uc.name)), day)
    spark = session.get_spark(env, "lakeml-bench-cold-day")
    summary = pipeline.run_scheduled(spark, env, uc)
    seconds = round(time.time() - started, 1)
    spark.stop()
    result[key] = {"history_days": last["history_days"] + 1 + before, "seconds": seconds, "stages": _stage_seconds(summary),
                   "warm_seconds": last["incremental_seconds"]}
    out.write_text(json.dumps(result, indent=2, default=str))
    log.info("[bench history] %s %.1f s (warm %.1f s)", key, seconds, last["incremental_seconds"])
    return result[key]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--entities", type=int, required=True)
    p.add_argument("--history", required=True, help="history lengths in days, comma-separated")
    p.add_argument("--usecase")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--cold-day", type=float, metavar="STARTED",
                   help="run the next day in this fresh process on the lake --out's run left (STARTED: the caller's time.time())")
    a = p.parse_args(argv)
    from lakeml import cli

    cli.setup_logging()
    if a.cold_day is not None:
        cold_day(a.out, a.cold_day)
        return
    run(a.entities, [int(x) for x in a.history.split(",")], a.out, a.usecase)


if __name__ == "__main__":
    main()
