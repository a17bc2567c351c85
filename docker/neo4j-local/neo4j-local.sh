#!/usr/bin/env bash
# A real Neo4j 5.26 community server assembled from Maven Central jars: no Docker needed.
# Tests and `make neo4j` use it; see docs/neo4j.md. Bolt listens on 127.0.0.1 only and auth is
# off unless NEO4J_LOCAL_PASSWORD is set, so it is for tests and local poking, never for a
# shared catalog.
#
#   neo4j-local.sh build              compile the launcher, copy jars to target/lib (idempotent)
#   neo4j-local.sh start [STATE_DIR]  start in the background; prints ONLY the bolt URI
#   neo4j-local.sh stop [STATE_DIR]   SIGTERM, wait up to 60 s, then SIGKILL; quiet if not running
#   neo4j-local.sh status [STATE_DIR] prints "running PID URI" (exit 0) or "stopped" (exit 3)
#   neo4j-local.sh run [PORT]         foreground server on PORT (default 7687); Ctrl-C stops it
#
# STATE_DIR (default <repo>/.neo4j-local) holds data/ (the Neo4j home), neo4j.log, pid and uri.
# Environment: JAVA_HOME, NEO4J_LOCAL_START_TIMEOUT (seconds, default 120),
# NEO4J_LOCAL_PASSWORD (when set: auth on, user neo4j with this password),
# NEO4J_LOCAL_PAGECACHE_MB (page cache, default 512), and
# NEO4J_LOCAL_OWNER_PID: when set, `start` also stops the server once that process is gone,
# so a killed test run leaves no java behind.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$HERE/../.." && pwd)"
DEFAULT_STATE_DIR="$REPO_ROOT/.neo4j-local"
START_TIMEOUT_S="${NEO4J_LOCAL_START_TIMEOUT:-120}"
STOP_TIMEOUT_S=60
JAVA="${JAVA_HOME:+$JAVA_HOME/bin/}java"
JAVA_OPTS=(
  -Xms512m -Xmx1g
  -XX:+UseG1GC -XX:+ExitOnOutOfMemoryError
  --add-opens java.base/java.nio=ALL-UNNAMED
  --add-opens java.base/java.lang=ALL-UNNAMED
  --add-opens java.base/java.util=ALL-UNNAMED
  --add-opens java.base/java.util.concurrent=ALL-UNNAMED
  --add-opens java.base/java.io=ALL-UNNAMED
  --add-opens java.base/sun.nio.ch=ALL-UNNAMED
  --add-exports java.base/sun.nio.ch=ALL-UNNAMED
)
CLASSPATH_ARG="$HERE/target/classes:$HERE/target/lib/*"
MAIN_CLASS=circuitcat.Neo4jLauncher

die() { echo "neo4j-local: $*" >&2; exit 1; }

state_dir_of() {  # absolute STATE_DIR from an optional argument (not created here)
  local dir="${1:-$DEFAULT_STATE_DIR}"
  [[ "$dir" == /* ]] || dir="$PWD/$dir"
  echo "$dir"
}

needs_build() {
  local stamp="$HERE/target/.built"
  [[ -d "$HERE/target/lib" && -f "$stamp" && ! "$HERE/pom.xml" -nt "$stamp" ]] || return 0
  [[ -n "$(find "$HERE/src" -newer "$stamp" -print -quit)" ]]
}

cmd_build() {
  needs_build || return 0
  command -v mvn >/dev/null || die "mvn not found on PATH"
  local out  # shown only on failure: `start` must print nothing but the URI on stdout
  if ! out="$(cd "$HERE" && rm -rf target/lib && mvn -q -B package -DskipTests 2>&1)"; then
    echo "$out" >&2
    die "maven build failed in $HERE"
  fi
  touch "$HERE/target/.built"
}

free_port() {  # bind to port 0 on loopback and report what the kernel picked
  local py
  py="$(command -v python3 || command -v python)" || die "python3 needed to pick a free port"
  "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

is_launcher() {  # PID is alive and is our launcher (guards against a reused pid)
  local args
  # -ww: without it ps cuts the command line at $COLUMNS (pytest sets COLUMNS=80).
  args="$(ps -ww -o args= -p "$1" 2>/dev/null)" || return 1
  [[ "$args" == *"$MAIN_CLASS"* ]]
}

answers() {  # something accepts TCP connections at bolt://HOST:PORT
  local hostport="${1#bolt://}"
  (exec 3<>"/dev/tcp/${hostport%:*}/${hostport##*:}") 2>/dev/null
}

running_pid() {  # prints the pid of a live launcher for STATE_DIR, else fails
  local pid
  [[ -f "$1/pid" ]] || return 1
  pid="$(cat "$1/pid")"
  is_launcher "$pid" && echo "$pid"
}

watch_owner() {  # stop the server once the owner process (e.g. pytest) is gone
  local owner="$1" pid="$2"
  while kill -0 "$owner" 2>/dev/null && kill -0 "$pid" 2>/dev/null; do sleep 2; done
  is_launcher "$pid" && kill -TERM "$pid" 2>/dev/null
  return 0
}

cmd_start() {
  local state pid port uri waited=0
  state="$(state_dir_of "${1:-}")"
  mkdir -p "$state"
  if pid="$(running_pid "$state")" && [[ -f "$state/uri" ]] && answers "$(cat "$state/uri")"; then
    cat "$state/uri"
    return 0
  fi
  cmd_stop "$state"  # clears a stale or half-started server
  cmd_build
  port="$(free_port)"
  : >"$state/neo4j.log"
  nohup "$JAVA" "${JAVA_OPTS[@]}" -cp "$CLASSPATH_ARG" "$MAIN_CLASS" "$state/data" "$port" \
    >>"$state/neo4j.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$state/pid"
  if [[ -n "${NEO4J_LOCAL_OWNER_PID:-}" ]]; then
    watch_owner "$NEO4J_LOCAL_OWNER_PID" "$pid" >/dev/null 2>&1 </dev/null &
    disown
  fi
  while ! uri="$(grep -m1 '^BOLT ' "$state/neo4j.log" | cut -d' ' -f2)" || [[ -z "$uri" ]]; do
    if ! kill -0 "$pid" 2>/dev/null || ((waited >= START_TIMEOUT_S * 2)); then
      kill -KILL "$pid" 2>/dev/null || true
      rm -f "$state/pid"
      echo "neo4j-local: Neo4j did not start; last lines of $state/neo4j.log:" >&2
      tail -n 40 "$state/neo4j.log" >&2
      exit 1
    fi
    sleep 0.5
    waited=$((waited + 1))
  done
  echo "$uri" >"$state/uri"
  echo "$uri"
}

cmd_stop() {
  local state pid waited=0
  state="$(state_dir_of "${1:-}")"
  if pid="$(running_pid "$state")"; then
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null && ((waited < STOP_TIMEOUT_S * 2)); do
      sleep 0.5
      waited=$((waited + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "neo4j-local: pid $pid ignored SIGTERM for ${STOP_TIMEOUT_S}s; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$state/pid" "$state/uri"
}

cmd_status() {
  local state pid
  state="$(state_dir_of "${1:-}")"
  if pid="$(running_pid "$state")"; then
    echo "running $pid $(cat "$state/uri" 2>/dev/null || echo starting)"
  else
    echo "stopped"
    return 3
  fi
}

cmd_run() {
  local port="${1:-7687}" state
  state="$(state_dir_of "")"
  mkdir -p "$state"
  running_pid "$state" >/dev/null && die "already running in the background: $(cat "$state/uri")"
  cmd_build
  cat <<MSG
Neo4j 5.26 community on bolt://127.0.0.1:$port (no auth; data in $state/data). Use it with:
  export CIRCUITCAT_STORE=bolt://127.0.0.1:$port
Ctrl-C stops it.
MSG
  exec "$JAVA" "${JAVA_OPTS[@]}" -cp "$CLASSPATH_ARG" "$MAIN_CLASS" "$state/data" "$port"
}

case "${1:-}" in
  build) cmd_build ;;
  start) cmd_start "${2:-}" ;;
  stop) cmd_stop "${2:-}" ;;
  status) cmd_status "${2:-}" ;;
  run) cmd_run "${2:-}" ;;
  *) sed -n '6,10p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
