"""One landed CSV file, read exactly as RFC 4180 says: its bytes in, one row per record out.

A record ends at a line break outside quotes (CRLF, LF or a lone CR); a quoted field may hold
commas, line breaks (kept as they are: CRLF stays CRLF) and doubled quotes (read as one). A
UTF-8 byte-order mark before the header is not part of it; the last record needs no line
break. Each record comes back with the number of physical lines it spans, so that the lines
of a file, counted apart from this reader, are all accounted for: every line is in exactly
one record, a header or a blank line.

Two paths, the same result. The fast one finds the records with NumPy over the whole file
(the positions of quotes, separators and line breaks; a line break is inside quotes when an
odd number of quotes stand before it) and has Arrow's CSV parser split the good records into
values. It applies when every quote is where RFC 4180 allows one: opening a field, doubled
inside a quoted field, or closing one before a separator, a line break or the end. Any other
quote (a quote inside an unquoted field, text after a closing quote, a quote never closed)
sends the file to the exact path, record by record with regular expressions, which keeps
reading after the bad record: the record is quarantined with its raw text, the others are
read as usual. A quote never closed runs to the end of the file, as the standard reads it:
that last record is quarantined whole, with every line it swallowed.

Values are taken by the header's names, in any order (``read``: what a column conf does not
declare, or a declared one the header lacks, does). A record is quarantined, with the reason,
when it is not UTF-8 text, is longer than ``max_bytes``, follows a header that names no
usable columns (a required one missing, a name twice or empty), breaks the quoting rules, or
has another number of fields than the header. A blank line (empty, or spaces only) is no
record; neither is a repeat of the header further down (concatenated exports).
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

BOM = b"\xef\xbb\xbf"
SEP, QUOTE, LF, CR, SPACE = 44, 34, 10, 13, 32
NOT_UTF8 = "malformed record: not valid UTF-8 text"
UNCLOSED = "malformed record: a quoted field is not closed (it runs to the end of the file)"
UNDECLARED = "undeclared"
BAD_QUOTE = "malformed record: a quote inside an unquoted field, or text after a closing quote (RFC 4180)"

_QUOTED = rb'"(?:[^"]|"")*"'
_FIELD = rb"(?:" + _QUOTED + rb'|[^",\r\n]*)'
_STRICT = re.compile(_FIELD + rb"(?:," + _FIELD + rb")*")
# what a lenient reader takes for a field: a quoted one with text after its closing quote (or
# never closed: to the end), or anything up to a separator or line break (quotes included)
_LOOSE_FIELD = rb'(?:"(?:[^"]|"")*(?:"|\Z)[^,\r\n]*|[^,\r\n]*)'
_LOOSE = re.compile(_LOOSE_FIELD + rb"(?:," + _LOOSE_FIELD + rb")*")
_BREAK = re.compile(rb"\r\n|\r|\n")


@dataclass
class Records:
    """The records of one file: byte spans ``[start, end)`` without the line break, the
    physical lines and the fields of each, and the records that break the quoting rules,
    with the reason. ``begin`` is where the first record starts (after a byte-order mark)."""

    start: np.ndarray
    end: np.ndarray
    lines: np.ndarray
    fields: np.ndarray
    problems: dict[int, str]
    begin: int
    multiline: bool  # a line break inside quotes somewhere


def line_count(data: bytes) -> int:
    """Physical lines as Hadoop's line reader counts them (CRLF, LF, lone CR; a last line
    without a line break is a line)."""
    n = data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n")
    return n + (1 if data and data[-1:] not in (b"\n", b"\r") else 0)


def _breaks(a: np.ndarray) -> np.ndarray:
    """Where every line break starts (CRLF is one, at its CR)."""
    padded = np.append(a, np.uint8(0))
    lf = np.flatnonzero(a == LF)
    lf_alone = lf[(lf == 0) | (padded[lf - 1] != CR)]
    return np.sort(np.concatenate([np.flatnonzero(a == CR), lf_alone]))


def _break_end(a: np.ndarray, starts: np.ndarray) -> np.ndarray:
    padded = np.append(a, np.uint8(0))
    return starts + np.where((padded[starts] == CR) & (padded[starts + 1] == LF), 2, 1)


def _lines(a: np.ndarray, breaks: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """The physical lines of each record: the line breaks from its start to the next
    record's, and for the last one, a last line without a line break."""
    n = len(a)
    nxt = np.append(starts[1:], n)
    lines = np.searchsorted(breaks, nxt) - np.searchsorted(breaks, starts)
    if len(lines) and n and a[-1] not in (LF, CR):
        lines[-1] += 1
    if len(lines) and n == starts[-1]:  # a file of a byte-order mark only: one line
        lines[-1] = 1
    return lines.astype(np.int64)


def _quotes_in_place(a: np.ndarray, q: np.ndarray, begin: int) -> bool:
    """Whether every quote stands where RFC 4180 allows it (see the module's docstring)."""
    if len(q) % 2:
        return False
    if not len(q):
        return True
    padded = np.concatenate([np.array([LF], np.uint8), a, np.array([LF], np.uint8)])  # a boundary at both ends
    opening, closing = q[0::2], q[1::2]
    before = padded[opening]  # padded is shifted by one: padded[p] is the byte before a[p]
    at_start = (before == SEP) | (before == LF) | (before == CR) | (opening == begin)
    doubled_open = np.zeros(len(opening), bool)
    doubled_open[1:] = closing[:-1] == opening[1:] - 1
    after = padded[closing + 2]
    at_end = (after == SEP) | (after == LF) | (after == CR)
    doubled_close = np.zeros(len(closing), bool)
    doubled_close[:-1] = opening[1:] == closing[:-1] + 1
    return bool(np.all(at_start | doubled_open) and np.all(at_end | doubled_close))


def _fast(a: np.ndarray, begin: int) -> Records | None:
    """The records found with NumPy, or None when a quote is out of place (the exact path)."""
    n = len(a)
    q = np.flatnonzero(a == QUOTE)
    if not _quotes_in_place(a, q, begin):
        return None
    breaks = _breaks(a)
    # a line break is inside quotes when an odd number of quotes stands before it
    inside = (np.searchsorted(q, breaks) % 2).astype(bool)
    out = breaks[~inside]
    starts = np.concatenate([[begin], _break_end(a, out)]).astype(np.int64)
    ends = np.append(out, n).astype(np.int64)
    if starts[-1] == n and not (n == begin > 0):  # nothing after the last line break
        starts, ends = starts[:-1], ends[:-1]
    # fields: the separators of each record, less those between a pair of quotes
    seps = np.flatnonzero(a == SEP)
    fields = np.searchsorted(seps, ends) - np.searchsorted(seps, starts) + 1
    if len(q) and len(starts):
        opening, closing = q[0::2], q[1::2]
        quoted = np.searchsorted(seps, closing) - np.searchsorted(seps, opening)
        pair_record = np.searchsorted(starts, opening, side="right") - 1
        fields -= np.bincount(pair_record, weights=quoted, minlength=len(starts)).astype(np.int64)
    return Records(starts, ends, _lines(a, breaks, starts), fields, {}, begin, bool(inside.any()))


def _exact(data: bytes, a: np.ndarray, begin: int) -> Records:
    """The records one by one: a record that breaks the quoting rules is found by the loose
    pattern (where a lenient reader would end it), marked, and the next one read after it."""
    n = len(data)
    starts: list[int] = []
    ends: list[int] = []
    fields: list[int] = []
    problems: dict[int, str] = {}
    multiline = False
    pos = begin
    while pos < n or (pos == n == begin > 0):
        end = _LOOSE.match(data, pos).end()
        text = data[pos:end]
        multiline |= bool(_BREAK.search(text))
        if _STRICT.fullmatch(data, pos, end) is None:
            problems[len(starts)] = UNCLOSED if end == n and re.sub(_QUOTED, b"", text).count(b'"') % 2 else BAD_QUOTE
            fields.append(-1)
        else:
            fields.append(re.sub(_QUOTED, b"", text).count(b",") + 1)
        starts.append(pos)
        ends.append(end)
        brk = _BREAK.match(data, end)
        if brk is None:  # the loose pattern ends at a line break or at the end
            break
        pos = brk.end()
    s = np.array(starts, np.int64)
    return Records(s, np.array(ends, np.int64), _lines(a, _breaks(a), s), np.array(fields, np.int64), problems, begin, multiline)


def records(data: bytes) -> Records:
    """The records of a file's bytes (decompressed), each with its lines, fields and problem."""
    begin = 3 if data.startswith(BOM) else 0
    a = np.frombuffer(data, np.uint8)
    return _fast(a, begin) or _exact(data, a, begin)


def header_names(header: str) -> list[str]:
    """The column names of a header record (quoted names too; spaces around a name are not
    part of it)."""
    return [n.strip(" ") for n in next(csv.reader(io.StringIO(header, newline="")), [])]


def drift_of(names: list[str], columns: list[str]) -> tuple[str | None, list[str]]:
    """How a file's columns (``names``) differ from conf: ``undeclared: a, b; missing: c``
    (None when they agree), and the undeclared ones (``[a, b]``)."""
    extra = [n for n in names if n not in columns]
    missing = [c for c in columns if c not in names]
    parts = ([f"{UNDECLARED}: {', '.join(extra)}"] if extra else []) + ([f"missing: {', '.join(missing)}"] if missing else [])
    return "; ".join(parts) or None, extra


def read(data: bytes, columns: list[str], max_bytes: int, required: list[str] | tuple = (), drift: str = "rescue") -> pa.Table:
    """One file's rows: the declared ``columns`` as strings (an empty unquoted field is null,
    a quoted one the empty string), ``_corrupt_record`` (the raw text of a quarantined
    record), ``_problem`` (why), ``_skip`` ("blank", "header"), ``_lines``, ``_rescued_data``
    and ``_drift``; the good records first.

    Values are taken by the header's names, in any order. A declared column the header
    lacks is null (a ``required`` one makes the header a mismatch: every record is
    quarantined); a column conf does not declare is, by ``drift``: ``rescue`` kept in
    ``_rescued_data`` (a JSON object of the undeclared values, null when none), ``quarantine``
    every record quarantined with the columns named, ``fail`` read as with rescue (the
    ingest stops on ``_drift``). ``_drift`` says how the file's columns differ from conf
    (``drift_of``) on every row, or is null."""
    rec = records(data)
    count = len(rec.start)
    length = rec.end - rec.start
    a = np.frombuffer(data, np.uint8)

    def text(i) -> bytes:
        return data[rec.start[i]:rec.end[i]]

    bad_utf8: set[int] = set()
    try:
        data[rec.begin:].decode("utf-8")
    except UnicodeDecodeError:
        for i in range(count):
            try:
                text(i).decode("utf-8")
            except UnicodeDecodeError:
                bad_utf8.add(i)
    expected = ",".join(columns)
    header = text(0) if count else b""
    header_text = header.decode("utf-8", "replace")
    names = header_names(header_text) if count and 0 not in bad_utf8 and 0 not in rec.problems else []
    twice = sorted({n for n in names if names.count(n) > 1})
    lacking = [c for c in required if c not in names]
    if not names or not header_text.strip(" "):
        mismatch = "no header"
    elif twice or "" in names:
        mismatch = f"column {twice[0]} twice" if twice else "a column without a name"
    elif lacking:
        mismatch = f"no column {', '.join(lacking)} (required)"
    else:
        mismatch = None
    good_header = count > 0 and mismatch is None
    how, extra = drift_of(names, columns) if good_header else (None, [])
    skip: dict[int, str] = {}
    first = a[np.minimum(rec.start, len(a) - 1)] if len(a) else np.zeros(count, np.uint8)
    for i in np.flatnonzero((length == 0) | (first == SPACE)).tolist():
        if not text(i).strip(b" "):
            skip[i] = "blank"  # empty, or spaces only
    if good_header:
        skip[0] = "header"
        for i in np.flatnonzero((length == len(header)) | (length == len(header) + 3)).tolist():
            if i and i not in skip and text(i) in (header, BOM + header):
                skip[i] = "header"  # a repeat of the header (concatenated exports)
    reasons: dict[int, str] = {}
    too_long = {int(i): int(length[i]) for i in np.flatnonzero(length > max_bytes)}
    width = {int(i) for i in np.flatnonzero((rec.fields != len(names)) & (rec.fields >= 0))} if good_header else set()
    refused = bool(extra) and drift == "quarantine"
    suspects = bad_utf8 | set(too_long) | set(rec.problems) | width | (set(range(count)) if not good_header or refused else set())
    for i in sorted(suspects - set(skip)):
        if i in bad_utf8:
            reasons[i] = NOT_UTF8
        elif i in too_long:
            reasons[i] = f"line too long: {too_long[i]} bytes, the limit is {max_bytes} (max_line_bytes)"
        elif not good_header:
            reasons[i] = f"header mismatch: expected '{expected}', file has '{header_text}' ({mismatch})"
        elif refused:
            reasons[i] = f"schema drift: undeclared column(s) {', '.join(extra)} (schema_drift: quarantine)"
        elif i in rec.problems:
            reasons[i] = rec.problems[i]
        else:
            reasons[i] = f"malformed record: expected {len(names)} fields, found {int(rec.fields[i])}"
    others = sorted(set(skip) | set(reasons))
    keep = np.ones(count, bool)
    keep[others] = False
    good = np.flatnonzero(keep)
    values = _values(data, rec, good, names)
    k = len(others)
    none = pa.nulls(len(good), pa.string())
    cols = {c: pa.chunked_array([*(values.column(c).chunks if c in names else [none]), pa.nulls(k, pa.string())], pa.string())
            for c in columns}
    raw = [text(i).decode("utf-8", "replace") if i in reasons else None for i in others]
    cols["_corrupt_record"] = pa.concat_arrays([none, pa.array(raw, pa.string())])
    cols["_problem"] = pa.concat_arrays([none, pa.array([reasons.get(i) for i in others], pa.string())])
    cols["_skip"] = pa.concat_arrays([none, pa.array([skip.get(i) for i in others], pa.string())])
    cols["_lines"] = pa.array(np.concatenate([rec.lines[good], rec.lines[others]]), pa.int64())
    cols["_rescued_data"] = pa.concat_arrays([_rescued(values, extra), pa.nulls(k, pa.string())])
    cols["_drift"] = pa.array([how] * count, pa.string()) if how else pa.nulls(count, pa.string())
    return pa.table(cols)


def _rescued(values: pa.Table, extra: list[str]) -> pa.Array:
    """Per row, its values of the undeclared columns as a JSON object (null ones left out),
    or null when it has none."""
    if not extra or not values.num_rows:
        return pa.nulls(values.num_rows, pa.string())
    kept = [{k: v for k, v in r.items() if v is not None} for r in values.select(extra).to_pylist()]
    return pa.array([json.dumps(k, ensure_ascii=False, separators=(",", ":")) if k else None for k in kept], pa.string())


def _values(data: bytes, rec: Records, good: np.ndarray, columns: list[str]) -> pa.Table:
    """The good records split into values by Arrow's CSV parser (every one well formed and
    of the right width: one row each, checked)."""
    if not len(good):
        return pa.table({c: pa.array([], pa.string()) for c in columns})
    first, last = int(good[0]), int(good[-1])
    # every record ends with a line break: Arrow's parser (25.0) reads an empty last field
    # as quoted, "" instead of null, when the file ends after it without one
    end = int(rec.end[last])
    if last - first + 1 == len(good) and end < len(data):  # one run of records: the bytes as they are
        body = pa.py_buffer(data)[int(rec.start[first]):end + 1]
    elif last - first + 1 == len(good):
        body = pa.py_buffer(data[int(rec.start[first]):end] + b"\n")
    else:
        body = pa.py_buffer(b"".join(data[rec.start[i]:rec.end[i]] + b"\n" for i in good.tolist()))
    longest = int((rec.end[good] - rec.start[good]).max())
    table = pacsv.read_csv(
        body,
        read_options=pacsv.ReadOptions(column_names=columns, use_threads=False, block_size=max(1 << 24, 2 * longest + 16)),
        parse_options=pacsv.ParseOptions(newlines_in_values=rec.multiline, ignore_empty_lines=False),
        convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(columns, pa.string()), check_utf8=False, null_values=[""],
                                             strings_can_be_null=True, quoted_strings_can_be_null=False),
    )
    if table.num_rows != len(good):
        raise ValueError(f"the CSV parser made {table.num_rows} rows of {len(good)} well-formed records")
    return table
