"""The benchmark harness runs end to end as `make bench` does, at a tiny scale. Speed is
judged by the benchmark itself (docs/benchmarks.md), never here: nothing below asserts a
duration."""

from __future__ import annotations

import json
import shutil
import sys

import pytest

from conftest import ROOT, run_cmd
from lakeml.bench import harness, report, targets


def test_memory_sampler_sees_the_driver_grow():
    s = harness.MemorySampler(interval=0.05).start()
    try:
        before = s.take_peak()["python_rss_mb"]
        block = bytearray(300 * 1024 * 1024)  # touched: resident
        block[:: 4096] = b"x" * len(block[:: 4096])
        after = s.take_peak()["python_rss_mb"]
        del block
    finally:
        s.stop()
    assert after - before >= 250


def test_history_growth_section_and_its_targets():
    def point(h, daily, full, ingest, floor):
        return {"history_days": h, "incremental_seconds": daily, "full_seconds": full, "bronze_rows": h * 1000,
                "incremental_stages": {"ingest": ingest, "features": daily - ingest},
                "full_stages": {"ingest": ingest, "features": full - ingest},
                "ingest_floor": {"seconds": floor, "rows": 10}, "snapshots_computed": {"incremental": 3, "full": h // 7}}

    flat = {"usecase": "churn", "entities": 1000, "points": [point(90, 40.0, 100.0, 10.0, 5.0), point(360, 44.0, 400.0, 11.0, 5.0)]}
    assert report.history_exponent(flat["points"]) == pytest.approx(0.0688, abs=1e-3)  # log(44/40) / log(4)
    text = "\n".join(report.history_section(flat))
    assert "| 360 | 360,000 | 44.0 | 400.0 | 9.1× | 11.0 | 5.0 | 2.2× | 3 / 51 |" in text
    assert "| daily run flat in history: exponent b ≤ 0.15 | b = 0.07 (full: 1.00) | yes |" in text
    assert "≥ 5× faster than the full recompute | 9.1× | yes |" in text and "within 3× of its floor (H = 360) | 2.2× | yes |" in text
    assert "cold daily run" not in text  # not measured: no row
    cold = {**flat, "cold_daily": {"history_days": 361, "seconds": 60.0, "warm_seconds": 44.0}}
    assert "| cold daily run (a fresh process, H = 361) ≤ 1.5× the warm one | 60.0 s vs 44.0 s: 1.4× | yes |" in "\n".join(
        report.history_section(cold))
    both = {**cold, "cold_daily_without_cds": {"history_days": 361, "seconds": 88.0, "warm_seconds": 44.0}}
    assert "60.0 s vs 44.0 s: 1.4× (without the class-data-sharing archive: 88.0 s, 2.0×) | yes |" in "\n".join(
        report.history_section(both))
    steep = {**flat, "points": [point(90, 40.0, 100.0, 10.0, 2.0), point(360, 160.0, 400.0, 40.0, 2.0)]}
    text = "\n".join(report.history_section(steep))
    assert "b = 1.00 (full: 1.00) | **no** |" in text and "2.5× | **no** |" in text and "20.0× | **no** |" in text


def test_targets_of_ingest_the_standalone_env_and_the_cold_daily_run():
    def run(entities, ingest, floor, features):
        return {"scale": {"entities": entities}, "stages": {"ingest": {"seconds": ingest, "driver_rss_mb": 900},
                                                             "floor:ingest": {"seconds": floor},
                                                             "features": {"seconds": features, "driver_rss_mb": 800}}}

    results = [run(30_000, 20.0, 8.0, 10.0), run(1_000_000, 600.0, 330.0, 400.0)]
    alone = {"master": "spark://127.0.0.1:7077", "results": [run(30_000, 25.0, 8.0, 12.0), run(1_000_000, 700.0, 330.0, 480.0)]}
    history = {"cold_daily": {"history_days": 361, "seconds": 102.0, "warm_seconds": 60.0},
               "cold_daily_without_cds": {"history_days": 361, "seconds": 120.0, "warm_seconds": 60.0}}
    text = "\n".join(targets.target_table(results, alone, history))
    assert "| ingest ≥ 50 % of its floor's rate | 55 % | yes |" in text  # 330 / 600
    assert "| ingest ≥ 35 % of its floor's rate at 30,000 entities | 40 % | yes |" in text  # 8 / 20
    assert ("| standalone env ≥ 80 % of the embedded env's rows/s for ingest and features at 1,000,000 entities "
            "| ingest 86 %, features 83 % | yes |") in text
    assert ("| cold daily run (a fresh process, H = 361) ≤ 1.5× the warm one | 102.0 s vs 60.0 s: 1.7× "
            "(without the class-data-sharing archive: 120.0 s, 2.0×) | **no** |") in text
    # the standalone cluster ran only the small scale: judged there; features short of 80 %
    slow = {**alone, "results": [run(30_000, 22.0, 8.0, 14.0)]}
    assert ("at 30,000 entities | ingest 91 %, features 71 % | **no** |") in "\n".join(targets.target_table(results, slow))
    # one scale, no standalone run, no cold run: none of those rows
    text = "\n".join(targets.target_table(results[1:]))
    assert "at 30,000 entities" not in text and "standalone" not in text and "cold daily" not in text


def test_a_run_made_in_parts_says_so():
    one = [{"part": "scales", "commit": "a" * 40, "started": "2026-12-07T12:24+00:00", "seconds": 2100}]
    assert report.parts_line(None) == [] and report.parts_line(one) == []  # one whole run: nothing to say
    two = one + [{"part": "history", "commit": "a" * 40, "started": "2026-12-07T13:40+00:00", "seconds": 1500}]
    assert report.parts_line(two)[0] == (
        "Run in parts, one after the other on this machine (one commit): scales on aaaaaaa, "
        "started 2026-12-07T12:24+00:00, 2,100 s; history on aaaaaaa, started 2026-12-07T13:40+00:00, 1,500 s.")
    three = two + [{"part": "standalone", "commit": "b" * 40, "started": "2026-12-08T09:00+00:00", "seconds": 900}]
    assert "(2 commits; `git diff` between them says what changed)" in report.parts_line(three)[0]
    whole = [{**p, "run": "1@1"} for p in three]  # one `make bench` made every part: not "in parts"
    assert report.parts_line(whole) == []


def test_growth_exponent():
    lin = [{"stages": {"x": {"input_rows": n, "seconds": n / 1000}}} for n in (1_000, 10_000)]
    quad = [{"stages": {"x": {"input_rows": n, "seconds": (n / 1000) ** 2}}} for n in (1_000, 10_000)]
    assert report.growth(lin, "x") == pytest.approx(1.0)
    assert report.growth(quad, "x") == pytest.approx(2.0)
    assert report.growth(lin[:1], "x") is None


@pytest.mark.subprocess
@pytest.mark.e2e
def test_bench_runs_every_stage_and_peer(tmp_path):
    md, scaling = tmp_path / "benchmarks.md", tmp_path / "scaling.md"
    md.write_text(f"old numbers\n{report.ANALYSIS}\nhand-written analysis stays\n")
    shutil.copy(ROOT / "docs" / "scaling.md", scaling)
    p = run_cmd(
        [sys.executable, "scripts/bench.py", "--scales", "1500", "--days", "120", "--udf-rows", "300", "--history", "", "--no-serving",
         "--work-dir", str(tmp_path / "work"), "--json", str(tmp_path / "b.json"), "--md", str(md), "--scaling-md", str(scaling)],
        timeout=1500,
    )
    assert "bench scale 1/1" in p.stdout and "[bench" in p.stderr  # progress while it runs
    doc = json.loads((tmp_path / "b.json").read_text())
    r = doc["results"][0]
    assert r["session_start_seconds"] > 0
    want = report.PROJECT_STAGES + ["peer:features_duckdb", "peer:train_mllib_gbt", "peer:train_lightgbm", "peer:train_xgboost",
                                    "peer:score_pandas_udf", "peer:score_mlflow_spark_udf", "peer:score_native_engine",
                                    "floor:ingest", "floor:score"]
    assert [s for s in want if s not in r["stages"]] == []
    empty = {n: st for n, st in ((n, r["stages"][n]) for n in want)
             if not (st["seconds"] > 0 and st["input_rows"] > 0 and st["driver_rss_mb"] > 0)}
    assert empty == {}, "stages without time, rows or memory"
    # the peers ran on the same data: same feature rows, same scored rows
    assert r["stages"]["peer:features_duckdb"]["output_rows"] == r["rows"]["features"]
    assert r["stages"]["peer:score_pandas_udf"]["output_rows"] == r["stages"]["score"]["input_rows"]
    udf = r["stages"]["peer:score_mlflow_spark_udf"]
    # churn trains xgboost, and xgboost.spark loads a model with a Spark session: not on an executor
    assert r["stages"]["train"]["classifier"] == "xgboost"
    assert "should not be invoked from executor side" in udf["error"] and "output_rows" not in udf
    assert 0.5 < r["stages"]["peer:train_lightgbm"]["roc_auc"] <= 1 and 0.5 < r["stages"]["peer:train_mllib_gbt"]["roc_auc"] <= 1
    assert 0.5 < r["stages"]["peer:train_xgboost"]["roc_auc"] <= 1
    assert r["stages"]["score"]["engine"] == "onnx"  # scoring.engine auto: the version has its ONNX copy
    # the floors read and write what their stage does: the same landing rows, the same scored rows
    assert r["stages"]["floor:ingest"]["output_rows"] == sum(r["rows"]["landing"].values())
    assert (r["stages"]["floor:score"]["output_rows"] == r["stages"]["peer:score_native_engine"]["output_rows"]
            == r["stages"]["score"]["input_rows"])
    # the event-log profile is split by benchmark stage
    assert r["profile"]["features"] and r["profile"]["features"][0]["seconds"] >= 0
    text = md.read_text()
    assert ("## Targets" in text and "peer:features_duckdb" in text
            and "scoring.engine: native (transform), the other engine" in text and "one xgboost fit ≤ 5×" in text)
    assert "ingest vs its floor" in text and "hand-written analysis stays" in text and "old numbers" not in text
    assert "input rows at 1 B events" in scaling.read_text()
    # a standalone-cluster run (--standalone) is the same record: its section and its driver target
    alone = {"master": "spark://127.0.0.1:7077", "results": [r]}
    peak = report.driver_peak(r)
    assert peak == max(r["stages"][n]["driver_rss_mb"] for n in report.PROJECT_STAGES)
    section = "\n".join(report.standalone_section(alone))
    assert "## The driver alone: the standalone cluster" in section and f"| **peak** | **{peak:,}** |" in section
    assert f"| driver RSS on the standalone cluster ≤ 2 GB at every scale | {peak:,} MB |" in "\n".join(targets.target_table([r], alone))


def _load(server, body, n, clients, rps, p99, errors=0, paced=None):
    return {"server": server, "body": body, "per_request": n, "clients": clients, "paced_rps": paced, "requests_per_s": rps,
            "items_per_s": round(rps * n),
            "p50_ms": p99 / 3, "p90_ms": p99 / 2, "p99_ms": p99, "max_ms": p99 * 2, "errors": errors,
            "error_kinds": {"status": errors} if errors else {}, "server_cores": 0.9, "seconds": 10.0}


def _serving(**changes):
    runs = [_load("ours", "entities", 1, 10, 1200.0, 8.2), _load("ours", "entities", 1, 50, 1500.0, 30.5),
            _load("ours", "entities", 1, 50, 540.0, 6.5, paced=550.0),
            _load("ours", "entities", 1000, 2, 60.0, 45.0), _load("ours", "rows", 1, 50, 1400.0, 33.0),
            _load("floor", "constant", 1, 50, 2500.0, 20.0), _load("peer", "rows", 1, 50, 700.0, 90.0)]
    sv = {"runs": runs, "streaming": {"batches": 5, "median_seconds": 3.1, "max_seconds": 4.4, "trigger_seconds": 2.0},
          "world": {"entities": 10_000, "days": 120, "model": {"name": "m", "version": "1"},
                    "store": {"as_of_date": "2026-04-20", "rows": 6_900, "kind": "sqlite"}, "steps_seconds": {"pipeline": 200.0}},
          "load": {"tool": "wrk 4.1.0", "threads": 1, "duration_s": 10.0, "warmup_s": 2.0, "cores": 2,
                   "pinned": {"server": "0", "load": "1"}},
          "servers": {"ours": {"command": "serve.sh --port 1", "ready_seconds": 4.0, "rss_mb": 300},
                      "peer": {"command": "mlflow models serve", "error": "peer exited (1) before it was ready"}},
          "parity": {"ours_entities": 0.0, "peer_inputs": 2e-16}, "seconds": 540}
    return {**sv, **changes}


def test_serving_targets_on_hand_built_loads():
    rows = {t.split(":")[0]: (m, ok) for t, m, ok in targets.serving_rows(_serving())}
    assert rows["online, 1 entity a request (store read + score), 10 clients"] == ("p99 8.2 ms at 1,200 requests/s", True)
    # 50 clients offering ~550 requests/s meet it; flat out (saturated, the queue's latency) they do not: both said
    assert rows["online, 1 entity a request, 50 clients, paced"] == ("p99 6.5 ms at 540 requests/s", True)
    assert rows["online, 1 entity a request, 50 clients, flat out"] == ("p99 30.5 ms at 1,500 requests/s", False)
    assert rows["online, 1,000 entities a request"] == ("60,000 entities/s (2 clients, p99 45 ms)", True)
    assert rows["online ≥ 50 % of the floor's requests/s (the same FastAPI + uvicorn answering a constant), 50 clients"] == (
        "60 % (1,500 vs 2,500 requests/s)", True)
    peer = next(v for k, v in rows.items() if k.startswith("online against the peer"))
    assert peer == ("1,400 vs 700 requests/s (2.0×), p99 33.0 vs 90.0 ms", None)  # a comparison, no threshold
    assert rows["streaming"] == ("4.4 s at worst over 5 micro-batches (median 3.1 s, trigger 2 s)", True)
    # errors fail a target whatever the latency; a streaming run that failed is a miss, said so
    bad = _serving(runs=[_load("ours", "entities", 1, 10, 1200.0, 8.2, errors=3)], streaming={"error": "StreamError: no champion"})
    got = targets.serving_rows(bad)
    assert [(m, ok) for _, m, ok in got] == [("p99 8.2 ms at 1,200 requests/s; **3 errors** (status 3)", False),
                                             ("not measured: StreamError: no champion", False)]
    assert targets.serving_rows({}) == []  # the part did not run: no rows
    text = "\n".join(targets.target_table([{"scale": {"entities": 1}, "stages": {"ingest": {"seconds": 1.0, "driver_rss_mb": 9}}}],
                                          serving=_serving()))
    assert "| online, 1,000 entities a request: ≥ 50,000 entities/s | 60,000 entities/s (2 clients, p99 45 ms) | yes |" in text


def test_serving_section_says_how_it_was_measured():
    text = "\n".join(report.serving_section(_serving()))
    assert "## Online and streaming serving" in text
    assert "the server pinned to CPU 0 and wrk to CPU 1 (taskset); whatever else runs on the machine is not excluded." in text
    busy = _serving(load={**_serving()["load"], "loadavg_before": 0.4, "loadavg_after": 1.2})
    assert "(1-minute load average 0.4 before the loads, 1.2 after)." in "\n".join(report.serving_section(busy))
    assert "| ours | entities | 1,000 | 2 | 60 | 60,000 | 15.00 | 22.50 | 45.00 | 90.0 | 0 | 0.90 |" in text
    assert "| ours | entities | 1 | 50, paced to 550/s | 540 | 540 |" in text
    assert "- peer: `mlflow models serve`, failed: peer exited (1) before it was ready" in text
    assert "ours by entity within 0.0e+00 of ours by rows, the peer within 2.0e-16 of ours by rows" in text
    assert "in 3.1 s (median), 4.4 s at worst, over 5 micro-batches at the default trigger (2 s)" in text


def test_serving_bodies_carry_the_same_rows_to_both_servers(tmp_path):
    from lakeml.bench import serving

    rows = [{"entity": f"E{i}", "features": {"plan": "a", "age": i, "fee": 1.5 if i != 3 else None}} for i in range(6)]
    src = tmp_path / "rows.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    b = serving.write_bodies(src, tmp_path / "bodies")
    assert (b["entities"], b["complete_rows"], b["big"]) == (6, 5, 5)  # E3 has a missing value: no row body, still an entity

    def lines(key):
        return [json.loads(x) for x in b["paths"][key].read_text().splitlines()]

    assert sorted(x["entities"][0] for x in lines(("ours", "entities", 1))) == [f"E{i}" for i in range(6)]
    ours = [x["rows"][0] for x in lines(("ours", "rows", 1))]
    peer = [x["inputs"] for x in lines(("peer", "rows", 1))]
    assert [{k: v[0][0] for k, v in p.items()} for p in peer] == ours  # the same rows, in the peer's tensor format
    assert all(isinstance(r["age"], float) for r in ours) and len(lines(("ours", "rows", 1000))[0]["rows"]) == 5
    ents, by_rows, tensors = b["parity"]
    assert len(ents["entities"]) == len(by_rows["rows"]) == len(tensors["inputs"]["age"]) == 5
