"""Every MLflow call of the project: tracking, the model registry and aliases.

Aliases, not stages: ``models:/<name>@champion`` is what scoring loads, ``@challenger``
the newest candidate. Versions are found by alias, never by "the highest number".
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import mlflow.spark
from mlflow.data.spark_dataset import SparkDataset
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from lakeml.core.config import EnvConfig
from lakeml.core.errors import MissingDataError
from lakeml.core.gitinfo import git_commit as git_commit  # re-exported: a training's git_commit tag (tracking.git_commit)

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"


def configure(env: EnvConfig) -> MlflowClient:
    if env.tracking_uri.startswith("sqlite:///"):
        Path(env.tracking_uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(env.tracking_uri)
    mlflow.set_registry_uri(env.registry_uri)
    return MlflowClient(tracking_uri=env.tracking_uri, registry_uri=env.registry_uri)


def experiment(env: EnvConfig, name: str) -> str:
    """Id of the experiment, created with the env's artifact root on first use."""
    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = env.artifact_root
    if not re.match(r"[A-Za-z][A-Za-z0-9+.-]+:", location):  # a path (a URI has a scheme: file:, hdfs:, mlflow-artifacts:)
        Path(location).mkdir(parents=True, exist_ok=True)
        location = Path(location).as_uri()
    return mlflow.create_experiment(name, artifact_location=f"{location.rstrip('/')}/{name}")


HOST_TAG, PID_TAG = "lakeml.host", "lakeml.pid"


def start_run(experiment_id: str, run_name: str):
    """``mlflow.start_run``, tagged with this host and process: a run a crash leaves RUNNING
    is found by ``fail_abandoned_runs``."""
    import socket

    return mlflow.start_run(experiment_id=experiment_id, run_name=run_name,
                            tags={HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())})


def fail_abandoned_runs(client: MlflowClient, experiment_id: str) -> list[str]:
    """Mark FAILED the runs of the experiment that are still RUNNING although the process
    that started them, on this host, has ended (killed during training or monitoring).
    Runs of other hosts or of a live process are left alone. Returns the runs marked."""
    import socket

    from lakeml.core import lock

    host, marked = socket.gethostname(), []
    for run in client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=1000):
        tags = run.data.tags
        pid = tags.get(PID_TAG)
        if tags.get(HOST_TAG) != host or not (pid or "").isdigit() or int(pid) == os.getpid() or lock.pid_alive(int(pid)):
            continue
        client.set_tag(run.info.run_id, "lakeml.abandoned", f"process {pid} on {host} ended without finishing this run")
        client.set_terminated(run.info.run_id, status="FAILED")
        marked.append(run.info.run_id)
        log.warning("MLflow run %s (%s) was left RUNNING by process %s, which has ended: marked FAILED",
                    run.info.run_id, tags.get("mlflow.runName"), pid)
    return marked


# what a complete training tags its version with (``lakeml.ml.train.run`` passes them to
# ``register``, in the one registry call); a version without them was not made whole
TRAIN_TAGS = ("test_roc_auc", "threshold", "test_as_of", "git_commit")
ORPHAN_TAG, ORPHAN_REASON_TAG = "lakeml.orphan", "lakeml.orphan_reason"


def orphan_reason(client: MlflowClient, mv) -> str | None:
    """Why model version ``mv`` (an MLflow ``ModelVersion``) is an orphan, or None if it is
    whole: tagged ``lakeml.orphan``, or its MLflow run is not FINISHED (or gone), or it lacks
    the tags a complete training gives (``TRAIN_TAGS``): left by a crash inside the registry
    call or by an older release that registered before the run had ended."""
    tags = mv.tags or {}
    if tags.get(ORPHAN_TAG) == "true":
        return tags.get(ORPHAN_REASON_TAG) or "tagged orphan"
    if not mv.run_id:
        return "it has no MLflow run"
    try:
        status = client.get_run(mv.run_id).info.status
    except MlflowException:
        return f"its MLflow run {mv.run_id} does not exist"
    if status != "FINISHED":
        return f"its MLflow run {mv.run_id} is {status}, not FINISHED"
    missing = [t for t in TRAIN_TAGS if t not in tags]
    if missing:
        return f"it lacks the tags of a complete training: {', '.join(missing)}"
    return None


def versions(client: MlflowClient, name: str) -> list:
    """Every version of registered model ``name`` (none if the name is not registered)."""
    out, token = [], None
    while True:
        page = client.search_model_versions(f"name = '{name}'", max_results=1000, page_token=token)
        out += list(page)
        token = page.token
        if not token:
            return out


def tag_orphan_versions(client: MlflowClient, name: str) -> list[str]:
    """Tag ``lakeml.orphan=true`` (and ``lakeml.orphan_reason``) on every version of ``name``
    that is an orphan (``orphan_reason``) and not yet tagged; one log line each. A version
    whose run is RUNNING in a live process (or one of another host) is left alone: perhaps
    still being made (it is not chosen either). Returns the versions tagged. Nothing that
    chooses a version chooses an orphan (``usable``)."""
    marked = []
    for mv in versions(client, name):
        if (mv.tags or {}).get(ORPHAN_TAG) == "true":
            continue
        reason = orphan_reason(client, mv)
        if reason is None or _run_in_progress(client, mv.run_id):
            continue
        client.set_model_version_tag(name, mv.version, ORPHAN_REASON_TAG, reason[:5000])
        client.set_model_version_tag(name, mv.version, ORPHAN_TAG, "true")
        marked.append(str(mv.version))
        log.warning("%s version %s is an orphan (%s): tagged %s=true, it will never be chosen", name, mv.version, reason, ORPHAN_TAG)
    return marked


def _run_in_progress(client: MlflowClient, run_id: str | None) -> bool:
    """Whether ``run_id`` is RUNNING in a process that may still end it: a live process of
    this host, or any of another host (``start_run``'s tags). A RUNNING run without them
    (an older release's) is not in progress: the data folder's lock admits one job."""
    import socket

    from lakeml.core import lock

    try:
        run = client.get_run(run_id) if run_id else None
    except MlflowException:
        return False
    if run is None or run.info.status != "RUNNING":
        return False
    host, pid = run.data.tags.get(HOST_TAG), run.data.tags.get(PID_TAG) or ""
    if host is None or not pid.isdigit():
        return False
    return host != socket.gethostname() or lock.pid_alive(int(pid))


def usable(client: MlflowClient, name: str, version: str) -> str | None:
    """None if version ``version`` of ``name`` may be chosen (aliased, promoted, rolled back
    to), else why not: it does not exist, or it is an orphan."""
    try:
        mv = client.get_model_version(name, str(version))
    except MlflowException:
        return f"{name} has no version {version}"
    reason = orphan_reason(client, mv)
    return None if reason is None else f"{name} version {version} is an orphan: {reason}"


def log_table_input(df, table: str, version: int, context: str) -> None:
    """Record an input table and its Delta version on the active run."""
    import warnings

    digest = hashlib.sha256(f"{table}@{version}".encode()).hexdigest()[:8]
    with warnings.catch_warnings():
        # MLflow's hint about integer columns: the pipeline imputes them, a null never reaches the model
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        ds = mlflow.data.from_spark(df, table_name=table, version=str(version), name=table, digest=digest)
        mlflow.log_input(_Counted(df.count(), df=df, source=ds.source, name=table, digest=digest), context=context)
    mlflow.log_param(f"input.{table}.delta_version", version)


class _Counted(SparkDataset):
    """MLflow's Spark dataset with its row count given: MLflow's own profile turns every row
    of the table into a Python object to count them approximately, a whole pass per logged
    input that keeps running after its 5 s timeout (40 s of the train stage at 1 M entities).
    A plain Delta table's ``count()`` is read from its log."""

    def __init__(self, rows: int, **kwargs):
        super().__init__(**kwargs)
        self._rows = rows

    @property
    def profile(self) -> dict:
        return {"num_rows": self._rows}


def log_text_artifacts(files: dict[str, str], artifact_dir: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        for rel, text in files.items():
            p = Path(d) / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
        mlflow.log_artifacts(d, artifact_dir)


@dataclass
class ModelRef:
    name: str
    version: str
    run_id: str
    alias: str | None = None

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def log_spark_model(model, signature=None) -> str:
    """Log a fitted PipelineModel with the spark flavor in the active run, not registered;
    returns its model URI (for ``register``)."""
    import warnings

    import pyspark

    reqs = [f"pyspark=={pyspark.__version__}", f"mlflow=={mlflow.__version__}"]
    with warnings.catch_warnings():
        # MLflow's hint about integer columns: the pipeline imputes them, a null never reaches the model
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        info = mlflow.spark.log_model(model, "model", pip_requirements=reqs, signature=signature)
    return info.model_uri


def register(model_uri: str, name: str, run_id: str, tags: dict | None = None) -> ModelRef:
    """A new version of ``name`` for a logged model, with its tags, in one registry call: a
    version exists whole or not at all (one without ``TRAIN_TAGS`` or whose run had not
    FINISHED is an orphan, see ``orphan_reason``)."""
    mv = mlflow.register_model(model_uri, name, tags={k: str(v) for k, v in (tags or {}).items()})
    return ModelRef(name, str(mv.version), run_id)


def log_and_register_spark_model(model, name: str, signature=None) -> ModelRef:
    """Log a fitted PipelineModel in the active run and register it as a new version."""
    return register(log_spark_model(model, signature), name, mlflow.active_run().info.run_id)


def set_alias(client: MlflowClient, name: str, alias: str, version: str) -> None:
    client.set_registered_model_alias(name, alias, version)
    log.info("%s@%s -> version %s", name, alias, version)


def get_alias(client: MlflowClient, name: str, alias: str) -> ModelRef | None:
    try:
        mv = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None
    return ModelRef(name, str(mv.version), mv.run_id, alias)


def tag_version(client: MlflowClient, ref: ModelRef, tags: dict[str, str]) -> None:
    for k, v in tags.items():
        client.set_model_version_tag(ref.name, ref.version, k, str(v))


def load_spark_model(client: MlflowClient, name: str, alias: str):
    """(PipelineModel, ModelRef) for ``models:/<name>@<alias>``; a clear error if unset."""
    ref = get_alias(client, name, alias)
    if ref is None:
        raise MissingDataError(
            f"No model version of {name!r} has the alias {alias!r} in the registry at "
            f"{mlflow.get_registry_uri()}. Train one first: jobs/train.py (or jobs/pipeline.py)."
        )
    return _load(ref), ref


# loaded pipelines by (registry, name, version, run): a registered version never changes, and
# one daily run loads the same version several times (re-scores, the live score, the monitor)
_LOADED: dict[tuple, object] = {}
_KEEP = 4


def _load(ref: ModelRef):
    key = (mlflow.get_registry_uri(), ref.name, ref.version, ref.run_id)
    if key not in _LOADED:
        if len(_LOADED) >= _KEEP:
            _LOADED.pop(next(iter(_LOADED)))
        _LOADED[key] = mlflow.spark.load_model(f"models:/{ref.name}/{ref.version}")
    return _LOADED[key]


def version_ref(client: MlflowClient, name: str, version: str, alias: str | None = None) -> ModelRef:
    """The ModelRef of ``models:/<name>/<version>``; ``alias`` is what the ref reports (the
    alias that version served under)."""
    try:
        mv = client.get_model_version(name, str(version))
    except MlflowException:
        raise MissingDataError(f"{name!r} has no version {version} in the registry at {mlflow.get_registry_uri()}") from None
    return ModelRef(name, str(mv.version), mv.run_id, alias)


def load_spark_model_version(client: MlflowClient, name: str, version: str, alias: str | None = None):
    """(PipelineModel, ModelRef) for ``models:/<name>/<version>``."""
    ref = version_ref(client, name, version, alias)
    return _load(ref), ref


PREVIOUS = "previous"  # the champion a promotion replaced, scored beside the new one while it is watched


def delete_alias(client: MlflowClient, name: str, alias: str) -> None:
    """Remove ``alias`` from ``name`` (nothing happens when it is not set)."""
    try:
        client.delete_registered_model_alias(name, alias)
    except MlflowException:
        return
    log.info("%s@%s removed", name, alias)


def version_tags(client: MlflowClient, name: str, version: str) -> dict[str, str]:
    """The tags of model version ``version`` of ``name`` ({} when it does not exist)."""
    try:
        return dict(client.get_model_version(name, str(version)).tags or {})
    except MlflowException:
        return {}


def log_onnx_model(model: bytes, experiment_id: str, run_name: str) -> str:
    """Log ONNX bytes with MLflow's ``onnx`` flavour in a new run of ``experiment_id``, not
    registered (what ``mlflow models serve`` needs to serve them without a JVM); returns the
    model's ``runs:/`` URI."""
    import mlflow.onnx
    import onnx

    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
        mlflow.onnx.log_model(onnx.load_from_string(model), name="model", pip_requirements=["onnxruntime", "onnx"])
    return f"runs:/{run.info.run_id}/model"
