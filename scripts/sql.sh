#!/usr/bin/env bash
# spark-sql on the same catalog, warehouse and Delta config as the jobs (beeline on the
# env's SQL endpoint when it has one, e.g. the cluster env's Thrift Server).
#
#   ./scripts/sql.sh [--env NAME] -e "SELECT * FROM <database>.predictions LIMIT 10"
#   ./scripts/sql.sh [--env NAME]            # interactive prompt
#   ./scripts/sql.sh -f query.sql
#
# The embedded env's Derby metastore admits one process at a time. While a job holds the
# data folder (its lock, lib/lakeml/core/lock.py), sql.sh says so in one line and reads the
# warehouse's Delta tables without the metastore: an in-memory catalog where each table is
# a view <db>.<table> over its folder, read-only, each query on its latest committed version.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
exec "$PY" -m lakeml.ops.submit sql "$@"
