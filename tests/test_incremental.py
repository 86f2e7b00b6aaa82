"""Incremental runs: a daily run costs what the day brings, and gives the tables a full
recompute from scratch would.

- the declared lookbacks are right: for every use case, features from the pruned event
  windows equal features from all history;
- the silver tables kept by MERGE equal ``latest_per_key`` over bronze, re-sent keys, late
  batches and tombstones included, and a re-ingested batch rebuilds them;
- N daily scheduled runs (late rows, re-sent keys, a malformed batch in the middle) leave
  the same silver tables, features, labels and predictions as one recompute from scratch;
- the feedback loop: score dates off the snapshot schedule get their labels and live
  performance once their window closes, and a live AUC under the floor fires retraining;
- a daily run reads the window, not the history: Delta skips the files outside it.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import date, timedelta
from pathlib import Path

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from conftest import CONF, usecases
from lakeml import features, pipeline
from lakeml.core import tables
from lakeml.core.config import load_usecase
from lakeml.demo import maker
from lakeml.features import job as features_job
from lakeml.lake import ingest, silver
from lakeml.ml import score
from test_leakage import demo_bronze


@pytest.mark.parametrize("name", usecases())
def test_the_declared_lookbacks_give_the_features_of_all_history(spark, name):
    uc = load_usecase(CONF, name)
    snaps = uc.features.snapshots
    spec, frames = demo_bronze(spark, uc, 200, snaps.first_after_days + 4 * snaps.every_days + 5)
    first = spec.start_date
    dates = features.snapshot_dates(first, first + timedelta(days=spec.days), snaps.every_days, snaps.first_after_days)[-3:]
    pruned = features.build_features(spark, uc, dates, frames=frames, prune=True)
    everything = features.build_features(spark, uc, dates, frames=frames, prune=False)
    assert everything.count() > 100
    assertDataFrameEqual(pruned, everything, checkRowOrder=False)
    observed = dates[-1]
    assertDataFrameEqual(features.build_labels(spark, uc, dates, observed, frames=frames, prune=True),
                         features.build_labels(spark, uc, dates, observed, frames=frames, prune=False), checkRowOrder=False)
    for df in frames.values():
        df.unpersist()


def _things_uc(uc, db: str):
    from lakeml.core.config import SourceSpec

    spec = SourceSpec.model_validate({
        "format": "csv", "table": "bronze_things", "keys": ["id"], "delete_flag": "deleted",
        "columns": {"id": {"type": "string"}, "v": {"type": "int"}, "deleted": {"type": "boolean"}},
    })
    return uc.model_copy(update={"database": db, "sources": {"things": spec}})


def _bronze_slice(spark, u, batch: date, rows: list[tuple]):
    """Replace one batch of bronze_things; a row is (id, v, deleted[, file name])."""
    df = spark.createDataFrame([(*r[:3], batch, f"/landing/{batch}/things/{r[3] if len(r) > 3 else 'f.csv'}") for r in rows],
                               "id string, v int, deleted boolean, _batch_date date, _source_file string")
    tables.ensure_database(spark, u.database)
    tables.replace_where(df, u.table("bronze_things"), tables.in_predicate("_batch_date", [batch]))
    return df


def test_silver_by_merge_is_the_latest_row_per_key_of_bronze(spark, uc):
    u = _things_uc(uc, "t_silver")
    d1, d2, d3 = date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 3)
    silver.merge(spark, u, "things", _bronze_slice(spark, u, d1, [("a", 1, False), ("b", 1, False), ("c", 1, False)]))
    # a newer batch: b re-sent, d new, c deleted (a tombstone)
    silver.merge(spark, u, "things", _bronze_slice(spark, u, d3, [("b", 3, False), ("d", 3, False), ("c", None, True)]))
    # a late batch of an earlier date: a changes (newer than d1), b does not (d3 is newer)
    silver.merge(spark, u, "things", _bronze_slice(spark, u, d2, [("a", 2, False), ("b", 2, False)]))
    # the same batch again with a second file: within a batch the greater file name wins, as in a full recompute
    silver.merge(spark, u, "things", _bronze_slice(spark, u, d2, [("a", 2, False), ("b", 2, False),
                                                                  ("e", 20, False, "a.csv"), ("e", 21, False, "b.csv")]))
    full = silver.latest_per_key(spark.table(u.table("bronze_things")), ["id"])
    assertDataFrameEqual(spark.table(u.silver("things")), full, checkRowOrder=False)
    assert sorted((r.id, r.v) for r in silver.current(spark, u, "things").collect()) == [("a", 2), ("b", 3), ("d", 3), ("e", 21)]
    # the batch d3 ingested again without d: a merge cannot take d away, a rebuild does
    _bronze_slice(spark, u, d3, [("b", 3, False), ("c", None, True)])
    silver.rebuild(spark, u, "things")
    assertDataFrameEqual(spark.table(u.silver("things")), silver.latest_per_key(spark.table(u.table("bronze_things")), ["id"]),
                         checkRowOrder=False)
    assert sorted(r.id for r in silver.current(spark, u, "things").collect()) == ["a", "b", "e"]


def test_keys_that_keep_their_event_time_are_looked_for_in_their_time_only(spark, uc):
    """With ``key_keeps_event_time``, the silver MERGE skips the files of other times (Delta's
    merge metrics), and the table is still the latest row per key of bronze."""
    from lakeml.core.config import SourceSpec

    spec = SourceSpec.model_validate({
        "format": "json", "table": "bronze_events", "keys": ["id"], "event_time": "at", "key_keeps_event_time": True,
        "columns": {"id": {"type": "string"}, "at": {"type": "date"}, "v": {"type": "int"}},
    })
    u = uc.model_copy(update={"database": "t_silver_time", "sources": {"events": spec}})
    tables.ensure_database(spark, u.database)
    start = date(2026, 1, 1)

    def batch(b: date, rows: list[tuple]):
        df = spark.createDataFrame([(*r, b, f"/landing/{b}/events/e.jsonl") for r in rows],
                                   "id string, at date, v int, _batch_date date, _source_file string")
        tables.replace_where(df, u.table("bronze_events"), tables.in_predicate("_batch_date", [b]))
        return df

    # 10 weeks of events, laid out a week per file by the first load
    first = [(f"e{i}", start + timedelta(days=i % 70), 1) for i in range(70 * 200)]  # 7 files of 2 000 rows or more
    silver.merge(spark, u, "events", batch(date(2026, 3, 12), first))
    files = spark.sql(f"DESCRIBE DETAIL {u.silver('events')}").first().numFiles
    assert files >= 5
    # a day later: new events of the last two days and one re-sent (same event time)
    resent = next(r for r in first if r[1] == start + timedelta(days=69))
    new = [(f"n{i}", start + timedelta(days=68 + i % 2), 2) for i in range(30)] + [(resent[0], resent[1], 9)]
    rows = batch(date(2026, 3, 13), new)
    lo, hi = min(r[1] for r in new), max(r[1] for r in new)
    silver.merge(spark, u, "events", rows, unique_keys=True, rows=len(new), span_days=2, time_range=(lo, hi))
    m = spark.sql(f"DESCRIBE HISTORY {u.silver('events')} LIMIT 1").first()
    assert (m.operation, m.operationMetrics["numTargetRowsUpdated"], m.operationMetrics["numTargetRowsInserted"]) == ("MERGE", "1", "30")
    # the keys were looked for in the files of the new rows' two days, not in all ten weeks
    assert _files_read(silver.key_lookup(spark, u, "events", (lo, hi))) < files == _files_read(silver.key_lookup(spark, u, "events"))
    assertDataFrameEqual(spark.table(u.silver("events")), silver.latest_per_key(spark.table(u.table("bronze_events")), ["id"]),
                         checkRowOrder=False)
    assert spark.table(u.silver("events")).where(F.col("id") == resent[0]).first().v == 9


# --------------------------------------------------------------------------- daily runs = a full recompute

INITIAL, DAILY = 105, (106, 107, 108, 109)  # days after the start landed before the first run, then one a day
FEEDBACK = 146  # landed last: the label windows (30 days, 3 days' delay) of every daily score date have closed


def _land(upstream: Path, zone: Path, upto: date) -> None:
    zone.mkdir(parents=True, exist_ok=True)
    for d in sorted(os.listdir(upstream)):
        if len(d) == 10 and d[4] == "-" and date.fromisoformat(d) <= upto:
            shutil.move(str(upstream / d), str(zone / d))


def _inject(upstream: Path, start: date) -> dict:
    """What real exports do to a daily feed: customers sent again with a new plan, usage that
    arrives two days late, and a batch with an unreadable Parquet file and a CSV with the
    wrong header. Returns what was injected where."""
    resent, late, bad = start + timedelta(days=107), start + timedelta(days=108), start + timedelta(days=107)
    first_customers = next((upstream / str(start) / "customers").glob("*.csv")).read_text().splitlines()
    header, rows = first_customers[0], [r for r in first_customers[1:] if r.count(",") == 7][:25]
    (upstream / str(resent) / "customers").mkdir(parents=True, exist_ok=True)
    (upstream / str(resent) / "customers" / "resent.csv").write_text(
        header + "\n" + "\n".join(",".join([*r.split(",")[:2], "premium", "24.99", *r.split(",")[4:]]) for r in rows) + "\n")
    ids = [r.split(",")[0] for r in rows]
    two_days_ago = resent - timedelta(days=1)
    (upstream / str(late) / "usage_events" / "late.jsonl").write_text("".join(
        json.dumps({"event_id": f"LATE-{c}", "customer_id": c, "event_ts": f"{two_days_ago}T10:00:00Z", "sessions": 9,
                    "minutes_used": 500.0, "device": "tv"}) + "\n" for c in ids))
    (upstream / str(bad) / "payments" / "garbage.parquet").write_bytes(b"\x00not parquet at all\xff" * 10)
    (upstream / str(bad) / "support_tickets" / "wrong_header.csv").write_text("id,who,when\nT1,C1,2026-01-01\n")
    return {"resent": resent, "late": late, "bad": bad}


@pytest.fixture(scope="module")
def daily(spark, env, uc, tmp_path_factory):
    root = tmp_path_factory.mktemp("incremental")
    inc = uc.model_copy(update={
        "database": "t_inc",
        "features": uc.features.model_copy(update={"snapshots": uc.features.snapshots.model_copy(update={"first_after_days": 30})}),
        "model": uc.model.model_copy(update={"name": "t_inc_churn", "auc_floor": 0.55}),
        # one champion for the whole test: the policy never retrains
        "retraining": uc.retraining.model_copy(update={"psi_threshold": 1e6, "min_live_auc": 0.0}),
    })
    spec = maker.spec_of(uc, entities=700, days=FEEDBACK, seed=5, bad_row_rate=0.002)
    upstream = root / "upstream"
    maker.run(spark, inc, str(upstream), spec)
    injected = _inject(upstream, spec.start_date)
    lenv = env.model_copy(update={"storage": env.storage.model_copy(update={"landing": str(root / "landing")})})
    zone = Path(lenv.landing_zone(inc.name))
    runs = []
    for day in (INITIAL, *DAILY):
        _land(upstream, zone, spec.start_date + timedelta(days=day))
        runs.append(pipeline.run_scheduled(spark, lenv, inc))
    return {"env": lenv, "uc": inc, "runs": runs, "injected": injected, "upstream": upstream, "zone": zone, "start": spec.start_date}


def test_daily_runs_cost_the_day(spark, daily):
    inc = daily["uc"]
    first, later = daily["runs"][0]["stages"], [r["stages"] for r in daily["runs"][1:]]
    assert len(first["features"]["result"]["as_of_dates"]) == 7  # six scheduled snapshots (days 30, 44, .., 100) and the newest batch
    # each day: its own snapshot and the earlier ones its rows can touch (late_days 3 before the new batch)
    assert [len(s["features"]["result"]["as_of_dates"]) for s in later] == [2, 3, 3, 3]
    assert {r["batches"] for s in later for r in s["ingest"]["result"]} == {1}
    # the earlier score dates among them are scored again by the version that scored them
    assert [len(s["rescore"]["result"]["rescored"]) for s in later] == [1, 2, 2, 2]
    # the drift reference of the champion was computed once, then read every day
    ref = spark.table(inc.table(inc.tables.drift_reference))
    assert ref.select("model_version").distinct().count() == 1 and ref.select("computed_at").distinct().count() == 1
    assert spark.table(inc.table(inc.tables.drift_metrics)).select("score_date").distinct().count() == 1 + len(DAILY)


def test_daily_runs_equal_a_full_recompute_from_scratch(spark, daily):
    inc, env = daily["uc"], daily["env"]
    full = inc.model_copy(update={"database": "t_inc_full"})
    ingest.ingest(spark, env, full)
    dates = sorted(r[0] for r in spark.table(inc.table(inc.tables.features)).select("as_of_date").distinct().collect())
    features_job.run(spark, full, as_of=dates)
    served = spark.table(inc.table(inc.tables.predictions)).select("score_date", "model_alias", "model_version").distinct().collect()
    assert served and {r.model_version for r in served} == {"1"}
    for r in sorted(served):
        score.run(spark, env, full, r.score_date, alias=r.model_alias, version=r.model_version)
    pairs = {f"silver_{s}": (inc.silver(s), full.silver(s)) for s in inc.sources}
    pairs.update({t: (inc.table(t), full.table(t)) for t in (inc.tables.features, inc.tables.labels)})
    for a, b in pairs.values():  # bit for bit: no tolerance (a double that differs in its last bit can cross a tree split)
        assertDataFrameEqual(spark.table(a), spark.table(b), checkRowOrder=False, rtol=0, atol=0)
    assertDataFrameEqual(spark.table(inc.table(inc.tables.predictions)).drop("scored_at"),
                         spark.table(full.table(full.tables.predictions)).drop("scored_at"), checkRowOrder=False, rtol=0, atol=0)
    # the anomalies happened: re-sent customers changed plan, late usage landed, the bad files were quarantined
    q = spark.table(inc.table(inc.tables.quarantine)).where(F.col("batch_date") == F.lit(daily["injected"]["bad"]))
    assert {r.source for r in q.collect()} >= {"payments", "support_tickets"}
    late = spark.table(inc.table("bronze_usage_events")).where(F.col("event_id").startswith("LATE-"))
    assert late.count() == 25


def _files_read(df) -> int:
    """Run ``df`` (a filtered scan of one Delta table) and return the scan's "number of files
    read" (after Delta's data skipping) and the files of the table."""
    qe = df._jdf.queryExecution()
    qe.toRdd().count()  # executes this very plan, so its metrics are the ones read below
    leaves = qe.executedPlan().collectLeaves()
    scans = [leaves.apply(i) for i in range(leaves.size()) if leaves.apply(i).metrics().contains("numFiles")]
    assert len(scans) == 1, [leaves.apply(i).nodeName() for i in range(leaves.size())]
    return int(scans[0].metrics().apply("numFiles").value())


def test_a_daily_run_reads_only_the_files_of_its_event_window(spark, daily):
    """The history view of a daily run (window [newest - 90 days, newest)) scans only the bronze
    files whose event times meet the window: Delta skips the rest on their min/max statistics."""
    inc = daily["uc"]
    bronze = inc.table(inc.sources["usage_events"].table)
    newest = max(r[0] for r in spark.table(inc.table(inc.tables.features)).select("as_of_date").distinct().collect())
    lo, hi = newest - timedelta(days=90), newest
    features.register_source_views(spark, inc, window=(lo, hi))
    read = _files_read(spark.table("usage_events_history"))
    features.register_source_views(spark, inc)
    total = spark.sql(f"DESCRIBE DETAIL {bronze}").first().numFiles
    # the files that hold an event of the window, from the data itself
    per_file = (spark.table(bronze).groupBy(F.input_file_name().alias("f"))
                .agg(F.min("event_ts").alias("lo"), F.max("event_ts").alias("hi")))
    meeting = per_file.where((F.col("hi") >= F.lit(lo).cast("timestamp")) & (F.col("lo") < F.lit(hi).cast("timestamp"))).count()
    assert per_file.count() == total and 0 < meeting < total
    assert read == meeting, f"{read} files read for the window, {meeting} of {total} hold events of it"


def test_every_scored_date_gets_live_performance_and_a_live_auc_under_the_floor_retrains(spark, daily):
    """The feedback loop on score dates off the snapshot schedule: once their label windows
    close, performance_metrics has every one of them, and a champion whose live ROC AUC is
    under min_live_auc is retrained. (Runs last: it lands more days into the daily lake.)"""
    inc, env = daily["uc"], daily["env"]
    pt, perf_t = inc.table(inc.tables.predictions), inc.table(inc.tables.performance_metrics)
    scored = sorted(r[0] for r in spark.table(pt).select("score_date").distinct().collect())
    snaps = inc.features.snapshots
    schedule = set(features.snapshot_dates(daily["start"], max(scored), snaps.every_days, snaps.first_after_days)[:-1])
    assert len(scored) == 1 + len(DAILY) and not set(scored) & schedule  # every score date is off the 14-day schedule
    before = spark.table(perf_t).count() if tables.exists(spark, perf_t) else 0
    assert before == 0  # no label window had closed yet

    _land(daily["upstream"], daily["zone"], daily["start"] + timedelta(days=FEEDBACK))
    strict = inc.model_copy(update={"retraining": inc.retraining.model_copy(update={"min_live_auc": 0.99})})
    out = pipeline.run_scheduled(spark, env, strict)

    perf = spark.table(perf_t).where((F.col("model_alias") == "champion") & (F.col("model_version") == "1"))
    measured = sorted(r.score_date for r in perf.where(F.col("roc_auc").isNotNull()).collect())
    assert set(scored) <= set(measured), f"scored {scored}, measured {measured}"
    assert min(r.n for r in perf.collect()) > 300
    reasons = out["stages"]["policy"]["result"]["reasons"]
    assert [r for r in reasons if r.startswith("live ROC AUC")] and "train" in out["stages"], reasons
    dec = spark.table(inc.table(inc.tables.model_decisions)).where("action = 'policy' AND decision = 'retrain'").collect()
    assert [d for d in dec if "live ROC AUC" in d.reasons]  # reasons: "; "-joined
