#!/usr/bin/env bash
# Resolve the jars of the local single-node HDFS (Hadoop's CLI minicluster, see
# lib/lakeml/hdfs_service.py) with Maven into .cache/hdfs (once; later runs are offline).
# Unlike scripts/resolve_jars.sh nothing is left out: this is the classpath of a JVM of
# its own, not an addition to Spark's.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${LAKEML_HDFS_JARS_DIR:-$ROOT/.cache/hdfs}"
STAMP="$OUT/.resolved"
POM="$ROOT/scripts/jars/hdfs/pom.xml"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(sha256sum "$POM" | cut -d' ' -f1)" ]; then
  exit 0
fi
command -v mvn >/dev/null || { echo "error: mvn not found (make setup installs it)" >&2; exit 2; }
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
echo "resolving HDFS minicluster jars with Maven into $OUT ..."
mvn -q -B -f "$POM" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$TMP"
mkdir -p "$OUT"
rm -f "$OUT"/*.jar
cp "$TMP"/*.jar "$OUT/"
sha256sum "$POM" | cut -d' ' -f1 > "$STAMP"
echo "jars: $(ls "$OUT"/*.jar | xargs -n1 basename | tr '\n' ' ')"
