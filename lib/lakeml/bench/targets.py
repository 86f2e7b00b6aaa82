"""The targets table of docs/benchmarks.md: each target of the project's issues, what the
run measured, met or not. Judged on the largest scale unless a row names another."""

from __future__ import annotations

from lakeml.bench import figures as fg
from lakeml.bench.figures import TARGETS, driver_peak, num, ratios, scale_name, stage


def target_table(results: list[dict], standalone: dict | None = None, history: dict | None = None) -> list[str]:
    """The targets table of docs/benchmarks.md: every target with what this run measured."""
    big = results[-1]
    q = ratios(big)
    s = lambda n: stage(big, n)  # noqa: E731
    peaks = [driver_peak(r) for r in results]
    rows = [
        ("scoring incl. Delta write ≥ 0.5 M rows/s/core (model loaded)",
         f"{num(fg.score_rate(big))} (whole stage with the model load: {num(s('score').get('rows_per_s_per_core'))})",
         fg.score_rate(big) >= TARGETS["score_rows_per_s_per_core"]),
        ("scoring ≥ 5× mlflow spark_udf", f"{q['score_vs_spark_udf']:.0f}×", q["score_vs_spark_udf"] >= TARGETS["score_vs_spark_udf"])
        if "score_vs_spark_udf" in q else
        ("scoring ≥ 5× mlflow spark_udf", "spark_udf cannot score this model (see the peers)", None),
        ("features ≥ 2 M input rows/s/core", f"{num(s('features').get('rows_per_s_per_core'))}",
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
        rows.append((f"scoring ≥ 50 % of the scoring floor's rate (the stage ran {fg.score_engine(big)})",
                     ", ".join(f"{n} {100 * ev[n]:.0f} %" for n in fg.ENGINES if n in ev),
                     q["score_vs_floor"] >= TARGETS["score_vs_floor"]))
    if "ingest_vs_floor" in q:
        rows.append(("ingest ≥ 50 % of its floor's rate", f"{100 * q['ingest_vs_floor']:.0f} %",
                     q["ingest_vs_floor"] >= TARGETS["ingest_vs_floor"]))
    small = ratios(results[0])
    if len(results) > 1 and "ingest_vs_floor" in small:
        rows.append((f"ingest ≥ 35 % of its floor's rate at {scale_name(results[0])}", f"{100 * small['ingest_vs_floor']:.0f} %",
                     small["ingest_vs_floor"] >= TARGETS["ingest_vs_floor_small"]))
    slow = [(n, fg.growth(results, n)) for n in fg.PROJECT_STAGES]
    slow = [(n, b) for n, b in slow if b is not None]
    if slow:
        worst = max(slow, key=lambda p: p[1])
        rows.append(("every stage at most linear in rows (b ≤ 1.1)", f"worst: {worst[0]} b = {worst[1]:.2f}", worst[1] <= 1.1))
    if standalone and standalone.get("results"):
        sp = [driver_peak(r) for r in standalone["results"]]
        rows.append(("driver RSS on the standalone cluster ≤ 2 GB at every scale", " / ".join(f"{p:,} MB" for p in sp),
                     max(sp) <= TARGETS["driver_peak_mb"]))
        rows += standalone_rows(results, standalone["results"])
    cold = cold_daily_row(history or {})
    if cold:
        rows.append(cold)
    out = [f"Judged on the largest scale ({scale_name(big)}) unless the row says otherwise.", "",
           "| target | measured | met |", "|---|---|---|"]
    out += [f"| {t} | {m} | {'n/a' if ok is None else 'yes' if ok else '**no**'} |" for t, m, ok in rows]
    return out


def standalone_rows(embedded: list[dict], alone: list[dict]) -> list[tuple[str, str, bool]]:
    """Ingest and features on the standalone cluster against the embedded env, at the largest
    scale both ran: the same input rows, so the rate ratio is the inverse time ratio."""
    both = sorted({r["scale"]["entities"] for r in embedded} & {r["scale"]["entities"] for r in alone})
    if not both:
        return []
    n = both[-1]
    emb, sa = (next(r for r in rs if r["scale"]["entities"] == n) for rs in (embedded, alone))
    got = {name: stage(emb, name)["seconds"] / stage(sa, name)["seconds"]
           for name in ("ingest", "features") if stage(emb, name).get("seconds") and stage(sa, name).get("seconds")}
    if not got:
        return []
    return [(f"standalone env ≥ 80 % of the embedded env's rows/s for ingest and features at {n:,} entities",
             ", ".join(f"{k} {100 * v:.0f} %" for k, v in got.items()),
             len(got) == 2 and min(got.values()) >= TARGETS["standalone_vs_embedded"])]


def cold_daily_row(history: dict) -> tuple[str, str, bool] | None:
    """The daily run in a fresh process (Python and the JVM started for it, as a scheduler runs
    it) against the warm one of the history run; None when not measured."""
    cold = history.get("cold_daily")
    if not cold:
        return None
    ratio = cold["seconds"] / cold["warm_seconds"]
    bare = (history.get("cold_daily_without_cds") or {}).get("seconds")  # the same run without the archive (make cds)
    without = f" (without the class-data-sharing archive: {bare} s, {bare / cold['warm_seconds']:.1f}×)" if bare else ""
    return (f"cold daily run (a fresh process, H = {cold['history_days']}) ≤ 1.5× the warm one",
            f"{cold['seconds']} s vs {cold['warm_seconds']} s: {ratio:.1f}×{without}", ratio <= TARGETS["cold_vs_warm_daily"])
