"""docs/benchmarks.md from the JSON results of scripts/bench.py (its targets table is
:mod:`lakeml.bench.targets`, the figures both read :mod:`lakeml.bench.figures`, the
1-billion-event estimate in docs/scaling.md :mod:`lakeml.bench.estimate`).

The generated part of docs/benchmarks.md ends at ``ANALYSIS``; what follows that line is
written by people (profiles, misses and why) and kept as it is.
"""

from __future__ import annotations

import math
from pathlib import Path

from lakeml.bench.figures import ENGINES, PROJECT_STAGES, driver_peak, growth, ratios, scale_name, score_engine, score_rate
from lakeml.bench.figures import num as _n
from lakeml.bench.figures import stage as _st
from lakeml.bench.targets import cold_daily_row, target_table

ANALYSIS = "<!-- everything below this line is written by hand and kept by scripts/bench.py -->"


def _stage_table(r: dict) -> list[str]:
    lines = [
        "| stage | wall s | input rows | rows/s/core | driver peak MB (Python + JVM) | JVM heap peak MB | Python workers MB | note |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
        f"| Spark session start-up | {r['session_start_seconds']} | | | {_n(r['session_memory'].get('driver_rss_mb'))} | | | "
        "own line, not in any stage |",
    ]
    for name, s in r["stages"].items():
        extra = s.get("note", "")
        if "roc_auc" in s:
            fit = f", fit {s['fit_seconds']} s" if "fit_seconds" in s else ""
            extra = f"ROC AUC {s['roc_auc']}{fit}" + (f"; {extra}" if extra else "")
        lines.append(
            f"| {name} | {s.get('seconds')} | {_n(s.get('input_rows'))} | {_n(s.get('rows_per_s_per_core'))} | "
            f"{_n(s.get('driver_rss_mb'))} ({_n(s.get('python_rss_mb'))} + {_n(s.get('jvm_rss_mb'))}) | {_n(s.get('jvm_heap_used_mb'))} | "
            f"{_n(s.get('worker_rss_mb'))} | {extra} |"
        )
    return lines


def _peer_table(r: dict) -> list[str]:
    s = lambda n: _st(r, n)  # noqa: E731
    q = ratios(r)
    eng = ENGINES[score_engine(r)]
    lines = ["| comparison | ours | peer | result |", "|---|---|---|---|"]
    if s("peer:features_duckdb"):
        lines.append(
            f"| features | Spark SQL {s('features')['seconds']} s ({_n(s('features').get('rows_per_s_per_core'))} rows/s/core) | "
            f"DuckDB {s('peer:features_duckdb')['seconds']} s ({_n(s('peer:features_duckdb').get('rows_per_s_per_core'))} rows/s/core) | "
            f"Spark takes {q['features_vs_duckdb']:.1f}× DuckDB's time |"
        )
    if s("peer:train_lightgbm"):
        g, lg = s("peer:train_mllib_gbt"), s("peer:train_lightgbm")
        lines.append(
            f"| training (same split, same trees/depth/rate) | MLlib GBT fit {g['fit_seconds']} s, ROC AUC {g['roc_auc']} | "
            f"LightGBM fit {lg['fit_seconds']} s (+ {s('peer:train_collect_to_pandas')['seconds']} s to collect), "
            f"ROC AUC {lg['roc_auc']} | "
            f"AUC gap {q['gbt_auc_gap']:+.4f}; LightGBM fits {g['fit_seconds'] / max(lg['fit_seconds'], 0.01):.0f}× faster |"
        )
    udf = s("peer:score_mlflow_spark_udf")
    if udf:
        ours = (f"| scoring (+ Delta write) | {eng} {_n(score_rate(r))} rows/s/core "
                f"(+ {s('score').get('model_load_seconds')} s model load) | ")
        if udf.get("error"):
            lines.append(ours + f"mlflow spark_udf: cannot score this model (`{udf['error']}`) | only the project's engines score it |")
        else:
            lines.append(ours + f"mlflow spark_udf {_n(udf['rows_per_s_per_core'])} rows/s/core | {q['score_vs_spark_udf']:.0f}× faster |")
    if s("peer:train_xgboost") and "xgboost_vs_lightgbm" in q:
        x = s("peer:train_xgboost")
        lines.append(
            f"| training, classifier: xgboost (xgboost.spark in the pipeline) | fit {x['fit_seconds']} s, ROC AUC {x['roc_auc']} | "
            f"LightGBM fit + collect {lg['fit_seconds'] + s('peer:train_collect_to_pandas')['seconds']:.1f} s, ROC AUC {lg['roc_auc']} | "
            f"{q['xgboost_vs_lightgbm']:.1f}× LightGBM's time, AUC gap {q['xgboost_auc_gap']:+.4f} |"
        )
    if "score_vs_floor" in q:
        lines.append(
            f"| scoring vs its floor (same read + write, constant score) | {eng} + write {s('score')['transform_write_seconds']} s | "
            f"floor {s('floor:score')['seconds']} s | {100 * q['score_vs_floor']:.0f} % of the floor's rate |"
        )
    for name, label in ENGINES.items():
        o = s(f"peer:score_{name}_engine")
        if name in q.get("engine_vs_floor", {}) and o:
            lines.append(
                f"| scoring.engine: {name} ({label}), the other engine | "
                f"{o['seconds']} s ({o.get('model_load_seconds')} s fetching the model) | "
                f"floor {s('floor:score')['seconds']} s | {100 * q['engine_vs_floor'][name]:.0f} % of the floor's rate |"
            )
    if "ingest_vs_floor" in q:
        lines.append(
            f"| ingest vs its floor (plain read + the bronze and silver Delta appends of the same rows) | {s('ingest')['seconds']} s | "
            f"floor {s('floor:ingest')['seconds']} s | {100 * q['ingest_vs_floor']:.0f} % of the floor's rate |"
        )
    if s("peer:score_pandas_udf"):
        lines.append(
            f"| scoring (+ Delta write) | {eng} {_n(score_rate(r))} rows/s/core | "
            f"pandas_udf + broadcast scikit-learn {_n(s('peer:score_pandas_udf')['rows_per_s_per_core'])} rows/s/core | "
            f"{q['score_vs_pandas_udf']:.1f}× |"
        )
    return lines


def _profile_table(r: dict, top: int = 3) -> list[str]:
    """The longest Spark stages of each project stage (from the event log)."""
    prof = r.get("profile") or {}
    lines = [
        "| stage | Spark stage | wall s | tasks | task s | GC s | input MB | shuffle write MB | spill MB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in PROJECT_STAGES:
        for st in (prof.get(name) or [])[:top]:
            where = st["name"].split(" at ")[-1] if " at " in st["name"] else st["name"]
            lines.append(
                f"| {name} | {st['id']}: {st['name'].split(' at ')[0][:40]} at {where[:60]} | {st['seconds']:.1f} | {st.get('tasks')} | "
                f"{st.get('task_s', 0)} | {st.get('gc_s', 0)} | {st.get('input_mb', 0)} | "
                f"{st.get('shuffle_write_mb', 0)} | {st.get('spill_mb', 0)} |"
            )
    return lines


def _scaling_table(results: list[dict]) -> list[str]:
    scales = [scale_name(r) for r in results]
    lines = [
        "| stage | " + " | ".join(f"{s}: s / rows/s/core / driver MB" for s in scales) + " | time ~ rows^b |",
        "|---|" + "---:|" * (len(results) + 1),
    ]
    names = [n for n in results[-1]["stages"]]
    for name in names:
        cells = []
        for r in results:
            s = r["stages"].get(name, {})
            cells.append(f"{s.get('seconds', '–')} / {_n(s.get('rows_per_s_per_core'))} / {_n(s.get('driver_rss_mb'))}")
        b = growth(results, name)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {'–' if b is None else f'{b:.2f}'} |")
    return lines


def history_exponent(points: list[dict], key: str = "incremental_seconds") -> float | None:
    """b in daily-run time ~ H^b (0 = flat), the least-squares slope of log time on log H
    over every history measured (with two, the slope between them)."""
    pts = [(math.log(p["history_days"]), math.log(p[key])) for p in points if p.get(key)]
    if len({x for x, _ in pts}) < 2:
        return None
    mx, my = sum(x for x, _ in pts) / len(pts), sum(y for _, y in pts) / len(pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)


def history_section(hist: dict) -> list[str]:
    """The "history growth" tables: a daily run after H days of history, incremental and full."""
    pts = hist["points"]
    order = ["ingest", "quality", "features", "rescore", "score", "monitor", "policy", "train", "shadow", "validate"]
    stages = sorted({k for p in pts for k in p["incremental_stages"]} | {k for p in pts for k in p["full_stages"]},
                    key=lambda k: order.index(k) if k in order else 99)
    b_inc, b_full = history_exponent(pts), history_exponent(pts, "full_seconds")
    at = next((p for p in pts if p["history_days"] == 360), pts[-1])
    lines = [
        "## History growth",
        "",
        f"One daily scheduled run of `{hist['usecase']}` at {hist['entities']:,} entities after H days of history, seconds per stage.",
        "The lake caught up to day H; day H + 1 then landed and ran with `--full` (silver tables, every snapshot, label and",
        "scored date recomputed: what a day cost before runs were incremental), and day H + 2 landed and ran as scheduled",
        "(incremental: what the day brings). *Ingest floor*: a plain `spark.read` of day H + 2's files",
        "and two Delta appends of its rows (bronze, silver).",
        "",
        "| H (days) | bronze rows | daily run (s) | full run (s) | full / daily | ingest (s) | ingest floor (s) | ingest / floor "
        "| snapshots (daily / full) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in pts:
        ing, fl = p["incremental_stages"].get("ingest", 0.0), p["ingest_floor"]["seconds"]
        lines.append(
            f"| {p['history_days']} | {p['bronze_rows']:,} | {p['incremental_seconds']} | {p['full_seconds']} | "
            f"{p['full_seconds'] / p['incremental_seconds']:.1f}× | {ing} | {fl} | {ing / fl:.1f}× | "
            f"{p['snapshots_computed']['incremental']} / {p['snapshots_computed']['full']} |"
        )
    lines += ["", "| stage | " + " | ".join(f"H={p['history_days']} daily / full" for p in pts) + " |", "|---|" + "---:|" * len(pts)]
    for st in stages:
        cells = [f"{p['incremental_stages'].get(st, '–')} / {p['full_stages'].get(st, '–')}" for p in pts]
        lines.append(f"| {st} | " + " | ".join(cells) + " |")
    ing_at = at["incremental_stages"].get("ingest", 0.0) / at["ingest_floor"]["seconds"]
    lines += [
        "",
        "| target | measured | met |",
        "|---|---|---|",
        f"| daily run flat in history: exponent b ≤ 0.15 | b = {_n(b_inc, 2)} (full: {_n(b_full, 2)}) | "
        f"{'yes' if b_inc is not None and b_inc <= 0.15 else '**no**'} |",
        f"| at H = {at['history_days']} the daily run ≥ 5× faster than the full recompute | "
        f"{at['full_seconds'] / at['incremental_seconds']:.1f}× | "
        f"{'yes' if at['full_seconds'] >= 5 * at['incremental_seconds'] else '**no**'} |",
        f"| ingest of one new batch within 3× of its floor (H = {at['history_days']}) | {ing_at:.1f}× | "
        f"{'yes' if ing_at <= 3 else '**no**'} |",
    ]
    cold = cold_daily_row(hist)
    if cold:
        lines.append(f"| {cold[0]} | {cold[1]} | {'yes' if cold[2] else '**no**'} |")
    return [*lines, ""]


def standalone_section(st: dict) -> list[str]:
    """The driver alone: the project's stages on the standalone cluster, per scale."""
    res = st["results"]
    first = res[0]
    lines = [
        "## The driver alone: the standalone cluster",
        "",
        f"The project's stages again at {', '.join(scale_name(r) for r in res)} (`scripts/bench.py --standalone`), "
        "with the tasks in executor JVMs of the standalone master + worker of "
        f"`scripts/cluster.sh` (`{st['master']}`, {', '.join(f'{k}={v}' for k, v in first['spark_conf'].items())}; "
        "executor sizes of the cluster env), storage as in the embedded env. The driver's Python process and its JVM are "
        "all that is sampled: executors are the worker's children, not the driver's.",
        "",
        "| stage | " + " | ".join(f"{scale_name(r)}: s / driver MB (Python + JVM) / JVM heap MB" for r in res) + " |",
        "|---|" + "---:|" * len(res),
    ]
    for name in PROJECT_STAGES:
        cells = []
        for r in res:
            x = r["stages"].get(name, {})
            cells.append(f"{x.get('seconds', '–')} / {_n(x.get('driver_rss_mb'))} "
                         f"({_n(x.get('python_rss_mb'))} + {_n(x.get('jvm_rss_mb'))}) / {_n(x.get('jvm_heap_used_mb'))}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["| **peak** | " + " | ".join(f"**{driver_peak(r):,}**" for r in res) + " |", ""]
    return lines


def serving_section(sv: dict) -> list[str]:
    """The online server under load against its peer and its floor, and the streaming
    latency (lakeml.bench.serving)."""
    w, ld = sv["world"], sv["load"]
    pin = ld.get("pinned")
    shared = (f"the server pinned to CPU {pin['server']} and wrk to CPU {pin['load']} (taskset)" if pin
              else "neither pinned")
    lines = [
        "## Online and streaming serving",
        "",
        f"`python -m lakeml.bench.serving` (`scripts/bench.py --serving-only`): a lake of {w['entities']:,} entities × {w['days']} days "
        f"(demo data, ingest, features, train: {w['model']['name']} version {w['model']['version']}), the newest snapshot "
        f"({w['store']['as_of_date']}, {w['store']['rows']:,} rows) in the {w['store']['kind']} online store. Loopback only; "
        f"load from {ld['tool']} ({ld['threads']} thread, a closed loop per client: each sends its next request when the last "
        f"is answered; *paced*: after a random think time, the clients together offering the rate named), "
        f"{_n(ld['duration_s'])} s measured after {_n(ld['warmup_s'])} s of the same load, one server at a time. "
        f"wrk shares the machine's {ld['cores']} cores with the server: {shared}; whatever else runs on the machine is not excluded"
        + (f" (1-minute load average {ld['loadavg_before']} before the loads, {ld['loadavg_after']} after)." if "loadavg_before" in ld
           else "."),
        "",
        "*ours*: `scripts/serve.sh`, features read from the online store (*entities*) or given (*rows*); *floor*: the same "
        "FastAPI + uvicorn settings answering a constant; *peer*: `mlflow models serve --env-manager local` of the same "
        "version's ONNX copy (MLflow's onnx flavour), the same rows in its `inputs` format. *server cores*: the server's CPU "
        "seconds per second while measured.",
        "",
        "| server | body | items / request | clients | requests/s | items/s | p50 ms | p90 ms | p99 ms | max ms | errors | server cores |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sv["runs"]:
        clients = f"{r['clients']}, paced to {r['paced_rps']:,.0f}/s" if r.get("paced_rps") else r["clients"]
        lines.append(f"| {r['server']} | {r['body']} | {r['per_request']:,} | {clients} | {r['requests_per_s']:,.0f} | "
                     f"{r['items_per_s']:,} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | {r['p99_ms']:.2f} | {r['max_ms']:.1f} | "
                     f"{r['errors']:,} | {r['server_cores']:.2f} |")
    lines.append("")
    for kind, info in sv.get("servers", {}).items():
        state = (f"failed: {info['error']}" if info.get("error")
                 else f"ready in {info.get('ready_seconds')} s, {_n(info.get('rss_mb'))} MB resident after its loads")
        lines.append(f"- {kind}: `{info['command']}`, {state}")
    par = sv.get("parity")
    if par:
        lines.append("- the same rows scored: " + ", ".join(
            f"{'ours by entity' if k == 'ours_entities' else 'the peer'} within {v:.1e} of ours by rows" for k, v in par.items()))
    st = sv.get("streaming") or {}
    if st and not st.get("error"):
        lines.append(f"- streaming: a landed micro-batch to its predictions in {st['median_seconds']:.1f} s (median), "
                     f"{st['max_seconds']:.1f} s at worst, over {st['batches']} micro-batches at the default trigger "
                     f"({st['trigger_seconds']:g} s)")
    elif st:
        lines.append(f"- streaming: not measured ({st['error']})")
    steps = w.get("steps_seconds", {})
    lines += [f"- the lake: {', '.join(f'{k} {v} s' for k, v in steps.items())}; the whole part {_n(sv.get('seconds'))} s", ""]
    return lines


def parts_line(parts: list[dict] | None) -> list[str]:
    """How the run was made when its parts ran apart (``--scales-only``, ``--standalone-only``,
    ``--history-only``): each with its commit, start and length; nothing for one whole run."""
    if not parts or len({p.get("run", p["started"]) for p in parts}) < 2:  # one invocation ran them all
        return []
    said = "; ".join(f"{p['part']} on {p['commit'][:7]}, started {p['started']}, {p['seconds']:,} s" for p in parts)
    commits = {p["commit"] for p in parts}
    same = " (one commit)" if len(commits) == 1 else f" ({len(commits)} commits; `git diff` between them says what changed)"
    return [f"Run in parts, one after the other on this machine{same}: {said}.", ""]


def markdown(results: list[dict], command: str, machine: dict, keep: str = "", history: dict | None = None,
             standalone: dict | None = None, parts: list[dict] | None = None, serving: dict | None = None) -> str:
    first = results[0]
    lines = [
        "# Benchmarks",
        "",
        "Generated by `scripts/bench.py` (`make bench`); the numbers are from one run of:",
        "",
        f"    {command}",
        "",
        *parts_line(parts),
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gb']} GiB RAM, {machine['os']}, "
        f"Python {machine['python']}, {machine['java']}. Spark {first['spark']} `{first['master']}` "
        f"({first['cores']} task slots), {', '.join(f'{k}={v}' for k, v in first['spark_conf'].items())}; env `{first['env']}`.",
        "",
        "Each scale runs in its own process and Spark session, on a fresh data folder: the project's stages in pipeline",
        "order, then the peers on the same tables. *Input rows* are the rows a stage reads (generate: rows it writes);",
        "*rows/s/core* = input rows / wall seconds / task slots. *Driver peak* is the largest sampled resident memory of the",
        "driver's Python process plus its JVM (in local mode that JVM also runs the tasks); Python workers (UDFs) apart.",
        "",
        "## Targets",
        "",
        *target_table(results, standalone, history, serving),
        "",
        "## Scaling",
        "",
        *_scaling_table(results),
        "",
        "*b* is the exponent of wall time against input rows between the smallest and the largest scale: 1 is linear,",
        "below 1 means fixed costs still dominate at the small end.",
        "",
    ]
    for r in results:
        sc = r["scale"]
        land = r.get("rows", {}).get("landing", {})
        lines += [
            f"## {scale_name(r)} × {sc['days']} days",
            "",
            f"Landing rows: {', '.join(f'{k} {v:,}' for k, v in land.items())}; feature rows {r.get('rows', {}).get('features', 0):,} "
            f"over {len(r.get('as_of_dates', []))} as-of dates (first snapshot after {sc.get('first_snapshot_after_days')} days, "
            f"every {sc.get('snapshot_every_days')}); total {r['total_seconds']} s.",
            "",
            "### Peers, same data, same run",
            "",
            *_peer_table(r),
            "",
            "### Every stage",
            "",
            *_stage_table(r),
            "",
        ]
        if r is results[-1] and r.get("profile"):
            lines += [
                "### Profile: the longest Spark stages of each stage (event log)",
                "",
                *_profile_table(r),
                "",
                "*task s* is the sum of task run times (2 slots: up to 2 × wall); the full event log is in",
                f"`{r['data_dir']}/eventlog` (open it with the Spark history server).",
                "",
            ]
    if standalone and standalone.get("results"):
        lines += standalone_section(standalone)
    if history:
        lines += history_section(history)
    if serving and serving.get("runs"):
        lines += serving_section(serving)
    lines += [ANALYSIS, keep.rstrip() + "\n" if keep else ""]
    return "\n".join(lines)


def write_markdown(path: Path, results: list[dict], command: str, machine: dict, history: dict | None = None,
                   standalone: dict | None = None, parts: list[dict] | None = None, serving: dict | None = None) -> None:
    keep = ""
    if path.exists():
        text = path.read_text()
        if ANALYSIS in text:
            keep = text.split(ANALYSIS, 1)[1].lstrip("\n")
    path.write_text(markdown(results, command, machine, keep, history, standalone, parts, serving))
