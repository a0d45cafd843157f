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
