"""The cluster stack on one machine, put together from the service recipes: PostgreSQL
(metastore + MLflow), HDFS (NameNode + DataNode), MLflow server, Spark standalone master +
worker, YARN (ResourceManager + NodeManager), the Spark History Server, the Spark Thrift Server,
Redis (the online feature store).

    ./scripts/cluster.sh up | down | status | logs [SERVICE]

Every service is a real server process started here, bound to 127.0.0.1 on a fixed port,
with its data, logs and pid file under ``var/cluster/`` (``LAKEML_CLUSTER_DIR``). ``up``
starts what is not running, in dependency order, and waits on a readiness check per
service (a query, not a sleep); ``down`` stops only the processes its pid files name,
after checking that the pid still belongs to that service. The PostgreSQL password comes
from ``LAKEML_PG_PASSWORD`` and nowhere else, Redis's (optional) from ``LAKEML_REDIS_PASSWORD``.

The ports are the ones ``conf/envs/cluster.yaml`` points at; both read the same
variables (``LAKEML_PG_PORT`` ...), so moving a port is one variable.

This module sits on top of the recipes (one module per service) and of the generic
supervisor (:mod:`lakeml.ops.cluster.supervisor`): :class:`ClusterStack` is the supervisor
with this list of services, what ``python -m lakeml.ops.cluster`` (:func:`main`) runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

from lakeml.ops.cluster import hdfs, history, mlflow_server, postgres, redis, spark_standalone, thrift, yarn
from lakeml.ops.cluster.supervisor import Ports, Service, Stack, StackError, tail


def services(stack: Stack) -> list[Service]:
    """The services in the order they start (each needs the ones before it)."""
    return [
        postgres.service(stack),
        hdfs.namenode(stack),
        hdfs.datanode(stack),
        mlflow_server.service(stack),
        spark_standalone.master(stack),
        spark_standalone.worker(stack),
        yarn.resource_manager(stack),
        yarn.node_manager(stack),
        history.service(stack),
        thrift.service(stack),
        redis.service(stack),
    ]


class ClusterStack(Stack):
    """The project's stack: :func:`services`, under ``base`` (default ``$LAKEML_CLUSTER_DIR``,
    else ``var/cluster``) on ``ports`` (default: each from its variable)."""

    def __init__(self, base: str | Path | None = None, ports: Ports | None = None):
        super().__init__(base, ports, services=services)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    usage = "usage: cluster.sh up [SERVICE ...] | down [SERVICE ...] | status | logs [SERVICE]"
    if not argv or argv[0] in ("-h", "--help"):
        print(usage)
        return 0 if argv else 2
    stack = ClusterStack()
    cmd, rest = argv[0], argv[1:]
    try:
        if cmd == "up":
            stack.up(rest or None)
            _print_status(stack)
        elif cmd == "down":
            stack.down(rest or None)
        elif cmd == "status":
            rows = _print_status(stack)
            return 0 if all(r[3] == "ready" for r in rows) else 3
        elif cmd == "logs":
            for s in stack.named(rest):
                print(f"==> {stack.log_file(s)} <==\n{tail(stack.log_file(s), 60)}\n")
        else:
            print(usage, file=sys.stderr)
            return 2
    except StackError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def _print_status(stack: Stack) -> list[tuple[str, str, str, str]]:
    rows = stack.status()
    print(f"{'SERVICE':13} {'PID':>8}  {'HEALTH':10} ADDRESS")
    for name, addr, pid, health in rows:
        print(f"{name:13} {pid:>8}  {health:10} {addr}")
    print(f"data and logs: {stack.base}")
    return rows
