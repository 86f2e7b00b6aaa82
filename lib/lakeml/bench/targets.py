"""The targets table of docs/benchmarks.md: each target of the project's issues, what the
run measured, met or not. Judged on the largest scale unless a row names another."""

from __future__ import annotations

from lakeml.bench import figures as fg
from lakeml.bench.figures import TARGETS, driver_peak, num, ratios, scale_name, stage


def target_table(results: list[dict], standalone: dict | None = None, history: dict | None = None,
                 serving: dict | None = None) -> list[str]:
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
    rows += serving_rows(serving or {})
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


# issue 28: the online scoring server and the streaming job (lakeml.bench.serving)
SERVING_TARGETS = {
    "p99_ms_10_clients": 10.0,  # one entity a request, features read from the online store and scored
    "p99_ms_50_clients": 25.0,
    "rps_50_clients": 500.0,
    "entities_per_s_batch": 50_000,  # 1 000 entities a request
    "vs_floor": 0.5,  # requests/s against the same server stack answering a constant
    "stream_seconds": 10.0,  # a landed micro-batch to its predictions, at the default trigger
}


def serving_run(serving: dict, server: str, body: str, per_request_over_1: bool, clients: int | None = None,
                paced: bool = False) -> dict | None:
    """The measured load of ``server`` with ``body`` (one item a request, or many), at
    ``clients`` when given (else the first such run), flat out or paced."""
    return next((r for r in serving.get("runs", []) if r["server"] == server and r["body"] == body
                 and (r["per_request"] > 1) == per_request_over_1 and (clients is None or r["clients"] == clients)
                 and bool(r.get("paced_rps")) == paced), None)


def _errors(r: dict) -> str:
    return f"; **{r['errors']:,} errors** ({', '.join(f'{k} {v:,}' for k, v in r.get('error_kinds', {}).items())})" if r["errors"] else ""


def serving_rows(serving: dict) -> list[tuple[str, str, bool | None]]:
    """The rows of issue 28's targets from the serving part; none when it did not run. A
    load with errors does not meet its target, whatever its latency."""
    if not serving.get("runs") and not serving.get("streaming"):
        return []
    t = SERVING_TARGETS
    rows: list[tuple[str, str, bool | None]] = []
    one10, one50 = serving_run(serving, "ours", "entities", False, 10), serving_run(serving, "ours", "entities", False, 50)
    if one10:
        rows.append((f"online, 1 entity a request (store read + score), 10 clients: p99 ≤ {t['p99_ms_10_clients']:g} ms",
                     f"p99 {one10['p99_ms']:.1f} ms at {one10['requests_per_s']:,.0f} requests/s{_errors(one10)}",
                     one10["p99_ms"] <= t["p99_ms_10_clients"] and not one10["errors"]))
    paced = serving_run(serving, "ours", "entities", False, 50, paced=True)
    for r, how in ((paced, "paced: each client pauses a random think time between requests"), (one50, "flat out: no pause")):
        if r:
            rows.append((f"online, 1 entity a request, 50 clients, {how}: p99 ≤ {t['p99_ms_50_clients']:g} ms "
                         f"at ≥ {t['rps_50_clients']:,.0f} requests/s",
                         f"p99 {r['p99_ms']:.1f} ms at {r['requests_per_s']:,.0f} requests/s{_errors(r)}",
                         r["p99_ms"] <= t["p99_ms_50_clients"] and r["requests_per_s"] >= t["rps_50_clients"] and not r["errors"]))
    big = serving_run(serving, "ours", "entities", True)
    if big:
        rows.append((f"online, {big['per_request']:,} entities a request: ≥ {t['entities_per_s_batch']:,} entities/s",
                     f"{big['items_per_s']:,} entities/s ({big['clients']} clients, p99 {big['p99_ms']:.0f} ms){_errors(big)}",
                     big["items_per_s"] >= t["entities_per_s_batch"] and not big["errors"]))
    floor = serving_run(serving, "floor", "constant", False, 50)
    if one50 and floor:
        share = one50["requests_per_s"] / floor["requests_per_s"]
        rows.append((f"online ≥ {100 * t['vs_floor']:.0f} % of the floor's requests/s (the same FastAPI + uvicorn answering a constant), "
                     "50 clients", f"{100 * share:.0f} % ({one50['requests_per_s']:,.0f} vs {floor['requests_per_s']:,.0f} requests/s)",
                     share >= t["vs_floor"] and not one50["errors"]))
    ours, peer = serving_run(serving, "ours", "rows", False, 50), serving_run(serving, "peer", "rows", False, 50)
    if ours and peer:
        rows.append(("online against the peer, `mlflow models serve` of the same version (the same rows in the body, 1 a request, "
                     "50 clients)", f"{ours['requests_per_s']:,.0f} vs {peer['requests_per_s']:,.0f} requests/s "
                     f"({ours['requests_per_s'] / peer['requests_per_s']:.1f}×), p99 {ours['p99_ms']:.1f} vs {peer['p99_ms']:.1f} ms",
                     None))
    st = serving.get("streaming") or {}
    if st:
        title = f"streaming: a landed micro-batch to its predictions ≤ {t['stream_seconds']:g} s at the default trigger"
        if st.get("error"):
            rows.append((title, f"not measured: {st['error']}", False))
        else:
            worst = st["max_seconds"]
            rows.append((title, f"{worst:.1f} s at worst over {st['batches']} micro-batches (median {st['median_seconds']:.1f} s, "
                                f"trigger {st['trigger_seconds']:g} s)", worst <= t["stream_seconds"]))
    return rows
