"""The drift reference of each model version, computed once and stored.

The reference is the labelled rows a model version was trained on (or its test snapshot),
scored again by that version: quantile edges and bin counts of every feature and of the
probability (``lakeml.monitor.drift.profile``). It does not change after training, so it is
computed the first time a version is monitored and kept in ``<db>.drift_reference``, one row
per (model, version, feature); every later day reads it instead of re-reading and re-scoring
the history. A change of the monitoring conf that decides the bins (``bins``, ``ks_bins``,
``quantile_error``, ``reference``) computes it again.
"""

from __future__ import annotations

import hashlib
import json
import logging

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakeml.core import tables
from lakeml.core.config import UseCaseConfig
from lakeml.monitor.drift import Profile

log = logging.getLogger(__name__)

SCHEMA = (
    "model_name string, model_version string, settings string, reference string, feature string, kind string, "
    "fine_edges array<double>, coarse_edges array<double>, bin_keys array<string>, bin_counts array<bigint>"
)


def settings(uc: UseCaseConfig) -> str:
    """What in conf decides the reference's bins, as a short hash."""
    m = uc.monitoring
    key = {"bins": m.bins, "ks_bins": m.ks_bins, "quantile_error": m.quantile_error, "reference": m.reference,
           "numeric": uc.model.numeric, "categorical": uc.model.categorical}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


def load(spark: SparkSession, uc: UseCaseConfig, name: str, version: str) -> Profile | None:
    """The stored reference of a model version, or None."""
    t = uc.table(uc.tables.drift_reference)
    if not tables.exists(spark, t):
        return None
    rows = (
        spark.table(t)
        .where((F.col("model_name") == name) & (F.col("model_version") == str(version)) & (F.col("settings") == settings(uc)))
        .collect()
    )
    if not rows:
        return None
    kinds, fine, coarse, counts = {}, {}, {}, {}
    for r in sorted(rows, key=lambda r: ({"numeric": 0, "categorical": 1, "prediction": 2}[r.kind], r.feature)):
        kinds[r.feature] = r.kind
        if r.kind != "categorical":
            fine[r.feature], coarse[r.feature] = list(r.fine_edges), list(r.coarse_edges)
        counts.update({(r.feature, k): int(n) for k, n in zip(r.bin_keys, r.bin_counts, strict=True)})
    # the order drift reports in: numeric features as conf lists them, categorical, then the probability
    order = [c for c in uc.model.numeric if c in kinds] + [c for c in uc.model.categorical if c in kinds]
    order += [c for c, k in kinds.items() if k == "prediction"]
    return Profile({c: kinds[c] for c in order}, fine, coarse, counts, rows[0].reference)


def save(spark: SparkSession, uc: UseCaseConfig, name: str, version: str, prof: Profile) -> None:
    """Store a version's reference (replacing an earlier one of the same version)."""
    rows = []
    for c, kind in prof.kinds.items():
        keys = [k for (f, k) in prof.counts if f == c]
        rows.append((name, str(version), settings(uc), prof.description, c, kind, prof.fine.get(c), prof.coarse.get(c),
                     keys, [prof.counts[(c, k)] for k in keys]))
    df = spark.createDataFrame(rows, SCHEMA).withColumn("computed_at", F.current_timestamp())
    tables.ensure_database(spark, uc.database)
    pred = f"model_name = {tables.sql_literal(name)} AND model_version = {tables.sql_literal(str(version))}"
    tables.replace_where(df.coalesce(1), uc.table(uc.tables.drift_reference), pred)
    log.info("drift reference of %s version %s stored (%d features)", name, version, len(rows))
