"""Streaming scoring, with the real ``jobs/stream.py`` on a copy of the pipeline's data folder:
the feature table's stream scores the newest snapshot as batch scoring does (a canary share by
the challenger), and the landing stream, killed with ``kill -9`` in the middle of a micro-batch
(its predictions committed, Spark's record of the batch not yet) and started again, scores every
landed record exactly once (no duplicate, no gap), rejects every malformed one once with its raw
text, and stops on SIGTERM between micro-batches with exit code 0."""

from __future__ import annotations

import glob
import json
import os
import random
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from deltalake import DeltaTable
from mlflow.tracking import MlflowClient

from conftest import ROOT, edit_yaml, move_mlflow_paths, run_cmd
from lakeml.lifecycle import canary

SHARE = 0.3


def _copy_world(src: Path, dst: Path) -> Path:
    """A whole copy of a data folder that is its own: the MLflow store's and the Derby
    metastore's absolute paths (table locations) moved to the copy, so the stream's writes
    (and the change data feed it turns on) touch the copy only."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.lck", ".lakeml.lock", "logs"))
    move_mlflow_paths(src, dst)
    # Derby has no replace(): a prefix swap, with ij from the Derby jars Spark ships (~1 s)
    o, n = f"file:{src}", f"file:{dst}"
    swap = "'{n}' || SUBSTR({c}, LENGTH('{o}') + 1) WHERE LOCATE('{o}', {c}) = 1"
    sql = "\n".join([
        f"connect 'jdbc:derby:{dst}/metastore_db';",
        f"UPDATE APP.SDS SET LOCATION = {swap.format(n=n, o=o, c='LOCATION')};",
        f"UPDATE APP.DBS SET DB_LOCATION_URI = {swap.format(n=n, o=o, c='DB_LOCATION_URI')};",
        f"UPDATE APP.SERDE_PARAMS SET PARAM_VALUE = CAST('{n}' || SUBSTR(CAST(PARAM_VALUE AS VARCHAR(32000)), LENGTH('{o}') + 1) AS CLOB) "
        f"WHERE PARAM_VALUE LIKE '{o}%';",
        "exit;",
    ])
    import pyspark

    jars = sorted(glob.glob(os.path.join(os.path.dirname(pyspark.__file__), "jars", "derby*.jar")))
    p = subprocess.run(["java", "-cp", ":".join(jars), "org.apache.derby.tools.ij"], input=sql, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "ERROR" not in p.stdout, p.stdout + p.stderr
    return dst


def _table(d: Path, name: str):
    return DeltaTable(str(d / "warehouse" / "churn.db" / name)).to_pandas()


def _result(out: str) -> dict:
    """The JSON a job prints last (after its console lines)."""
    out = "\n" + out
    return json.loads(out[out.rindex("\n{\n") + 1:])


def _job_env(d: Path) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PYSPARK_GATEWAY_", "LAKEML_LOG_FILE"))}
    return {**e, "LAKEML_DATA_DIR": str(d), "LAKEML_ENV": "embedded"}


@pytest.mark.subprocess
def test_once_on_the_feature_table_scores_the_newest_snapshot_as_batch_scoring_does(pipeline_data_dir, tmp_path, conf_copy, uc):
    d = _copy_world(pipeline_data_dir, tmp_path / "data")
    # a canary: version 2 (the same model, registered again) is the challenger in canary
    client = MlflowClient(tracking_uri=f"sqlite:///{d}/mlflow/mlflow.db", registry_uri=f"sqlite:///{d}/mlflow/mlflow.db")
    v1 = client.get_model_version_by_alias(uc.model.name, "champion")
    v2 = client.create_model_version(uc.model.name, v1.source, run_id=v1.run_id, tags={**v1.tags, canary.TAG: canary.RUNNING})
    client.set_registered_model_alias(uc.model.name, "challenger", v2.version)
    edit_yaml(conf_copy / "churn" / "usecase.yaml", lambda u: u.setdefault("scoring", {}).setdefault("canary", {}).update(share=SHARE))

    p = run_cmd(["./spark-submit.sh", "--conf-dir", str(conf_copy), "jobs/stream.py", "--source", "features", "--once"],
                {"LAKEML_DATA_DIR": str(d)}, timeout=600)
    result = _result(p.stdout)
    streamed = _table(d, "stream_predictions")
    batch = _table(d, "predictions")
    newest = _table(d, "customer_features")["as_of_date"].max()
    batch = batch[(batch.score_date == newest) & (batch.model_alias == "champion") & (batch.model_version == str(v1.version))]
    both = streamed.merge(batch, on=[uc.entity, "score_date"], suffixes=("", "_batch"))

    assert result["stopped_by"] == "nothing left (availableNow)"
    assert result["rows_scored"] == len(streamed) == len(batch) == len(both) > 1000
    assert set(streamed.score_date) == {newest} and streamed.feature_version.notna().all() and set(streamed.source) == {"features"}
    assert (both[uc.probability] - both[f"{uc.probability}_batch"]).abs().max() <= 1e-6
    assert (both.prediction == both.prediction_batch).all()
    # the canary share (the same hash as batch and online) by version 2, recorded as the challenger
    inside = {e for e in streamed[uc.entity] if canary.in_canary(e, SHARE)}
    by_alias = streamed.groupby("model_alias")
    assert set(by_alias.groups) == {"champion", "challenger"} and set(streamed.loc[by_alias.groups["challenger"], uc.entity]) == inside
    versions = {alias: sorted(set(vs)) for alias, vs in streamed.groupby("model_alias").model_version}
    assert versions == {"champion": [str(v1.version)], "challenger": [str(v2.version)]}


def _log(table: Path) -> list[dict]:
    """The actions of a Delta table's commits, from its log (no Spark: read while the job writes)."""
    return [json.loads(line) for f in sorted((table / "_delta_log").glob("*.json")) for line in f.read_text().splitlines()]


def _committed_rows(table: Path) -> int:
    return sum(json.loads(a["add"]["stats"])["numRecords"] for a in _log(table) if "add" in a)


def _written_batches(table: Path) -> set[int]:
    """The micro-batches whose rows a table has: its idempotent writes' txnVersion."""
    return {a["txn"]["version"] for a in _log(table) if "txn" in a}


class _Sender:
    """Lands JSON lines files as a sender should (written under a dot name, then renamed) and
    keeps what each must become: (file, entity) scored, (file, raw line) rejected."""

    def __init__(self, d: Path, uc):
        self.dir, self.uc, self.rnd = d / "stream" / "churn" / "in", uc, random.Random(28)
        self.dir.mkdir(parents=True, exist_ok=True)
        ft = DeltaTable(str(d / "warehouse" / "churn.db" / "customer_features")).to_pyarrow_table().to_pylist()
        newest = [r for r in ft if r["as_of_date"] == max(r["as_of_date"] for r in ft)]
        self.ids = sorted(r[uc.entity] for r in newest)
        self.rows = newest[:20]  # native values, None for a missing one (pandas would make an int column with nulls float)
        self.scored, self.rejected, self.n = Counter(), Counter(), 0

    def land(self) -> None:
        name, e = f"f{self.n:03d}.jsonl", self.uc.entity
        entities = self.rnd.sample(self.ids, 30)
        given = [dict(r) for r in self.rnd.sample(self.rows, 2)]
        given[0].pop("as_of_date")  # scored on the day its file landed
        bad = [json.dumps({e: f"NOBODY{self.n}"}), "{not json", json.dumps({e: entities[0], "age": "old"}),
               json.dumps({e: "x", "colour": 1})]
        lines = [json.dumps({e: x}) for x in entities] + [json.dumps(r, default=str) for r in given] + bad + [""]
        self.rnd.shuffle(lines)
        (self.dir / f".{name}").write_text("\n".join(lines) + "\n")
        (self.dir / f".{name}").rename(self.dir / name)
        self.scored.update((name, x) for x in entities + [r[e] for r in given])
        self.rejected.update((name, raw) for raw in bad)
        self.n += 1


def _start(d: Path, out: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(["./spark-submit.sh", "jobs/stream.py", "--source", "landing", "--trigger-seconds", "1", *args],
                            cwd=ROOT, env=_job_env(d), stdout=open(out, "w"), stderr=subprocess.STDOUT, start_new_session=True)


def _batches(cp: Path, kind: str) -> set[int]:
    return {int(p.name) for p in (cp / kind).glob("*") if p.name.isdigit()}


@pytest.mark.subprocess
def test_landing_stream_killed_mid_batch_and_restarted_scores_every_record_once(pipeline_data_dir, tmp_path, uc):
    d = _copy_world(pipeline_data_dir, tmp_path / "data")
    sender, cp = _Sender(d, uc), d / "checkpoints" / "churn" / "stream_landing"
    sink = d / "warehouse" / "churn.db" / "stream_predictions"

    p = _start(d, tmp_path / "first.out", "--max-files", "2")  # small micro-batches: the kill finds one running
    in_flight, t0 = [], time.monotonic()
    try:
        # a file lands every second; kill -9 once a micro-batch has committed and the next one has
        # written its predictions but is not done (its rejects, then Spark's commit, to come)
        while not in_flight and time.monotonic() - t0 < 300 and p.poll() is None:
            if sender.n < 30 and (time.monotonic() - t0) > sender.n:
                sender.land()
            done = _batches(cp, "commits")
            running = sorted(_batches(cp, "offsets") - done)
            if done and running and running[-1] in _written_batches(sink):
                os.killpg(p.pid, signal.SIGKILL)
                in_flight = running
            time.sleep(0.01)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    log = (tmp_path / "first.out").read_text()
    assert in_flight, f"the kill never caught a micro-batch between its write and its end (exit {p.returncode}):\n{log[-3000:]}"
    # the kill caught it unfinished, its predictions written: the restart runs it again
    assert sorted(_batches(cp, "offsets") - _batches(cp, "commits")) == in_flight and in_flight[-1] in _written_batches(sink)
    print(f"killed in micro-batch {in_flight} after {time.monotonic() - t0:.1f} s, {sender.n} files landed, "
          f"{_committed_rows(sink)} rows committed")

    for _ in range(3):  # files land while nothing runs
        sender.land()
    p = _start(d, tmp_path / "second.out")  # every landed file per micro-batch: the batch run again, then the rest
    try:
        deadline = time.monotonic() + 300
        while _committed_rows(sink) < sum(sender.scored.values()) and time.monotonic() < deadline and p.poll() is None:
            time.sleep(0.2)
        # one more file once the backlog is scored: its end-to-end latency at a 1 s trigger
        sender.land()
        t1 = time.monotonic()
        while _committed_rows(sink) < sum(sender.scored.values()) and time.monotonic() < deadline and p.poll() is None:
            time.sleep(0.05)
        print(f"restarted: every file scored; the last one {time.monotonic() - t1:.1f} s after it landed")
        os.kill(p.pid, signal.SIGTERM)  # the JVM: spark-submit execs it, the Python driver is its child
        p.wait(timeout=120)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    second = (tmp_path / "second.out").read_text()
    assert p.returncode == 0, second[-3000:]
    assert _result(second)["stopped_by"] == "signal"
    assert f"micro-batch {', '.join(map(str, in_flight))} did not finish (the job ended in it): it runs again" in second

    scored = _table(d, "stream_predictions")
    rejects = _table(d, "stream_predictions_rejects")
    got = Counter(zip(scored.source_file.map(lambda f: Path(f).name), scored[uc.entity], strict=True))
    assert got == sender.scored  # every record once: no duplicate, no gap
    assert Counter(zip(rejects.source_file.map(lambda f: Path(f).name), rejects.raw, strict=True)) == sender.rejected
    assert set(rejects.reason.str.split(" ").str[0]) == {"no", "not", "value(s)", "undeclared"}  # no row, not JSON, ...
    assert scored[uc.probability].between(0, 1).all() and set(scored.model_alias) == {"champion"}
