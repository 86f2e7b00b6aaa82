"""The retraining policy: decides, from the monitoring tables, whether the scheduled
pipeline retrains. Rules in ``retraining`` of the use case (see RetrainingSpec).

Only evidence about the CURRENT champion counts (its drift rows, its live performance), so
a retrained and promoted model starts with a clean slate instead of being retrained again
on the drift that replaced its predecessor. While a canary runs the policy holds: its
verdict comes first (``lakeml.lifecycle.release``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakeml.core import tables, tracking
from lakeml.core.config import EnvConfig, UseCaseConfig
from lakeml.lifecycle import canary

log = logging.getLogger(__name__)


@dataclass
class PolicyDecision:
    retrain: bool
    reasons: list[str]
    champion_version: str | None
    score_date: date | None
    evidence: dict = field(default_factory=dict)


def decide(spark: SparkSession, env: EnvConfig, uc: UseCaseConfig, score_date: date | None = None) -> PolicyDecision:
    r = uc.retraining
    client = tracking.configure(env)
    champion = tracking.get_alias(client, uc.model.name, tracking.CHAMPION)
    if champion is None:
        return PolicyDecision(True, [f"{uc.model.name} has no champion yet"], None, score_date)
    c = canary.running(client, uc)
    if c is not None:  # a retrain would take the challenger alias and lose the canary's evidence
        why = f"the canary of version {c.version} is running: retraining waits for its verdict (lakeml.lifecycle.release)"
        log.info("retraining policy: hold (%s)", why)
        return PolicyDecision(False, [why], champion.version, score_date, {"canary_version": c.version})
    reasons: list[str] = []
    evidence: dict = {}

    dt = uc.table(uc.tables.drift_metrics)
    if tables.exists(spark, dt):
        rows = tables.read(spark, dt).where(F.col("model_version") == champion.version)
        if score_date is not None:
            rows = rows.where(F.col("score_date") <= F.lit(score_date))
        watched = F.lit(True)
        if r.features:
            watched = F.col("feature").isin(r.features)
        if r.include_prediction_drift:
            watched = watched | (F.col("kind") == "prediction")
        else:
            watched = watched & (F.col("kind") != "prediction")
        per_date = (
            rows.where(watched)
            .groupBy("score_date")
            .agg(
                F.max("psi").alias("max_psi"),
                F.sort_array(F.collect_set(F.when(F.col("psi") >= r.psi_threshold, F.col("feature")))).alias("drifted"),
            )
            .orderBy(F.col("score_date").desc())
            .limit(r.of_last)
            .collect()
        )
        drifted_dates = [x for x in per_date if x.drifted]
        evidence["drift"] = [{"score_date": str(x.score_date), "max_psi": x.max_psi, "drifted": list(x.drifted)} for x in per_date]
        if len(drifted_dates) >= r.drift_batches:
            feats = sorted({f for x in drifted_dates for f in x.drifted})
            reasons.append(
                f"drift: PSI >= {r.psi_threshold} in {len(drifted_dates)} of the last {len(per_date)} scored batches "
                f"(rule: {r.drift_batches} of {r.of_last}) on {', '.join(feats)}"
            )

    pt = uc.table(uc.tables.performance_metrics)
    if tables.exists(spark, pt):
        perf = tables.read(spark, pt).where((F.col("model_version") == champion.version) & F.col("roc_auc").isNotNull())
        if "model_alias" in perf.columns:
            perf = perf.where(F.coalesce(F.col("model_alias"), F.lit(tracking.CHAMPION)) == tracking.CHAMPION)
        newest = perf.orderBy(F.col("score_date").desc()).first()
        if newest is not None:
            evidence["live"] = {"score_date": str(newest.score_date), "roc_auc": newest.roc_auc}
            if newest.roc_auc < r.min_live_auc:
                reasons.append(f"live ROC AUC {newest.roc_auc:.4f} on {newest.score_date} < min_live_auc {r.min_live_auc}")
    d = PolicyDecision(bool(reasons), reasons or ["no rule fired"], champion.version, score_date, evidence)
    log.info("retraining policy: %s (%s)", "RETRAIN" if d.retrain else "hold", "; ".join(d.reasons))
    return d
