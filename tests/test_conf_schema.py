"""A column's type changed in conf after data exists: the table changes with a logged line, or
the ingest stops before it writes anything with a message that says what to do. No value is
ever cast (on main before this, 33.5 went into an int column as 33 without a word)."""

import itertools
import logging
from datetime import date

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from lakeml.core import tables, typechange
from lakeml.core.typechange import TypeChangeError
from lakeml.lake import ingest

_db = itertools.count()
HDR = "customer_id,signup_date,plan,monthly_fee,region,payment_method,channel,age\n"


@pytest.fixture
def lake(tmp_path, env, uc):
    """Customers only: one batch ingested with the conf as it ships; ``land`` adds a batch."""
    zone = tmp_path / "landing" / uc.name

    def land(day: str, text: str) -> None:
        f = zone / day / "customers" / "a.csv"
        f.parent.mkdir(parents=True)
        f.write_text(text)

    e = env.model_copy(update={"storage": env.storage.model_copy(update={"landing": str(tmp_path / "landing")})})
    u = uc.model_copy(update={"database": f"t_conf_schema_{next(_db)}", "sources": {"customers": uc.sources["customers"]}})
    return e, u, land


def _with(uc, **types):
    """``uc`` whose customers source declares these columns with these types (None: not at all)."""
    spec = uc.sources["customers"]
    cols = {c: cs for c, cs in spec.columns.items() if types.get(c, "keep") is not None}
    for c, t in types.items():
        if t is not None:
            cols[c] = spec.columns[c].model_copy(update={"type": t}) if c in spec.columns else type(spec.columns["age"])(type=t)
    return uc.model_copy(update={"sources": {"customers": spec.model_copy(update={"columns": cols})}})


def _state(spark, uc):
    names = [uc.table(t) for t in ("bronze_customers", "silver_customers", "ingest_log")]
    return {n: tables.version(spark, n) for n in names}


def test_a_widened_type_widens_the_tables_with_a_logged_line_and_keeps_every_value(spark, lake, caplog):
    env, uc, land = lake
    land("2026-03-01", HDR + "C1,2026-01-01,basic,9.99,north,card,ads,30\n")
    ingest.ingest(spark, env, uc)
    land("2026-03-02", HDR + "C2,2026-01-01,basic,9.99,north,card,ads,33.5\n")
    with caplog.at_level(logging.WARNING):
        ingest.ingest(spark, env, _with(uc, age="double"))
    names = [uc.table("bronze_customers"), uc.table("silver_customers")]
    assert [spark.table(n).schema["age"].dataType.simpleString() for n in names] == ["double", "double"]
    assertDataFrameEqual(spark.table(names[0]).select("customer_id", "age"), [("C1", 30.0), ("C2", 33.5)], checkRowOrder=False)
    assertDataFrameEqual(spark.table(names[1]).select("customer_id", "age"), [("C1", 30.0), ("C2", 33.5)], checkRowOrder=False)
    widened = [ln for ln in caplog.messages if ln.startswith("schema change: ")]
    assert widened == [f"schema change: {n}.age widened from int to double (conf declares the wider type)" for n in names]


def test_a_narrowed_type_stops_before_anything_is_written_and_the_message_migrates(spark, lake):
    env, uc, land = lake
    land("2026-03-01", HDR + "C1,2026-01-01,basic,9.99,north,card,ads,30\nC2,2026-01-01,basic,15,north,card,ads,31\n")
    ingest.ingest(spark, env, uc)
    land("2026-03-02", HDR + "C3,2026-01-01,basic,20,north,card,ads,32\n")
    narrow = _with(uc, monthly_fee="int")
    before = _state(spark, uc)
    with pytest.raises(TypeChangeError) as err:
        ingest.ingest(spark, env, narrow)
    msg = str(err.value)
    assert f"sources.customers.columns.monthly_fee is int, {uc.table('bronze_customers')} holds it as double" in msg
    assert "Set the type back to double" in msg
    assert _state(spark, uc) == before  # nothing written
    # the migration it names: drop both tables, ingest everything again by the new conf
    drop = msg.split('./scripts/sql.sh -e "', 1)[1].split('"', 1)[0]
    for stmt in drop.split("; "):
        spark.sql(stmt)
    ingest.ingest(spark, env, narrow, force=True)
    assertDataFrameEqual(tables.read(spark, uc.table("bronze_customers")).select("customer_id", "monthly_fee"),
                         [("C2", 15), ("C3", 20)], checkRowOrder=False)
    q = tables.read(spark, uc.table("quarantine")).where(F.col("batch_date") == date(2026, 3, 1))
    assert [r.reason for r in q.collect()] == ["monthly_fee: cannot read '9.99' as int"]


def test_a_type_changed_to_another_kind_is_refused(spark, lake):
    env, uc, land = lake
    land("2026-03-01", HDR + "C1,2026-01-01,basic,9.99,north,card,ads,30\n")
    ingest.ingest(spark, env, uc)
    land("2026-03-02", HDR + "C2,2026-01-01,basic,9.99,north,card,ads,31\n")
    with pytest.raises(TypeChangeError, match=r"columns.age is string, .*bronze_customers holds it as int: not a change Delta makes"):
        ingest.ingest(spark, env, _with(uc, age="string"))


def test_a_new_column_is_added_and_a_dropped_one_is_refused_until_the_table_drops_it(spark, lake, caplog):
    env, uc, land = lake
    land("2026-03-01", HDR + "C1,2026-01-01,basic,9.99,north,card,ads,30\n")
    ingest.ingest(spark, env, uc)
    land("2026-03-02", HDR.strip() + ",tier\nC2,2026-01-01,basic,9.99,north,card,ads,31,gold\n")
    with caplog.at_level(logging.WARNING):
        ingest.ingest(spark, env, _with(uc, tier="string"))
    bronze = uc.table("bronze_customers")
    assert f"schema change: {bronze}: column tier string added (conf declares it; earlier rows read null)" in caplog.text
    assertDataFrameEqual(spark.table(bronze).select("customer_id", "tier"), [("C1", None), ("C2", "gold")], checkRowOrder=False)

    land("2026-03-03", HDR + "C3,2026-01-01,basic,9.99,north,card,ads,32\n")
    without = _with(uc, channel=None)
    with pytest.raises(TypeChangeError) as err:
        ingest.ingest(spark, env, without)
    msg = str(err.value)
    assert f"{bronze} has the column tier, which" in msg and f"{bronze} has the column channel, which" in msg
    # the commands it names drop the columns; then the ingest goes on
    for line in msg.splitlines()[1:]:
        for stmt in line.split('./scripts/sql.sh -e "', 1)[1].rstrip('"').split("; "):
            spark.sql(stmt)
    ingest.ingest(spark, env, without)
    assert "channel" not in spark.table(bronze).columns and spark.table(bronze).count() == 3


def test_a_write_that_would_cast_is_stopped_whatever_the_table(spark, tmp_path):
    name = f"t_conf_schema_{next(_db)}_w"
    tables.append(spark.createDataFrame([(1, 2)], "a int, b int"), name)
    with pytest.raises(TypeChangeError, match=rf"{name}: not written, its values would be cast \(a is int in the table, double in "
                                              r"the rows\): widen the table first: ./scripts/sql.sh -e \"ALTER TABLE"):
        tables.append(spark.createDataFrame([(1.5, 2)], "a double, b int"), name)
    with pytest.raises(TypeChangeError, match=r"b is int in the table, string in the rows\): drop .* and run the job"):
        tables.replace_where(spark.createDataFrame([(1, "x")], "a int, b string"), name, "a = 1")
    tables.append(spark.createDataFrame([(5, 6)], "a smallint, b int"), name)  # holds every value: fine
    assertDataFrameEqual(spark.table(name), [(1, 2), (5, 6)], checkRowOrder=False)
    assert typechange.changes(spark.table(name).schema, {"a": "int", "b": "bigint", "c": "string"}) == [
        typechange.Change("b", "int", "bigint")]


def test_a_derived_table_widens_itself_for_wider_rows_and_keeps_its_values(spark, caplog):
    """The features job widens its table when the rows it computes have a wider type (a
    source column widened in conf): the old snapshots read in the new type, unchanged."""
    name = f"t_conf_schema_{next(_db)}_f"
    tables.append(spark.createDataFrame([(1, 30, "a")], "d int, age int, s string"), name)
    wider = spark.createDataFrame([(2, 33.5, "b")], "d int, age double, s string")
    with caplog.at_level(logging.WARNING):
        assert tables.widen_for(wider, name) == [typechange.Change("age", "int", "double")]
    tables.replace_where(wider, name, "d = 2")
    assertDataFrameEqual(spark.table(name), [(1, 30.0, "a"), (2, 33.5, "b")], checkRowOrder=False)
    assert caplog.messages == [f"schema change: {name}.age widened from int to double (the rows written have the wider type)"]
    other = spark.createDataFrame([(3, 1.0, 7)], "d int, age double, s int")
    assert tables.widen_for(other, name) == []
    with pytest.raises(TypeChangeError, match=r"s is string in the table, int in the rows"):
        tables.replace_where(other, name, "d = 3")
