"""A batch folder dated in the future (a mistyped year, a sender's clock set wrong) is not
data: ingest leaves it in landing untouched, names it, and ingests the rest; silver, the
ingest log (and so features and labels, which take their dates from it) hold nothing of it."""

import itertools
import logging
import shutil
from datetime import date, timedelta
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from lakeml.core import tables
from lakeml.core.errors import MissingDataError
from lakeml.features import views
from lakeml.lake import ingest, landing

_db = itertools.count()
TODAY = date(2026, 3, 3)


def _batch(day: date) -> landing.Batch:
    return landing.Batch(day, {"s": [landing.LandedFile(f"file:/z/{day}/s/a.csv", 10)]})


def test_a_folder_beyond_today_and_the_tolerance_is_refused():
    batches = [_batch(TODAY - timedelta(days=1)), _batch(TODAY), _batch(TODAY + timedelta(days=1)),
               _batch(TODAY + timedelta(days=2)), _batch(date(2062, 3, 2))]
    kept, refused = landing.refuse_future(batches, "file:/z/", 1, today=TODAY)
    assert [b.batch_date for b in kept] == [TODAY - timedelta(days=1), TODAY, TODAY + timedelta(days=1)]
    assert [(r.folder, r.batch_date) for r in refused] == [("file:/z/2026-03-05", date(2026, 3, 5)),
                                                          ("file:/z/2062-03-02", date(2062, 3, 2))]
    assert refused[1].reason == ("dated 13148 days after today (2026-03-03, UTC); landing.max_days_ahead is 1: "
                                 "left in landing, not ingested")
    kept, refused = landing.refuse_future(batches, "file:/z", 0, today=TODAY)
    assert len(kept) == 2 and refused[0].folder == "file:/z/2026-03-04"


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def zone_with_a_typo(tmp_path, env, uc):
    """Two real batches and a copy of the second under a year typed wrong (2062 for 2026),
    whose rows say other things (a later version of a customer)."""
    land = tmp_path / "landing"
    hdr = "customer_id,signup_date,plan,monthly_fee,region,payment_method,channel,age\n"
    for day, rows in (("2026-03-01", "C1,2026-01-01,basic,9.99,north,card,ads,30\n"),
                      ("2026-03-02", "C2,2026-02-01,standard,14.99,east,paypal,organic,50\n"),
                      ("2062-03-02", "C1,2026-01-01,premium,24.99,south,card,ads,30\n")):
        f = land / uc.name / day / "customers" / "part-0.csv"
        f.parent.mkdir(parents=True)
        f.write_text(hdr + rows)
    e = env.model_copy(update={"storage": env.storage.model_copy(update={"landing": str(land)})})
    u = uc.model_copy(update={"database": f"t_future_{next(_db)}"})
    return e, u, land / uc.name / "2062-03-02"


def test_ingest_leaves_a_future_folder_in_landing_and_ingests_the_rest(spark, zone_with_a_typo):
    env, uc, typo = zone_with_a_typo
    before = _files(typo)
    done = ingest.ingest(spark, env, uc)
    assert [(r.source, r.batch_dates) for r in done] == [("customers", [date(2026, 3, 1), date(2026, 3, 2)])]
    assert [(r.folder, r.batch_date) for r in done.refused] == [(f"{env.landing_zone(uc.name)}/2062-03-02", date(2062, 3, 2))]
    assert _files(typo) == before  # untouched
    bronze = tables.read(spark, uc.table("bronze_customers"))
    assert bronze.agg(F.max("_batch_date")).first()[0] == date(2026, 3, 2)
    # silver keeps C1's real version, not the one of the future folder
    assert [r.plan for r in tables.read(spark, uc.silver("customers")).where("customer_id = 'C1'").collect()] == ["basic"]
    # features and labels take their dates from the ingest log: the newest is the real one
    assert views.batch_range(spark, uc)[1] == date(2026, 3, 2)
    # a run again refuses it again and changes nothing
    again = ingest.ingest(spark, env, uc)
    assert list(again) == [] and len(again.refused) == 1
    with pytest.raises(MissingDataError, match=r"2062-03-02: dated \d+ days after today .*landing.max_days_ahead is 1"):
        ingest.ingest(spark, env, uc, batch_dates=[date(2062, 3, 2)])


def test_a_folder_renamed_to_its_real_date_is_ingested_by_the_next_run(spark, zone_with_a_typo):
    env, uc, typo = zone_with_a_typo
    ingest.ingest(spark, env, uc)
    shutil.move(typo, typo.with_name("2026-03-03"))
    done = ingest.ingest(spark, env, uc)
    assert [r.batch_dates for r in done] == [[date(2026, 3, 3)]] and done.refused == []
    assert [r.plan for r in tables.read(spark, uc.silver("customers")).where("customer_id = 'C1'").collect()] == ["premium"]


def test_a_zone_of_future_folders_only_says_so(spark, env, uc, tmp_path):
    f = tmp_path / "landing" / uc.name / "2099-01-01" / "customers" / "a.csv"
    f.parent.mkdir(parents=True)
    f.write_text("customer_id\nC1\n")
    e = env.model_copy(update={"storage": env.storage.model_copy(update={"landing": str(tmp_path / "landing")})})
    u = uc.model_copy(update={"database": f"t_future_{next(_db)}"})
    with pytest.raises(MissingDataError, match=r"nothing to ingest in .*: every batch folder is refused \(.*/2099-01-01: dated"):
        ingest.ingest(spark, e, u)


def test_the_tolerance_is_conf(spark, zone_with_a_typo):
    env, uc, typo = zone_with_a_typo
    shutil.move(typo, typo.with_name((landing.today_utc() + timedelta(days=3)).isoformat()))
    assert len(ingest.ingest(spark, env, uc).refused) == 1
    lenient = uc.model_copy(update={"landing": uc.landing.model_copy(update={"max_days_ahead": 3})})
    done = ingest.ingest(spark, env, lenient)
    assert done.refused == [] and [r.batch_dates[-1] for r in done] == [landing.today_utc() + timedelta(days=3)]


def test_what_ingest_does_not_read_is_named(spark, zone_with_a_typo, caplog):
    """A folder that is not a date, a file outside a source folder and a source conf does
    not declare are not read, each with a line that says so (hidden ones are not data)."""
    env, uc, typo = zone_with_a_typo
    zone = typo.parent
    for rel in ("notes.txt", "misc/a.csv", "2026-03-01/readme.txt", "2026-03-01/crm/a.csv", "_demo.json", "2026-03-01/.x"):
        (zone / rel).parent.mkdir(parents=True, exist_ok=True)
        (zone / rel).write_text("x\n")
    with caplog.at_level(logging.WARNING, logger="lakeml"):
        ingest.ingest(spark, env, uc)
    unread = sorted(m.split(": ", 1) for m in caplog.messages if m.endswith(": not read"))
    assert unread == [[f"{zone}/2026-03-01/crm", f"not a source of use case churn (sources: in {uc.source_file}): not read"],
                      [f"{zone}/2026-03-01/readme.txt", "a file outside a source folder (<date>/<source>/<files>): not read"],
                      [f"{zone}/misc", "not an arrival-date folder (YYYY-MM-DD): not read"],
                      [f"{zone}/notes.txt", "not an arrival-date folder (YYYY-MM-DD): not read"]]
