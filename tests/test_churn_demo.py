"""The churn demo's data maker (conf/churn/demo.py): deterministic, realistic enough, with
the planted signal; and how lakeml.demo lands it."""

import json
from datetime import timedelta

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from conftest import TINY
from lakeml.core.errors import ConfigError
from lakeml.demo import maker
from lakeml.lake import landing
from lakeml.lake.stores import local_path


def test_same_arguments_same_rows_other_seed_other_rows(spark, uc):
    generate = maker.load(uc)
    g = TINY.model_copy(update={"entities": 300})
    a = generate.customers(spark, g)
    assertDataFrameEqual(a, generate.customers(spark.range(1).sparkSession, g))
    b = generate.customers(spark, g.model_copy(update={"seed": g.seed + 1}))
    assert a.join(b, ["customer_id", "plan", "signup_date", "churn_date"]).count() < 100


def test_population_mix_and_churn_rate(spark, uc):
    generate = maker.load(uc)
    g = TINY.model_copy(update={"entities": 5000})
    c = generate.customers(spark, g).persist()
    plans = {r.plan: r["count"] / 5000 for r in c.groupBy("plan").count().collect()}
    assert abs(plans["basic"] - 0.5) < 0.03 and abs(plans["premium"] - 0.15) < 0.03
    churned = c.where(F.col("churn_date").isNotNull()).count() / 5000
    # roughly 3-6 % a month over 200 days
    assert 0.12 < churned < 0.45
    # the hidden rule: invoice payers churn more than card payers
    rate = {r.payment_method: r.rate
            for r in c.groupBy("payment_method").agg(F.avg(F.col("churn_date").isNotNull().cast("int")).alias("rate")).collect()}
    assert rate["invoice"] > rate["card"] * 1.3


def test_customers_disengage_before_they_churn(spark, uc):
    generate = maker.load(uc)
    g = TINY.model_copy(update={"entities": 3000})
    cust = generate.customers(spark, g)
    ev = generate.usage_events(generate.customer_days(cust, g), g)
    c = cust.select("customer_id", "churn_date").where(F.col("churn_date").isNotNull())
    e = ev.join(c, "customer_id").withColumn("to_churn", F.datediff("churn_date", F.to_date("event_ts")))
    last_week = e.where("to_churn <= 7").count() / c.count() / 7
    earlier = e.where("to_churn > 60 AND to_churn <= 90").count() / c.where(F.datediff("churn_date", F.lit(g.start_date)) > 90).count() / 30
    assert last_week < 0.6 * earlier


def test_landing_layout_formats_and_manifest(spark, uc, tmp_path):
    g = TINY.model_copy(update={"entities": 200, "days": 20})
    land = str(tmp_path / "landing")
    out = maker.run(spark, uc, land, g)
    assert out["skipped"] is False and out["rows"]["customers"] == 200
    batches = landing.list_batches(spark, land)
    assert batches[0].batch_date == g.start_date and batches[-1].batch_date == g.start_date + timedelta(days=20)
    names = {src: {f.path.rsplit(".", 1)[-1] for b in batches for f in b.files.get(src, [])}
             for src in ("customers", "usage_events", "payments")}
    assert names == {"customers": {"csv"}, "usage_events": {"jsonl"}, "payments": {"parquet"}}
    first = next(f.path for f in batches[1].files["usage_events"])
    assert json.loads(landing.first_line(spark, first))["customer_id"].startswith("C")
    # the same data set again: left alone; with another seed: rewritten, no stale files
    assert maker.run(spark, uc, land, g)["skipped"] is True
    maker.run(spark, uc, land, g.model_copy(update={"seed": 99}))
    again = landing.list_batches(spark, land)
    assert all(len(b.files.get("customers", [])) <= 1 for b in again)


def test_a_new_data_set_replaces_the_earlier_one_whole(spark, uc, tmp_path, monkeypatch):
    """generate --force (or another spec) with fewer days leaves none of the earlier days
    behind, a crash mid-way is cleaned up by the next run, and a folder the demo did not
    write (another source) is kept."""
    land = str(tmp_path / "landing")
    long = TINY.model_copy(update={"entities": 60, "days": 12, "bad_row_rate": 0.0})
    short = long.model_copy(update={"entities": 40, "days": 5})

    def days():
        return sorted(str(b.batch_date) for b in landing.list_batches(spark, land) if set(b.files) & set(uc.sources))

    maker.run(spark, uc, land, long)
    assert len(days()) == 13
    foreign = tmp_path / "landing" / str(long.start_date + timedelta(days=10)) / "not_a_source"
    foreign.mkdir()
    (foreign / "x.csv").write_text("a\n1\n")
    out = maker.run(spark, uc, land, short, force=True)
    assert (days() == [str(short.start_date + timedelta(days=i)) for i in range(6)]
            == json.loads(landing.read_text(spark, f"{land}/_demo.json"))["batches"])
    customers = sum(1 for b in landing.list_batches(spark, land) for f in b.files.get("customers", [])
                    for line in open(local_path(f.path)).read().splitlines()[1:] if line)
    assert customers == out["rows"]["customers"] == 40
    assert (foreign / "x.csv").exists()
    # a generation that fails after its first source is written: the next run removes what it wrote
    made = maker.frames(spark, uc, long)
    first = next(iter(made))
    monkeypatch.setattr(maker, "frames", lambda *a, **k: {first: made[first], "no_such_source": made[first]})
    with pytest.raises(ConfigError, match="no_such_source"):
        maker.run(spark, uc, land, long, force=True)
    monkeypatch.undo()
    assert json.loads(landing.read_text(spark, f"{land}/_demo.json"))["complete"] is False
    maker.run(spark, uc, land, short)
    assert days() == [str(short.start_date + timedelta(days=i)) for i in range(6)]
