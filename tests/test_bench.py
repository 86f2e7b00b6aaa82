"""The benchmark harness runs end to end as `make bench` does, at a tiny scale. Speed is
judged by the benchmark itself (docs/benchmarks.md), never here: nothing below asserts a
duration."""

from __future__ import annotations

import json
import shutil
import sys

import pytest

from conftest import ROOT, run_cmd
from lakeml.bench import harness, report


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
        [sys.executable, "scripts/bench.py", "--scales", "1500", "--days", "120", "--udf-rows", "300",
         "--work-dir", str(tmp_path / "work"), "--json", str(tmp_path / "b.json"), "--md", str(md), "--scaling-md", str(scaling)],
        timeout=1500,
    )
    assert "bench scale 1/1" in p.stdout and "[bench" in p.stderr  # progress while it runs
    doc = json.loads((tmp_path / "b.json").read_text())
    r = doc["results"][0]
    assert r["session_start_seconds"] > 0
    want = report.PROJECT_STAGES + ["peer:features_duckdb", "peer:train_mllib_gbt", "peer:train_lightgbm",
                                    "peer:score_pandas_udf", "peer:score_mlflow_spark_udf"]
    assert [s for s in want if s not in r["stages"]] == []
    empty = {n: st for n, st in ((n, r["stages"][n]) for n in want) if not (st["seconds"] > 0 and st["input_rows"] > 0 and st["driver_rss_mb"] > 0)}
    assert empty == {}, "stages without time, rows or memory"
    # the peers ran on the same data: same feature rows, same scored rows
    assert r["stages"]["peer:features_duckdb"]["output_rows"] == r["rows"]["features"]
    assert r["stages"]["peer:score_pandas_udf"]["output_rows"] == r["stages"]["score"]["input_rows"]
    assert r["stages"]["peer:score_mlflow_spark_udf"]["output_rows"] == 300
    assert 0.5 < r["stages"]["peer:train_lightgbm"]["roc_auc"] <= 1 and 0.5 < r["stages"]["peer:train_mllib_gbt"]["roc_auc"] <= 1
    # the event-log profile is split by benchmark stage
    assert r["profile"]["features"] and r["profile"]["features"][0]["seconds"] >= 0
    text = md.read_text()
    assert "## Targets" in text and "peer:features_duckdb" in text and "hand-written analysis stays" in text and "old numbers" not in text
    assert "input rows at 1 B events" in scaling.read_text()
