#!/usr/bin/env python3
"""Benchmark every stage at several scales, against its peers, on this machine.

    make bench [SCALE=30000,100000,1000000] [DAYS=120] [HISTORY=90,180,360,720] [HISTORY_ENTITIES=30000]
    .venv/bin/python scripts/bench.py --scales 30000,100000,1000000 [--days 120]
        [--first-after-days 30] [--udf-rows 50000] [--history 90,180,360,720]
        [--history-entities 30000] [--json docs/benchmarks.json] [--md docs/benchmarks.md]
        [--report-only | --history-only | --scales-only | --serving-only] [--standalone | --standalone-only] [--no-serving]

One process (one cold Spark session) per scale, on its own fresh data folder under
var/bench/; then the "history growth" run (lakeml.bench.history: one daily run after H days
of history, incremental and full, at a fixed entity count); then the serving part
(lakeml.bench.serving: the online scoring server under wrk on loopback, against mlflow models
serve and a constant-answering floor, and the streaming job's latency, on a lake of its own;
about 10 minutes). Progress is logged as it goes.
Results: docs/benchmarks.json (every number), docs/benchmarks.md (tables, targets, scaling,
history growth; the hand-written analysis at its end is kept), and the 1-billion-event
estimate in docs/scaling.md. --report-only rewrites the Markdown from the JSON without
running anything; --history-only runs only the history part (the scales are kept from the
JSON); --scales-only only the scales (the history is kept); --serving-only only the serving
part (the rest is kept), --no-serving skips it.

--standalone adds (and --standalone-only runs alone, keeping the rest of the JSON) the
project's stages at the same scales on the standalone Spark master + worker of
scripts/cluster.sh (started if down, and stopped again): the tasks run in executor JVMs, so
the driver's memory is the driver's alone. Storage stays the embedded env's.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))

from lakeml.bench import estimate, harness, report, targets  # noqa: E402


def _scales(s: str) -> list[int]:
    try:
        out = [int(x.replace("_", "")) for x in s.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--scales: a comma-separated list of entity counts, got {s!r}") from None
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"--scales: positive entity counts, got {s!r}")
    return sorted(out)


def _run_part(title: str, what: str, cmd: list[str], env: dict, part: Path) -> int:
    """One measured part in its own process; its exit code (a failure says where the partial results are)."""
    print(f"== bench {title}\n   {shlex.join(cmd)}", flush=True)
    rc = subprocess.call(cmd, env=env, cwd=ROOT)
    if rc != 0:
        print(f"error: {what} failed (exit {rc}); its log is above, partial results in {part}", file=sys.stderr)
    return rc


def _scale_cmd(a, n: int, part: Path, *extra: str) -> list[str]:
    """The command that measures one scale (lakeml.bench.run) into ``part``."""
    cmd = [sys.executable, "-m", "lakeml.bench.run", "--entities", str(n), "--days", str(a.days),
           "--first-after-days", str(a.first_after_days), *extra, "--out", str(part)]
    return cmd + (["--usecase", a.usecase] if a.usecase else [])


def _standalone(a, env: dict) -> dict | None:
    """The project's stages at every scale on the stack's standalone cluster; None on a failure."""
    from lakeml.ops.cluster.stack import ClusterStack

    stack = ClusterStack()
    names = ["spark-master", "spark-worker"]
    started = [n for n in names if stack.pid(stack.get(n)) is None]
    if started:
        print(f"== bench standalone: starting {', '.join(started)} (scripts/cluster.sh up {' '.join(names)})", flush=True)
        if subprocess.call([sys.executable, "-m", "lakeml.ops.cluster", "up", *names], env=env, cwd=ROOT) != 0:
            print("error: the standalone cluster did not start; see above", file=sys.stderr)
            return None
    master = f"spark://127.0.0.1:{stack.ports.spark_master}"
    out: dict = {"master": master, "results": []}
    try:
        for n in a.scales:
            part = a.work_dir / f"standalone_{n}_d{a.days}.json"
            env["LAKEML_DATA_DIR"] = str(a.work_dir / f"standalone_{n}_d{a.days}")
            cmd = _scale_cmd(a, n, part, "--master", master, "--no-peers")
            if _run_part(f"standalone {master}: {n:,} entities × {a.days} days", f"standalone scale {n:,}", cmd, env, part) != 0:
                return None
            out["results"].append(json.loads(part.read_text()))
    finally:
        if started:
            subprocess.call([sys.executable, "-m", "lakeml.ops.cluster", "down", *started], env=env, cwd=ROOT)
    return out


RUN = f"{os.getpid()}@{time.time():.0f}"  # this invocation: parts of one whole run share it


def _part(doc: dict, name: str, t0: float) -> None:
    """Record that part ``name`` (scales, standalone, history) ran now, on this checkout's
    commit: parts run apart (--scales-only, ...) say so in the report."""
    from datetime import UTC, datetime

    from lakeml.core.gitinfo import checkout_commit

    doc["parts"] = [p for p in doc.get("parts", []) if p["part"] != name] + [{
        "part": name, "commit": checkout_commit(ROOT), "started": datetime.fromtimestamp(t0, UTC).isoformat(timespec="minutes"),
        "seconds": round(time.time() - t0), "run": RUN}]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scales", type=_scales, default=_scales("30000,100000,1000000"),
                   help="entities (features.entity of the use case) per scale, comma-separated")
    p.add_argument("--usecase", help="the use case to run (default: the env's); it needs a demo data maker")
    p.add_argument("--days", type=int, default=120, help="days of data at every scale (default 120)")
    p.add_argument("--first-after-days", type=int, default=30,
                   help="first feature snapshot this many days after the first batch "
                        "(the use case says 90; 120 days of data would then leave no test snapshot)")
    p.add_argument("--udf-rows", type=int, default=50_000, help="rows scored through mlflow's spark_udf at each scale")
    p.add_argument("--json", type=Path, default=ROOT / "docs" / "benchmarks.json")
    p.add_argument("--md", type=Path, default=ROOT / "docs" / "benchmarks.md")
    p.add_argument("--scaling-md", type=Path, default=ROOT / "docs" / "scaling.md")
    p.add_argument("--work-dir", type=Path, default=ROOT / "var" / "bench", help="data folders, one per scale (emptied first)")
    p.add_argument("--report-only", action="store_true", help="rewrite the Markdown from --json; run nothing")
    p.add_argument("--history", default="90,180,360,720",
                   help="history lengths (days) of the history-growth run, comma-separated ('' skips it)")
    p.add_argument("--history-entities", type=int, default=30_000, help="entities of the history-growth run")
    p.add_argument("--history-only", action="store_true", help="run only the history-growth part; keep the scales of --json")
    p.add_argument("--scales-only", action="store_true", help="run only the scales; keep the history of --json")
    p.add_argument("--standalone", action="store_true",
                   help="also run the project's stages on the standalone cluster (driver memory alone)")
    p.add_argument("--standalone-only", action="store_true", help="run only the standalone part; keep the rest of --json")
    p.add_argument("--serving-only", action="store_true",
                   help="run only the serving part (online server, its peer and floor, streaming); keep the rest of --json")
    p.add_argument("--no-serving", action="store_true", help="skip the serving part")
    a = p.parse_args()

    command = (
        "make bench SCALE=" + ",".join(str(s) for s in a.scales) + f" DAYS={a.days}"
        + (f" USECASE={a.usecase}" if a.usecase else "")
        + (" BENCH_ARGS=--standalone" if a.standalone else "")
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "lib"), os.environ.get("PYTHONPATH")])),
        "SPARK_LOCAL_IP": os.environ.get("SPARK_LOCAL_IP", "127.0.0.1"),
        "PYSPARK_PYTHON": os.environ.get("PYSPARK_PYTHON", sys.executable),
    }
    if a.serving_only and not a.json.exists():  # the serving part alone, nothing else measured yet
        doc = {"command": command, "machine": harness.machine(), "results": [], "parts": []}
    elif a.report_only or a.history_only or a.standalone_only or a.serving_only:
        doc = json.loads(a.json.read_text())
        if a.standalone_only and "--standalone" not in doc["command"]:
            doc["command"] += " BENCH_ARGS=--standalone"
    else:
        old = json.loads(a.json.read_text()) if a.json.exists() else {}
        doc = {"command": command, "machine": harness.machine(), "results": [], "parts": []}
        if a.scales_only:
            doc["parts"] = [p for p in old.get("parts", []) if p["part"] != "scales"]
            doc["history"] = old.get("history")  # kept as measured
            doc["serving"] = old.get("serving")
        if not a.standalone:
            doc["standalone"] = old.get("standalone")
        t0 = time.time()
        for i, n in enumerate(a.scales, 1):
            part = a.work_dir / f"{n}_d{a.days}.json"
            env["LAKEML_DATA_DIR"] = str(a.work_dir / f"{n}_d{a.days}")  # its own warehouse, metastore and MLflow
            cmd = _scale_cmd(a, n, part, "--udf-rows", str(a.udf_rows))
            title = f"scale {i}/{len(a.scales)}: {n:,} entities × {a.days} days  (+{time.time() - t0:.0f}s)"
            rc = _run_part(title, f"scale {n:,}", cmd, env, part)
            if rc != 0:
                return rc
            doc["results"].append(json.loads(part.read_text()))
            a.json.parent.mkdir(parents=True, exist_ok=True)
            a.json.write_text(json.dumps(doc, indent=2, default=str))  # after every scale: a crash keeps what was measured
        doc["total_seconds"] = round(time.time() - t0)
        _part(doc, "scales", t0)
        a.json.write_text(json.dumps(doc, indent=2, default=str))
    if (a.standalone or a.standalone_only) and not a.report_only:
        t0 = time.time()
        st = _standalone(a, env)
        if st is None:
            return 1
        doc["standalone"] = st
        _part(doc, "standalone", t0)
        a.json.write_text(json.dumps(doc, indent=2, default=str))
    if a.history and not a.report_only and not a.scales_only and not a.standalone_only and not a.serving_only:
        t0 = time.time()
        part = a.work_dir / "history.json"
        env["LAKEML_DATA_DIR"] = str(a.work_dir / "history")
        cmd = [sys.executable, "-m", "lakeml.bench.history", "--entities", str(a.history_entities), "--history", a.history,
               "--out", str(part)]
        cmd += ["--usecase", a.usecase] if a.usecase else []
        rc = _run_part(f"history growth: {a.history_entities:,} entities, H = {a.history}", "the history-growth run", cmd, env, part)
        if rc != 0:
            return rc
        # the next two days as a scheduler runs them, each in a fresh process: without the
        # driver's class-data-sharing archive, then with it (make cds: lakeml.bench.cds)
        if subprocess.call([sys.executable, "-m", "lakeml.bench.cds", "build"], env=env, cwd=ROOT) != 0:
            return 2
        for label, cds in (("without the class-data-sharing archive", "0"), ("with the class-data-sharing archive", "1")):
            cold = [sys.executable, "-m", "lakeml.bench.history", "--entities", str(a.history_entities), "--history", a.history,
                    "--out", str(part), "--cold-day", str(time.time())]
            rc = _run_part(f"cold daily run, {label}: the next day in a fresh process", "the cold daily run", cold,
                           {**env, "LAKEML_CDS": cds}, part)
            if rc != 0:
                return rc
        doc["history"] = json.loads(part.read_text())
        _part(doc, "history", t0)
        a.json.write_text(json.dumps(doc, indent=2, default=str))
    if a.serving_only or not (a.report_only or a.history_only or a.scales_only or a.standalone_only or a.no_serving):
        t0 = time.time()
        part = a.work_dir / "serving.json"
        cmd = [sys.executable, "-m", "lakeml.bench.serving", "--out", str(part), "--work-dir", str(a.work_dir / "serving")]
        cmd += ["--usecase", a.usecase] if a.usecase else []
        rc = _run_part("serving: the online server under wrk against its peer and floor; streaming latency", "the serving part",
                       cmd, env, part)
        if rc != 0:
            return rc
        doc["serving"] = json.loads(part.read_text())
        _part(doc, "serving", t0)
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(doc, indent=2, default=str))
    if not doc["results"]:  # the serving part alone: no scale to write a report around
        print("\n".join(f"| {t} | {m} | {'n/a' if ok is None else 'yes' if ok else '**no**'} |"
                        for t, m, ok in targets.serving_rows(doc.get("serving") or {})))
        print(f"\nwrote {a.json}")
        return 0
    report.write_markdown(a.md, doc["results"], doc["command"], doc["machine"], doc.get("history"), doc.get("standalone"),
                          doc.get("parts"), doc.get("serving"))
    estimate.write_estimate(a.scaling_md, doc["results"])
    print("\n".join(targets.target_table(doc["results"], doc.get("standalone"), doc.get("history"), doc.get("serving"))))
    print(f"\nwrote {a.json}, {a.md}, {a.scaling_md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
