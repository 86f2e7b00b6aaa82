# Sourced (not run) by ./spark-submit.sh and scripts/*.sh: the project root, its Python
# and the environment every command of the project runs with.
#
#   ROOT            the project root (the folder holding spark-submit.sh)
#   PY              the project's Python: $LAKEML_PYTHON, else $ROOT/.venv/bin/python
#   PYSPARK_PYTHON  Spark's Python workers use the same one (unless set)
#   PYTHONPATH      $ROOT/lib first, so `python -m lakeml...` runs this checkout
#   SPARK_LOCAL_IP  127.0.0.1 unless set (Spark otherwise binds a non-loopback address)
#
# Stops with exit code 2 when there is no Python environment yet.
# shellcheck shell=bash
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${LAKEML_PYTHON:-$ROOT/.venv/bin/python}"
if [ ! -x "$PY" ]; then
  echo "error: no Python environment at ${LAKEML_PYTHON:-$ROOT/.venv}; run 'make setup' first" >&2
  exit 2
fi
export PYSPARK_PYTHON="${PYSPARK_PYTHON:-$PY}"
export PYTHONPATH="$ROOT/lib${PYTHONPATH:+:$PYTHONPATH}"
export SPARK_LOCAL_IP="${SPARK_LOCAL_IP:-127.0.0.1}"
