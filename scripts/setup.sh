#!/usr/bin/env bash
# Install what is missing, nothing more: a JDK 17+ and Maven (Debian packages), the pinned
# Python venv (.venv from requirements.lock), the Delta jars (.cache/jars via Maven) and the
# project's own jar (jvm/src, compiled by scripts/build_jvm.sh).
# With --cluster, also what the cluster stack needs: the PostgreSQL server (Debian package)
# and the HDFS and YARN jars (.cache/hdfs, .cache/yarn via Maven).
# With --bench, also what make bench needs: wrk (Debian package), the serving benchmark's
# HTTP load generator (lakeml.bench.loadgen).
# Idempotent and quiet when everything is there.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${LAKEML_VENV:-$ROOT/.venv}"

apt_install() {
  if [ "$(id -u)" != 0 ]; then
    echo "error: need Debian packages $*; install them (sudo apt-get install $*) or run as root" >&2
    exit 2
  fi
  echo "installing Debian packages: $*"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

java_major() { java -version 2>&1 | sed -nE 's/.*version "([0-9]+).*/\1/p' | head -1; }
if ! command -v java >/dev/null || [ "$(java_major)" -lt 17 ] || ! command -v javac >/dev/null; then
  apt_install openjdk-17-jdk-headless  # javac: scripts/build_jvm.sh
fi
command -v mvn >/dev/null || apt_install maven
python3 -c 'import ensurepip, venv' 2>/dev/null || apt_install python3-venv

STAMP="$VENV/.lakeml-installed"
WANT="$(cat requirements.lock pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  echo "creating the Python environment in $VENV (pinned by requirements.lock) ..."
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -r requirements.lock
  # lakeml importable from this checkout in the venv (notebook kernels, python -m): a .pth
  # line, like an editable install but without an egg-info folder written into lib/
  "$VENV/bin/python" -c 'import sysconfig, sys; open(sysconfig.get_paths()["purelib"] + "/lakeml-checkout.pth", "w").write(sys.argv[1] + "\n")' "$ROOT/lib"
  "$VENV/bin/pip" uninstall -q -y lakeml 2>/dev/null || true
  rm -rf "$ROOT/lib/lakeml.egg-info"
  "$VENV/bin/python" -m ipykernel install --prefix "$VENV" --name python3 >/dev/null
  echo "$WANT" > "$STAMP"
fi

LAKEML_PYTHON="$VENV/bin/python" "$ROOT/scripts/resolve_jars.sh" delta
LAKEML_PYTHON="$VENV/bin/python" "$ROOT/scripts/build_jvm.sh"

if [ "${1:-}" = "--cluster" ]; then
  ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || apt_install postgresql
  command -v redis-server >/dev/null || apt_install redis-server  # the online store (lakeml.serving.store)
  "$ROOT/scripts/resolve_jars.sh" hdfs
  "$ROOT/scripts/resolve_jars.sh" yarn
fi

if [ "${1:-}" = "--bench" ]; then
  command -v wrk >/dev/null || apt_install wrk
fi
