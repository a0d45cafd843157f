#!/usr/bin/env bash
# RabbitMQ's own management CLI, rabbitmqadmin v2 (`cargo install rabbitmqadmin`), against
# Warren's HTTP API: overview, vhosts, exchanges, queues, bindings, publish/get, definitions
# export/import, health checks. Needs WARREN_HTTP_PORT.
#
# rabbitmqadmin v2 takes ~14 minutes to compile on a 2-core machine, so CI does not install it:
# this suite runs when a v2 `rabbitmqadmin` is on PATH (or $RABBITMQADMIN names one) and
# otherwise prints SKIP and exits 77, which interop/run.sh counts as skipped, not failed.
# (Debian's rabbitmq-server package ships the Python v1 rabbitmqadmin: test_rabbitmqadmin_v1.sh.)
set -uo pipefail

: "${WARREN_HTTP_PORT:?WARREN_HTTP_PORT must be set}"
BIN=${RABBITMQADMIN:-$(command -v rabbitmqadmin || true)}
if [[ -z "$BIN" ]]; then
  echo "SKIP: rabbitmqadmin (v2) is not on PATH (cargo install rabbitmqadmin)"
  exit 77
fi
VERSION=$("$BIN" --version 2>/dev/null | head -n1)
if [[ ! "$VERSION" =~ ^rabbitmqadmin\ 2\. ]]; then
  echo "SKIP: $BIN is '$VERSION', not rabbitmqadmin v2 (cargo install rabbitmqadmin)"
  exit 77
fi
echo "using $BIN ($VERSION)"

ADMIN_ARGS=(-H 127.0.0.1 -P "$WARREN_HTTP_PORT" -u guest -p guest --non-interactive)
# shellcheck source=common.sh
source "$(dirname "$0")/common.sh"

expect "show overview" "Warren" show overview
expect "list nodes" "warren@" list nodes
expect "health_check local_alarms" "passed" health_check local_alarms
expect "health_check cluster_wide_alarms" "passed" health_check cluster_wide_alarms

expect "declare vhost" "" declare vhost --name "$vh"
expect "list vhosts shows it" "^$vh\b" list vhosts
expect "declare exchange" "" --vhost "$vh" declare exchange --name orders --type topic
expect "declare fanout exchange" "" --vhost "$vh" declare exchange --name audit --type fanout
expect "declare queue" "" --vhost "$vh" declare queue --name orders.q --type classic --durable true
expect "declare queue with arguments" "" --vhost "$vh" declare queue --name audit.q --type classic \
  --arguments '{"x-max-length": 100}'
expect "declare binding to a queue" "" --vhost "$vh" declare binding --source orders \
  --destination-type queue --destination orders.q --routing-key 'eu.#'
expect "declare binding to an exchange" "" --vhost "$vh" declare binding --source orders \
  --destination-type exchange --destination audit --routing-key '#'
expect "declare binding audit -> audit.q" "" --vhost "$vh" declare binding --source audit \
  --destination-type queue --destination audit.q --routing-key ''
expect "list exchanges" "orders[[:space:]].*topic" --vhost "$vh" list exchanges
expect "list queues" "orders\.q" --vhost "$vh" list queues
expect "list bindings" "orders[[:space:]]+orders\.q[[:space:]]+queue[[:space:]]+eu\.#" --vhost "$vh" list bindings

expect "publish message" "routed" --vhost "$vh" publish message --exchange orders \
  --routing-key eu.de.1 --payload "hello from rabbitmqadmin"
expect "get message (requeue)" "hello from rabbitmqadmin" --vhost "$vh" get messages --queue orders.q \
  --count 1 --ack-mode ack_requeue_true
expect "get message again (ack)" "hello from rabbitmqadmin" --vhost "$vh" get messages --queue orders.q \
  --count 1 --ack-mode ack_requeue_false
expect "fanned out through the exchange binding" "hello from rabbitmqadmin" --vhost "$vh" get messages \
  --queue audit.q --count 5 --ack-mode ack_requeue_false
if out=$(admin --vhost "$vh" get messages --queue orders.q --count 1 2>&1) && ! grep -q "hello" <<<"$out"; then
  ok "queue empty after ack"
else
  bad "queue empty after ack: $out"
fi

expect "export definitions" "" definitions export --file "$work/all.json"
if json "$work/all.json" "any(q['name'] == 'orders.q' and q['vhost'] == '$vh' for q in d['queues']) and any(b['source'] == 'orders' and b['destination'] == 'audit' for b in d['bindings'])"; then
  ok "exported definitions contain the queue and bindings"
else
  bad "exported definitions: $(head -c 400 "$work/all.json")"
fi
expect "export vhost definitions" "" --vhost "$vh" definitions export_from_vhost --file "$work/vh.json"
if json "$work/vh.json" "sorted(q['name'] for q in d['queues']) == ['audit.q', 'orders.q'] and all('vhost' not in x for x in d['exchanges'])"; then
  ok "vhost export is vhost-scoped"
else
  bad "vhost export: $(head -c 400 "$work/vh.json")"
fi

expect "delete binding" "" --vhost "$vh" delete binding --source orders --destination-type queue \
  --destination orders.q --routing-key 'eu.#'
expect "delete queue" "" --vhost "$vh" delete queue --name orders.q
expect "delete exchange" "" --vhost "$vh" delete exchange --name orders
if admin --vhost "$vh" list queues 2>&1 | grep -q "orders\.q"; then bad "queue deleted"; else ok "queue deleted"; fi

expect "import definitions" "" definitions import --file "$work/all.json"
expect "imported queue is back" "orders\.q" --vhost "$vh" list queues
expect "imported binding is back" "orders[[:space:]]+orders\.q[[:space:]]+queue[[:space:]]+eu\.#" --vhost "$vh" list bindings

vh2="$vh-copy"
expect "declare a second vhost" "" declare vhost --name "$vh2"
expect "import into vhost" "" --vhost "$vh2" definitions import_into_vhost --file "$work/vh.json"
expect "vhost import created the queues" "audit\.q" --vhost "$vh2" list queues
expect "purge queue" "" --vhost "$vh" purge queue --name audit.q

expect "delete vhost" "" delete vhost --name "$vh2"
expect "delete vhost" "" delete vhost --name "$vh"
if admin list vhosts 2>&1 | grep -q "$vh"; then bad "vhosts deleted"; else ok "vhosts deleted"; fi

# wrong password is refused
if timeout "$T" "$BIN" -H 127.0.0.1 -P "$WARREN_HTTP_PORT" -u guest -p wrong --non-interactive list vhosts >/dev/null 2>&1; then
  bad "wrong password accepted"
else
  ok "wrong password refused"
fi

echo "rabbitmqadmin: $pass passed, $fail failed"
[[ $fail -eq 0 ]]
