"""The online scoring server as a user runs it: ./scripts/serve.sh on the data folder the
pipeline made, spoken to over HTTP. One server process for the module (a copy of the
folder's registry and online store, so promoting a version here changes nothing for other
tests); the tests run in file order: answers and their parity with batch scoring, item
errors, security, metrics, the canary, the blue-green switch under load, and last the
answer log written at shutdown and read by Spark."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import CONF, ROOT, edit_yaml, run_cmd
from lakeml.lifecycle.canary import in_canary

TOKEN = "test-token-" + "x" * 24
SHARE = 0.3  # the canary's share in this module's conf
MAX_ENTITIES = 100
MAX_BODY = 64 * 1024
ANSWERED: list[tuple[str, int]] = []  # (request id, items answered) of every answer: the answer log must hold them all
_ANSWERED_LOCK = threading.Lock()

pytestmark = pytest.mark.subprocess


# --------------------------------------------------------------------------- fixtures




@pytest.fixture(scope="module")
def serve_conf(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("serve-conf") / "conf"
    shutil.copytree(CONF, d)
    edit_yaml(d / "envs" / "embedded.yaml", lambda c: c.update(serving={
        "reload_seconds": 0.3, "log_flush_rows": 100_000, "log_flush_seconds": 600,  # written at shutdown only
        "max_entities": MAX_ENTITIES, "max_body_bytes": MAX_BODY}))
    edit_yaml(d / "churn" / "usecase.yaml", lambda c: c.setdefault("scoring", {}).update(canary={"share": SHARE}))
    return d


@pytest.fixture(scope="module")
def serve_dir(pipeline_data_dir, tmp_path_factory) -> Path:
    """The registry (its artifacts stay where they are) and the online store of the pipeline's
    folder, copied."""
    d = tmp_path_factory.mktemp("serve-data")
    (d / "mlflow").mkdir()
    shutil.copy2(pipeline_data_dir / "mlflow" / "mlflow.db", d / "mlflow" / "mlflow.db")
    shutil.copytree(pipeline_data_dir / "online", d / "online")  # the pipeline's materialize stage made it
    return d


class Server:
    def __init__(self, proc: subprocess.Popen, port: int, data: Path, stderr: Path):
        self.proc, self.port, self.data, self.stderr = proc, port, data, stderr

    def call(self, method: str, path: str, body=None, token: str | None = TOKEN, headers: dict | None = None,
             conn: http.client.HTTPConnection | None = None) -> tuple[int, object, dict]:
        c = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        if isinstance(body, dict):
            body = json.dumps(body)
            h["Content-Type"] = "application/json"
        c.request(method, path, body, h)
        r = c.getresponse()
        raw = r.read()
        if conn is None:
            c.close()
        out = json.loads(raw) if r.getheader("content-type", "").startswith("application/json") else raw.decode()
        if isinstance(out, dict) and "results" in out:
            with _ANSWERED_LOCK:
                ANSWERED.append((out["request_id"], sum("error" not in x for x in out["results"])))
        return r.status, out, {k.lower(): v for k, v in r.getheaders()}

    def predict(self, body, **kw):
        return self.call("POST", "/v1/churn/predict", body, **kw)


@pytest.fixture(scope="module")
def server(serve_dir, serve_conf, tmp_path_factory):
    err = tmp_path_factory.mktemp("serve-out") / "stderr.txt"
    e = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PYSPARK_GATEWAY"))}
    e.update(LAKEML_DATA_DIR=str(serve_dir), LAKEML_SERVE_TOKEN=TOKEN)
    with open(err, "w") as f:
        proc = subprocess.Popen(["./scripts/serve.sh", "--port", "0", "--conf-dir", str(serve_conf)], cwd=ROOT, env=e,
                                stdout=subprocess.DEVNULL, stderr=f)
    deadline, port = time.time() + 90, None
    while port is None and time.time() < deadline and proc.poll() is None:
        for line in err.read_text().splitlines():
            if " serving churn on http://127.0.0.1:" in line:
                port = int(line.split("http://127.0.0.1:")[1].split(":")[0])
        time.sleep(0.1)
    assert port is not None, err.read_text()
    yield Server(proc, port, serve_dir, err)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def _batch_predictions(pipeline_data_dir: Path):
    """The batch predictions table (its Delta files, no Spark): entity -> row, of the newest score date."""
    import pyarrow.compute as pc
    from deltalake import DeltaTable

    t = DeltaTable(str(pipeline_data_dir / "warehouse" / "churn.db" / "predictions")).to_pyarrow_table()
    t = t.filter(pc.equal(t["model_alias"], "champion"))
    newest = pc.max(t["score_date"]).as_py()
    return newest, {r["customer_id"]: r for r in t.filter(pc.equal(t["score_date"], newest)).to_pylist()}


def _store_row(serve_dir: Path, entity: str) -> dict:
    import sqlite3

    con = sqlite3.connect(f"file:{serve_dir / 'online' / 'churn.sqlite'}?mode=ro", uri=True)
    try:
        (body,) = con.execute("select body from rows where gen = (select v from meta where k = 'gen') and entity = ?",
                              (entity,)).fetchone()
    finally:
        con.close()
    return json.loads(body)["features"]


def _metric(text: str, prefix: str) -> float:
    """The value of the one sample whose line starts with ``prefix``."""
    hits = [ln.rsplit(" ", 1)[1] for ln in text.splitlines() if ln.startswith(prefix)]
    assert len(hits) == 1, (prefix, hits)
    return float(hits[0])


# --------------------------------------------------------------------------- tests


def test_the_server_process_imports_no_spark():
    code = ("import sys; from lakeml.serving import app, answer_log, metrics, models, predict, store; "
            "assert 'pyspark' not in sys.modules; app.keep_spark_out(); "
            "import mlflow, mlflow.artifacts, onnxruntime, deltalake, fastapi, uvicorn; "
            "print(sorted(m for m, v in sys.modules.items() if m.split('.')[0] in ('pyspark', 'py4j') and v is not None))")
    p = run_cmd([".venv/bin/python", "-c", code], {"PYTHONPATH": str(ROOT / "lib")})
    assert p.stdout.strip() == "[]"


def test_starts_with_one_line_and_is_ready(server):
    lines = server.stderr.read_text().splitlines()
    assert len(lines) == 1 and "churn_classifier version 1 (champion); online store" in lines[0] and "token required" in lines[0]
    assert server.call("GET", "/health", token=None)[:2] == (200, {"status": "ok"})
    status, ready, _ = server.call("GET", "/ready")
    assert status == 200 and ready["models"] == {"champion": {"name": "churn_classifier", "version": "1"}} and ready["store"]["rows"] > 1000


def test_online_probability_equals_the_batch_prediction(server, pipeline_data_dir):
    score_date, batch = _batch_predictions(pipeline_data_dir)
    ids = sorted(batch)
    answers = [server.predict({"entities": ids[i: i + MAX_ENTITIES]}) for i in range(0, len(ids), MAX_ENTITIES)]
    assert [(s, a["errors"], h["x-request-id"] == a["request_id"]) for s, a, h in answers] == [(200, 0, True)] * len(answers)
    got = {r["entity"]: r for _, a, _ in answers for r in a["results"]}
    assert sorted(got) == ids and {r["as_of_date"] for r in got.values()} == {score_date.isoformat()}
    assert {(r["model_name"], r["model_version"], r["model_alias"]) for r in got.values()} == {("churn_classifier", "1", "champion")}
    worst = max(abs(got[e]["probability"] - batch[e]["churn_probability"]) for e in ids)
    assert worst <= 1e-6 and [e for e in ids if got[e]["prediction"] != batch[e]["prediction"]] == []
    # the same features given as a row: the same answer
    e = ids[0]
    status, answer, _ = server.predict({"rows": [_store_row(server.data, e)]})
    assert status == 200 and answer["results"][0]["probability"] == got[e]["probability"] and answer["results"][0]["as_of_date"] is None


def test_each_item_gets_its_answer_or_its_error(server, pipeline_data_dir):
    _, batch = _batch_predictions(pipeline_data_dir)
    known = sorted(batch)[0]
    row = _store_row(server.data, known)
    status, answer, _ = server.predict({"entities": [known, "NO-SUCH-ONE", 123, ""]})
    assert status == 200 and answer["errors"] == 3
    assert [(r.get("entity"), r.get("error", {}).get("status"), r.get("error", {}).get("code")) for r in answer["results"]] == [
        (known, None, None), ("NO-SUCH-ONE", 404, "unknown_entity"), (None, 422, "invalid_entity"), (None, 422, "invalid_entity")]
    assert server.predict({"entities": ["NO-SUCH-ONE", "NOR-THIS"]})[0] == 404  # every item unknown
    bad_rows = [
        {**row, "age": "42"},  # a number as a string
        {**row, "age": True},  # a boolean is no number
        {**row, "plan": 3},  # a category must be a string
        {**row, "shoe_size": 44},  # an unknown feature
        {k: v for k, v in row.items() if k != "plan"},  # a missing feature
        [1, 2],  # not an object
    ]
    status, answer, _ = server.predict({"rows": [row, *bad_rows, {**row, "age": None, "plan": None}]})
    codes = [r.get("error", {}).get("code") for r in answer["results"]]
    assert status == 200 and codes == [None, *["invalid_row"] * len(bad_rows), None]
    messages = [r["error"]["message"] for r in answer["results"][1:-1]]
    assert ["age must be a number" in messages[0], "age must be a number" in messages[1], "plan must be a string" in messages[2],
            "unknown feature(s): shoe_size" in messages[3], "missing feature(s): plan" in messages[4]] == [True] * 5
    assert server.predict({"rows": bad_rows})[0] == 422
    # whole-request refusals, never a 500
    assert server.predict('{"entities": [')[0] == 400
    assert server.predict('{"rows": [{"age": NaN}]}')[0] == 400
    assert server.predict({"entities": [known], "rows": [row]})[0] == 422
    assert server.predict({"entities": []})[0] == 422
    assert server.predict({"entities": [known] * (MAX_ENTITIES + 1)})[0] == 413
    assert server.call("POST", "/v1/another_usecase/predict", {"entities": [known]})[0] == 404


def test_token_and_body_bound_and_the_server_keeps_serving(server, pipeline_data_dir):
    _, batch = _batch_predictions(pipeline_data_dir)
    ok = {"entities": sorted(batch)[:1]}
    missing = server.predict(ok, token=None)
    assert missing[0] == 401 and missing[2]["www-authenticate"] == "Bearer"
    assert server.predict(ok)[0] == 200
    assert server.predict(ok, token="wrong-token-" + "y" * 20)[0] == 403
    assert server.predict(ok, headers={"Authorization": "Basic " + TOKEN}, token=None)[0] == 403
    assert server.call("GET", "/metrics", token=None)[0] == 401 and server.call("GET", "/ready", token=None)[0] == 401
    assert server.predict(ok)[0] == 200
    big = json.dumps({"entities": ["C" * 60] * 2000})  # > MAX_BODY
    assert len(big) > MAX_BODY and server.predict(big)[0] == 413  # refused from its Content-Length
    assert server.predict(ok)[0] == 200
    c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)  # chunked: no Content-Length, counted while read
    c.request("POST", "/v1/churn/predict", (big[i: i + 4096].encode() for i in range(0, len(big), 4096)),
              {"Authorization": f"Bearer {TOKEN}"}, encode_chunked=True)
    r = c.getresponse()
    assert r.status == 413 and json.loads(r.read())["error"]["code"] == "too_large"
    c.close()
    assert server.predict(ok)[0] == 200 and server.proc.poll() is None


def test_refuses_another_address_without_a_token(serve_conf):
    v = {"LAKEML_SERVE_TOKEN": "", "LAKEML_DATA_DIR": "/nonexistent"}
    p = run_cmd(["./scripts/serve.sh", "--host", "0.0.0.0", "--port", "0", "--conf-dir", str(serve_conf)], v, check=False, timeout=60)
    assert p.returncode == 2 and p.stderr.strip().splitlines()[-1].startswith(
        "error: refusing to listen on 0.0.0.0, which is not a loopback address, without a token")
    p = run_cmd(["./scripts/serve.sh", "--port", "0", "--conf-dir", str(serve_conf)], {**v, "LAKEML_SERVE_TOKEN": "short"},
                check=False, timeout=60)
    assert p.returncode == 2 and "has 5 characters; use at least 16" in p.stderr.strip().splitlines()[-1]


def test_metrics_page(server):
    status, text, headers = server.call("GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    route = 'route="/v1/{usecase}/predict"'
    counts = {s: _metric(text, f'lakeml_serving_requests_total{{{route},method="POST",status="{s}"}}') for s in (200, 401, 403, 413)}
    assert counts[200] >= 15 and counts[401] == 1 and counts[403] == 2 and counts[413] == 3
    bucket = f"lakeml_serving_request_duration_seconds_bucket{{{route}"
    buckets = [float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines() if ln.startswith(bucket)]
    total = _metric(text, f"lakeml_serving_request_duration_seconds_count{{{route}}}")
    assert buckets == sorted(buckets) and buckets[-1] == total >= sum(counts.values())
    assert _metric(text, 'lakeml_serving_model_version{alias="champion",name="churn_classifier"}') == 1
    assert _metric(text, 'lakeml_serving_scored_total{alias="champion",version="1"}') > 1000
    assert _metric(text, 'lakeml_serving_errors_total{kind="unknown_entity"}') == 3
    assert _metric(text, "lakeml_serving_answer_log_pending") > 1000  # written at shutdown (the last test)


def _registry(serve_dir: Path):
    """The server's registry. Both URIs given: an MlflowClient without a registry URI takes
    the process's (mlflow.set_registry_uri, which the in-process tests before this module
    set), and would register in the test session's store instead."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{serve_dir}/mlflow/mlflow.db"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _register_copy_of_version_1(serve_dir: Path) -> tuple:
    client = _registry(serve_dir)
    v1 = client.get_model_version("churn_classifier", "1")
    tags = {k: v for k, v in v1.tags.items() if k != "lakeml.canary"}
    v2 = client.create_model_version("churn_classifier", v1.source, v1.run_id, tags=tags)
    return client, str(v2.version)


def _wait_for(server, line: str, timeout: float = 15) -> None:
    deadline = time.time() + timeout
    while line not in server.call("GET", "/metrics")[1] and time.time() < deadline:
        time.sleep(0.1)
    assert line in server.call("GET", "/metrics")[1]


def test_canary_share_goes_to_the_challenger(server, pipeline_data_dir):
    """A @challenger is served to the canary share once the gate tagged it lakeml.canary =
    running, never before; the split is lakeml.lifecycle.canary's."""
    _, batch = _batch_predictions(pipeline_data_dir)
    ids = sorted(batch)[:MAX_ENTITIES]
    client, v2 = _register_copy_of_version_1(server.data)
    client.set_registered_model_alias("churn_classifier", "challenger", v2)
    time.sleep(1.0)  # three reloads
    status, answer, _ = server.predict({"entities": ids})
    assert status == 200 and {r["model_alias"] for r in answer["results"]} == {"champion"}
    client.set_model_version_tag("churn_classifier", v2, "lakeml.canary", "running")
    _wait_for(server, f'lakeml_serving_model_version{{alias="challenger",name="churn_classifier"}} {v2}')
    status, answer, _ = server.predict({"entities": ids})
    got = [(r["entity"], r["model_alias"], r["model_version"]) for r in answer["results"]]
    want = [(e, "challenger", v2) if in_canary(e, SHARE) else (e, "champion", "1") for e in ids]
    assert status == 200 and got == want and 10 < sum(a == "challenger" for _, a, _ in got) < 50
    row = _store_row(server.data, next(e for e in ids if in_canary(e, SHARE)))
    status, answer, _ = server.predict({"rows": [row, {**row, "customer_id": next(e for e in ids if in_canary(e, SHARE))}]})
    assert [(r["model_alias"], r["entity"] is None) for r in answer["results"]] == [("champion", True), ("challenger", False)]


def test_blue_green_switch_under_load_fails_nothing(server, pipeline_data_dir):
    """Clients keep asking while @champion moves to version 2: every answer is a 200, each
    client sees version 1 then version 2, never back, and nobody waits."""
    _, batch = _batch_predictions(pipeline_data_dir)
    ids = [e for e in sorted(batch) if not in_canary(e, SHARE)][:40]
    seen: dict[int, list] = {i: [] for i in range(6)}
    problems: list = []
    stop = threading.Event()

    def client(i: int):
        c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        n = 0
        while not stop.is_set():
            n += 1
            t = time.perf_counter()
            try:
                status, answer, _ = server.predict({"entities": [ids[(i * 7 + n) % len(ids)]]}, conn=c)
            except Exception as e:  # noqa: BLE001 - any failure is the finding
                problems.append(repr(e))
                return
            if status != 200:
                problems.append((status, answer))
            else:
                seen[i].append((answer["results"][0]["model_version"], answer["results"][0]["model_alias"], time.perf_counter() - t))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(seen))]
    for t in threads:
        t.start()
    time.sleep(1.0)
    _registry(server.data).set_registered_model_alias("churn_classifier", "champion", "2")
    deadline = time.time() + 20
    while time.time() < deadline and not all(sum(v == "2" for v, _, _ in s[-20:]) == 20 for s in seen.values()):
        time.sleep(0.2)
    stop.set()
    for t in threads:
        t.join(30)
    versions = {i: "".join(v for v, _, _ in s) for i, s in seen.items()}
    assert problems == [] and all(v.startswith("1") and v.endswith("2" * 20) and "21" not in v for v in versions.values()), versions
    assert {a for s in seen.values() for _, a, _ in s} == {"champion"}
    slowest = max(dt for s in seen.values() for _, _, dt in s)
    print(f"blue-green: {sum(map(len, seen.values()))} answers, slowest {slowest * 1e3:.0f} ms")
    assert slowest < 2.0
    assert _metric(server.call("GET", "/metrics")[1], "lakeml_serving_model_switches_total") == 2  # the challenger, then this


def test_the_readme_curl_example_answers_the_batch_probability(server, pipeline_data_dir):
    """README's curl command, as printed (its address and customer id swapped for this
    server's and a real one, the token added), answers the batch probability and names the
    unknown customer."""
    import re

    blocks = re.findall(r"```(\w+)\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    block = next(b for lang, b in blocks if lang == "bash" and '"entities": ["C00000150", "C99999999"]' in b)
    _, batch = _batch_predictions(pipeline_data_dir)
    entity = sorted(e for e in batch if not in_canary(e, SHARE))[0]
    cmd = (block[block.index("curl "):].replace("localhost:8000", f"127.0.0.1:{server.port}").replace("C00000150", entity)
           .replace("curl -s", f"curl -s -H 'Authorization: Bearer {TOKEN}'", 1))
    out = json.loads(subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, check=True, timeout=60).stdout)
    with _ANSWERED_LOCK:
        ANSWERED.append((out["request_id"], 1))
    known, unknown = out["results"]
    assert known["entity"] == entity and abs(known["probability"] - batch[entity]["churn_probability"]) <= 1e-6
    assert (unknown["error"]["code"], out["errors"]) == ("unknown_entity", 1)


def test_every_answer_is_in_the_answer_log_written_at_shutdown_and_spark_reads_it(server, spark):
    pending = _metric(server.call("GET", "/metrics")[1], "lakeml_serving_answer_log_pending")
    answered = sum(n for _, n in ANSWERED)
    assert pending == answered
    server.proc.send_signal(signal.SIGTERM)
    # uvicorn stops gracefully, then ends by the signal it caught (as a parent expects)
    assert server.proc.wait(60) == -signal.SIGTERM and " stopped; answer log: {'written': " in server.stderr.read_text()
    path = server.data / "warehouse" / "churn.db" / "online_predictions"
    df = spark.read.format("delta").load(str(path))
    by_request = {r["request_id"]: r["count"] for r in df.groupBy("request_id").count().collect()}
    assert by_request == {rid: n for rid, n in ANSWERED if n}
    assert {f.name: f.dataType.simpleString() for f in df.schema.fields} == {
        "customer_id": "string", "as_of_date": "date", "feature_version": "bigint", "model_name": "string", "model_version": "string",
        "model_alias": "string", "churn_probability": "double", "prediction": "int", "request_id": "string",
        "answered_at": "timestamp", "answer_date": "date"}
    versions = {(r.model_alias, r.model_version) for r in df.select("model_alias", "model_version").distinct().collect()}
    assert versions == {("champion", "1"), ("challenger", "2"), ("champion", "2")}


def test_answer_log_writes_by_rows_and_by_time_and_registers_in_the_metastore(spark, env, uc):
    """In process: the writer thread appends when log_flush_rows wait, or when the oldest
    has waited log_flush_seconds; ``register`` names the table in the metastore."""
    from lakeml.serving import answer_log

    uc = uc.model_copy(deep=True)
    uc.tables.online_predictions = "online_predictions_test_serve"
    path = Path(answer_log.table_path(env, uc))
    shutil.rmtree(path, ignore_errors=True)
    log = answer_log.AnswerLog(env, uc, flush_rows=3, flush_seconds=0.5)
    now = time.time_ns() // 1000
    row = ("E1", None, None, "m", "7", "champion", 0.25, 0, "r", now)
    try:
        log.add([row, row, row])  # flush_rows: written at once
        t0 = time.time()
        while log.stats()["written"] < 3 and time.time() - t0 < 10:
            time.sleep(0.02)
        by_rows = time.time() - t0
        log.add([row])  # one row: written after flush_seconds
        t0 = time.time()
        while log.stats()["written"] < 4 and time.time() - t0 < 10:
            time.sleep(0.02)
        by_time = time.time() - t0
    finally:
        log.close()
    assert log.stats() == {"written": 4, "pending": 0, "failures": 0, "dropped": 0}
    assert by_rows < 0.4 and 0.4 <= by_time < 3
    name = answer_log.register(spark, env, uc)
    try:
        assert answer_log.register(spark, env, uc) == name  # idempotent
        assert spark.table(name).where("customer_id = 'E1' and churn_probability = 0.25").count() == 4
    finally:
        spark.sql(f"DROP TABLE IF EXISTS {name}")
        shutil.rmtree(path, ignore_errors=True)
