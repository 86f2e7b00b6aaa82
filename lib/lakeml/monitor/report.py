"""The monitoring report: an HTML page with PNG plots, from the drift and performance tables."""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakeml.core import tables
from lakeml.core.config import EnvConfig, UseCaseConfig


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _shares(counts) -> np.ndarray:
    c = np.asarray(counts, float)
    return c / c.sum() if c.sum() else c


def _bars(ax, labels, ref, cur, title):
    x = np.arange(len(labels))
    ax.bar(x - 0.2, _shares(ref), 0.4, label="reference")
    ax.bar(x + 0.2, _shares(cur), 0.4, label="current")
    ax.set_xticks(x, labels, rotation=45, ha="right", fontsize=7)
    ax.set(ylabel="share of rows", title=title)
    ax.legend(fontsize=7)


def _table_html(rows: list[dict], cols: list[str]) -> str:
    def cell(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return html.escape("" if v is None else str(v))

    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td class='{cell(r.get('status', ''))}'>{cell(r.get(c))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def report(spark: SparkSession, env: EnvConfig, uc: UseCaseConfig, out_dir: str | Path) -> Path:
    """An HTML report with PNG plots from the drift and performance tables: PSI per feature
    of the newest drift date with the thresholds, the most drifted features, the probability
    distribution (reference vs current), live ROC AUC over score dates, the calibration curve
    of the newest labelled date. Returns the path of the HTML file (PNGs beside it)."""
    plt = _plt()
    mon = uc.monitoring
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dt, pt = uc.table(uc.tables.drift_metrics), uc.table(uc.tables.performance_metrics)
    sections: list[str] = []
    title = f"{uc.name}: monitoring"

    drift_rows: list[dict] = []
    if tables.exists(spark, dt):
        drift_table = tables.read(spark, dt)
        newest_first = drift_table.orderBy(F.col("score_date").desc(), F.col("computed_at").desc())
        last = newest_first.select("score_date", "model_version").first()
        if last is not None:
            of_last = (F.col("score_date") == F.lit(last.score_date)) & (F.col("model_version") == last.model_version)
            drift_rows = [r.asDict() for r in drift_table.where(of_last).collect()]
    if drift_rows:
        d0 = drift_rows[0]
        title = f"{uc.name}: monitoring of {d0['score_date']} (model {d0['model_name']} version {d0['model_version']})"
        drift_rows.sort(key=lambda r: -(r["psi"] if r["psi"] is not None else -1))
        colors = {"ok": "tab:green", "warn": "tab:orange", "alert": "tab:red"}
        fig, ax = plt.subplots(figsize=(8, max(3, 0.3 * len(drift_rows) + 1)))
        rows_plot = drift_rows[::-1]
        ax.barh([r["feature"] for r in rows_plot], [r["psi"] or 0.0 for r in rows_plot],
                color=[colors[r["status"]] for r in rows_plot])
        ax.axvline(mon.psi_warn, color="tab:orange", ls="--", label=f"warn {mon.psi_warn}")
        ax.axvline(mon.psi_alert, color="tab:red", ls="--", label=f"alert {mon.psi_alert}")
        ax.set(xlabel="PSI", title=f"PSI per feature, {d0['score_date']}\nvs {d0['reference']}")
        ax.legend(loc="lower right")
        fig.tight_layout()
        fig.savefig(out / "psi.png", dpi=100)
        plt.close(fig)
        figs = [
            "<h2>Drift</h2>",
            f"<p>Reference: {html.escape(d0['reference'])}. Status: alert when PSI &ge; {mon.psi_alert}, "
            f"KS &ge; {mon.ks_alert} or JS &ge; {mon.js_alert}; warn when PSI &ge; {mon.psi_warn}.</p>",
            '<img src="psi.png" alt="PSI per feature">',
        ]

        pred = next((r for r in drift_rows if r["kind"] == "prediction"), None)
        if pred is not None:
            fig, ax = plt.subplots(figsize=(7, 4))
            _bars(ax, pred["bins"], pred["ref_counts"], pred["cur_counts"],
                  f"{pred['feature']}: reference vs {d0['score_date']} (PSI {(pred['psi'] or 0):.3f})")
            fig.tight_layout()
            fig.savefig(out / "prediction_distribution.png", dpi=100)
            plt.close(fig)
            figs.append('<img src="prediction_distribution.png" alt="probability distribution">')

        top = [r for r in drift_rows if r["kind"] != "prediction"][: mon.top_features]
        if top:
            fig, axes = plt.subplots(len(top), 1, figsize=(7, 3.2 * len(top)), squeeze=False)
            for ax, r in zip(axes[:, 0], top, strict=True):
                _bars(ax, r["bins"], r["ref_counts"], r["cur_counts"], f"{r['feature']} ({r['status']}, PSI {(r['psi'] or 0):.3f})")
            fig.tight_layout()
            fig.savefig(out / "top_drift.png", dpi=100)
            plt.close(fig)
            figs.append('<img src="top_drift.png" alt="most drifted features">')
        drift_columns = ["feature", "kind", "status", "psi", "ks", "js", "chi2_p", "n_ref", "n_cur", "nulls_ref", "nulls_cur"]
        figs.append(_table_html(drift_rows, drift_columns))
        sections += figs
    else:
        sections.append(f"<h2>Drift</h2><p>No drift computed yet ({html.escape(dt)}): run {tables.MONITOR_JOB}.</p>")

    perf_rows = [r.asDict() for r in tables.read(spark, pt).orderBy("score_date").collect()] if tables.exists(spark, pt) else []
    if perf_rows:
        fig, ax = plt.subplots(figsize=(7, 4))
        for v in sorted({(r["model_version"], r.get("model_alias")) for r in perf_rows}, key=str):
            rs = [r for r in perf_rows if (r["model_version"], r.get("model_alias")) == v and r["roc_auc"] is not None]
            ax.plot([r["score_date"] for r in rs], [r["roc_auc"] for r in rs], marker="o", label=f"version {v[0]} ({v[1]})")
        ax.set(ylabel="ROC AUC", title="Live ROC AUC by score date", ylim=(0.4, 1.0))
        ax.axhline(uc.model.auc_floor, color="grey", ls="--", label=f"auc_floor {uc.model.auc_floor}")
        ax.legend(fontsize=7)
        days = sorted({r["score_date"] for r in perf_rows})
        if len(days) == 1:  # one point: a week either side, not matplotlib's years
            ax.set_xlim(days[0] - timedelta(days=7), days[0] + timedelta(days=7))
        fig.autofmt_xdate()
        fig.tight_layout()
        fig.savefig(out / "live_auc.png", dpi=100)
        plt.close(fig)
        latest = perf_rows[-1]
        curve = json.loads(latest["calibration"] or "[]")
        fig, ax = plt.subplots(figsize=(5, 5))
        ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect")
        ax.plot([c["mean_predicted"] for c in curve], [c["observed"] for c in curve], marker="o", label="model")
        ax.set(xlabel="mean predicted probability", ylabel=f"observed rate of {uc.label.column}",
               title=f"Calibration, {latest['score_date']} (ECE {latest['ece']:.3f})", xlim=(0, 1), ylim=(0, 1))
        ax.legend(loc="upper left")
        fig.tight_layout()
        fig.savefig(out / "calibration.png", dpi=100)
        plt.close(fig)
        sections += [
            "<h2>Live performance</h2>",
            '<img src="live_auc.png" alt="live ROC AUC"> <img src="calibration.png" alt="calibration">',
            _table_html(perf_rows, ["score_date", "model_version", "model_alias", "n", "positives", "base_rate", "roc_auc",
                                    "precision_top_decile", "lift_top_decile", "brier", "ece"]),
        ]
    else:
        sections.append(f"<h2>Live performance</h2><p>No score date has observed labels yet ({html.escape(pt)}).</p>")

    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse;font-size:12px;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:2px 6px;text-align:right}} td.alert{{background:#fdd}} td.warn{{background:#fec}}
img{{max-width:100%;vertical-align:top}}</style></head>
<body><h1>{html.escape(title)}</h1><p>Generated {now} from {html.escape(dt)} and {html.escape(pt)}.</p>
{chr(10).join(sections)}
</body></html>
"""
    path = out / "report.html"
    path.write_text(page)
    return path
