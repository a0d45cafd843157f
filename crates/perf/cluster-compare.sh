#!/usr/bin/env bash
# Three-node Warren cluster against a three-node RabbitMQ cluster, side by side in one run, on
# loopback (issues 19 and 20). Each broker's three nodes run in turn (Warren, then RabbitMQ, then
# Warren again… alternating per run), unpinned: three nodes and the load generator share the
# machine's cores, as a cluster on one machine does.
#
#   crates/perf/cluster-compare.sh [--runs N] [--duration S] [--scenarios mem,x1,x2,q1,q100]
#                                  [--warren-only] [--out DIR] [--backlog N]
#
# Scenarios (warren-perf flags in scenario_flags below):
#   x1    classic queue homed on node 1, publisher on node 2, consumer on node 3, 16 B, auto-ack
#   x2    the same path, 1 KiB persistent, confirms (1,000 in flight), manual acks
#   q1    1 publisher with confirms → 1 quorum queue → 1 consumer with manual acks, 1 KiB
#         persistent, both on node 1 (the declaring node; the queue's leader at the start)
#   q100  the same with 100 quorum queues, 100 publishers and 100 consumers (aggregate)
#   mem   memory per quorum queue and per queued message on each node (first, on the fresh
#         cluster of run 1): 100 quorum queues declared, then 100,000 × 1 KiB into one of them;
#         RSS of every node before and after (RabbitMQ's garbage collection makes its deltas
#         noisy); the queues are deleted afterwards
#   qbl   (not run by default) a quorum queue's backlog: --backlog N (default 500,000) × 1 KiB
#         persistent published with confirms and no consumer, then drained by one consumer
#         (manual acks, prefetch 200); publish rate, drain rate and every node's peak RSS
#         (sampled every 0.2 s; RabbitMQ's three nodes every few seconds)
#
# Needs rabbitmq-server (installed from Debian's archive if missing, as rabbitmq-local.sh does).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
runs=3 duration=8 scenarios="mem,x1,x2,q1,q100" warren_only=0 out="" backlog=500000
while [ $# -gt 0 ]; do
  case $1 in
    --runs) runs=$2; shift ;;
    --duration) duration=$2; shift ;;
    --scenarios) scenarios=$2; shift ;;
    --warren-only) warren_only=1 ;;
    --out) out=$2; shift ;;
    --backlog) backlog=$2; shift ;;
    *) echo "unknown flag $1" >&2; exit 2 ;;
  esac
  shift
done
tmp=$(mktemp -d /tmp/cluster-compare.XXXXXX)
out=${out:-$tmp/results}
mkdir -p "$out"

target=${CARGO_TARGET_DIR:-$root/target}
echo "== building (release, CARGO_TARGET_DIR=$target)" >&2
cargo build --release -q -p warren -p warren-perf
# WARREN_BIN: another build's broker binary (e.g. a copy of an earlier build), for before/after runs.
warren_bin=${WARREN_BIN:-$target/release/warren} perf_bin=$target/release/warren-perf

# Ports: Warren nodes 5801-5803 (HTTP +10000, cluster 25801-25803); RabbitMQ nodes 5811, 5821,
# 5831 (management +10000, Prometheus +10001, distribution +20000), far enough apart not to overlap.
wports=(5801 5802 5803) rports=(5811 5821 5831)
wpids=() rabbit_up=0
rabbit_env() { # port → the environment rabbitmq-local.sh gives that node
  local p=$1 b=$tmp/rabbit-$1
  echo "HOME=$b ERL_EPMD_ADDRESS=127.0.0.1 RABBITMQ_NODENAME=rabbit$p@localhost RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
RABBITMQ_NODE_PORT=$p RABBITMQ_DIST_PORT=$((p + 20000)) RABBITMQ_CONFIG_FILE=$b/rabbitmq RABBITMQ_MNESIA_BASE=$b/mnesia \
RABBITMQ_LOG_BASE=$b/log RABBITMQ_ENABLED_PLUGINS_FILE=$b/enabled_plugins"
}
rctl() { local p=$1; shift; env $(rabbit_env "$p") /usr/lib/rabbitmq/bin/rabbitmqctl -n "rabbit$p@localhost" "$@"; }
cleanup() {
  for p in "${wpids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "$rabbit_up" = 1 ]; then for p in "${rports[@]}"; do rctl "$p" stop >/dev/null 2>&1 || true; done; fi
  rm -rf "$tmp"/data-* "$tmp"/rabbit-*/mnesia
}
trap cleanup EXIT

wait_port() { for _ in $(seq 600); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }
rss_kb() { awk '/VmRSS/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

start_warren() {
  rm -rf "$tmp"/data-*; wpids=()
  local i p seeds
  for i in 0 1 2; do
    p=${wports[$i]} seeds=""
    for j in 0 1 2; do [ "$j" = "$i" ] || seeds="$seeds${seeds:+,}127.0.0.1:$((wports[j] + 20000))"; done
    "$warren_bin" --node-name "warren$p@localhost" --data-dir "$tmp/data-$p" --amqp-listen "127.0.0.1:$p" \
      --http-listen "127.0.0.1:$((p + 10000))" --prometheus-listen off --log-level warn \
      --cluster-listen "127.0.0.1:$((p + 20000))" --cluster-seeds "$seeds" --cluster-secret bench-secret \
      > "$tmp/warren-$p.run$run_no.log" 2>&1 &
    wpids+=($!)
  done
  for p in "${wports[@]}"; do wait_port "$p"; done
  # A cluster answers once its metadata group has a leader: every node lists three running members.
  for _ in $(seq 300); do
    local n=0
    for p in "${wports[@]}"; do
      n=$((n + $(curl -s -u guest:guest "http://127.0.0.1:$((p + 10000))/api/nodes" | { grep -o '"running":true' || true; } | wc -l)))
    done
    [ "$n" = 9 ] && return 0
    sleep 0.1
  done
  echo "the Warren cluster did not form; see $tmp/warren-*.log" >&2; return 1
}
stop_warren() { for p in "${wpids[@]}"; do kill "$p" 2>/dev/null || true; done; wait "${wpids[@]}" 2>/dev/null || true; wpids=(); }

start_rabbit() {
  command -v rabbitmq-server >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server) >/dev/null
  local p b
  for p in "${rports[@]}"; do
    b=$tmp/rabbit-$p; rm -rf "$b"; mkdir -p "$b"
    printf 'WARRENBENCHCOOKIE' > "$b/.erlang.cookie"; chmod 400 "$b/.erlang.cookie"
    cat > "$b/rabbitmq.conf" <<CONF
listeners.tcp.default = 127.0.0.1:$p
management.tcp.ip = 127.0.0.1
management.tcp.port = $((p + 10000))
prometheus.tcp.ip = 127.0.0.1
prometheus.tcp.port = $((p + 10001))
loopback_users = none
CONF
    echo '[rabbitmq_management].' > "$b/enabled_plugins"
    env $(rabbit_env "$p") RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
      setsid /usr/lib/rabbitmq/bin/rabbitmq-server > "$b/server.out" 2>&1 < /dev/null &
  done
  rabbit_up=1
  for p in "${rports[@]}"; do wait_port "$p"; rctl "$p" await_startup >/dev/null; done
  for p in "${rports[@]:1}"; do
    rctl "$p" stop_app >/dev/null && rctl "$p" join_cluster "rabbit${rports[0]}@localhost" >/dev/null && rctl "$p" start_app >/dev/null
  done
  rctl "${rports[0]}" cluster_status | grep -A4 "Running Nodes" >&2 || true
}
stop_rabbit() { for p in "${rports[@]}"; do rctl "$p" stop >/dev/null 2>&1 || true; done; rabbit_up=0; }

uri() { echo "amqp://guest:guest@127.0.0.1:$1/%2f"; }
scenario_flags() { # scenario, ports of nodes 1..3
  local d=$duration n1=$2 n2=$3 n3=$4
  case $1 in
    x1) echo "--uri $(uri "$n1") --producer-uri $(uri "$n2") --consumer-uri $(uri "$n3") --durable --queue-pattern cross-%d --size 16 --auto-ack --duration $d" ;;
    x2) echo "--uri $(uri "$n1") --producer-uri $(uri "$n2") --consumer-uri $(uri "$n3") --durable --queue-pattern crossp-%d --size 1024 --persistent --confirm 1000 --prefetch 200 --multi-ack-every 50 --duration $d" ;;
    q1) echo "--uri $(uri "$n1") --quorum-queue --queue-pattern qq-%d --size 1024 --persistent --confirm 1000 --prefetch 200 --multi-ack-every 50 --duration $d" ;;
    q100) echo "--uri $(uri "$n1") --quorum-queue --queue-pattern qqs-%d --queues 100 --producers 100 --consumers 100 --size 1024 --persistent --confirm 100 --prefetch 100 --multi-ack-every 20 --threads 2 --duration $d" ;;
    qbl) echo "--uri $(uri "$n1") --quorum-queue --queue-pattern qbl-%d --size 1024 --persistent --confirm 1000 --prefetch 200 --multi-ack-every 50 --backlog --pmessages $backlog --drain-timeout 600" ;;
  esac
}
field() { { grep -o "\"$2\": *[-0-9.e+]*" "$1" 2>/dev/null || true; } | head -1 | sed 's/.*: *//'; }

node_pids() { # broker → its nodes' pids
  if [ "$1" = warren ]; then echo "${wpids[@]}"
  else for p in "${rports[@]}"; do rctl "$p" eval 'list_to_integer(os:getpid()).' 2>/dev/null | tail -1; done | xargs; fi
}
peak_rss() { # pids… : samples their RSS every 0.2 s into $peak_file (KiB, the highest so far)
  local -a pids=("$@") peak=(0 0 0) r k
  while :; do
    for k in 0 1 2; do r=$(rss_kb "${pids[k]}"); [ "${r:-0}" -gt "${peak[k]}" ] && peak[k]=$r; done
    echo "${peak[*]}" > "$peak_file"; sleep 0.2
  done
}
run_one() { # broker scenario n
  local b=$1 sc=$2 n=$3 f=$out/$2-$1-$3 ports sampler=""
  if [ "$b" = warren ]; then ports=("${wports[@]}"); else ports=("${rports[@]}"); fi
  if [ "$sc" = qbl ] || [ "$sc" = q100 ]; then
    peak_file=$f.peak
    # shellcheck disable=SC2046
    peak_rss $(node_pids "$b") &
    sampler=$!
  fi
  # shellcheck disable=SC2046
  timeout 900 "$perf_bin" --json $(scenario_flags "$sc" "${ports[@]}") > "$f.json" 2> "$f.log" \
    || echo "   (warren-perf exited $? for $sc on $b; see $f.log)" >&2
  if [ -n "$sampler" ]; then
    kill "$sampler" 2>/dev/null || true; wait "$sampler" 2>/dev/null || true
    awk -v s="$sc" -v b="$b" -v n="$n" '{ printf "   %-5s %-8s run %d: peak RSS per node %.1f / %.1f / %.1f MB\n", s, b, n, $1 / 1024, $2 / 1024, $3 / 1024 }' "$f.peak" \
      | tee -a "$out/qbl.txt" >&2
  fi
  printf '   %-5s %-8s run %d: published %s, consumed %s msg/s (%s while publishing), p50 %s us, p99 %s us, lost %s, dup %s\n' \
    "$sc" "$b" "$n" "$(field "$f.json" publish_rate | cut -d. -f1)" "$(field "$f.json" consume_rate | cut -d. -f1)" \
    "$(field "$f.json" consume_rate_while_publishing | cut -d. -f1)" "$(field "$f.json" p50_us)" \
    "$(field "$f.json" p99_us)" "$(field "$f.json" lost)" "$(field "$f.json" duplicated)" >&2
}

node_rss() { # broker → "rss1 rss2 rss3" in KiB
  if [ "$1" = warren ]; then for p in "${wpids[@]}"; do rss_kb "$p"; done | xargs
  else for p in "${rports[@]}"; do rss_kb "$(rctl "$p" eval 'list_to_integer(os:getpid()).' 2>/dev/null | tail -1)"; done | xargs; fi
}
mem_one() { # broker: 100 quorum queues, then 100,000 × 1 KiB queued in one
  local b=$1 ports f=$out/mem-$1
  if [ "$b" = warren ]; then ports=("${wports[@]}"); else ports=("${rports[@]}"); fi
  echo "idle $(node_rss "$b")" > "$f"
  "$perf_bin" --uri "$(uri "${ports[0]}")" --quorum-queue --queue-pattern mem-%d --queues 100 --producers 0 --consumers 0 \
    --pmessages 0 --keep-queues --quiet --json > /dev/null 2>> "$f.log" || true
  echo "queues100 $(node_rss "$b")" >> "$f"
  "$perf_bin" --uri "$(uri "${ports[0]}")" --quorum-queue --queue-pattern membl-%d --queues 1 --producers 1 --consumers 0 \
    --size 1024 --persistent --confirm 1000 --pmessages 100000 --keep-queues --quiet --json > "$f.json" 2>> "$f.log" || true
  echo "backlog100k $(node_rss "$b")" >> "$f"
  for q in membl-1 $(seq -f 'mem-%g' 100); do
    curl -s -o /dev/null -u guest:guest -X DELETE "http://127.0.0.1:$((ports[0] + 10000))/api/queues/%2F/$q" || true
  done
  awk -v b="$b" '
    { for (i = 2; i <= 4; i++) v[$1, i] = $i }
    END {
      for (i = 2; i <= 4; i++)
        printf "   mem   %-8s node %d: RSS idle %.1f MB, with 100 quorum queues %.1f MB, with 100,000 × 1 KiB queued %.1f MB: per quorum queue %.1f KB, per queued 1 KiB message %.0f B\n", b, i - 1,
          v["idle", i] / 1024, v["queues100", i] / 1024, v["backlog100k", i] / 1024,
          (v["queues100", i] - v["idle", i]) / 100, (v["backlog100k", i] - v["queues100", i]) * 1024 / 100000
    }' "$f" | tee -a "$out/mem.txt" >&2
}

IFS=, read -r -a list <<< "$scenarios"
brokers="warren"; [ "$warren_only" = 1 ] || brokers="warren rabbitmq"
echo "== $runs runs × ${#list[@]} scenarios, ${duration}s each; raw results in $out, node logs in $tmp" >&2
for i in $(seq "$runs"); do
  if [ $((i % 2)) = 1 ]; then order=$brokers; else order=$(echo "$brokers" | awk '{ for (i = NF; i > 0; i--) printf "%s ", $i }'); fi
  for b in $order; do
    run_no=$i
    if [ "$b" = warren ]; then start_warren; else start_rabbit; fi
    for sc in "${list[@]}"; do
      if [ "$sc" != mem ]; then run_one "$b" "$sc" "$i"; elif [ "$i" = 1 ]; then mem_one "$b"; fi
    done
    if [ "$b" = warren ]; then stop_warren; else stop_rabbit; fi
  done
done

median() { sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
metric() { local i; for i in $(seq "$runs"); do field "$out/$1-$2-$i.json" "$3"; done | grep -v '^$' | median; }
{
  echo "| scenario | figure | Warren | RabbitMQ | ratio |"
  echo "|---|---|---|---|---|"
  for sc in "${list[@]}"; do
    [ "$sc" = mem ] && continue
    for k in publish_rate consume_rate consume_rate_while_publishing p50_us p99_us nacked lost_confirmed duplicated; do
      w=$(metric "$sc" warren "$k"); r=nan
      [ "$warren_only" = 1 ] || r=$(metric "$sc" rabbitmq "$k")
      awk -v s="$sc" -v k="$k" -v w="$w" -v r="$r" 'function f(v) { if (v == "nan") return "–"; if (v + 0 >= 1000) return sprintf("%.0f", v); return sprintf("%.3g", v) }
        BEGIN { x = (r + 0 > 0 && w != "nan") ? sprintf("%.2f×", w / r) : "–"; printf "| %s | %s | %s | %s | %s |\n", s, k, f(w), f(r), x }'
    done
  done
  if [ -f "$out/mem.txt" ]; then sed "s/^ */    /" "$out/mem.txt"; fi
  if [ -f "$out/qbl.txt" ]; then sed "s/^ */    /" "$out/qbl.txt"; fi
} | tee "$out/table.md"
