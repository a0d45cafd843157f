#!/usr/bin/env bash
# Side-by-side benchmark: Warren (release build) against RabbitMQ (Debian's rabbitmq-server via
# ../shared/tools/rabbitmq-local.sh), both on loopback, each broker pinned to CPU 0 and
# warren-perf to CPU 1. Every scenario runs against both brokers in turn (A/B alternation, the
# order flipping every round), RUNS times; the table shows medians and the Warren/RabbitMQ ratio.
#
#   crates/perf/compare.sh [--quick] [--full] [--runs N] [--duration S] [--scenarios 1,2,4,5]
#                          [--backlog-n N] [--warren-only] [--baseline BIN] [--baseline-perf BIN]
#                          [--max-steal F] [--out DIR]
#
#   --quick        3 s per run instead of 10 s
#   --full         scenario 8 publishes 10,000,000 messages (default 1,000,000)
#   --scenarios    comma-separated subset of 1..8 (default all)
#   --warren-only  skip RabbitMQ
#   --baseline BIN compare against another Warren binary (e.g. a build of the previous commit)
#                  instead of RabbitMQ, started the same way on RABBITMQ_PORT: a before/after table
#   --baseline-perf BIN  with --baseline: load the baseline broker with this warren-perf binary
#                  (a build of the previous commit) instead of this tree's, so a change to the
#                  load generator shows in the before/after table too
#   --max-steal F  a run in which the hypervisor took more than F (0.0-1.0) of a CPU is run
#                  again, up to 5 attempts, for either broker alike; the table says how many
# Every run also records the share of each CPU the hypervisor took during it ("steal" in
# /proc/stat, warren-perf's machine_steal): on a shared virtual machine that, more than either
# broker, is what a latency tail or a low single-core rate is made of. The full table shows it.
# Environment: CARGO_TARGET_DIR (default ./target), WARREN_PORT (5680), RABBITMQ_PORT (5673),
# RABBITMQ_LOCAL (path of rabbitmq-local.sh), BROKER_CPU (0), PERF_CPU (1).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
rabbit_local=${RABBITMQ_LOCAL:-$root/../shared/tools/rabbitmq-local.sh}
wport=${WARREN_PORT:-5680}
rport=${RABBITMQ_PORT:-5673}
bcpu=${BROKER_CPU:-0}
pcpu=${PERF_CPU:-1}
duration=10 runs=3 scenarios="1,2,3,4,5,6,7,8" backlog_n=1000000 warren_only=0 out="" baseline=""
baseline_perf="" max_steal=""

while [ $# -gt 0 ]; do
  case $1 in
    --quick) duration=3 ;;
    --full) backlog_n=10000000 ;;
    --runs) runs=$2; shift ;;
    --duration) duration=$2; shift ;;
    --scenarios) scenarios=$2; shift ;;
    --backlog-n) backlog_n=$2; shift ;;
    --warren-only) warren_only=1 ;;
    --baseline) baseline=$2; shift ;;
    --baseline-perf) baseline_perf=$2; shift ;;
    --max-steal) max_steal=$2; shift ;;
    --out) out=$2; shift ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "unknown flag $1" >&2; exit 2 ;;
  esac
  shift
done

tmp=$(mktemp -d /tmp/warren-compare.XXXXXX)
# Two brokers side by side (and RabbitMQ's own plugin) would fight over 15692.
export WARREN_PROMETHEUS_LISTEN=off
out=${out:-$tmp/results}
mkdir -p "$out"
rm -f "$out/repeated"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

echo "== building (release, CARGO_TARGET_DIR=$target)" >&2
(cd "$root" && CARGO_TARGET_DIR=$target cargo build --release -q -p warren -p warren-perf)
warren_bin=$target/release/warren
perf_bin=$target/release/warren-perf

wpid="" rpid="" rabbit_started=0
cleanup() {
  if [ -n "$wpid" ]; then kill "$wpid" 2>/dev/null || true; wait "$wpid" 2>/dev/null || true; fi
  if [ "$rabbit_started" = 1 ]; then "$rabbit_local" stop "$rport" >&2 || true; fi
  if [ -n "$baseline" ] && [ -n "$rpid" ]; then kill "$rpid" 2>/dev/null || true; wait "$rpid" 2>/dev/null || true; fi
  rm -rf "$tmp/warren-data" "$tmp/baseline-data"
}
trap cleanup EXIT INT TERM

wait_port() {
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "nothing listening on 127.0.0.1:$1" >&2; return 1
}

echo "== starting Warren on 127.0.0.1:$wport (CPU $bcpu)" >&2
taskset -c "$bcpu" "$warren_bin" --amqp-listen "127.0.0.1:$wport" --http-listen "127.0.0.1:$((wport + 10000))" \
  --data-dir "$tmp/warren-data" --log-level warn > "$tmp/warren.log" 2>&1 &
wpid=$!
wait_port "$wport"

brokers="warren"
second=rabbitmq second_label=RabbitMQ
if [ -n "$baseline" ]; then
  second=baseline second_label="baseline"
  echo "== starting the baseline Warren ($baseline) on 127.0.0.1:$rport (CPU $bcpu)" >&2
  taskset -c "$bcpu" "$baseline" --amqp-listen "127.0.0.1:$rport" --http-listen "127.0.0.1:$((rport + 10000))" \
    --data-dir "$tmp/baseline-data" --log-level warn > "$tmp/baseline.log" 2>&1 &
  rpid=$!
  wait_port "$rport"
  brokers="warren baseline"
elif [ "$warren_only" = 0 ]; then
  echo "== starting RabbitMQ on 127.0.0.1:$rport (CPU $bcpu)" >&2
  rabbit_started=1
  taskset -c "$bcpu" "$rabbit_local" start "$rport" >&2
  # The broker process is whatever listens on the AMQP port (beam.smp).
  rpid=$(ss -Hltnp "sport = :$rport" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2 || true)
  if [ -z "$rpid" ]; then echo "cannot find the process listening on 127.0.0.1:$rport" >&2; exit 1; fi
  taskset -a -c -p "$bcpu" "$rpid" > /dev/null
  brokers="warren rabbitmq"
fi

perf_of() { if [ "$1" = baseline ] && [ -n "$baseline_perf" ]; then echo "$baseline_perf"; else echo "$perf_bin"; fi; }
pid_of() { if [ "$1" = warren ]; then echo "$wpid"; else echo "$rpid"; fi; }
uri_of() { if [ "$1" = warren ]; then echo "amqp://guest:guest@127.0.0.1:$wport/%2f"; else echo "amqp://guest:guest@127.0.0.1:$rport/%2f"; fi; }
cpu_ticks() { awk '{ s = $0; sub(/.*\) /, "", s); split(s, f, " "); print f[12] + f[13] }' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
# A run's peak RSS is the kernel's high-water mark (VmHWM), reset before the run by writing 5 to
# /proc/PID/clear_refs, so nothing samples during the run: a sampling loop forks (awk, sleep)
# five times a second, and on a 2-core machine every fork lands on a measured CPU (it nearly
# doubled scenario 4's p99 at 100,000 msg/s). Where the reset is refused, the loop samples.
reset_peak() { { echo 5 > "/proc/$1/clear_refs"; } 2>/dev/null; }
peak_kb() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }
field() { grep -o "\"$2\":[^,}]*" "$1" | head -1 | cut -d: -f2; }

# Scenario table: id|label|warren-perf flags
scenario_flags() {
  local d=$duration
  case $1 in
    1) echo "--producers 1 --consumers 1 --size 16 --auto-ack --duration $d" ;;
    2) echo "--producers 1 --consumers 1 --size 16 --prefetch 1000 --multi-ack-every 100 --duration $d" ;;
    2b) echo "--producers 1 --consumers 1 --size 16 --prefetch 100 --multi-ack-every 10 --duration $d" ;;
    3) echo "--producers 1 --consumers 1 --size 1024 --persistent --durable --confirm 1000 --prefetch 200 --multi-ack-every 50 --queue-pattern perf-durable-%d --duration $d" ;;
    4a) echo "--producers 1 --consumers 1 --size 16 --rate 10000 --auto-ack --duration $d" ;;
    4b) echo "--producers 1 --consumers 1 --size 16 --rate 100000 --auto-ack --duration $d" ;;
    5) echo "--producers 1 --consumers 50 --queues 50 --exchange-type fanout --size 64 --auto-ack --duration $d" ;;
    6) echo "--producers 4 --consumers 10 --queues 10 --exchange-type topic --bindings 1000 --size 256 --auto-ack --duration $d" ;;
    7) echo "--producers 1000 --consumers 1000 --queues 1000 --rate 10 --size 16 --auto-ack --duration $d --drain-timeout 10" ;;
    8) echo "--producers 1 --consumers 1 --size 16 --confirm 1000 --backlog --pmessages $backlog_n --prefetch 1000 --multi-ack-every 100 --drain-timeout 20" ;;
  esac
}

# Before each run both brokers go idle: the other one may still be working after its own run
# (RabbitMQ freeing the backlog of scenario 4b's deleted queue, say), and on the broker CPU
# that work would count against this run. Idle: at most 2 ticks (20 ms) of CPU in 0.5 s;
# after 30 s the run starts anyway and says so.
broker_ticks() { local s=0 p; for p in "$wpid" ${rpid:-}; do s=$((s + $(cpu_ticks "$p"))); done; echo "$s"; }
settle() {
  local waited=0 t0 t1
  while :; do
    t0=$(broker_ticks); sleep 0.5; t1=$(broker_ticks)
    if [ $((t1 - t0)) -le 2 ]; then break; fi
    waited=$((waited + 1))
    if [ "$waited" -ge 60 ]; then
      echo "   (the brokers still used $((t1 - t0)) ticks in 0.5 s after 30 s; running anyway)" >&2
      break
    fi
  done
  if [ "$waited" -ge 2 ]; then echo "   (waited $((waited / 2)) s for both brokers to go idle)" >&2; fi
}

# One run: broker, scenario, run number → $out/<scenario>-<broker>-<n>.json (+ rss/cpu fields).
# With --max-steal, repeated while the hypervisor took more than that (each repeat noted in
# $out/repeated), up to 5 attempts.
run_one() {
  local broker=$1 sc=$2 n=$3 try=1 steal
  while :; do
    attempt_one "$broker" "$sc" "$n"
    if [ -z "$max_steal" ]; then return 0; fi
    steal=$(field "$out/$sc-$broker-$n.json" machine_steal_max)
    if awk -v s="${steal:-0}" -v m="$max_steal" 'BEGIN { exit !(s + 0 <= m + 0) }'; then return 0; fi
    if [ "$try" -ge 5 ]; then
      echo "   (kept after $try attempts: steal $steal > $max_steal)" >&2
      return 0
    fi
    echo "   (steal $steal > $max_steal: running it again)" >&2
    echo "$sc $broker $n $steal" >> "$out/repeated"
    try=$((try + 1))
  done
}

attempt_one() {
  local broker=$1 sc=$2 n=$3 pid uri f
  pid=$(pid_of "$broker"); uri=$(uri_of "$broker")
  f=$out/$sc-$broker-$n
  local c0 t0 peak=0 rss
  settle
  local sample=1
  if reset_peak "$pid"; then sample=0; fi
  c0=$(cpu_ticks "$pid"); t0=$(date +%s.%N)
  # shellcheck disable=SC2046
  taskset -c "$pcpu" timeout 1800 "$(perf_of "$broker")" --uri "$uri" --json $(scenario_flags "$sc") \
    > "$f.json" 2> "$f.log" &
  local ppid=$!
  if [ "$sample" = 0 ]; then
    wait "$ppid" || echo "   (warren-perf exited $? for $sc on $broker; see $f.log)" >&2
    peak=$(peak_kb "$pid" || echo 0)
  else
    while kill -0 "$ppid" 2>/dev/null; do
      rss=$(rss_kb "$pid" || echo 0); [ "${rss:-0}" -gt "$peak" ] && peak=$rss
      sleep 0.2
    done
    wait "$ppid" || echo "   (warren-perf exited $? for $sc on $broker; see $f.log)" >&2
  fi
  local c1 t1
  c1=$(cpu_ticks "$pid"); t1=$(date +%s.%N)
  awk -v c="$((c1 - c0))" -v t0="$t0" -v t1="$t1" -v p="$peak" \
    'BEGIN { printf "broker_cpu_util %.3f\nbroker_peak_rss_mb %.1f\n", c / 100 / (t1 - t0), p / 1024 }' > "$f.broker"
  printf '   %-3s %-8s run %d: consumed %s msg/s (%s while publishing), p99 %s us, lost %s, dup %s, broker cpu %s, tool cpu %s, steal %s\n' \
    "$sc" "$broker" "$n" "$(field "$f.json" consume_rate | cut -d. -f1)" \
    "$(field "$f.json" consume_rate_while_publishing | cut -d. -f1)" "$(field "$f.json" p99_us)" \
    "$(field "$f.json" lost)" "$(field "$f.json" duplicated)" "$(awk '/cpu/ {print $2}' "$f.broker")" \
    "$(field "$f.json" tool_cpu_utilisation)" "$(field "$f.json" machine_steal_max)" >&2
}

median() { sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# metric <scenario> <broker> <json-field or broker:field> → median over runs
metric() {
  local sc=$1 broker=$2 key=$3 i
  for i in $(seq "$runs"); do
    case $key in
      broker:*) awk -v k="${key#broker:}" '$1 == k { print $2 }' "$out/$sc-$broker-$i.broker" ;;
      *) field "$out/$sc-$broker-$i.json" "$key" ;;
    esac
  done | grep -v '^null$' | median
}

declare -a rows=()
row() { # scenario key label unit
  local sc=$1 key=$2 label=$3 w r ratio
  w=$(metric "$sc" warren "$key")
  if [ "$brokers" != warren ]; then r=$(metric "$sc" "$second" "$key"); else r=nan; fi
  ratio=$(awk -v w="$w" -v r="$r" 'BEGIN { if (r + 0 > 0 && w != "nan") printf "%.2f×", w / r; else print "–" }')
  rows+=("$(awk -v l="$label" -v w="$w" -v r="$r" -v x="$ratio" 'function f(v) { if (v == "nan") return "–"; if (v + 0 >= 1000) return sprintf("%.0f", v); return sprintf("%.3g", v) } BEGIN { printf "| %s | %s | %s | %s |", l, f(w), f(r), x }')")
}

selected() { case ",$scenarios," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
list=()
for s in 1 2 3 4 5 6 7 8; do
  if selected "$s"; then
    case $s in 2) list+=(2 2b) ;; 4) list+=(4a 4b) ;; *) list+=("$s") ;; esac
  fi
done

echo "== $runs runs × ${#list[@]} scenarios, ${duration}s each; raw results in $out" >&2
for sc in "${list[@]}"; do
  for i in $(seq "$runs"); do
    if [ $((i % 2)) = 1 ]; then order=$brokers; else order=$(echo "$brokers" | awk '{ for (i = NF; i > 0; i--) printf "%s ", $i }'); fi
    for b in $order; do run_one "$b" "$sc" "$i"; done
  done
done

for sc in "${list[@]}"; do
  case $sc in
    1) row 1 consume_rate "1: 1→1, 16 B, transient, auto-ack — consumed msg/s"
       row 1 broker:broker_cpu_util "1: broker CPU (cores)"
       row 1 tool_cpu_utilisation "1: warren-perf CPU (cores)"
       row 1 tool_cpu_ns_per_msg "1: warren-perf CPU ns per msg (pub+cons)" ;;
    2) row 2 consume_rate "2: manual ack, prefetch 1000, multi-ack 100 — consumed msg/s"
       row 2 consume_rate_while_publishing "2: consumed msg/s while publishing"
       row 2 publish_rate "2: published msg/s"
       row 2 p99_us "2: end-to-end p99 µs"
       row 2 broker:broker_cpu_util "2: broker CPU (cores)"
       row 2 tool_cpu_utilisation "2: warren-perf CPU (cores)" ;;
    2b) row 2b consume_rate_while_publishing "2b: manual ack, prefetch 100, multi-ack 10 — consumed msg/s while publishing"
        row 2b publish_rate "2b: published msg/s"
        row 2b p50_us "2b: end-to-end p50 µs"
        row 2b p99_us "2b: end-to-end p99 µs" ;;
    3) row 3 consume_rate "3: persistent 1 KiB, durable, confirms 1000, prefetch 200 — consumed msg/s (Warren fsyncs before confirming; RabbitMQ classic queues do not)"
       row 3 consume_rate_while_publishing "3: consumed msg/s while publishing"
       row 3 confirm_rate "3: confirmed msg/s"
       row 3 p50_us "3: end-to-end p50 µs"
       row 3 p99_us "3: end-to-end p99 µs" ;;
    4a) row 4a p50_us "4: 10,000 msg/s, 16 B — p50 µs"
        row 4a p99_us "4: 10,000 msg/s — p99 µs"
        row 4a p999_us "4: 10,000 msg/s — p99.9 µs" ;;
    4b) row 4b consume_rate "4: 100,000 msg/s target — consumed msg/s"
        row 4b p50_us "4: 100,000 msg/s, 16 B — p50 µs"
        row 4b p99_us "4: 100,000 msg/s — p99 µs"
        row 4b p999_us "4: 100,000 msg/s — p99.9 µs" ;;
    5) row 5 consume_rate "5: fanout to 50 queues, 64 B — deliveries/s"
       row 5 publish_rate "5: published msg/s"
       row 5 p50_us "5: end-to-end p50 µs"
       row 5 p99_us "5: end-to-end p99 µs" ;;
    6) row 6 consume_rate "6: topic, 4 producers, 1000 bindings / 10 queues, 256 B — deliveries/s" ;;
    7) row 7 broker:broker_peak_rss_mb "7: 1000 producers × 10 msg/s + 1000 consumers — broker peak RSS MB"
       row 7 broker:broker_cpu_util "7: broker CPU (cores)"
       row 7 consume_rate "7: consumed msg/s" ;;
    8) row 8 publish_rate "8: backlog $backlog_n × 16 B, confirms — publish msg/s"
       row 8 consume_rate "8: drain msg/s"
       row 8 broker:broker_peak_rss_mb "8: broker peak RSS MB" ;;
  esac
done

# The same runs, every figure of every scenario for each broker (medians): the issue-17 report.
full_row() { # scenario broker
  local sc=$1 b=$2 k v line="| $1 | $2"
  for k in publish_rate consume_rate consume_rate_while_publishing p50_us p99_us p999_us broker:broker_peak_rss_mb broker:broker_cpu_util machine_steal_max; do
    v=$(metric "$sc" "$b" "$k")
    line+=" | $(awk -v v="$v" 'BEGIN { if (v == "nan" || v == "") print "–"; else if (v + 0 >= 1000) printf "%.0f", v; else printf "%.3g", v }')"
  done
  echo "$line |"
}
{
  echo "| scenario | broker | published msg/s | consumed msg/s | consumed while publishing | p50 µs | p99 µs | p99.9 µs | peak RSS MB | broker CPU | steal |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  for sc in "${list[@]}"; do
    for b in $brokers; do full_row "$sc" "$b"; done
  done
} > "$out/table-full.md"

lost=$(cat "$out"/*.json 2>/dev/null | grep -o '"lost":[0-9]*' | cut -d: -f2 | awk '{ s += $1 } END { print s + 0 }')
dups=$(cat "$out"/*.json 2>/dev/null | grep -o '"duplicated":[0-9]*' | cut -d: -f2 | awk '{ s += $1 } END { print s + 0 }')
{
  echo "| scenario (median of $runs runs, ${duration}s each) | Warren | $second_label | Warren / $second_label |"
  echo "|---|---:|---:|---:|"
  printf '%s\n' "${rows[@]}"
  echo
  echo "lost messages over all runs: $lost; duplicated: $dups"
  if [ -n "$max_steal" ]; then
    echo "runs repeated because the hypervisor took more than $max_steal of a CPU: $(cat "$out/repeated" 2>/dev/null | wc -l)" \
      "($(for b in $brokers; do printf '%s %s ' "$b" "$(awk -v b="$b" '$2 == b' "$out/repeated" 2>/dev/null | wc -l)"; done | sed 's/ $//'))"
  fi
} | tee "$out/table.md"
echo
cat "$out/table-full.md"
