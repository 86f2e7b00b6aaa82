#!/usr/bin/env bash
# Resolve the Delta Lake jars and their runtime dependencies with Maven into
# .cache/jars (once; later runs are offline). Jars the pip pyspark already ships
# (Hadoop, Jackson, Parquet, Scala ...) are left out so Spark's own versions are used.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${LAKEML_JARS_DIR:-$ROOT/.cache/jars}"
PY="${LAKEML_PYTHON:-$ROOT/.venv/bin/python}"
STAMP="$OUT/.resolved"
POM="$ROOT/scripts/jars/pom.xml"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(sha256sum "$POM" | cut -d' ' -f1)" ]; then
  exit 0
fi
command -v mvn >/dev/null || { echo "error: mvn not found (make setup installs it)" >&2; exit 2; }
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
echo "resolving Delta jars with Maven into $OUT ..."
mvn -q -B -f "$POM" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$TMP"
SPARK_JARS="$("$PY" -c 'import pyspark, os; print(os.path.join(os.path.dirname(pyspark.__file__), "jars"))')"
mkdir -p "$OUT"
rm -f "$OUT"/*.jar
SPARK_LIST="$(ls "$SPARK_JARS")"
for jar in "$TMP"/*.jar; do
  base="$(basename "$jar" .jar)"
  artifact="${base%-*}"
  if grep -qE "^${artifact}-[0-9]" <<<"$SPARK_LIST"; then
    continue  # Spark ships its own version
  fi
  cp "$jar" "$OUT/"
done
sha256sum "$POM" | cut -d' ' -f1 > "$STAMP"
echo "jars: $(ls "$OUT"/*.jar | xargs -n1 basename | tr '\n' ' ')"
