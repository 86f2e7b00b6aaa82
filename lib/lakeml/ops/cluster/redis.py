"""Redis (the Debian package ``redis-server``), the online feature store of the cluster env
(lakeml.serving.store): 127.0.0.1 only, protected mode, its data under ``<base>/redis``
kept across restarts (append-only file plus RDB snapshots), a password when
``LAKEML_REDIS_PASSWORD`` is set (written to the 0600 config file, never on a command
line). Port: ``LAKEML_REDIS_PORT`` (default 6380, beside a system Redis on 6379)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from lakeml.ops.cluster.supervisor import HOST, Service, Stack, StackError

PORT_ENV = "LAKEML_REDIS_PORT"
DEFAULT_PORT = 6380
PASSWORD_ENV = "LAKEML_REDIS_PASSWORD"


def port(stack: Stack) -> int:
    """The stack's Redis port (``LAKEML_REDIS_PORT``, default 6380: ``Ports.redis``)."""
    return stack.ports.redis


def server_binary() -> str:
    exe = shutil.which("redis-server") or ("/usr/bin/redis-server" if Path("/usr/bin/redis-server").is_file() else None)
    if exe is None:
        raise StackError("redis-server not installed: run ./scripts/setup.sh --cluster (installs the Debian package redis-server)")
    return exe


def config_file(stack: Stack) -> Path:
    return stack.base / "redis" / "redis.conf"


def _prepare(stack: Stack) -> None:
    """Write the config anew at every start, so a changed port or password takes effect."""
    data = stack.base / "redis"
    data.mkdir(parents=True, exist_ok=True)
    lines = [
        f"bind {HOST}",
        "protected-mode yes",
        f"port {port(stack)}",
        f"dir {data}",
        "daemonize no",
        'logfile ""',  # stdout: the supervisor's log file
        # a restart keeps the store: every write in the append-only file (flushed each
        # second), and RDB snapshots for a fast load
        "appendonly yes",
        "appendfsync everysec",
        "dbfilename dump.rdb",
        "save 3600 1 300 100 60 10000",
    ]
    pw = os.environ.get(PASSWORD_ENV)
    if pw:
        lines.append(f'requirepass "{_quoted(pw)}"')
    conf = config_file(stack)
    conf.touch(mode=0o600)
    os.chmod(conf, 0o600)
    conf.write_text("\n".join(lines) + "\n")


def _quoted(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"')


def client(stack: Stack):
    """A redis client on the stack's server (password from ``LAKEML_REDIS_PASSWORD``)."""
    import redis

    return redis.Redis(host=HOST, port=port(stack), password=os.environ.get(PASSWORD_ENV) or None,
                       socket_timeout=2, socket_connect_timeout=2)


def _ready(stack: Stack) -> bool:
    import redis

    r = client(stack)
    try:
        return bool(r.ping())
    except redis.AuthenticationError as e:
        raise StackError(f"redis: the server at {HOST}:{port(stack)} refuses the password "
                         f"(is {PASSWORD_ENV} the one it started with?)") from e
    except redis.RedisError:  # refused, or loading its data
        return False
    finally:
        r.close()


def service(stack: Stack) -> Service:
    p = port(stack)
    return Service(
        "redis", f"redis://{HOST}:{p}/0 (online feature store)", p,
        marker="redis-server",
        prepare=_prepare,
        command=lambda st: [server_binary(), str(config_file(st))],
        ready=_ready,
        timeout=60,
    )
