"""The cluster stack on one machine (``./scripts/cluster.sh``): a process supervisor
(``supervisor``) and one recipe per service (``postgres``, ``hdfs``, ``mlflow_server``,
``spark_standalone``, ``thrift``), put together in ``stack``."""

from lakeml.ops.cluster.supervisor import HOST, Ports, Service, Stack, StackError, port_open

__all__ = ["HOST", "Ports", "Service", "Stack", "StackError", "port_open"]
