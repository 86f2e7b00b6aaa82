"""Moving the champion by hand: ``rollback`` gives the alias back to the version the current
champion replaced (read from the audit table); ``force`` makes a given version the champion,
for a stated reason. Both are recorded in ``model_decisions`` and tagged on the versions.
The automatic rollback of a watched promotion calls ``rollback`` too
(``lakeml.lifecycle.release``); ending a canary by hand is ``release.end_canary``.
Neither moves the alias to an orphan version (``lakeml.core.tracking.orphan_reason``).
"""

from __future__ import annotations

from mlflow.exceptions import MlflowException
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakeml.core import tables, tracking
from lakeml.core.config import EnvConfig, UseCaseConfig
from lakeml.lifecycle import canary
from lakeml.lifecycle.decisions import Decision, PromotionError, record


def rollback(spark: SparkSession, env: EnvConfig, uc: UseCaseConfig, reason: str = "", trigger: str = "manual",
             evidence: dict | None = None) -> Decision:
    """Give the champion alias back to the version the current champion replaced.
    ``evidence``: further fields of the recorded decision (the automatic rollback's live
    ROC AUCs, dates and details: ``lakeml.lifecycle.release``)."""
    client = tracking.configure(env)
    champion = tracking.get_alias(client, uc.model.name, tracking.CHAMPION)
    if champion is None:
        raise PromotionError(f"{uc.model.name} has no champion to roll back")
    name = uc.table(uc.tables.model_decisions)
    prev = None
    if tables.exists(spark, name):
        prev = (
            tables.read(spark, name)
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
    why = tracking.usable(client, uc.model.name, target)
    if why is not None:  # an orphan is never chosen
        raise PromotionError(f"cannot roll back to version {target}: {why} (use jobs/promote.py --to VERSION --reason ...)")
    tracking.set_alias(client, uc.model.name, tracking.CHAMPION, target)
    d = Decision(uc.model.name, "rollback", "rolled_back", champion.version, champion.version, target,
                 reasons=[reason or f"rollback of {prev.decision} at {prev.decided_at}"], trigger=trigger, **(evidence or {}))
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
    except MlflowException as e:  # RESOURCE_DOES_NOT_EXIST
        raise PromotionError(f"{uc.model.name} has no version {version}") from e
    why = tracking.orphan_reason(client, mv)
    if why is not None:  # an orphan is never chosen, even by hand
        raise PromotionError(f"{uc.model.name} version {version} is an orphan ({why}): it cannot be the champion")
    champion = tracking.get_alias(client, uc.model.name, tracking.CHAMPION)
    tracking.set_alias(client, uc.model.name, tracking.CHAMPION, str(version))
    if (mv.tags or {}).get(canary.TAG) == canary.RUNNING:  # a canary made champion by hand is over
        tracking.tag_version(client, tracking.ModelRef(uc.model.name, str(version), mv.run_id), {canary.TAG: canary.PROMOTED})
    d = Decision(uc.model.name, "force", "forced", str(version), champion.version if champion else None, str(version),
                 reasons=[reason], trigger="manual")
    record(spark, uc, d)
    tracking.tag_version(client, tracking.ModelRef(uc.model.name, str(version), mv.run_id), {"forced_champion": reason[:5000]})
    return d
