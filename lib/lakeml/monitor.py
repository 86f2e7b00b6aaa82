"""Drift monitoring and live performance: the feedback loop after scoring.

Drift (``run_drift``) compares the feature rows of a score date, and the probabilities the
model gave them, with a reference: the rows that model was trained on (its MLflow run logs
``train_from`` / ``train_to`` / ``test_as_of``; ``monitoring.reference: test`` uses its test
snapshot instead), which the model scores again for the reference probabilities. Every
statistic comes from counts aggregated in Spark (one aggregation per side for all
features); only the count tables reach the driver.

Per feature (``kind`` numeric, categorical or prediction):

- bins: numeric values are cut at the reference's quantiles ``1/bins .. (bins-1)/bins``
  (``approxQuantile``, duplicates dropped, so a zero-inflated count keeps one edge at 0),
  into right-closed bins ``(-inf, e0], (e0, e1], ..., (e_k, +inf)``, plus a bin for nulls
  (NaN counts as null). Categorical values are their own bins (every value seen on either
  side, so a value unseen in the reference has reference count 0), plus a null bin.
- ``psi`` (population stability index) = sum_i (c_i - r_i) * ln(c_i / r_i) over the bins,
  with r_i, c_i the reference and current shares and empty shares replaced by ``EPS`` = 1e-4.
- ``js``: Jensen-Shannon distance, base 2 (0 = same, 1 = disjoint), on the same counts
  (scipy.spatial.distance.jensenshannon; no epsilon needed).
- ``chi2_p``: p-value of the chi-square test of homogeneity on the 2 x bins count table
  (scipy.stats.chi2_contingency, bins empty on both sides dropped; Yates' correction when
  there is one degree of freedom); NULL when fewer than two bins are non-empty. With large
  samples it is ~0 for any visible drift: read it with the effect sizes above.
- ``ks`` (numeric and prediction): the two-sample Kolmogorov-Smirnov statistic of the
  non-null values, max |F_ref(x) - F_cur(x)|, with the CDFs evaluated at the edges of
  ``ks_bins`` (default 100) finer reference quantiles. It is a lower bound of the exact
  statistic, off by at most the probability mass of one fine bin (~1/ks_bins of the
  reference) at the point where the gap is largest.

``status`` is ``alert`` when psi >= psi_alert, ks >= ks_alert or js >= js_alert, ``warn``
when psi >= psi_warn, ``ok`` otherwise (thresholds in ``monitoring`` of the use case).

Live performance (``run_performance``) joins every scored date with its labels once they
are observed (``labels.as_of_date = predictions.score_date``) and computes, per score
date, model version and alias: ROC AUC (exact Mann-Whitney statistic, ties counted one
half, from per-probability counts aggregated in Spark), precision and lift in the top
decile (probability >= the 90th percentile), base rate, Brier score and calibration:
``calibration_bins`` equal-width probability bins, their mean prediction and observed
rate (JSON), and ECE = sum_b n_b / n * |mean_p_b - rate_b|.
"""

from __future__ import annotations

import html
import json
import logging
import math
import tempfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lakeml import features, metrics, tables, tracking
from lakeml.config import EnvConfig, MonitoringSpec, UseCaseConfig

log = logging.getLogger(__name__)

EPS = 1e-4  # share used for an empty bin in PSI
P1 = "churn_probability"  # the probability column of the predictions table (lakeml.score)
SCORE_JOB = "jobs/score.py (or jobs/pipeline.py)"
MONITOR_JOB = "jobs/monitor.py"
NULL_BIN = "null"
STATUS_ORDER = {"ok": 0, "warn": 1, "alert": 2}

DRIFT_SCHEMA = T.StructType(
    [
        T.StructField("feature", T.StringType(), False),
        T.StructField("kind", T.StringType(), False),
        T.StructField("status", T.StringType(), False),
        T.StructField("psi", T.DoubleType(), True),
        T.StructField("ks", T.DoubleType(), True),
        T.StructField("js", T.DoubleType(), True),
        T.StructField("chi2_p", T.DoubleType(), True),
        T.StructField("n_ref", T.LongType(), False),
        T.StructField("n_cur", T.LongType(), False),
        T.StructField("nulls_ref", T.LongType(), False),
        T.StructField("nulls_cur", T.LongType(), False),
        T.StructField("bins", T.ArrayType(T.StringType()), False),
        T.StructField("edges", T.ArrayType(T.DoubleType()), True),
        T.StructField("ref_counts", T.ArrayType(T.LongType()), False),
        T.StructField("cur_counts", T.ArrayType(T.LongType()), False),
    ]
)

PERF_SCHEMA = T.StructType(
    [
        T.StructField("score_date", T.DateType(), False),
        T.StructField("model_name", T.StringType(), True),
        T.StructField("model_version", T.StringType(), True),
        T.StructField("model_alias", T.StringType(), True),
        T.StructField("n", T.LongType(), False),
        T.StructField("positives", T.LongType(), False),
        T.StructField("base_rate", T.DoubleType(), True),
        T.StructField("roc_auc", T.DoubleType(), True),
        T.StructField("precision_top_decile", T.DoubleType(), True),
        T.StructField("lift_top_decile", T.DoubleType(), True),
        T.StructField("brier", T.DoubleType(), True),
        T.StructField("ece", T.DoubleType(), True),
        T.StructField("calibration", T.StringType(), True),
    ]
)


# --------------------------------------------------------------------------- statistics


def psi(ref_counts, cur_counts, eps: float = EPS) -> float | None:
    """Population stability index of two count vectors over the same bins."""
    r, c = np.asarray(ref_counts, float), np.asarray(cur_counts, float)
    if r.sum() <= 0 or c.sum() <= 0:
        return None
    r, c = np.maximum(r / r.sum(), eps), np.maximum(c / c.sum(), eps)
    return float(np.sum((c - r) * np.log(c / r)))


def js_distance(ref_counts, cur_counts) -> float | None:
    """Jensen-Shannon distance (base 2) of two count vectors over the same bins."""
    from scipy.spatial.distance import jensenshannon

    r, c = np.asarray(ref_counts, float), np.asarray(cur_counts, float)
    if r.sum() <= 0 or c.sum() <= 0:
        return None
    return float(jensenshannon(r, c, base=2))


def chi2_p(ref_counts, cur_counts) -> float | None:
    """p-value of the chi-square test of homogeneity (bins empty on both sides dropped)."""
    from scipy.stats import chi2_contingency

    table = np.array([ref_counts, cur_counts], dtype=float)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) <= 0).any():
        return None
    return float(chi2_contingency(table).pvalue)


def ks_binned(ref_counts, cur_counts) -> float | None:
    """max |CDF_ref - CDF_cur| over the upper edges of ordered bins."""
    r, c = np.asarray(ref_counts, float), np.asarray(cur_counts, float)
    if r.sum() <= 0 or c.sum() <= 0:
        return None
    return float(np.max(np.abs(np.cumsum(r) / r.sum() - np.cumsum(c) / c.sum())))


def status(kind: str, psi_v: float | None, ks_v: float | None, js_v: float | None, mon: MonitoringSpec) -> str:
    if (psi_v is not None and psi_v >= mon.psi_alert) or (ks_v is not None and ks_v >= mon.ks_alert) or (
        js_v is not None and js_v >= mon.js_alert
    ):
        return "alert"
    if psi_v is not None and psi_v >= mon.psi_warn:
        return "warn"
    return "ok"


def _bucketed(df: DataFrame, edges: dict[str, list[float]]) -> tuple[DataFrame, dict[str, Column]]:
    """``df`` with a bin index per numeric column: the number of edges strictly below the
    value (= np.searchsorted(edges, x, "left")), NULL for NULL. Bins are right-closed,
    (e_{i-1}, e_i]: a point mass at an edge (say all the zeros of a count) stays in its own
    bin. Spark's Bucketizer (a binary search in the JVM) with splits just above each edge."""
    from pyspark.ml.feature import Bucketizer

    cols = [c for c, e in edges.items() if e]
    keys = {c: F.when(F.col(c).isNotNull(), F.lit(0)) for c, e in edges.items() if not e}  # one bin
    if cols:
        splits = [[-math.inf, *(float(np.nextafter(e, math.inf)) for e in edges[c]), math.inf] for c in cols]
        out = [f"__bin_{i}" for i in range(len(cols))]
        df = Bucketizer(splitsArray=splits, inputCols=cols, outputCols=out, handleInvalid="keep").transform(df)
        keys.update({c: F.col(o).cast("int") for c, o in zip(cols, out, strict=True)})
    return df, keys


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _bin_labels(edges: list[float]) -> list[str]:
    if not edges:
        return ["all values", NULL_BIN]
    out = [f"<= {_fmt(edges[0])}"]
    out += [f"({_fmt(a)}, {_fmt(b)}]" for a, b in zip(edges[:-1], edges[1:], strict=True)]
    out.append(f"> {_fmt(edges[-1])}")
    return out + [NULL_BIN]


def _quantile_probs(bins: int, ks_bins: int) -> tuple[list[float], list[float]]:
    coarse = [round(i / bins, 12) for i in range(1, bins)]
    return coarse, sorted(set(coarse) | {round(i / ks_bins, 12) for i in range(1, ks_bins)})


def _edges(values: list[float]) -> list[float]:
    return sorted({float(v) for v in values if v is not None and math.isfinite(v)})


def drift(
    spark: SparkSession,
    uc: UseCaseConfig,
    reference_df: DataFrame,
    current_df: DataFrame,
    features_numeric: list[str],
    features_categorical: list[str],
    prob_ref: str | None = None,
    prob_cur: str | None = None,
) -> DataFrame:
    """One row per feature (and one ``prediction`` row when ``prob_ref``, the probability
    column of ``reference_df``, is given; ``prob_cur`` names it in ``current_df``, default
    the same name): psi, ks, js, chi2_p, counts and status. See the module docstring."""
    mon = uc.monitoring
    pred = None
    if prob_ref is not None:
        pred = prob_cur or prob_ref
        if pred in features_numeric or pred in features_categorical:
            raise ValueError(f"the probability column {pred!r} is also listed as a feature")
    numeric = list(features_numeric) + ([pred] if pred else [])
    kinds = {**{c: "numeric" for c in features_numeric}, **{c: "categorical" for c in features_categorical}}
    if pred:
        kinds[pred] = "prediction"

    def prepared(df: DataFrame, prob: str | None) -> DataFrame:
        cols = []
        for c in features_numeric:
            x = F.col(c).cast("double")
            cols.append(F.when(F.isnan(x), F.lit(None)).otherwise(x).alias(c))
        cols += [F.col(c).cast("string").alias(c) for c in features_categorical]
        if pred:
            x = F.col(prob).cast("double")
            cols.append(F.when(F.isnan(x), F.lit(None)).otherwise(x).alias(pred))
        return df.select(*cols)

    ref = prepared(reference_df, prob_ref).persist()
    cur = prepared(current_df, prob_cur or prob_ref).persist()
    try:
        coarse_p, all_p = _quantile_probs(mon.bins, mon.ks_bins)
        quantiles = ref.approxQuantile(numeric, all_p, mon.quantile_error) if numeric else []
        fine: dict[str, list[float]] = {}
        coarse: dict[str, list[float]] = {}
        for c, q in zip(numeric, quantiles, strict=True):
            by_p = dict(zip(all_p, q, strict=False))
            fine[c] = _edges(q)
            coarse[c] = _edges([by_p[p] for p in coarse_p if p in by_p])

        def counts(df: DataFrame) -> dict[tuple[str, str | None], int]:
            """(feature, bin key) -> rows, in ONE aggregation over all features."""
            df, idx = _bucketed(df, fine)
            cells = []
            for c in numeric:
                cells.append(F.struct(F.lit(c).alias("feature"), idx[c].cast("string").alias("key")))
            for c in features_categorical:
                cells.append(F.struct(F.lit(c).alias("feature"), F.col(c).alias("key")))
            if not cells:
                return {}
            rows = df.select(F.inline(F.array(*cells))).groupBy("feature", "key").count().collect()
            return {(r["feature"], r["key"]): int(r["count"]) for r in rows}

        cr, cc = counts(ref), counts(cur)
        out = []
        for c in numeric:
            k = len(fine[c])
            rf = np.array([cr.get((c, str(i)), 0) for i in range(k + 1)], dtype=np.int64)
            cf = np.array([cc.get((c, str(i)), 0) for i in range(k + 1)], dtype=np.int64)
            # fine bin i = (f_{i-1}, f_i] lies inside coarse bin searchsorted(coarse, f_i)
            uppers = np.array([*fine[c], np.inf])
            to_coarse = np.searchsorted(np.array(coarse[c], dtype=float), uppers, side="left")
            m = len(coarse[c]) + 1
            rc = np.bincount(to_coarse, weights=rf, minlength=m).astype(np.int64)
            ccn = np.bincount(to_coarse, weights=cf, minlength=m).astype(np.int64)
            nr, nc = cr.get((c, None), 0), cc.get((c, None), 0)
            out.append(_row(c, kinds[c], mon, _bin_labels(coarse[c]), coarse[c], [*rc, nr], [*ccn, nc], nr, nc, ks_binned(rf, cf)))
        for c in features_categorical:
            values = {key for (f, key) in cr if f == c and key is not None} | {key for (f, key) in cc if f == c and key is not None}
            order = sorted(values, key=lambda v: (-cr.get((c, v), 0), v))
            nr, nc = cr.get((c, None), 0), cc.get((c, None), 0)
            rc = [cr.get((c, v), 0) for v in order] + [nr]
            ccn = [cc.get((c, v), 0) for v in order] + [nc]
            out.append(_row(c, "categorical", mon, [*order, NULL_BIN], None, rc, ccn, nr, nc, None))
    finally:
        ref.unpersist()
        cur.unpersist()
    return spark.createDataFrame(out, DRIFT_SCHEMA)


def _row(feature, kind, mon, labels, edges, rc, cc, nulls_r, nulls_c, ks_v) -> tuple:
    p, j = psi(rc, cc), js_distance(rc, cc)
    return (
        feature,
        kind,
        status(kind, p, ks_v, j, mon),
        p,
        ks_v,
        j,
        chi2_p(rc, cc),
        int(sum(rc)),
        int(sum(cc)),
        int(nulls_r),
        int(nulls_c),
        list(labels),
        None if edges is None else [float(e) for e in edges],
        [int(v) for v in rc],
        [int(v) for v in cc],
    )


# --------------------------------------------------------------------------- drift job


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
            raise LookupError(f"{name} version {version}: its run logs no test_as_of; set monitoring.reference: training in {uc.source_file}")
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
        raise LookupError(f"{name} version {version}: its MLflow run logs neither train_from/train_to nor test_as_of; no reference")
    if rows.isEmpty():
        raise LookupError(f"no labelled feature rows for the reference of {name} version {version} ({desc}) in {uc.table(uc.tables.features)}")
    return rows, desc


def _predictions(spark: SparkSession, uc: UseCaseConfig, alias: str | None) -> DataFrame:
    preds = tables.read(spark, uc.table(uc.tables.predictions), made_by=SCORE_JOB)
    if alias is not None and "model_alias" in preds.columns:
        preds = preds.where(F.col("model_alias") == alias)
    return preds


def newest_score_date(spark: SparkSession, uc: UseCaseConfig, alias: str | None = tracking.CHAMPION) -> date:
    d = _predictions(spark, uc, alias).agg(F.max("score_date")).first()[0]
    if d is None:
        raise LookupError(f"{uc.table(uc.tables.predictions)} has no predictions{f' of alias {alias}' if alias else ''}. Run {SCORE_JOB}.")
    return d


def run_drift(spark: SparkSession, env: EnvConfig, uc: UseCaseConfig, score_date: date | None = None, alias: str = tracking.CHAMPION) -> dict:
    """Drift of the features and probabilities of ``score_date`` (default: the newest scored
    date) against the training rows of the model version that scored it, into
    ``<db>.drift_metrics``; re-running a (score_date, model_version) replaces its rows."""
    preds = _predictions(spark, uc, alias)
    d = score_date or newest_score_date(spark, uc, alias)
    day = preds.where(F.col("score_date") == F.lit(d))
    versions = day.select("model_name", "model_version").distinct().collect()
    if not versions:
        have = [str(r[0]) for r in preds.select("score_date").distinct().orderBy("score_date").collect()]
        raise LookupError(
            f"{uc.table(uc.tables.predictions)} has no predictions of alias {alias} for {d}; it has {', '.join(have[-5:]) or 'none'} "
            f"(newest last). Score that date with: jobs/score.py --date {d}"
        )
    if len(versions) > 1:
        raise LookupError(f"{uc.table(uc.tables.predictions)}: {d} was scored by several versions of alias {alias}: {versions}")
    name, version = versions[0]["model_name"], versions[0]["model_version"]
    client = tracking.configure(env)
    ref_rows, ref_desc = reference_rows(spark, client, uc, name, version)
    model = tracking.mlflow.spark.load_model(f"models:/{name}/{version}")
    cols = [uc.features.entity, *uc.model.numeric, *uc.model.categorical]
    ref_scored = model.transform(ref_rows.select(*cols, "as_of_date")).select(*cols, metrics.positive_probability().alias(P1))
    entity = uc.features.entity
    ft = tables.read(spark, uc.table(uc.tables.features), made_by=features.FEATURES_JOB)
    cur = ft.where(F.col("as_of_date") == F.lit(d)).select(*cols).join(day.select(entity, P1), entity, "left")
    if cur.isEmpty():
        raise LookupError(f"{uc.table(uc.tables.features)} has no rows for {d}. Compute that date with: jobs/features.py --as-of {d}")
    res = drift(spark, uc, ref_scored, cur, uc.model.numeric, uc.model.categorical, prob_ref=P1, prob_cur=P1)
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
    tables.replace_where(out.coalesce(1), dt, f"score_date = {tables.sql_literal(d)} AND model_version = {tables.sql_literal(str(version))}")
    rows = res.select("feature", "kind", "status", "psi").collect()
    by_status = {s: sorted(r.feature for r in rows if r.status == s) for s in ("alert", "warn")}
    top = max(rows, key=lambda r: r.psi if r.psi is not None else -1.0)
    pred_row = next((r for r in rows if r.kind == "prediction"), None)
    log.info("drift for %s (%s version %s vs %s): %d alert, %d warn into %s", d, name, version, ref_desc, len(by_status["alert"]), len(by_status["warn"]), dt)
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


# --------------------------------------------------------------------------- live performance


def performance(df: DataFrame, keys: list[str], p: str = "p", y: str = "y", calibration_bins: int = 10) -> list[dict]:
    """Per group of ``keys``: n, positives, base_rate, roc_auc, precision/lift in the top
    decile, brier, ece and calibration (JSON), for labelled rows ``(keys, p, y)``.

    Aggregated in Spark; only per-group (and per-group-and-bin) rows reach the driver."""
    df = df.select(*keys, F.col(p).cast("double").alias("p"), F.col(y).cast("double").alias("y")).persist()
    try:
        B = calibration_bins
        b = F.least(F.floor(F.col("p") * B), F.lit(B - 1)).cast("int")
        cal = (
            df.groupBy(*keys, b.alias("bin"))
            .agg(F.count(F.lit(1)).alias("n"), F.sum("y").alias("pos"), F.sum("p").alias("sp"), F.sum((F.col("p") - F.col("y")) ** 2).alias("se"))
            .collect()
        )
        # exact ROC AUC (Mann-Whitney): for each distinct probability, the negatives strictly
        # below it plus half the tied ones, weighted by its positives
        g = df.groupBy(*keys, "p").agg(F.sum("y").alias("pos"), F.sum(1 - F.col("y")).alias("neg"))
        w = Window.partitionBy(*keys).orderBy("p").rowsBetween(Window.unboundedPreceding, -1)
        g = g.withColumn("below", F.coalesce(F.sum("neg").over(w), F.lit(0.0)))
        auc = {tuple(r[k] for k in keys): r["u"] for r in g.groupBy(*keys).agg(F.sum(F.col("pos") * (F.col("below") + 0.5 * F.col("neg"))).alias("u")).collect()}
        # top decile: probability >= the group's 90th percentile (as lakeml.metrics.evaluate)
        q = df.groupBy(*keys).agg(F.percentile_approx("p", 0.9, 10000).alias("q90"))
        q = q.select(*[F.col(k).alias(f"_q_{k}") for k in keys], "q90")
        cond = [F.col(k).eqNullSafe(F.col(f"_q_{k}")) for k in keys]
        top_rows = df.join(F.broadcast(q), cond).where(F.col("p") >= F.col("q90")).groupBy(*keys).agg(F.avg("y").alias("rate")).collect()
        top = {tuple(r[k] for k in keys): r["rate"] for r in top_rows}
    finally:
        df.unpersist()
    groups: dict[tuple, list] = {}
    for r in cal:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    out = []
    for key, bins in sorted(groups.items(), key=lambda kv: tuple(str(v) for v in kv[0])):
        n = sum(r["n"] for r in bins)
        pos = sum(r["pos"] for r in bins)
        neg = n - pos
        base = pos / n if n else None
        ece = sum(abs(r["sp"] / r["n"] - r["pos"] / r["n"]) * r["n"] for r in bins) / n if n else None
        curve = [
            {"bin": r["bin"], "lo": r["bin"] / B, "hi": (r["bin"] + 1) / B, "n": r["n"], "mean_predicted": r["sp"] / r["n"], "observed": r["pos"] / r["n"]}
            for r in sorted(bins, key=lambda r: r["bin"])
        ]
        prec = top.get(key)
        out.append(
            {
                **dict(zip(keys, key, strict=True)),
                "n": int(n),
                "positives": int(pos),
                "base_rate": base,
                "roc_auc": (auc[key] / (pos * neg)) if pos and neg else None,
                "precision_top_decile": prec,
                "lift_top_decile": (prec / base) if prec is not None and base else None,
                "brier": sum(r["se"] for r in bins) / n if n else None,
                "ece": ece,
                "calibration": json.dumps(curve),
            }
        )
    return out


def run_performance(spark: SparkSession, env: EnvConfig, uc: UseCaseConfig) -> dict:
    """Live metrics of every score date whose labels are observed, into
    ``<db>.performance_metrics``; the score dates computed replace their rows."""
    preds = tables.read(spark, uc.table(uc.tables.predictions), made_by=SCORE_JOB)
    labels = tables.read(spark, uc.table(uc.tables.labels), made_by=features.FEATURES_JOB)
    entity, label = uc.features.entity, uc.label.column
    keys = ["score_date", "model_name", "model_version"] + (["model_alias"] if "model_alias" in preds.columns else [])
    joined = preds.select(entity, *keys, P1).join(
        labels.select(entity, F.col("as_of_date").alias("score_date"), F.col(label).alias("y")), [entity, "score_date"]
    ).where(F.col("y").isNotNull())
    rows = performance(joined, keys, P1, "y", uc.monitoring.calibration_bins)
    pt = uc.table(uc.tables.performance_metrics)
    dates = sorted({r["score_date"] for r in rows})
    if not rows:
        if not tables.exists(spark, pt):
            # created empty, so the table is there to query before ground truth arrives
            tables.ensure_database(spark, uc.database)
            empty = spark.createDataFrame([], PERF_SCHEMA).withColumn("computed_at", F.current_timestamp())
            empty.write.format("delta").saveAsTable(pt)
        log.info("no score date has observed labels yet; %s unchanged", pt)
        return {"score_dates": [], "table": pt, "latest": None}
    data = [tuple(r.get(f.name) for f in PERF_SCHEMA.fields) for r in rows]
    df = spark.createDataFrame(data, PERF_SCHEMA).withColumn("computed_at", F.current_timestamp())
    tables.ensure_database(spark, uc.database)
    tables.replace_where(df.coalesce(1), pt, tables.in_predicate("score_date", dates))
    # the newest date, the champion's row when several aliases were scored
    latest = max(rows, key=lambda r: (r["score_date"], r.get("model_alias") in (None, tracking.CHAMPION)))
    log.info("live performance for %d score dates (%s .. %s) into %s", len(dates), dates[0], dates[-1], pt)
    return {
        "score_dates": dates,
        "table": pt,
        "latest": {k: latest[k] for k in ("score_date", "model_version", "n", "base_rate", "roc_auc", "precision_top_decile", "ece")},
    }


# --------------------------------------------------------------------------- report


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
        last = spark.table(dt).orderBy(F.col("score_date").desc(), F.col("computed_at").desc()).select("score_date", "model_version").first()
        if last is not None:
            drift_rows = [
                r.asDict()
                for r in spark.table(dt).where((F.col("score_date") == F.lit(last.score_date)) & (F.col("model_version") == last.model_version)).collect()
            ]
    if drift_rows:
        d0 = drift_rows[0]
        title = f"{uc.name}: monitoring of {d0['score_date']} (model {d0['model_name']} version {d0['model_version']})"
        drift_rows.sort(key=lambda r: -(r["psi"] if r["psi"] is not None else -1))
        colors = {"ok": "tab:green", "warn": "tab:orange", "alert": "tab:red"}
        fig, ax = plt.subplots(figsize=(8, max(3, 0.3 * len(drift_rows) + 1)))
        rows_plot = drift_rows[::-1]
        ax.barh([r["feature"] for r in rows_plot], [r["psi"] or 0.0 for r in rows_plot], color=[colors[r["status"]] for r in rows_plot])
        ax.axvline(mon.psi_warn, color="tab:orange", ls="--", label=f"warn {mon.psi_warn}")
        ax.axvline(mon.psi_alert, color="tab:red", ls="--", label=f"alert {mon.psi_alert}")
        ax.set(xlabel="PSI", title=f"PSI per feature, {d0['score_date']}\nvs {d0['reference']}")
        ax.legend(loc="lower right")
        fig.tight_layout()
        fig.savefig(out / "psi.png", dpi=100)
        plt.close(fig)
        figs = ["<h2>Drift</h2>", f"<p>Reference: {html.escape(d0['reference'])}. Status: alert when PSI &ge; {mon.psi_alert}, "
                f"KS &ge; {mon.ks_alert} or JS &ge; {mon.js_alert}; warn when PSI &ge; {mon.psi_warn}.</p>", '<img src="psi.png" alt="PSI per feature">']

        pred = next((r for r in drift_rows if r["kind"] == "prediction"), None)
        if pred is not None:
            fig, ax = plt.subplots(figsize=(7, 4))
            _bars(ax, pred["bins"], pred["ref_counts"], pred["cur_counts"], f"{pred['feature']}: reference vs {d0['score_date']} (PSI {(pred['psi'] or 0):.3f})")
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
        figs.append(_table_html(drift_rows, ["feature", "kind", "status", "psi", "ks", "js", "chi2_p", "n_ref", "n_cur", "nulls_ref", "nulls_cur"]))
        sections += figs
    else:
        sections.append(f"<h2>Drift</h2><p>No drift computed yet ({html.escape(dt)}): run {MONITOR_JOB}.</p>")

    perf_rows = [r.asDict() for r in spark.table(pt).orderBy("score_date").collect()] if tables.exists(spark, pt) else []
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
        ax.set(xlabel="mean predicted probability", ylabel="observed churn rate", title=f"Calibration, {latest['score_date']} (ECE {latest['ece']:.3f})", xlim=(0, 1), ylim=(0, 1))
        ax.legend(loc="upper left")
        fig.tight_layout()
        fig.savefig(out / "calibration.png", dpi=100)
        plt.close(fig)
        sections += [
            "<h2>Live performance</h2>",
            '<img src="live_auc.png" alt="live ROC AUC"> <img src="calibration.png" alt="calibration">',
            _table_html(perf_rows, ["score_date", "model_version", "model_alias", "n", "positives", "base_rate", "roc_auc", "precision_top_decile", "lift_top_decile", "brier", "ece"]),
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
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as r:
        return log(r.info.run_id)


# --------------------------------------------------------------------------- the job


def report_dir(env: EnvConfig, score_date: date) -> Path:
    """``<data_dir>/reports/<score_date>`` (a temporary folder when data_dir is not local)."""
    if "://" in env.data_dir:
        return Path(tempfile.mkdtemp(prefix=f"lakeml-report-{score_date}-"))
    return Path(env.data_dir) / "reports" / str(score_date)


def run(spark: SparkSession, env: EnvConfig, uc: UseCaseConfig, score_date: date | None = None, alias: str = tracking.CHAMPION, to_mlflow: bool = True) -> dict:
    """Drift of ``score_date`` (default: the newest scored), live performance of every
    labelled score date, the report under ``<data_dir>/reports/<score_date>/`` and in MLflow."""
    d = score_date or newest_score_date(spark, uc, alias)
    dr = run_drift(spark, env, uc, d, alias)
    perf = run_performance(spark, env, uc)
    html_path = report(spark, env, uc, report_dir(env, d))
    summary = {"drift": dr, "performance": perf, "report": str(html_path), "mlflow_run_id": None}
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
    lines.append(f"== report: {summary['report']}" + (f" (MLflow run {summary['mlflow_run_id']})" if summary.get("mlflow_run_id") else ""))
    lines += [
        "",
        "  SELECT feature, kind, status, round(psi, 4) AS psi, round(ks, 4) AS ks FROM "
        f"{dr['table']} WHERE score_date = DATE'{dr['score_date']}' ORDER BY psi DESC;",
        f"  SELECT score_date, model_version, roc_auc, precision_top_decile, ece FROM {perf['table']} ORDER BY score_date;",
        "",
    ]
    return "\n".join(lines)
