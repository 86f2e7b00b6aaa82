#!/usr/bin/env bash
# The cluster stack on this machine (see lib/lakeml/cluster.py):
#
#   ./scripts/cluster.sh up [SERVICE ...]   start what is not running, wait until each answers
#   ./scripts/cluster.sh status             each service, its address, pid and health
#   ./scripts/cluster.sh logs [SERVICE]     the tail of each log
#   ./scripts/cluster.sh down               stop what `up` started
#
# Services: postgres, hdfs, mlflow, spark-master, spark-worker, thriftserver, on 127.0.0.1.
# Data and logs: var/cluster/ (LAKEML_CLUSTER_DIR). Needs LAKEML_PG_PASSWORD.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${LAKEML_PYTHON:-$ROOT/.venv/bin/python}"
if [ ! -x "$PY" ]; then
  echo "error: no Python environment at $ROOT/.venv; run 'make setup' first" >&2
  exit 2
fi
if [ "${1:-}" = "up" ]; then
  "$ROOT/scripts/setup.sh" --cluster
fi
export SPARK_LOCAL_IP="${SPARK_LOCAL_IP:-127.0.0.1}"
export PYSPARK_PYTHON="${PYSPARK_PYTHON:-$PY}"
export PYTHONPATH="$ROOT/lib${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" -m lakeml.cluster "$@"
