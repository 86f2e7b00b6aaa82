"""Where the time went: Spark's event log, summarised per benchmark stage.

The benchmark tags every Spark job with its stage (``setJobGroup``); this reads the
event log the session wrote and returns, per stage, the Spark stages that took longest:
their call site, tasks, wall time, shuffle and spill. The Spark UI history server reads
the same files (``spark.eventLog.dir``) for the full picture.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path


def _events(path: Path):
    # Spark 4 writes <dir>/eventlog_v2_<app>/events_<n>_<app> (rolling); older, one file per app
    if path.is_file():
        files = [path]
    else:
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.name.startswith(("events_", "app-", "local-")))
    for f in files:
        with open(f) as fh:
            for line in fh:
                yield json.loads(line)


def summarise(event_log: Path, top: int = 5) -> dict[str, list[dict]]:
    group_of_stage: dict[int, str] = {}
    done: list[dict] = []
    metrics: dict[int, dict] = defaultdict(lambda: defaultdict(int))
    for e in _events(event_log):
        kind = e.get("Event")
        if kind == "SparkListenerJobStart":
            g = (e.get("Properties") or {}).get("spark.jobGroup.id") or "(none)"
            for sid in e.get("Stage IDs", []):
                group_of_stage.setdefault(sid, g)
        elif kind == "SparkListenerTaskEnd":
            m = e.get("Task Metrics") or {}
            s = metrics[e["Stage ID"]]
            shuffle_read = m.get("Shuffle Read Metrics") or {}
            s["shuffle_read_mb"] += shuffle_read.get("Remote Bytes Read", 0) + shuffle_read.get("Local Bytes Read", 0)
            s["shuffle_write_mb"] += (m.get("Shuffle Write Metrics") or {}).get("Shuffle Bytes Written", 0)
            s["spill_mb"] += m.get("Disk Bytes Spilled", 0)
            s["input_mb"] += (m.get("Input Metrics") or {}).get("Bytes Read", 0)
            s["gc_ms"] += m.get("JVM GC Time", 0)
            s["task_ms"] += m.get("Executor Run Time", 0)
        elif kind == "SparkListenerStageCompleted":
            i = e["Stage Info"]
            if i.get("Submission Time") and i.get("Completion Time"):
                done.append({"id": i["Stage ID"], "name": i.get("Stage Name", ""), "tasks": i.get("Number of Tasks"),
                             "seconds": (i["Completion Time"] - i["Submission Time"]) / 1000})
    out: dict[str, list[dict]] = defaultdict(list)
    for st in done:
        m = metrics.get(st["id"], {})
        st.update({k: round(v / 2**20) if k.endswith("_mb") else round(v / 1000, 1) for k, v in m.items()})
        st = {("task_s" if k == "task_ms" else "gc_s" if k == "gc_ms" else k): v for k, v in st.items()}
        out[group_of_stage.get(st["id"], "(none)")].append(st)
    return {g: sorted(v, key=lambda s: -s["seconds"])[:top] for g, v in out.items()}
