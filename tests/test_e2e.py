"""The whole pipeline on tiny generated data, in the test session: real outcomes."""

from datetime import date

import mlflow
import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from conftest import CLASSIFIER_PARAMS, CONF, TINY
from lakeml import features, pipeline
from lakeml.core import tracking
from lakeml.core.config import load_usecase
from lakeml.core.errors import MissingDataError, MissingTableError
from lakeml.demo import maker
from lakeml.features import job as features_job
from lakeml.lake import ingest
from lakeml.lifecycle import gate, promote
from lakeml.lifecycle.decisions import PromotionError
from lakeml.ml import score, train

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def built(spark, env, uc):
    gen = maker.run(spark, uc, env.landing_zone(uc.name), TINY)
    summary = pipeline.run(spark, env, uc, pipeline.STAGES)
    return gen["rows"], summary


def test_every_landed_row_is_accepted_or_quarantined(spark, uc, built):
    generated, _ = built
    log = {r.source: r for r in spark.table(uc.table(uc.tables.ingest_log)).groupBy("source").agg(
        F.sum("rows_read").alias("read"), F.sum("rows_accepted").alias("ok"), F.sum("rows_quarantined").alias("bad")).collect()}
    q = {r.source: r["count"] for r in spark.table(uc.table(uc.tables.quarantine)).groupBy("source").count().collect()}
    bronze = {s: spark.table(uc.table(spec.table)).count() for s, spec in uc.sources.items()}
    # per source: read from the files = written by the maker = accepted + quarantined; accepted = bronze rows
    assert {s: log[s].read for s in uc.sources} == generated
    assert {s: log[s].ok + log[s].bad for s in uc.sources} == generated
    assert {s: log[s].ok for s in uc.sources} == bronze
    assert {s: q.get(s, 0) for s in uc.sources} == {s: log[s].bad for s in uc.sources}
    assert sum(q.values()) > 0  # the generator plants bad rows; they are kept with a reason
    assert spark.table(uc.table(uc.tables.quarantine)).where("reason IS NULL OR raw IS NULL").count() == 0


def test_population_and_labels_respect_time(spark, uc, built):
    ft = spark.table(uc.table(uc.tables.features))
    churn = spark.table(uc.table("bronze_churn_events")).select("customer_id", "churn_date")
    # nobody who had already churned is scored or trained on
    assert ft.join(churn, "customer_id").where("churn_date < as_of_date").count() == 0
    cust = spark.table(uc.table("bronze_customers")).select("customer_id", "signup_date")
    assert ft.join(cust, "customer_id").where("signup_date >= as_of_date").count() == 0
    lb = spark.table(uc.table(uc.tables.labels)).where(F.col(uc.label.column).isNotNull())
    h = uc.label.horizon_days
    truth = lb.join(churn, "customer_id", "left").select(
        "customer_id", "as_of_date", uc.label.column,
        F.coalesce((F.col("churn_date") >= F.col("as_of_date")) & (F.col("churn_date") < F.date_add("as_of_date", h)),
                   F.lit(False)).cast("int").alias("expected"),
    )
    assert truth.where(F.col(uc.label.column) != F.col("expected")).count() == 0
    assert lb.agg(F.avg(uc.label.column)).first()[0] > 0.01


def test_model_quality_and_registry(spark, env, uc, built):
    _, summary = built
    tr = summary["stages"]["train"]["result"]
    # the planted signal supports ~0.8; 0.7 leaves room for the small test sample
    assert tr["metrics"]["roc_auc"] > 0.7
    assert tr["metrics"]["lift_top_decile"] > 2.0
    assert tr["became_champion"] is True and summary["champion_version"] == tr["version"]
    client = tracking.configure(env)
    run = client.get_run(tr["run_id"])
    assert run.data.tags["git_commit"] and run.data.params["classifier"] == uc.model.classifier
    assert {"test_roc_auc", "test_pr_auc", "test_log_loss", "test_f1", "test_lift_top_decile"} <= set(run.data.metrics)
    inputs = {d.dataset.name: d.dataset for d in run.inputs.dataset_inputs}
    assert set(inputs) == {uc.table(uc.tables.features), uc.table(uc.tables.labels)}
    assert run.data.params[f"input.{uc.table(uc.tables.features)}.delta_version"].isdigit()
    arts = {a.path for a in client.list_artifacts(tr["run_id"], "plots")} | {a.path for a in client.list_artifacts(tr["run_id"], "conf")}
    assert {"plots/roc.png", "plots/pr.png", "plots/feature_importance.png", "conf/usecase.yaml"} <= arts
    # the portable copy, checked against the Spark model before it was logged
    assert [a.path for a in client.list_artifacts(tr["run_id"], "onnx")] == ["onnx/model.onnx"]
    assert run.data.metrics["portable_onnx_max_abs_diff"] <= 1e-6
    mv = client.get_model_version(uc.model.name, tr["version"])
    assert mv.tags["portable_formats"] == "onnx" and float(mv.tags["test_roc_auc"]) == round(tr["metrics"]["roc_auc"], 4)
    # all or nothing: the version was registered (with its tags) once its run had finished
    assert run.info.status == "FINISHED" and run.info.end_time <= mv.creation_timestamp
    model = mlflow.spark.load_model(f"models:/{uc.model.name}@champion")
    assert len(model.stages) >= 4


def test_leaky_feature_sql_is_refused_before_it_writes(spark, uc, built, conf_copy):
    """New feature SQL that reads the as-of date itself: the features job proves it leaks on
    a sample of the lake, names the file, and writes nothing."""
    from lakeml.core import tables
    from lakeml.core.config import load_usecase
    from lakeml.features import leakage

    usage = conf_copy / "churn" / "sql" / "features" / "usage.sql"
    usage.write_text(usage.read_text().replace("AND d.day < p.as_of_date", "AND d.day <= p.as_of_date"))
    leaky = load_usecase(conf_copy, "churn")
    ft, lt = uc.table(uc.tables.features), uc.table(uc.tables.labels)
    before = (tables.version(spark, ft), tables.version(spark, lt))
    with pytest.raises(leakage.LeakageError, match=r"sql/features/usage\.sql: .*active_days_7d"):
        features_job.run(spark, leaky)
    assert (tables.version(spark, ft), tables.version(spark, lt)) == before


def test_every_customer_of_the_snapshot_gets_one_prediction(spark, uc, built):
    d = features.newest_snapshot(spark, uc)
    ft = spark.table(uc.table(uc.tables.features)).where(F.col("as_of_date") == d).select(uc.features.entity)
    pr = spark.table(uc.table(uc.tables.predictions)).where(F.col("score_date") == d)
    assertDataFrameEqual(pr.select(uc.features.entity), ft, checkRowOrder=False)
    p = uc.probability
    assert pr.where(f"{p} < 0 OR {p} > 1 OR {p} IS NULL").count() == 0
    assert pr.select("model_version").distinct().count() == 1


def test_rerunning_ingest_and_score_leaves_the_tables_equal(spark, env, uc, built):
    names = [uc.table(s.table) for s in uc.sources.values()] + [uc.table(uc.tables.quarantine)]
    before = {n: spark.table(n).collect() for n in names}
    pt = uc.table(uc.tables.predictions)
    preds_before = spark.table(pt).drop("scored_at").collect()
    ingest.ingest(spark, env, uc, force=True)
    for n in names:
        assertDataFrameEqual(spark.table(n), before[n], checkRowOrder=False)
    score.run(spark, env, uc)
    score.run(spark, env, uc)
    assertDataFrameEqual(spark.table(pt).drop("scored_at"), preds_before, checkRowOrder=False)


def test_scoring_another_date_keeps_history(spark, env, uc, built):
    pt = uc.table(uc.tables.predictions)
    dates = sorted(r[0] for r in spark.table(uc.table(uc.tables.features)).select("as_of_date").distinct().collect())
    newest_rows = spark.table(pt).where(F.col("score_date") == dates[-1]).count()
    out = score.run(spark, env, uc, score_date=dates[-2])
    assert out["rows"] > 0
    assert spark.table(pt).where(F.col("score_date") == dates[-1]).count() == newest_rows
    with pytest.raises(MissingDataError, match=r"has no rows for 2031-01-01.*jobs/features.py --as-of 2031-01-01"):
        score.run(spark, env, uc, score_date=date(2031, 1, 1))


def test_retraining_makes_a_challenger_and_keeps_the_champion(spark, env, uc, built):
    _, summary = built
    first = summary["stages"]["train"]["result"]
    r = train.run(spark, env, uc)
    client = tracking.configure(env)
    assert int(r.model.version) == int(first["version"]) + 1 and r.became_champion is False
    assert tracking.get_alias(client, uc.model.name, "challenger").version == r.model.version
    assert tracking.get_alias(client, uc.model.name, "champion").version == first["version"]
    # same data, conf and seed: the same test metrics
    assert r.metrics["roc_auc"] == pytest.approx(first["metrics"]["roc_auc"], abs=1e-4)
    out = score.run(spark, env, uc)
    assert out["model_version"] == first["version"]


def test_a_missing_table_says_which_and_how_to_make_it(spark, uc):
    empty = uc.model_copy(update={"database": "nowhere"})
    with pytest.raises(MissingTableError, match=r"Table nowhere.ingest_log does not exist. Create it by running jobs/ingest.py"):
        features_job.run(spark, empty)


# --------------------------------------------------------------------------- the gate


def _decisions(spark, uc):
    return spark.table(uc.table(uc.tables.model_decisions)).orderBy("decided_at")


def test_a_worse_challenger_is_refused(spark, env, uc, built):
    client = tracking.configure(env)
    champion = tracking.get_alias(client, uc.model.name, "champion").version
    # a deliberately broken challenger: one weak feature, no tuning, no floor to stop it
    broken = uc.model_copy(update={"model": uc.model.model_copy(update={
        "numeric": ["age"], "categorical": [], "grid": {}, "auc_floor": 0.0})})
    bad = train.run(spark, env, broken)
    assert tracking.get_alias(client, uc.model.name, "challenger").version == bad.model.version
    d = gate.validate(spark, env, uc)
    assert d.decision == "refused" and d.champion_after == champion
    assert d.challenger_roc_auc < d.champion_roc_auc
    assert any("is not better than the champion" in r for r in d.reasons), d.reasons
    assert tracking.get_alias(client, uc.model.name, "champion").version == champion
    rows = _decisions(spark, uc).where(F.col("challenger_version") == bad.model.version).collect()
    assert len(rows) == 1 and rows[0].decision == "refused" and rows[0].holdout_date == d.holdout_date
    assert client.get_model_version(uc.model.name, bad.model.version).tags["validation.decision"] == "refused"
    assert client.get_model_version(uc.model.name, champion).tags["validation.challenger"] == bad.model.version
    # deciding again on the same evidence records nothing new
    gate.validate(spark, env, uc)
    assert _decisions(spark, uc).where(F.col("challenger_version") == bad.model.version).count() == 1


def test_promotion_rollback_and_forcing_are_recorded(spark, env, uc, built):
    client = tracking.configure(env)
    good = tracking.get_alias(client, uc.model.name, "champion").version
    bad = tracking.get_alias(client, uc.model.name, "challenger").version
    assert good != bad
    with pytest.raises(PromotionError, match="needs --reason"):
        promote.force(spark, env, uc, bad, " ")
    # someone forces the broken model in; the good one, as challenger, wins it back
    f = promote.force(spark, env, uc, bad, "incident drill")
    assert (f.champion_before, f.champion_after) == (good, bad)
    tracking.set_alias(client, uc.model.name, "challenger", good)
    p = gate.validate(spark, env, uc)
    assert p.decision == "promoted" and p.champion_after == good
    assert tracking.get_alias(client, uc.model.name, "champion").version == good
    # rollback gives the alias back to what the promotion replaced
    r = promote.rollback(spark, env, uc, "drill")
    assert (r.champion_before, r.champion_after) == (good, bad)
    assert tracking.get_alias(client, uc.model.name, "champion").version == bad
    promote.force(spark, env, uc, good, "end of drill")
    trail = [(x.action, x.decision, x.champion_before, x.champion_after) for x in _decisions(spark, uc).collect()][-4:]
    assert trail == [("force", "forced", good, bad), ("validate", "promoted", bad, good),
                     ("rollback", "rolled_back", good, bad), ("force", "forced", bad, good)]


def test_shadow_scoring_sits_beside_the_champion(spark, env, uc, built):
    pt = uc.table(uc.tables.predictions)
    d = features.newest_snapshot(spark, uc)
    champ_before = spark.table(pt).where((F.col("score_date") == d) & (F.col("model_alias") == "champion")).drop("scored_at").collect()
    out = score.run(spark, env, uc, alias="challenger")
    sh = spark.table(pt).where((F.col("score_date") == d) & (F.col("model_alias") == "challenger"))
    assert sh.count() == out["rows"] == len(champ_before)
    assert sh.select("model_version").distinct().first()[0] == out["model_version"]
    champ_after = spark.table(pt).where((F.col("score_date") == d) & (F.col("model_alias") == "champion")).drop("scored_at")
    assertDataFrameEqual(champ_after, champ_before, checkRowOrder=False)


def test_a_scheduled_retrain_below_the_floor_is_recorded_and_the_champion_keeps_serving(spark, env, uc, built):
    from lakeml.lifecycle.decisions import last_decision

    client = tracking.configure(env)
    champion = tracking.get_alias(client, uc.model.name, "champion").version
    # a policy that fires on any drift of the last batch, and a floor no model here reaches
    strict = uc.model_copy(update={
        "retraining": uc.retraining.model_copy(update={"psi_threshold": 1e-9, "drift_batches": 1, "of_last": 1}),
        "model": uc.model.model_copy(update={"auc_floor": 0.999}),
    })
    summary = pipeline.run_scheduled(spark, env, strict)
    assert summary["stages"]["policy"]["result"]["retrain"] is True
    assert "below model.auc_floor 0.999" in summary["stages"]["train"]["rejected"]
    assert summary["champion_version"] == champion == tracking.get_alias(client, uc.model.name, "champion").version
    last = last_decision(spark, uc)
    assert (last.action, last.decision, last.champion_before, last.champion_after) == ("train", "rejected", champion, champion)
    assert last.trigger.startswith("policy: drift") and "auc_floor" in last.reasons
    assert "retraining rejected (the champion keeps serving)" in pipeline.describe(summary, uc)


# --------------------------------------------------------------------------- every classifier


@pytest.mark.parametrize("classifier", sorted(set(CLASSIFIER_PARAMS) - {load_usecase(CONF, "churn").model.classifier}))
def test_each_classifier_goes_through_the_lifecycle(spark, env, uc, built, classifier):
    """Train -> gate -> champion -> scored by both engines -> monitored -> rolled back, with
    each classifier the conf can name but the shipped one (the whole module runs on that, and
    tests/test_lifecycle.py compares its engines)."""
    from lakeml import monitor

    client = tracking.configure(env)
    champion = tracking.get_alias(client, uc.model.name, "champion").version
    other = uc.model_copy(update={"model": uc.model.model_copy(update={
        "classifier": classifier, "params": CLASSIFIER_PARAMS[classifier], "grid": {}, "auc_floor": 0.0})})
    r = train.run(spark, env, other)  # registered with its ONNX copy, parity checked
    v = r.model.version
    assert tracking.get_alias(client, uc.model.name, "challenger").version == v
    assert client.get_model_version(uc.model.name, v).tags["portable_formats"] == "onnx"  # within parity, or no copy
    d = gate.validate(spark, env, other)
    assert d.challenger_version == v and d.decision in ("promoted", "refused")
    assert _decisions(spark, uc).where((F.col("challenger_version") == v) & (F.col("action") == "validate")).count() == 1
    if d.decision == "refused":
        promote.force(spark, env, other, v, f"{classifier} drill")
    assert tracking.get_alias(client, uc.model.name, "champion").version == v

    newest = features.newest_snapshot(spark, uc)
    pt = uc.table(uc.tables.predictions)
    keep = [uc.entity, "prediction", "model_version", "model_alias"]

    def champion_rows():
        return (spark.table(pt).where((F.col("score_date") == newest) & (F.col("model_alias") == "champion"))
                .select(*keep, F.col(uc.probability).alias("p")).localCheckpoint())

    native = score.run(spark, env, other.model_copy(update={"scoring": uc.scoring.model_copy(update={"engine": "native"})}),
                       score_date=newest)
    assert native["model_version"] == v and native["engine"] == "native"
    by_native = champion_rows()
    onnx = score.run(spark, env, other.model_copy(update={"scoring": uc.scoring.model_copy(update={"engine": "onnx"})}), score_date=newest)
    assert onnx["rows"] == native["rows"] == by_native.count() > 0
    by_onnx = champion_rows()
    assertDataFrameEqual(by_onnx.drop("p"), by_native.drop("p"))
    worst = by_onnx.alias("o").join(by_native.alias("n"), uc.entity).agg(F.max(F.abs(F.col("o.p") - F.col("n.p")))).first()[0]
    assert worst <= uc.export.parity_tolerance, worst

    m = monitor.run(spark, env, other, score_date=newest, to_mlflow=False)
    assert m["drift"]["model_version"] == v
    assert spark.table(uc.table(uc.tables.drift_metrics)).where((F.col("score_date") == newest) & (F.col("model_version") == v)).count() > 0

    back = promote.rollback(spark, env, other, f"end of the {classifier} drill")
    assert (back.champion_before, back.champion_after) == (v, champion)
    assert score.run(spark, env, uc, score_date=newest)["model_version"] == champion
