"""The use case's SQL, run: placeholders filled, errors that name the file."""

from __future__ import annotations

from string import Template

from pyspark.sql import DataFrame, SparkSession

from lakeml.core.errors import ConfigError


def render(sql: str, params: dict[str, object], where: str = "SQL") -> str:
    """Fill ``${name}`` placeholders; an unknown placeholder names the file."""
    try:
        return Template(sql).substitute({k: str(v) for k, v in params.items()})
    except KeyError as e:
        raise ConfigError(f"{where}: unknown placeholder ${{{e.args[0]}}}; known: {', '.join(sorted(params))}") from None


def run_sql(spark: SparkSession, sql: str, where: str) -> DataFrame:
    """spark.sql with errors that name the SQL file instead of a JVM trace."""
    from pyspark.errors import AnalysisException

    try:
        return spark.sql(sql)
    except AnalysisException as e:
        msg = str(e).split("\n")[0]
        raise ConfigError(f"{where}: {msg}") from None
