"""Canary releases and the automatic rollback, on real tables, real MLflow versions and live
performance measured by the monitor from real scored rows and real labels.

One synthetic lake (features and labels of two training snapshots and nine score dates,
labels observed for all) and three cheap models: two good ones (logistic regression on the
real labels of different snapshots) and a bad one (the same on labels unrelated to the
features: a live ROC AUC near 0.5 against ~0.8). The tests are the steps of one model's
life, in order, on one registered model (so each version is loaded once):

1. good2 passes the gate while good1 serves: a canary on 30 % of the entities;
2. it does not do worse live: promoted, good1 watched in shadow, the watch ends ``kept``;
3. bad passes the (lenient) gate with no canary configured: promoted at once, watched, does
   worse live: advised (``automatic: false``), then rolled back by itself, once;
4. bad again, as a canary: ended.
"""

from __future__ import annotations

import json
from datetime import date, timedelta

import numpy as np
import pytest
from pyspark.sql import functions as F

from lakeml import monitor
from lakeml.core import parallel, tables, tracking
from lakeml.lifecycle import canary, gate, policy, release
from lakeml.lifecycle.decisions import PromotionError
from lakeml.ml import score, train

TRAIN = [date(2026, 3, 1), date(2026, 3, 15)]
SCORE = [date(2026, 4, 1) + timedelta(days=14 * k) for k in range(9)]
N = 2000
SHARE = 0.3
IDS = [f"C{j:05d}" for j in range(N)]


def _conf(uc, share: float = SHARE, **rollback):
    """The churn conf on the synthetic lake: its own database and model, a lenient gate (the
    live evidence is what these tests judge), canary and rollback settings."""
    s = uc.scoring.model_copy(update={
        "engine": "native",
        "canary": uc.scoring.canary.model_copy(update={"share": share, "min_dates": 2, "max_auc_drop": 0.1}),
        "rollback": uc.scoring.rollback.model_copy(update={"automatic": True, "watch_dates": 2, "min_dates": 2,
                                                           "max_auc_drop": 0.1, **rollback}),
    })
    return uc.model_copy(update={
        "database": "t_canary",
        "model": uc.model.model_copy(update={
            "name": "t_canary", "experiment": "t_canary", "categorical": ["plan"],
            "numeric": ["age", "minutes_30d", "tickets_90d"], "classifier": "logistic_regression", "params": {"maxIter": 5},
            "grid": {}}),
        "validation": uc.validation.model_copy(update={"min_roc_auc": 0.0, "min_lift_top_decile": 0.0, "max_auc_drop": 1.0}),
        "scoring": s,
    })


@pytest.fixture(scope="module")
def life(spark, env, uc):
    """The lake's tables, the three models logged once, and the registry client."""
    u = _conf(uc)
    # made in Spark (seeded, a fixed partitioning: the same rows every run), kept in memory
    dates = TRAIN + SCORE
    r = [F.rand(seed) for seed in range(6)]
    minutes = -60.0 * (F.log(r[0]) + F.log(r[1]))  # gamma(2, 60): the sum of two exponentials
    plan = F.when(r[2] < 0.4, "basic").when(r[2] < 0.8, "standard").otherwise("premium")
    tickets = F.when(r[3] < 0.741, 0).when(r[3] < 0.963, 1).when(r[3] < 0.996, 2).otherwise(3)  # ~Poisson(0.3)
    rows = (spark.range(0, N * len(dates), numPartitions=2)
            .select(F.format_string("C%05d", F.col("id") % N).alias("customer_id"),
                    F.element_at(F.array(*[F.lit(d) for d in dates]), (F.col("id") / N).cast("int") + 1).alias("as_of_date"),
                    plan.alias("plan"), (18 + F.floor(r[4] * 62)).cast("int").alias("age"), minutes.alias("minutes_30d"),
                    tickets.alias("tickets_90d"), F.rand(6).alias("_u")))
    logit = -0.5 - F.col("minutes_30d") / 60 + 0.8 * F.col("tickets_90d") + 0.8 * (F.col("plan") == "basic").cast("int")
    rows = rows.withColumn("churned_30d", (F.col("_u") < 1 / (1 + F.exp(-logit))).cast("int")).drop("_u").localCheckpoint()
    tables.ensure_database(spark, u.database)
    tables.overwrite(rows.drop("churned_30d"), u.table(u.tables.features), partition_by=["as_of_date"])
    tables.overwrite(rows.select("customer_id", "as_of_date", "churned_30d"), u.table(u.tables.labels), partition_by=["as_of_date"])
    rows = rows.where(F.col("as_of_date").isin(TRAIN))
    unrelated = rows.withColumn("churned_30d", F.when(F.crc32(F.concat("customer_id", F.lit("x"))) % 5 == 0, 1).otherwise(0))
    pipe, _ = train.build_pipeline(u.model, u.label.column)
    data = {"good1": rows, "good2": rows.where(F.col("as_of_date") == TRAIN[0]), "bad": unrelated}
    fitted = parallel.map_all(spark, lambda k: pipe.fit(train.with_class_weights(data[k], u.label.column, "balanced")), list(data))
    client = tracking.configure(env)
    exp = tracking.experiment(env, "t_canary")
    logged = {}
    for k, m in zip(data, fitted, strict=True):
        with tracking.mlflow.start_run(experiment_id=exp, run_name=k) as run:
            logged[k] = (tracking.log_spark_model(m), run.info.run_id)
    return {"uc": u, "logged": logged, "client": client, "v": {}}


def _register(life, kind: str, alias: str) -> str:
    """A new version of the test model for the logged model ``kind``, with the tags of a
    complete training, under ``alias``."""
    uri, run_id = life["logged"][kind]
    tags = {"test_roc_auc": "0.8", "threshold": "0.5", "test_as_of": str(TRAIN[-1]), "git_commit": "test"}
    ref = tracking.register(uri, life["uc"].model.name, run_id, tags)
    tracking.set_alias(life["client"], ref.name, alias, ref.version)
    return ref.version


def _preds(spark, u, d):
    return spark.table(u.table(u.tables.predictions)).where(F.col("score_date") == F.lit(d))


def _counts(spark, u, d) -> dict:
    """(alias, version, served) -> rows of score date ``d``."""
    return {(r.model_alias, r.model_version, r.served): r["count"]
            for r in _preds(spark, u, d).groupBy("model_alias", "model_version", "served").count().collect()}


def _decisions(spark, u, action):
    return spark.table(u.table(u.tables.model_decisions)).where(F.col("action") == action).orderBy("decided_at").collect()


def _aliases(life) -> dict[str, str]:
    return {k: str(v) for k, v in life["client"].get_registered_model(life["uc"].model.name).aliases.items()}


def _live(spark, env, u, dates):
    """Score the dates as the scheduled run does, then let the monitor measure them."""
    for d in dates:
        release.score_live(spark, env, u, d)
    monitor.run_performance(spark, env, u)


# ------------------------------------------------------------------------------- the canary


def test_a_passed_challenger_starts_a_canary_and_serves_its_share(spark, env, life):
    u, v = life["uc"], life["v"]
    v["good1"], v["good2"] = _register(life, "good1", "champion"), _register(life, "good2", "challenger")
    # a predictions table from before the served column: one old champion row
    old = spark.createDataFrame([("C00000", TRAIN[-1], 0.5, 1, u.model.name, v["good1"], "r", "champion")],
                                "customer_id string, score_date date, churn_probability double, prediction int, model_name string, "
                                "model_version string, model_run_id string, model_alias string")
    tables.overwrite(old.withColumn("scored_at", F.current_timestamp()), u.table(u.tables.predictions), partition_by=["score_date"])

    started = gate.validate(spark, env, u, trigger="test")
    assert (started.action, started.decision) == ("canary", "started")
    assert started.champion_before == started.champion_after == v["good1"] and started.challenger_version == v["good2"]
    assert _aliases(life) == {"champion": v["good1"], "challenger": v["good2"]}  # the champion did not move
    assert canary.running(life["client"], u).version == v["good2"]
    first = score.run(spark, env, u, SCORE[0])
    rows = _preds(spark, u, SCORE[0]).collect()
    served = [r for r in rows if r.served]
    # exactly one served row per entity, the challenger's exactly for the Python hash's share
    assert len(served) == len({r.customer_id for r in served}) == N and len(rows) == N
    expected = {c for c in IDS if canary.in_canary(c, SHARE)}
    assert {r.customer_id for r in served if r.model_alias == "challenger"} == expected
    assert {(r.model_alias, r.model_version) for r in served} == {("champion", v["good1"]), ("challenger", v["good2"])}
    assert 0.25 < len(expected) / N < 0.35
    assert first["canary"] == {"version": v["good2"], "share": SHARE, "rows": len(expected)} and first["rows"] == N - len(expected)
    # the old table gained the column in one explicit step; its rows were what was served then
    assert [(r.model_alias, r.served) for r in _preds(spark, u, TRAIN[-1]).collect()] == [("champion", True)]
    # the gate does not judge a challenger in canary again; the retraining policy waits for its verdict
    again = gate.validate(spark, env, u, trigger="test")
    assert again.decision == "noop" and "in canary" in again.reasons[0]
    assert policy.decide(spark, env, u, SCORE[0]).retrain is False


def test_a_shadow_or_rescore_of_a_canary_date_keeps_one_served_row_per_entity(spark, env, life):
    """jobs/score.py --alias challenger and the pipeline's re-score of late rows (given
    versions) on a canary date: the split stays, nobody gets two served rows or none."""
    u, v = life["uc"], life["v"]
    before = {(r.customer_id, r.model_alias) for r in _preds(spark, u, SCORE[0]).where("served").collect()}
    score.run(spark, env, u, SCORE[0], alias="challenger")
    score.run_many(spark, env, u, [(SCORE[0], "champion", v["good1"]), (SCORE[0], "challenger", v["good2"])])
    after = _preds(spark, u, SCORE[0]).collect()
    assert {(r.customer_id, r.model_alias) for r in after if r.served} == before and len(after) == N


def test_a_canary_not_worse_than_the_champion_is_promoted(spark, env, life):
    u, v = life["uc"], life["v"]
    monitor.run_performance(spark, env, u)
    assert release.review(spark, env, u) == []  # one labelled canary date of the 2 needed: no verdict
    _live(spark, env, u, [SCORE[1]])
    perf = {(r.score_date, r.model_alias): r for r in spark.table(u.table(u.tables.performance_metrics)).collect()}
    assert perf[(SCORE[1], "challenger")].n + perf[(SCORE[1], "champion")].n == N  # the two served parts, measured apart
    [d] = release.review(spark, env, u)
    assert (d.action, d.decision, d.champion_before, d.champion_after) == ("canary", "promoted", v["good1"], v["good2"])
    assert d.details["dates"] == [str(SCORE[0]), str(SCORE[1])]
    assert d.challenger_roc_auc == pytest.approx(np.mean([perf[(x, "challenger")].roc_auc for x in SCORE[:2]]))
    assert d.champion_roc_auc == pytest.approx(np.mean([perf[(x, "champion")].roc_auc for x in SCORE[:2]]))
    assert d.challenger_roc_auc > d.champion_roc_auc - 0.1 and d.champion_roc_auc > 0.7
    assert [p["a_n"] + p["b_n"] for p in d.details["per_date"]] == [N, N]
    row = _decisions(spark, u, "canary")[-1]
    assert row.decision == "promoted" and json.loads(row.details)["per_date"] == d.details["per_date"]
    assert _aliases(life) == {"champion": v["good2"], "challenger": v["good2"], "previous": v["good1"]}
    assert canary.running(life["client"], u) is None
    assert release.review(spark, env, u) == []  # one verdict per canary
    # the next live batch: the new champion serves everyone, its predecessor in shadow
    release.score_live(spark, env, u, SCORE[2])
    assert _counts(spark, u, SCORE[2]) == {("champion", v["good2"], True): N, ("previous", v["good1"], False): N}


def test_the_promoted_canary_is_watched_and_kept_when_it_holds(spark, env, life):
    """Its predecessor was scored in shadow on the next dates; once watch_dates of them are
    labelled and the new champion held, the watch ends."""
    u, v = life["uc"], life["v"]
    _live(spark, env, u, [SCORE[3]])
    [d] = release.review(spark, env, u)
    assert (d.action, d.decision, d.challenger_version, d.champion_after) == ("rollback", "kept", v["good2"], v["good2"])
    assert d.details["dates"] == [str(x) for x in SCORE[2:4]] and abs(d.challenger_roc_auc - d.champion_roc_auc) < 0.1
    assert _aliases(life) == {"champion": v["good2"], "challenger": v["good2"]}
    assert release.review(spark, env, u) == []


# ------------------------------------------------------------------------ the automatic rollback


def test_a_promotion_that_does_worse_live_is_rolled_back_once(spark, env, life):
    v = life["v"]
    u = _conf(life["uc"], share=0.0)  # no canary: the gate promotes at once
    v["bad"] = _register(life, "bad", "challenger")
    p = gate.validate(spark, env, u, trigger="test")
    assert (p.action, p.decision) == ("validate", "promoted")
    assert _aliases(life) == {"champion": v["bad"], "challenger": v["bad"], "previous": v["good2"]}
    _live(spark, env, u, SCORE[4:7])  # watch_dates 2: the predecessor is scored on the first two only
    assert [("previous", v["good2"], False) in _counts(spark, u, d) for d in SCORE[4:7]] == [True, True, False]
    # without automatic rollback (and a watch of 3 dates, still open): advised, once for the same evidence
    advised = _conf(life["uc"], share=0.0, automatic=False, watch_dates=3)
    [a] = release.review(spark, env, advised)
    assert (a.action, a.decision, a.champion_after) == ("rollback", "rollback_advised", v["bad"])
    assert release.review(spark, env, advised) == [] and _aliases(life)["champion"] == v["bad"]
    # automatic: the champion alias goes back, with the numbers
    [d] = release.review(spark, env, u)
    assert (d.action, d.decision, d.champion_before, d.champion_after) == ("rollback", "rolled_back", v["bad"], v["good2"])
    assert d.trigger.startswith("automatic") and d.challenger_roc_auc < d.champion_roc_auc - 0.1
    assert d.details["dates"] == [str(x) for x in SCORE[4:6]] and "more than max_auc_drop 0.1 below" in d.reasons[0]
    assert (d.challenger_roc_auc, d.champion_roc_auc) == pytest.approx((a.challenger_roc_auc, a.champion_roc_auc))
    assert _aliases(life)["champion"] == v["good2"] and "previous" not in _aliases(life)
    rows = [r for r in _decisions(spark, u, "rollback") if r.decision != "kept"]
    assert [r.decision for r in rows] == ["rollback_advised", "rolled_back"]
    assert json.loads(rows[-1].details)["per_date"] == d.details["per_date"]
    # the next daily run: the same evidence rolls back nothing again
    assert release.review(spark, env, u) == []
    assert len(_decisions(spark, u, "rollback")) == 3


# -------------------------------------------------------------------------- a canary that fails


def test_a_canary_worse_than_the_champion_is_ended(spark, env, life):
    u, v = life["uc"], life["v"]
    v["bad2"] = _register(life, "bad", "challenger")
    assert gate.validate(spark, env, u, trigger="test").decision == "started"
    _live(spark, env, u, SCORE[7:9])
    [d] = release.review(spark, env, u)
    assert (d.action, d.decision, d.challenger_version, d.champion_after) == ("canary", "ended", v["bad2"], v["good2"])
    assert d.challenger_roc_auc < d.champion_roc_auc - 0.1 and d.details["dates"] == [str(x) for x in SCORE[7:9]]
    assert "canary ended" in d.reasons[-1]
    assert _aliases(life) == {"champion": v["good2"]}  # the ended challenger serves nowhere
    assert tracking.version_tags(life["client"], u.model.name, v["bad2"])[canary.TAG] == canary.ENDED
    assert release.review(spark, env, u) == []
    with pytest.raises(PromotionError, match="has no canary running"):  # jobs/promote.py --end-canary
        release.end_canary(spark, env, u, "by hand")
    # the live batch of the day the canary ended, scored again: the champion serves everyone
    release.score_live(spark, env, u, SCORE[8])
    assert _counts(spark, u, SCORE[8]) == {("champion", v["good2"], True): N}
