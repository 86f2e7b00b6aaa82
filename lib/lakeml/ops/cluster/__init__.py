"""The cluster stack on one machine (``./scripts/cluster.sh``): a generic process supervisor
(``supervisor``, whose names this package hands on), what the Hadoop daemons share
(``hadoop``), one recipe per service (``postgres``, ``hdfs``, ``yarn``, ``mlflow_server``,
``spark_standalone``, ``history``, ``thrift``, ``redis``), and on top the project's stack, those
services in start order (``stack.ClusterStack``)."""

from lakeml.ops.cluster.supervisor import HOST, Ports, Service, Stack, StackError, port_open

__all__ = ["HOST", "Ports", "Service", "Stack", "StackError", "port_open"]
