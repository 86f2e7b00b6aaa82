"""The strict JSON line reader (``lakeml.spark.JsonLine``, jvm/src) against Python's json
module: values exactly as written, every key twice found, standard JSON only; over random
objects and random damage to them."""

from __future__ import annotations

import json
import random

import pytest
from pyspark.sql import functions as F

from lakeml.lake import readers

COLS = {"id": "string", "n": "int", "x": "double", "s": "string", "t": "timestamp"}
MORE = "malformed record: more than one JSON object on the line"
NOT_JSON = "malformed record: not a JSON object"


def _conf(policy: str = "rescue", max_bytes: int = 100_000) -> str:
    return "\u0001".join([str(max_bytes), policy, *[x for c, t in COLS.items() for x in (c, t)]])


@pytest.fixture(scope="module")
def read(spark):
    spark.udf.registerJavaFunction(readers.JSON_LINE, "lakeml.spark.JsonLine", readers.JSON_LINE_TYPE)

    def run(lines: list[str], policy: str = "rescue") -> list[dict]:
        df = spark.createDataFrame(list(enumerate(lines)), "i int, line string")
        out = df.select("i", F.call_function(readers.JSON_LINE, F.col("line"), F.lit(_conf(policy))).alias("j")).orderBy("i")
        return [r.j.asDict() for r in out.collect()]

    return run


def _number(rng: random.Random) -> str:
    """A JSON number token in one of its many valid spellings."""
    sign = rng.choice(["", "-"])
    whole = rng.choice(["0", str(rng.randint(1, 9)), str(rng.randint(10, 10**12))])
    frac = rng.choice(["", "." + str(rng.randint(0, 999)).zfill(rng.randint(1, 4))])
    exp = rng.choice(["", "", f"e{rng.randint(-30, 30)}", f"E+{rng.randint(0, 9)}", f"e-{rng.randint(0, 400)}"])
    return sign + whole + frac + exp


def _string(rng: random.Random) -> str:
    return "".join(rng.choice(["a", "Z", " ", '"', "\\", "/", "\n", "\t", "é", "€", "𝄞", "\u0001", "{", "}", ",", ":"])
                   for _ in range(rng.randint(0, 8)))


def _value(rng: random.Random, depth: int = 0) -> tuple[str, object]:
    """(the JSON text of a random value, what its text must read as: a str for a scalar,
    ('json', obj) for an object or array, None for null)."""
    kind = rng.choice(["str", "num", "num", "bool", "null"] + (["obj", "arr"] if depth < 2 else []))
    if kind == "str":
        s = _string(rng)
        return json.dumps(s, ensure_ascii=rng.random() < 0.5), s
    if kind == "num":
        tok = _number(rng)
        return tok, tok
    if kind == "bool":
        b = rng.choice(["true", "false"])
        return b, b
    if kind == "null":
        return "null", None
    if kind == "obj":
        items = {f"k{i}": _value(rng, depth + 1) for i in range(rng.randint(0, 3))}
        text = "{" + ", ".join(f'"{k}":{v[0]}' for k, v in items.items()) + "}"
        return text, ("json", json.loads(text))
    items = [_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    text = "[" + ",".join(v[0] for v in items) + "]"
    return text, ("json", json.loads(text))


def _object(rng: random.Random) -> tuple[str, dict]:
    keys = rng.sample([*COLS, "extra", "more", "é key"], rng.randint(0, 7))
    vals = {k: _value(rng) for k in keys}
    ws = lambda: rng.choice(["", " ", "  ", "\t"])  # noqa: E731
    text = ws() + "{" + ",".join(f'{ws()}{json.dumps(k)}{ws()}:{ws()}{v[0]}{ws()}' for k, v in vals.items()) + "}" + ws()
    return text, {k: v[1] for k, v in vals.items()}


def _same(got: str | None, want) -> bool:
    if isinstance(want, tuple):
        return got is not None and json.loads(got) == want[1]
    return got == want


def test_values_are_read_exactly_as_written(read):
    rng = random.Random(7)
    objects = [_object(rng) for _ in range(400)]
    answers = read([text for text, _ in objects])
    wrong = [(text, got) for (text, want), got in zip(objects, answers, strict=True) if not _read_right(want, got)]
    assert wrong == []


def _read_right(want: dict, got: dict) -> bool:
    """Whether the reader's answer for an object whose fields read as ``want`` is right."""
    undeclared = [k for k in want if k not in COLS]
    rescued = {k: v for k, v in want.items() if k in undeclared and v is not None}
    kept = json.loads(got["rescued"]) if got["rescued"] else {}
    shaped = [c for c in ("id", "s") if isinstance(want.get(c), tuple)]
    return (got["problem"] is None
            and all(_same(got["values"][i], want.get(c)) for i, c in enumerate(COLS))
            and got["drift"] == (f"undeclared: {', '.join(undeclared)}" if undeclared else None)
            and kept.keys() == rescued.keys() and all(_same(kept[k], v) for k, v in rescued.items())
            and (got["shape"] is None) == (not shaped))


def _python_verdict(text: str) -> bool:
    """Whether Python's json module reads ``text`` as one object with no key twice."""
    def pairs(items):
        keys = [k for k, _ in items]
        if len(keys) != len(set(keys)):
            raise ValueError("a key twice")
        return dict(items)
    try:
        return isinstance(json.loads(text, object_pairs_hook=pairs), dict)
    except ValueError:
        return False


def test_damaged_lines_are_refused_exactly_when_python_refuses_them(read):
    rng = random.Random(11)
    lines = []
    for _ in range(600):
        text, _ = _object(rng)
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(text) + 1)
            op = rng.choice(["drop", "insert", "double"])
            if op == "drop" and i < len(text):
                text = text[:i] + text[i + 1:]
            elif op == "insert":
                text = text[:i] + rng.choice(list('{}[],:"x0 .-')) + text[i:]
            elif i < len(text):
                text = text[:i] + text[i] + text[i:]
        lines.append(text)
    lines = [t for t in lines if t.strip(" \t")]  # a blank line is no record
    answers = read(lines)
    verdicts = [_python_verdict(text) for text in lines]
    assert 100 < sum(verdicts) < len(lines) - 100  # both kinds, many of each
    wrong = [(text, got) for text, ok, got in zip(lines, verdicts, answers, strict=True)
             if (got["problem"] is None) != ok or (got["values"] is None) != (got["problem"] is not None)]
    assert wrong == []


NO_RECORDS = [
    ("{'id': 'x'}", NOT_JSON),  # single quotes are not JSON
    ('{id: "x"}', NOT_JSON),
    ('{"id": "x", }', NOT_JSON),
    ('{"id": "x"} // note', NOT_JSON),
    ('{"n": 007}', NOT_JSON),
    ('{"n": .5}', NOT_JSON),
    ('{"n": +1}', NOT_JSON),
    ('{"s": "a\tb"}', NOT_JSON),  # a raw control character inside a string
    ('{"id": "x"}}', NOT_JSON),
    ('{"id": "x"} trailing', NOT_JSON),
    ('[{"id": "x"}]', NOT_JSON),
    ("42", NOT_JSON),
    ("null", NOT_JSON),
    ('{"id": "x"},{"id": "y"}', MORE),
    ('{"id": "x"}{"id": "y"}', MORE),
    ('{"id": "x"} {"id": "y"}', MORE),
    ('{"id": "x", "n": 1, "id": "y"}', "malformed record: the key 'id' is twice in the object"),
    ('{"a": 1, "n": 1, "n": 2, "a": 3}', "malformed record: the key 'a' is twice in the object"),
]


def test_what_is_no_record_and_why(read):
    got = read([line for line, _ in NO_RECORDS])
    assert [(g["problem"], g["values"]) for g in got] == [(problem, None) for _, problem in NO_RECORDS]


def test_tokens_kept_as_written_for_the_typing_to_judge(read):
    got = read(['\ufeff {"id": "a\\u00e9\\n", "n": -0, "x": 1e400, "s": NaN, "t": null} ',
                '{"x": -Infinity, "n": 12.50, "s": {"b": [1, 2.0]}, "extra": null}',
                "  \t ", ""])
    assert got[0]["values"] == ["a\u00e9\n", "-0", "1e400", "NaN", None]
    assert got[1]["values"] == [None, "12.50", "-Infinity", '{"b":[1,2.0]}', None]
    assert got[1]["shape"] == "s: a JSON object where a string is declared"
    assert (got[1]["drift"], got[1]["rescued"]) == ("undeclared: extra", None)  # a null undeclared value is not kept
    assert [g["blank"] for g in got] == [False, False, True, True]


def test_undeclared_fields_under_quarantine_are_no_record(read):
    (got,) = read(['{"id": "x", "tier": "gold", "zone": 1}'], policy="quarantine")
    assert got["problem"] == "schema drift: undeclared field(s) tier, zone (schema_drift: quarantine)"
    assert got["drift"] == "undeclared: tier, zone" and got["values"] is None
