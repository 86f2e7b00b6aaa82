"""The online scoring server: an ASGI app (FastAPI, served by uvicorn in-process) that answers
``POST /v1/<use case>/predict`` with the registry's ``@champion`` (a canary's share with the
``@challenger``) in ONNX Runtime, and ``GET /health``, ``/ready``, ``/metrics``.

``Guard`` wraps every request: the bearer token (when one is configured; every route but
``/health``: missing 401, wrong 403, compared in constant time), the body bound (413 from
``Content-Length``, or while a chunked body is read), the request's metrics. The routes are
plain Starlette endpoints that parse and answer JSON themselves (no per-request model
validation: the predict path is hand-validated, see ``lakeml.serving.predict``).

A background task re-reads the registry's aliases every ``serving.reload_seconds`` (the
blue-green switch, ``lakeml.serving.models``) and the online store's meta; the answer log
(``lakeml.serving.answer_log``) writes from its own thread. Nothing here imports Spark: the
server process keeps pyspark out (``keep_spark_out``) before MLflow is imported.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import os
import re
import socket
import sys
import time
from pathlib import Path

from fastapi.responses import Response

from lakeml.core.config import EnvConfig, UseCaseConfig
from lakeml.core.errors import ConfigError, UsageError
from lakeml.serving.metrics import CONTENT_TYPE, Metrics
from lakeml.serving.predict import Predictor, Refused, parse, request_id

log = logging.getLogger(__name__)

MIN_TOKEN_CHARS = 16
_PREDICT = re.compile(r"^/v1/[^/]+/predict$")
_METHODS = frozenset({"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"})
# a refusal sent before the body was read ends the connection: the unread body must not be
# taken for the next request
_CLOSE = {"connection": "close"}


def keep_spark_out() -> None:
    """Make ``import pyspark`` fail in this process: MLflow imports it, when it can, for its
    Spark dataset type, which the server never uses (it would load pyspark's modules, not a
    JVM, but the server is meant to be free of Spark). Call before MLflow is imported."""
    if "pyspark" not in sys.modules:
        sys.modules["pyspark"] = None  # type: ignore[assignment]


# --------------------------------------------------------------------------- security


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve anywhere


def read_token(env: EnvConfig) -> str | None:
    """The bearer token: the environment variable ``serving.token_env``, else the file
    ``serving.token_file``; None when neither is set."""
    s = env.serving
    token = os.environ.get(s.token_env, "").strip()
    where = f"the environment variable {s.token_env}"
    if not token and s.token_file:
        path = Path(env._abs(s.token_file))
        try:
            token = path.read_text().strip()
        except OSError as e:
            raise ConfigError(f"{env.source_file}: serving.token_file {path} cannot be read: {e.strerror}") from None
        where = f"the file {path}"
    if not token:
        return None
    if len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(f"the token in {where} has {len(token)} characters; use at least {MIN_TOKEN_CHARS}, e.g. "
                          "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'")
    return token


def check_host(env: EnvConfig, host: str, token: str | None) -> None:
    if token is None and not is_loopback(host):
        s = env.serving
        raise UsageError(f"refusing to listen on {host}, which is not a loopback address, without a token: set the environment "
                         f"variable {s.token_env} (or serving.token_file in {env.source_file}) to a secret of at least "
                         f"{MIN_TOKEN_CHARS} characters, or serve on 127.0.0.1")


def _header(scope, name: bytes) -> bytes | None:
    for k, v in scope["headers"]:
        if k == name:
            return v
    return None


class _TooLarge(Exception):
    pass


def _json(status: int, body: dict, headers: dict | None = None):
    return Response(json.dumps(body, separators=(",", ":")).encode(), status, headers=headers, media_type="application/json")


def route_of(path: str) -> str:
    if path in ("/health", "/ready", "/metrics"):
        return path
    return "/v1/{usecase}/predict" if _PREDICT.match(path) else "other"


class Guard:
    """Token, body bound and metrics around every HTTP request (pure ASGI: no per-request
    objects beyond two closures)."""

    def __init__(self, app, token: str | None, max_body: int, metrics: Metrics):
        self.app, self.max_body, self.metrics = app, max_body, metrics
        self.token = token.encode() if token else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = [0]

        async def sent(msg):
            if msg["type"] == "http.response.start":
                status[0] = msg["status"]
            await send(msg)

        try:
            refusal = self._refusal(scope)
            if refusal is not None:
                await refusal(scope, receive, sent)
                return
            got = [0]

            async def bounded():
                msg = await receive()
                if msg["type"] == "http.request":
                    got[0] += len(msg.get("body", b""))
                    if got[0] > self.max_body:
                        raise _TooLarge
                return msg

            try:
                await self.app(scope, bounded, sent)
            except _TooLarge:
                if status[0]:
                    raise
                self.metrics.error("too_large")
                await self._too_large()(scope, receive, sent)
        finally:
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"  # a label of bounded cardinality
            self.metrics.observe(route_of(scope["path"]), method, status[0] or 500, time.perf_counter() - t0)

    def _refusal(self, scope):
        if self.token is not None and scope["path"] != "/health":
            auth = _header(scope, b"authorization")
            if auth is None:
                self.metrics.error("auth_missing")
                return _json(401, {"error": {"status": 401, "code": "unauthorized",
                                             "message": "this server needs Authorization: Bearer <token>"}},
                             {"www-authenticate": "Bearer", **_CLOSE})
            scheme, _, given = auth.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(), self.token):
                self.metrics.error("auth_wrong")
                return _json(403, {"error": {"status": 403, "code": "forbidden", "message": "wrong token"}}, _CLOSE)
        length = _header(scope, b"content-length")
        if length is not None:
            if not length.isdigit():
                self.metrics.error("bad_length")
                return _json(400, {"error": {"status": 400, "code": "bad_request", "message": "invalid Content-Length"}}, _CLOSE)
            if int(length) > self.max_body:
                self.metrics.error("too_large")
                return self._too_large()
        return None

    def _too_large(self):
        return _json(413, {"error": {"status": 413, "code": "too_large",
                                     "message": f"the body exceeds {self.max_body} bytes (serving.max_body_bytes)"}},
                     _CLOSE)


# --------------------------------------------------------------------------- the app


class Server:
    """The process's state: models, the online store, the answer log, the metrics."""

    def __init__(self, env: EnvConfig, uc: UseCaseConfig, models, answer_log, address: str = "", token: str | None = None):
        self.env, self.uc, self.models, self.answer_log = env, uc, models, answer_log
        self.address, self.token = address, token
        self.metrics = Metrics()
        self.predictor = Predictor(uc.entity, uc.scoring.canary.share, env.serving.max_entities, self.metrics)
        self.store = None
        self.store_meta: dict | None = None
        self.store_error: str | None = "not opened yet"

    def open_store(self) -> None:
        from lakeml.serving.store import open_store

        try:
            if self.store is None:
                self.store = open_store(self.env, self.uc, read_only=True)
            self.store_meta = self.store.meta()
            self.store_error = None if self.store_meta else "the online store has no snapshot yet: run the pipeline (materialize stage)"
        except Exception as e:  # noqa: BLE001 - the server answers rows without a store; /ready says why
            self.store_meta, self.store_error = None, f"{type(e).__name__}: {e}"

    def not_ready(self) -> list[str]:
        why = []
        if self.models.current.champion is None:
            why.append(self.models.current.error or "no model loaded")
        if not self.store_meta or not self.store_meta.get("rows"):
            why.append(self.store_error or "the online store is empty")
        return why

    def served(self) -> list[tuple[str, object]]:
        cur = self.models.current
        return [(a, m) for a, m in (("champion", cur.champion), ("challenger", cur.challenger)) if m is not None]

    def describe(self) -> str:
        cur = self.models.current
        if cur.champion is None:
            model = f"no model yet ({cur.error})"
        else:
            model = cur.champion.describe("champion")
            if cur.challenger is not None:
                model += f", {cur.challenger.describe('challenger')} for {self.uc.scoring.canary.share:.0%} of the entities"
        m = self.store_meta
        store = (f"online store {m.get('rows')} rows as of {m.get('as_of_date')} (feature version {m.get('feature_version')})"
                 if m else f"no online store yet ({self.store_error})")
        return f"{model}; {store}"

    async def watch(self) -> None:
        """The blue-green loop: aliases and the store's snapshot, every reload_seconds."""
        while True:
            await asyncio.sleep(self.env.serving.reload_seconds)
            try:
                await asyncio.to_thread(self.models.refresh)
            except Exception as e:  # noqa: BLE001 - the registry may be down a moment: keep serving what is loaded
                self.metrics.error("reload")
                log.warning("cannot read the registry: %s: %s", type(e).__name__, e)
            had = self.store_meta
            await asyncio.to_thread(self.open_store)
            if had != self.store_meta and self.store_meta:
                log.info("online store: %s rows as of %s (feature version %s)", self.store_meta.get("rows"),
                         self.store_meta.get("as_of_date"), self.store_meta.get("feature_version"))


def create_app(srv: Server):
    """The ASGI app of ``srv`` (its routes, the guard, the lifespan that starts the watch
    loop and flushes the answer log at shutdown)."""
    from fastapi import FastAPI

    @contextlib.asynccontextmanager
    async def lifespan(app):
        task = asyncio.create_task(srv.watch())
        log.info("serving %s on %s: %s; token %s", srv.uc.name, srv.address, srv.describe(),
                 "required" if srv.token else "not required (loopback)")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await asyncio.to_thread(srv.answer_log.close)
            if srv.store is not None:
                srv.store.close()
            log.info("stopped; answer log: %s", srv.answer_log.stats())

    app = FastAPI(title="lakeml scoring", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)

    async def health(request):
        return _json(200, {"status": "ok"})

    async def ready(request):
        why = srv.not_ready()
        if why:
            return _json(503, {"status": "not ready", "why": why})
        return _json(200, {"status": "ready", "models": {a: {"name": m.name, "version": m.version} for a, m in srv.served()},
                           "store": srv.store_meta})

    async def metrics(request):
        text = srv.metrics.render(srv.served(), srv.models.switches, srv.store_meta, srv.answer_log.stats())
        return Response(text, media_type=CONTENT_TYPE)

    async def predict(request):
        rid = request_id(_header(request.scope, b"x-request-id"))
        headers = {"x-request-id": rid}
        if request.path_params["usecase"] != srv.uc.name:
            srv.metrics.error("unknown_usecase")
            return _json(404, Refused(404, "unknown_usecase", f"this server serves the use case {srv.uc.name!r}, "
                                                              f"not {request.path_params['usecase']!r}").body(rid), headers)
        try:
            payload = parse(await request.body())
            status, answer, rows = srv.predictor.answer(payload, srv.models.current, srv.store, rid)
        except Refused as r:
            srv.metrics.error(r.code)
            return _json(r.status, r.body(rid), headers)
        srv.answer_log.add(rows)
        return _json(status, answer, headers)

    app.add_route("/health", health, methods=["GET"])
    app.add_route("/ready", ready, methods=["GET"])
    app.add_route("/metrics", metrics, methods=["GET"])
    app.add_route("/v1/{usecase}/predict", predict, methods=["POST"])
    app.add_middleware(Guard, token=srv.token, max_body=srv.env.serving.max_body_bytes, metrics=srv.metrics)
    return app


# --------------------------------------------------------------------------- the process


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted sockets only then, and
    # without it every answer (headers, then body) waits ~40 ms for the client's delayed ACK
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {e.strerror}; another server there? pass --port") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class _FileOnly(logging.Filter):
    """uvicorn's own lines go to the job's log file, not the console (lakeml.core.joblog)."""

    def filter(self, record):
        record.file_only = True
        return True


def serve(env: EnvConfig, uc: UseCaseConfig, host: str, port: int, access_log: bool = False) -> None:
    """Run the server until SIGINT/SIGTERM: check the host and token, load the model, bind,
    serve; at shutdown the answer log is written."""
    import uvicorn

    from lakeml.serving.answer_log import AnswerLog
    from lakeml.serving.models import Models

    token = read_token(env)
    check_host(env, host, token)
    sock = bind(host, port)
    shown = f"[{host}]" if ":" in host else host
    models = Models(env, uc)
    try:
        models.refresh()
    except Exception as e:  # noqa: BLE001 - the server starts anyway; /ready says why, the watch loop retries
        log.warning("cannot read the registry at %s: %s", env.registry_uri, e)
    srv = Server(env, uc, models, AnswerLog(env, uc), address=f"http://{shown}:{sock.getsockname()[1]}", token=token)
    srv.open_store()
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.addFilter(_FileOnly())
        lg.propagate = True
    config = uvicorn.Config(create_app(srv), loop="asyncio", http="h11", lifespan="on", log_config=None,
                            access_log=access_log, server_header=False, proxy_headers=False, timeout_graceful_shutdown=10)
    uvicorn.Server(config).run(sockets=[sock])
