"""The one config loader: environments (where things run) and use cases (what runs).

    conf/
      envs/<env>.yaml          Spark master and confs, storage locations, MLflow URIs
      <usecase>/usecase.yaml   sources, tables, features (SQL files), label, model, scoring
      <usecase>/sql/...        the SQL the use case runs

Every file is validated against a typed schema on load. Unknown keys, wrong types and
missing SQL files stop with a ``ConfigError`` that names the file and the key, e.g.::

    conf/churn/usecase.yaml: model.classifier: Input should be 'logistic_regression',
    'random_forest' or 'gbt' (got 'xgboost')

Values of the form ``${VAR}`` or ``${VAR:-default}`` are read from the environment, which
is how secrets (passwords, tokens) get in: never from a file. A ``${VAR}`` without a default
that is not set stops with a ``ConfigError`` naming the file and the key that refers to it.
"""

from __future__ import annotations

import os
import re
from contextvars import ContextVar
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

SPARK_TYPES = ("string", "int", "bigint", "double", "date", "timestamp", "boolean")


class UserFacingError(RuntimeError):
    """An expected failure whose message is the whole story (jobs print it and exit 2)."""


class ConfigError(ValueError):
    """A configuration problem; the message names the file and the key."""


class UsageError(ValueError):
    """A wrong command-line argument."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


# --------------------------------------------------------------------------- environments


class SparkSettings(_Strict):
    master: str = "local[*]"
    deploy_mode: Literal["client", "cluster"] = "client"
    conf: dict[str, str | int | float | bool] = Field(default_factory=dict)
    # spark-submit flags that are not --conf (e.g. --archives for YARN, --num-executors).
    # --archives and --py-files are merged with the ones spark-submit.sh adds (one flag each).
    submit_args: list[str] = Field(default_factory=list)
    # where the Delta jars come from: "local" ships .cache/jars (`make jars`) with --jars;
    # "cluster" ships none, the cluster's Spark has them (e.g. /opt/spark/jars of the image)
    jars_from: Literal["local", "cluster"] = "local"


class StorageSettings(_Strict):
    # Everything below defaults to a folder under data_dir. Relative paths are relative to
    # the project root (the parent of conf/). LAKEML_DATA_DIR overrides data_dir.
    data_dir: str = "var"
    landing: str | None = None
    warehouse: str | None = None
    metastore: Literal["derby", "external"] = "derby"
    # where the landing job moves ingested batches (default: "archive" beside the landing folder)
    archive: str | None = None
    # WebHDFS address of the landing zone's HDFS (the landing job moves files with HdfsCLI)
    webhdfs: str | None = None


class MlflowSettings(_Strict):
    tracking_uri: str | None = None  # default: sqlite:///<data_dir>/mlflow/mlflow.db
    registry_uri: str | None = None  # default: the tracking URI
    artifact_root: str | None = None  # default: <data_dir>/mlflow/artifacts


class SqlSettings(_Strict):
    # a HiveServer2 (Spark Thrift Server) JDBC URL: sql.sh opens beeline on it instead of
    # starting spark-sql on the catalog itself
    endpoint: str | None = None


class EnvConfig(_Strict):
    name: str
    description: str = ""
    usecase: str = "churn"
    spark: SparkSettings = Field(default_factory=SparkSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)
    sql: SqlSettings = Field(default_factory=SqlSettings)
    # where the file came from, filled in by the loader
    source_file: str = ""
    project_root: str = ""

    # resolved locations -------------------------------------------------------------
    def _abs(self, p: str) -> str:
        if "://" in p or p.startswith("/"):
            return p
        return str((Path(self.project_root) / p).resolve())

    @property
    def data_dir(self) -> str:
        return self._abs(os.environ.get("LAKEML_DATA_DIR") or self.storage.data_dir)

    @property
    def landing_dir(self) -> str:
        return self._abs(self.storage.landing) if self.storage.landing else f"{self.data_dir}/landing"

    @property
    def warehouse_dir(self) -> str:
        return self._abs(self.storage.warehouse) if self.storage.warehouse else f"{self.data_dir}/warehouse"

    @property
    def is_local_fs(self) -> bool:
        return "://" not in self.warehouse_dir or self.warehouse_dir.startswith("file:")

    @property
    def tracking_uri(self) -> str:
        return self.mlflow.tracking_uri or f"sqlite:///{self.data_dir}/mlflow/mlflow.db"

    @property
    def registry_uri(self) -> str:
        return self.mlflow.registry_uri or self.tracking_uri

    @property
    def artifact_root(self) -> str:
        return self.mlflow.artifact_root or f"{self.data_dir}/mlflow/artifacts"

    def spark_conf(self) -> dict[str, str]:
        """All Spark confs this env implies, the env file's own ``spark.conf`` last."""
        conf: dict[str, str] = {
            "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
            "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
            "spark.sql.warehouse.dir": self.warehouse_dir,
            "spark.sql.catalogImplementation": "hive",
            # Delta keeps its schema in the Delta log; Spark's schema sync on overwrite
            # would otherwise be refused by the Hive metastore's column-type check
            "spark.hadoop.hive.metastore.disallow.incompatible.col.type.changes": "false",
            # spark-sql and HiveServer2 use java.time dates; Delta's metadata-only answer to
            # min/max(date) still builds java.sql.Date (ClassCastException): compute it
            "spark.databricks.delta.optimizeMetadataQuery.enabled": "false",
        }
        if self.storage.metastore == "derby":
            db = f"{self.data_dir}/metastore_db"
            conf["spark.hadoop.javax.jdo.option.ConnectionURL"] = f"jdbc:derby:;databaseName={db};create=true"
        conf.update({k: _conf_str(v) for k, v in self.spark.conf.items()})
        return conf


def _conf_str(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


# --------------------------------------------------------------------------- use cases


class ColumnSpec(_Strict):
    type: str
    required: bool = False
    format: str | None = None  # date/timestamp pattern, e.g. "yyyy-MM-dd HH:mm:ss"

    @field_validator("type")
    @classmethod
    def _known_type(cls, v: str) -> str:
        if v not in SPARK_TYPES:
            raise ValueError(f"unknown column type {v!r}; use one of {', '.join(SPARK_TYPES)}")
        return v


class SourceSpec(_Strict):
    format: Literal["csv", "json", "parquet"]
    table: str  # bronze table name (inside the use case database)
    keys: list[str]
    columns: dict[str, ColumnSpec]
    description: str = ""

    @model_validator(mode="after")
    def _keys_are_columns(self) -> SourceSpec:
        missing = [k for k in self.keys if k not in self.columns]
        if missing:
            raise ValueError(f"keys {missing} are not declared in columns")
        for k in self.keys:
            self.columns[k].required = True
        return self


class TablesSpec(_Strict):
    quarantine: str = "quarantine"
    ingest_log: str = "ingest_log"
    features: str = "customer_features"
    labels: str = "labels"
    predictions: str = "predictions"
    dq_results: str = "dq_results"
    drift_metrics: str = "drift_metrics"
    performance_metrics: str = "performance_metrics"
    model_decisions: str = "model_decisions"


class SnapshotSpec(_Strict):
    # as-of dates: every `every_days` days, the first one `first_after_days` after the
    # earliest event, the last one on the day after the newest event
    every_days: int = Field(7, ge=1)
    first_after_days: int = Field(90, ge=0)


class FeaturesSpec(_Strict):
    entity: str = "customer_id"
    population_sql: str
    sql: list[str]
    snapshots: SnapshotSpec = Field(default_factory=SnapshotSpec)


class LabelSpec(_Strict):
    column: str = "label"
    horizon_days: int = Field(30, ge=1)
    delay_days: int = Field(0, ge=0)
    sql: str


class TuningSpec(_Strict):
    method: Literal["train_validation_split", "cross_validator"] = "train_validation_split"
    train_ratio: float = Field(0.8, gt=0, lt=1)
    folds: int = Field(3, ge=2)
    parallelism: int = Field(2, ge=1)
    metric: Literal["areaUnderROC", "areaUnderPR"] = "areaUnderROC"


class ModelSpec(_Strict):
    name: str  # registered model name in MLflow
    experiment: str
    categorical: list[str]
    numeric: list[str]
    classifier: Literal["logistic_regression", "random_forest", "gbt"]
    params: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    tuning: TuningSpec = Field(default_factory=TuningSpec)
    class_weight: Literal["balanced", "none"] = "balanced"
    # decision threshold on the churn probability: a number, or "max_f1" (chosen on the
    # training data, never on the test snapshot)
    threshold: float | Literal["max_f1"] = "max_f1"
    seed: int = 42
    auc_floor: float = Field(0.5, ge=0, le=1)  # train fails loudly below this test ROC AUC


class GeneratorSpec(_Strict):
    customers: int = Field(10_000, ge=1)
    days: int = Field(240, ge=1)
    start_date: date = date(2026, 1, 1)
    seed: int = 42
    bad_row_rate: float = Field(0.001, ge=0, le=0.5)
    drift_start: date | None = None
    drift_strength: float = Field(0.0, ge=0)


# --------------------------------------------------------------------------- lifecycle


# per check type: the parameters it needs and the ones it may have (besides name, type,
# severity and where, which every check has)
_CHECK_PARAMS: dict[str, tuple[set[str], set[str]]] = {
    "not_null": ({"columns"}, set()),
    "unique": ({"columns"}, set()),
    "range": ({"columns"}, {"min", "max"}),
    "accepted_values": ({"columns", "values"}, set()),
    "freshness": ({"max_age_days"}, {"columns", "reference"}),
    "row_count_change": ({"max_change"}, set()),
}

# the use case's checkable tables while a use case file is being validated (see QualitySpec)
_USE_CASE_TABLES: ContextVar[dict[str, str] | None] = ContextVar("_USE_CASE_TABLES", default=None)


class CheckSpec(_Strict):
    """One data-quality check, evaluated per batch of its table (see lakeml.quality).

    Every check counts what violates it in the batch; it passes when that is within the
    threshold, otherwise its status is ``fail`` (severity ``error``) or ``warn``.

    - ``not_null``: rows with a null in any of ``columns``; must be 0.
    - ``unique``: rows beyond the first per value of ``columns`` (rows with a null
      there are left to not_null); must be 0.
    - ``range``: rows with a value of ``columns`` below ``min`` or above ``max``
      (either may be left out; nulls pass); must be 0.
    - ``accepted_values``: rows with a value of ``columns`` not in ``values``; must be 0.
    - ``freshness``: days from the newest value of ``columns`` (one date or timestamp
      column) to the batch date (``reference: batch``), or from the newest value of
      ``columns`` (default: the batch column) to today (``reference: today``); at most
      ``max_age_days``.
    - ``row_count_change``: |rows - rows of the previous batch| / rows of the previous
      batch; at most ``max_change`` (0.5 = 50 %). Passes on the first batch.

    ``where`` (Spark SQL) restricts the rows a check looks at, e.g. ``status = 'paid'``.
    """

    name: str = Field(min_length=1)
    type: Literal["not_null", "unique", "range", "accepted_values", "freshness", "row_count_change"]
    columns: list[str] = Field(default_factory=list)
    min: float | None = None
    max: float | None = None
    values: list[str | int | float | bool] | None = None
    max_age_days: int | None = Field(None, ge=0)
    reference: Literal["batch", "today"] | None = None  # freshness only; None: batch
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


class QualitySpec(_Strict):
    """Data-quality checks per table (see lakeml.quality).

    ``checks`` maps a table of the use case (a bronze table, the feature table, labels,
    predictions, quarantine or ingest_log) to its checks (``CheckSpec``). Checks run per
    batch: the rows of one ``_batch_date`` (bronze), ``as_of_date`` (features, labels),
    ``score_date`` (predictions) or ``batch_date`` (quarantine, ingest_log).
    """

    checks: dict[_TableName, Annotated[list[CheckSpec], AfterValidator(_unique_check_names)]] = Field(default_factory=dict)

    @staticmethod
    def batch_columns(sources: dict[str, SourceSpec], tables: TablesSpec) -> dict[str, str]:
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
        known = QualitySpec.batch_columns(sources, tables) if isinstance(sources, dict) and isinstance(tables, TablesSpec) else None
        token = _USE_CASE_TABLES.set(known)
        try:
            return handler(value)
        finally:
            _USE_CASE_TABLES.reset(token)


class MonitoringSpec(_Strict):
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


class ValidationSpec(_Strict):
    """The challenger-vs-champion gate (see lakeml.validate)."""

    min_roc_auc: float = Field(0.7, ge=0, le=1)
    min_lift_top_decile: float = Field(1.5, ge=0)
    # promote only if challenger AUC - champion AUC > -max_auc_drop (0: strictly better)
    max_auc_drop: float = Field(0.0, ge=0, le=1)
    # score the challenger beside the champion (model_alias = 'challenger') before deciding
    shadow: bool = True


class RetrainingSpec(_Strict):
    """When the scheduled pipeline retrains (see lakeml.policy). The policy fires when

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


class ExportSpec(_Strict):
    """Portable model formats logged beside the Spark model (see lakeml.export).

    Each format is checked against the Spark model on ``parity_rows`` rows and logged only
    if max |P(1) - Spark P(1)| <= ``parity_tolerance``."""

    mleap: bool = True  # mleap/model.zip (needs the MLeap jars on the classpath)
    onnx: bool = True  # onnx/model.onnx (where every stage converts)
    parity_rows: int = Field(10_000, ge=1)
    parity_tolerance: float = Field(1e-6, ge=0)


class UseCaseConfig(_Strict):
    name: str
    description: str = ""
    database: str
    sources: dict[str, SourceSpec]
    tables: TablesSpec = Field(default_factory=TablesSpec)
    features: FeaturesSpec
    label: LabelSpec
    model: ModelSpec
    generator: GeneratorSpec = Field(default_factory=GeneratorSpec)
    quality: QualitySpec = Field(default_factory=QualitySpec)
    monitoring: MonitoringSpec = Field(default_factory=MonitoringSpec)
    validation: ValidationSpec = Field(default_factory=ValidationSpec)
    retraining: RetrainingSpec = Field(default_factory=RetrainingSpec)
    export: ExportSpec = Field(default_factory=ExportSpec)
    source_file: str = ""
    conf_dir: str = ""

    def table(self, name: str) -> str:
        """Qualified name of a use case table: ``<database>.<name>``."""
        return f"{self.database}.{name}"

    def read_sql(self, rel: str) -> str:
        return (Path(self.conf_dir) / rel).read_text()


# --------------------------------------------------------------------------- loading

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _interpolate(node: Any, path: Path, key: str = "") -> Any:
    if isinstance(node, dict):
        return {k: _interpolate(v, path, f"{key}.{k}" if key else str(k)) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate(v, path, f"{key}.{i}") for i, v in enumerate(node)]
    if isinstance(node, str):

        def repl(m: re.Match) -> str:
            var, default = m.group(1), m.group(2)
            if var in os.environ:
                return os.environ[var]
            if default is not None:
                return default
            raise ConfigError(f"{path}: {key or '(top level)'}: environment variable {var} is not set (referenced as ${{{var}}})")

        return _ENV_REF.sub(repl, node)
    return node


def referenced_vars(path: str | Path) -> list[str]:
    """Names of the environment variables a config file's values refer to (``${VAR}``,
    ``${VAR:-default}``), in order of first use. spark-submit.sh hands the ones that are set
    to a driver that runs on the cluster, which reads the same file again."""
    names: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
        elif isinstance(node, str):
            for m in _ENV_REF.finditer(node):
                if m.group(1) not in names:
                    names.append(m.group(1))

    walk(yaml.safe_load(Path(path).read_text()) or {})
    return names


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return _interpolate(data, path)


def _validate(model: type[BaseModel], data: dict, path: Path) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            key = ".".join(str(p) for p in err["loc"]) or "(top level)"
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = "unknown key (check the spelling)"
            elif "input" in err and err["type"] != "missing":
                msg = f"{msg} (got {err['input']!r})"
            lines.append(f"{path}: {key}: {msg}")
        raise ConfigError("\n".join(lines)) from None


def load_env(conf_dir: str | Path, name: str) -> EnvConfig:
    """Load ``conf/envs/<name>.yaml``."""
    conf_dir = Path(conf_dir).resolve()
    path = conf_dir / "envs" / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (conf_dir / "envs").glob("*.yaml"))
        raise ConfigError(f"{path}: unknown env {name!r}; known envs: {', '.join(known) or 'none'}")
    data = _read_yaml(path)
    data.setdefault("name", name)
    env = _validate(EnvConfig, data, path)
    env.source_file = str(path)
    env.project_root = str(conf_dir.parent)
    return env


def load_usecase(conf_dir: str | Path, name: str) -> UseCaseConfig:
    """Load ``conf/<name>/usecase.yaml`` and check that every SQL file it names exists."""
    conf_dir = Path(conf_dir).resolve()
    uc_dir = conf_dir / name
    path = uc_dir / "usecase.yaml"
    if not path.is_file():
        known = sorted(p.parent.name for p in conf_dir.glob("*/usecase.yaml"))
        raise ConfigError(f"{path}: unknown use case {name!r}; known use cases: {', '.join(known) or 'none'}")
    uc = _validate(UseCaseConfig, _read_yaml(path), path)
    uc.source_file = str(path)
    uc.conf_dir = str(uc_dir)
    sql_refs = [("features.population_sql", uc.features.population_sql), ("label.sql", uc.label.sql)]
    sql_refs += [(f"features.sql.{i}", s) for i, s in enumerate(uc.features.sql)]
    for key, rel in sql_refs:
        if not (uc_dir / rel).is_file():
            raise ConfigError(f"{path}: {key}: SQL file {rel!r} not found under {uc_dir}")
    known_cols = set(uc.model.categorical) | set(uc.model.numeric)
    if len(known_cols) != len(uc.model.categorical) + len(uc.model.numeric):
        raise ConfigError(f"{path}: model: a column is listed both as categorical and numeric")
    return uc


def to_yaml(cfg: BaseModel) -> str:
    """The resolved config as YAML (logged with every training run)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
