"""The numbers of one benchmark run (scripts/bench.py's JSON) that the report and its
targets table share: the targets, a stage's figures, the peer ratios, growth in rows."""

from __future__ import annotations

import math

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
    "ingest_vs_floor": 0.5,  # at the largest scale
    "ingest_vs_floor_small": 0.35,  # at the smallest
    "standalone_vs_embedded": 0.8,  # ingest and features rows/s on the standalone cluster, at the largest scale both ran
    "cold_vs_warm_daily": 1.5,  # a daily run in a fresh process against the same day's run in a warm one
}


def num(x, digits: int = 0) -> str:
    if x is None:
        return "–"
    if isinstance(x, float) and digits:
        return f"{x:,.{digits}f}"
    return f"{round(x):,}"


def stage(r: dict, name: str) -> dict:
    return r["stages"].get(name, {})


def score_rate(r: dict) -> int:
    """Scoring rows/s/core: transform + Delta write, the model already loaded (its load is
    a fixed cost per job, reported beside it)."""
    sc = stage(r, "score")
    return sc.get("transform_write_rows_per_s_per_core") or sc.get("rows_per_s_per_core") or 0


ENGINES = {"native": "transform", "onnx": "ONNX Runtime in mapInArrow"}


def score_engine(r: dict) -> str:
    """The engine the scoring stage ran (runs before scoring.engine auto were native)."""
    return stage(r, "score").get("engine", "native")


def ratios(r: dict) -> dict:
    """The peer comparisons of one scale."""
    s = lambda n: stage(r, n)  # noqa: E731
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


def driver_peak(r: dict) -> int:
    """The largest driver RSS (Python + JVM) over the project's stages of one run."""
    return max(st.get("driver_rss_mb", 0) for k, st in r["stages"].items() if k in PROJECT_STAGES)
