"""The serving benchmark (issue 28's targets): the online scoring server under load on
loopback, against ``mlflow models serve`` of the same version (the peer) and the same server
stack answering a constant (the floor); and the streaming job's latency.

    python -m lakeml.bench.serving --out serving.json [--entities N] [--days 120] [--first-after-days 30]
        [--usecase NAME] [--duration 10] [--warmup 2] [--pin | --no-pin] [--reuse-world] [--work-dir var/bench/serving]

1. The lake (:mod:`lakeml.bench.serving_world`, one Spark process): the use case's demo,
   ingest, features, train, the online store, the request bodies, the peer's model, the
   streaming latency.
2. Three servers, one after the other (never two at once), each loaded by ``wrk``
   (:mod:`lakeml.bench.loadgen`) for ``--duration`` seconds after ``--warmup`` seconds of
   the same load:

   - ours, ``scripts/serve.sh``: one entity a request (features from the online store) at 10
     and 50 clients, 1 000 entities a request; the same with the feature rows in the body;
   - the floor, this module's ``floor_app``: FastAPI on uvicorn with the settings of
     ``lakeml.serving.app.serve`` (asyncio loop, h11, no access log, the same socket), a
     POST that reads the body and answers a constant;
   - the peer, ``mlflow models serve --env-manager local`` of the champion's ONNX copy logged
     with MLflow's onnx flavour (also FastAPI on uvicorn, one worker, its access log off): the
     same rows as ours in its own request format (``{"inputs": {feature: [[value], ...]}}``),
     since it cannot read the online store.

The load generator shares the machine's cores with the server: with ``--pin`` (the default
on a machine with 2 cores or more) the server runs on CPU 0 and wrk on CPU 1 (taskset).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from lakeml.bench import loadgen
from lakeml.core.paths import PROJECT_ROOT

log = logging.getLogger("lakeml.bench")

PACED_RPS = 550.0  # 50 clients together offering this many requests/s (target: >= 500 with p99 <= 25 ms)
# (server, body, items a request, clients, paced to requests/s or flat out): what is measured, in order
PLAN = [
    ("ours", "entities", 1, 10, None), ("ours", "entities", 1, 50, None), ("ours", "entities", 1, 50, PACED_RPS),
    ("ours", "entities", 1000, 2, None),
    ("ours", "rows", 1, 10, None), ("ours", "rows", 1, 50, None), ("ours", "rows", 1000, 2, None),
    ("floor", "constant", 1, 10, None), ("floor", "constant", 1, 50, None),
    ("peer", "rows", 1, 10, None), ("peer", "rows", 1, 50, None), ("peer", "rows", 1000, 2, None),
]
SINGLE_BODIES = 2000  # distinct one-row bodies (each connection walks through them in turn)


# --------------------------------------------------------------------------- the floor


FLOOR_ANSWER = b'{"results":[{"probability":0.5,"prediction":0}],"errors":0}'


def floor_app():
    """FastAPI answering every predict POST with a constant, after reading its body: the
    framework's and the server's own cost, nothing of ours."""
    from fastapi import FastAPI
    from starlette.responses import Response

    app = FastAPI(title="floor", docs_url=None, redoc_url=None, openapi_url=None)

    async def predict(request):
        await request.body()
        return Response(FLOOR_ANSWER, 200, media_type="application/json")

    async def health(request):
        return Response(b'{"status":"ok"}', 200, media_type="application/json")

    app.add_route("/v1/{usecase}/predict", predict, methods=["POST"])
    app.add_route("/health", health, methods=["GET"])
    return app


def serve_floor(port: int) -> None:
    """The floor app with uvicorn set as ``lakeml.serving.app.serve`` sets it."""
    import uvicorn

    from lakeml.serving.app import bind

    sock = bind("127.0.0.1", port)
    config = uvicorn.Config(floor_app(), loop="asyncio", http="h11", lifespan="on", log_config=None, access_log=False,
                            server_header=False, proxy_headers=False)
    uvicorn.Server(config).run(sockets=[sock])


# --------------------------------------------------------------------------- request bodies


def write_bodies(rows_file: Path, out: Path, seed: int = 7) -> dict:
    """The request files (one JSON body a line) from the world's rows, in a fixed shuffled
    order: ours by entity and by rows, the peer's rows, 1 and 1 000 items a request. The rows
    sent are those without a missing value (the peer's tensors cannot take a null), numbers
    as JSON floats (its double inputs), the same rows for both servers."""
    items = [json.loads(line) for line in rows_file.read_text().splitlines() if line]
    random.Random(seed).shuffle(items)
    ents = [it["entity"] for it in items]
    complete = [it for it in items if None not in it["features"].values()]
    full = [{k: float(v) if isinstance(v, int | float) else v for k, v in it["features"].items()} for it in complete]
    big = min(1000, len(ents), len(full))
    files = {
        ("ours", "entities", 1): [{"entities": [e]} for e in ents],
        ("ours", "entities", 1000): [{"entities": ents[i:i + big]} for i in range(0, len(ents) - big + 1, big)],
        ("ours", "rows", 1): [{"rows": [r]} for r in full[:SINGLE_BODIES]],
        ("ours", "rows", 1000): [{"rows": full[i:i + big]} for i in range(0, len(full) - big + 1, big)],
        ("peer", "rows", 1): [_peer_body([r]) for r in full[:SINGLE_BODIES]],
        ("peer", "rows", 1000): [_peer_body(full[i:i + big]) for i in range(0, len(full) - big + 1, big)],
    }
    files[("floor", "constant", 1)] = files[("ours", "entities", 1)]
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for (srv, body, n), bodies in files.items():
        p = out / f"{srv}_{body}_{n}.jsonl"
        p.write_text("".join(json.dumps(b, separators=(",", ":")) + "\n" for b in bodies))
        paths[(srv, body, n)] = p
    return {"paths": paths, "entities": len(ents), "complete_rows": len(full), "big": big,
            "parity": ({"entities": [it["entity"] for it in complete[:big]]}, {"rows": full[:big]}, _peer_body(full[:big])),
            "bytes": {f"{s}_{b}_{n}": p.stat().st_size // max(1, len(files[(s, b, n)])) for (s, b, n), p in paths.items()}}


def _peer_body(rows: list[dict]) -> dict:
    return {"inputs": {k: [[r[k]] for r in rows] for k in rows[0]}}


# --------------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 5.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


def post(url: str, body: bytes, timeout: float = 30.0) -> tuple[int, dict]:
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, {"raw": e.read()[:500].decode(errors="replace")}


@contextmanager
def server(name: str, cmd: list[str], env: dict, ready_url: str, log_path: Path, cpus: str | None, wait_s: float = 180):
    """A server process (its own process group), ready when ``ready_url`` answers 200;
    stopped with SIGTERM (then SIGKILL) at the end. Yields its pid."""
    if cpus is not None:
        cmd = ["taskset", "-c", cpus, *cmd]
    log.info("[bench serving] starting %s: %s", name, " ".join(cmd))
    with open(log_path, "ab") as out:
        p = subprocess.Popen(cmd, env=env, cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        t0 = time.monotonic()
        while _get(ready_url) != 200:
            if p.poll() is not None:
                raise RuntimeError(f"{name} exited ({p.returncode}) before it was ready; see {log_path}")
            if time.monotonic() - t0 > wait_s:
                raise RuntimeError(f"{name} not ready after {wait_s:.0f} s; see {log_path}")
            time.sleep(0.5)
        log.info("[bench serving] %s ready in %.1f s", name, time.monotonic() - t0)
        yield p.pid
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(10)


def _tree_cpu_rss(pid: int) -> tuple[float, int]:
    """(CPU seconds, resident MB) of a process and its children."""
    import psutil

    try:
        procs = [psutil.Process(pid)]
        procs += procs[0].children(recursive=True)
    except psutil.Error:
        return 0.0, 0
    cpu, rss = 0.0, 0
    for pr in procs:
        try:
            t = pr.cpu_times()
            cpu += t.user + t.system
            rss += pr.memory_info().rss
        except psutil.Error:
            continue
    return cpu, rss // (1024 * 1024)


# --------------------------------------------------------------------------- measuring


def check(kind: str, url: str, bodies: dict) -> dict:
    """One request of every body kind a server is measured with, before its load: each
    answers 200 with every item scored (a benchmark of refusals measures nothing)."""
    got = {}
    for (srv, body, n), path in bodies["paths"].items():
        if srv != kind:
            continue
        first = path.read_text().split("\n", 1)[0].encode()
        status, ans = post(url, first)
        if kind == "ours":
            ok = status == 200 and ans.get("errors") == 0 and len(ans.get("results", [])) == (n if n == 1 else bodies["big"])
        elif kind == "peer":
            ok = status == 200 and len(ans.get("predictions", {}).get("probability", [])) == (n if n == 1 else bodies["big"])
        else:
            ok = status == 200
        if not ok:
            raise RuntimeError(f"{kind} does not score a {body} body of {n} ({status}): {json.dumps(ans)[:400]}")
        got[f"{body}_{n}"] = status
    return got


def probabilities(kind: str, answer: dict) -> list[float]:
    if kind == "ours":
        return [r["probability"] for r in answer["results"]]
    return [p[1] for p in answer["predictions"]["probability"]]


def measure(srv: str, body: str, n: int, clients: int, rate: float | None, url: str, path: str, bodies: dict, a, pid: int,
            cpus: str | None) -> dict:
    """One load (flat out, or paced to ``rate`` requests/s): ``warmup`` seconds (not kept),
    then ``duration`` seconds measured, with the server's CPU use over the measured part
    (cores: 1.0 = one core busy all along)."""
    f = bodies["paths"][(srv, body, n)]
    n_items = n if n == 1 else bodies["big"]
    if a.warmup > 0:
        loadgen.run(url, path, f, clients, a.warmup, cpus=cpus, rate=rate)
    cpu0, _ = _tree_cpu_rss(pid)
    r = loadgen.run(url, path, f, clients, a.duration, cpus=cpus, rate=rate)
    cpu1, rss = _tree_cpu_rss(pid)
    r = {"server": srv, "body": body, "per_request": n_items, **r, "items_per_s": round(r["requests_per_s"] * n_items),
         "server_cores": round((cpu1 - cpu0) / max(r["seconds"], 1e-3), 2), "server_rss_mb": rss}
    log.info("[bench serving] %s %s x%d, %d clients%s: %.0f req/s (%s items/s), p50 %.2f ms, p99 %.2f ms, %d errors, server %.2f cores",
             srv, body, n_items, clients, f" paced to {rate:g}/s" if rate else "", r["requests_per_s"], f"{r['items_per_s']:,}",
             r["p50_ms"], r["p99_ms"], r["errors"], r["server_cores"])
    return r


SERVERS = ("ours", "floor", "peer")


def server_cmd(kind: str, world: dict, port: int, a) -> tuple[list[str], dict, str, str]:
    """(command, extra environment, ready path, predict path) of server ``kind``."""
    bin_dir = Path(sys.executable).parent
    predict = f"/v1/{world['usecase']}/predict"
    if kind == "ours":
        cmd = [str(PROJECT_ROOT / "scripts" / "serve.sh"), "--port", str(port)] + (["--usecase", a.usecase] if a.usecase else [])
        return cmd, {}, "/ready", predict
    if kind == "floor":
        return [sys.executable, "-m", "lakeml.bench.serving", "--floor-port", str(port)], {}, "/health", predict
    cmd = [str(bin_dir / "mlflow"), "models", "serve", "-m", world["peer_model_uri"], "--env-manager", "local",
           "-h", "127.0.0.1", "-p", str(port)]
    # its uvicorn from the venv's PATH; no access log, as ours and the floor (uvicorn reads UVICORN_* options)
    extra = {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "MLFLOW_TRACKING_URI": world["tracking_uri"],
             "UVICORN_ACCESS_LOG": "false"}
    return cmd, extra, "/ping", "/invocations"


def _short(cmd: list[str]) -> str:
    """The command as the report shows it: programs by name, the (free, random) port as PORT."""
    out = [Path(c).name if c.startswith("/") else c for c in cmd]
    return " ".join("PORT" if i and out[i - 1] in ("--port", "-p", "--floor-port") else c for i, c in enumerate(out))


def run(a) -> dict:
    t0 = time.time()
    work = a.work_dir
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "LAKEML_DATA_DIR": str(work / "data"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT / "lib"), os.environ.get("PYTHONPATH")]))}
    world_json = work / "world.json"
    if not (a.reuse_world and world_json.exists()):
        cmd = [sys.executable, "-m", "lakeml.bench.serving_world", "--data-dir", str(work / "data"), "--out", str(world_json)]
        opts = (("--entities", a.entities), ("--days", a.days), ("--first-after-days", a.first_after_days), ("--usecase", a.usecase))
        cmd += [x for k, v in opts if v is not None for x in (k, str(v))]
        world_json.unlink(missing_ok=True)
        if subprocess.call(cmd, env=env, cwd=PROJECT_ROOT) != 0:
            raise RuntimeError("the serving benchmark's lake could not be built; see above")
    world = json.loads(world_json.read_text())
    bodies = write_bodies(Path(world["rows_file"]), work / "bodies")
    srv_cpus, load_cpus = ("0", "1") if a.pin else (None, None)
    result: dict = {
        "usecase": world["usecase"], "world": world, "streaming": world.get("streaming"),
        "load": {"tool": loadgen.version(), "threads": 1, "duration_s": a.duration, "warmup_s": a.warmup,
                 "pinned": {"server": srv_cpus, "load": load_cpus} if a.pin else None, "cores": os.cpu_count()},
        "bodies": {k: v for k, v in bodies.items() if k not in ("paths", "parity")},
        "runs": [], "servers": {},
    }
    parity: dict[str, list[float]] = {}
    result["load"]["loadavg_before"] = round(os.getloadavg()[0], 1)  # what else ran: the machine is not ours alone
    for kind in SERVERS:
        port = free_port()
        cmd, extra, ready, path = server_cmd(kind, world, port, a)
        url = f"http://127.0.0.1:{port}"
        info = {"command": _short(cmd)}
        t = time.time()
        try:
            with server(kind, cmd, {**env, **extra}, url + ready, work / f"{kind}.log", srv_cpus) as pid:
                info["ready_seconds"] = round(time.time() - t, 1)
                info["checked"] = check(kind, url + path, bodies)
                if kind != "floor":
                    for i, b in enumerate(bodies["parity"]):
                        if (kind == "ours") == (i < 2):
                            status, ans = post(url + path, json.dumps(b).encode())
                            parity[f"{kind}_{next(iter(b))}"] = probabilities(kind, ans)
                for srv, body, n, clients, rate in PLAN:
                    if srv == kind:
                        result["runs"].append(measure(srv, body, n, clients, rate, url, path, bodies, a, pid, load_cpus))
                info["rss_mb"] = _tree_cpu_rss(pid)[1]
        except Exception as e:  # one server that fails is a result; the others are still measured
            log.warning("[bench serving] %s: %s", kind, e)
            info["error"] = str(e)
        result["servers"][kind] = info
    result["load"]["loadavg_after"] = round(os.getloadavg()[0], 1)
    if "ours_rows" in parity:
        base = parity["ours_rows"]
        result["parity"] = {k: max(abs(x - y) for x, y in zip(base, v, strict=True)) for k, v in parity.items() if k != "ours_rows"}
    result["seconds"] = round(time.time() - t0)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2, default=str))
    log.info("[bench serving] wrote %s (%d s)", a.out, result["seconds"])
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path)
    p.add_argument("--entities", type=int, help="entities of the demo lake (default: the use case's demo block)")
    p.add_argument("--days", type=int, default=120, help="days of demo data (default 120: the served rows do not depend on "
                                                         "history, the lake's build time does)")
    p.add_argument("--first-after-days", type=int, default=30, help="first feature snapshot after this many days (default 30, "
                                                                    "as the scales of scripts/bench.py: 120 days still train)")
    p.add_argument("--usecase")
    p.add_argument("--duration", type=float, default=10.0, help="seconds measured per load (default 10)")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of the same load before each, not kept (default 2)")
    p.add_argument("--pin", action=argparse.BooleanOptionalAction, default=(os.cpu_count() or 1) >= 2,
                   help="server on CPU 0, wrk on CPU 1 (default: on with 2 cores or more)")
    p.add_argument("--reuse-world", action="store_true", help="keep the lake of an earlier run (work dir) instead of building it")
    p.add_argument("--work-dir", type=Path, default=PROJECT_ROOT / "var" / "bench" / "serving")
    p.add_argument("--floor-port", type=int, help=argparse.SUPPRESS)  # internal: serve the floor app on this port
    a = p.parse_args(argv)
    if a.floor_port:
        serve_floor(a.floor_port)
        return
    if a.out is None:
        p.error("--out is required")
    from lakeml import cli

    cli.setup_logging()
    run(a)


if __name__ == "__main__":
    sys.exit(main())
