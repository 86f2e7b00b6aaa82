"""Strict typing of landed values: a string becomes its declared type only when it is
exactly of that type, else the reason why not (see ``parse``)."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from lakeml.core.config import ColumnSpec

ISO_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
ISO_TIMESTAMP = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?(Z|[+-][0-9]{2}(:?[0-9]{2})?)?$"
ISO_FORM = {"date": "yyyy-MM-dd", "timestamp": "ISO 8601: yyyy-MM-dd[T ]HH:mm[:ss[.SSSSSS]][Z|+HH:MM]"}
NUMBER = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
INTEGER = r"^[+-]?[0-9]+$"
NON_FINITE = r"^[+-]?(NaN|Infinity)$"


def parse_columns(df: DataFrame, columns: dict[str, ColumnSpec], years: tuple[int, int]) -> DataFrame:
    """``df`` with, for the i-th of ``columns``, ``__v{i}`` (its typed value) and ``__w{i}``
    (why its text is not of the type, see ``parse``). Each intermediate is computed once, as
    a column of its own: first the ``helpers`` (the form check, the cast), then the value and
    the reason from them (inside CASE WHENs a cast or a regex was evaluated again per use)."""
    names = list(columns)
    helper = {(i, k): c for i, n in enumerate(names) for k, c in helpers(F.col(n), columns[n]).items()}
    df = df.select("*", *[c.alias(f"__h{i}_{k}") for (i, k), c in helper.items()])
    parsed = [parse(F.col(n), n, columns[n], years, {k: F.col(f"__h{j}_{k}") for (j, k) in helper if j == i})
              for i, n in enumerate(names)]
    return df.select(*[c for c in df.columns if not c.startswith("__h")], *[v.alias(f"__v{i}") for i, (v, _) in enumerate(parsed)],
                     *[w.alias(f"__w{i}") for i, (_, w) in enumerate(parsed)])


def helpers(raw: Column, spec: ColumnSpec) -> dict[str, Column]:
    """The intermediate values ``parse`` uses more than once (whether the text has the type's
    form, and the cast): ``validate`` computes them once each, as columns of their own, and
    hands them to ``parse`` (inside its CASE WHENs a cast was repeated: twice the cost)."""
    t = F.trim(raw)
    if spec.type in ("date", "timestamp"):
        if spec.format:
            value = F.try_to_timestamp(t, F.lit(spec.format)) if spec.type == "timestamp" else F.try_to_date(t, spec.format)
            return {"form_ok": value.isNotNull(), "value": value}
        form_ok = t.rlike(ISO_DATE if spec.type == "date" else ISO_TIMESTAMP)
        return {"form_ok": form_ok, "value": F.when(form_ok, t.try_cast(spec.type))}
    if spec.type == "double":
        word = t.rlike(NON_FINITE)
        return {"word": word, "value": F.when(t.rlike(NUMBER) | word, t.try_cast("double"))}
    if spec.type in ("int", "bigint"):
        integer = t.rlike(INTEGER)
        return {"form_ok": integer, "value": F.when(integer, t.try_cast(spec.type))}
    return {}


def parse(raw: Column, name: str, spec: ColumnSpec, years: tuple[int, int],
          given: dict[str, Column] | None = None) -> tuple[Column, Column]:
    """(the typed value or null, why ``raw`` - not empty - is not exactly of the type, or null).

    Strict: a value is read only when it is exactly of its type. Dates and timestamps in
    their ISO forms (or the column's ``format``), with a year in ``years``; numbers in
    decimal notation, finite (unless ``allow_non_finite``) and within their type's range;
    Spark's casts alone accept ``2026`` or ``2026-01-01 garbage`` as a date, ``1.5d`` and
    ``NaN`` as numbers. ``given``: ``helpers(raw, spec)`` already computed (as columns)."""
    h = helpers(raw, spec) if given is None else given
    shown = F.substring(raw, 1, 80)

    def cannot(detail: str = "") -> Column:
        return F.concat(F.lit(f"{name}: cannot read '"), shown, F.lit(f"' as {spec.type}{detail}"))

    if spec.type in ("date", "timestamp"):
        value, form_ok = h["value"], h["form_ok"]
        form = spec.format or ISO_FORM[spec.type]
        year = F.year(value)
        in_years = year.between(years[0], years[1])
        why = (
            F.when(~form_ok, cannot(f" (not {form})"))
            .when(value.isNull(), cannot(" (no such day or time)"))
            .when(~in_years, F.concat(F.lit(f"{name}: year "), year.cast("string"), F.lit(" of '"), shown,
                                      F.lit(f"' is outside the plausible years {years[0]}..{years[1]} (years: in conf)")))
        )
        return F.when(in_years, value), why
    if spec.type == "double":
        word, value = h["word"], h["value"]
        finite = ~F.isnan(value) & (F.abs(value) != F.lit(float("inf")))
        ok = value.isNotNull() & (finite | F.lit(spec.allow_non_finite) & word)
        why = (
            F.when(value.isNull(), cannot())
            .when(word & ~F.lit(spec.allow_non_finite),
                  F.concat(F.lit(f"{name}: '"), shown, F.lit("' is not a finite number (allow_non_finite: true accepts it)")))
            .when(~finite & ~word, F.concat(F.lit(f"{name}: '"), shown, F.lit("' is beyond the range of double")))
        )
        return F.when(ok, value), why
    if spec.type in ("int", "bigint"):
        integer, value = h["form_ok"], h["value"]
        why = F.when(~integer, cannot()).when(value.isNull(),
                                              F.concat(F.lit(f"{name}: '"), shown, F.lit(f"' is beyond the range of {spec.type}")))
        return value, why
    if spec.type == "boolean":
        low = F.lower(F.trim(raw))
        value = F.when(low.isin("true", "1", "yes"), True).when(low.isin("false", "0", "no"), False)
        return value, F.when(value.isNull(), cannot())
    return raw, F.lit(None).cast("string")  # string
