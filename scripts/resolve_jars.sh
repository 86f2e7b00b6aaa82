#!/usr/bin/env bash
# Resolve a set of JVM jars with Maven into a cache folder (once; later runs are offline):
#
#   scripts/resolve_jars.sh delta   Delta Lake + its runtime jars and the PostgreSQL JDBC driver
#                                   (scripts/jars/delta/pom.xml) into .cache/jars ($LAKEML_JARS_DIR),
#                                   for Spark's --jars: jars the pip pyspark already ships (Hadoop,
#                                   Jackson, Parquet, Scala ...) are left out so Spark's own are used
#   scripts/resolve_jars.sh hdfs    Hadoop's HDFS NameNode and DataNode (scripts/jars/hdfs/pom.xml) into
#                                   .cache/hdfs ($LAKEML_HDFS_JARS_DIR), all of them: the classpath
#                                   of those daemons (lib/lakeml/ops/cluster/hdfs.py)
#   scripts/resolve_jars.sh yarn    Hadoop's YARN ResourceManager and NodeManager (scripts/jars/yarn/pom.xml)
#                                   into .cache/yarn ($LAKEML_YARN_JARS_DIR), all of them: the
#                                   classpath of those daemons (lib/lakeml/ops/cluster/yarn.py)
#
# A folder is resolved again only when its pom changes: .resolved in it holds the pom's sha256.
set -euo pipefail
SET="${1:-}"
case "$SET" in
  delta) OUT="${LAKEML_JARS_DIR:-}"; DEFAULT=jars ;;
  hdfs) OUT="${LAKEML_HDFS_JARS_DIR:-}"; DEFAULT=hdfs ;;
  yarn) OUT="${LAKEML_YARN_JARS_DIR:-}"; DEFAULT=yarn ;;
  *) echo "usage: scripts/resolve_jars.sh delta|hdfs|yarn" >&2; exit 2 ;;
esac
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${OUT:-$ROOT/.cache/$DEFAULT}"
POM="$ROOT/scripts/jars/$SET/pom.xml"
STAMP="$OUT/.resolved"
WANT="$(sha256sum "$POM" | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
  exit 0
fi
command -v mvn >/dev/null || { echo "error: mvn not found (make setup installs it)" >&2; exit 2; }
if [ "$SET" = delta ]; then
  PY="${LAKEML_PYTHON:-$ROOT/.venv/bin/python}"
  [ -x "$PY" ] || { echo "error: no Python environment at ${LAKEML_PYTHON:-$ROOT/.venv}; run 'make setup' first" >&2; exit 2; }
  SPARK_JARS="$("$PY" -c 'import pyspark, os; print(os.path.join(os.path.dirname(pyspark.__file__), "jars"))')"
fi
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
echo "resolving the $SET jars with Maven into $OUT ..."
mvn -q -B -f "$POM" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$TMP"
mkdir -p "$OUT"
rm -f "$OUT"/*.jar
if [ "$SET" = delta ]; then
  SPARK_LIST="$(ls "$SPARK_JARS")"
  for jar in "$TMP"/*.jar; do
    base="$(basename "$jar" .jar)"
    artifact="${base%-*}"
    if grep -qE "^${artifact}-[0-9]" <<<"$SPARK_LIST"; then
      continue  # Spark ships its own version
    fi
    cp "$jar" "$OUT/"
  done
else
  cp "$TMP"/*.jar "$OUT/"
fi
echo "$WANT" > "$STAMP"
echo "jars: $(ls "$OUT"/*.jar | xargs -n1 basename | tr '\n' ' ')"
