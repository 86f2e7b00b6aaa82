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
from datetime import date
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

SPARK_TYPES = ("string", "int", "bigint", "double", "date", "timestamp", "boolean")


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
