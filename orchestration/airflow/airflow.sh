#!/usr/bin/env bash
# The Airflow CLI of .venv-airflow on this project's own Airflow home, with this folder's DAGs:
#
#   ./orchestration/airflow/airflow.sh dags list
#   ./orchestration/airflow/airflow.sh dags test lakeml_<usecase>_daily 2026-07-20
#
# Installs the environment when missing (install.sh, `make airflow`); AIRFLOW_HOME is
# var/airflow (or $LAKEML_AIRFLOW_HOME) with its SQLite database, created (`airflow db migrate`)
# on first use and again after the environment changed. No scheduler or webserver is started.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENV="${LAKEML_AIRFLOW_VENV:-$ROOT/.venv-airflow}"
"$HERE/install.sh"

export AIRFLOW_HOME="${LAKEML_AIRFLOW_HOME:-$ROOT/var/airflow}"
export AIRFLOW__CORE__DAGS_FOLDER="$HERE/dags"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
# `airflow dags` warns on every call that graphviz (for `dags show` images) is not installed
export PYTHONWARNINGS="${PYTHONWARNINGS:+$PYTHONWARNINGS,}ignore:Could not import graphviz:UserWarning"
mkdir -p "$AIRFLOW_HOME"
MIGRATED="$AIRFLOW_HOME/.lakeml-db-migrated"
if [ ! -f "$MIGRATED" ] || ! cmp -s "$MIGRATED" "$VENV/.lakeml-airflow-installed"; then
  "$VENV/bin/airflow" db migrate >"$AIRFLOW_HOME/db-migrate.log" 2>&1 || {
    tail -20 "$AIRFLOW_HOME/db-migrate.log" >&2
    echo "error: airflow db migrate failed (log: $AIRFLOW_HOME/db-migrate.log)" >&2
    exit 1
  }
  cp "$VENV/.lakeml-airflow-installed" "$MIGRATED"
fi
exec "$VENV/bin/airflow" "$@"
