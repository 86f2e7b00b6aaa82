#!/usr/bin/env bash
# Install the Airflow environment of orchestration/airflow into .venv-airflow (or
# $LAKEML_AIRFLOW_VENV): apache-airflow and the standard provider from requirements.txt, every
# other package pinned by constraints.txt. Its own venv: Airflow's pins conflict with the
# project's requirements.lock. Idempotent and quiet when everything is there (`make airflow`).
#
#   ./orchestration/airflow/install.sh           install what is missing
#   ./orchestration/airflow/install.sh --lock    re-resolve constraints.txt from requirements.txt (needs the package index)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENV="${LAKEML_AIRFLOW_VENV:-$ROOT/.venv-airflow}"
PYTHON="${PYTHON:-python3}"

if [ "${1:-}" = "--lock" ]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  "$PYTHON" -m venv "$tmp/venv"
  "$tmp/venv/bin/pip" install -q --upgrade pip
  "$tmp/venv/bin/pip" install -q -r "$HERE/requirements.txt"
  {
    echo "# Every package of the Airflow environment, pinned: pip freeze of a fresh"
    py="$("$tmp/venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    echo "# \`pip install -r requirements.txt\` (Python $py), like Airflow's own constraints files."
    "$tmp/venv/bin/pip" freeze | grep -v -E '^(pip|setuptools|wheel)=='
  } > "$HERE/constraints.txt"
  echo "wrote $HERE/constraints.txt"
  exit 0
fi

STAMP="$VENV/.lakeml-airflow-installed"
WANT="$(cat "$HERE/requirements.txt" "$HERE/constraints.txt" "$HERE/install.sh" | sha256sum | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
  exit 0
fi
"$PYTHON" -c 'import ensurepip, venv' 2>/dev/null || {
  echo "error: $PYTHON has no venv module; install python3-venv (or run 'make setup', which does)" >&2
  exit 2
}
echo "creating the Airflow environment in $VENV (orchestration/airflow/requirements.txt + constraints.txt) ..."
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q -r "$HERE/requirements.txt" -c "$HERE/constraints.txt"
echo "$WANT" > "$STAMP"
