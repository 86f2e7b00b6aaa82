"""The monitor job: the drift of a score date and the live performance of every labelled
score date, their tables, the report on disk and in MLflow, and the summary a user reads.
The statistics are beside it (``drift``, ``performance``, ``stats``); this module reads the
predictions, features and labels tables and writes ``drift_metrics``, ``drift_reference``
and ``performance_metrics``.

Drift (``run_drift``) compares the feature rows of a score date, and the probabilities the
model gave them, with a reference: the rows that model was trained on (its MLflow run logs
``train_from`` / ``train_to`` / ``test_as_of``; ``monitoring.reference: test`` uses its test
snapshot instead), which the model scores again for the reference probabilities. That
reference profile is computed the first time a version is monitored and stored in
``drift_reference`` (``lakeml.monitor.reference``); later days read it.

Live performance (``run_performance``) joins every scored date with its labels once they are
observed (``labels.as_of_date = predictions.score_date``) and measures each date once.
"""

from __future__ import annotations

import logging
import tempfile
from datetime import date
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakeml import features
from lakeml.core import parallel, tables, tracking
from lakeml.core.config import EnvConfig, UseCaseConfig
from lakeml.core.errors import MissingDataError, MissingTableError
from lakeml.ml.metrics import positive_probability
from lakeml.monitor import reference
from lakeml.monitor.drift import compare, profile
from lakeml.monitor.performance import PERF_SCHEMA, performance
from lakeml.monitor.profile import Profile
from lakeml.monitor.report import report
from lakeml.monitor.stats import STATUS_ORDER

log = logging.getLogger(__name__)


def reference_rows(spark: SparkSession, client, uc: UseCaseConfig, name: str, version: str) -> tuple[DataFrame, str]:
    """The labelled feature rows model ``name`` version ``version`` was trained on (or its
    test snapshot, with ``monitoring.reference: test``), and a description of them."""
    mv = client.get_model_version(name, version)
    params = client.get_run(mv.run_id).data.params if mv.run_id else {}
    test_as_of = params.get("test_as_of") or (mv.tags or {}).get("test_as_of")
    lab = features.labelled_features(spark, uc)
    d = F.col("as_of_date")
    if uc.monitoring.reference == "test":
        if not test_as_of:
            raise MissingDataError(
                f"{name} version {version}: its run logs no test_as_of; set monitoring.reference: training in {uc.source_file}"
            )
        rows, desc = lab.where(d == F.lit(date.fromisoformat(test_as_of))), f"test snapshot {test_as_of}"
    elif params.get("train_from") and params.get("train_to"):
        lo, hi = date.fromisoformat(params["train_from"]), date.fromisoformat(params["train_to"])
        rows, desc = lab.where(d.between(F.lit(lo), F.lit(hi))), f"training snapshots {lo}..{hi}"
    elif test_as_of:
        # the training rule of lakeml.train: label windows closed by the test snapshot
        t = date.fromisoformat(test_as_of)
        rows = lab.where(F.date_add(d, uc.label.horizon_days) <= F.lit(t))
        desc = f"labelled snapshots with as_of + {uc.label.horizon_days}d <= {t}"
    else:
        raise MissingDataError(
            f"{name} version {version}: its MLflow run logs neither train_from/train_to nor test_as_of; no reference"
        )
    if rows.isEmpty():
        raise MissingDataError(
            f"no labelled feature rows for the reference of {name} version {version} ({desc}) in {uc.table(uc.tables.features)}"
        )
    return rows, desc


def load_reference(spark: SparkSession, uc: UseCaseConfig, name: str, version: str) -> Profile | None:
    """The stored drift reference of a model version (under the current ``settings``), or None."""
    try:
        stored = tables.read(spark, uc.table(uc.tables.drift_reference))
    except MissingTableError:
        return None
    of_version = (F.col("model_name") == name) & (F.col("model_version") == str(version))
    rows = stored.where(of_version & (F.col("settings") == reference.settings(uc))).collect()
    return reference.from_rows(uc, rows)


def save_reference(spark: SparkSession, uc: UseCaseConfig, name: str, version: str, prof: Profile) -> None:
    """Store a version's drift reference (replacing an earlier one of the same version)."""
    rows = reference.to_rows(uc, name, version, prof)
    df = spark.createDataFrame(rows, reference.SCHEMA).withColumn("computed_at", F.current_timestamp())
    tables.ensure_database(spark, uc.database)
    pred = f"model_name = {tables.sql_literal(name)} AND model_version = {tables.sql_literal(str(version))}"
    tables.replace_where(df.coalesce(1), uc.table(uc.tables.drift_reference), pred)
    log.info("drift reference of %s version %s stored (%d features)", name, version, len(rows))


def _predictions(spark: SparkSession, uc: UseCaseConfig, alias: str | None) -> DataFrame:
    preds = tables.read(spark, uc.table(uc.tables.predictions), made_by=tables.SCORE_JOB)
    if alias is not None and "model_alias" in preds.columns:
        preds = preds.where(F.col("model_alias") == alias)
    return preds


def newest_score_date(spark: SparkSession, uc: UseCaseConfig, alias: str | None = tracking.CHAMPION) -> date:
    d = _predictions(spark, uc, alias).agg(F.max("score_date")).first()[0]
    if d is None:
        of_alias = f" of alias {alias}" if alias else ""
        raise MissingDataError(f"{uc.table(uc.tables.predictions)} has no predictions{of_alias}. Run {tables.SCORE_JOB}.")
    return d


def run_drift(
    spark: SparkSession, env: EnvConfig, uc: UseCaseConfig, score_date: date | None = None, alias: str = tracking.CHAMPION
) -> dict:
    """Drift of the features and probabilities of ``score_date`` (default: the newest scored
    date) against the training rows of the model version that scored it, into
    ``<db>.drift_metrics``; re-running a (score_date, model_version) replaces its rows."""
    preds = _predictions(spark, uc, alias)
    d = score_date or newest_score_date(spark, uc, alias)
    day = preds.where(F.col("score_date") == F.lit(d))
    versions = day.select("model_name", "model_version").distinct().collect()
    if not versions:
        have = [str(r[0]) for r in preds.select("score_date").distinct().orderBy("score_date").collect()]
        raise MissingDataError(
            f"{uc.table(uc.tables.predictions)} has no predictions of alias {alias} for {d}; it has {', '.join(have[-5:]) or 'none'} "
            f"(newest last). Score that date with: jobs/score.py --date {d}"
        )
    if len(versions) > 1:
        raise MissingDataError(f"{uc.table(uc.tables.predictions)}: {d} was scored by several versions of alias {alias}: {versions}")
    name, version = versions[0]["model_name"], versions[0]["model_version"]
    cols = [uc.features.entity, *uc.model.numeric, *uc.model.categorical]
    p1 = uc.probability
    entity = uc.features.entity
    ft = tables.read(spark, uc.table(uc.tables.features), made_by=tables.FEATURES_JOB)
    cur = ft.where(F.col("as_of_date") == F.lit(d)).select(*cols).join(day.select(entity, p1), entity, "left")
    if cur.isEmpty():
        raise MissingDataError(f"{uc.table(uc.tables.features)} has no rows for {d}. Compute that date with: jobs/features.py --as-of {d}")
    prof = load_reference(spark, uc, name, version)
    if prof is None:  # the first time this version is monitored: read and score its training rows once
        client = tracking.configure(env)
        ref_rows, ref_desc = reference_rows(spark, client, uc, name, version)
        model = tracking.mlflow.spark.load_model(f"models:/{name}/{version}")
        ref_scored = model.transform(ref_rows.select(*cols, "as_of_date")).select(*cols, positive_probability().alias(p1))
        prof = profile(uc, ref_scored, uc.model.numeric, uc.model.categorical, prob_ref=p1, description=ref_desc)
        save_reference(spark, uc, name, version, prof)
    ref_desc = prof.description
    res = compare(spark, uc, prof, cur, prob_cur=p1)
    out = res.select(
        F.lit(d).alias("score_date"),
        F.lit(name).alias("model_name"),
        F.lit(str(version)).alias("model_version"),
        *res.columns,
        F.lit(ref_desc).alias("reference"),
        F.current_timestamp().alias("computed_at"),
    )
    dt = uc.table(uc.tables.drift_metrics)
    tables.ensure_database(spark, uc.database)
    this_slice = f"score_date = {tables.sql_literal(d)} AND model_version = {tables.sql_literal(str(version))}"
    tables.replace_where(out.coalesce(1), dt, this_slice)
    rows = res.select("feature", "kind", "status", "psi").collect()
    by_status = {s: sorted(r.feature for r in rows if r.status == s) for s in ("alert", "warn")}
    top = max(rows, key=lambda r: r.psi if r.psi is not None else -1.0)
    pred_row = next((r for r in rows if r.kind == "prediction"), None)
    log.info("drift for %s (%s version %s vs %s): %d alert, %d warn into %s",
             d, name, version, ref_desc, len(by_status["alert"]), len(by_status["warn"]), dt)
    return {
        "score_date": d,
        "model_name": name,
        "model_version": str(version),
        "reference": ref_desc,
        "features": len(rows),
        "status": max((r.status for r in rows), key=STATUS_ORDER.get, default="ok"),
        "alerts": by_status["alert"],
        "warnings": by_status["warn"],
        "max_psi": {"feature": top.feature, "psi": top.psi},
        "prediction_psi": pred_row.psi if pred_row else None,
        "table": dt,
    }


def _dates(df: DataFrame, column: str) -> set:
    """The distinct values of a (partition) column."""
    return {r[0] for r in df.select(column).distinct().collect()}


def run_performance(spark: SparkSession, env: EnvConfig, uc: UseCaseConfig) -> dict:
    """Live metrics of every score date whose labels are observed and that has none yet,
    into ``<db>.performance_metrics``. Only those dates are read (the predictions and labels
    tables are partitioned by date), so a day costs its new dates, not the history; a date
    scored again loses its rows (``lakeml.ml.score``) and is measured again."""
    pt = uc.table(uc.tables.performance_metrics)
    predictions = tables.read(spark, uc.table(uc.tables.predictions), made_by=tables.SCORE_JOB)
    labelled = tables.read(spark, uc.table(uc.tables.labels), made_by=tables.FEATURES_JOB)
    entity, label, p1 = uc.entity, uc.label.column, uc.probability
    try:
        measured = _dates(tables.read(spark, pt), "score_date")
    except MissingTableError:
        measured = set()
    candidates = sorted(_dates(predictions, "score_date") - measured)
    labels = labelled.where(F.col("as_of_date").isin(candidates) & F.col(label).isNotNull())
    todo = sorted(r[0] for r in labels.select("as_of_date").distinct().collect()) if candidates else []
    rows = []
    if todo:
        preds = predictions.where(F.col("score_date").isin(todo))
        keys = ["score_date", "model_name", "model_version"] + (["model_alias"] if "model_alias" in preds.columns else [])
        joined = preds.select(entity, *keys, p1).join(
            labels.where(F.col("as_of_date").isin(todo)).select(entity, F.col("as_of_date").alias("score_date"), F.col(label).alias("y")),
            [entity, "score_date"],
        )
        rows = performance(joined, keys, p1, "y", uc.monitoring.calibration_bins)
    tables.ensure_database(spark, uc.database)
    if rows:
        data = [tuple(r.get(f.name) for f in PERF_SCHEMA.fields) for r in rows]
        df = spark.createDataFrame(data, PERF_SCHEMA).withColumn("computed_at", F.current_timestamp())
        tables.replace_where(df.coalesce(1), pt, tables.in_predicate("score_date", todo))
        log.info("live performance for %d new score dates (%s .. %s) into %s", len(todo), todo[0], todo[-1], pt)
    elif not tables.exists(spark, pt):
        # created empty, so the table is there to query before ground truth arrives
        empty = spark.createDataFrame([], PERF_SCHEMA).withColumn("computed_at", F.current_timestamp())
        tables.append(empty, pt)
    else:
        log.info("no new score date with observed labels; %s unchanged", pt)
    perf_metrics = tables.read(spark, pt)
    # the newest date, the champion's row when several aliases were scored
    is_champion = F.coalesce(F.col("model_alias"), F.lit(tracking.CHAMPION)) == tracking.CHAMPION
    newest = perf_metrics.orderBy(F.col("score_date").desc(), is_champion.desc()).first()
    latest_columns = ("score_date", "model_version", "n", "base_rate", "roc_auc", "precision_top_decile", "ece")
    return {
        "score_dates": sorted(_dates(perf_metrics, "score_date")),
        "computed": todo,
        "table": pt,
        "latest": None if newest is None else {k: newest[k] for k in latest_columns},
    }


def log_report_to_mlflow(
    path: str | Path, experiment_id: str | None = None, run_name: str = "monitor", tags: dict | None = None, metrics: dict | None = None
) -> str:
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


def run(
    spark: SparkSession,
    env: EnvConfig,
    uc: UseCaseConfig,
    score_date: date | None = None,
    alias: str = tracking.CHAMPION,
    to_mlflow: bool = True,
) -> dict:
    """Drift of ``score_date`` (default: the newest scored), live performance of every
    labelled score date, the report under ``<data_dir>/reports/<usecase>/<score_date>/`` and in MLflow."""
    d = score_date or newest_score_date(spark, uc, alias)
    # drift and live performance write different tables: side by side
    dr, perf = parallel.map_all(
        spark, lambda f: f(), [lambda: run_drift(spark, env, uc, d, alias), lambda: run_performance(spark, env, uc)]
    )
    html_path = report(spark, env, uc, report_dir(env, uc, d))
    # a data folder on HDFS: the report is written to a temporary folder of the driver, MLflow keeps it
    summary = {
        "drift": dr,
        "performance": perf,
        "report": str(html_path),
        "report_is_temporary": not reports_are_local(env),
        "mlflow_run_id": None,
    }
    if to_mlflow:
        tracking.configure(env)
        exp = tracking.experiment(env, uc.model.experiment)
        latest = perf.get("latest") or {}
        summary["mlflow_run_id"] = log_report_to_mlflow(
            html_path,
            exp,
            run_name=f"monitor-{d}",
            tags={"stage": "monitor", "usecase": uc.name, "env": env.name, "score_date": d,
                  "model_version": dr["model_version"], "drift_status": dr["status"]},
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
        f"== drift of {dr['score_date']} (model {dr['model_name']} version {dr['model_version']}, "
        f"reference: {dr['reference']}): {dr['status']}",
        f"  {dr['features']} rows in {dr['table']}; alerts: {', '.join(dr['alerts']) or 'none'}; "
        f"warnings: {', '.join(dr['warnings']) or 'none'}",
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
