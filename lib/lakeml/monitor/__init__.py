"""Drift and live-performance monitoring, the feedback loop after scoring: the statistics
(``stats``), the reference ``Profile`` (``profile``) and its stored form (``reference``),
drift against that reference (``drift``), live performance from ground truth
(``performance``), the HTML report (``report``) and the job that reads and writes the
tables (``job``)."""

from lakeml.monitor.drift import DRIFT_SCHEMA, drift
from lakeml.monitor.job import (
    describe,
    log_report_to_mlflow,
    newest_score_date,
    reference_rows,
    report_dir,
    run,
    run_drift,
    run_performance,
)
from lakeml.monitor.performance import PERF_SCHEMA, performance
from lakeml.monitor.report import report
from lakeml.monitor.stats import EPS, chi2_p, js_distance, ks_binned, psi, status

__all__ = [
    "DRIFT_SCHEMA", "EPS", "PERF_SCHEMA", "chi2_p", "describe", "drift", "js_distance", "ks_binned", "log_report_to_mlflow",
    "newest_score_date", "performance", "psi", "reference_rows", "report", "report_dir", "run", "run_drift", "run_performance",
    "status",
]
