"""Canary releases and the automatic rollback, on real tables, real MLflow versions and live
performance measured by the monitor from real scored rows and real labels.

One synthetic lake (features and labels of two training snapshots and four score dates,
labels observed for all) and three cheap models: two good ones (logistic regression on the
real labels of different snapshots) and a bad one (the same, on shuffled labels: a live
ROC AUC near 0.5 against ~0.8). Each scenario has its own database and registered model.
"""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import pytest
from pyspark.sql import functions as F

from lakeml import monitor
from lakeml.core import tables, tracking
from lakeml.lifecycle import canary, gate, policy, release
from lakeml.ml import score, train

TRAIN = [date(2026, 3, 1), date(2026, 3, 15)]
SCORE = [date(2026, 4, 1), date(2026, 4, 15), date(2026, 5, 1), date(2026, 5, 15)]
N = 2000
SHARE = 0.3


def _scenario_uc(uc, name: str, share: float, automatic: bool = True):
    """The churn conf on the synthetic lake: its own database and model, a lenient gate (the
    live evidence is what these tests judge), canary and rollback settings."""
    s = uc.scoring.model_copy(update={
        "engine": "native",
        "canary": uc.scoring.canary.model_copy(update={"share": share, "min_dates": 2, "max_auc_drop": 0.1}),
        "rollback": uc.scoring.rollback.model_copy(update={"automatic": automatic, "watch_dates": 2, "min_dates": 2,
                                                           "max_auc_drop": 0.1}),
    })
    return uc.model_copy(update={
        "database": f"t_canary_{name}",
        "model": uc.model.model_copy(update={
            "name": f"t_canary_{name}", "experiment": "t_canary", "categorical": ["plan"],
            "numeric": ["age", "minutes_30d", "tickets_90d"], "classifier": "logistic_regression", "params": {"maxIter": 5},
            "grid": {}}),
        "validation": uc.validation.model_copy(update={"min_roc_auc": 0.0, "min_lift_top_decile": 0.0, "max_auc_drop": 1.0}),
        "scoring": s,
    })


@pytest.fixture(scope="module")
def lake(spark, env, uc):
    """The rows (one DataFrame each for features and labels) and three logged models."""
    rng = np.random.default_rng(28)
    feats, labels = [], []
    for d in TRAIN + SCORE:
        minutes = rng.gamma(2.0, 60.0, N)
        plan = rng.choice(["basic", "standard", "premium"], N, p=[0.4, 0.4, 0.2])
        age = rng.integers(18, 80, N)
        tickets = rng.poisson(0.3, N)
        logit = -0.5 - minutes / 60 + 0.8 * tickets + 0.8 * (plan == "basic")
        y = (rng.random(N) < 1 / (1 + np.exp(-logit))).astype(int)
        for j in range(N):
            feats.append((f"C{j:05d}", d, str(plan[j]), int(age[j]), float(minutes[j]), int(tickets[j])))
            labels.append((f"C{j:05d}", d, int(y[j])))
    ft = spark.createDataFrame(feats, "customer_id string, as_of_date date, plan string, age int, minutes_30d double, tickets_90d int")
    lt = spark.createDataFrame(labels, "customer_id string, as_of_date date, churned_30d int")
    ft, lt = ft.localCheckpoint(), lt.localCheckpoint()
    u = _scenario_uc(uc, "fit", 0.0)
    rows = ft.join(lt, ["customer_id", "as_of_date"])
    pipe, _ = train.build_pipeline(u.model, u.label.column)

    def fit(data):
        return pipe.fit(train.with_class_weights(data, u.label.column, "balanced"))

    shuffled = rows.where(F.col("as_of_date").isin(TRAIN)).withColumn(
        "churned_30d", F.when(F.crc32(F.concat("customer_id", F.lit("x"))) % 5 == 0, 1).otherwise(0))
    models = {"good1": fit(rows.where(F.col("as_of_date").isin(TRAIN))),
              "good2": fit(rows.where(F.col("as_of_date") == TRAIN[0])),
              "bad": fit(shuffled)}
    client = tracking.configure(env)
    exp = tracking.experiment(env, "t_canary")
    logged = {}
    for k, m in models.items():
        with tracking.mlflow.start_run(experiment_id=exp, run_name=k) as run:
            logged[k] = (tracking.log_spark_model(m), run.info.run_id)
    return {"features": ft, "labels": lt, "logged": logged, "client": client}


def _world(spark, env, lake, u, versions: list[str]) -> dict[str, str]:
    """The scenario's database (features, labels) and its registered versions, in order
    (the first is champion, each later one challenger); model kind -> version."""
    tables.ensure_database(spark, u.database)
    tables.overwrite(lake["features"], u.table(u.tables.features), partition_by=["as_of_date"])
    tables.overwrite(lake["labels"], u.table(u.tables.labels), partition_by=["as_of_date"])
    tags = {"test_roc_auc": "0.8", "threshold": "0.5", "test_as_of": str(TRAIN[-1]), "git_commit": "test"}
    out = {}
    for i, kind in enumerate(versions):
        uri, run_id = lake["logged"][kind]
        ref = tracking.register(uri, u.model.name, run_id, tags)
        out[kind] = ref.version
        tracking.set_alias(lake["client"], u.model.name, tracking.CHAMPION if i == 0 else tracking.CHALLENGER, ref.version)
    return out


def _preds(spark, u, d):
    return spark.table(u.table(u.tables.predictions)).where(F.col("score_date") == F.lit(d))


def _decisions(spark, u, action):
    return (spark.table(u.table(u.tables.model_decisions)).where(F.col("action") == action).orderBy("decided_at").collect())


def _aliases(lake, u) -> dict[str, str]:
    return {k: str(v) for k, v in lake["client"].get_registered_model(u.model.name).aliases.items()}


def _live(spark, env, u, dates):
    """Score the dates as the scheduled run does, then let the monitor measure them."""
    for d in dates:
        release.score_live(spark, env, u, d)
    monitor.run_performance(spark, env, u)


# ------------------------------------------------------------------------------- the canary


@pytest.fixture(scope="module")
def good_canary(spark, env, uc, lake):
    u = _scenario_uc(uc, "good", SHARE)
    v = _world(spark, env, lake, u, ["good1", "good2"])
    # a predictions table from before the served column: one old champion row
    old = spark.createDataFrame([("C00000", TRAIN[-1], 0.5, 1, u.model.name, v["good1"], "r", "champion")],
                                "customer_id string, score_date date, churn_probability double, prediction int, model_name string, "
                                "model_version string, model_run_id string, model_alias string")
    old = old.withColumn("scored_at", F.current_timestamp())
    tables.overwrite(old, u.table(u.tables.predictions), partition_by=["score_date"])
    started = gate.validate(spark, env, u, trigger="test")
    first = score.run(spark, env, u, SCORE[0])
    return {"uc": u, "v": v, "started": started, "first": first}


def test_a_passed_challenger_starts_a_canary_and_serves_its_share(spark, env, lake, good_canary):
    u, v, started = good_canary["uc"], good_canary["v"], good_canary["started"]
    assert (started.action, started.decision) == ("canary", "started")
    assert started.champion_before == started.champion_after == v["good1"] and started.challenger_version == v["good2"]
    assert _aliases(lake, u) == {"champion": v["good1"], "challenger": v["good2"]}  # the champion did not move
    assert canary.running(lake["client"], u).version == v["good2"]
    rows = _preds(spark, u, SCORE[0]).collect()
    served = [r for r in rows if r.served]
    # exactly one served row per entity, the challenger's exactly for the Python hash's share
    assert len(served) == len({r.customer_id for r in served}) == N and len(rows) == N
    expected = {f"C{j:05d}" for j in range(N) if canary.in_canary(f"C{j:05d}", SHARE)}
    assert {r.customer_id for r in served if r.model_alias == "challenger"} == expected
    assert {(r.model_alias, r.model_version) for r in served} == {("champion", v["good1"]), ("challenger", v["good2"])}
    assert 0.25 < len(expected) / N < 0.35
    assert good_canary["first"]["canary"] == {"version": v["good2"], "share": SHARE, "rows": len(expected)}
    # the old table gained the column in one explicit step; its rows were what was served then
    old = _preds(spark, u, TRAIN[-1]).collect()
    assert [(r.model_alias, r.served) for r in old] == [("champion", True)]
    # the gate does not judge a challenger in canary again; the retraining policy waits for its verdict
    again = gate.validate(spark, env, u, trigger="test")
    assert again.decision == "noop" and "in canary" in again.reasons[0]
    assert policy.decide(spark, env, u, SCORE[0]).retrain is False


def test_a_shadow_or_rescore_of_a_canary_date_keeps_one_served_row_per_entity(spark, env, lake, good_canary):
    """jobs/score.py --alias challenger and the pipeline's re-score of late rows (given
    versions) on a canary date: the split stays, nobody gets two served rows or none."""
    u, v = good_canary["uc"], good_canary["v"]
    before = {(r.customer_id, r.model_alias) for r in _preds(spark, u, SCORE[0]).where("served").collect()}
    score.run(spark, env, u, SCORE[0], alias="challenger")
    score.run_many(spark, env, u, [(SCORE[0], "champion", v["good1"]), (SCORE[0], "challenger", v["good2"])])
    after = _preds(spark, u, SCORE[0]).collect()
    assert {(r.customer_id, r.model_alias) for r in after if r.served} == before and len(after) == N


def test_a_canary_not_worse_than_the_champion_is_promoted(spark, env, lake, good_canary):
    u, v = good_canary["uc"], good_canary["v"]
    monitor.run_performance(spark, env, u)
    assert release.review(spark, env, u) == []  # one labelled canary date of the 2 needed: no verdict
    _live(spark, env, u, [SCORE[1]])
    perf = {(r.score_date, r.model_alias): r for r in spark.table(u.table(u.tables.performance_metrics)).collect()}
    assert perf[(SCORE[1], "challenger")].n + perf[(SCORE[1], "champion")].n == N  # the two served halves, measured apart
    [d] = release.review(spark, env, u)
    assert (d.action, d.decision, d.champion_before, d.champion_after) == ("canary", "promoted", v["good1"], v["good2"])
    ev = d.details
    assert ev["dates"] == [str(SCORE[0]), str(SCORE[1])]
    assert d.challenger_roc_auc == pytest.approx(np.mean([perf[(x, "challenger")].roc_auc for x in SCORE[:2]]))
    assert d.champion_roc_auc == pytest.approx(np.mean([perf[(x, "champion")].roc_auc for x in SCORE[:2]]))
    assert d.challenger_roc_auc > d.champion_roc_auc - 0.1 and d.champion_roc_auc > 0.7
    assert [p["a_n"] + p["b_n"] for p in ev["per_date"]] == [N, N]
    row = _decisions(spark, u, "canary")[-1]
    assert row.decision == "promoted" and json.loads(row.details)["per_date"] == ev["per_date"]
    assert _aliases(lake, u) == {"champion": v["good2"], "challenger": v["good2"], "previous": v["good1"]}
    assert canary.running(lake["client"], u) is None
    assert release.review(spark, env, u) == []  # one verdict per canary
    # the next live batch: the new champion serves everyone, its predecessor in shadow
    release.score_live(spark, env, u, SCORE[2])
    got = {(r.model_alias, r.model_version, r.served): r["count"]
           for r in _preds(spark, u, SCORE[2]).groupBy("model_alias", "model_version", "served").count().collect()}
    assert got == {("champion", v["good2"], True): N, ("previous", v["good1"], False): N}


def test_a_canary_worse_than_the_champion_is_ended(spark, env, uc, lake):
    u = _scenario_uc(uc, "bad", SHARE)
    v = _world(spark, env, lake, u, ["good1", "bad"])
    assert gate.validate(spark, env, u, trigger="test").decision == "started"
    _live(spark, env, u, SCORE[:2])
    [d] = release.review(spark, env, u)
    assert (d.action, d.decision, d.challenger_version, d.champion_after) == ("canary", "ended", v["bad"], v["good1"])
    assert d.challenger_roc_auc < d.champion_roc_auc - 0.1 and d.details["dates"] == [str(x) for x in SCORE[:2]]
    assert "canary ended" in d.reasons[-1]
    assert _aliases(lake, u) == {"champion": v["good1"]}  # the ended challenger serves nowhere
    assert tracking.version_tags(lake["client"], u.model.name, v["bad"])[canary.TAG] == canary.ENDED
    assert release.review(spark, env, u) == []
    # the live batch of the day the canary ended, scored again: the champion serves everyone
    release.score_live(spark, env, u, SCORE[1])
    got = {(r.model_alias, r.served): r["count"] for r in _preds(spark, u, SCORE[1]).groupBy("model_alias", "served").count().collect()}
    assert got == {("champion", True): N}


# ------------------------------------------------------------------------ the automatic rollback


def test_a_promotion_that_does_worse_live_is_rolled_back_once(spark, env, uc, lake):
    u = _scenario_uc(uc, "rollback", 0.0)
    v = _world(spark, env, lake, u, ["good1", "bad"])
    p = gate.validate(spark, env, u, trigger="test")
    assert (p.action, p.decision) == ("validate", "promoted")
    assert _aliases(lake, u) == {"champion": v["bad"], "challenger": v["bad"], "previous": v["good1"]}
    _live(spark, env, u, SCORE[:3])  # watch_dates 2: the predecessor is scored on the first two only
    shadow = {r.score_date for r in spark.table(u.table(u.tables.predictions)).where("model_alias = 'previous'").collect()}
    assert shadow == set(SCORE[:2])
    [d] = release.review(spark, env, u)
    assert (d.action, d.decision, d.champion_before, d.champion_after) == ("rollback", "rolled_back", v["bad"], v["good1"])
    assert d.trigger.startswith("automatic") and d.challenger_roc_auc < d.champion_roc_auc - 0.1
    assert d.details["dates"] == [str(x) for x in SCORE[:2]] and "more than max_auc_drop 0.1 below" in d.reasons[0]
    assert _aliases(lake, u)["champion"] == v["good1"] and "previous" not in _aliases(lake, u)
    row = _decisions(spark, u, "rollback")[-1]
    assert row.decision == "rolled_back" and row.challenger_roc_auc == pytest.approx(d.challenger_roc_auc)
    # the next daily run: the same evidence rolls back nothing again
    assert release.review(spark, env, u) == []
    assert len(_decisions(spark, u, "rollback")) == 1


def test_a_promotion_that_holds_live_is_kept(spark, env, uc, lake):
    u = _scenario_uc(uc, "kept", 0.0)
    v = _world(spark, env, lake, u, ["good1", "good2"])
    assert gate.validate(spark, env, u, trigger="test").decision == "promoted"
    _live(spark, env, u, SCORE[:2])
    [d] = release.review(spark, env, u)
    assert (d.action, d.decision, d.champion_after) == ("rollback", "kept", v["good2"])
    assert abs(d.challenger_roc_auc - d.champion_roc_auc) < 0.1
    assert _aliases(lake, u) == {"champion": v["good2"], "challenger": v["good2"]}
    assert release.review(spark, env, u) == []


def test_without_automatic_rollback_it_is_advised_once(spark, env, uc, lake):
    u = _scenario_uc(uc, "advised", 0.0, automatic=False)
    v = _world(spark, env, lake, u, ["good1", "bad"])
    assert gate.validate(spark, env, u, trigger="test").decision == "promoted"
    _live(spark, env, u, SCORE[:2])
    [d] = release.review(spark, env, u)
    assert (d.action, d.decision, d.champion_after) == ("rollback", "rollback_advised", v["bad"])
    assert _aliases(lake, u)["champion"] == v["bad"]
    assert release.review(spark, env, u) == []
    assert [r.decision for r in _decisions(spark, u, "rollback")] == ["rollback_advised"]
