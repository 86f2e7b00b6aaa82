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
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import date

import numpy as np
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lakeml import features
from lakeml.core import tables, tracking
from lakeml.core.config import EnvConfig, UseCaseConfig
from lakeml.core.errors import MissingDataError
from lakeml.ml import metrics
from lakeml.monitor.stats import STATUS_ORDER, chi2_p, js_distance, ks_binned, psi, status

log = logging.getLogger(__name__)

NULL_BIN = "null"

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


@dataclass
class Profile:
    """What drift needs of the reference, computed once per model version and stored
    (``lakeml.monitor.reference``): the bin edges of every numeric feature and of the
    probability, and the reference's count in every bin and category."""

    kinds: dict[str, str]  # feature -> numeric | categorical | prediction
    fine: dict[str, list[float]]  # KS bins (numeric features)
    coarse: dict[str, list[float]]  # PSI / JS / chi-square bins (numeric features)
    counts: dict[tuple[str, str | None], int]  # (feature, bin key or category; None: nulls) -> rows
    description: str = ""

    @property
    def numeric(self) -> list[str]:
        return [c for c, k in self.kinds.items() if k != "categorical"]

    @property
    def categorical(self) -> list[str]:
        return [c for c, k in self.kinds.items() if k == "categorical"]


def _prepared(df: DataFrame, kinds: dict[str, str], prob: str | None) -> DataFrame:
    """Numbers as doubles (NaN as null), categories as strings; the probability column
    ``prob`` of ``df`` under the name the profile gives it."""
    cols = []
    for c, kind in kinds.items():
        src = prob if kind == "prediction" else c
        if kind == "categorical":
            cols.append(F.col(src).cast("string").alias(c))
        else:
            x = F.col(src).cast("double")
            cols.append(F.when(F.isnan(x), F.lit(None)).otherwise(x).alias(c))
    return df.select(*cols)


def _counts(df: DataFrame, prof_fine: dict[str, list[float]], numeric: list[str], categorical: list[str]) -> dict[tuple[str, str | None], int]:
    """(feature, bin key) -> rows, in ONE aggregation over all features."""
    df, idx = _bucketed(df, {c: prof_fine[c] for c in numeric})
    cells = [F.struct(F.lit(c).alias("feature"), idx[c].cast("string").alias("key")) for c in numeric]
    cells += [F.struct(F.lit(c).alias("feature"), F.col(c).alias("key")) for c in categorical]
    if not cells:
        return {}
    rows = df.select(F.inline(F.array(*cells))).groupBy("feature", "key").count().collect()
    return {(r["feature"], r["key"]): int(r["count"]) for r in rows}


def profile(
    uc: UseCaseConfig,
    reference_df: DataFrame,
    features_numeric: list[str],
    features_categorical: list[str],
    prob_ref: str | None = None,
    prob_name: str | None = None,
    description: str = "",
) -> Profile:
    """The reference side of drift: quantile edges (``approxQuantile``) and counts, from
    ``reference_df``. ``prob_ref`` is its probability column, named ``prob_name`` (default
    the same) in the profile."""
    mon = uc.monitoring
    pred = (prob_name or prob_ref) if prob_ref is not None else None
    if pred is not None and (pred in features_numeric or pred in features_categorical):
        raise ValueError(f"the probability column {pred!r} is also listed as a feature")
    kinds = {**{c: "numeric" for c in features_numeric}, **{c: "categorical" for c in features_categorical}}
    if pred:
        kinds[pred] = "prediction"
    numeric = [c for c, k in kinds.items() if k != "categorical"]
    ref = _prepared(reference_df, kinds, prob_ref).persist()
    try:
        coarse_p, all_p = _quantile_probs(mon.bins, mon.ks_bins)
        quantiles = ref.approxQuantile(numeric, all_p, mon.quantile_error) if numeric else []
        fine: dict[str, list[float]] = {}
        coarse: dict[str, list[float]] = {}
        for c, q in zip(numeric, quantiles, strict=True):
            by_p = dict(zip(all_p, q, strict=False))
            fine[c] = _edges(q)
            coarse[c] = _edges([by_p[p] for p in coarse_p if p in by_p])
        counts = _counts(ref, fine, numeric, list(features_categorical))
    finally:
        ref.unpersist()
    return Profile(kinds, fine, coarse, counts, description)


def compare(spark: SparkSession, uc: UseCaseConfig, prof: Profile, current_df: DataFrame, prob_cur: str | None = None) -> DataFrame:
    """Drift of ``current_df`` against a reference profile: one row per feature (and the
    ``prediction`` row when the profile has one; ``prob_cur`` is the probability column of
    ``current_df``): psi, ks, js, chi2_p, counts and status. See the module docstring."""
    mon = uc.monitoring
    numeric, categorical = prof.numeric, prof.categorical
    cur = _prepared(current_df, prof.kinds, prob_cur or next((c for c, k in prof.kinds.items() if k == "prediction"), None))
    cr, cc = prof.counts, _counts(cur, prof.fine, numeric, categorical)
    fine, coarse = prof.fine, prof.coarse
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
        out.append(_row(c, prof.kinds[c], mon, _bin_labels(coarse[c]), coarse[c], [*rc, nr], [*ccn, nc], nr, nc, ks_binned(rf, cf)))
    for c in categorical:
        values = {key for (f, key) in cr if f == c and key is not None} | {key for (f, key) in cc if f == c and key is not None}
        order = sorted(values, key=lambda v: (-cr.get((c, v), 0), v))
        nr, nc = cr.get((c, None), 0), cc.get((c, None), 0)
        rc = [cr.get((c, v), 0) for v in order] + [nr]
        ccn = [cc.get((c, v), 0) for v in order] + [nc]
        out.append(_row(c, "categorical", mon, [*order, NULL_BIN], None, rc, ccn, nr, nc, None))
    return spark.createDataFrame(out, DRIFT_SCHEMA)


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
    prof = profile(uc, reference_df, features_numeric, features_categorical, prob_ref, prob_cur or prob_ref)
    return compare(spark, uc, prof, current_df, prob_cur or prob_ref)


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
            raise MissingDataError(f"{name} version {version}: its run logs no test_as_of; set monitoring.reference: training in {uc.source_file}")
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
        raise MissingDataError(f"{name} version {version}: its MLflow run logs neither train_from/train_to nor test_as_of; no reference")
    if rows.isEmpty():
        raise MissingDataError(f"no labelled feature rows for the reference of {name} version {version} ({desc}) in {uc.table(uc.tables.features)}")
    return rows, desc


def _predictions(spark: SparkSession, uc: UseCaseConfig, alias: str | None) -> DataFrame:
    preds = tables.read(spark, uc.table(uc.tables.predictions), made_by=tables.SCORE_JOB)
    if alias is not None and "model_alias" in preds.columns:
        preds = preds.where(F.col("model_alias") == alias)
    return preds


def newest_score_date(spark: SparkSession, uc: UseCaseConfig, alias: str | None = tracking.CHAMPION) -> date:
    d = _predictions(spark, uc, alias).agg(F.max("score_date")).first()[0]
    if d is None:
        raise MissingDataError(f"{uc.table(uc.tables.predictions)} has no predictions{f' of alias {alias}' if alias else ''}. Run {tables.SCORE_JOB}.")
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
    from lakeml.monitor import reference

    prof = reference.load(spark, uc, name, version)
    if prof is None:  # the first time this version is monitored: read and score its training rows once
        client = tracking.configure(env)
        ref_rows, ref_desc = reference_rows(spark, client, uc, name, version)
        model = tracking.mlflow.spark.load_model(f"models:/{name}/{version}")
        ref_scored = model.transform(ref_rows.select(*cols, "as_of_date")).select(*cols, metrics.positive_probability().alias(p1))
        prof = profile(uc, ref_scored, uc.model.numeric, uc.model.categorical, prob_ref=p1, description=ref_desc)
        reference.save(spark, uc, name, version, prof)
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
