# Shared by the rabbitmqadmin suites (v1 and v2): tallies and checks. The caller sets BIN (the
# CLI) and ADMIN_ARGS (its connection options) before sourcing this file.
T=20 # seconds allowed per invocation
pass=0
fail=0
suffix="$RANDOM$RANDOM"
vh="interop-admin-$suffix"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

ok() { echo "  ok   - $1"; pass=$((pass + 1)); }
bad() { echo "  FAIL - $1"; fail=$((fail + 1)); }
admin() { timeout "$T" "$BIN" "${ADMIN_ARGS[@]}" "$@"; }
# expect NAME REGEX CMD...: the command succeeds and its output matches REGEX (grep -E)
expect() {
  local name=$1 re=$2 out
  shift 2
  if ! out=$(admin "$@" 2>&1); then
    bad "$name: exit code $?: $(echo "$out" | tail -n 3)"
  elif [[ -n "$re" ]] && ! grep -Eq -- "$re" <<<"$out"; then
    bad "$name: output does not match /$re/: $(echo "$out" | tail -n 5)"
  else
    ok "$name"
  fi
}
# json FILE PYTHON-EXPR: the JSON document in FILE satisfies the expression (d = document)
json() {
  python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); sys.exit(0 if eval(sys.argv[2]) else 1)' "$1" "$2"
}
# api PATH: GET a management API path as guest (JSON on stdout), for values the checks need.
api() {
  python3 -c 'import base64, sys, urllib.request
r = urllib.request.Request("http://127.0.0.1:%s%s" % (sys.argv[1], sys.argv[2]))
r.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
sys.stdout.write(urllib.request.urlopen(r, timeout=10).read().decode())' "$WARREN_HTTP_PORT" "$1"
}
# consumer_connection QUEUE: the name of the connection consuming from QUEUE, waiting up to 10 s
# (empty if none shows up). Other suites' clients may linger, so the queue picks the client.
consumer_connection() {
  local name="" _
  for _ in $(seq 100); do
    name=$(api /api/consumers 2>/dev/null | python3 -c 'import json, sys
d = json.load(sys.stdin)
print(next((c["channel_details"]["connection_name"] for c in d if c["queue"]["name"] == sys.argv[1]), ""))' "$1" 2>/dev/null)
    [[ -n "$name" ]] && break
    sleep 0.1
  done
  echo "$name"
}
# consumer_gone QUEUE: succeeds once no consumer of QUEUE is listed (waits up to 10 s). After a
# connection.close the consumers go at once (RabbitMQ's rule), although amqp-consume never
# answers close-ok (both brokers keep listing the connection, without channels, until the
# socket goes).
consumer_gone() {
  local _
  for _ in $(seq 100); do
    if api /api/consumers 2>/dev/null | python3 -c 'import json, sys
sys.exit(any(c["queue"]["name"] == sys.argv[1] for c in json.load(sys.stdin)))' "$1"; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}
