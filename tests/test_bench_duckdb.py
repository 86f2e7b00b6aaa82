"""The DuckDB peer of the feature stage computes what Spark computes, from the same SQL
files over the Parquet files of the same bronze Delta tables."""

from datetime import date, timedelta

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from lakeml import features
from lakeml.bench import duckdb_features as ddf
from lakeml.core import tables
from lakeml.core.config import DemoSpec
from lakeml.demo import maker

G = DemoSpec(maker="demo.py", entities=300, days=200, start_date=date(2026, 1, 1), seed=11, bad_row_rate=0.0)
RESENT = G.start_date + timedelta(days=131)  # a later batch re-sends some rows, changed
DATES = [G.start_date + timedelta(days=90), G.start_date + timedelta(days=132), G.start_date + timedelta(days=200)]


def _bronze(df, spec, source):
    """Bronze-shaped: the use case's columns, then the arrival batch and the file it came in."""
    return df.select(
        *spec.columns,
        F.col("arrival_date").alias("_batch_date"),
        F.concat(F.lit("landing/"), F.col("arrival_date").cast("string"), F.lit(f"/{source}/part-0")).alias("_source_file"),
    )


def _resend(df, every, changes, batch=RESENT, source_file="landing/resent/part-0"):
    """Every ``every``-th row again, changed, as batch ``batch`` (None: the row's own) sends it."""
    key = df.columns[0]
    picked = df.where(F.abs(F.xxhash64(key)) % every == 0)
    for c, v in changes.items():
        picked = picked.withColumn(c, v)
    if batch is not None:
        picked = picked.withColumn("_batch_date", F.lit(batch))
    return picked.withColumn("_source_file", F.lit(source_file))


@pytest.fixture(scope="module")
def bronze(spark, uc):
    """Small generated bronze Delta tables (with re-sent rows) in a database of their own."""
    buc = uc.model_copy(update={"database": "bench_duckdb"})
    tables.ensure_database(spark, buc.database)
    src = maker.frames(spark, buc, G)
    frames = {name: _bronze(df, buc.sources[name], name) for name, df in src.items()}
    # versions that arrive later: a plan change between two as-of dates (the profile takes the
    # version known at each date), corrected usage in the same batch from a later file (the
    # latest view breaks the tie on _source_file), corrected payments and churn dates
    c = frames["customers"]
    frames["customers"] = c.unionByName(
        _resend(c.where(F.col("_batch_date") < RESENT), 5, {"plan": F.lit("premium"), "age": F.lit(None).cast("int")})
    )
    u = frames["usage_events"]
    frames["usage_events"] = u.unionByName(
        _resend(u, 4, {"minutes_used": F.col("minutes_used") + 100}, None, "landing/zz/usage_events/part-1")
    )
    p = frames["payments"].where(F.abs(F.xxhash64("customer_id")) % 10 != 0)  # some never pay: a rate of 0 / 0
    frames["payments"] = p.unionByName(_resend(p.where(F.col("_batch_date") < RESENT), 6, {"status": F.lit("failed")}))
    ch = frames["churn_events"]
    frames["churn_events"] = ch.unionByName(
        _resend(ch.where(F.col("_batch_date") < RESENT), 3, {"churn_date": F.date_add("churn_date", 2)})
    )
    for name, df in frames.items():
        tables.overwrite(df.repartition(2), buc.table(buc.sources[name].table))
    spark.catalog.clearCache()  # what the maker cached
    yield buc
    spark.sql(f"DROP DATABASE IF EXISTS {buc.database} CASCADE")


@pytest.fixture(scope="module")
def spark_features(spark, bronze):
    features.register_source_views(spark, bronze)
    return features.build_features(spark, bronze, DATES).persist()


def test_duckdb_features_equal_spark_features(spark, bronze, spark_features, tmp_path):
    files = ddf.source_files(spark, bronze)
    assert set(files) == set(bronze.sources)
    assert ({name: bool(paths) and all(p.startswith("/") and p.endswith(".parquet") for p in paths) for name, paths in files.items()}
            == dict.fromkeys(bronze.sources, True))
    tz = spark.conf.get("spark.sql.session.timeZone")

    duck = spark.createDataFrame(ddf.features_arrow(bronze, files, DATES, threads=2, time_zone=tz))
    assert duck.columns == spark_features.columns
    assert duck.schema.simpleString() == spark_features.schema.simpleString()  # same types, not only values
    assertDataFrameEqual(duck, spark_features, rtol=1e-9, atol=1e-9)

    # the comparison is not vacuous: three dates, history and nulls matter
    per_date = {r.as_of_date: r["count"] for r in spark_features.groupBy("as_of_date").count().collect()}
    assert sorted(per_date) == DATES and min(per_date.values()) > 50
    plans = (
        spark_features.where(F.col("as_of_date").isin(DATES[0], DATES[2])).groupBy("customer_id").agg(F.countDistinct("plan").alias("n"))
    )
    assert plans.where("n > 1").count() > 0  # the re-sent plan change shows at the later date only
    assert spark_features.where(F.col("failed_payment_rate_90d").isNull()).count() > 0
    assert spark_features.where(F.col("usage_trend_7d_vs_30d").isNull()).count() > 0
    assert spark_features.where(F.col("age").isNull()).count() > 0

    out = tmp_path / "features.parquet"
    res = ddf.build_features(bronze, files, DATES, out_path=str(out), threads=1, time_zone=tz)
    assert res["rows"] == spark_features.count() and res["columns"] == spark_features.columns and res["seconds"] > 0
    assertDataFrameEqual(spark.read.parquet(str(out)), spark_features, rtol=1e-9, atol=1e-9)

    in_memory = ddf.build_features(bronze, files, DATES)
    assert in_memory["rows"] == res["rows"] and in_memory["columns"] == res["columns"]
    pdf = ddf.features_frame(bronze, files, DATES[:1])
    assert len(pdf) == per_date[DATES[0]] and isinstance(pdf["as_of_date"].iloc[0], date)


def test_day_boundaries_follow_the_session_time_zone(spark, bronze):
    """Away from UTC, to_date(ts) and CAST(date AS TIMESTAMP) move; both engines move alike
    (Spark's INT96 timestamps are UTC instants; DuckDB runs in the Spark session zone)."""
    files = ddf.source_files(spark, bronze)
    utc = ddf.features_arrow(bronze, files, DATES[1:2])
    zone = "America/Los_Angeles"
    before = spark.conf.get("spark.sql.session.timeZone")
    spark.conf.set("spark.sql.session.timeZone", zone)
    try:
        features.register_source_views(spark, bronze)
        want = features.build_features(spark, bronze, DATES[1:2]).persist()
        got = spark.createDataFrame(ddf.features_arrow(bronze, files, DATES[1:2], time_zone=zone))
        assertDataFrameEqual(got, want, rtol=1e-9, atol=1e-9)
        assert spark.createDataFrame(utc).exceptAll(got).count() > 0  # the zone did change features
        want.unpersist()
    finally:
        spark.conf.set("spark.sql.session.timeZone", before)


def test_latest_per_key_views_agree(spark, bronze, spark_features):
    """The views the SQL sees: the same latest row per key as lakeml.features.latest_per_key."""
    features.register_source_views(spark, bronze)
    files = ddf.source_files(spark, bronze)
    con = ddf.connect()
    ddf._register_sources(con, bronze, files)
    got = {name: spark.createDataFrame(con.table(name).to_arrow_table()) for name in ("usage_events", "customers")}
    want = {name: spark.table(name) for name in got}
    # re-sent rows were replaced: the latest view is smaller than the history
    assert {n: spark.table(f"{n}_history").count() > w.count() for n, w in want.items()} == {"usage_events": True, "customers": True}
    assertDataFrameEqual(got["usage_events"].select(*want["usage_events"].columns), want["usage_events"])
    assertDataFrameEqual(got["customers"].select(*want["customers"].columns), want["customers"])
    con.close()


def test_to_duckdb_keeps_spark_semantics(spark):
    sql = (
        "SELECT try_divide(count(x), sum(x) - sum(x)) AS by_zero, try_divide(3, 2) AS half, 0D AS zero, "
        "date_sub(DATE'2026-03-01', 30) AS back, date_add(DATE'2026-02-27', 2) AS fwd, "
        "datediff(DATE'2026-03-01', DATE'2026-01-01') AS days, "
        "to_date(TIMESTAMP'2026-01-01 23:30:00') AS day, "
        "TIMESTAMP'2026-01-01 23:30:00' < CAST(date_add(DATE'2026-01-01', 1) AS TIMESTAMP) AS before_midnight "
        "FROM VALUES (1), (2) AS t(x)"
    )
    con = ddf.connect(time_zone=spark.conf.get("spark.sql.session.timeZone"))
    rel = con.sql(ddf.to_duckdb(sql))
    got = dict(zip(rel.columns, rel.fetchall()[0], strict=True))
    assert got == {
        "by_zero": None,  # DuckDB's own 2 / 0 is inf
        "half": 1.5,
        "zero": 0.0,
        "back": date(2026, 1, 30),
        "fwd": date(2026, 3, 1),
        "days": 59,
        "day": date(2026, 1, 1),
        "before_midnight": True,
    }
    assert [str(t) for t in rel.types][3:6] == ["DATE", "DATE", "INTEGER"]  # Spark's types, not TIMESTAMP/BIGINT
    assert spark.sql(sql).first().asDict() == got  # and Spark says the same
