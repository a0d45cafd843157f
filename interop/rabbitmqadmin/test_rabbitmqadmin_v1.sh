#!/usr/bin/env bash
# RabbitMQ's Python management CLI, rabbitmqadmin v1 (the script many ops scripts still call),
# against Warren's HTTP API: every subcommand family of `rabbitmqadmin help subcommands` that maps
# to a Warren feature — listings, overview, declare/delete of vhosts, users, permissions,
# exchanges, queues, bindings, policies and vhost limits, publish/get, purge, export/import,
# close connection. v1 sends booleans and numbers as strings ("durable":"true"), which
# RabbitMQ's API accepts and so must Warren's. Needs WARREN_HTTP_PORT and AMQP_URL.
#
# The script comes from Debian's rabbitmq-server package (/usr/bin/rabbitmqadmin, Python 3, no
# Erlang needed to run it): $RABBITMQADMIN_V1 names it; interop/run.sh extracts it from the
# package with `apt-get download` (nothing is installed or started). Without it: SKIP (exit 77).
set -uo pipefail

: "${WARREN_HTTP_PORT:?WARREN_HTTP_PORT must be set}"
: "${AMQP_URL:?AMQP_URL must be set}"
BIN=${RABBITMQADMIN_V1:-}
if [[ -z "$BIN" && -x /usr/bin/rabbitmqadmin ]] && head -n1 /usr/bin/rabbitmqadmin | grep -q python; then
  BIN=/usr/bin/rabbitmqadmin
fi
if [[ -z "$BIN" ]]; then
  echo "SKIP: rabbitmqadmin v1 not found (Debian's rabbitmq-server package ships it; set RABBITMQADMIN_V1)"
  exit 77
fi
echo "using $BIN ($(python3 "$BIN" --version 2>&1 | head -n1))"

ADMIN_ARGS=(-H 127.0.0.1 -P "$WARREN_HTTP_PORT" -u guest -p guest)
# shellcheck source=common.sh
source "$(dirname "$0")/common.sh"
admin() { timeout "$T" python3 "$BIN" "${ADMIN_ARGS[@]}" "$@"; }

expect "show overview" "Warren|rabbitmq_version" show overview
expect "list nodes" "warren@" list nodes
expect "list users" "guest" list users
expect "declare vhost" "vhost declared" declare vhost name="$vh"
expect "list vhosts shows it" "$vh" list vhosts
expect "declare user" "user declared" declare user name="u$suffix" password=secret tags=management
expect "declare permission" "permission declared" declare permission vhost="$vh" user="u$suffix" \
  configure='.*' write='.*' read='.*'
expect "list permissions" "u$suffix" list permissions
expect "declare exchange (string booleans)" "exchange declared" -V "$vh" declare exchange name=orders \
  type=topic durable=true auto_delete=false internal=false
expect "declare fanout exchange" "exchange declared" -V "$vh" declare exchange name=audit type=fanout
expect "declare queue (string booleans)" "queue declared" -V "$vh" declare queue name=orders.q \
  durable=true auto_delete=false
expect "declare queue with arguments" "queue declared" -V "$vh" declare queue name=audit.q \
  arguments='{"x-max-length": 100}'
expect "declare binding to a queue" "binding declared" -V "$vh" declare binding source=orders \
  destination=orders.q routing_key='eu.#'
expect "declare binding to an exchange" "binding declared" -V "$vh" declare binding source=orders \
  destination_type=exchange destination=audit routing_key='#'
expect "declare binding audit -> audit.q" "binding declared" -V "$vh" declare binding source=audit \
  destination=audit.q
expect "list exchanges" "orders.*topic" -V "$vh" list exchanges
expect "list queues" "orders\.q" -V "$vh" list queues
expect "list bindings" "orders.*orders\.q.*eu\.#" -V "$vh" list bindings source destination routing_key

expect "publish" "Message published" -V "$vh" publish exchange=orders routing_key=eu.de.1 \
  payload="hello from rabbitmqadmin v1"
expect "get (requeue)" "hello from rabbitmqadmin v1" -V "$vh" get queue=orders.q count=1 ackmode=ack_requeue_true
expect "get (ack)" "hello from rabbitmqadmin v1" -V "$vh" get queue=orders.q ackmode=ack_requeue_false
expect "fanned out through the exchange binding" "hello from rabbitmqadmin v1" -V "$vh" get queue=audit.q \
  count=5 ackmode=ack_requeue_false
if out=$(admin -V "$vh" get queue=orders.q 2>&1) && ! grep -q "hello" <<<"$out"; then
  ok "queue empty after ack"
else
  bad "queue empty after ack: $out"
fi
expect "publish again" "Message published" -V "$vh" publish exchange=orders routing_key=eu.fr payload=x
expect "purge queue" "queue purged" -V "$vh" purge queue name=orders.q
if admin -f raw_json -V "$vh" list queues name messages 2>/dev/null >"$work/q.json" &&
  json "$work/q.json" "any(q['name'] == 'orders.q' and q.get('messages', 0) == 0 for q in d)"; then
  ok "purged queue is empty"
else
  bad "purged queue: $(head -c 300 "$work/q.json")"
fi

expect "declare policy" "policy declared" -V "$vh" declare policy name=cap pattern='^audit' \
  definition='{"max-length": 10}' priority=1 apply-to=queues
expect "list policies" "cap" -V "$vh" list policies
expect "declare vhost_limit" "vhost_limit declared" declare vhost_limit vhost="$vh" name=max-queues value=50
expect "list vhost_limits" "max-queues" -V "$vh" list vhost_limits

expect "export" "Exported definitions" export "$work/all.json"
if json "$work/all.json" "any(q['name'] == 'orders.q' and q['vhost'] == '$vh' for q in d['queues']) and any(p['name'] == 'cap' for p in d['policies'])"; then
  ok "exported definitions contain the queue and the policy"
else
  bad "exported definitions: $(head -c 400 "$work/all.json")"
fi

# A client connection, seen and closed by the CLI: amqp-consume (Debian's amqp-tools) waits on a
# queue until the broker closes its connection.
if command -v amqp-consume >/dev/null 2>&1; then
  amqp-consume -u "$AMQP_URL" -q "close.me.$suffix" -d cat >/dev/null 2>&1 &
  consumer=$!
  name=$(consumer_connection "close.me.$suffix")
  if [[ -z "$name" ]]; then
    bad "the client's consumer is listed"
  else
    expect "list consumers shows the client's consumer" "close\\.me\\.$suffix" list consumers queue.name consumer_tag
    expect "list connections shows the client" "$name" list connections name
    expect "list channels" "$name" list channels name
    expect "close connection" "connection closed" close connection name="$name"
    if consumer_gone "close.me.$suffix"; then ok "the closed client's consumer is gone"; else bad "the closed client's consumer is still listed"; fi
  fi
  kill "$consumer" 2>/dev/null
  wait "$consumer" 2>/dev/null
fi

expect "delete binding" "binding deleted" -V "$vh" delete binding source=orders destination_type=queue \
  destination=orders.q properties_key='eu.#'
expect "delete queue" "queue deleted" -V "$vh" delete queue name=orders.q
expect "delete exchange" "exchange deleted" -V "$vh" delete exchange name=orders
if admin -V "$vh" list queues 2>&1 | grep -q "orders\.q"; then bad "queue deleted"; else ok "queue deleted"; fi
expect "import" "Uploaded definitions" import "$work/all.json"
expect "imported queue is back" "orders\.q" -V "$vh" list queues
expect "delete policy" "policy deleted" -V "$vh" delete policy name=cap
expect "delete vhost_limit" "vhost_limit deleted" delete vhost_limit vhost="$vh" name=max-queues
expect "delete permission" "permission deleted" delete permission vhost="$vh" user="u$suffix"
expect "delete user" "user deleted" delete user name="u$suffix"
expect "delete vhost" "vhost deleted" delete vhost name="$vh"
if admin list vhosts 2>&1 | grep -q "$vh"; then bad "vhost deleted"; else ok "vhost deleted"; fi

if timeout "$T" python3 "$BIN" -H 127.0.0.1 -P "$WARREN_HTTP_PORT" -u guest -p wrong list vhosts >/dev/null 2>&1; then
  bad "wrong password accepted"
else
  ok "wrong password refused"
fi

echo "rabbitmqadmin: $pass passed, $fail failed"
[[ $fail -eq 0 ]]
