"""The data-quality check language of ``quality:`` in a use case (run by ``lakeml.lake.quality``).

``checks`` maps a table of the use case to a list of checks; each check is one of six types
with the parameters its type needs, and unknown tables, missing or misplaced parameters
and duplicate names stop the load with the file and the key.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from lakeml.core.config.base import Strict

# per check type: the parameters it needs and the ones it may have (besides name, type,
# severity and where, which every check has)
_CHECK_PARAMS: dict[str, tuple[set[str], set[str]]] = {
    "not_null": ({"columns"}, set()),
    "unique": ({"columns"}, set()),
    "range": ({"columns"}, {"min", "max"}),
    "accepted_values": ({"columns", "values"}, set()),
    "freshness": ({"max_age_days"}, {"columns", "reference"}),
    "row_count_change": ({"max_change"}, set()),
    "not_future": ({"columns"}, {"max_ahead_days", "reference"}),
}

# the use case's checkable tables while a use case file is being validated (see QualitySpec)
_USE_CASE_TABLES: ContextVar[dict[str, str] | None] = ContextVar("_USE_CASE_TABLES", default=None)


class CheckSpec(Strict):
    """One data-quality check, evaluated per batch of its table (see lakeml.lake.quality).

    Every check counts what violates it in the batch; it passes when that is within the
    threshold, otherwise its status is ``fail`` (severity ``error``) or ``warn``.

    - ``not_null``: rows with a null in any of ``columns``; must be 0.
    - ``unique``: rows beyond the first per value of ``columns`` (rows with a null
      there are left to not_null); must be 0.
    - ``range``: rows with a value of ``columns`` below ``min`` or above ``max``
      (either may be left out; nulls pass; NaN and +-Infinity fail); must be 0.
    - ``accepted_values``: rows with a value of ``columns`` not in ``values``; must be 0.
    - ``freshness``: days from the newest value of ``columns`` (one date or timestamp
      column) to the batch date (``reference: batch``), or from the newest value of
      ``columns`` (default: the batch column) to today (``reference: today``); at most
      ``max_age_days``.
    - ``row_count_change``: |rows - rows of the previous batch| / rows of the previous
      batch; at most ``max_change`` (0.5 = 50 %). Passes on the first batch.
    - ``not_future``: rows with a date or timestamp in ``columns`` on a day after the batch
      date (``reference: batch``, the default) or after today (``reference: today``), plus
      ``max_ahead_days`` (default 0); must be 0. Catches a clock set wrong, a year typed
      as 2099.

    ``where`` (Spark SQL) restricts the rows a check looks at, e.g. ``status = 'paid'``.
    """

    name: str = Field(min_length=1)
    type: Literal["not_null", "unique", "range", "accepted_values", "freshness", "row_count_change", "not_future"]
    columns: list[str] = Field(default_factory=list)
    min: float | None = None
    max: float | None = None
    values: list[str | int | float | bool] | None = None
    max_age_days: int | None = Field(None, ge=0)
    reference: Literal["batch", "today"] | None = None  # freshness and not_future; None: batch
    max_ahead_days: int | None = Field(None, ge=0)  # not_future only; None: 0
    max_change: float | None = Field(None, ge=0)
    severity: Literal["error", "warn"] = "error"
    where: str | None = None

    @model_validator(mode="after")
    def _parameters_fit_type(self) -> CheckSpec:
        required, optional = _CHECK_PARAMS[self.type]
        given = {k for k in self.model_fields_set if k not in ("name", "type", "severity", "where")}
        given = {k for k in given if getattr(self, k) not in (None, [])}
        missing = sorted(required - given)
        if missing:
            raise ValueError(f"a check of type {self.type} needs {' and '.join(missing)}")
        extra = sorted(given - required - optional)
        if extra:
            raise ValueError(f"{', '.join(extra)} {'does' if len(extra) == 1 else 'do'} not apply to a check of type {self.type}")
        if self.type == "range":
            if self.min is None and self.max is None:
                raise ValueError("a range check needs min or max (or both)")
            if self.min is not None and self.max is not None and self.min > self.max:
                raise ValueError(f"min ({self.min}) is above max ({self.max})")
        if self.type == "freshness":
            if len(self.columns) > 1:
                raise ValueError("a freshness check takes one column (a date or timestamp)")
            if self.reference != "today" and not self.columns:
                raise ValueError("a freshness check against the batch date needs columns: [a date or timestamp column]")
        return self


class _TableName(str):
    """A quality table key: must name a checkable table of the use case being loaded."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        return core_schema.no_info_after_validator_function(cls._known, core_schema.str_schema())

    @staticmethod
    def _known(name: str) -> str:
        known = _USE_CASE_TABLES.get()
        if known is not None and name not in known:
            raise ValueError(f"not a table of this use case; checks run on: {', '.join(sorted(known))}")
        return name


def _unique_check_names(checks: list[CheckSpec]) -> list[CheckSpec]:
    seen: set[str] = set()
    for c in checks:
        if c.name in seen:
            raise ValueError(f"check name {c.name!r} is used twice (names identify results in dq_results)")
        seen.add(c.name)
    return checks


class QualitySpec(Strict):
    """Data-quality checks per table (see lakeml.lake.quality).

    ``checks`` maps a table of the use case (a bronze table, the feature table, labels,
    predictions, quarantine or ingest_log) to its checks (``CheckSpec``). Checks run per
    batch: the rows of one ``_batch_date`` (bronze), ``as_of_date`` (features, labels),
    ``score_date`` (predictions) or ``batch_date`` (quarantine, ingest_log).
    """

    checks: dict[_TableName, Annotated[list[CheckSpec], AfterValidator(_unique_check_names)]] = Field(default_factory=dict)

    @staticmethod
    def batch_columns(sources: dict[str, Any], tables: Any) -> dict[str, str]:
        """The tables checks may name, each with the column that says which batch a row is of."""
        cols = {s.table: "_batch_date" for s in sources.values()}
        cols.update({tables.features: "as_of_date", tables.labels: "as_of_date", tables.predictions: "score_date"})
        cols.update({tables.quarantine: "batch_date", tables.ingest_log: "batch_date"})
        return cols

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        # validated as UseCaseConfig.quality, the use case's sources and tables (validated
        # before it) are in info.data: table keys are checked against them (_TableName)
        from pydantic_core import core_schema

        return core_schema.with_info_wrap_validator_function(cls._with_use_case_tables, handler(source))

    @staticmethod
    def _with_use_case_tables(value: Any, handler: Any, info: Any) -> Any:
        data = info.data or {}
        sources, tables = data.get("sources"), data.get("tables")
        known = QualitySpec.batch_columns(sources, tables) if isinstance(sources, dict) and hasattr(tables, "quarantine") else None
        token = _USE_CASE_TABLES.set(known)
        try:
            return handler(value)
        finally:
            _USE_CASE_TABLES.reset(token)
