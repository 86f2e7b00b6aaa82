"""The validation gate, promotion and rollback: every decision recorded.

validate: the challenger and the current champion are scored on the SAME holdout (the
newest labelled snapshot) and compared with the thresholds of ``validation`` in the use
case. The challenger is promoted (the ``champion`` alias moves to it) only if

  * its ROC AUC >= ``min_roc_auc`` and its top-decile lift >= ``min_lift_top_decile``, and
  * its ROC AUC - the champion's > -``max_auc_drop`` (with the default 0: strictly better).

The decision (promoted / refused / noop, both models' metrics, the reasons) is appended to
the ``model_decisions`` audit table and tagged on both MLflow model versions. Promotion
moves the alias; refusal leaves it.

promote: ``rollback`` restores the champion the current one replaced (read from the audit
table); ``force`` moves the champion to a given version with a reason. Both are recorded.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakeml import features, metrics, tables, tracking
from lakeml.config import EnvConfig, UseCaseConfig, UserFacingError

log = logging.getLogger(__name__)

P = "p_churn"

DECISION_SCHEMA = (
    "decided_at timestamp, model_name string, action string, decision string, "
    "challenger_version string, champion_before string, champion_after string, "
    "holdout_date date, challenger_roc_auc double, champion_roc_auc double, "
    "challenger_lift double, champion_lift double, reasons string, trigger string, details string"
)


@dataclass
class Decision:
    model_name: str
    action: str  # validate | rollback | force
    decision: str  # promoted | refused | noop | rolled_back | forced
    challenger_version: str | None
    champion_before: str | None
    champion_after: str | None
    holdout_date: date | None = None
    challenger_roc_auc: float | None = None
    champion_roc_auc: float | None = None
    challenger_lift: float | None = None
    champion_lift: float | None = None
    reasons: list[str] = field(default_factory=list)
    trigger: str = "manual"
    details: dict = field(default_factory=dict)
    decided_at: datetime = field(default_factory=lambda: datetime.now(UTC).replace(tzinfo=None))


class PromotionError(UserFacingError):
    """A promotion or rollback that cannot be done; the message says why."""


def record(spark: SparkSession, uc: UseCaseConfig, d: Decision) -> None:
    """Append one decision to the audit table (created on first use)."""
    row = asdict(d)
    row["reasons"] = "; ".join(d.reasons)
    row["details"] = json.dumps(d.details, default=str, sort_keys=True)
    cols = [c.split()[0] for c in DECISION_SCHEMA.split(", ")]
    df = spark.createDataFrame([tuple(row[c] for c in cols)], DECISION_SCHEMA)
    name = uc.table(uc.tables.model_decisions)
    tables.ensure_database(spark, uc.database)
    df.write.format("delta").mode("append").saveAsTable(name)
    log.info("decision %s: %s (challenger %s, champion %s -> %s) %s", d.action, d.decision, d.challenger_version,
             d.champion_before, d.champion_after, "; ".join(d.reasons))


def holdout(spark: SparkSession, uc: UseCaseConfig) -> tuple[DataFrame, date]:
    """The newest labelled snapshot: what both models are judged on."""
    data = features.labelled_features(spark, uc)
    d = data.agg(F.max("as_of_date")).first()[0]
    if d is None:
        raise PromotionError(f"no labelled snapshot in {uc.table(uc.tables.labels)} to validate on: run jobs/features.py")
    return data.where(F.col("as_of_date") == F.lit(d)), d


def score_on(model, rows: DataFrame, uc: UseCaseConfig) -> dict[str, float]:
    scored = model.transform(rows).select(F.col(uc.label.column), metrics.positive_probability().alias(P))
    clf = model.stages[-1]
    t = clf.getOrDefault("threshold") if clf.hasParam("threshold") and clf.isDefined("threshold") else 0.5
    return metrics.evaluate(scored, uc.label.column, P, t)


def _last_decision(spark: SparkSession, uc: UseCaseConfig):
    name = uc.table(uc.tables.model_decisions)
    if not tables.exists(spark, name):
        return None
    return spark.table(name).orderBy(F.col("decided_at").desc()).first()


def validate(spark: SparkSession, env: EnvConfig, uc: UseCaseConfig, trigger: str = "manual") -> Decision:
    """Compare challenger and champion on the same holdout; promote or refuse; record."""
    v = uc.validation
    client = tracking.configure(env)
    challenger = tracking.get_alias(client, uc.model.name, tracking.CHALLENGER)
    champion = tracking.get_alias(client, uc.model.name, tracking.CHAMPION)
    if challenger is None:
        raise PromotionError(f"{uc.model.name} has no challenger: train one first (jobs/train.py)")
    if champion is not None and champion.version == challenger.version:
        log.info("challenger %s is already the champion: nothing to validate", challenger.version)
        d = Decision(uc.model.name, "validate", "noop", challenger.version, champion.version, champion.version,
                     reasons=["challenger is the champion (the first model of a name becomes champion)"], trigger=trigger)
        prev = _last_decision(spark, uc)
        if not (prev is not None and prev.action == "validate" and prev.decision == "noop" and prev.challenger_version == challenger.version):
            record(spark, uc, d)
        return d
    rows, hd = holdout(spark, uc)
    rows = rows.persist()
    try:
        c_model, _ = tracking.load_spark_model(client, uc.model.name, tracking.CHALLENGER)
        cm = score_on(c_model, rows, uc)
        km = None
        if champion is not None:
            k_model, _ = tracking.load_spark_model(client, uc.model.name, tracking.CHAMPION)
            km = score_on(k_model, rows, uc)
    finally:
        rows.unpersist()
    reasons, ok = [], True
    if cm["roc_auc"] < v.min_roc_auc:
        ok = False
        reasons.append(f"challenger ROC AUC {cm['roc_auc']:.4f} < min_roc_auc {v.min_roc_auc}")
    if cm["lift_top_decile"] < v.min_lift_top_decile:
        ok = False
        reasons.append(f"challenger top-decile lift {cm['lift_top_decile']:.3f} < min_lift_top_decile {v.min_lift_top_decile}")
    if km is not None:
        delta = cm["roc_auc"] - km["roc_auc"]
        if not delta > -v.max_auc_drop:
            ok = False
            rule = "is not better than" if v.max_auc_drop == 0 else f"is more than max_auc_drop {v.max_auc_drop} below"
            reasons.append(f"challenger ROC AUC {cm['roc_auc']:.4f} {rule} the champion's {km['roc_auc']:.4f} (delta {delta:+.4f})")
        else:
            reasons.append(f"challenger ROC AUC {cm['roc_auc']:.4f} vs champion {km['roc_auc']:.4f} (delta {delta:+.4f})")
    d = Decision(
        uc.model.name, "validate", "promoted" if ok else "refused", challenger.version,
        champion.version if champion else None, challenger.version if ok else (champion.version if champion else None),
        hd, cm["roc_auc"], km["roc_auc"] if km else None, cm["lift_top_decile"], km["lift_top_decile"] if km else None,
        reasons, trigger, {"challenger": cm, "champion": km, "rules": v.model_dump()},
    )
    prev = _last_decision(spark, uc)
    if (not ok and prev is not None and prev.action == "validate" and prev.decision == "refused"
            and prev.challenger_version == challenger.version and prev.holdout_date == hd
            and prev.champion_before == d.champion_before):
        log.info("challenger %s was already refused on %s: not recorded again", challenger.version, hd)
        return d
    if ok:
        tracking.set_alias(client, uc.model.name, tracking.CHAMPION, challenger.version)
    record(spark, uc, d)
    tag = {"validation.decision": d.decision, "validation.holdout": str(hd), "validation.reasons": "; ".join(reasons)[:5000]}
    tracking.tag_version(client, challenger, {**tag, "validation.role": "challenger"})
    if champion is not None:
        tracking.tag_version(client, champion, {**tag, "validation.role": "champion", "validation.challenger": challenger.version})
    return d


def rollback(spark: SparkSession, env: EnvConfig, uc: UseCaseConfig, reason: str = "", trigger: str = "manual") -> Decision:
    """Give the champion alias back to the version the current champion replaced."""
    client = tracking.configure(env)
    champion = tracking.get_alias(client, uc.model.name, tracking.CHAMPION)
    if champion is None:
        raise PromotionError(f"{uc.model.name} has no champion to roll back")
    name = uc.table(uc.tables.model_decisions)
    prev = None
    if tables.exists(spark, name):
        prev = (
            spark.table(name)
            .where((F.col("model_name") == uc.model.name) & (F.col("champion_after") == champion.version)
                   & F.col("decision").isin("promoted", "forced", "rolled_back")
                   & F.col("champion_before").isNotNull() & (F.col("champion_before") != champion.version))
            .orderBy(F.col("decided_at").desc())
            .first()
        )
    if prev is None:
        raise PromotionError(
            f"no earlier champion of {uc.model.name} recorded in {name} for version {champion.version}: "
            "nothing to roll back to (use jobs/promote.py --to VERSION --reason ...)"
        )
    target = prev.champion_before
    tracking.set_alias(client, uc.model.name, tracking.CHAMPION, target)
    d = Decision(uc.model.name, "rollback", "rolled_back", champion.version, champion.version, target,
                 reasons=[reason or f"rollback of {prev.decision} at {prev.decided_at}"], trigger=trigger)
    record(spark, uc, d)
    tracking.tag_version(client, tracking.ModelRef(uc.model.name, champion.version, champion.run_id), {"rolled_back_to": target})
    return d


def force(spark: SparkSession, env: EnvConfig, uc: UseCaseConfig, version: str, reason: str) -> Decision:
    """Make ``version`` the champion, for a stated reason."""
    if not reason.strip():
        raise PromotionError("--to needs --reason: every forced promotion is recorded with why")
    client = tracking.configure(env)
    try:
        mv = client.get_model_version(uc.model.name, str(version))
    except Exception as e:  # MlflowException: RESOURCE_DOES_NOT_EXIST
        raise PromotionError(f"{uc.model.name} has no version {version}") from e
    champion = tracking.get_alias(client, uc.model.name, tracking.CHAMPION)
    tracking.set_alias(client, uc.model.name, tracking.CHAMPION, str(version))
    d = Decision(uc.model.name, "force", "forced", str(version), champion.version if champion else None, str(version),
                 reasons=[reason], trigger="manual")
    record(spark, uc, d)
    tracking.tag_version(client, tracking.ModelRef(uc.model.name, str(version), mv.run_id), {"forced_champion": reason[:5000]})
    return d
