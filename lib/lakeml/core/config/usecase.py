"""Use cases: what runs (``conf/<usecase>/usecase.yaml`` and its SQL).

Sources and their schemas, the tables, the entity and the feature SQL, the label, the model,
the demo data maker, data quality, monitoring, validation, retraining and export. Every
business word (entity, label, probability column, table names) comes from here: the
library names none.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from lakeml.core.config.base import SPARK_TYPES, Strict
from lakeml.core.config.checks import QualitySpec

MLEAP_ARTIFACT = "ml.combust.mleap:mleap-spark_2.13:0.25.2"


class ColumnSpec(Strict):
    type: str
    required: bool = False
    format: str | None = None  # date/timestamp pattern, e.g. "yyyy-MM-dd HH:mm:ss"; default ISO 8601
    # a double that may be NaN or +-Infinity (written NaN, Infinity, -Infinity); by default
    # such a value, and a number beyond the double range (1e400), is a reject
    allow_non_finite: bool = False

    @field_validator("type")
    @classmethod
    def _known_type(cls, v: str) -> str:
        if v not in SPARK_TYPES:
            raise ValueError(f"unknown column type {v!r}; use one of {', '.join(SPARK_TYPES)}")
        return v


class SourceSpec(Strict):
    format: Literal["csv", "json", "parquet"]
    table: str  # bronze table name (inside the use case database)
    keys: list[str]
    columns: dict[str, ColumnSpec]
    # the column that says when the row's event happened (a date or timestamp). Rows
    # without one (entity attributes) are versioned by their arrival batch instead. Used
    # by the generic no-leakage test and by anything that needs event time.
    event_time: str | None = None
    # the silver table of the latest row per key (default silver_<source>)
    silver_table: str | None = None
    # a boolean column that marks a row as the deletion of its key: the key's newest
    # version is then a tombstone and the <source> view leaves the key out
    delete_flag: str | None = None
    # a key keeps its event time: a row sent again for a key (a correction) carries the
    # event time it had. Silver then looks for the keys of new rows only among rows of the
    # new rows' event-time range (the files of other times are skipped), instead of in all
    # of silver. True by itself when event_time is one of the keys. A row that breaks it
    # leaves its key twice in silver until a rebuild (jobs/ingest.py --all, --full).
    key_keeps_event_time: bool = False
    # a line (a CSV record, a JSON object) longer than this is quarantined as "line too long"
    max_line_bytes: int = Field(32 * 1024 * 1024, gt=0)
    # the years a date or timestamp value may have; a value outside is a reject (a typo, a
    # sentinel such as 9999-12-31)
    years: tuple[int, int] = (1900, 2100)
    # a column (CSV, Parquet) or field (JSON) that columns do not declare: "rescue" accepts
    # the row and keeps the undeclared values as a JSON object in bronze's _rescued_data;
    # "quarantine" quarantines the row, naming the columns; "fail" stops the source's
    # ingest before it writes anything, naming the file. A declared column a file lacks is
    # a missing value (null; "missing required" when it is required), whatever the policy
    schema_drift: Literal["rescue", "quarantine", "fail"] = "rescue"
    description: str = ""

    @property
    def time_bound_keys(self) -> bool:
        """Whether a key's versions all have the same event time."""
        return self.event_time is not None and (self.key_keeps_event_time or self.event_time in self.keys)

    @model_validator(mode="after")
    def _keys_are_columns(self) -> SourceSpec:
        missing = [k for k in self.keys if k not in self.columns]
        if missing:
            raise ValueError(f"keys {missing} are not declared in columns")
        for k in self.keys:
            self.columns[k].required = True
        if self.event_time is not None:
            if self.event_time not in self.columns:
                raise ValueError(f"event_time {self.event_time!r} is not declared in columns")
            if self.columns[self.event_time].type not in ("date", "timestamp"):
                raise ValueError(f"event_time {self.event_time!r} must be a date or timestamp column, "
                                 f"not {self.columns[self.event_time].type}")
        if self.years[0] > self.years[1]:
            raise ValueError(f"years: {self.years[0]} is after {self.years[1]}")
        bad = [n for n, c in self.columns.items() if c.allow_non_finite and c.type != "double"]
        if bad:
            raise ValueError(f"allow_non_finite applies to double columns only: {', '.join(bad)}")
        if self.key_keeps_event_time and self.event_time is None:
            raise ValueError("key_keeps_event_time needs an event_time")
        if self.delete_flag is not None and (self.delete_flag not in self.columns or self.columns[self.delete_flag].type != "boolean"):
            raise ValueError(f"delete_flag {self.delete_flag!r} must be a declared boolean column")
        return self


class LandingSpec(Strict):
    """What ingest accepts of the landing zone's arrival-date folders.

    A folder dated more than ``max_days_ahead`` days after today (UTC) is not data: a year
    typed wrong (``2062-01-15`` for ``2026-01-15``) or a sender's clock set wrong. Ingest
    leaves it in landing untouched, names it in its log and summary, and ingests the rest;
    rename the folder to its real date and the next run takes it."""

    max_days_ahead: int = Field(1, ge=0)


class TablesSpec(Strict):
    quarantine: str = "quarantine"
    ingest_log: str = "ingest_log"
    features: str = "features"
    labels: str = "labels"
    predictions: str = "predictions"
    dq_results: str = "dq_results"
    drift_metrics: str = "drift_metrics"
    drift_reference: str = "drift_reference"
    performance_metrics: str = "performance_metrics"
    model_decisions: str = "model_decisions"
    online_predictions: str = "online_predictions"  # every answer of the scoring server
    stream_predictions: str = "stream_predictions"  # what jobs/stream.py scores as rows arrive


class SnapshotSpec(Strict):
    # as-of dates: every `every_days` days, the first one `first_after_days` after the
    # earliest batch, the last one on the newest batch date
    every_days: int = Field(7, ge=1)
    first_after_days: int = Field(90, ge=0)


class FeatureSql(Strict):
    """One feature SQL file and how far back it looks.

    ``lookback_days``: the file reads events (rows of sources with an ``event_time``) from at
    most this many days before the as-of date; the job hands it only the events of
    ``[min(as_of) - lookback_days, max(as_of))``, so a daily run reads the window, not the
    history. Left out: the file sees every event ever ingested."""

    file: str
    lookback_days: int | None = Field(None, ge=0)


class FeaturesSpec(Strict):
    # the column that names what is scored, one row per entity and as-of date: the key of the
    # population, the feature table, the labels and the predictions, with as_of_date
    entity: str
    population_sql: str
    # feature SQL files: a path, or {file: path, lookback_days: N}
    sql: list[FeatureSql]
    snapshots: SnapshotSpec = Field(default_factory=SnapshotSpec)
    # rows that arrive up to late_days after their event still change the snapshots they
    # fall in: a daily run recomputes the snapshots of the last late_days as well as the new
    # ones (later rows reach features only through a backfill)
    late_days: int = Field(3, ge=0)

    @field_validator("sql", mode="before")
    @classmethod
    def _paths_or_specs(cls, v: Any) -> Any:
        return [{"file": x} if isinstance(x, str) else x for x in v] if isinstance(v, list) else v


class LabelSpec(Strict):
    column: str = "label"
    horizon_days: int = Field(30, ge=1)
    delay_days: int = Field(0, ge=0)
    sql: str


class TuningSpec(Strict):
    method: Literal["train_validation_split", "cross_validator"] = "train_validation_split"
    train_ratio: float = Field(0.8, gt=0, lt=1)
    folds: int = Field(3, ge=2)
    parallelism: int = Field(2, ge=1)
    metric: Literal["areaUnderROC", "areaUnderPR"] = "areaUnderROC"


class ModelSpec(Strict):
    name: str  # registered model name in MLflow
    experiment: str
    categorical: list[str]
    numeric: list[str]
    classifier: Literal["logistic_regression", "random_forest", "gbt", "xgboost"]
    params: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    tuning: TuningSpec = Field(default_factory=TuningSpec)
    class_weight: Literal["balanced", "none"] = "balanced"
    # decision threshold on the predicted probability: a number, or "max_f1" (chosen on
    # the training data, never on the test snapshot)
    threshold: float | Literal["max_f1"] = "max_f1"
    seed: int = 42
    auc_floor: float = Field(0.5, ge=0, le=1)  # train fails loudly below this test ROC AUC
    # the column of the predictions table that holds P(label = 1)
    probability_column: str = "probability"


class DemoSpec(Strict):
    """The use case's demo data (``jobs/generate.py``; the pipeline on a brand-new lake).

    ``maker`` is a Python file of the use case folder with a function
    ``make(spark, spec) -> {source: DataFrame}``: per source, the rows as an upstream export
    would deliver them (the source's declared columns) plus ``arrival_date``, the batch each
    row lands in. ``lakeml.demo`` writes them into the landing zone in the format the source
    declares and damages a ``bad_row_rate`` share of rows on purpose. A use case without
    ``demo:`` never gets demo data."""

    maker: str
    entities: int = Field(1000, ge=1)  # how many entities (features.entity) to simulate
    days: int = Field(240, ge=1)
    start_date: date = date(2026, 1, 1)
    seed: int = 42
    bad_row_rate: float = Field(0.001, ge=0, le=0.5)
    # from this date on the maker shifts behaviour by drift_strength (for monitoring demos)
    drift_start: date | None = None
    drift_strength: float = Field(0.0, ge=0)
    params: dict[str, Any] = Field(default_factory=dict)  # anything else the maker reads


class MonitoringSpec(Strict):
    """Drift and live-performance monitoring (see lakeml.monitor).

    Drift compares the feature rows of a score date with a reference: the rows the model
    that scored that date was trained on (``training``: its ``train_from``..``train_to``
    snapshots, logged with its MLflow run) or its test snapshot (``test``). A feature's
    status is ``alert`` when PSI >= psi_alert, KS >= ks_alert or JS >= js_alert, ``warn``
    when PSI >= psi_warn, ``ok`` otherwise.
    """

    reference: Literal["training", "test"] = "training"
    bins: int = Field(10, ge=2, le=100)  # PSI / JS / chi-square bins: reference quantiles
    ks_bins: int = Field(100, ge=2, le=1000)  # finer quantile bins for the KS statistic
    quantile_error: float = Field(0.0001, ge=0, lt=0.1)  # approxQuantile relative error
    psi_warn: float = Field(0.1, gt=0)
    psi_alert: float = Field(0.25, gt=0)
    ks_alert: float = Field(0.2, gt=0, le=1)  # two-sample KS statistic (max CDF gap)
    js_alert: float = Field(0.2, gt=0, le=1)  # Jensen-Shannon distance, base 2
    top_features: int = Field(5, ge=1)  # most drifted features plotted in the report
    calibration_bins: int = Field(10, ge=2, le=100)  # equal-width probability bins for ECE

    @field_validator("psi_alert")
    @classmethod
    def _alert_above_warn(cls, v: float, info) -> float:
        warn = info.data.get("psi_warn")
        if warn is not None and v <= warn:
            raise ValueError(f"must be above psi_warn ({warn})")
        return v


class ValidationSpec(Strict):
    """The challenger-vs-champion gate (see lakeml.lifecycle.gate)."""

    min_roc_auc: float = Field(0.7, ge=0, le=1)
    min_lift_top_decile: float = Field(1.5, ge=0)
    # promote only if challenger AUC - champion AUC > -max_auc_drop (0: strictly better)
    max_auc_drop: float = Field(0.0, ge=0, le=1)
    # score the challenger beside the champion (model_alias = 'challenger') before deciding
    shadow: bool = True


class RetrainingSpec(Strict):
    """When the scheduled pipeline retrains (see lakeml.lifecycle.policy). The policy fires when

    * there is no champion yet, or
    * in at least ``drift_batches`` of the last ``of_last`` scored batches, a feature of
      ``features`` (default: every monitored feature) or the predicted probability had
      PSI >= ``psi_threshold``, or
    * the newest live ROC AUC of the champion (from ground truth) is below ``min_live_auc``.
    """

    features: list[str] = Field(default_factory=list)
    psi_threshold: float = Field(0.25, gt=0)
    drift_batches: int = Field(2, ge=1)
    of_last: int = Field(3, ge=1)
    min_live_auc: float = Field(0.7, ge=0, le=1)
    include_prediction_drift: bool = True

    @model_validator(mode="after")
    def _n_of_m(self) -> RetrainingSpec:
        if self.drift_batches > self.of_last:
            raise ValueError(f"drift_batches ({self.drift_batches}) cannot exceed of_last ({self.of_last})")
        return self


class ExportSpec(Strict):
    """Portable model formats logged beside the Spark model (see lakeml.ml.portable).

    The ONNX copy is checked against the Spark model on ``parity_rows`` rows and logged only
    if max |P(1) - Spark P(1)| <= ``parity_tolerance``."""

    # MLeap's jars are not served by the package registry this project reaches, so an MLeap
    # bundle cannot be made: the key stays only to say so when someone turns it on
    mleap: bool = False
    onnx: bool = True  # onnx/model.onnx (where every stage converts)
    parity_rows: int = Field(10_000, ge=1)
    parity_tolerance: float = Field(1e-6, ge=0)

    @field_validator("mleap")
    @classmethod
    def _no_mleap(cls, v: bool) -> bool:
        if v:
            raise ValueError(
                f"MLeap export needs the Maven artifact {MLEAP_ARTIFACT} (and MLeap's runtime jars), which the "
                "package registry this project reaches does not serve; set export.mleap: false (ONNX, export.onnx, "
                "is the portable format)"
            )
        return v


class ScoringSpec(Strict):
    """How batch inference runs the model (lakeml.ml.score).

    ``native``: the registered Spark pipeline's ``transform``. ``onnx``: the version's ONNX
    copy (logged with every trained version when ``export.onnx``) in ONNX Runtime, inside
    ``mapInArrow`` on the executors: Arrow batches of the feature rows, one
    ``InferenceSession`` per Python worker; a version without a copy is refused. ``auto``
    (the default, chosen by the benchmark: the ONNX engine was faster at every scale): the
    ONNX copy where the version has one, ``transform`` where it has none. All write the same
    predictions table (P(1) within the export's parity tolerance)."""

    engine: Literal["auto", "native", "onnx"] = "auto"
    canary: CanarySpec = Field(default_factory=lambda: CanarySpec())
    rollback: RollbackSpec = Field(default_factory=lambda: RollbackSpec())


class CanarySpec(Strict):
    """A challenger that passed the validation gate serves ``share`` of the entities first
    (a deterministic hash of the entity id: lakeml.lifecycle.canary), in batch and online,
    each row recorded with its alias. Once labels of ``min_dates`` score dates are observed,
    its live ROC AUC is compared with the champion's on the same dates: promoted when it is
    not more than ``max_auc_drop`` below, the canary ended otherwise. ``share: 0`` (the
    default): the gate promotes at once, as before."""

    share: float = Field(0.0, ge=0, lt=1)
    min_dates: int = Field(2, ge=1)
    max_auc_drop: float = Field(0.0, ge=0, le=1)


class RollbackSpec(Strict):
    """After a promotion, the replaced champion keeps being scored beside the new one (alias
    ``previous``) on ``watch_dates`` score dates; when the new champion's live ROC AUC on the
    same labelled dates is more than ``max_auc_drop`` below its predecessor's, the champion
    alias goes back by itself (``automatic: false`` only records the finding)."""

    automatic: bool = True
    watch_dates: int = Field(3, ge=1)
    min_dates: int = Field(1, ge=1)
    max_auc_drop: float = Field(0.02, ge=0, le=1)


class UseCaseConfig(Strict):
    name: str
    description: str = ""
    database: str
    sources: dict[str, SourceSpec]
    landing: LandingSpec = Field(default_factory=LandingSpec)
    tables: TablesSpec = Field(default_factory=TablesSpec)
    features: FeaturesSpec
    label: LabelSpec
    model: ModelSpec
    demo: DemoSpec | None = None
    quality: QualitySpec = Field(default_factory=QualitySpec)
    monitoring: MonitoringSpec = Field(default_factory=MonitoringSpec)
    validation: ValidationSpec = Field(default_factory=ValidationSpec)
    retraining: RetrainingSpec = Field(default_factory=RetrainingSpec)
    export: ExportSpec = Field(default_factory=ExportSpec)
    scoring: ScoringSpec = Field(default_factory=ScoringSpec)
    source_file: str = ""
    conf_dir: str = ""

    def table(self, name: str) -> str:
        """Qualified name of a use case table: ``<database>.<name>``."""
        return f"{self.database}.{name}"

    def read_sql(self, rel: str) -> str:
        return (Path(self.conf_dir) / rel).read_text()

    def silver(self, source: str) -> str:
        """Qualified name of a source's silver table (the latest row per key)."""
        return self.table(self.sources[source].silver_table or f"silver_{source}")

    @property
    def entity(self) -> str:
        return self.features.entity

    @property
    def probability(self) -> str:
        """The predictions table's P(label = 1) column."""
        return self.model.probability_column
