"""Drift statistics in Spark: the reference side (``profile``: bin edges and counts of the
rows a model was trained on, a :class:`~lakeml.monitor.profile.Profile`) and the drift of
current rows against it (``compare``; ``drift`` does both). Every statistic comes from
counts aggregated in Spark (one aggregation per side for all features); only the count
tables reach the driver. Which rows are the reference and where the results are stored is
the monitor job's (``lakeml.monitor.job``).

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

import math

import numpy as np
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lakeml.core.config import UseCaseConfig
from lakeml.monitor.profile import Profile
from lakeml.monitor.stats import chi2_p, js_distance, ks_binned, psi, status

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


def _counts(
    df: DataFrame, prof_fine: dict[str, list[float]], numeric: list[str], categorical: list[str]
) -> dict[tuple[str, str | None], int]:
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
    """One row of ``DRIFT_SCHEMA``, built by column name (so the schema's order decides)."""
    p, j = psi(rc, cc), js_distance(rc, cc)
    values = {
        "feature": feature,
        "kind": kind,
        "status": status(kind, p, ks_v, j, mon),
        "psi": p,
        "ks": ks_v,
        "js": j,
        "chi2_p": chi2_p(rc, cc),
        "n_ref": int(sum(rc)),
        "n_cur": int(sum(cc)),
        "nulls_ref": int(nulls_r),
        "nulls_cur": int(nulls_c),
        "bins": list(labels),
        "edges": None if edges is None else [float(e) for e in edges],
        "ref_counts": [int(v) for v in rc],
        "cur_counts": [int(v) for v in cc],
    }
    if values.keys() != set(DRIFT_SCHEMA.fieldNames()):
        raise ValueError(f"a drift row has {sorted(values)}, DRIFT_SCHEMA {sorted(DRIFT_SCHEMA.fieldNames())}")
    return tuple(values[name] for name in DRIFT_SCHEMA.fieldNames())
