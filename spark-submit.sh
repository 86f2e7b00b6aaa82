#!/usr/bin/env bash
# The one way to run a job, on any env (conf/envs/<env>.yaml):
#
#   ./spark-submit.sh [--env NAME] [--usecase NAME] [--conf-dir DIR] [--dry-run] [spark-submit options ...] jobs/<job>.py [job args ...]
#
# Before the job: the wrapper's options and spark-submit's own (--master, --conf k=v,
# --driver-memory ..., which come after the env's and win); after it: the job's options.
# Ships lib/ as a zip (--py-files), the Delta jars (--jars), the env's Spark confs and
# PYSPARK_PYTHON; hands --env, --conf-dir and --usecase to the job. --dry-run prints the
# command; --help says what goes where.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/scripts/_env.sh"
exec "$PY" -m lakeml.ops.submit "$@"
