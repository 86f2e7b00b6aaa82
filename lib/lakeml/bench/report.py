"""docs/benchmarks.md from the JSON results of scripts/bench.py (the 1-billion-event
estimate in docs/scaling.md is :mod:`lakeml.bench.estimate`).

The generated part of docs/benchmarks.md ends at ``ANALYSIS``; what follows that line is
written by people (profiles, misses and why) and kept as it is.
"""

from __future__ import annotations

import math
from pathlib import Path

ANALYSIS = "<!-- everything below this line is written by hand and kept by scripts/bench.py -->"

PROJECT_STAGES = ["generate", "ingest", "features", "quality", "train", "score", "monitor"]
TARGETS = {
    "score_rows_per_s_per_core": 500_000,
    "score_vs_spark_udf": 5.0,
    "features_rows_per_s_per_core": 2_000_000,
    "features_vs_duckdb": 5.0,
    "gbt_auc_gap": 0.01,
    "driver_peak_mb": 2048,
    "xgboost_vs_lightgbm": 5.0,  # train stage (xgboost fit) <= 5x LightGBM's fit + collect
    "xgboost_auc_gap": 0.005,
    "score_vs_floor": 0.5,  # scoring rows/s >= 50 % of the floor's
    "ingest_vs_floor": 0.5,
}


def _n(x, digits: int = 0) -> str:
    if x is None:
        return "–"
    if isinstance(x, float) and digits:
        return f"{x:,.{digits}f}"
    return f"{round(x):,}"


def _st(r: dict, name: str) -> dict:
    return r["stages"].get(name, {})


def score_rate(r: dict) -> int:
    """Scoring rows/s/core: transform + Delta write, the model already loaded (its load is
    a fixed cost per job, reported beside it)."""
    sc = _st(r, "score")
    return sc.get("transform_write_rows_per_s_per_core") or sc.get("rows_per_s_per_core") or 0


ENGINES = {"native": "transform", "onnx": "ONNX Runtime in mapInArrow"}


def score_engine(r: dict) -> str:
    """The engine the scoring stage ran (runs before scoring.engine auto were native)."""
    return _st(r, "score").get("engine", "native")


def ratios(r: dict) -> dict:
    """The peer comparisons of one scale."""
    s = lambda n: _st(r, n)  # noqa: E731
    out = {}
    if score_rate(r) and s("peer:score_mlflow_spark_udf").get("rows_per_s_per_core") and "error" not in s("peer:score_mlflow_spark_udf"):
        out["score_vs_spark_udf"] = score_rate(r) / s("peer:score_mlflow_spark_udf")["rows_per_s_per_core"]
    if score_rate(r) and s("peer:score_pandas_udf").get("rows_per_s_per_core"):
        out["score_vs_pandas_udf"] = score_rate(r) / s("peer:score_pandas_udf")["rows_per_s_per_core"]
    if s("features").get("seconds") and s("peer:features_duckdb").get("seconds"):
        out["features_vs_duckdb"] = s("features")["seconds"] / s("peer:features_duckdb")["seconds"]
    if "roc_auc" in s("peer:train_mllib_gbt") and "roc_auc" in s("peer:train_lightgbm"):
        out["gbt_auc_gap"] = s("peer:train_lightgbm")["roc_auc"] - s("peer:train_mllib_gbt")["roc_auc"]
    x, lg, tr = s("peer:train_xgboost"), s("peer:train_lightgbm"), s("train")
    if "fit_seconds" in lg:
        lgb_s = max(lg["fit_seconds"] + s("peer:train_collect_to_pandas").get("seconds", 0), 1e-3)  # what LightGBM needs: collect + fit
        if "fit_seconds" in x:
            out["xgboost_vs_lightgbm"] = x["fit_seconds"] / lgb_s
            out["xgboost_auc_gap"] = lg["roc_auc"] - x["roc_auc"]
        if tr.get("classifier") == "xgboost":  # the whole stage: grid, refit, logging, ONNX export
            out["train_vs_lightgbm"] = tr["seconds"] / lgb_s
            out["train_auc_gap"] = lg["roc_auc"] - tr["roc_auc"]
    fl = s("floor:score").get("seconds")
    if fl and s("score").get("transform_write_seconds"):
        out["score_vs_floor"] = fl / s("score")["transform_write_seconds"]  # same rows: rate ratio = inverse time ratio
        out["engine_vs_floor"] = {score_engine(r): out["score_vs_floor"]}
    for name in ENGINES:  # the engine the stage did not use, run as a peer on the same rows
        o = s(f"peer:score_{name}_engine")
        if fl and o.get("seconds"):
            out.setdefault("engine_vs_floor", {})[name] = fl / max(o["seconds"] - o.get("model_load_seconds", 0), 1e-3)
    if s("floor:ingest").get("seconds") and s("ingest").get("seconds"):
        out["ingest_vs_floor"] = s("floor:ingest")["seconds"] / s("ingest")["seconds"]
    return out


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


def growth(results: list[dict], stage: str, key: str = "seconds") -> float | None:
    """Exponent b of time ~ rows^b between the smallest and the largest scale (1 = linear)."""
    pts = [(r["stages"][stage].get("input_rows"), r["stages"][stage].get(key)) for r in results if stage in r["stages"]]
    pts = [(n, t) for n, t in pts if n and t]
    if len(pts) < 2 or pts[0][0] == pts[-1][0]:
        return None
    (n0, t0), (n1, t1) = pts[0], pts[-1]
    return math.log(t1 / t0) / math.log(n1 / n0)


def scale_name(r: dict) -> str:
    """'30,000 entities': the entity count of a run."""
    return f"{r['scale']['entities']:,} entities"


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


def driver_peak(r: dict) -> int:
    """The largest driver RSS (Python + JVM) over the project's stages of one run."""
    return max(st.get("driver_rss_mb", 0) for k, st in r["stages"].items() if k in PROJECT_STAGES)


def target_table(results: list[dict], standalone: dict | None = None) -> list[str]:
    big = results[-1]
    q = ratios(big)
    s = lambda n: _st(big, n)  # noqa: E731
    peaks = [driver_peak(r) for r in results]
    rows = [
        ("scoring incl. Delta write ≥ 0.5 M rows/s/core (model loaded)",
         f"{_n(score_rate(big))} (whole stage with the model load: {_n(s('score').get('rows_per_s_per_core'))})",
         score_rate(big) >= TARGETS["score_rows_per_s_per_core"]),
        ("scoring ≥ 5× mlflow spark_udf", f"{q['score_vs_spark_udf']:.0f}×", q["score_vs_spark_udf"] >= TARGETS["score_vs_spark_udf"])
        if "score_vs_spark_udf" in q else
        ("scoring ≥ 5× mlflow spark_udf", "spark_udf cannot score this model (see the peers)", None),
        ("features ≥ 2 M input rows/s/core", f"{_n(s('features').get('rows_per_s_per_core'))}",
         s("features").get("rows_per_s_per_core", 0) >= TARGETS["features_rows_per_s_per_core"]),
        ("features within 5× of DuckDB", f"{q.get('features_vs_duckdb', 0):.1f}×",
         q.get("features_vs_duckdb", 99) <= TARGETS["features_vs_duckdb"]),
        ("MLlib GBT within 0.01 ROC AUC of LightGBM", f"{q.get('gbt_auc_gap', 0):+.4f}", q.get("gbt_auc_gap", 1) <= TARGETS["gbt_auc_gap"]),
        ("driver peak ≤ 2 GB at every scale (project stages, local[*]: the JVM runs the tasks too)",
         " / ".join(f"{p:,} MB" for p in peaks), max(peaks) <= TARGETS["driver_peak_mb"]),
    ]
    if "train_vs_lightgbm" in q:
        rows += [
            ("train stage (classifier: xgboost; grid, refit, MLflow, ONNX) ≤ 5× LightGBM fit + collect",
             f"{q['train_vs_lightgbm']:.1f}×", q["train_vs_lightgbm"] <= TARGETS["xgboost_vs_lightgbm"]),
            ("train stage ROC AUC ≥ LightGBM's − 0.005", f"{-q['train_auc_gap']:+.4f}",
             q["train_auc_gap"] <= TARGETS["xgboost_auc_gap"]),
        ]
    if "xgboost_vs_lightgbm" in q:
        rows += [
            ("one xgboost fit ≤ 5× LightGBM fit + collect", f"{q['xgboost_vs_lightgbm']:.1f}×",
             q["xgboost_vs_lightgbm"] <= TARGETS["xgboost_vs_lightgbm"]),
            ("xgboost ROC AUC ≥ LightGBM's − 0.005", f"{-q['xgboost_auc_gap']:+.4f}",
             q["xgboost_auc_gap"] <= TARGETS["xgboost_auc_gap"]),
        ]
    if "score_vs_floor" in q:
        ev = q["engine_vs_floor"]
        rows.append((f"scoring ≥ 50 % of the scoring floor's rate (the stage ran {score_engine(big)})",
                     ", ".join(f"{n} {100 * ev[n]:.0f} %" for n in ENGINES if n in ev), q["score_vs_floor"] >= TARGETS["score_vs_floor"]))
    if "ingest_vs_floor" in q:
        rows.append(("ingest ≥ 50 % of its floor's rate", f"{100 * q['ingest_vs_floor']:.0f} %",
                     q["ingest_vs_floor"] >= TARGETS["ingest_vs_floor"]))
    slow = [(n, growth(results, n)) for n in PROJECT_STAGES]
    slow = [(n, b) for n, b in slow if b is not None]
    if slow:
        worst = max(slow, key=lambda p: p[1])
        rows.append(("every stage at most linear in rows (b ≤ 1.1)", f"worst: {worst[0]} b = {worst[1]:.2f}", worst[1] <= 1.1))
    if standalone and standalone.get("results"):
        sp = [driver_peak(r) for r in standalone["results"]]
        rows.append(("driver RSS on the standalone cluster ≤ 2 GB at every scale", " / ".join(f"{p:,} MB" for p in sp),
                     max(sp) <= TARGETS["driver_peak_mb"]))
    out = [f"Judged on the largest scale ({scale_name(big)}) unless the row says otherwise.", "",
           "| target | measured | met |", "|---|---|---|"]
    out += [f"| {t} | {m} | {'n/a' if ok is None else 'yes' if ok else '**no**'} |" for t, m, ok in rows]
    return out


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
    cold = hist.get("cold_daily")
    if cold:  # the next day in a fresh process (Python and the JVM started for it), as a scheduler runs it
        ratio = cold["seconds"] / cold["warm_seconds"]
        bare = (hist.get("cold_daily_without_cds") or {}).get("seconds")  # the same run without the archive (make cds)
        without = f" (without the class-data-sharing archive: {bare} s, {bare / cold['warm_seconds']:.1f}×)" if bare else ""
        lines.append(f"| cold daily run (a fresh process, H = {cold['history_days']}) ≤ 1.5× the warm one | "
                     f"{cold['seconds']} s vs {cold['warm_seconds']} s: {ratio:.1f}×{without} | {'yes' if ratio <= 1.5 else '**no**'} |")
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


def markdown(results: list[dict], command: str, machine: dict, keep: str = "", history: dict | None = None,
             standalone: dict | None = None) -> str:
    first = results[0]
    lines = [
        "# Benchmarks",
        "",
        "Generated by `scripts/bench.py` (`make bench`); the numbers are from one run of:",
        "",
        f"    {command}",
        "",
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
        *target_table(results, standalone),
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
    lines += [ANALYSIS, keep.rstrip() + "\n" if keep else ""]
    return "\n".join(lines)


def write_markdown(path: Path, results: list[dict], command: str, machine: dict, history: dict | None = None,
                   standalone: dict | None = None) -> None:
    keep = ""
    if path.exists():
        text = path.read_text()
        if ANALYSIS in text:
            keep = text.split(ANALYSIS, 1)[1].lstrip("\n")
    path.write_text(markdown(results, command, machine, keep, history, standalone))
