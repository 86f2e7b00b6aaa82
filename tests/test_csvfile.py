"""The RFC 4180 reader (lakeml.lake.csvfile) on its own, no Spark: values against files
written field by field, the fast path against the exact one, and every physical line of a
file in exactly one record, whatever the bytes."""

import csv
import io
import random

import numpy as np
import pytest

from lakeml.lake import csvfile

COLS = ["id", "note", "amount"]
HEADER = ",".join(COLS)


def _rows(table) -> list[dict]:
    return table.to_pylist()


def _good(table) -> list[tuple]:
    return [tuple(r[c] for c in COLS) for r in _rows(table) if r["_problem"] is None and r["_skip"] is None]


def _field(value: str | None, rng: random.Random) -> str:
    """A value as a CSV writer sends it: quoted when it must be, sometimes when it need not."""
    if value is None:
        return ""
    if value == "" or any(ch in value for ch in ',"\r\n') or rng.random() < 0.2:
        return '"' + value.replace('"', '""') + '"'
    return value


def _value(rng: random.Random) -> str | None:
    alphabet = ["a", "é", " ", ",", '"', "\n", "\r\n", "\r", "x", "1", "€"]
    if rng.random() < 0.1:
        return None
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6))).strip(" ") or rng.choice(["", "v"])


@pytest.mark.parametrize("seed", range(40))
def test_values_are_exactly_the_written_ones(seed):
    rng = random.Random(seed)
    rows = [(f"K{i}", _value(rng), _value(rng)) for i in range(rng.randint(1, 60))]
    eol = rng.choice(["\n", "\r\n"])
    text = HEADER + eol + eol.join(",".join(_field(v, rng) for v in row) for row in rows)
    text = text + (eol if rng.random() < 0.5 else "")  # the last record may have no line break
    data = (b"\xef\xbb\xbf" if rng.random() < 0.3 else b"") + text.encode()
    table = csvfile.read(data, COLS, 10_000)
    assert _good(table) == rows  # an unquoted empty field is null, a quoted one the empty string
    assert table.column("_problem").null_count == table.num_rows
    assert sum(table.column("_lines").to_pylist()) == csvfile.line_count(data)
    # Python's csv module reads the same values (it has no null: None is "")
    py = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))[1:]
    assert [tuple(v or "" for v in r) for r in rows] == [tuple(r) for r in py]


def test_a_quoted_line_break_is_kept_as_sent_and_its_lines_counted():
    data = b'id,note,amount\r\nK1,"line one\r\nline two\nthree",1\r\nK2,"say ""hi"", twice",2\rK3,,'
    table = csvfile.read(data, COLS, 10_000)
    assert _good(table) == [("K1", "line one\r\nline two\nthree", "1"), ("K2", 'say "hi", twice', "2"), ("K3", None, None)]
    assert table.column("_lines").to_pylist() == [3, 1, 1, 1]  # K1, K2, K3, the header (the others after the good ones)
    assert csvfile.line_count(data) == 6


@pytest.mark.parametrize(("text", "reason", "raw"), [
    (b'K1,"open,1\nK2,b,2\n', csvfile.UNCLOSED, 'K1,"open,1\nK2,b,2\n'),
    (b'K1,no"te,1\n', csvfile.BAD_QUOTE, 'K1,no"te,1'),
    (b'K1,"note"x,1\n', csvfile.BAD_QUOTE, 'K1,"note"x,1'),
    (b'K1,"two\nlines"\n', "malformed record: expected 3 fields, found 2", 'K1,"two\nlines"'),
])
def test_a_record_that_breaks_the_format_is_quarantined_with_its_raw_text(text, reason, raw):
    data = b"id,note,amount\nK0,a,0\n" + text + (b"" if reason == csvfile.UNCLOSED else b"K9,z,9\n")
    table = csvfile.read(data, COLS, 10_000)
    bad = [r for r in _rows(table) if r["_problem"] is not None]
    assert [(r["_problem"], r["_corrupt_record"]) for r in bad] == [(reason, raw)]
    assert _good(table) == [("K0", "a", "0")] + ([] if reason == csvfile.UNCLOSED else [("K9", "z", "9")])
    assert sum(table.column("_lines").to_pylist()) == csvfile.line_count(data)


def test_header_blank_lines_and_repeated_header_are_no_records():
    data = b"\xef\xbb\xbfid,note,amount\n\n   \nK1,a,1\nid,note,amount\nK2,b,2\n"
    table = csvfile.read(data, COLS, 10_000)
    assert _good(table) == [("K1", "a", "1"), ("K2", "b", "2")]
    assert sorted(s for s in table.column("_skip").to_pylist() if s) == ["blank", "blank", "header", "header"]


def test_reason_precedence_utf8_then_length_then_header():
    data = b"id,note,amount\nK1,\xff,1\nK2," + b"y" * 50 + b",2\nK3,\"a\"b,3\n"
    table = csvfile.read(data, COLS, 40)
    assert [r["_problem"] for r in _rows(table) if r["_problem"]] == [
        csvfile.NOT_UTF8, "line too long: 55 bytes, the limit is 40 (max_line_bytes)", csvfile.BAD_QUOTE]
    wrong = csvfile.read(b"key,amount\nK1,1\n", COLS, 40, required=["id"])
    assert {r["_problem"] for r in _rows(wrong)} == {
        "header mismatch: expected 'id,note,amount', file has 'key,amount' (no column id (required))"}


@pytest.mark.parametrize(("header", "why"), [("id,note,note", "column note twice"), ("id,,amount", "a column without a name"),
                                             ("", "no header")])
def test_a_header_that_names_no_columns_clearly_quarantines_the_file(header, why):
    table = csvfile.read(f"{header}\nK1,a,1\n".encode(), COLS, 1000, required=["id"])
    assert {(r["_problem"], r["_corrupt_record"]) for r in _rows(table) if r["_problem"]} >= {
        (f"header mismatch: expected '{HEADER}', file has '{header}' ({why})", "K1,a,1")}
    assert _good(table) == []


def test_columns_are_taken_by_name_and_a_missing_optional_one_is_null():
    table = csvfile.read(b'amount,"id"\n1,K1\n2,K2\n', COLS, 1000, required=["id"])
    assert _good(table) == [("K1", None, "1"), ("K2", None, "2")]
    assert set(table.column("_drift").to_pylist()) == {"missing: note"}
    assert table.column("_rescued_data").null_count == table.num_rows


def test_undeclared_columns_are_rescued_quarantined_or_flagged_by_the_policy():
    data = b"id,loyalty,note,amount,tier\nK1,gold,a,1,\nK2,,b,2,\nK3,silver,c,3,x\n"
    rescued = csvfile.read(data, COLS, 1000, required=["id"], drift="rescue")
    assert _good(rescued) == [("K1", "a", "1"), ("K2", "b", "2"), ("K3", "c", "3")]
    assert rescued.column("_rescued_data").to_pylist()[:3] == ['{"loyalty":"gold"}', None, '{"loyalty":"silver","tier":"x"}']
    assert set(rescued.column("_drift").to_pylist()) == {"undeclared: loyalty, tier"}
    refused = csvfile.read(data, COLS, 1000, required=["id"], drift="quarantine")
    assert _good(refused) == []
    assert [(r["_problem"], r["_corrupt_record"]) for r in _rows(refused) if r["_problem"]] == [
        ("schema drift: undeclared column(s) loyalty, tier (schema_drift: quarantine)", raw)
        for raw in ("K1,gold,a,1,", "K2,,b,2,", "K3,silver,c,3,x")]
    flagged = csvfile.read(data, COLS, 1000, required=["id"], drift="fail")
    assert _good(flagged) == _good(rescued)
    assert set(flagged.column("_drift").to_pylist()) == {"undeclared: loyalty, tier"}


@pytest.mark.parametrize("seed", range(300))
def test_every_line_is_in_one_record_and_both_paths_agree(seed):
    """Random bytes from the characters that matter: the records cover the file, each line is
    counted once, and where the fast path applies the exact one finds the same records."""
    rng = random.Random(seed)
    data = "".join(rng.choice(['"', ",", "\n", "\r", "\r\n", "a", " ", '""']) for _ in range(rng.randint(0, 40))).encode()
    table = csvfile.read(data, COLS, 10_000)
    assert sum(table.column("_lines").to_pylist()) == csvfile.line_count(data)
    a = np.frombuffer(data, np.uint8)
    fast = csvfile._fast(a, 0)
    exact = csvfile._exact(data, a, 0)
    def found(r):
        return r and (r.start.tolist(), r.end.tolist(), r.lines.tolist(), r.fields.tolist(), r.problems)

    assert fast is None or found(fast) == found(exact)
