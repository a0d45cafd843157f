#!/usr/bin/env bash
# rabbitmq-c's command-line tools (Debian's amqp-tools) against Warren: declare, publish, get,
# consume and delete round trips, asserting bodies and counts. Needs AMQP_URL.
set -uo pipefail

: "${AMQP_URL:?AMQP_URL must be set}"
T=10 # seconds allowed per tool invocation
pass=0
fail=0
suffix="$RANDOM$RANDOM"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

ok() { echo "  ok   - $1"; pass=$((pass + 1)); }
bad() { echo "  FAIL - $1"; fail=$((fail + 1)); }
# check NAME EXPECTED ACTUAL
check() {
  if [[ "$2" == "$3" ]]; then ok "$1"; else bad "$1: expected [$2], got [$3]"; fi
}
run() { timeout "$T" "$@"; }

q="interop.c.q.$suffix"

# declare: prints the queue name
check "amqp-declare-queue prints the name" "$q" "$(run amqp-declare-queue -u "$AMQP_URL" -q "$q")"
# redeclare is idempotent
check "amqp-declare-queue again" "$q" "$(run amqp-declare-queue -u "$AMQP_URL" -q "$q")"
# server-named queue
gen=$(run amqp-declare-queue -u "$AMQP_URL" -q "")
if [[ "$gen" == amq.gen-* ]]; then ok "server-named queue ($gen)"; else bad "server-named queue: got [$gen]"; fi

# publish with -b, get it back
run amqp-publish -u "$AMQP_URL" -r "$q" -b "hello from rabbitmq-c" || bad "amqp-publish -b exit code"
check "amqp-get body" "hello from rabbitmq-c" "$(run amqp-get -u "$AMQP_URL" -q "$q")"

# amqp-get on an empty queue fails
if run amqp-get -u "$AMQP_URL" -q "$q" >/dev/null 2>&1; then bad "amqp-get on empty queue should fail"; else ok "amqp-get on empty queue exits non-zero"; fi

# publish from stdin (binary-safe body), get it back byte for byte
head -c 200000 /dev/urandom >"$work/blob"
run amqp-publish -u "$AMQP_URL" -r "$q" -p -C application/octet-stream <"$work/blob" || bad "amqp-publish stdin exit code"
run amqp-get -u "$AMQP_URL" -q "$q" >"$work/blob.out"
if cmp -s "$work/blob" "$work/blob.out"; then ok "200 kB binary body round trip"; else bad "binary body differs ($(wc -c <"$work/blob.out") bytes back)"; fi

# line-buffered publish: one message per line, consumed with -c
printf 'one\ntwo\nthree\n' | run amqp-publish -u "$AMQP_URL" -r "$q" -l || bad "amqp-publish -l exit code"
for expected in one two three; do
  got=$(run amqp-consume -u "$AMQP_URL" -q "$q" -c 1 cat)
  check "amqp-consume -c 1 gets '$expected'" "$expected" "$got"
done

# publishing with properties (-C, -H) still delivers the body intact
run amqp-publish -u "$AMQP_URL" -r "$q" -C text/plain -H "x-app: interop" -b "with-header" || bad "amqp-publish -H exit code"
check "body with header" "with-header" "$(run amqp-get -u "$AMQP_URL" -q "$q")"

# consume -c 3 stops after exactly three messages, leaving the fourth
for i in 1 2 3 4; do run amqp-publish -u "$AMQP_URL" -r "$q" -b "batch-$i" || bad "publish batch-$i"; done
run amqp-consume -u "$AMQP_URL" -q "$q" -c 3 -- sh -c 'cat; echo' >"$work/batch"
check "amqp-consume -c 3 bodies" "batch-1 batch-2 batch-3" "$(tr '\n' ' ' <"$work/batch" | sed 's/ $//')"
check "fourth message left" "batch-4" "$(run amqp-get -u "$AMQP_URL" -q "$q")"

# exchange + binding through amqp-consume -e/-r (exclusive server-named queue)
run amqp-consume -u "$AMQP_URL" -e amq.topic -r "interop.c.$suffix.#" -c 1 cat >"$work/topic" &
consumer=$!
# keep publishing until the consumer's binding exists and it has received one
for _ in $(seq 1 50); do
  if ! kill -0 "$consumer" 2>/dev/null; then break; fi
  run amqp-publish -u "$AMQP_URL" -e amq.topic -r "interop.c.$suffix.x.y" -b "via-topic" || true
  sleep 0.1
done
wait "$consumer"
check "amqp-consume -e amq.topic -r pattern" "via-topic" "$(cat "$work/topic")"

# delete: unknown-queue delete is fine; the queue is then gone for amqp-get
# (the queue is empty now: amqp-delete-queue prints the number of messages deleted)
check "amqp-delete-queue count" "0" "$(run amqp-delete-queue -u "$AMQP_URL" -q "$q")"
if run amqp-get -u "$AMQP_URL" -q "$q" >/dev/null 2>"$work/err"; then
  bad "amqp-get after delete should fail"
elif grep -q "404\|NOT_FOUND" "$work/err"; then
  ok "deleted queue is gone (404)"
else
  bad "amqp-get after delete: unexpected error: $(cat "$work/err")"
fi
run amqp-publish -u "$AMQP_URL" -r "$gen" -b "left-behind" || bad "publish to server-named queue"
check "amqp-delete-queue count (1 left)" "1" "$(run amqp-delete-queue -u "$AMQP_URL" -q "$gen")"

# wrong password is refused
bad_url=${AMQP_URL/guest:guest@/guest:wrong@}
if run amqp-get -u "$bad_url" -q "$q" >/dev/null 2>&1; then bad "wrong password accepted"; else ok "wrong password refused"; fi

echo "amqp-tools: $pass passed, $fail failed"
[[ $fail -eq 0 ]]
