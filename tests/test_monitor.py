"""Drift and live performance agree with numpy / scipy / scikit-learn on the same data; the
monitoring tables are idempotent; the report's pictures exist."""

import itertools
import json
import re
from datetime import date

import numpy as np
import pytest
from pyspark.sql import functions as F
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2_contingency, ks_2samp
from sklearn.metrics import roc_auc_score

from lakeml import monitor
from lakeml.core import tables, tracking
from lakeml.core.errors import MissingDataError
from lakeml.ml import score, train

_db = itertools.count()
DECILES = [i / 10 for i in range(1, 10)]


def _unique(uc, **model):
    u = uc.model_copy(update={"database": f"t_monitor_{next(_db)}"})
    if model:
        u = u.model_copy(update={"model": u.model.model_copy(update=model)})
    return u


def _col(values):
    return [None if (v is None or (isinstance(v, float) and np.isnan(v))) else v for v in values]


def _np_psi(r, c, eps=1e-4):
    r, c = np.asarray(r, float), np.asarray(c, float)
    r, c = np.maximum(r / r.sum(), eps), np.maximum(c / c.sum(), eps)
    return float(np.sum((c - r) * np.log(c / r)))


@pytest.fixture(scope="module")
def samples(spark):
    rng = np.random.default_rng(11)
    n_ref, n_cur = 5000, 4000
    x_ref = rng.normal(50, 10, n_ref).round(3)
    x_ref[rng.random(n_ref) < 0.05] = np.nan
    x_cur = rng.normal(55, 10, n_cur).round(3)  # half a standard deviation higher
    x_cur[rng.random(n_cur) < 0.20] = np.nan  # and four times as many nulls
    x_same = rng.normal(50, 10, n_cur).round(3)  # a fresh sample of the reference distribution
    x_same[rng.random(n_cur) < 0.05] = np.nan
    c_ref = rng.choice(["a", "b", "c", None], n_ref, p=[0.5, 0.28, 0.2, 0.02])
    c_cur = rng.choice(["a", "b", "c", "d"], n_cur, p=[0.45, 0.3, 0.15, 0.1])  # "d" never seen in the reference
    p_ref = rng.beta(2, 8, n_ref).round(5)
    p_cur = rng.beta(3, 6, n_cur).round(5)  # mean 0.33 instead of 0.2
    schema = "x double, c string, p double"
    ref = spark.createDataFrame(list(zip(_col(x_ref.tolist()), c_ref.tolist(), p_ref.tolist(), strict=True)), schema)
    cur = spark.createDataFrame(list(zip(_col(x_cur.tolist()), c_cur.tolist(), p_cur.tolist(), strict=True)), schema)
    same = spark.createDataFrame(list(zip(_col(x_same.tolist()), c_ref[:n_cur].tolist(), p_ref[:n_cur].tolist(), strict=True)), schema)
    return {"ref": ref, "cur": cur, "same": same, "x_ref": x_ref, "x_cur": x_cur,
            "c_ref": c_ref, "c_cur": c_cur, "p_ref": p_ref, "p_cur": p_cur}


@pytest.fixture(scope="module")
def drifted(spark, uc, samples):
    res = monitor.drift(spark, uc, samples["ref"], samples["cur"], ["x"], ["c"], prob_ref="p", prob_cur="p")
    return {r.feature: r for r in res.collect()}


def test_numeric_drift_matches_numpy_and_scipy(uc, samples, drifted):
    r = drifted["x"]
    xr, xc = samples["x_ref"], samples["x_cur"]
    xr_ok, xc_ok = xr[~np.isnan(xr)], xc[~np.isnan(xc)]
    assert r.kind == "numeric" and r.n_ref == len(xr) and r.n_cur == len(xc)
    # nulls are counted, in a bin of their own (the last one)
    assert r.nulls_ref == int(np.isnan(xr).sum()) == r.ref_counts[-1] and r.nulls_cur == int(np.isnan(xc).sum()) == r.cur_counts[-1]
    assert r.bins[-1] == "null"
    # the edges are the reference deciles (from approxQuantile)
    edges = np.array(r.edges)
    assert len(edges) == 9 and np.all(np.diff(edges) > 0)
    assert np.allclose([np.mean(xr_ok <= e) for e in edges], DECILES, atol=2e-3)
    # the counts are those of the right-closed bins (-inf, e0], (e0, e1], ..., (e8, inf)
    rc = np.append(np.bincount(np.searchsorted(edges, xr_ok, side="left"), minlength=10), np.isnan(xr).sum())
    cc = np.append(np.bincount(np.searchsorted(edges, xc_ok, side="left"), minlength=10), np.isnan(xc).sum())
    assert r.ref_counts == rc.tolist() and r.cur_counts == cc.tolist()
    assert r.psi == pytest.approx(_np_psi(rc, cc), rel=1e-12)
    assert r.js == pytest.approx(jensenshannon(rc, cc, base=2), rel=1e-12)
    assert r.chi2_p == pytest.approx(chi2_contingency(np.array([rc, cc])).pvalue, rel=1e-9, abs=1e-300)
    # the KS of 100 reference-quantile bins is a lower bound of the exact one, within ~1/100
    exact = ks_2samp(xr_ok, xc_ok).statistic
    assert r.ks <= exact + 1e-12 and exact - r.ks <= 0.02
    assert r.psi > uc.monitoring.psi_alert and r.status == "alert"


def test_categorical_drift_with_a_value_unseen_in_the_reference(samples, drifted):
    r = drifted["c"]
    assert r.kind == "categorical" and r.edges is None and r.ks is None
    assert r.bins == ["a", "b", "c", "d", "null"]  # reference order, then the new value, then nulls
    cr, cc = samples["c_ref"], samples["c_cur"]
    rc = [int(np.sum(cr == v)) for v in ["a", "b", "c", "d"]] + [int(np.sum(cr == None))]  # noqa: E711
    cc_ = [int(np.sum(cc == v)) for v in ["a", "b", "c", "d"]] + [0]
    assert r.ref_counts == rc and r.cur_counts == cc_ and rc[3] == 0 and r.nulls_ref == rc[4] > 0
    assert r.psi == pytest.approx(_np_psi(rc, cc_), rel=1e-12)  # the empty reference share counts as 1e-4
    assert r.js == pytest.approx(jensenshannon(rc, cc_, base=2), rel=1e-12)
    table = np.array([rc, cc_])
    assert r.chi2_p == pytest.approx(chi2_contingency(table[:, table.sum(axis=0) > 0]).pvalue, rel=1e-9, abs=1e-300)
    assert r.status == "alert"  # 10% of rows in a value the model never saw: PSI ~0.66


def test_prediction_drift(samples, drifted):
    r = drifted["p"]
    assert r.kind == "prediction" and r.n_ref == len(samples["p_ref"]) and r.nulls_cur == 0
    exact = ks_2samp(samples["p_ref"], samples["p_cur"]).statistic
    assert r.ks <= exact + 1e-12 and exact - r.ks <= 0.02
    assert r.status == "alert"


def test_identical_and_same_distribution_are_ok(spark, uc, samples):
    same = {r.feature: r for r in monitor.drift(spark, uc, samples["ref"], samples["ref"], ["x"], ["c"], "p", "p").collect()}
    assert set(same) == {"x", "c", "p"}
    assert ({f: (round(r.psi, 9), round(r.js, 6), r.status, round(r.chi2_p, 9)) for f, r in same.items()}
            == dict.fromkeys(same, (0.0, 0.0, "ok", 1.0)))
    assert same["x"].ks == 0 and same["p"].ks == 0
    fresh = {r.feature: r for r in monitor.drift(spark, uc, samples["ref"], samples["same"], ["x"], ["c"], "p", "p").collect()}
    assert set(fresh) == {"x", "c", "p"}
    assert {f: r.psi < 0.02 and r.status == "ok" for f, r in fresh.items()} == dict.fromkeys(fresh, True), fresh


def test_zero_inflated_counts_keep_zero_apart(spark, uc):
    """95% of the reference is 0: every decile is 0, so one edge at 0 and the right-closed
    bins keep the zeros apart from the rest (a left-closed [0, inf) bin would hide the shift)."""
    ref = spark.createDataFrame([(0,)] * 950 + [(1,)] * 30 + [(3,)] * 20, "t int")
    cur = spark.createDataFrame([(0,)] * 700 + [(1,)] * 200 + [(9,)] * 100, "t int")
    r = monitor.drift(spark, uc, ref, cur, ["t"], []).first()
    assert r.edges == [0.0] and r.ref_counts == [950, 50, 0] and r.cur_counts == [700, 300, 0]
    assert r.status == "alert"


def test_a_feature_null_in_the_whole_reference(spark, uc):
    ref = spark.createDataFrame([(None, 1.0)] * 50, "t double, u double")
    cur = spark.createDataFrame([(2.0, 1.0)] * 30 + [(None, 1.0)] * 20, "t double, u double")
    r = {x.feature: x for x in monitor.drift(spark, uc, ref, cur, ["t", "u"], []).collect()}
    assert r["t"].bins == ["all values", "null"] and r["t"].ref_counts == [0, 50] and r["t"].cur_counts == [30, 20]
    assert r["t"].ks is None and r["t"].status == "alert"
    assert r["u"].psi == 0 and r["u"].status == "ok"  # a constant: one edge, every value in the first bin


# --------------------------------------------------------------------------- live performance


@pytest.fixture(scope="module")
def perf_lake(spark, env, uc):
    """Predictions of three score dates (the first also scored by a challenger), labels
    observed for the first two, and run_performance once over them."""
    u = _unique(uc)
    rng = np.random.default_rng(5)
    d1, d2, d3 = date(2026, 5, 1), date(2026, 5, 15), date(2026, 5, 29)
    preds, labels, truth = [], [], {}
    for d, alias, version in [(d1, "champion", "1"), (d1, "challenger", "2"), (d2, "champion", "1"), (d3, "champion", "1")]:
        n = 700
        y = (rng.random(n) < 0.15).astype(int)
        p = np.clip(0.15 + 0.3 * y + rng.normal(0, 0.15, n), 0.0, 1.0).round(2)  # rounded: many ties
        ids = [f"C{i}" for i in range(n)]
        if alias == "champion":
            labels += [(c, d, None if d == d3 else int(v)) for c, v in zip(ids, y, strict=True)]
            truth[d] = y
        else:
            y = truth[d]  # same customers, same outcomes, another model
            p = np.clip(0.1 + 0.5 * y + rng.normal(0, 0.2, n), 0.0, 1.0).round(3)
        preds += [(c, d, float(v), int(v >= 0.5), "m", version, "run", alias) for c, v in zip(ids, p, strict=True)]
        truth[(d, alias)] = (y, p)
    tables.ensure_database(spark, u.database)
    pschema = ("customer_id string, score_date date, churn_probability double, prediction int, "
               "model_name string, model_version string, model_run_id string, model_alias string")
    tables.overwrite(spark.createDataFrame(preds, pschema).withColumn("scored_at", F.current_timestamp()), u.table(u.tables.predictions))
    tables.overwrite(spark.createDataFrame(labels, "customer_id string, as_of_date date, churned_30d int"), u.table(u.tables.labels))
    out = monitor.run_performance(spark, env, u)
    return u, truth, (d1, d2, d3), out


def _perf_rows(spark, u):
    return {(r.score_date, r.model_alias): r.asDict()
            for r in spark.table(u.table(u.tables.performance_metrics)).drop("computed_at").collect()}


def test_live_performance_matches_sklearn(spark, perf_lake):
    u, truth, (d1, d2, d3), out = perf_lake
    assert out["score_dates"] == [d1, d2]  # d3's labels are not observed yet
    assert out["latest"]["score_date"] == d2 and out["latest"]["n"] == 700
    rows = _perf_rows(spark, u)
    assert set(rows) == {(d1, "champion"), (d1, "challenger"), (d2, "champion")}
    B = u.monitoring.calibration_bins
    # every number of every group against numpy / sklearn on the same rows, in one comparison
    got, want = {}, {}
    for (d, alias), r in rows.items():
        y, p = truth[(d, alias)]
        top = p >= np.quantile(p, 0.9, method="inverted_cdf")
        b = np.minimum(np.floor(p * B), B - 1).astype(int)
        ece = sum(abs(p[b == k].mean() - y[b == k].mean()) * (b == k).sum() for k in np.unique(b)) / len(y)
        expected = {
            "version": 2.0 if alias == "challenger" else 1.0, "n": len(y), "positives": y.sum(), "base_rate": y.mean(),
            "roc_auc": roc_auc_score(y, p),  # exact, ties included
            "precision_top_decile": y[top].mean(), "lift_top_decile": y[top].mean() / y.mean(), "brier": np.mean((p - y) ** 2), "ece": ece,
        }
        actual = {"version": float(r["model_version"]), **{k: r[k] for k in expected if k != "version"}}
        curve = json.loads(r["calibration"])
        for k in np.unique(b):
            expected.update({f"bin{k}.n": (b == k).sum(), f"bin{k}.observed": y[b == k].mean(), f"bin{k}.mean_predicted": p[b == k].mean()})
        for c in curve:
            actual.update({f"bin{c['bin']}.n": c["n"], f"bin{c['bin']}.observed": c["observed"],
                           f"bin{c['bin']}.mean_predicted": c["mean_predicted"]})
        got.update({((d, alias), k): float(v) for k, v in actual.items()})
        want.update({((d, alias), k): float(v) for k, v in expected.items()})
    assert len(got) > 3 * 9 and set(got) == set(want)
    assert got == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_live_performance_is_idempotent(spark, env, perf_lake):
    u = perf_lake[0]
    first = _perf_rows(spark, u)
    monitor.run_performance(spark, env, u)
    assert _perf_rows(spark, u) == first
    assert spark.table(u.table(u.tables.performance_metrics)).count() == 3


# --------------------------------------------------------------------------- with a registered model


@pytest.fixture(scope="module")
def lake(spark, env, uc):
    """Features of two training snapshots, a test snapshot and a drifted score date; a small
    model trained on the first two, registered as champion; the test and score dates scored."""
    u = _unique(
        uc,
        name=f"t_monitor_model_{next(_db)}",
        categorical=["plan"],
        numeric=["age", "minutes_30d", "tickets_90d"],
        classifier="logistic_regression",
        params={"maxIter": 20},
        grid={},
    )
    rng = np.random.default_rng(8)
    dates = [date(2026, 3, 1), date(2026, 3, 15), date(2026, 4, 14), date(2026, 5, 12)]
    feats, labels = [], []
    for d in dates:
        n = 1000
        drifted = d == dates[-1]
        minutes = rng.gamma(2.0, 60.0, n) * (0.5 if drifted else 1.0)  # usage halves on the score date
        plan = rng.choice(["basic", "standard", "premium"], n, p=[0.6, 0.3, 0.1] if drifted else [0.4, 0.4, 0.2])
        age = rng.integers(18, 80, n)
        tickets = rng.poisson(0.3, n)
        logit = -1.0 - minutes / 80 + 0.5 * tickets + 0.5 * (plan == "basic")
        y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
        for j in range(n):
            feats.append((f"C{j}", d, str(plan[j]), int(age[j]), None if j % 50 == 0 else float(minutes[j]), int(tickets[j])))
            labels.append((f"C{j}", d, None if drifted else int(y[j])))
    tables.ensure_database(spark, u.database)
    fschema = "customer_id string, as_of_date date, plan string, age int, minutes_30d double, tickets_90d int"
    ft = spark.createDataFrame(feats, fschema)
    tables.overwrite(ft, u.table(u.tables.features))
    tables.overwrite(spark.createDataFrame(labels, "customer_id string, as_of_date date, churned_30d int"), u.table(u.tables.labels))
    train_rows = ft.join(spark.table(u.table(u.tables.labels)), ["customer_id", "as_of_date"]).where(F.col("as_of_date") <= dates[1])
    pipe, _ = train.build_pipeline(u.model, u.label.column)
    model = pipe.fit(train.with_class_weights(train_rows, u.label.column, "balanced"))
    client = tracking.configure(env)
    exp = tracking.experiment(env, f"t_monitor_{u.database}")
    with tracking.mlflow.start_run(experiment_id=exp):
        tracking.mlflow.log_params({"train_from": dates[0], "train_to": dates[1], "test_as_of": dates[2]})
        ref = tracking.log_and_register_spark_model(model, u.model.name)
    tracking.set_alias(client, u.model.name, tracking.CHAMPION, ref.version)
    score.run(spark, env, u, dates[2])
    score.run(spark, env, u, dates[3])
    u = u.model_copy(update={"model": u.model.model_copy(update={"experiment": f"t_monitor_{u.database}"})})
    return u, dates, ref


def _drift_rows(spark, u, d):
    t = spark.table(u.table(u.tables.drift_metrics)).where(F.col("score_date") == F.lit(d)).drop("computed_at")
    return sorted((r.asDict() for r in t.collect()), key=lambda r: r["feature"])


def test_run_drift_against_the_training_rows_is_idempotent(spark, env, lake):
    u, dates, ref = lake
    out = monitor.run_drift(spark, env, u)  # default: the newest scored date
    assert out["score_date"] == dates[3] and out["model_version"] == ref.version
    assert out["reference"] == f"training snapshots {dates[0]}..{dates[1]}"
    first = _drift_rows(spark, u, dates[3])
    by = {r["feature"]: r for r in first}
    assert set(by) == {"age", "minutes_30d", "tickets_90d", "plan", "churn_probability"}
    assert all(r["n_ref"] == 2000 and r["n_cur"] == 1000 for r in first)  # two training snapshots vs one date
    assert by["minutes_30d"]["nulls_cur"] == 20 and by["minutes_30d"]["status"] == "alert"
    assert by["plan"]["status"] in ("warn", "alert") and by["age"]["status"] == "ok" and by["tickets_90d"]["status"] == "ok"
    assert by["churn_probability"]["kind"] == "prediction" and by["churn_probability"]["status"] == "alert"  # less usage, more churn
    assert "minutes_30d" in out["alerts"] and out["status"] == "alert"

    monitor.run_drift(spark, env, u, dates[3])
    assert _drift_rows(spark, u, dates[3]) == first
    monitor.run_drift(spark, env, u, dates[2])  # another date is another slice
    assert _drift_rows(spark, u, dates[3]) == first
    assert {r["status"] for r in _drift_rows(spark, u, dates[2])} <= {"ok", "warn"}  # the test snapshot has not drifted
    assert spark.table(u.table(u.tables.drift_metrics)).count() == 10

    with pytest.raises(MissingDataError, match="no predictions of alias champion for 2026-01-01"):
        monitor.run_drift(spark, env, u, date(2026, 1, 1))


def test_monitor_run_writes_the_report_and_logs_it(spark, env, lake):
    u, dates, ref = lake
    summary = monitor.run(spark, env, u)
    assert summary["performance"]["score_dates"] == [dates[2]]  # only the test snapshot is labelled
    perf = spark.table(u.table(u.tables.performance_metrics)).first()
    assert perf.model_version == ref.version and perf.n == 1000 and perf.roc_auc > 0.7
    html_path = summary["report"]
    assert html_path == f"{env.data_dir}/reports/{u.name}/{dates[3]}/report.html"
    text = open(html_path).read()
    pngs = re.findall(r'<img src="([^"]+)"', text)
    assert set(pngs) == {"psi.png", "prediction_distribution.png", "top_drift.png", "live_auc.png", "calibration.png"}
    folder = html_path.rsplit("/", 1)[0]
    assert {name: open(f"{folder}/{name}", "rb").read(8) for name in pngs} == dict.fromkeys(pngs, b"\x89PNG\r\n\x1a\n")
    assert "minutes_30d" in text and "alert" in text
    client = tracking.configure(env)
    run = client.get_run(summary["mlflow_run_id"])
    assert run.data.tags["stage"] == "monitor" and run.data.metrics["drift_alerts"] >= 1
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "monitoring")}
    assert {"monitoring/report.html", *(f"monitoring/{p}" for p in pngs)} <= logged
    print(monitor.describe(summary))


def test_report_without_labels_or_drift_says_so(spark, env, uc, tmp_path):
    u = _unique(uc)
    path = monitor.report(spark, env, u, tmp_path / "r")
    text = path.read_text()
    assert "No drift computed yet" in text and "No score date has observed labels yet" in text
    assert "<img" not in text
