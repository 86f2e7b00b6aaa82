#!/usr/bin/env bash
# The one way to run a job, on any env (conf/envs/<env>.yaml):
#
#   ./spark-submit.sh [--env NAME] [--dry-run] [spark-submit options ...] jobs/<job>.py [job args ...]
#
# Ships lib/ as a zip (--py-files), the Delta jars (--jars), the env's Spark confs and
# PYSPARK_PYTHON; passes --env and --conf-dir to the job. Spark options you add (--master,
# --conf k=v, --driver-memory ...) come last and win. --dry-run prints the command.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="${LAKEML_PYTHON:-$ROOT/.venv/bin/python}"
if [ ! -x "$PY" ]; then
  echo "error: no Python environment at $ROOT/.venv; run 'make setup' first" >&2
  exit 2
fi
export PYSPARK_PYTHON="${PYSPARK_PYTHON:-$PY}"
export PYTHONPATH="$ROOT/lib${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" -m lakeml.submit "$@"
