#!/usr/bin/env bash
# What `make test` runs: the gates, then pytest with a real Neo4j. Starts a local Neo4j from
# Maven Central jars unless NEO4J_URI is set (or java/mvn are missing: the fixtures then try
# testcontainers, and with CI=true a missing Neo4j fails the run), and always stops it.
# Neo4j starts (and chromium installs) in the background while the gates run. pytest runs on
# PYTEST_WORKERS pytest-xdist workers (default 2; 0 runs it in this process), which share the
# one Neo4j: tests/conftest.py sends every Neo4j test to one worker. Extra arguments go to
# pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
WORKERS="${PYTEST_WORKERS:-2}"
mkdir -p .venv/run-all
t0=$SECONDS

started=""
neo4j_job=""
cleanup() {
  [ -n "$neo4j_job" ] && wait "$neo4j_job" 2>/dev/null
  [ -n "$started" ] && bash docker/neo4j-local/neo4j-local.sh stop .neo4j-local-test || true
}
trap cleanup EXIT
if [ -z "${NEO4J_URI:-}" ] && command -v java >/dev/null && command -v mvn >/dev/null; then
  echo "== starting a local Neo4j in the background (docker/neo4j-local)"
  started=1
  # Auth on, as on a team server: a fresh random password per run.
  NEO4J_USER=neo4j
  NEO4J_PASSWORD="test-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
  NEO4J_LOCAL_PASSWORD="$NEO4J_PASSWORD" NEO4J_LOCAL_OWNER_PID=$$ \
    bash docker/neo4j-local/neo4j-local.sh start .neo4j-local-test \
    > .venv/run-all/neo4j-uri 2> .venv/run-all/neo4j-start.log &
  neo4j_job=$!
fi

# The browser tests of `circuitcat serve` drive Debian's chromium (tests/test_web_browser.py).
chromium_job=""
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  echo "== installing chromium and chromium-driver in the background (log: .venv/apt-chromium.log)"
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo -n"
  if command -v apt-get >/dev/null && { [ -z "$sudo" ] || sudo -n true 2>/dev/null; }; then
    { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
        chromium chromium-driver; } > .venv/apt-chromium.log 2>&1 &
    chromium_job=$!
  else
    echo "   no apt-get or no root: install chromium and chromium-driver; browser tests skip (fail with CI=true)"
  fi
fi

echo "== ruff format --check"; $BIN/ruff format --check .
echo "== ruff check"; $BIN/ruff check .
echo "== mypy"; $BIN/mypy catalog cli ingest
echo "== hadolint"; $BIN/hadolint docker/ingest.Dockerfile
echo "   gates: $((SECONDS - t0)) s"

if [ -n "$chromium_job" ] && ! wait "$chromium_job"; then
  tail -20 .venv/apt-chromium.log
  echo "   chromium did not install: browser tests skip (fail with CI=true)"
fi
if [ -n "$neo4j_job" ]; then
  job=$neo4j_job; neo4j_job=""
  if ! wait "$job"; then
    cat .venv/run-all/neo4j-start.log >&2
    echo "the local Neo4j did not start (log above)" >&2
    exit 1
  fi
  NEO4J_URI="$(cat .venv/run-all/neo4j-uri)"
  export NEO4J_URI NEO4J_USER NEO4J_PASSWORD
  echo "== local Neo4j at $NEO4J_URI"
fi

echo "== pytest ($WORKERS workers)"
t1=$SECONDS
xdist=()
[ "$WORKERS" = 0 ] || xdist=(-n "$WORKERS" --dist loadgroup)
status=0
$BIN/pytest -q "${xdist[@]}" --durations=10 "$@" || status=$?
echo "   pytest: $((SECONDS - t1)) s; make test: $((SECONDS - t0)) s"
exit $status
