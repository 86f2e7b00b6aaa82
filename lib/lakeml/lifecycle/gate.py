"""The validation gate: the challenger against the champion, promoted or refused, every
decision recorded (rollback and forced promotion by hand: ``lakeml.lifecycle.promote``).

``validate``: the challenger and the current champion are scored on the SAME holdout (the
newest labelled snapshot) and compared with the thresholds of ``validation`` in the use
case. The challenger is promoted (the ``champion`` alias moves to it) only if

  * its ROC AUC >= ``min_roc_auc`` and its top-decile lift >= ``min_lift_top_decile``, and
  * its ROC AUC - the champion's > -``max_auc_drop`` (with the default 0: strictly better).

The decision (promoted / refused / noop, both models' metrics, the reasons) is appended to
the ``model_decisions`` audit table and tagged on both MLflow model versions. Promotion
moves the alias and starts the watch of the replaced champion (alias ``previous``, rolled
back to by itself if the new one does worse live: ``lakeml.lifecycle.release``); refusal
leaves it. With ``scoring.canary.share > 0`` and a champion serving, a challenger that
passes does not move the alias: it starts a canary (decision ``canary`` / ``started``) and
its live performance decides later; a challenger in canary is not validated again (noop),
one whose canary ended is refused for good.
"""

from __future__ import annotations

import logging
from datetime import date

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakeml import features
from lakeml.core import tracking
from lakeml.core.config import EnvConfig, UseCaseConfig
from lakeml.lifecycle import canary, release
from lakeml.lifecycle.decisions import Decision, PromotionError, last_decision, record
from lakeml.ml import metrics

log = logging.getLogger(__name__)

P1 = "_p1"  # the positive-class probability while scoring the holdout


def holdout(spark: SparkSession, uc: UseCaseConfig) -> tuple[DataFrame, date]:
    """The newest labelled snapshot: what both models are judged on."""
    data = features.labelled_features(spark, uc)
    d = data.agg(F.max("as_of_date")).first()[0]
    if d is None:
        raise PromotionError(f"no labelled snapshot in {uc.table(uc.tables.labels)} to validate on: run jobs/features.py")
    return data.where(F.col("as_of_date") == F.lit(d)), d


def score_on(model, rows: DataFrame, uc: UseCaseConfig) -> dict[str, float]:
    scored = model.transform(rows).select(F.col(uc.label.column), metrics.positive_probability().alias(P1))
    clf = model.stages[-1]
    t = clf.getOrDefault("threshold") if clf.hasParam("threshold") and clf.isDefined("threshold") else 0.5
    return metrics.evaluate(scored, uc.label.column, P1, t)


def validate(spark: SparkSession, env: EnvConfig, uc: UseCaseConfig, trigger: str = "manual") -> Decision:
    """Compare challenger and champion on the same holdout; promote or refuse; record."""
    v = uc.validation
    client = tracking.configure(env)
    challenger = tracking.get_alias(client, uc.model.name, tracking.CHALLENGER)
    champion = tracking.get_alias(client, uc.model.name, tracking.CHAMPION)
    if challenger is None:
        raise PromotionError(f"{uc.model.name} has no challenger: train one first (jobs/train.py)")
    why = tracking.usable(client, uc.model.name, challenger.version)
    if why is not None:  # an orphan is never promoted, whatever points at it
        raise PromotionError(f"the challenger cannot be validated: {why}. Train a new one (jobs/train.py)")
    if champion is not None and champion.version == challenger.version:
        log.info("challenger %s is already the champion: nothing to validate", challenger.version)
        return _noop(spark, uc, challenger.version, champion.version,
                     "challenger is the champion (the first model of a name becomes champion)", trigger)
    state = tracking.version_tags(client, uc.model.name, challenger.version).get(canary.TAG)
    if state == canary.RUNNING and champion is not None:
        log.info("challenger %s is in canary: its live performance decides, not the gate", challenger.version)
        return _noop(spark, uc, challenger.version, champion.version,
                     "challenger is in canary: its live performance decides (lakeml.lifecycle.release)", trigger)
    if state == canary.ENDED:
        raise PromotionError(f"the canary of {uc.model.name} version {challenger.version} ended "
                             f"(see {uc.table(uc.tables.model_decisions)}): it is not validated again. Train a new one (jobs/train.py)")
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
        model_name=uc.model.name,
        action="validate",
        decision="promoted" if ok else "refused",
        challenger_version=challenger.version,
        champion_before=champion.version if champion else None,
        champion_after=challenger.version if ok else (champion.version if champion else None),
        holdout_date=hd,
        challenger_roc_auc=cm["roc_auc"],
        champion_roc_auc=km["roc_auc"] if km else None,
        challenger_lift=cm["lift_top_decile"],
        champion_lift=km["lift_top_decile"] if km else None,
        reasons=reasons,
        trigger=trigger,
        details={"challenger": cm, "champion": km, "rules": v.model_dump()},
    )
    prev = last_decision(spark, uc)
    if (not ok and prev is not None and prev.action == "validate" and prev.decision == "refused"
            and prev.challenger_version == challenger.version and prev.holdout_date == hd
            and prev.champion_before == d.champion_before):
        log.info("challenger %s was already refused on %s: not recorded again", challenger.version, hd)
        return d
    if ok and champion is not None and uc.scoring.canary.share > 0:
        d = release.start_canary(spark, client, uc, d)  # the champion keeps serving all but the share
    else:
        if ok:
            tracking.set_alias(client, uc.model.name, tracking.CHAMPION, challenger.version)
            release.start_watch(client, uc, champion.version if champion else None)
        record(spark, uc, d)
    tag = {"validation.decision": d.decision, "validation.holdout": str(hd), "validation.reasons": "; ".join(reasons)[:5000]}
    tracking.tag_version(client, challenger, {**tag, "validation.role": "challenger"})
    if champion is not None:
        tracking.tag_version(client, champion, {**tag, "validation.role": "champion", "validation.challenger": challenger.version})
    return d


def _noop(spark: SparkSession, uc: UseCaseConfig, challenger: str, champion: str, reason: str, trigger: str) -> Decision:
    """Nothing to validate: recorded once (not again while the last decision says the same)."""
    d = Decision(uc.model.name, "validate", "noop", challenger, champion, champion, reasons=[reason], trigger=trigger)
    prev = last_decision(spark, uc)
    already_recorded = (prev is not None and prev.action == "validate" and prev.decision == "noop"
                        and prev.challenger_version == challenger and prev.reasons == reason)
    if not already_recorded:
        record(spark, uc, d)
    return d
