#!/usr/bin/env bash
# spark-sql on the same catalog, warehouse and Delta config as the jobs (beeline on the
# env's SQL endpoint when it has one, e.g. the cluster env's Thrift Server).
#
#   ./scripts/sql.sh [--env NAME] -e "SELECT * FROM <database>.predictions LIMIT 10"
#   ./scripts/sql.sh [--env NAME]            # interactive prompt
#   ./scripts/sql.sh -f query.sql
#
# The embedded env's Derby metastore admits one process at a time: run it while no job
# is running.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
exec "$PY" -m lakeml.ops.submit sql "$@"
