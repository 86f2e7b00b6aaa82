"""Column types of a table against the types of what is about to go into it: a value is never
cast into a type that cannot hold it exactly.

Delta casts a written column to the table's type by itself: a ``double`` 33.5 written into an
``int`` column is stored as 33, without a word. Every write of ``lakeml.core.tables`` asks
:func:`check_write` first. A type that holds every value of the written type (``int`` rows
into a ``bigint`` or ``double`` column) passes; anything else stops the write, naming the
table, the column, both types and what to do. Widening a table's column is the explicit,
logged step :func:`widen` (Delta's type widening: a metadata change, no file rewritten).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StructType

from lakeml.core.errors import LakemlError

log = logging.getLogger(__name__)

# (narrower, wider): every value of the first is exactly a value of the second, and Delta 4's
# type widening changes a column from the first to the second in place (ALTER COLUMN TYPE;
# int -> double is never done by Delta's schema evolution itself, only by that command)
WIDENINGS = frozenset({("tinyint", "smallint"), ("tinyint", "int"), ("tinyint", "bigint"), ("tinyint", "double"),
                       ("smallint", "int"), ("smallint", "bigint"), ("smallint", "double"),
                       ("int", "bigint"), ("int", "double"), ("float", "double")})


class TypeChangeError(LakemlError):
    """A column's type in a table differs from the one conf or a job's rows have, in a way
    that would change values; the message names the table, the column and what to do."""


@dataclass(frozen=True)
class Change:
    column: str
    old: str  # the table's type
    new: str  # the type conf declares, or the written rows have

    @property
    def widening(self) -> bool:
        """Whether the table can take the new type in place (Delta type widening)."""
        return (self.old, self.new) in WIDENINGS

    def __str__(self) -> str:
        return f"{self.column}: {self.old} -> {self.new}"


def changes(table: StructType, new: dict[str, str]) -> list[Change]:
    """The columns of ``new`` (name -> type, as Spark's ``simpleString`` names it) that the
    table has with another type."""
    old = {f.name: f.dataType.simpleString() for f in table.fields}
    return [Change(c, old[c], t) for c, t in new.items() if c in old and old[c] != t]


def widen_sql(name: str, cs: list[Change]) -> list[str]:
    """The statements that widen ``cs`` in the table ``name``."""
    return [f"ALTER TABLE {name} SET TBLPROPERTIES ('delta.enableTypeWidening' = 'true')",
            *(f"ALTER TABLE {name} ALTER COLUMN `{c.column}` TYPE {c.new}" for c in cs)]


def widen(spark: SparkSession, name: str, cs: list[Change], why: str) -> None:
    """Widen the columns ``cs`` of ``name`` (each a widening), logged: one commit per
    statement, metadata only (the files keep their type; readers widen the old values)."""
    for stmt in widen_sql(name, cs):
        spark.sql(stmt)
    for c in cs:
        log.warning("schema change: %s.%s widened from %s to %s (%s)", name, c.column, c.old, c.new, why)


def check_write(df: DataFrame, name: str) -> None:
    """Stop a write of ``df`` into the existing table ``name`` when a column of ``df`` has a
    type the table's column cannot hold exactly (Delta would cast it)."""
    rows = {f.name: f.dataType.simpleString() for f in df.schema.fields}
    table = df.sparkSession.table(name).schema
    bad = [c for c in changes(table, rows) if c.new != "void" and (c.new, c.old) not in WIDENINGS]
    if bad:
        raise TypeChangeError(write_message(name, bad))


def write_message(name: str, bad: list[Change]) -> str:
    cols = "; ".join(f"{c.column} is {c.old} in the table, {c.new} in the rows" for c in bad)
    widenable = [c for c in bad if c.widening]
    how = (f"widen the table first: ./scripts/sql.sh -e \"{'; '.join(widen_sql(name, widenable))}\""
           if len(widenable) == len(bad) else
           f"drop {name} and run the job that makes it again, or change the rows' type back")
    return f"{name}: not written, its values would be cast ({cols}): {how}"
