"""The audit trail of the model lifecycle: one row per decision in ``model_decisions``.

Every validation (promoted / refused / noop), rollback, forced promotion and retraining
policy run appends a ``Decision``; nothing is ever updated or deleted.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakeml.core import tables
from lakeml.core.config import UseCaseConfig
from lakeml.core.errors import LakemlError

log = logging.getLogger(__name__)

DECISION_SCHEMA = (
    "decided_at timestamp, model_name string, action string, decision string, "
    "challenger_version string, champion_before string, champion_after string, "
    "holdout_date date, challenger_roc_auc double, champion_roc_auc double, "
    "challenger_lift double, champion_lift double, reasons string, trigger string, details string"
)


@dataclass
class Decision:
    model_name: str
    action: str  # policy | train | validate | rollback | force
    decision: str  # retrain | hold | rejected | promoted | refused | noop | rolled_back | forced
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


class PromotionError(LakemlError):
    """A validation, promotion or rollback that cannot be done; the message says why."""


def record(spark: SparkSession, uc: UseCaseConfig, d: Decision) -> None:
    """Append one decision to the audit table (created on first use)."""
    row = asdict(d)
    row["reasons"] = "; ".join(d.reasons)
    row["details"] = json.dumps(d.details, default=str, sort_keys=True)
    cols = [c.split()[0] for c in DECISION_SCHEMA.split(", ")]
    df = spark.createDataFrame([tuple(row[c] for c in cols)], DECISION_SCHEMA)
    name = uc.table(uc.tables.model_decisions)
    tables.ensure_database(spark, uc.database)
    tables.append(df, name)
    log.info("decision %s: %s (challenger %s, champion %s -> %s) %s", d.action, d.decision, d.challenger_version,
             d.champion_before, d.champion_after, "; ".join(d.reasons))


def last_decision(spark: SparkSession, uc: UseCaseConfig):
    name = uc.table(uc.tables.model_decisions)
    if not tables.exists(spark, name):
        return None
    return tables.read(spark, name).orderBy(F.col("decided_at").desc()).first()
