"""Malformed input against the real ingest: every kind of bad file, in CSV, JSON lines and
Parquet, each in a batch of its own, ingested in one run. For each: ingest does not crash,
rows read = accepted + quarantined (ingest_log), every accepted row is in bronze and every
rejected one in the quarantine table with its reason."""

import gzip
import itertools
import json
import random
import re
from dataclasses import dataclass, field
from datetime import date

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from lakeml.core import tables
from lakeml.core.errors import SchemaDriftError
from lakeml.lake import ingest
from lakeml.lake.readers import ConservationError, read_raw

H = "customer_id,signup_date,plan,monthly_fee,region,payment_method,channel,age"
NOT_UTF8 = "malformed record: not valid UTF-8 text"
NOT_JSON = "malformed record: not a JSON object"
GARBAGE = b"\x89PNG\n\x00\xff\xfe\xfd\n\x1f\x8b\x08\x00 binary\n"  # three lines, none of them UTF-8


TS_FORM = "ISO 8601: yyyy-MM-dd[T ]HH:mm[:ss[.SSSSSS]][Z|+HH:MM]"
NOT_FINITE = "' is not a finite number (allow_non_finite: true accepts it)"
LIMIT = 2000  # max_line_bytes of the CSV and JSON sources in these cases
TOO_LONG = re.compile(rf"line too long: \d+ bytes, the limit is {LIMIT} \(max_line_bytes\)")
UNCLOSED = "malformed record: a quoted field is not closed (it runs to the end of the file)"
BAD_QUOTE = "malformed record: a quote inside an unquoted field, or text after a closing quote (RFC 4180)"
GZ_CUT = re.compile(r"unreadable file: corrupt or truncated gzip data \(.*\)")


def _gz(text: str) -> bytes:
    return gzip.compress(text.encode())


# 20 000 events with random keys: a gzip stream of many blocks, so that a cut half-way
# breaks off inside the reader, after rows were read (the readers' retry path)
_rnd = random.Random(3)
_LONG_GZ = gzip.compress("".join(
    json.dumps({"event_id": f"Y{_rnd.getrandbits(64):x}", "customer_id": "C1", "event_ts": "2026-04-30T10:00:00.000Z"}) + "\n"
    for _ in range(20000)).encode())


def _mismatch(header: str, why: str) -> str:
    return f"header mismatch: expected '{H}', file has '{header}' ({why})"


def _cust(key: str, **kw) -> str:
    row = {"customer_id": key, "signup_date": "2026-01-01", "plan": "basic", "monthly_fee": "9.99", "region": "north",
           "payment_method": "card", "channel": "ads", "age": "30"} | kw
    return ",".join(row.values())


def _event(key: str | None, drop: tuple = (), **kw) -> str:
    row = {"event_id": key, "customer_id": "C1", "event_ts": "2026-04-30T10:00:00.000Z", "sessions": 2, "minutes_used": 3.5,
           "device": "web"} | kw
    return json.dumps({k: v for k, v in row.items() if k not in drop})


PAY = pa.schema([("payment_id", pa.string()), ("customer_id", pa.string()), ("payment_date", pa.date32()), ("amount", pa.float64()),
                 ("status", pa.string()), ("method", pa.string())])


def _pay(key, **kw) -> dict:
    return {"payment_id": key, "customer_id": "C1", "payment_date": date(2026, 5, 30), "amount": 9.99, "status": "paid",
            "method": "card"} | kw


def _parquet(rows: list[dict], schema: pa.Schema = PAY) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), sink)
    return sink.getvalue().to_pybytes()


@dataclass
class Case:
    name: str
    source: str
    day: str
    files: dict[str, str | bytes]
    read: int
    accepted: list[str]
    reasons: list = field(default_factory=list)  # exact reasons, or compiled patterns to fullmatch


CASES = [
    # ---------------------------------------------------------------- CSV (customers)
    Case("csv wrong types", "customers", "2026-04-01",
         {"a.csv": f"{H}\n{_cust('C1')}\n{_cust('C2', signup_date='2026-13-45')}\n{_cust('C3', monthly_fee='cheap', age='thirty')}\n"},
         3, ["C1"], ["signup_date: cannot read '2026-13-45' as date (no such day or time)",
                     "monthly_fee: cannot read 'cheap' as double; age: cannot read 'thirty' as int"]),
    Case("csv null keys and required values", "customers", "2026-04-02",
         {"a.csv": f"{H}\n{_cust('')}\n{_cust('   ')}\n{_cust('C4', signup_date='')}\n{_cust('C5')}\n"},
         4, ["C5"], ["missing required customer_id", "missing required customer_id", "missing required signup_date"]),
    # a column conf does not declare: rescued (the default schema_drift), its values in _rescued_data
    Case("csv extra column", "customers", "2026-04-03",
         {"a.csv": f"{H},loyalty\n{_cust('C10')},gold\n{_cust('C11')},silver\n", "b.csv": f"{H}\n{_cust('C12')}\n{_cust('C13')},EXTRA\n"},
         4, ["C10", "C11", "C12"], ["malformed record: expected 8 fields, found 9"]),
    Case("csv missing column", "customers", "2026-04-04",
         {"a.csv": f"{H.rsplit(',', 1)[0]}\n{_cust('C14').rsplit(',', 1)[0]}\n",
          "b.csv": f"{H}\n{_cust('C15').rsplit(',', 1)[0]}\n{_cust('C16')}\n{_cust('C17', monthly_fee='', region='', age='')}\n"},
         4, ["C14", "C16", "C17"], ["malformed record: expected 8 fields, found 7"]),
    Case("csv duplicate across batches (first)", "customers", "2026-04-05", {"a.csv": f"{H}\n{_cust('C23')}\n"}, 1, ["C23"]),
    Case("csv duplicate across batches (again, twice)", "customers", "2026-04-06",
         {"a.csv": f"{H}\n{_cust('C23', plan='premium')}\n{_cust('C23', plan='premium')}\n"}, 2, ["C23"], ["duplicate key within batch"]),
    Case("csv empty file beside a good one", "customers", "2026-04-07", {"empty.csv": "", "ok.csv": f"{H}\n{_cust('C20')}\n"}, 1, ["C20"]),
    Case("csv batch of one empty file", "customers", "2026-04-08", {"empty.csv": ""}, 0, []),
    Case("csv header only", "customers", "2026-04-09", {"h1.csv": f"{H}\n", "h2.csv": H, "h3.csv": "id,name\n"},
         1, [], [_mismatch("id,name", "no column customer_id, signup_date, plan (required)")]),
    Case("csv wrong header", "customers", "2026-04-10",
         {"a.csv": f"id,signup,plan,fee,region,pay,channel,age\n{_cust('C21')}\n{_cust('C22')}\n"},
         3, [], [_mismatch("id,signup,plan,fee,region,pay,channel,age", "no column customer_id, signup_date (required)")] * 3),
    Case("csv garbage bytes", "customers", "2026-04-11",
         {"garbage.csv": GARBAGE,
          "record.csv": f"{H}\n".encode() + b"C18,2026-01-01,basic,9.99,nor\xffth,card,ads,30\n" + f"{_cust('C19')}\n".encode()},
         5, ["C19"], [NOT_UTF8] * 4),
    Case("csv byte-order mark and CRLF", "customers", "2026-04-12",
         {"bom.csv": f"\ufeff{H}\n{_cust('C24')}\n", "crlf.csv": f"{H}\r\n{_cust('C25')}\r\n{_cust('C26')}\r\n"}, 3, ["C24", "C25", "C26"]),
    Case("csv RFC 4180: quoted line breaks, doubled quotes, CR line ends, no last line break", "customers", "2026-04-17",
         {"crm.csv": f"{H}\r\n" + _cust("C70", region='"north\r\nwest\nside"') + "\r\n" + _cust("C71", plan='"say ""hi"", twice"')
          + "\r\n" + _cust("C72", region='""', channel='"ads, web"'),
          "mac.csv": f"{H}\r{_cust('C73')}\r{_cust('C74', region='')}\r"},
         5, ["C70", "C71", "C72", "C73", "C74"]),
    Case("csv quote never closed", "customers", "2026-04-18",
         {"a.csv": f"{H}\n{_cust('C75')}\n" + _cust("C76", region='"north') + f"\n{_cust('C77')}\n{_cust('C78')}\n",
          "b.csv": f"{H}\n{_cust('C79')}\n"},
         3, ["C75", "C79"], [UNCLOSED]),
    Case("csv quotes out of place, and a quoted line break in a record of the wrong width", "customers", "2026-04-19",
         {"a.csv": f"{H}\n" + "\n".join([_cust("C80", region='nor"th'), _cust("C81", region='"north"west'), _cust("C82"),
                                          _cust("C83", region='"two\nlines"').rsplit(",", 1)[0]]) + "\n"},
         4, ["C82"], [BAD_QUOTE, BAD_QUOTE, "malformed record: expected 8 fields, found 7"]),
    # ---------------------------------------------------------------- JSON lines (usage_events)
    Case("json wrong types", "usage_events", "2026-05-01",
         {"a.jsonl": "\n".join([_event("E1"), _event("E2", sessions="many"), _event("E3", minutes_used="12min"),
                                _event("E4", event_ts="yesterday"), _event("E5", sessions={"n": 1}), _event("E7", sessions=True)]) + "\n"},
         6, ["E1"], ["sessions: cannot read 'many' as int", "minutes_used: cannot read '12min' as double",
                     f"event_ts: cannot read 'yesterday' as timestamp (not {TS_FORM})", "sessions: cannot read '{\"n\":1}' as int",
                     "sessions: cannot read 'true' as int"]),
    Case("json null keys and required values", "usage_events", "2026-05-02",
         {"a.jsonl": "\n".join([_event(None), _event("x", drop=("event_id",)), _event("E9", customer_id=None),
                                _event(""), _event("E10")]) + "\n"},
         5, ["E10"], ["missing required event_id"] * 3 + ["missing required customer_id"]),
    Case("json extra fields and a byte-order mark", "usage_events", "2026-05-03",
         {"a.jsonl": "\ufeff" + _event("E11", extra=1, nested={"a": [1]}) + "\n"}, 1, ["E11"]),
    Case("json missing fields", "usage_events", "2026-05-04",
         {"a.jsonl": _event("E12", drop=("sessions", "minutes_used", "device")) + "\n" + _event("E13", drop=("event_ts",)) + "\n"},
         2, ["E12"], ["missing required event_ts"]),
    Case("json duplicate across batches (first)", "usage_events", "2026-05-05", {"a.jsonl": _event("E14") + "\n"}, 1, ["E14"]),
    Case("json duplicate across batches (again, twice)", "usage_events", "2026-05-06",
         {"a.jsonl": _event("E14", sessions=3) + "\n", "b.jsonl": _event("E14", sessions=3) + "\n"},
         2, ["E14"], ["duplicate key within batch"]),
    Case("json empty and blank files", "usage_events", "2026-05-07",
         {"empty.jsonl": "", "blank.jsonl": "\n\n   \n\t\n", "ok.jsonl": _event("E15")}, 1, ["E15"]),
    Case("json truncated and run-together lines", "usage_events", "2026-05-08",
         {"a.jsonl": "\n".join([_event("E16")[:30], _event("E17")[:-1], _event("E18")[:46], _event("E20") + _event("E21"),
                                _event("E22") + " trailing", _event("E23") + "," + _event("E24"), _event("E19"), _event("E25")[:-20]])},
         8, ["E19"], [NOT_JSON] * 5 + ["malformed record: more than one JSON object on the line"] * 2),
    Case("json a key twice", "usage_events", "2026-05-12",
         {"a.jsonl": _event("E50").replace('"customer_id"', '"event_id": "E51", "customer_id"') + "\n" + _event("E52") + "\n"},
         2, ["E52"], ["malformed record: the key 'event_id' is twice in the object"]),
    Case("json compressed, cut short in its first block and half-way", "usage_events", "2026-05-13",
         {"a.jsonl.gz": _gz(_event("E60") + "\n"),
          "cut-early.jsonl.gz": _gz("".join(_event(f"X{i}") + "\n" for i in range(200)))[:300],
          "cut-late.jsonl.gz": _LONG_GZ[: len(_LONG_GZ) // 2]},
         3, ["E60"], [GZ_CUT, GZ_CUT]),
    Case("json values that are not objects", "usage_events", "2026-05-09",
         {"a.jsonl": '42\n"text"\n[1, 2]\nnull\n[' + _event("E26") + "]\n"}, 5, [], [NOT_JSON] * 5),
    Case("json garbage bytes", "usage_events", "2026-05-10",
         {"garbage.jsonl": GARBAGE, "b.jsonl": _event("E27", device="w").encode()[:-2] + b'\xff"}\n'}, 4, [], [NOT_UTF8] * 4),
    # ---------------------------------------------------------------- Parquet (payments)
    Case("parquet wrong types, and files that disagree on types", "payments", "2026-06-01",
         {"strings.parquet": _parquet([_pay("P1", amount="12.50", payment_date="2026-05-30"),
                                       _pay("P2", amount="abc", payment_date="2026-05-30"),
                                       _pay("P3", amount="1", payment_date="not a date")],
                                      pa.schema([(f.name, pa.string()) for f in PAY])),
          "typed.parquet": _parquet([_pay("P4")])},
         4, ["P1", "P4"], ["amount: cannot read 'abc' as double", "payment_date: cannot read 'not a date' as date (not yyyy-MM-dd)"]),
    Case("parquet null keys and required values", "payments", "2026-06-02",
         {"a.parquet": _parquet([_pay(None), _pay("P5", customer_id=None), _pay("P6", status=None), _pay("P7")])},
         4, ["P7"], ["missing required payment_id", "missing required customer_id", "missing required status"]),
    Case("parquet extra columns", "payments", "2026-06-03",
         {"a.parquet": _parquet([_pay("P8") | {"currency": "EUR"}], PAY.append(pa.field("currency", pa.string())))}, 1, ["P8"]),
    Case("parquet missing columns", "payments", "2026-06-04",
         {"no_method.parquet": _parquet([_pay("P10")], PAY.remove(PAY.get_field_index("method"))),
          "no_status.parquet": _parquet([_pay("P11")], PAY.remove(PAY.get_field_index("status")))},
         2, ["P10"], ["missing required status"]),
    Case("parquet duplicate across batches (first)", "payments", "2026-06-05", {"a.parquet": _parquet([_pay("P9")])}, 1, ["P9"]),
    Case("parquet duplicate across batches (again, twice)", "payments", "2026-06-06",
         {"a.parquet": _parquet([_pay("P9", amount=1.0), _pay("P9", amount=1.0)])}, 2, ["P9"], ["duplicate key within batch"]),
    Case("parquet empty file, and a file without rows", "payments", "2026-06-07",
         {"empty.parquet": b"", "no_rows.parquet": _parquet([]), "ok.parquet": _parquet([_pay("P12")])},
         2, ["P12"], ["unreadable file: not a Parquet file (length is too low: 0)"]),
    Case("parquet truncated file", "payments", "2026-06-08",
         {"cut.parquet": _parquet([_pay("P13"), _pay("P14")])[:200], "ok.parquet": _parquet([_pay("P15")])},
         2, ["P15"], [re.compile(r"unreadable file: not a Parquet file\. Expected magic number at tail, but found \[.*\]")]),
    Case("parquet garbage bytes", "payments", "2026-06-09", {"garbage.parquet": GARBAGE * 4}, 1, [],
         [re.compile(r"unreadable file: not a Parquet file.*")]),
    # ---------------------------------------------------------------- files named like real exports, sub-folders,
    # compression, long lines, values that are not exactly of their type
    Case("csv file names like real exports", "customers", "2026-04-13",
         {"Clients – export été 2026.csv": f"{H}\n{_cust('C30')}\n", "a b é.csv": f"{H}\n{_cust('C31')}\n",
          "pct%20encoded.csv": f"{H}\n{_cust('C32')}\n", "x+y [1] {a,b} #2.csv": f"{H}\n{_cust('C33')}\n{_cust('C33')}\n",
          "export 10:00.csv": f"{H}\n{_cust('C34')}\n"},
         6, ["C30", "C31", "C32", "C33"],
         ["duplicate key within batch", "unreadable file: Hadoop paths cannot hold ':' in a file or folder name; rename it"]),
    Case("csv sub-folders and a repeated header", "customers", "2026-04-14",
         {"eu/a.csv": f"{H}\n{_cust('C35')}\n", "us/west/b.csv": f"{H}\n{_cust('C36')}\n{H}\n{_cust('C37')}\n",
          "_tmp/c.csv": f"{H}\n{_cust('C99')}\n"},
         3, ["C35", "C36", "C37"]),
    Case("csv compressed", "customers", "2026-04-15",
         {"a.csv.gz": _gz(f"{H}\n{_cust('C38')}\n{_cust('C39')}\n"), "plain.csv.gz": f"{H}\n{_cust('C40')}\n",
          "cut.csv.gz": _gz(f"{H}\n" + "".join(f"{_cust(f'X{i}')}\n" for i in range(200)))[:300], "b.zip": b"PK\x03\x04 not read"},
         5, ["C38", "C39"],
         ["unreadable file: named .gz but not gzip-compressed", GZ_CUT,
          "unreadable file: .zip files are not read; land the files uncompressed, or gzip-compressed (.gz)"]),
    Case("csv values not exactly of their type", "customers", "2026-04-16",
         {"a.csv": "".join(f"{line}\n" for line in [H, _cust("C50"), _cust("C51", signup_date="2026"),
                                                    _cust("C52", signup_date="2026-01-01 garbage"),
                                                    _cust("C53", signup_date="+12026-01-01"), _cust("C54", signup_date="1812-01-01"),
                                                    _cust("C55", monthly_fee="NaN"), _cust("C56", monthly_fee="Infinity"),
                                                    _cust("C57", monthly_fee="1e400"), _cust("C58", monthly_fee="1.5d"),
                                                    _cust("C59", age="1.5"), _cust("C60", age="9999999999"),
                                                    _cust("C61", region="r" * LIMIT)])},
         12, ["C50"],
         ["signup_date: cannot read '2026' as date (not yyyy-MM-dd)",
          "signup_date: cannot read '2026-01-01 garbage' as date (not yyyy-MM-dd)",
          "signup_date: cannot read '+12026-01-01' as date (not yyyy-MM-dd)",
          "signup_date: year 1812 of '1812-01-01' is outside the plausible years 1900..2100 (years: in conf)",
          "monthly_fee: 'NaN" + NOT_FINITE, "monthly_fee: 'Infinity" + NOT_FINITE, "monthly_fee: '1e400' is beyond the range of double",
          "monthly_fee: cannot read '1.5d' as double", "age: cannot read '1.5' as int",
          "age: '9999999999' is beyond the range of int", TOO_LONG]),
    Case("json values not exactly of their type", "usage_events", "2026-05-11",
         {"Usage – été%20 +[x].jsonl.gz": _gz("\n".join([
             _event("E30"), _event("E31", minutes_used=float("nan")), _event("E32", minutes_used="__N__").replace('"__N__"', "1e400"),
             _event("E33", minutes_used="Infinity"), _event("E34", sessions=1.5), _event("E35", event_ts="2026-04-30"),
             _event("E36", event_ts="2026-04-30T10:00:00Z garbage"), _event("E37", device={"a": 1}), _event("E38", device=[1, 2]),
             _event({"k": 1}), _event("E39", customer_id=["C1"]), _event("E40", device="{not json}"), _event("E41", device="d" * LIMIT),
         ]) + "\n")},
         13, ["E30", "E40"],
         ["minutes_used: 'NaN" + NOT_FINITE, "minutes_used: '1e400' is beyond the range of double", "minutes_used: 'Infinity" + NOT_FINITE,
          "sessions: cannot read '1.5' as int", f"event_ts: cannot read '2026-04-30' as timestamp (not {TS_FORM})",
          f"event_ts: cannot read '2026-04-30T10:00:00Z garbage' as timestamp (not {TS_FORM})",
          "device: a JSON object where a string is declared", "device: a JSON array where a string is declared",
          "event_id: a JSON object where a string is declared", "customer_id: a JSON array where a string is declared", TOO_LONG]),
    Case("parquet values not exactly of their type, a file named like an export", "payments", "2026-06-10",
         {"Paiements – été%20 [1].parquet": _parquet([_pay("P20"), _pay("P21", amount=float("nan")), _pay("P22", amount=float("inf")),
                                                      _pay("P23", amount=float("-inf")), _pay("P24", payment_date=date(1800, 1, 1))])},
         5, ["P20"],
         ["amount: 'NaN" + NOT_FINITE, "amount: 'Infinity" + NOT_FINITE, "amount: '-Infinity" + NOT_FINITE,
          "payment_date: year 1800 of '1800-01-01' is outside the plausible years 1900..2100 (years: in conf)"]),
    Case("parquet struct where a string is declared", "payments", "2026-06-11",
         {"a.parquet": _parquet([_pay("P25", method={"kind": "card"})],
                                pa.schema([f if f.name != "method" else pa.field("method", pa.struct([("kind", pa.string())]))
                                           for f in PAY]))},
         1, [], ["method: a struct<kind:string> in the Parquet file where a string is declared"]),
]
KEYS = {"customers": "customer_id", "usage_events": "event_id", "payments": "payment_id"}
_db = itertools.count()


def _match_reasons(wanted: list, reasons: list[str]) -> tuple[list, list[str]]:
    """(the wanted reasons - strings or patterns - that match none of ``reasons``, the
    reasons no wanted one took); each reason matches at most one wanted."""
    left, unmatched = list(reasons), []
    for want in wanted:
        hit = next((x for x in left if (want.fullmatch(x) if isinstance(want, re.Pattern) else want == x)), None)
        if hit is None:
            unmatched.append(want)
        else:
            left.remove(hit)
    return unmatched, left


@pytest.fixture(scope="module")
def malformed(spark, env, uc, tmp_path_factory):
    """Every case landed in its own batch, then ONE ingest of the whole landing zone."""
    land = tmp_path_factory.mktemp("malformed") / "landing"
    for case in CASES:
        for name, content in case.files.items():
            p = land / uc.name / case.day / case.source / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(content if isinstance(content, bytes) else content.encode())
    e = env.model_copy(update={"storage": env.storage.model_copy(update={"landing": str(land)})})
    sources = {n: (sp.model_copy(update={"max_line_bytes": LIMIT}) if sp.format != "parquet" else sp) for n, sp in uc.sources.items()}
    u = uc.model_copy(update={"database": f"t_malformed_{next(_db)}", "sources": sources})
    reports = ingest.ingest(spark, e, u)  # must not raise
    return e, u, reports


def test_ingest_survives_every_case_and_conserves_rows(spark, malformed):
    env, uc, reports = malformed
    assert {r.source for r in reports} == set(KEYS)
    assert {r.source: r.rows_read - r.rows_accepted - r.rows_quarantined for r in reports} == dict.fromkeys(KEYS, 0)
    assert {r.source: r.batches for r in reports} == {s: sum(c.source == s for c in CASES) for s in KEYS}
    # the log's numbers are the tables' rows, for every source and batch
    per_batch = [
        spark.table(uc.table(uc.sources[s].table)).groupBy(F.lit(s).alias("source"), F.col("_batch_date").alias("batch_date"))
        .agg(F.count(F.lit(1)).alias("n"))
        for s in KEYS
    ]
    bronze = per_batch[0].unionByName(per_batch[1]).unionByName(per_batch[2])
    q = spark.table(uc.table("quarantine")).groupBy("source", "batch_date").agg(F.count(F.lit(1)).alias("q"))
    log = spark.table(uc.table("ingest_log"))
    joined = log.join(bronze, ["source", "batch_date"], "left").join(q, ["source", "batch_date"], "left")
    got = joined.select("source", "batch_date", "rows_read", F.coalesce("n", F.lit(0)).alias("a"), F.coalesce("q", F.lit(0)).alias("q"))
    expected = [(c.source, date.fromisoformat(c.day), c.read, len(c.accepted), c.read - len(c.accepted)) for c in CASES]
    assertDataFrameEqual(got, expected, checkRowOrder=False)
    assert spark.table(uc.table("quarantine")).where(F.col("reason").isNull() | (F.trim("reason") == "")).count() == 0


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(spark, malformed, case):
    _, uc, _ = malformed
    day = date.fromisoformat(case.day)
    log = spark.table(uc.table("ingest_log")).where((F.col("source") == case.source) & (F.col("batch_date") == day)).collect()
    assert len(log) == 1
    assert (log[0].files, log[0].rows_read, log[0].rows_accepted, log[0].rows_quarantined) == (
        len([n for n in case.files if not n.startswith("_")]), case.read, len(case.accepted), case.read - len(case.accepted)
    )
    assert log[0].rows_read == log[0].rows_accepted + log[0].rows_quarantined
    bronze = spark.table(uc.table(uc.sources[case.source].table)).where(F.col("_batch_date") == day)
    assert sorted(r[0] for r in bronze.select(KEYS[case.source]).collect()) == sorted(case.accepted)
    q = spark.table(uc.table("quarantine")).where((F.col("source") == case.source) & (F.col("batch_date") == day)).collect()
    assert len(q) == case.read - len(case.accepted)
    assert all(r.reason and r.reason.strip() for r in q)
    landed = {f"/{case.day}/{case.source}/{name}" for name in case.files if not name.startswith("_")}
    assert all(any(r.source_file.endswith(f) for f in landed) for r in q)  # the real path, not URL-encoded
    assert all(any(r._source_file.endswith(f) for f in landed) for r in bronze.select("_source_file").collect())
    # the log counts every file, each with its rows; hidden ones (_tmp/) are not data
    per_file = {f.file: (f.rows_read, f.rows_accepted, f.rows_quarantined) for f in log[0].file_counts}
    assert set(per_file) == {n for n in case.files if not n.startswith("_")}
    assert all(r == a + q_ for r, a, q_ in per_file.values())
    assert tuple(map(sum, zip(*per_file.values(), strict=True))) == (case.read, len(case.accepted), case.read - len(case.accepted))
    assert all(r.raw is not None for r in q)
    unmatched, left = _match_reasons(case.reasons, sorted(r.reason for r in q))
    assert unmatched == [], f"expected reasons not found; the quarantine has {left}"
    assert not case.reasons or not left, f"unexpected reasons {left}"


def test_raw_text_of_rejected_lines_is_kept_readable(spark, malformed):
    _, uc, _ = malformed
    q = spark.table(uc.table("quarantine"))
    raws = {r.raw for r in q.where(F.col("batch_date") == date(2026, 5, 8)).collect()}
    assert _event("E20") + _event("E21") in raws  # two objects on a line: kept whole, not cut to the first
    assert _event("E22") + " trailing" in raws
    utf8 = q.where((F.col("batch_date") == date(2026, 4, 11)) & (F.col("reason") == NOT_UTF8)).collect()
    assert "C18,2026-01-01,basic,9.99,nor\ufffdth,card,ads,30" in {r.raw for r in utf8}  # stored as valid text
    header_rows = q.where(F.col("reason").startswith("header mismatch") & (F.col("batch_date") == date(2026, 4, 10))).collect()
    assert sorted(r.raw for r in header_rows) == [_cust("C21"), _cust("C22"), "id,signup,plan,fee,region,pay,channel,age"]


def test_rfc_4180_values_are_kept_exactly_and_broken_records_whole(spark, malformed):
    _, uc, _ = malformed
    bronze = spark.table(uc.table("bronze_customers")).where(F.col("_batch_date") == date(2026, 4, 17))
    got = bronze.select("customer_id", "plan", "region", "channel")  # an empty value, quoted or not, is missing: null
    assertDataFrameEqual(got, [("C70", "basic", "north\r\nwest\nside", "ads"), ("C71", 'say "hi", twice', "north", "ads"),
                               ("C72", "basic", None, "ads, web"), ("C73", "basic", "north", "ads"), ("C74", "basic", None, "ads")],
                         checkRowOrder=False)
    q = spark.table(uc.table("quarantine")).where(F.col("batch_date").isin(date(2026, 4, 18), date(2026, 4, 19)))
    raws = {r.reason: r.raw for r in q.where(F.col("reason") != BAD_QUOTE).collect()}
    # a quote never closed swallows the rest of its file, as the standard reads it; nothing is lost
    assert raws[UNCLOSED] == _cust("C76", region='"north') + f"\n{_cust('C77')}\n{_cust('C78')}\n"
    assert raws["malformed record: expected 8 fields, found 7"] == _cust("C83", region='"two\nlines"').rsplit(",", 1)[0]


def test_undeclared_columns_are_rescued_in_every_format_and_logged(spark, malformed):
    _, uc, reports = malformed

    def rescued(source, key):
        return spark.table(uc.table(uc.sources[source].table)).where(F.col(KEYS[source]).isin(key)).select(KEYS[source], "_rescued_data")

    assertDataFrameEqual(rescued("customers", ["C10", "C11", "C12", "C14"]),
                         [("C10", '{"loyalty":"gold"}'), ("C11", '{"loyalty":"silver"}'), ("C12", None), ("C14", None)])
    assertDataFrameEqual(rescued("usage_events", ["E11", "E12"]), [("E11", '{"extra":"1","nested":"{\\"a\\":[1]}"}'), ("E12", None)])
    assertDataFrameEqual(rescued("payments", ["P8", "P7"]), [("P8", '{"currency":"EUR"}'), ("P7", None)])
    log = spark.table(uc.table("ingest_log")).where(F.col("schema_drift").isNotNull())
    assertDataFrameEqual(log.select("source", "batch_date", "schema_drift"), [
        ("customers", date(2026, 4, 3), "a.csv: undeclared: loyalty (kept in _rescued_data)"),
        ("customers", date(2026, 4, 4), "a.csv: missing: age (null)"),
        ("usage_events", date(2026, 5, 3), "a.jsonl: undeclared: extra, nested (kept in _rescued_data)"),
        ("payments", date(2026, 6, 3), "a.parquet: undeclared: currency (kept in _rescued_data)"),
    ])
    drift = {r.source: r.schema_drift for r in reports}
    assert [x.rsplit("/", 3)[-3:] for x in drift["customers"]] == [
        ["2026-04-03", "customers", "a.csv: undeclared: loyalty (kept in _rescued_data)"],
        ["2026-04-04", "customers", "a.csv: missing: age (null)"]]


def _drifting(uc, root, day: str) -> None:
    """One file with an undeclared column per format, beside a file without."""
    _landed(uc, root, day, "customers", {"new.csv": f"{H},loyalty\n{_cust('D1')},gold\n", "ok.csv": f"{H}\n{_cust('D2')}\n"})
    _landed(uc, root, day, "usage_events", {"a.jsonl": _event("F1", tier="x") + "\n" + _event("F2") + "\n"})
    p = root / uc.name / day / "payments" / "a.parquet"
    p.parent.mkdir(parents=True, exist_ok=True)
    with_currency = PAY.append(pa.field("currency", pa.string()))
    p.write_bytes(_parquet([_pay("Q1") | {"currency": "EUR"}, _pay("Q2") | {"currency": None}], with_currency))


def _with_policy(env, uc, root, policy: str):
    e = env.model_copy(update={"storage": env.storage.model_copy(update={"landing": str(root)})})
    sources = {n: uc.sources[n].model_copy(update={"schema_drift": policy}) for n in KEYS}
    return e, uc.model_copy(update={"database": f"t_drift_{policy}_{next(_db)}", "sources": sources})


def test_schema_drift_quarantine_keeps_the_rows_out_with_their_raw_values(spark, env, uc, tmp_path):
    e, u = _with_policy(env, uc, tmp_path, "quarantine")
    _drifting(u, tmp_path, "2026-07-01")
    reports = ingest.ingest(spark, e, u)
    assert {r.source: (r.rows_read, r.rows_accepted) for r in reports} == {"customers": (2, 1), "usage_events": (2, 1), "payments": (2, 1)}
    q = spark.table(u.table("quarantine")).select("source", "raw", "reason")
    assertDataFrameEqual(q, [
        ("customers", f"{_cust('D1')},gold", "schema drift: undeclared column(s) loyalty (schema_drift: quarantine)"),
        ("usage_events", _event("F1", tier="x"), "schema drift: undeclared field(s) tier (schema_drift: quarantine)"),
        ("payments", '{"payment_id":"Q1","customer_id":"C1","payment_date":"2026-05-30","amount":9.99,"status":"paid","method":"card",'
                     '"currency":"EUR"}', "schema drift: undeclared column(s) currency (schema_drift: quarantine)"),
    ])


def test_schema_drift_fail_stops_before_writing_and_names_the_files(spark, env, uc, tmp_path):
    e, u = _with_policy(env, uc, tmp_path, "fail")
    _drifting(u, tmp_path, "2026-07-02")
    with pytest.raises(SchemaDriftError) as err:
        ingest.ingest(spark, e, u)
    first = str(err.value).splitlines()[0]
    assert re.fullmatch(r"(customers|usage_events|payments): 1 landed file\(s\) have columns conf does not declare \(schema_drift: fail\); "
                        r"nothing of \w+ was written\. Declare the columns in conf, or set schema_drift: rescue or quarantine:", first)
    assert str(err.value).splitlines()[1].endswith(("new.csv: undeclared: loyalty", "a.jsonl: undeclared: tier",
                                                   "a.parquet: undeclared: currency"))
    assert not spark.catalog.tableExists(u.table("ingest_log"))  # nothing is done: the next run tries again


def test_a_bronze_table_from_before_rescued_data_gets_the_column(spark, env, uc, tmp_path):
    e, u = _with_policy(env, uc, tmp_path, "rescue")
    _landed(u, tmp_path, "2026-07-03", "customers", {"new.csv": f"{H},loyalty\n{_cust('G1')},gold\n{_cust('G2')}\n"})
    u = u.model_copy(update={"sources": {"customers": u.sources["customers"]}})
    bronze = u.table("bronze_customers")
    ingest.ingest(spark, e, u)
    expected = spark.table(bronze).collect()
    old = u.model_copy(update={"database": f"t_drift_old_{next(_db)}"})
    tables.ensure_database(spark, old.database)
    tables.append(spark.table(bronze).drop("_rescued_data").limit(0), old.table("bronze_customers"))  # the schema of before
    ingest.ingest(spark, e, old)
    assertDataFrameEqual(spark.table(old.table("bronze_customers")), expected, checkRowOrder=False)


def test_reingesting_malformed_input_changes_nothing(spark, malformed):
    env, uc, _ = malformed
    names = [uc.table(t) for t in ("bronze_customers", "bronze_usage_events", "bronze_payments", "quarantine")]
    before = {n: spark.table(n).collect() for n in names}
    assert ingest.ingest(spark, env, uc) == []  # nothing changed: nothing to do
    ingest.ingest(spark, env, uc, force=True)
    for n in names:
        assertDataFrameEqual(spark.table(n), before[n], checkRowOrder=False)


def _landed(uc, root, day: str, source: str, files: dict[str, str]) -> None:
    for name, text in files.items():
        p = root / uc.name / day / source / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def test_lines_lost_between_the_files_and_the_tables_stop_the_ingest_naming_the_file(spark, env, uc, tmp_path, monkeypatch):
    """Rows are counted from the files apart from the reader: a reader that loses a line (the
    bug behind names with a space, once) stops the ingest with the file's name, and nothing
    of the source is written."""
    land = tmp_path / "landing"
    _landed(uc, land, "2026-04-01", "customers", {"a.csv": f"{H}\n{_cust('C1')}\n", "b c.csv": f"{H}\n{_cust('C2')}\n{_cust('C3')}\n"})
    e = env.model_copy(update={"storage": env.storage.model_copy(update={"landing": str(land)})})
    u = uc.model_copy(update={"database": f"t_malformed_{next(_db)}"})
    real = ingest.read_raw
    monkeypatch.setattr(ingest, "read_raw",
                        lambda *a, **k: real(*a, **k).where(F.col("customer_id").isNull() | (F.col("customer_id") != "C3")))
    with pytest.raises(ConservationError, match=r"(?s)customers: rows of 1 landed file.*/b c\.csv: 3 lines in the file, 2 read"):
        ingest.ingest(spark, e, u)
    assert not spark.catalog.tableExists(u.table("bronze_customers")) and not spark.catalog.tableExists(u.table("ingest_log"))
    monkeypatch.undo()
    [rep] = ingest.ingest(spark, e, u)
    assert (rep.rows_read, rep.rows_accepted) == (3, 3)


def test_a_long_valid_json_line_is_accepted_by_default(spark, uc, tmp_path):
    """20 MB in one string value: within the default max_line_bytes (32 MiB), read whole."""
    f = tmp_path / "2026-05-01" / "usage_events" / "big.jsonl"
    f.parent.mkdir(parents=True)
    f.write_text(_event("E1", device="d" * 20_000_000) + "\n" + _event("E2") + "\n")
    spec = uc.sources["usage_events"]
    v = ingest.validate(read_raw(spark, spec, [f"file:{f}"]), spec)
    got = {r.event_id: (r.n, r._reason) for r in v.select("event_id", F.length("device").alias("n"), "_reason").collect()}
    assert got == {"E1": (20_000_000, None), "E2": (3, None)}


def test_a_colon_is_refused_in_the_path_not_in_the_host_port():
    """Hadoop paths cannot hold ':' in a name; hdfs://host:port is no name."""
    from lakeml.lake.readers import unreadable_reason

    colon = "unreadable file: Hadoop paths cannot hold ':' in a file or folder name; rename it"
    paths = ["hdfs://127.0.0.1:9000/landing/churn/2026-01-01/customers/a.csv", "file:/tmp/a.csv", "hdfs://nn:8020/l/x 10:00.csv",
             "file:/tmp/x:y.csv"]
    assert [unreadable_reason(None, p, "csv") for p in paths] == [None, None, colon, colon]
