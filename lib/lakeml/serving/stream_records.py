"""The landing folder's records for streaming scoring: JSON lines, one object per line, read
against a declared schema (never inferred) and sorted into rows to score and rejects.

The schema is declared by the feature table: its columns with its types (the entity, an
optional ``as_of_date``, the features). A record is

* an **entity row** when its only field is the entity: ``{"<entity>": "E0001"}``; it is
  scored with the entity's newest row of the feature table (``newest_rows``);
* a **feature row** otherwise: it must carry every model feature (``null`` is a missing
  value, which the model imputes as the batch path does) and is scored as given; its
  ``as_of_date`` is the score date, else the date its file landed (the file's
  modification time, UTC: the same on a rerun).

Anything else is a reject, with its raw text and one reason: not a JSON object, an undeclared
field, no entity, a value that is not of its declared type (``12.5`` for an integer, ``"x"``
for a number), a missing feature, an entity the feature table has no row for. A blank line is
not a record.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lakeml.core.config import UseCaseConfig

AS_OF = "as_of_date"


def feature_columns(uc: UseCaseConfig) -> list[str]:
    """The model's input columns, in conf order."""
    return list(dict.fromkeys([*uc.model.categorical, *uc.model.numeric]))


def declared_schema(uc: UseCaseConfig, feature_table_schema: T.StructType) -> T.StructType:
    """The landing records' schema: the feature table's columns with its types (the entity,
    ``as_of_date``, the features; a column the model does not use is accepted and ignored)."""
    names = {f.name for f in feature_table_schema.fields}
    missing = [c for c in [uc.entity, AS_OF, *feature_columns(uc)] if c not in names]
    if missing:
        from lakeml.core.errors import MissingDataError

        raise MissingDataError(f"the feature table has no column {', '.join(missing)} that the model of {uc.source_file} needs")
    return T.StructType([T.StructField(f.name, f.dataType) for f in feature_table_schema.fields])


def _lits(names: list[str]) -> Column:
    return F.array(*[F.lit(n) for n in names])


def parse(lines: DataFrame, uc: UseCaseConfig, schema: T.StructType) -> DataFrame:
    """``lines`` (``value``: the raw line, ``source_file``, ``landed``: the file's
    modification time) parsed: the declared columns, ``_kind`` (``entity`` or ``features``)
    and ``_reason`` (null for a good record). Blank lines are left out."""
    names = [f.name for f in schema.fields]
    feats = feature_columns(uc)
    value = F.col("value")
    keys = F.json_object_keys(value)  # null when the line is not a JSON object
    parsed = F.from_json(value, schema)  # PERMISSIVE: a value of the wrong type is null
    undeclared = F.array_except(keys, _lits(names))
    # a field the line has (not JSON null) whose parsed value is null: not of its declared type
    bad = F.filter(F.array(*[
        F.when(F.get_json_object(value, f"$.{f.name}").isNotNull() & parsed[f.name].isNull(),
               F.lit(f"{f.name} (not {f.dataType.simpleString()})"))
        for f in schema.fields
    ]), lambda x: x.isNotNull())
    entity_only = (F.size(keys) == 1) & F.array_contains(keys, uc.entity)
    missing = F.array_except(_lits(feats), keys)
    reason = F.coalesce(
        F.when(keys.isNull(), F.lit("not a JSON object")),
        F.when(F.size(undeclared) > 0, F.concat(F.lit("undeclared field(s): "), F.array_join(undeclared, ", "))),
        F.when(parsed[uc.entity].isNull() | (F.trim(parsed[uc.entity].cast("string")) == ""), F.lit(f"no {uc.entity}")),
        F.when(F.size(bad) > 0, F.concat(F.lit("value(s) not of the declared type: "), F.array_join(bad, ", "))),
        F.when(~entity_only & (F.size(missing) > 0), F.concat(F.lit("missing feature(s): "), F.array_join(missing, ", "))),
    )
    return lines.where(F.trim(value) != "").select(
        "value", "source_file", "landed", parsed.alias("_p"),
        F.when(entity_only, F.lit("entity")).otherwise(F.lit("features")).alias("_kind"), reason.alias("_reason"),
    ).select("value", "source_file", "landed", "_p.*", "_kind", "_reason")


def newest_rows(features: DataFrame, uc: UseCaseConfig) -> DataFrame:
    """Each entity's newest row of the feature table: the entity, ``as_of_date`` and the model
    features."""
    w = Window.partitionBy(uc.entity).orderBy(F.col(AS_OF).desc())
    return (features.select(uc.entity, AS_OF, *feature_columns(uc))
            .withColumn("_n", F.row_number().over(w)).where(F.col("_n") == 1).drop("_n"))


def split(parsed: DataFrame, newest: DataFrame, uc: UseCaseConfig, feature_version: int) -> tuple[DataFrame, DataFrame]:
    """(rows to score, rejects) of ``parsed``. Rows to score: the entity, ``as_of_date``, the
    model features, ``source_file`` and ``feature_version`` (the feature table's version an
    entity row was joined with; null for a feature row). Rejects: ``source_file``, ``raw``,
    ``reason``."""
    feats = feature_columns(uc)
    good = parsed.where(F.col("_reason").isNull())
    given = good.where(F.col("_kind") == "features").select(
        uc.entity, F.coalesce(F.col(AS_OF), F.to_date("landed")).alias(AS_OF), *feats, "source_file",
        F.lit(None).cast("long").alias("feature_version"))
    asked = good.where(F.col("_kind") == "entity").select(uc.entity, "source_file", "value")
    joined = asked.join(newest, uc.entity, "left")
    known = joined.where(F.col(AS_OF).isNotNull()).select(
        uc.entity, AS_OF, *feats, "source_file", F.lit(int(feature_version)).cast("long").alias("feature_version"))
    unknown = joined.where(F.col(AS_OF).isNull()).select(
        "source_file", F.col("value").alias("raw"),
        F.lit(f"no row for this {uc.entity} in the feature table (version {feature_version})").alias("reason"))
    malformed = parsed.where(F.col("_reason").isNotNull()).select(
        "source_file", F.col("value").alias("raw"), F.col("_reason").alias("reason"))
    return given.unionByName(known), malformed.unionByName(unknown)
