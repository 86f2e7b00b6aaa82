#!/usr/bin/env bash
# spark-sql on the same catalog, warehouse and Delta config as the jobs.
#
#   ./scripts/sql.sh [--env NAME] -e "SELECT * FROM churn.predictions LIMIT 10"
#   ./scripts/sql.sh [--env NAME]            # interactive prompt
#   ./scripts/sql.sh -f query.sql
#
# The embedded env's Derby metastore admits one process at a time: run it while no job
# is running.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${LAKEML_PYTHON:-$ROOT/.venv/bin/python}"
if [ ! -x "$PY" ]; then
  echo "error: no Python environment at $ROOT/.venv; run 'make setup' first" >&2
  exit 2
fi
export PYSPARK_PYTHON="${PYSPARK_PYTHON:-$PY}"
export PYTHONPATH="$ROOT/lib${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" -m lakeml.submit sql "$@"
