#!/usr/bin/env bash
# Runs off-the-shelf AMQP clients (pika, aio-pika, Celery/kombu, amqplib, rabbitmq-c's
# amqp-tools), the dashboard in headless Chromium and RabbitMQ's rabbitmqadmin v2 (when
# installed) and v1 (from Debian's rabbitmq-server package) against a freshly built Warren on a
# free loopback port.
#
#   interop/run.sh            # from the repository root (or anywhere)
#
# Needs Rust, Python 3.11 + pip, Node 20 + npm; installs Debian's amqp-tools and chromium when
# missing and running as root. Prints one line per suite and a final "N passed, M failed,
# K skipped" (suites); exits non-zero if any suite failed or the broker could not be started.
# A suite exiting 77 (after printing SKIP: why) is skipped, not failed. rabbitmqadmin v2 is
# installed from crates.io (a debug build, a few minutes) unless one is on PATH or in
# $RABBITMQADMIN, or INTEROP_NO_INSTALL=1.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
INTEROP="$ROOT/interop"
cd "$ROOT"

SUITE_TIMEOUT=${INTEROP_SUITE_TIMEOUT:-600} # seconds per suite
START_DEADLINE=${INTEROP_START_DEADLINE:-30} # seconds for the broker to accept connections
PYTHON=${PYTHON:-python3}
T0=$(date +%s)

log() { echo "[interop] $*"; }
die() {
  echo "[interop] ERROR: $*" >&2
  echo "0 passed, 1 failed"
  exit 1
}

# --- build --------------------------------------------------------------------------------
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
case "$CARGO_TARGET_DIR" in /*) ;; *) CARGO_TARGET_DIR="$ROOT/$CARGO_TARGET_DIR" ;; esac
log "building warren (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
# The dev profile (opt-level 1, dependencies at 2) is fast enough for these suites and reuses
# what `cargo test` already built; INTEROP_PROFILE=release tests the release binary instead.
PROFILE=${INTEROP_PROFILE:-dev}
PROFILE_DIR=$([[ "$PROFILE" == dev ]] && echo debug || echo "$PROFILE")
if [[ "$PROFILE" == dev ]]; then
  # The same command line as the README's `cargo test --workspace`, so the features unify the
  # same way and the binary that run built is reused instead of compiling everything again.
  cargo test --workspace --no-run || die "cargo build failed"
else
  cargo build --profile "$PROFILE" --bin warren || die "cargo build failed"
fi
WARREN="$CARGO_TARGET_DIR/$PROFILE_DIR/warren"
[[ -x "$WARREN" ]] || die "no binary at $WARREN"

# --- start the broker ---------------------------------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/warren-interop.XXXXXX")
BROKER_PID=""
cleanup() {
  if [[ -n "$BROKER_PID" ]] && kill -0 "$BROKER_PID" 2>/dev/null; then
    kill "$BROKER_PID" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$BROKER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$BROKER_PID" 2>/dev/null
    wait "$BROKER_PID" 2>/dev/null
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
PORT=$(free_port) || die "cannot find a free port"
HTTP_PORT=$(free_port) || die "cannot find a free port"
PROMETHEUS_PORT=$(free_port) || die "cannot find a free port"
mkdir -p "$TMP/data"
# An AMQPS listener for the pika suite's TLS checks: a throwaway CA, a server certificate for
# localhost/127.0.0.1 and a client certificate with CN=guest (EXTERNAL), made with openssl.
# Without openssl the broker runs without TLS and those checks are skipped.
TLS_ARGS=()
gen_tls() {
  local d=$1 ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
  mkdir -p "$d" &&
    openssl req -x509 "${ec[@]}" -days 2 -subj "/CN=warren interop CA" -keyout "$d/ca.key" -out "$d/ca.pem" &&
    openssl req "${ec[@]}" -subj "/CN=localhost" -keyout "$d/server.key" -out "$d/server.csr" &&
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' \
      >"$d/server.ext" &&
    openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial -days 2 \
      -extfile "$d/server.ext" -out "$d/server.pem" &&
    openssl req "${ec[@]}" -subj "/CN=guest" -keyout "$d/client.key" -out "$d/client.csr" &&
    printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n' >"$d/client.ext" &&
    openssl x509 -req -in "$d/client.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial -days 2 \
      -extfile "$d/client.ext" -out "$d/client.pem"
}
if command -v openssl >/dev/null 2>&1 && gen_tls "$TMP/tls" >"$TMP/openssl.log" 2>&1; then
  TLS_PORT=$(free_port) || die "cannot find a free port"
  TLS_ARGS=(--tls-listen "127.0.0.1:$TLS_PORT" --tls-cert "$TMP/tls/server.pem" --tls-key "$TMP/tls/server.key"
    --tls-ca "$TMP/tls/ca.pem")
  export WARREN_TLS_DIR="$TMP/tls" AMQPS_PORT="$TLS_PORT"
else
  log "no TLS listener (openssl missing or failed; see $TMP/openssl.log): TLS checks will skip"
fi
"$WARREN" --amqp-listen "127.0.0.1:$PORT" --http-listen "127.0.0.1:$HTTP_PORT" \
  --prometheus-listen "127.0.0.1:$PROMETHEUS_PORT" \
  --data-dir "$TMP/data" "${TLS_ARGS[@]}" >"$TMP/warren.log" 2>&1 &
BROKER_PID=$!
log "warren pid $BROKER_PID on 127.0.0.1:$PORT (data $TMP/data)"

"$PYTHON" - "$PORT" "$START_DEADLINE" "$BROKER_PID" <<'EOF' || { tail -n 50 "$TMP/warren.log" >&2; die "broker did not accept connections"; }
import os, socket, sys, time
port, deadline, pid = int(sys.argv[1]), time.monotonic() + float(sys.argv[2]), int(sys.argv[3])
while True:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit("broker exited")
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        sys.exit(0)
    except OSError:
        if time.monotonic() > deadline:
            sys.exit("deadline passed")
        time.sleep(0.1)
EOF
export AMQP_URL="amqp://guest:guest@127.0.0.1:$PORT/%2f"
export WARREN_HTTP_PORT="$HTTP_PORT"
log "broker is up: AMQP_URL=$AMQP_URL"

# --- client toolchains --------------------------------------------------------------------
PY_OK=1
VENV="$INTEROP/.venv"
REQ_HASH=$(sha256sum "$INTEROP/requirements.txt" | cut -d' ' -f1)
if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating venv $VENV"
  "$PYTHON" -m venv "$VENV" || PY_OK=0
fi
if [[ $PY_OK -eq 1 && "$(cat "$VENV/.requirements.sha256" 2>/dev/null)" != "$REQ_HASH" ]]; then
  log "installing interop/requirements.txt"
  if "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$INTEROP/requirements.txt"; then
    echo "$REQ_HASH" >"$VENV/.requirements.sha256"
  else
    PY_OK=0
  fi
fi
[[ $PY_OK -eq 1 ]] || log "Python environment setup FAILED"

NODE_OK=1
log "npm ci (interop/node)"
(cd "$INTEROP/node" && npm ci --no-audit --no-fund --loglevel=error) || { NODE_OK=0; log "npm ci FAILED"; }

C_OK=1
if ! command -v amqp-publish >/dev/null 2>&1; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    log "installing amqp-tools"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq amqp-tools >/dev/null; } ||
      log "apt-get install amqp-tools FAILED"
  fi
  command -v amqp-publish >/dev/null 2>&1 || { C_OK=0; log "amqp-tools not available (install Debian's amqp-tools)"; }
fi

DASH_OK=1
if ! command -v chromium >/dev/null 2>&1; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    log "installing chromium"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } ||
      log "apt-get install chromium FAILED"
  fi
  command -v chromium >/dev/null 2>&1 || { DASH_OK=0; log "chromium not available (install Debian's chromium)"; }
fi
log "npm ci (interop/dashboard)"
(cd "$INTEROP/dashboard" && npm ci --no-audit --no-fund --loglevel=error) || { DASH_OK=0; log "npm ci (dashboard) FAILED"; }

# rabbitmqadmin v1: the Python script of Debian's rabbitmq-server package, extracted from the
# downloaded .deb (not installed: nothing of RabbitMQ is set up or started). Without it the v1
# suite is skipped.
if [[ -z "${RABBITMQADMIN_V1:-}" ]] && ! head -n1 /usr/bin/rabbitmqadmin 2>/dev/null | grep -q python; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1 && command -v dpkg-deb >/dev/null 2>&1; then
    log "fetching rabbitmqadmin v1 (Debian's rabbitmq-server package, extracted only)"
    if (cd "$TMP" && { apt-get download rabbitmq-server >/dev/null 2>&1 ||
      { apt-get update -qq && apt-get download rabbitmq-server >/dev/null 2>&1; }; }) &&
      dpkg-deb -x "$TMP"/rabbitmq-server_*.deb "$TMP/rabbitmq-server"; then
      export RABBITMQADMIN_V1="$TMP/rabbitmq-server/usr/bin/rabbitmqadmin"
    else
      log "fetching rabbitmqadmin v1 FAILED"
    fi
  fi
fi

# rabbitmqadmin v2 (RabbitMQ's CLI, a Rust crate): installed from crates.io into the target
# directory when no v2 is on PATH or in $RABBITMQADMIN (a debug build of a few minutes; see
# install-rabbitmqadmin.sh, which waits for an install already running). INTEROP_NO_INSTALL=1
# skips it (the v2 suite then reports SKIP).
is_v2() { [[ -n "$1" ]] && "$1" --version 2>/dev/null | head -n1 | grep -q '^rabbitmqadmin 2\.'; }
if [[ -z "${RABBITMQADMIN:-}" ]] && ! is_v2 "$(command -v rabbitmqadmin || true)"; then
  TOOLS="$CARGO_TARGET_DIR/tools"
  if ! is_v2 "$TOOLS/bin/rabbitmqadmin" && [[ "${INTEROP_NO_INSTALL:-0}" != 1 ]]; then
    log "installing rabbitmqadmin v2 from crates.io (debug build) into $TOOLS"
    "$INTEROP/install-rabbitmqadmin.sh" "$TOOLS" || log "installing rabbitmqadmin v2 FAILED"
  fi
  is_v2 "$TOOLS/bin/rabbitmqadmin" && export RABBITMQADMIN="$TOOLS/bin/rabbitmqadmin"
fi

# --- suites -------------------------------------------------------------------------------
PASSED=0
FAILED=0
SKIPPED=0
RESULTS=()

# run_suite NAME READY DIR CMD...: output goes to $TMP/NAME.log, shown in full on failure.
run_suite() {
  local name=$1 ready=$2 dir=$3
  shift 3
  local out="$TMP/$name.log" start rc
  start=$(date +%s)
  if [[ $ready -ne 1 ]]; then
    rc=127
    echo "toolchain setup failed" >"$out"
  else
    log "running $name"
    (cd "$dir" && timeout --kill-after=10 "$SUITE_TIMEOUT" "$@") >"$out" 2>&1
    rc=$?
  fi
  local secs=$(($(date +%s) - start))
  if ! kill -0 "$BROKER_PID" 2>/dev/null; then
    echo "!!! broker process died during this suite" >>"$out"
    [[ $rc -eq 0 ]] && rc=1
  fi
  local summary
  # pytest's "27 passed, 1 xfailed in 9.1s", node's TAP "# pass 22" / "# fail 0", the shell tallies
  summary=$(grep -E '^(=+ )?[0-9]+ (passed|failed|errors?|xfailed|xpassed|skipped)\b.* in [0-9.]+s( \(.*\))?( =+)?$|^# (pass|fail) [0-9]+$|^(amqp-tools|rabbitmqadmin): ' "$out" |
    sed -E 's/^=+ //; s/ =+$//; s/^# (pass|fail) ([0-9]+)$/\1 \2/' | paste -sd' ' -)
  [[ -n "$summary" ]] && summary="[$summary]"
  if [[ $rc -eq 77 ]] && grep -q '^SKIP' "$out"; then
    SKIPPED=$((SKIPPED + 1))
    RESULTS+=("SKIP  $name ($(grep -m1 '^SKIP' "$out"))")
    echo "SKIP  $name ($(grep -m1 '^SKIP' "$out"))"
  elif [[ $rc -eq 0 ]]; then
    PASSED=$((PASSED + 1))
    RESULTS+=("PASS  $name (${secs}s) $summary")
    echo "PASS  $name (${secs}s) $summary"
  else
    FAILED=$((FAILED + 1))
    [[ $rc -eq 124 ]] && summary="$summary [timed out after ${SUITE_TIMEOUT}s]"
    RESULTS+=("FAIL  $name (${secs}s, exit $rc) $summary")
    echo "----- $name output (exit $rc) -----"
    tail -n 150 "$out"
    echo "----- end of $name output -----"
    echo "FAIL  $name (${secs}s, exit $rc) $summary"
  fi
}

PYTEST=("$VENV/bin/python" -m pytest -p no:cacheprovider -q)
run_suite python-pika "$PY_OK" "$INTEROP/python" "${PYTEST[@]}" test_pika.py test_pika_protocol.py
run_suite python-aiopika "$PY_OK" "$INTEROP/python" "${PYTEST[@]}" test_aiopika.py test_aiopika_protocol.py
run_suite python-celery "$PY_OK" "$INTEROP/python" "${PYTEST[@]}" test_celery.py
run_suite node-amqplib "$NODE_OK" "$INTEROP/node" node --test --test-concurrency=1 --test-reporter=tap \
  test/core.test.mjs test/features.test.mjs test/protocol.test.mjs
run_suite c-amqp-tools "$C_OK" "$INTEROP/c" bash ./test_amqp_tools.sh
run_suite dashboard-chromium "$DASH_OK" "$INTEROP/dashboard" timeout --kill-after=5 60 \
  node --test --test-concurrency=1 --test-reporter=tap test/dashboard.test.mjs
run_suite rabbitmqadmin 1 "$INTEROP/rabbitmqadmin" bash ./test_rabbitmqadmin.sh
run_suite rabbitmqadmin-v1 1 "$INTEROP/rabbitmqadmin" bash ./test_rabbitmqadmin_v1.sh

if ! kill -0 "$BROKER_PID" 2>/dev/null; then
  log "broker log (tail):"
  tail -n 50 "$TMP/warren.log"
fi

echo
echo "== interop summary ($(($(date +%s) - T0))s) =="
for r in "${RESULTS[@]}"; do echo "$r"; done
echo "$PASSED passed, $FAILED failed, $SKIPPED skipped"
[[ $FAILED -eq 0 ]]
