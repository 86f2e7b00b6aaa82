"""The scheduled pipeline over drifting data, day after day, in the test session.

The generator shifts behaviour from DRIFT_START on (usage minutes x(1 + strength), more
invoice payers, higher hazard). Batches arrive in chunks; after each chunk the scheduled
pipeline runs as a scheduler would call it. The monitor must flag the drift, the policy
must fire, and the retrained model may take the champion alias only if it beats the
champion on the same holdout; every trigger and decision is in the audit table.
"""

import os
from datetime import date, timedelta
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from conftest import TINY
from lakeml import pipeline
from lakeml.core import tracking
from lakeml.demo import maker

pytestmark = pytest.mark.e2e

# each run scores its newest batch date: day 180 (before the drift), 195 and 210 (after it)
DRIFT_START = TINY.start_date + timedelta(days=180)
CHUNKS = [180, 195, 210]  # the landing zone holds batches up to start + these days


@pytest.fixture(scope="module")
def world(spark, env, uc, tmp_path_factory):
    root = tmp_path_factory.mktemp("lifecycle")
    upstream, landing = root / "upstream", root / "landing"
    spec = TINY.model_copy(update={"days": max(CHUNKS) + 1, "drift_start": DRIFT_START, "drift_strength": 1.5})
    maker.run(spark, uc, str(upstream), spec)
    lenv = env.model_copy(update={"storage": env.storage.model_copy(update={"landing": str(landing)})})
    landing = Path(lenv.landing_zone(uc.name))
    # the first champion learns from two small snapshots: a lower floor than the demo's
    luc = uc.model_copy(update={"database": "lifecycle", "model": uc.model.model_copy(update={"name": "churn_lifecycle", "auc_floor": 0.6})})
    return {"upstream": upstream, "landing": landing, "env": lenv, "uc": luc, "runs": []}


def _arrive(world, upto_day: int) -> None:
    """Move the batches up to start + upto_day from upstream into the landing zone."""
    world["landing"].mkdir(parents=True, exist_ok=True)
    last = TINY.start_date + timedelta(days=upto_day)
    for d in sorted(os.listdir(world["upstream"])):
        if len(d) == 10 and d[4] == "-" and date.fromisoformat(d) <= last:
            os.rename(world["upstream"] / d, world["landing"] / d)


@pytest.fixture(scope="module")
def scheduled_runs(spark, world):
    for day in CHUNKS:
        _arrive(world, day)
        world["runs"].append(pipeline.run_scheduled(spark, world["env"], world["uc"]))
    return world["runs"]


def test_first_run_trains_the_first_champion(scheduled_runs):
    first = scheduled_runs[0]
    assert first["stages"]["policy"]["result"]["retrain"] is True
    assert first["stages"]["train"]["result"]["version"] == "1"
    assert first["champion_version"] == "1"
    assert first["stages"]["score"]["result"]["rows"] > 0


def test_the_monitor_flags_the_drift(spark, world, scheduled_runs):
    uc = world["uc"]
    dm = spark.table(uc.table(uc.tables.drift_metrics))
    after = dm.where(F.col("score_date") >= F.lit(DRIFT_START + timedelta(days=7)))
    alerts = {r.feature for r in after.where("status = 'alert'").select("feature").collect()}
    assert {"minutes_7d", "minutes_30d"} <= alerts, alerts
    # features use events strictly before as_of_date: a batch scored on DRIFT_START is clean
    before = dm.where(F.col("score_date") <= F.lit(DRIFT_START)).where("feature IN ('minutes_7d', 'minutes_30d')")
    assert before.count() == 2 and before.where("status = 'alert'").count() == 0


def test_the_policy_fires_and_every_decision_is_recorded(spark, world, scheduled_runs):
    uc = world["uc"]
    fired = [r for r in scheduled_runs[1:] if r["stages"]["policy"]["result"]["retrain"]]
    assert fired, [r["stages"]["policy"]["result"]["reasons"] for r in scheduled_runs]
    assert any("drift" in reason for r in fired for reason in r["stages"]["policy"]["result"]["reasons"])
    audit = spark.table(uc.table(uc.tables.model_decisions)).orderBy("decided_at").collect()
    assert [a.action for a in audit if a.action == "policy"] == ["policy"] * len(scheduled_runs)
    validations = [a for a in audit if a.action == "validate" and a.decision in ("promoted", "refused")]
    for r in fired:
        dec = r["stages"]["validate"]["result"]
        assert dec["decision"] in ("promoted", "refused"), dec
        assert any(a.challenger_version == dec["challenger_version"] and a.decision == dec["decision"] for a in validations)
    for v in validations:
        assert v.trigger.startswith("policy: drift") or v.trigger.startswith("policy: live")
        assert v.challenger_roc_auc is not None and v.champion_roc_auc is not None


def test_the_champion_moves_only_to_a_better_model(spark, env, world, scheduled_runs):
    uc = world["uc"]
    client = tracking.configure(env)
    audit = spark.table(uc.table(uc.tables.model_decisions)).where("action = 'validate'").orderBy("decided_at").collect()
    champion = "1"
    for a in audit:
        if a.decision == "promoted":
            assert a.challenger_roc_auc > a.champion_roc_auc, a
            champion = a.champion_after
        elif a.decision == "refused":
            assert a.champion_after == a.champion_before
    assert tracking.get_alias(client, uc.model.name, "champion").version == champion
    # the shadow rows of each challenger sit beside the champion's
    preds = spark.table(uc.table(uc.tables.predictions))
    if audit:
        assert preds.where("model_alias = 'challenger'").count() > 0
    newest = preds.agg(F.max("score_date")).first()[0]
    live = preds.where((F.col("score_date") == newest) & (F.col("model_alias") == "champion"))
    assert live.select("model_version").distinct().collect()[0][0] == champion
