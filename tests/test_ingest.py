"""Ingest: typing, quarantine with reasons, row conservation, idempotence."""

import itertools
import os
from datetime import date
from pathlib import Path

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from lakeml.core import tables
from lakeml.core.config import ColumnSpec, SourceSpec
from lakeml.core.errors import MissingDataError
from lakeml.lake import ingest, landing

SPEC = SourceSpec(
    format="csv",
    table="bronze_t",
    keys=["id"],
    columns={
        "id": ColumnSpec(type="string"),
        "n": ColumnSpec(type="int"),
        "d": ColumnSpec(type="date", required=True),
        "x": ColumnSpec(type="double"),
    },
)


def _raw(spark, rows):
    schema = "id string, n string, d string, x string, _corrupt_record string, _batch_date date, _source_file string"
    return spark.createDataFrame(rows, schema).withColumn("_problem", F.lit(None).cast("string"))


def test_validate_types_good_rows_and_explains_bad_ones(spark):
    b = date(2026, 1, 2)
    raw = _raw(
        spark,
        [
            ("a", "1", "2026-01-01", "1.5", None, b, "f1"),
            ("b", "two", "2026-01-01", "2.5", None, b, "f1"),
            (None, "3", "2026-01-01", "3.5", None, b, "f1"),
            ("c", "4", None, None, None, b, "f1"),
            ("d", "5", "yesterday", "x", None, b, "f1"),
            (None, None, None, None, "garbage,,,", b, "f1"),
            ("a", "9", "2026-01-03", "9.5", None, b, "f2"),
        ],
    )
    out = ingest.validate(raw, SPEC)
    got = {(r.id, r._reason) for r in out.select("id", "_reason").collect()}
    assert got == {
        ("a", None),
        ("b", "n: cannot read 'two' as int"),
        (None, "missing required id"),
        ("c", "missing required d"),
        ("d", "d: cannot read 'yesterday' as date (not yyyy-MM-dd); x: cannot read 'x' as double"),
        (None, "malformed record"),
        ("a", "duplicate key within batch"),
    }
    good = ingest.accepted_rows(out, SPEC)
    assert good.schema["n"].dataType.simpleString() == "int"
    assertDataFrameEqual(good.select("id", "n", "d", "x"), [("a", 1, date(2026, 1, 1), 1.5)], checkRowOrder=False)
    q = ingest.quarantined_rows(out, "t")
    assert q.count() == 6
    assert q.where(F.col("raw") == "garbage,,,").count() == 1  # the raw text survives


def test_the_keys_only_check_finds_what_the_duplicate_ranking_would_change(spark):
    """ingest types and caches the rows without the ranking (a window over whole rows) and
    ranks them only when a good row shares its key and batch with another row; silver is a
    copy of a first load's bronze when no key has good rows in two batches."""
    b, c = date(2026, 1, 2), date(2026, 1, 3)

    def shares(rows):
        raw = _raw(spark, rows)
        return ingest.key_repeats(ingest.validate(raw, SPEC, duplicates=False), SPEC).within_batch

    assert shares([("a", "1", "2026-01-01", "1", None, b, "f1"), ("a", "2", "2026-01-01", "2", None, b, "f2")])
    assert shares([("a", "one", "2026-01-01", "1", None, b, "f1"),
                   ("a", "2", "2026-01-01", "2", None, b, "f1")])  # a bad row may rank first
    assert not shares([("a", "1", "2026-01-01", "1", None, b, "f1"), ("a", "2", "2026-01-01", "2", None, c, "f1")])  # two batches
    assert not shares([("a", "1", "2026-01-01", "1", None, b, "f1"), ("b", "2", "2026-01-01", "2", None, b, "f1")])
    assert not shares([("a", "x", "2026-01-01", "1", None, b, "f1"), ("a", "y", "2026-01-01", "2", None, b, "f1")])  # no good row
    def across(rows):
        return ingest.key_repeats(ingest.validate(_raw(spark, rows), SPEC, duplicates=False), SPEC).across_batches

    assert across([("a", "1", "2026-01-01", "1", None, b, "f1"), ("a", "2", "2026-01-01", "2", None, c, "f1")])
    assert not across([("a", "1", "2026-01-01", "1", None, b, "f1"), ("a", "x", "2026-01-01", "2", None, c, "f1")])  # one good
    assert not across([("a", "1", "2026-01-01", "1", None, b, "f1"), ("a", "2", "2026-01-01", "2", None, b, "f2")])  # one batch
    # where it finds nothing, the ranking changes nothing
    raw = _raw(spark, [("a", "1", "2026-01-01", "1", None, b, "f1"), ("b", "two", "2026-01-01", "2", None, b, "f1"),
                       ("a", "3", "2026-01-01", "3", None, c, "f2"), (None, None, None, None, "garbage", b, "f1")])
    assertDataFrameEqual(ingest.validate(raw, SPEC, duplicates=False), ingest.validate(raw, SPEC))


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())


_db = itertools.count()


@pytest.fixture()
def bad_landing(tmp_path, env, uc):
    """A landing zone with every kind of bad input, next to good rows."""
    land = tmp_path / "landing"
    b1, b2 = land / uc.name / "2026-03-01", land / uc.name / "2026-03-02"  # the use case's zone
    hdr = "customer_id,signup_date,plan,monthly_fee,region,payment_method,channel,age\n"
    _write(b1 / "customers" / "a.csv", hdr + "C1,2026-01-01,basic,9.99,north,card,ads,30\n"
           "C2,not-a-date,basic,9.99,north,card,ads,31\n"
           ",2026-01-01,basic,9.99,north,card,ads,32\n"
           "C3,2026-01-01,basic,free,north,card,ads,33\n"
           "C4,2026-01-02,premium,24.99\n"  # too few fields
           "C5,2026-01-02,premium,24.99,south,card,ads,40,EXTRA\n"  # too many
           "C1,2026-01-01,basic,9.99,north,card,ads,30\n")  # duplicate key
    _write(b1 / "customers" / "header_only.csv", hdr)
    _write(b1 / "customers" / "empty.csv", "")
    _write(b2 / "customers" / "reordered.csv", "plan,customer_id,signup_date\nbasic,C9,2026-02-01\n")
    _write(b2 / "customers" / "ok.csv", hdr + "C10,2026-02-01,standard,14.99,east,paypal,organic,50\n")
    _write(
        b1 / "usage_events" / "e.jsonl",
        '{"event_id":"E1","customer_id":"C1","event_ts":"2026-02-28T10:00:00.000Z","sessions":2,"minutes_used":3.5,"device":"web"}\n'
        '{"event_id":"E2","customer_id":"C1","event_ts":"2026-02-28T11:00:00.000Z","sessions":"many","minutes_used":1.0}\n'
        '{"event_id":"E3","customer_id":"C1","event_ts":"2026-02-28T1\n'
        '{"event_id":"E4","event_ts":"2026-02-28T12:00:00.000Z","sessions":1,"extra_field":true}\n',
    )
    _write(b2 / "usage_events" / "garbage.jsonl", b"\x00\xff\xfe binary garbage \x89PNG\n")
    e = env.model_copy(update={"storage": env.storage.model_copy(update={"landing": str(land)})})
    u = uc.model_copy(update={"database": f"t_ingest_{next(_db)}"})
    return e, u


def test_bad_input_is_quarantined_and_nothing_is_lost(spark, bad_landing):
    env, uc = bad_landing
    reports = {r.source: r for r in ingest.ingest(spark, env, uc)}
    assert set(reports) == {"customers", "usage_events"}
    assert {s: r.rows_read - r.rows_accepted - r.rows_quarantined for s, r in reports.items()} == {"customers": 0, "usage_events": 0}
    # a header with the columns in another order (and without the optional ones) is read by its names
    assert (reports["customers"].rows_read, reports["customers"].rows_accepted) == (9, 3)
    assert (reports["usage_events"].rows_read, reports["usage_events"].rows_accepted) == (5, 1)
    q = spark.table(uc.table("quarantine"))
    reasons = {r.reason for r in q.collect()}
    assert {"signup_date: cannot read 'not-a-date' as date (not yyyy-MM-dd)", "missing required customer_id",
            "monthly_fee: cannot read 'free' as double", "duplicate key within batch", "sessions: cannot read 'many' as int"} <= reasons
    assert any(r.startswith("malformed record") for r in reasons)
    assert "malformed record: expected 8 fields, found 4" in reasons
    assert "malformed record: expected 8 fields, found 9" in reasons
    assert "malformed record: not a JSON object" in reasons
    c9 = spark.table(uc.table("bronze_customers")).where("customer_id = 'C9'").select("plan", "signup_date", "region", "age")
    assertDataFrameEqual(c9, [("basic", date(2026, 2, 1), None, None)])
    drift = spark.table(uc.table("ingest_log")).where(F.col("schema_drift").isNotNull()).select("source", "schema_drift")
    assertDataFrameEqual(drift, [("customers", "reordered.csv: missing: monthly_fee, region, payment_method, channel, age (null)"),
                                 ("usage_events", "e.jsonl: undeclared: extra_field (kept in _rescued_data)")], checkRowOrder=False)
    assert all(r.source_file and r.batch_date for r in q.collect())
    bronze = spark.table(uc.table("bronze_customers"))
    assertDataFrameEqual(bronze.select("customer_id", "_batch_date"),
                         [("C1", date(2026, 3, 1)), ("C9", date(2026, 3, 2)), ("C10", date(2026, 3, 2))], checkRowOrder=False)
    log = spark.table(uc.table("ingest_log")).groupBy("source").agg(F.sum("rows_read"), F.sum("rows_accepted"), F.sum("rows_quarantined"))
    assertDataFrameEqual(log, [("customers", 9, 3, 6), ("usage_events", 5, 1, 4)], checkRowOrder=False)


def test_ingesting_again_changes_nothing(spark, bad_landing):
    env, uc = bad_landing
    ingest.ingest(spark, env, uc)
    names = [uc.table(t) for t in ("bronze_customers", "bronze_usage_events", "quarantine")]
    before = {n: spark.table(n).drop("ingested_at").collect() for n in names}
    versions = {n: tables.version(spark, n) for n in names}
    assert ingest.ingest(spark, env, uc) == []  # nothing new: skipped, tables untouched
    assert {n: tables.version(spark, n) for n in names} == versions
    ingest.ingest(spark, env, uc, force=True)  # re-ingest everything: same rows
    for n in names:
        assertDataFrameEqual(spark.table(n).drop("ingested_at"), before[n], checkRowOrder=False)


def test_unknown_batch_is_an_error(spark, bad_landing):
    env, uc = bad_landing
    with pytest.raises(MissingDataError, match=r"no landing batch for 2030-01-01 under .*/landing/churn"):
        ingest.ingest(spark, env, uc, batch_dates=[date(2030, 1, 1)])


def test_an_empty_landing_zone_says_what_to_do(spark, env, uc, tmp_path):
    e = env.model_copy(update={"storage": env.storage.model_copy(update={"landing": str(tmp_path / "landing")})})
    without_maker = uc.model_copy(update={"database": f"t_ingest_{next(_db)}", "demo": None})
    with pytest.raises(MissingDataError) as err:
        ingest.ingest(spark, e, without_maker)
    msg = str(err.value)
    assert f"the landing zone {tmp_path}/landing/churn of use case churn is empty and nothing was ever ingested" in msg
    assert "<YYYY-MM-DD>/<source>/<files>" in msg and "jobs/landing.py upload" in msg
    assert "churn has no demo data maker (no demo: in" in msg
    with pytest.raises(MissingDataError, match=r"or write the demo data with ./spark-submit.sh --usecase churn jobs/generate.py"):
        ingest.ingest(spark, e, uc.model_copy(update={"database": f"t_ingest_{next(_db)}"}))


def test_a_crash_before_the_log_is_repaired_by_the_next_run(spark, bad_landing, monkeypatch):
    """New batches are appended, not replaced: the run after a crash (bronze and silver
    written, quarantine and log not) must still replace what the crashed run left, even when
    the batch's files changed in between, and end with the tables of a clean ingest."""
    env, uc = bad_landing
    b2 = next(p for p in (Path(env.landing_zone(uc.name))).iterdir() if p.name == "2026-03-02")
    aside = b2.with_name("aside")
    b2.rename(aside)
    ingest.ingest(spark, env, uc)  # the first batch, cleanly
    aside.rename(b2)

    def crash(*a, **k):
        raise RuntimeError("killed before the quarantine and the log were written")

    with monkeypatch.context() as m:
        m.setattr(ingest, "_finish", crash)
        with pytest.raises(RuntimeError, match="killed"):
            ingest.ingest(spark, env, uc)
    assert spark.table(uc.table("bronze_customers")).where(F.col("_batch_date") == date(2026, 3, 2)).count() == 2
    _write(b2 / "customers" / "ok.csv", "customer_id,signup_date,plan,monthly_fee,region,payment_method,channel,age\n"
           "C11,2026-02-01,basic,9.99,west,card,ads,41\nC12,2026-02-02,basic,bad,west,card,ads,42\n")
    reports = {r.source: r for r in ingest.ingest(spark, env, uc)}
    assert set(reports) == {"customers", "usage_events"}  # the crashed batch again, the first one not

    clean = uc.model_copy(update={"database": f"t_ingest_{next(_db)}"})
    ingest.ingest(spark, env, clean)
    for t in ("bronze_customers", "bronze_usage_events", "quarantine", "silver_customers", "silver_usage_events"):
        assertDataFrameEqual(spark.table(uc.table(t)), spark.table(clean.table(t)), checkRowOrder=False)
    cols = ["source", "batch_date", "fingerprint", "files", "rows_read", "rows_accepted", "rows_quarantined"]
    assertDataFrameEqual(spark.table(uc.table("ingest_log")).select(cols), spark.table(clean.table("ingest_log")).select(cols),
                         checkRowOrder=False)
    assert (spark.table(uc.table("bronze_customers")).where(F.col("customer_id").isin("C10", "C11")).select("customer_id").collect()
            == [("C11",)])


def test_a_file_replaced_by_another_of_the_same_size_is_ingested_again(spark, env, uc, tmp_path):
    f = tmp_path / "landing" / uc.name / "2026-03-01" / "customers" / "a.csv"
    f.parent.mkdir(parents=True)
    hdr = "customer_id,signup_date,plan,monthly_fee,region,payment_method,channel,age\n"
    f.write_text(hdr + "C1,2026-01-01,basic,9.99,north,card,ads,30\n")
    e = env.model_copy(update={"storage": env.storage.model_copy(update={"landing": str(tmp_path / "landing")})})
    u = uc.model_copy(update={"database": f"t_ingest_{next(_db)}", "sources": {"customers": uc.sources["customers"]}})
    ingest.ingest(spark, e, u)
    assert ingest.ingest(spark, e, u) == []
    size = f.stat().st_size
    f.write_text(hdr + "C1,2026-01-01,basic,9.99,south,card,ads,31\n")  # a correction, byte for byte as long
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    assert f.stat().st_size == size
    assert [r.batch_dates for r in ingest.ingest(spark, e, u)] == [[date(2026, 3, 1)]]
    assertDataFrameEqual(tables.read(spark, u.silver("customers")).select("region", "age"), [("south", 31)])


def test_a_batch_logged_before_times_were_fingerprinted_is_not_ingested_again():
    b = landing.Batch(date(2026, 3, 1), {"s": [landing.LandedFile("file:/z/2026-03-01/s/a.csv", 10, "a.csv", 1_700_000_000_000)]})
    old = b.fingerprint("s", with_times=False)
    assert not old.startswith("t:") and b.fingerprint("s").startswith("t:")
    assert b.ingested("s", {("s", b.batch_date): old}) and b.ingested("s", {("s", b.batch_date): b.fingerprint("s")})
    touched = landing.Batch(b.batch_date, {"s": [landing.LandedFile("file:/z/2026-03-01/s/a.csv", 10, "a.csv", 1_700_000_001_000)]})
    assert not touched.ingested("s", {("s", b.batch_date): b.fingerprint("s")})
