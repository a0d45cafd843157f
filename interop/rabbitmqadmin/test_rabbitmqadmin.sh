#!/usr/bin/env bash
# RabbitMQ's own management CLI, rabbitmqadmin v2 (`cargo install rabbitmqadmin`), against
# Warren's HTTP API: overview, vhosts, exchanges, queues, bindings, publish/get, definitions
# export/import, health checks. Needs WARREN_HTTP_PORT.
#
# interop/run.sh installs v2 from crates.io (a debug build) unless one is on PATH or
# $RABBITMQADMIN names one; without one this suite prints SKIP and exits 77, which run.sh counts
# as skipped, not failed. Also: users, permissions, policies, limits, the read-only listings,
# churn, health checks, and a client connection listed and closed (with amqp-tools).
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

# --- the other command families ------------------------------------------------------------
expect "list users" "^guest[[:space:]]+administrator" list users
expect "list permissions" "^guest[[:space:]]+/" list permissions
u="admin-user-$suffix"
expect "declare user" "" declare user --name "$u" --password "pw-$suffix" --tags monitoring
expect "list users shows it" "^$u[[:space:]]+monitoring" list users
expect "declare permissions" "" --vhost / declare permissions --username "$u" --configure '^x$' --read '.*' --write ''
expect "list permissions shows them" "^$u[[:space:]]+/[[:space:]]+\\^x\\\$" list permissions
expect "declare policy" "" --vhost / declare policy --name "pol-$suffix" --pattern "^lim-$suffix\\." \
  --apply-to queues --definition '{"max-length": 5}'
expect "policies list_matching_object" "pol-$suffix" --vhost / policies list_matching_object --name "lim-$suffix.q" --type queues
expect "policies patch" "" --vhost / policies patch --name "pol-$suffix" --definition '{"message-ttl": 60000}'
expect "list policies shows the merged definition" "pol-$suffix.*max-length: 5.*message-ttl: 60000" --vhost / list policies
expect "delete policy" "" --vhost / delete policy --name "pol-$suffix"
expect "declare vhost_limit" "" --vhost / declare vhost_limit --name max-queues --value 100000
expect "list vhost_limits" "max-queues: 100000" list vhost_limits
expect "delete vhost_limit" "" --vhost / delete vhost_limit --name max-queues
expect "declare user_limit" "" declare user_limit --username "$u" --name max-connections --value 7
expect "list user_limits" "^$u[[:space:]]+max-connections: 7" list user_limits
expect "delete user_limit" "" delete user_limit --username "$u" --name max-connections
for what in parameters operator_policies feature_flags deprecated_features deprecated_features_in_use; do
  expect "list $what" "" list "$what"
done
expect "show churn" "connections opened" show churn
node=$(api /api/nodes | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["name"])' 2>/dev/null)
expect "show memory_breakdown_in_bytes (not available, as RabbitMQ says)" "not available" show memory_breakdown_in_bytes --node "$node"
expect "health_check node_is_quorum_critical" "passed" health_check node_is_quorum_critical
expect "health_check protocol_listener amqp" "passed" health_check protocol_listener --protocol amqp
amqp_port=$(sed -E 's|.*:([0-9]+)/.*|\1|' <<<"${AMQP_URL:-}")
if [[ "$amqp_port" =~ ^[0-9]+$ ]]; then
  expect "health_check port_listener" "passed" health_check port_listener --port "$amqp_port"
fi
expect "delete user" "" delete user --name "$u"
if admin list users 2>&1 | grep -q "^$u"; then bad "user deleted"; else ok "user deleted"; fi

# A client connection (amqp-consume, Debian's amqp-tools): listed with its channel and
# consumer, listed as guest's, then closed by the CLI.
if [[ -n "${AMQP_URL:-}" ]] && command -v amqp-consume >/dev/null 2>&1; then
  amqp-consume -u "$AMQP_URL" -q "v2.close.me.$suffix" -d cat >/dev/null 2>&1 &
  consumer=$!
  name=$(consumer_connection "v2.close.me.$suffix")
  if [[ -z "$name" ]]; then
    bad "the client's consumer is listed"
  else
    expect "list consumers shows the client's consumer" "v2\\.close\\.me\\.$suffix" list consumers
    expect "list connections shows the client" "$name" list connections
    expect "list channels shows its channel" "$name \\(1\\)" list channels
    expect "connections list_of_user guest" "$name" connections list_of_user --username guest
    expect "list user_connections guest" "$name" list user_connections --username guest
    expect "connections close" "" connections close --name "$name"
    if consumer_gone "v2.close.me.$suffix"; then ok "the closed client's consumer is gone"; else bad "the closed client's consumer is still listed"; fi
  fi
  kill "$consumer" 2>/dev/null
  wait "$consumer" 2>/dev/null
else
  echo "  (no amqp-consume or AMQP_URL: connection checks not run)"
fi

# wrong password is refused
if timeout "$T" "$BIN" -H 127.0.0.1 -P "$WARREN_HTTP_PORT" -u guest -p wrong --non-interactive list vhosts >/dev/null 2>&1; then
  bad "wrong password accepted"
else
  ok "wrong password refused"
fi

echo "rabbitmqadmin: $pass passed, $fail failed"
[[ $fail -eq 0 ]]
