#!/usr/bin/env bash
# The online scoring server (jobs/serve.py): POST /v1/<use case>/predict, GET /health,
# /ready, /metrics, on 127.0.0.1:8000 unless told otherwise. No Spark, no JVM.
#
#   ./scripts/serve.sh [--env NAME] [--usecase NAME] [--port N] [--host H] [--access-log]
#
# Another address than loopback needs a bearer token: LAKEML_SERVE_TOKEN (or the env file's
# serving.token_env / serving.token_file). Ctrl-C or SIGTERM stops it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
exec "$PY" "$ROOT/jobs/serve.py" "$@"
