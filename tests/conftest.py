"""Shared fixtures: ONE Spark session for the whole run, on a temporary warehouse.

Tests that start the project's commands as a user would (spark-submit.sh, sql.sh, the
notebook) use ``pipeline_data_dir``: a separate data folder in which the real commands
have run, because the embedded Derby metastore admits one process at a time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
sys.path.insert(0, str(ROOT / "lib"))

from lakeml.core.config import DemoSpec, load_env, load_usecase  # noqa: E402

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYARROW_IGNORE_TIMEZONE", "1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

# a few quick parameters per classifier, for tests that fit each of them
CLASSIFIER_PARAMS = {"logistic_regression": {"maxIter": 5}, "random_forest": {"numTrees": 5}, "gbt": {"maxIter": 5},
                     "xgboost": {"n_estimators": 30, "max_depth": 3, "early_stopping_rounds": 3}}
# small enough for CI, large enough for the planted signal to show (ROC AUC ~0.8)
TINY = DemoSpec(maker="demo.py", entities=1500, days=200, start_date=date(2026, 1, 1), seed=7, bad_row_rate=0.002)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("lakeml-data")
    os.environ["LAKEML_DATA_DIR"] = str(d)
    return d


@pytest.fixture(scope="session")
def env(data_dir):
    return load_env(CONF, "embedded")


@pytest.fixture(scope="session")
def uc():
    """The churn use case (conf/churn)."""
    return load_usecase(CONF, "churn")


def usecases() -> list[str]:
    """Every use case shipped in conf/ (tests that must hold for each are parametrized by it)."""
    return sorted(p.parent.name for p in CONF.glob("*/usecase.yaml"))


@pytest.fixture(scope="session")
def spark(env):
    from lakeml.core.session import get_spark

    s = get_spark(
        env,
        "lakeml-tests",
        extra_conf={
            "spark.sql.shuffle.partitions": "2",
            "spark.default.parallelism": "2",
            "spark.sql.adaptive.coalescePartitions.initialPartitionNum": "2",
            "spark.driver.memory": "3g",
        },
    )
    yield s
    s.stop()


@pytest.fixture()
def conf_copy(tmp_path):
    """A copy of conf/ to edit in a test."""
    d = tmp_path / "conf"
    shutil.copytree(CONF, d)
    return d


def edit_yaml(path, fn) -> None:
    """Apply ``fn`` to the parsed YAML file at ``path`` and write it back."""
    data = yaml.safe_load(path.read_text())
    fn(data)
    path.write_text(yaml.safe_dump(data))


def move_mlflow_paths(src: Path, dst: Path) -> None:
    """In the copy ``dst`` of data folder ``src``, the embedded MLflow store's absolute paths
    (artifact locations, model sources) moved from ``src`` to ``dst``."""
    import sqlite3

    with sqlite3.connect(dst / "mlflow" / "mlflow.db") as db:
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            for col in db.execute(f"PRAGMA table_info('{table}')").fetchall():
                if "CHAR" in col[2].upper() or "TEXT" in col[2].upper():
                    db.execute(f'UPDATE "{table}" SET "{col[1]}" = replace("{col[1]}", ?, ?) WHERE instr("{col[1]}", ?) > 0',
                               (str(src), str(dst), str(src)))


def run_cmd(args: list[str], env_vars: dict[str, str] | None = None, timeout: int = 1200,
            check: bool = True) -> subprocess.CompletedProcess:
    """Run a project command from the repo root, as a user would."""
    e = dict(os.environ)
    e.pop("PYSPARK_GATEWAY_PORT", None)
    e.pop("PYSPARK_GATEWAY_SECRET", None)
    # the in-process tests' MLflow URIs (mlflow.set_tracking_uri exports them): a user's shell has none
    for var in [k for k in e if k.startswith("MLFLOW_")]:
        e.pop(var)
    e.update(env_vars or {})
    p = subprocess.run(args, cwd=ROOT, env=e, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {p.returncode}\n--- stdout\n{p.stdout[-4000:]}\n--- stderr\n{p.stderr[-8000:]}")
    return p


@pytest.fixture(scope="session")
def pipeline_data_dir(tmp_path_factory) -> Path:
    """A data folder in which ./spark-submit.sh ran generate and the whole pipeline."""
    d = tmp_path_factory.mktemp("lakeml-cli")
    v = {"LAKEML_DATA_DIR": str(d), "LAKEML_ENV": "embedded"}
    run_cmd(["./spark-submit.sh", "jobs/generate.py",
             "--entities", str(TINY.entities), "--days", str(TINY.days), "--seed", str(TINY.seed)], v)
    # a copy of the newest batch under a year typed wrong (2062 for 2026): left in landing
    zone = d / "landing" / "churn"
    newest = max(p for p in zone.iterdir() if p.name[:1].isdigit())
    shutil.copytree(newest, zone / ("2062" + newest.name[4:]))
    p = run_cmd(["./spark-submit.sh", "jobs/pipeline.py"], v)
    (d / "pipeline.out").write_text(p.stdout + p.stderr)
    return d


@pytest.fixture(scope="session")
def maintenance_data_dir(tmp_path_factory) -> Path:
    """A data folder that was empty when `./spark-submit.sh jobs/pipeline.py --usecase
    maintenance` ran: the second use case wrote its own demo data, then ran every stage."""
    d = tmp_path_factory.mktemp("lakeml-maintenance")
    v = {"LAKEML_DATA_DIR": str(d), "LAKEML_ENV": "embedded"}
    p = run_cmd(["./spark-submit.sh", "jobs/pipeline.py", "--usecase", "maintenance"], v)
    (d / "pipeline.out").write_text(p.stdout)
    return d
