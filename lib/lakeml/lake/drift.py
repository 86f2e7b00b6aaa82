"""Schema drift: landed files whose columns differ from conf (``SourceSpec.schema_drift``).

The readers mark each row (``_drift``, ``_rescued_data``); here the ingest of a source learns
per file what differed and what was done, stops when the policy is ``fail``, and gives a
bronze table from before ``_rescued_data`` its column.
"""

from __future__ import annotations

import logging

from pyspark.sql import SparkSession

from lakeml.core import tables
from lakeml.core.config import SourceSpec, UseCaseConfig
from lakeml.core.errors import SchemaDriftError
from lakeml.lake import csvfile
from lakeml.lake.readers import RESCUED

log = logging.getLogger(__name__)


def per_file(spec: SourceSpec, source: str, counts: list) -> dict[str, str]:
    """Per file (real path) whose columns differ from conf: how, and what was done about it
    (the source's ``schema_drift``). With ``fail``, an undeclared column stops the source
    here, before anything of it is written."""
    done = {"rescue": "kept in _rescued_data", "quarantine": "rows quarantined", "fail": "refused"}[spec.schema_drift]
    out: dict[str, str] = {}
    for r in counts:
        if r["drift"]:
            undeclared = csvfile.UNDECLARED in r["drift"]
            out[r["_source_file"]] = r["drift"] + (f" ({done})" if undeclared else " (null)")
    refused = {p: how for p, how in out.items() if csvfile.UNDECLARED in how}
    if spec.schema_drift == "fail" and refused:
        raise SchemaDriftError(
            f"{source}: {len(refused)} landed file(s) have columns conf does not declare (schema_drift: fail); nothing of "
            f"{source} was written. Declare the columns in conf, or set schema_drift: rescue or quarantine:\n  "
            + "\n  ".join(f"{p}: {how.removesuffix(' (refused)')}" for p, how in sorted(refused.items())))
    for p, how in sorted(out.items()):
        log.warning("%s: %s: schema drift: %s", source, p, how)
    return out


def add_rescued_column(spark: SparkSession, uc: UseCaseConfig, source: str) -> None:
    """A bronze (and silver) table made before ``_rescued_data`` existed gets it: an
    explicit, logged schema change (a nullable string column; every existing row null)."""
    for name in (uc.table(uc.sources[source].table), uc.silver(source)):
        if tables.exists(spark, name) and RESCUED not in tables.read(spark, name).columns:
            log.warning("schema change: adding column %s string to %s (the values of undeclared columns)", RESCUED, name)
            tables.add_column(spark, name, RESCUED, "string")
