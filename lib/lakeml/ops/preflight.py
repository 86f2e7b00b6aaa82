"""Fail fast, before a JVM starts, when a server the env needs does not answer.

A job against a stack that is down would otherwise spend a minute in Spark, Hive and
MLflow retries and end in a Java stack trace. Here each server the env names (Spark
master, HDFS NameNode, metastore database, MLflow server; for sql.sh the SQL endpoint)
gets a TCP connect; the first that does not answer is reported with the conf key it came
from and how to start it. Only servers the submitting machine must reach itself are
checked: in cluster deploy mode the driver runs elsewhere and resolves its own names.
"""

from __future__ import annotations

import re
import socket
from urllib.parse import urlsplit

from lakeml.core.config import EnvConfig
from lakeml.core.errors import LakemlError


class ServiceDown(LakemlError):
    """A server the env needs does not answer; the message names it, its address and conf key."""


def _host_port(uri: str, default_port: int | None) -> tuple[str, int] | None:
    if uri.startswith("jdbc:"):
        uri = uri[len("jdbc:") :]
    u = urlsplit(uri)
    if not u.hostname:
        return None
    port = u.port or default_port
    return (u.hostname, port) if port else None


def endpoints(env: EnvConfig) -> list[tuple[str, str, str]]:
    """(service, uri, conf key) for every server the env talks to from the driver."""
    out: list[tuple[str, str, str]] = []
    m = env.spark.master
    if m.startswith("spark://"):
        out.append(("Spark master", m, "spark.master"))
    for key, uri in (("storage.warehouse", env.warehouse_dir), ("storage.landing", env.landing_dir)):
        if uri.startswith("hdfs://") and urlsplit(uri).hostname:
            out.append(("HDFS NameNode", uri, key))
    jdbc = str(env.spark.conf.get("spark.hadoop.javax.jdo.option.ConnectionURL", ""))
    uris = str(env.spark.conf.get("spark.hadoop.hive.metastore.uris", ""))
    if re.match(r"jdbc:(postgresql|mysql|mariadb)://", jdbc) and not uris:  # (a metastore service makes it unused)
        out.append(("metastore database", jdbc, "spark.conf.spark.hadoop.javax.jdo.option.ConnectionURL"))
    for u in filter(None, uris.split(",")):
        out.append(("Hive metastore", u, "spark.conf.spark.hadoop.hive.metastore.uris"))
    if env.tracking_uri.startswith(("http://", "https://")):
        out.append(("MLflow tracking server", env.tracking_uri, "mlflow.tracking_uri"))
    return out


def yarn_rm(env: EnvConfig) -> list[tuple[str, str, str]]:
    """The ResourceManager of the Hadoop configuration spark-submit will use (yarn-site.xml)."""
    import xml.etree.ElementTree as ET
    from pathlib import Path

    from lakeml.ops.yarn_app import hadoop_conf_dir

    site = Path(hadoop_conf_dir(env)) / "yarn-site.xml"
    if not site.is_file():
        return []
    props = {p.findtext("name"): p.findtext("value") for p in ET.parse(site).getroot().iter("property")}
    addr = props.get("yarn.resourcemanager.address") or f"{props.get('yarn.resourcemanager.hostname') or '0.0.0.0'}:8032"
    return [("YARN ResourceManager", f"rm://{addr}", f"yarn.resourcemanager.address of {site}")]


DEFAULT_PORTS = {
    "hdfs": 8020, "http": 80, "https": 443, "postgresql": 5432, "mysql": 3306, "thrift": 9083, "spark": 7077, "hive2": 10000,
}  # fmt: skip


def check(env: EnvConfig, timeout: float = 2.0, *, sql: bool = False) -> None:
    """Raise ServiceDown naming the first server of ``env`` that does not accept a connection.

    ``sql=False`` (a job): the servers the driver talks to, in client deploy mode only (in
    cluster deploy mode the driver runs elsewhere and resolves its own names).
    ``sql=True`` (``scripts/sql.sh``): the env's SQL endpoint if it has one, since beeline
    talks to nothing else; otherwise spark-sql runs here and needs what a job needs.
    """
    if sql and env.sql.endpoint:
        targets = [("SQL endpoint", env.sql.endpoint, "sql.endpoint")]
    else:
        # spark-submit talks to YARN's ResourceManager in both deploy modes
        targets = yarn_rm(env) if env.spark.master == "yarn" and not sql else []
        targets += endpoints(env) if env.spark.deploy_mode == "client" else []
    for service, uri, key in targets:
        scheme = urlsplit(uri[5:] if uri.startswith("jdbc:") else uri).scheme
        hp = _host_port(uri, DEFAULT_PORTS.get(scheme))
        if hp is None:
            continue
        try:
            with socket.create_connection(hp, timeout=timeout):
                pass
        except OSError as e:
            hint = (
                "Start the stack with ./scripts/cluster.sh up (./scripts/cluster.sh status shows what runs)."
                if env.name in ("cluster", "yarn")
                else "Check that it runs and that the address is right."
            )
            raise ServiceDown(
                f"the {service} at {hp[0]}:{hp[1]} does not answer ({e.strerror or e}); "
                f"it comes from {key} in {env.source_file}. {hint}"
            ) from None
