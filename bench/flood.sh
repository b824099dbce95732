#!/usr/bin/env bash
# bench/flood.sh: issue 15's flood. BENCH_FLOOD_POSTS (1,000,000) posts to the producer with
# no consumer, at BENCH_CONNECTIONS (64) connections, so the queue only grows. Throughout,
# the producer's resident memory is sampled every second: it must stay flat, because the
# producer keeps nothing per message once the broker has confirmed it. At the end, the
# broker's memory and the disk its data directory took, and the queue's depth, which must
# equal the posts answered 202.
#
# The queue and exchanges are the run's own (bench.flood.<time>.<pid>...), deleted at the
# end; the producer is stopped by PID. Results go to bench/results/<UTC time>-flood.md.
#
# Settings: BENCH_FLOOD_POSTS, BENCH_CONNECTIONS, QUEUE_TYPE (quorum: the services'
# default), AMQP_ADDR (guest@127.0.0.1:5672), RABBITMQCTL (rabbitmqctl). On the RabbitMQ 4
# node of e2e/scripts/rabbitmq4.sh:
#   eval "$(e2e/scripts/rabbitmq4.sh env)"; export RABBITMQCTL="$TEST_RABBITMQCTL"
#   QUEUE_TYPE=quorum bench/flood.sh; QUEUE_TYPE=classic bench/flood.sh
set -euo pipefail
shopt -s inherit_errexit

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

POSTS=${BENCH_FLOOD_POSTS:-1000000}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
BODY='{"customer_id":"C-1001","new_address":{"line1":"1 Fishergate","line2":"Flat 2","town":"Preston","postcode":"PR1 2HE","country":"GB"},"effective_date":"2026-12-01"}'
RUN_ID="bench.flood.$(date -u +%Y%m%dT%H%M%S).$$"
export AMQP_ADDR=${AMQP_ADDR:-amqp://guest:guest@127.0.0.1:5672/%2f}
RABBITMQCTL=${RABBITMQCTL:-rabbitmqctl}
export EXCHANGE="$RUN_ID" QUEUE="$RUN_ID.queue"
export QUEUE_TYPE=${QUEUE_TYPE:-quorum}
# Room for every post: the flood measures a growing queue, not the bound refusing.
export QUEUE_MAX_LENGTH=$((POSTS + 1000))
export RUST_LOG=warn
WORK=$(mktemp -d "${TMPDIR:-/tmp}/flood.XXXXXX")
# shellcheck source=bench/lib.sh
source bench/lib.sh

cleanup() {
    local status=$?
    trap - EXIT
    stop_all
    if [[ -x "$BIN/bench-queue" ]]; then
        "$BIN/bench-queue" delete --queues "$QUEUE,$EXCHANGE.unroutable" --exchanges "$EXCHANGE,$EXCHANGE.unroutable" \
            >"$WORK/cleanup.log" 2>&1 || log "could not delete the run's queues: $(tail -n 3 "$WORK/cleanup.log")"
    fi
    rm -rf -- "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

build_and_install
MACHINE=$(describe_machine)
log "machine: $MACHINE"
BROKER_PID=$(broker_pid)
[[ -n $BROKER_PID ]] || { log "cannot find the broker's process (ss -ltnp, as root)"; exit 1; }

# broker_figures: "memory_bytes disk_free_bytes data_dir_bytes" (the data directory as the
# broker's own process sees it, so a node in a chroot is measured where it writes).
broker_figures() {
    $RABBITMQCTL status --formatter json 2>/dev/null | python3 -c '
import json, os, subprocess, sys
status = json.load(sys.stdin)
data = "/proc/" + sys.argv[1] + "/root" + status["data_directory"]
size = subprocess.run(["du", "-sb", data], capture_output=True, text=True).stdout.split()[0]
print(status["memory"]["total"]["rss"], status["disk_free"], size)' "$BROKER_PID"
}

port=$(free_port)
start producer HTTP_ADDR="127.0.0.1:$port" CONNECTION_NAME="$RUN_ID.producer" "$BIN/producer"
wait_ready producer "$port"
read -r broker_mem0 disk_free0 data0 < <(broker_figures)
log "flood: $POSTS posts at $CONNECTIONS connections, QUEUE_TYPE=$QUEUE_TYPE, no consumer"

# One sample a second: seconds since the start, the producer's RSS, the broker's RSS (KiB).
(
    started=$SECONDS
    while kill -0 "${RUNNING[producer]}" 2>/dev/null; do
        printf '%d %d %d\n' $((SECONDS - started)) "$(process_rss_kib "${RUNNING[producer]}")" "$(process_rss_kib "$BROKER_PID")"
        sleep 1
    done
) >"$WORK/samples" &
RUNNING[sampler]=$!

oha -n "$POSTS" -c "$CONNECTIONS" --no-tui --output-format json -m POST \
    -H 'content-type: application/json' -d "$BODY" -o "$WORK/oha.json" \
    "http://127.0.0.1:$port/api/v1/address-changes"
sleep 2 # two more samples after the last request
stop sampler
depth=$("$BIN/bench-queue" depth)
read -r broker_mem1 disk_free1 data1 < <(broker_figures)
stop producer

RESULTS="bench/results/$(date -u +%Y-%m-%dT%H%M%SZ)-flood.md"
python3 - "$WORK/oha.json" "$WORK/samples" "$depth" "$broker_mem0" "$broker_mem1" "$disk_free0" "$disk_free1" \
    "$data0" "$data1" "$MACHINE" "$QUEUE_TYPE" "$CONNECTIONS" "$(describe_tree)" <<'PY' | tee "$RESULTS"
import json, sys
(report, samples, depth, mem0, mem1, free0, free1, data0, data1, machine, queue_type,
 connections, tree) = sys.argv[1:]
report = json.load(open(report))
codes = report.get("statusCodeDistribution", {})
accepted = codes.get("202", 0)
rows = [tuple(map(int, line.split())) for line in open(samples) if line.strip()]
mib = lambda kib: kib / 1024
producer = [r[1] for r in rows if r[1] > 0]
tenth = producer[len(producer) // 10] if producer else 0
print(f"## Flood {report['summary']['total']:.0f} s: {sum(codes.values()):,} posts, no consumer\n")
print(f"- Machine: {machine}.\n- Code: {tree}.\n- QUEUE_TYPE={queue_type}, {connections} connections (oha), the README's request body.\n")
print("| figure | value |\n| --- | ---: |")
print(f"| answered 202 | {accepted:,} |")
print(f"| other answers | {sum(codes.values()) - accepted:,} {dict((k, v) for k, v in codes.items() if k != '202') or ''} |")
print(f"| errors | {sum(report.get('errorDistribution', {}).values()):,} |")
print(f"| queue depth at the end | {int(depth):,} |")
print(f"| rate | {report['summary']['requestsPerSec']:,.0f} req/s |")
print(f"| p50 / p99 | {report['latencyPercentiles']['p50'] * 1000:.1f} / {report['latencyPercentiles']['p99'] * 1000:.1f} ms |")
print(f"| producer RSS: at 10% of the run / max / at the end | {mib(tenth):.1f} / {mib(max(producer, default=0)):.1f} / {mib(producer[-1] if producer else 0):.1f} MiB |")
print(f"| broker RSS: before / after | {int(mem0) / 2**20:,.0f} / {int(mem1) / 2**20:,.0f} MiB |")
print(f"| broker data directory grew by | {(int(data1) - int(data0)) / 2**20:,.0f} MiB ({(int(data1) - int(data0)) / max(int(depth), 1):,.0f} bytes a message) |")
print(f"| disk free: before / after | {int(free0) / 2**30:,.1f} / {int(free1) / 2**30:,.1f} GiB |")
print("\nProducer and broker RSS (MiB), one sample in ten seconds:\n")
print("| s | producer | broker |\n| ---: | ---: | ---: |")
for r in rows[::10]:
    print(f"| {r[0]} | {mib(r[1]):.1f} | {mib(r[2]):,.0f} |")
PY
log "written to $RESULTS"
