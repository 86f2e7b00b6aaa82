#!/usr/bin/env bash
# The cluster stack on this machine (see lib/lakeml/ops/cluster/):
#
#   ./scripts/cluster.sh up [SERVICE ...]   start what is not running, wait until each answers
#   ./scripts/cluster.sh status             each service, its address, pid and health
#   ./scripts/cluster.sh logs [SERVICE]     the tail of each log
#   ./scripts/cluster.sh down [SERVICE ...] stop what `up` started (all, or the named ones)
#
# Services: postgres, hdfs-nn, hdfs-dn, mlflow, spark-master, spark-worker, yarn-rm, yarn-nm, spark-history,
# thriftserver, redis (the online feature store), on 127.0.0.1. The Hadoop client configuration of the stack (HADOOP_CONF_DIR
# of --env yarn) is written to var/cluster/hadoop-conf.
# Data and logs: var/cluster/ (LAKEML_CLUSTER_DIR). postgres, mlflow and
# thriftserver need LAKEML_PG_PASSWORD.
# `up` first installs what the stack needs and is missing (scripts/setup.sh --cluster).
set -euo pipefail
if [ "${1:-}" = "up" ]; then
  "$(dirname "${BASH_SOURCE[0]}")/setup.sh" --cluster
fi
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
exec "$PY" -m lakeml.ops.cluster "$@"
