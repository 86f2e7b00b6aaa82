"""Environments: where things run (``conf/envs/<env>.yaml``).

Spark master and confs, storage locations, the metastore, MLflow URIs, the SQL endpoint.
Nothing here says what runs: that is the use case (``lakeml.core.config.usecase``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from lakeml.core.config.base import Strict


class SparkSettings(Strict):
    master: str = "local[*]"
    deploy_mode: Literal["client", "cluster"] = "client"
    conf: dict[str, str | int | float | bool] = Field(default_factory=dict)
    # spark-submit flags that are not --conf (e.g. --archives for YARN, --num-executors).
    # --archives and --py-files are merged with the ones spark-submit.sh adds (one flag each).
    submit_args: list[str] = Field(default_factory=list)
    # where the Delta jars come from: "local" ships .cache/jars (`make jars`) with --jars;
    # "cluster" ships none, the cluster's Spark has them (e.g. /opt/spark/jars of the image)
    jars_from: Literal["local", "cluster"] = "local"
    # YARN: how Python reaches the application master and the executors. "local": this
    # machine's venv at the same path on every node (the one-machine YARN of
    # scripts/cluster.sh, or nodes that mount the project), with Spark's jars from the same
    # place (spark.yarn.jars local:); otherwise the URI of a packed venv (venv-pack), shipped
    # with --archives and unpacked as ./environment in every container
    python: str = "local"


class StorageSettings(Strict):
    # Everything below defaults to a folder under data_dir. Relative paths are relative to
    # the project root (the parent of conf/). LAKEML_DATA_DIR overrides data_dir.
    data_dir: str = "var"
    # the landing root: each use case lands under <landing>/<use case name>/
    landing: str | None = None
    warehouse: str | None = None
    metastore: Literal["derby", "external"] = "derby"
    # where the landing job moves ingested batches (default: "archive" beside the landing
    # folder), also one folder per use case
    archive: str | None = None
    # WebHDFS address of the landing zone's HDFS (the landing job moves files with HdfsCLI)
    webhdfs: str | None = None


class MlflowSettings(Strict):
    tracking_uri: str | None = None  # default: sqlite:///<data_dir>/mlflow/mlflow.db
    registry_uri: str | None = None  # default: the tracking URI
    artifact_root: str | None = None  # default: <data_dir>/mlflow/artifacts


class SqlSettings(Strict):
    # a HiveServer2 (Spark Thrift Server) JDBC URL: sql.sh opens beeline on it instead of
    # starting spark-sql on the catalog itself
    endpoint: str | None = None


class OnlineSettings(Strict):
    """The online feature store the pipeline fills after the features stage and the scoring
    server reads (lakeml.serving.store). ``sqlite``: an embedded file, no server (default
    ``<data_dir>/online/<use case>.sqlite``); ``redis``: the Redis server of the cluster stack
    (``scripts/cluster.sh up`` starts one on 127.0.0.1)."""

    store: Literal["sqlite", "redis"] = "sqlite"
    path: str | None = None  # sqlite: the folder of the store files (default <data_dir>/online)
    redis_url: str | None = None  # redis: redis://host:port/db (a password only from LAKEML_REDIS_PASSWORD)


class ServingSettings(Strict):
    """The online scoring server (``scripts/serve.sh``, lakeml.serving.app). It binds
    ``host`` (loopback by default); any other address needs a bearer token, read from the
    environment variable ``token_env`` or the file ``token_file``, never from this file."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    token_env: str = "LAKEML_SERVE_TOKEN"
    token_file: str | None = None
    max_body_bytes: int = Field(1_048_576, ge=1024)
    max_entities: int = Field(1000, ge=1)  # entities (or rows) per request
    reload_seconds: float = Field(5.0, gt=0)  # how often the registry's aliases are read
    log_flush_rows: int = Field(5000, ge=1)  # the answer log is written when this many wait ...
    log_flush_seconds: float = Field(5.0, gt=0)  # ... or this long after the oldest


class EnvConfig(Strict):
    name: str
    description: str = ""
    # the use case jobs run when none is given with --usecase
    usecase: str | None = None
    spark: SparkSettings = Field(default_factory=SparkSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)
    sql: SqlSettings = Field(default_factory=SqlSettings)
    online: OnlineSettings = Field(default_factory=OnlineSettings)
    serving: ServingSettings = Field(default_factory=ServingSettings)
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
        """The landing root; a use case's zone is ``landing_zone(name)``."""
        return self._abs(self.storage.landing) if self.storage.landing else f"{self.data_dir}/landing"

    def landing_zone(self, usecase: str) -> str:
        """Where the files of one use case land: ``<landing>/<usecase>/<date>/<source>/``."""
        return f"{self.landing_dir.rstrip('/')}/{usecase}"

    @property
    def archive_dir(self) -> str:
        """The archive root (default: ``archive`` beside the landing folder)."""
        if self.storage.archive:
            return self._abs(self.storage.archive)
        return self.landing_dir.rstrip("/").rsplit("/", 1)[0] + "/archive"

    def archive_zone(self, usecase: str) -> str:
        return f"{self.archive_dir.rstrip('/')}/{usecase}"

    @property
    def warehouse_dir(self) -> str:
        return self._abs(self.storage.warehouse) if self.storage.warehouse else f"{self.data_dir}/warehouse"

    @property
    def job_lock_key(self) -> str:
        """What one job at a time holds (lakeml.core.lock): the data folder when it holds the
        metastore too (Derby), else the warehouse, so envs that share tables (cluster, yarn)
        share the lock."""
        return self.data_dir if self.storage.metastore == "derby" else self.warehouse_dir

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
