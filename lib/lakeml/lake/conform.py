"""Conf and the bronze and silver tables agree before ingest writes, or ingest says why.

A source's declared columns (``sources.<source>.columns``) are compared with the columns its
bronze and silver tables have (those whose name starts with ``_`` are ingest's own). Before
anything of any source is written:

- a column conf declares and a table lacks is added to it (nullable; earlier rows read null);
- a type conf widens (``int`` -> ``bigint`` or ``double``) is widened in the table in place
  (Delta type widening, metadata only): earlier values are read in the new type, unchanged;
- any other type change (a narrowing such as ``double`` -> ``int``, or ``int`` -> ``string``),
  or a column the table has and conf no longer declares, stops the ingest with a message
  naming the column, both types and the commands that migrate.

Each change made is one logged line. Never a silent cast (``lakeml.core.typechange``).
"""

from __future__ import annotations

import logging

from pyspark.sql import SparkSession

from lakeml.core import tables, typechange
from lakeml.core.config import UseCaseConfig
from lakeml.core.typechange import Change, TypeChangeError

log = logging.getLogger(__name__)


def _own(column: str) -> bool:
    return column.startswith("_")  # _batch_date, _source_file, _rescued_data: ingest's


def conform(spark: SparkSession, uc: UseCaseConfig, sources: list[str]) -> None:
    """Make the bronze and silver tables of ``sources`` take what conf declares (each change
    a logged line), or raise a ``TypeChangeError`` before changing anything."""
    widen: dict[str, list[Change]] = {}
    add: dict[str, list[tuple[str, str]]] = {}
    refused: list[str] = []
    for source in sources:
        spec = uc.sources[source]
        declared = {c: cs.type for c, cs in spec.columns.items()}
        where = f"{uc.source_file or uc.name}: sources.{source}.columns"
        bronze, silver = uc.table(spec.table), uc.silver(source)
        for name in (bronze, silver):
            if not tables.exists(spark, name):
                continue
            schema = tables.schema(spark, name)
            have = {f.name for f in schema.fields}
            cs = typechange.changes(schema, declared)
            widen[name] = [c for c in cs if c.widening]
            add[name] = [(c, t) for c, t in declared.items() if c not in have]
            refused += [_narrowing(where, name, c, bronze, silver) for c in cs if not c.widening]
            refused += [_undeclared(where, name, c) for c in sorted(have) if c not in declared and not _own(c)]
    if refused:
        raise TypeChangeError("conf and tables disagree, nothing was ingested:\n  " + "\n  ".join(refused))
    for name, cs in widen.items():
        if cs:
            tables.widen(spark, name, cs, "conf declares the wider type")
    for name, cols in add.items():
        for c, t in cols:
            tables.add_column(spark, name, c, t)
            log.warning("schema change: %s: column %s %s added (conf declares it; earlier rows read null)", name, c, t)


def _narrowing(where: str, name: str, c: Change, bronze: str, silver: str) -> str:
    return (f"{where}.{c.column} is {c.new}, {name} holds it as {c.old}: not a change Delta makes in place "
            f"(it widens int to bigint or double only). Set the type back to {c.old}, or re-type every row by conf: "
            f"./scripts/sql.sh -e \"DROP TABLE {bronze}; DROP TABLE {silver}\", then jobs/ingest.py --all "
            f"(values that are not exactly {c.new} are quarantined; batches archived with jobs/landing.py archive "
            f"must be put back in landing first)")


def _undeclared(where: str, name: str, column: str) -> str:
    return (f"{name} has the column {column}, which {where} no longer declares: declare it again, or drop it from "
            f"the table: ./scripts/sql.sh -e \"{'; '.join(tables.drop_column_sql(name, column))}\"")
