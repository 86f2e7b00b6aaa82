"""The scheduled pipeline over drifting data, day after day, in the test session, on the
second shipped use case (maintenance). The churn use case's scheduled run (drift -> policy ->
retrain -> gate, a rejected retrain) is covered by tests/test_e2e.py and tests/test_airflow.py;
this scenario also sees labels arrive and live performance measured, which churn's 30-day
horizon cannot in a CI-sized run, and it proves the lifecycle names no use case of its own.

Each use case's demo maker shifts behaviour from a drift date on (churn: usage minutes
x(1 + strength), more invoice payers, higher hazard; maintenance: see conf/maintenance/demo.py).
Batches arrive in chunks; after each chunk the scheduled pipeline runs as a scheduler would
call it. The monitor must flag the drift, the policy must fire, the retrained model may take
the champion alias only if it beats the champion on the same holdout, every trigger and
decision is in the audit table, and once the labels of an earlier score date have arrived its
live performance is measured and reported.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from conftest import CONF, usecases
from lakeml import pipeline
from lakeml.core import tracking
from lakeml.core.config import load_usecase
from lakeml.demo import maker

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Scenario:
    entities: int
    chunks: tuple[int, ...]  # the landing zone holds batches up to start + these days; one run after each
    drift_day: int  # the maker's drift starts on start + drift_day
    drift_strength: float
    drifted: frozenset[str]  # features the monitor must flag after the drift
    auc_floor: float  # the first champion learns from few snapshots: a floor below the demo's
    live_score_dates: int  # score dates whose live performance is measured by the last run


SCENARIOS = {
    # scored on days 120, 141, 162; the 14-day windows of the first two close (with the
    # reporting delay) before the last run
    "maintenance": Scenario(500, (120, 141, 162), 120, 1.5, frozenset({"temperature_mean_3d", "temperature_mean_14d"}), 0.6, 2),
}


@pytest.fixture(scope="module", params=sorted(SCENARIOS))
def world(request, spark, env, tmp_path_factory):
    name, sc = request.param, SCENARIOS[request.param]
    uc = load_usecase(CONF, name)
    root = tmp_path_factory.mktemp(f"lifecycle-{name}")
    upstream = root / "upstream"
    spec = maker.spec_of(uc, entities=sc.entities, seed=7, days=max(sc.chunks) + 1,
                         drift_start=uc.demo.start_date + timedelta(days=sc.drift_day), drift_strength=sc.drift_strength)
    maker.run(spark, uc, str(upstream), spec)
    lenv = env.model_copy(update={"storage": env.storage.model_copy(update={"landing": str(root / "landing")})})
    luc = uc.model_copy(update={"database": f"lifecycle_{name}",
                                "model": uc.model.model_copy(update={"name": f"{uc.model.name}_lifecycle", "auc_floor": sc.auc_floor})})
    return {"name": name, "scenario": sc, "spec": spec, "upstream": upstream, "landing": Path(lenv.landing_zone(uc.name)),
            "env": lenv, "uc": luc, "runs": []}


def _arrive(world, upto_day: int) -> None:
    """Move the batches up to start + upto_day from upstream into the landing zone."""
    world["landing"].mkdir(parents=True, exist_ok=True)
    last = world["spec"].start_date + timedelta(days=upto_day)
    for d in sorted(os.listdir(world["upstream"])):
        if len(d) == 10 and d[4] == "-" and date.fromisoformat(d) <= last:
            os.rename(world["upstream"] / d, world["landing"] / d)


@pytest.fixture(scope="module")
def scheduled_runs(spark, world):
    for day in world["scenario"].chunks:
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
    uc, sc = world["uc"], world["scenario"]
    drift_start = world["spec"].drift_start
    dm = spark.table(uc.table(uc.tables.drift_metrics))
    after = dm.where(F.col("score_date") >= F.lit(drift_start + timedelta(days=7)))
    alerts = {r.feature for r in after.where("status = 'alert'").select("feature").collect()}
    assert sc.drifted <= alerts, alerts
    # features use what was known strictly before as_of_date: a batch scored on the drift date is clean
    before = dm.where(F.col("score_date") <= F.lit(drift_start)).where(F.col("feature").isin(*sc.drifted))
    assert before.count() == len(sc.drifted) and before.where("status = 'alert'").count() == 0


def test_the_policy_fires_and_every_decision_is_recorded(spark, world, scheduled_runs):
    uc = world["uc"]
    fired = [r for r in scheduled_runs[1:] if r["stages"]["policy"]["result"]["retrain"]]
    assert fired, [r["stages"]["policy"]["result"]["reasons"] for r in scheduled_runs]
    assert any("drift" in reason for r in fired for reason in r["stages"]["policy"]["result"]["reasons"])
    audit = spark.table(uc.table(uc.tables.model_decisions)).orderBy("decided_at").collect()
    assert [a.action for a in audit if a.action == "policy"] == ["policy"] * len(scheduled_runs)
    validations = [a for a in audit if a.action == "validate" and a.decision in ("promoted", "refused")]
    decided = {(r["stages"]["validate"]["result"]["challenger_version"], r["stages"]["validate"]["result"]["decision"]) for r in fired}
    assert decided and decided <= {(a.challenger_version, a.decision) for a in validations}
    assert {d for _, d in decided} <= {"promoted", "refused"}
    assert [re.match(r"policy: (drift|live)", v.trigger) is not None and v.challenger_roc_auc is not None and v.champion_roc_auc is not None
            for v in validations] == [True] * len(validations)


def test_the_champion_moves_only_to_a_better_model(spark, env, world, scheduled_runs):
    uc = world["uc"]
    client = tracking.configure(env)
    audit = spark.table(uc.table(uc.tables.model_decisions)).where("action = 'validate'").orderBy("decided_at").collect()
    promoted = [a for a in audit if a.decision == "promoted"]
    refused = [a for a in audit if a.decision == "refused"]
    assert promoted or refused
    assert [a.challenger_roc_auc > a.champion_roc_auc for a in promoted] == [True] * len(promoted)
    assert [a.champion_after == a.champion_before for a in refused] == [True] * len(refused)
    champion = promoted[-1].champion_after if promoted else "1"
    assert tracking.get_alias(client, uc.model.name, "champion").version == champion
    # the shadow rows of each challenger sit beside the champion's; the live batch is the champion's
    preds = spark.table(uc.table(uc.tables.predictions))
    assert preds.where("model_alias = 'challenger'").count() > 0
    newest = preds.agg(F.max("score_date")).first()[0]
    live = preds.where((F.col("score_date") == newest) & (F.col("model_alias") == "champion"))
    assert [r[0] for r in live.select("model_version").distinct().collect()] == [champion]


def test_live_performance_is_measured_once_labels_arrive(spark, world, scheduled_runs):
    uc, sc = world["uc"], world["scenario"]
    perf = spark.table(uc.table(uc.tables.performance_metrics)).where("model_alias = 'champion'")
    dates = sorted({r.score_date for r in perf.select("score_date").collect()})
    assert len(dates) == sc.live_score_dates
    labelled = perf.where("roc_auc IS NOT NULL AND n > 0").count()
    assert labelled == sc.live_score_dates
    last = scheduled_runs[-1]["stages"]
    monitored = last.get("monitor#2", last.get("monitor"))["result"]
    assert monitored["performance"]["score_dates"] == dates


def test_the_report_speaks_the_use_case(world, scheduled_runs):
    uc = world["uc"]
    last = scheduled_runs[-1]["stages"]
    report = Path(last.get("monitor#2", last.get("monitor"))["result"]["report"])
    text = report.read_text()
    assert report.parent.parent.name == uc.name and uc.probability in text
    others = {n for n in usecases() if n != uc.name}
    assert others
    assert [n for n in others if n in text.lower()] == []


def test_the_native_engine_writes_the_table_the_onnx_one_does(spark, env, world, scheduled_runs):
    """The scheduled runs scored with scoring.engine auto, which takes the version's ONNX copy
    (ONNX Runtime in mapInArrow); the native transform scores the newest snapshot again: the
    predictions table holds the same rows, P(1) within the export's parity tolerance. (Last
    in the module: it rewrites the newest date's champion rows.)"""
    from pyspark.testing import assertDataFrameEqual

    from lakeml.ml import score

    uc = world["uc"]
    assert uc.scoring.engine == "auto"
    pt = uc.table(uc.tables.predictions)
    newest = spark.table(pt).agg(F.max("score_date")).first()[0]
    keep = [uc.entity, "score_date", "prediction", "model_name", "model_version", "model_run_id", "model_alias"]

    def champion_rows():
        return (spark.table(pt).where((F.col("score_date") == newest) & (F.col("model_alias") == "champion"))
                .select(*keep, F.col(uc.probability).alias("p")).localCheckpoint())

    onnx = champion_rows()
    native_uc = uc.model_copy(update={"scoring": uc.scoring.model_copy(update={"engine": "native"})})
    out = score.run(spark, world["env"], native_uc, score_date=newest)
    assert out["engine"] == "native" and out["rows"] == onnx.count() > 0
    native = champion_rows()
    assertDataFrameEqual(native.drop("p"), onnx.drop("p"))
    worst = onnx.alias("o").join(native.alias("n"), uc.entity).agg(F.max(F.abs(F.col("o.p") - F.col("n.p")))).first()[0]
    assert worst <= uc.export.parity_tolerance, worst
    assert score.run(spark, world["env"], uc, score_date=newest)["engine"] == "onnx"  # auto: the version has its copy
