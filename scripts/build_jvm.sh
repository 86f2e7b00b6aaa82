#!/usr/bin/env bash
# Build the project's own JVM code (jvm/src: Spark SQL functions in Java, e.g. the strict JSON
# line reader of ingest) into a jar beside the Delta jars (.cache/jars, $LAKEML_JARS_DIR), so
# that Spark loads it like them (embedded: spark.jars; spark-submit.sh: --jars). Compiled by the
# JDK's javac against the jars of the pip pyspark (Spark and Jackson: nothing to download).
# Rebuilt only when a source changes: the jar's name holds the sources' sha256.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${LAKEML_JARS_DIR:-$ROOT/.cache/jars}"
PY="${LAKEML_PYTHON:-$ROOT/.venv/bin/python}"
HASH="$(cd "$ROOT" && find jvm/src -name "*.java" | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-12)"
JAR="$OUT/lakeml-jvm-$HASH.jar"
[ -f "$JAR" ] && exit 0
command -v javac >/dev/null || { echo "error: javac not found: install a JDK 17 (apt-get install openjdk-17-jdk-headless)" >&2; exit 2; }
[ -x "$PY" ] || { echo "error: no Python environment at ${LAKEML_PYTHON:-$ROOT/.venv}; run 'make setup' first" >&2; exit 2; }
SPARK_JARS="$("$PY" -c 'import pyspark, os; print(os.path.join(os.path.dirname(pyspark.__file__), "jars"))')"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$OUT"
javac -nowarn --release 17 -cp "$SPARK_JARS/*" -d "$TMP/classes" $(find "$ROOT/jvm/src" -name '*.java')
jar cf "$TMP/lakeml-jvm.jar" -C "$TMP/classes" .
rm -f "$OUT"/lakeml-jvm-*.jar
mv "$TMP/lakeml-jvm.jar" "$JAR"
echo "built $(basename "$JAR")"
