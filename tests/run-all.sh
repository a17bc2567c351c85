#!/usr/bin/env bash
# What `make test` runs: the gates, then pytest with a real Neo4j. Starts a local Neo4j from
# Maven Central jars unless NEO4J_URI is set (or java/mvn are missing: the fixtures then try
# testcontainers, and with CI=true a missing Neo4j fails the run), and always stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin

echo "== ruff format --check"; $BIN/ruff format --check .
echo "== ruff check"; $BIN/ruff check .
echo "== mypy"; $BIN/mypy catalog cli ingest
echo "== hadolint"; $BIN/hadolint docker/ingest.Dockerfile

started=""
cleanup() { [ -n "$started" ] && bash docker/neo4j-local/neo4j-local.sh stop .neo4j-local-test || true; }
trap cleanup EXIT
if [ -z "${NEO4J_URI:-}" ] && command -v java >/dev/null && command -v mvn >/dev/null; then
  echo "== starting a local Neo4j (docker/neo4j-local)"
  started=1
  # Auth on, as on a team server: a fresh random password per run.
  NEO4J_USER=neo4j
  NEO4J_PASSWORD="test-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
  NEO4J_URI="$(NEO4J_LOCAL_PASSWORD="$NEO4J_PASSWORD" NEO4J_LOCAL_OWNER_PID=$$ \
    bash docker/neo4j-local/neo4j-local.sh start .neo4j-local-test)"
  export NEO4J_URI NEO4J_USER NEO4J_PASSWORD
  echo "   $NEO4J_URI"
fi

# The browser tests of `circuitcat serve` drive Debian's chromium (tests/test_web_browser.py).
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  echo "== installing chromium and chromium-driver (log: .venv/apt-chromium.log)"
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo -n"
  if command -v apt-get >/dev/null && { [ -z "$sudo" ] || sudo -n true 2>/dev/null; }; then
    { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
        chromium chromium-driver; } > .venv/apt-chromium.log 2>&1 \
      || { tail -20 .venv/apt-chromium.log; echo "   chromium did not install: browser tests skip (fail with CI=true)"; }
  else
    echo "   no apt-get or no root: install chromium and chromium-driver; browser tests skip (fail with CI=true)"
  fi
fi

echo "== pytest"
$BIN/pytest -q "$@"
