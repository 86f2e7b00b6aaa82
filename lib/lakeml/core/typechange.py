"""Column types of a table against the types of what is about to go into it: a value is never
cast into a type that cannot hold it exactly.

Delta casts a written column to the table's type by itself: a ``double`` 33.5 written into an
``int`` column is stored as 33, without a word. Every write of ``lakeml.core.tables`` checks
:func:`casts` first. A type that holds every value of the written type (``int`` rows
into a ``bigint`` or ``double`` column) passes; anything else stops the write, naming the
table, the column, both types and what to do. Widening a table's column is the explicit
step ``tables.widen`` (Delta's type widening: a metadata change, no file rewritten).
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql.types import StructType

from lakeml.core.errors import LakemlError

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


def casts(table: StructType, rows: StructType) -> list[Change]:
    """The columns of ``rows`` whose type the table's column cannot hold exactly: a write
    would cast their values (a ``void`` column, all null, casts nothing)."""
    written = {f.name: f.dataType.simpleString() for f in rows.fields}
    return [c for c in changes(table, written) if c.new != "void" and (c.new, c.old) not in WIDENINGS]


def write_message(name: str, bad: list[Change], widen: list[str]) -> str:
    """Why a write of rows into ``name`` stops (``bad``: from :func:`casts`), and what to do;
    ``widen``: the statements that widen the table to every rows' type, when it can be."""
    cols = "; ".join(f"{c.column} is {c.old} in the table, {c.new} in the rows" for c in bad)
    how = (f"widen the table first: ./scripts/sql.sh -e \"{'; '.join(widen)}\"" if all(c.widening for c in bad) else
           f"drop {name} and run the job that makes it again, or change the rows' type back")
    return f"{name}: not written, its values would be cast ({cols}): {how}"
