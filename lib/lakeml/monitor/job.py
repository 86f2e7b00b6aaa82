"""The monitor job: drift of a score date, live performance of every labelled score date,
the report on disk and in MLflow, and the summary a user reads."""

from __future__ import annotations

import tempfile
from datetime import date
from pathlib import Path

from pyspark.sql import SparkSession

from lakeml.core import parallel, tracking
from lakeml.core.config import EnvConfig, UseCaseConfig
from lakeml.monitor.drift import newest_score_date, run_drift
from lakeml.monitor.performance import run_performance
from lakeml.monitor.report import report


def log_report_to_mlflow(path: str | Path, experiment_id: str | None = None, run_name: str = "monitor", tags: dict | None = None, metrics: dict | None = None) -> str:
    """Log the report folder (``path`` is the HTML file or its folder) as artifacts under
    ``monitoring/`` of the active MLflow run, or of a new run in ``experiment_id``; returns
    the run id. Configure tracking first (``tracking.configure(env)``)."""
    mlflow = tracking.mlflow
    folder = Path(path)
    folder = folder.parent if folder.is_file() else folder

    def log(run_id: str) -> str:
        if tags:
            mlflow.set_tags({k: str(v) for k, v in tags.items()})
        if metrics:
            mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None})
        mlflow.log_artifacts(str(folder), "monitoring")
        return run_id

    active = mlflow.active_run()
    if active is not None:
        return log(active.info.run_id)
    with tracking.start_run(experiment_id, run_name) as r:
        return log(r.info.run_id)


def reports_are_local(env: EnvConfig) -> bool:
    """Whether reports stay in the data folder (not on HDFS: then MLflow is their home)."""
    return "://" not in env.data_dir


def report_dir(env: EnvConfig, uc: UseCaseConfig, score_date: date) -> Path:
    """``<data_dir>/reports/<usecase>/<score_date>`` (a temporary folder when data_dir is not local)."""
    if not reports_are_local(env):
        return Path(tempfile.mkdtemp(prefix=f"lakeml-report-{uc.name}-{score_date}-"))
    return Path(env.data_dir) / "reports" / uc.name / str(score_date)


def run(spark: SparkSession, env: EnvConfig, uc: UseCaseConfig, score_date: date | None = None, alias: str = tracking.CHAMPION, to_mlflow: bool = True) -> dict:
    """Drift of ``score_date`` (default: the newest scored), live performance of every
    labelled score date, the report under ``<data_dir>/reports/<usecase>/<score_date>/`` and in MLflow."""
    d = score_date or newest_score_date(spark, uc, alias)
    # drift and live performance write different tables: side by side
    dr, perf = parallel.map_all(spark, lambda f: f(), [lambda: run_drift(spark, env, uc, d, alias), lambda: run_performance(spark, env, uc)])
    html_path = report(spark, env, uc, report_dir(env, uc, d))
    # a data folder on HDFS: the report is written to a temporary folder of the driver, MLflow keeps it
    summary = {"drift": dr, "performance": perf, "report": str(html_path), "report_is_temporary": not reports_are_local(env), "mlflow_run_id": None}
    if to_mlflow:
        tracking.configure(env)
        exp = tracking.experiment(env, uc.model.experiment)
        latest = perf.get("latest") or {}
        summary["mlflow_run_id"] = log_report_to_mlflow(
            html_path,
            exp,
            run_name=f"monitor-{d}",
            tags={"stage": "monitor", "usecase": uc.name, "env": env.name, "score_date": d, "model_version": dr["model_version"], "drift_status": dr["status"]},
            metrics={
                "drift_alerts": len(dr["alerts"]),
                "drift_warnings": len(dr["warnings"]),
                "max_psi": dr["max_psi"]["psi"],
                "prediction_psi": dr["prediction_psi"],
                "live_roc_auc": latest.get("roc_auc"),
                "live_ece": latest.get("ece"),
            },
        )
    return summary


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"


def describe(summary: dict) -> str:
    """The job's summary: drift status, live performance, where the report is, and SQL."""
    dr, perf = summary["drift"], summary["performance"]
    lines = [
        "",
        f"== drift of {dr['score_date']} (model {dr['model_name']} version {dr['model_version']}, reference: {dr['reference']}): {dr['status']}",
        f"  {dr['features']} rows in {dr['table']}; alerts: {', '.join(dr['alerts']) or 'none'}; warnings: {', '.join(dr['warnings']) or 'none'}",
        f"  largest PSI: {dr['max_psi']['feature']} {_num(dr['max_psi']['psi'])}; prediction PSI: {_num(dr['prediction_psi'])}",
    ]
    if perf["latest"]:
        lt = perf["latest"]
        lines.append(
            f"== live performance: {len(perf['score_dates'])} labelled score dates in {perf['table']}; newest {lt['score_date']}: "
            f"ROC AUC {_num(lt['roc_auc'])}, precision@top decile {_num(lt['precision_top_decile'])}, "
            f"base rate {_num(lt['base_rate'])}, ECE {_num(lt['ece'])}"
        )
    else:
        lines.append(f"== live performance: no score date has observed labels yet ({perf['table']})")
    run_id = summary.get("mlflow_run_id")
    if run_id and summary.get("report_is_temporary"):
        lines.append(f"== report: MLflow run {run_id}, artifact monitoring/report.html (the driver's temporary copy: {summary['report']})")
    else:
        lines.append(f"== report: {summary['report']}" + (f" (MLflow run {run_id})" if run_id else ""))
    lines += [
        "",
        "  SELECT feature, kind, status, round(psi, 4) AS psi, round(ks, 4) AS ks FROM "
        f"{dr['table']} WHERE score_date = DATE'{dr['score_date']}' ORDER BY psi DESC;",
        f"  SELECT score_date, model_version, roc_auc, precision_top_decile, ece FROM {perf['table']} ORDER BY score_date;",
        "",
    ]
    return "\n".join(lines)
