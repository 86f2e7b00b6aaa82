"""The use case's SQL, run: placeholders filled, errors that name the file."""

from __future__ import annotations

from string import Template

from pyspark.sql import DataFrame, SparkSession

from lakeml.core.errors import ConfigError, first_line


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
    except AnalysisException as e:  # a ParseException too
        raise ConfigError(f"{where}: {first_line(e)}") from None


def parse(spark: SparkSession, sql: str, where: str) -> None:
    """Parse ``sql`` (no table or view needs to exist): a syntax error names the file, the
    line and the position, before any data is read."""
    from pyspark.errors import ParseException

    try:
        spark._jsparkSession.sessionState().sqlParser().parsePlan(sql)
    except Exception as e:  # noqa: BLE001 - py4j hands the JVM's ParseException over as a Py4JJavaError
        from pyspark.errors.exceptions.captured import convert_exception

        java = getattr(e, "java_exception", None)
        err = convert_exception(java) if java is not None else e
        if isinstance(err, ParseException) or "ParseException" in type(err).__name__ or "PARSE_SYNTAX_ERROR" in str(err):
            raise ConfigError(f"{where}: {first_line(err)}") from None
        raise
