#!/usr/bin/env bash
# bench/instructions.sh: what each publisher's own code costs per request, in CPU
# instructions, counted by valgrind's callgrind. Unlike req/s, the count does not depend on
# what else the machine runs, so two runs on a busy machine agree to within a few percent.
#
#   bench/instructions.sh                       # the local RabbitMQ; REQUESTS=2000 each
#
# For the producer, bare-publisher and minimal-publisher in turn: start it under callgrind,
# warm it up (WARMUP_REQUESTS), zero the counters, send REQUESTS posts of README's body at
# 8 connections, dump the counters, and print instructions per request, with the twelve
# functions whose own code (exclusive) costs the most. The broker's own work is not counted here: see
# bench/run.sh's broker CPU column. Writes the table to bench/results/<time>-instructions.md.
set -euo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
REQUESTS=${REQUESTS:-2000}
WARMUP_REQUESTS=${WARMUP_REQUESTS:-200}
BODY='{"customer_id":"C-1001","new_address":{"line1":"1 Fishergate","line2":"Flat 2","town":"Preston","postcode":"PR1 2HE","country":"GB"},"effective_date":"2026-12-01"}'
RUN_ID="bench.instructions.$(date -u +%Y%m%dT%H%M%S).$$"
export AMQP_ADDR=${AMQP_ADDR:-amqp://guest:guest@127.0.0.1:5672/%2f}
export EXCHANGE="$RUN_ID" QUEUE_TYPE=${QUEUE_TYPE:-classic} RUST_LOG=warn QUEUE_MAX_LENGTH=10000000
WORK=$(mktemp -d "${TMPDIR:-/tmp}/instructions.XXXXXX")
RABBITMQCTL=${RABBITMQCTL:-rabbitmqctl}
# shellcheck source=bench/lib.sh
source bench/lib.sh
PID=""

cleanup() {
    local status=$?
    trap - EXIT
    [[ -z $PID ]] || { kill -TERM "$PID" 2>/dev/null; wait "$PID" 2>/dev/null || true; }
    "$BIN/bench-queue" delete --queues "$RUN_ID.load,$RUN_ID.minimal,$EXCHANGE.unroutable" \
        --exchanges "$EXCHANGE,$EXCHANGE.unroutable" >/dev/null 2>&1 || log "could not delete the run's queues"
    rm -rf -- "$WORK"
    exit "$status"
}
trap cleanup EXIT

for tool in valgrind callgrind_control callgrind_annotate; do
    command -v "$tool" >/dev/null || { log "$tool is missing (apt install valgrind)"; exit 1; }
done
build_and_install

# measure NAME QUEUE BINARY: prints "instructions_per_request" and keeps the dump.
measure() {
    local name=$1 queue=$2 binary=$3 port url dump
    port=$(free_port)
    url="http://127.0.0.1:$port/api/v1/address-changes"
    log "$name under callgrind"
    env HTTP_ADDR="127.0.0.1:$port" QUEUE="$queue" CONNECTION_NAME="$RUN_ID.$name" \
        valgrind --tool=callgrind --callgrind-out-file="$WORK/$name.%p.out" "$BIN/$binary" \
        >"$WORK/$name.log" 2>&1 &
    PID=$!
    for _ in $(seq 1 240); do
        curl -fs -o /dev/null "http://127.0.0.1:$port/readyz" && break
        kill -0 "$PID" 2>/dev/null || { log "$name exited: $(tail -n 5 "$WORK/$name.log")"; exit 1; }
        sleep 0.5
    done
    oha -n "$WARMUP_REQUESTS" -c 8 --no-tui --output-format quiet -m POST \
        -H 'content-type: application/json' -d "$BODY" "$url"
    callgrind_control --zero "$PID" >/dev/null 2>&1
    oha -n "$REQUESTS" -c 8 --no-tui --output-format json -m POST \
        -H 'content-type: application/json' -d "$BODY" "$url" >"$WORK/$name.json"
    callgrind_control --dump="$name" "$PID" >/dev/null 2>&1
    kill -TERM "$PID"
    wait "$PID" 2>/dev/null || true
    PID=""
    python3 - "$WORK/$name.json" "$REQUESTS" <<'PY'
import json, sys
codes = json.load(open(sys.argv[1])).get("statusCodeDistribution", {})
if codes.get("202", 0) != int(sys.argv[2]):
    sys.exit(f"not every request was accepted: {codes}")
PY
    # The dump of the measured part (the counters were zeroed just before it).
    dump=$(grep -l "^desc: Trigger: dump $name\$" "$WORK/$name".*.out.*)
    awk -v n="$REQUESTS" '/^summary:/ { printf "%.0f\n", $2 / n; exit }' "$dump"
    callgrind_top "$dump" 12 >"$WORK/$name.top"
}

rows=()
for run in "producer $RUN_ID.load producer" "bare-publisher $RUN_ID.load bare-publisher" \
    "minimal-publisher $RUN_ID.minimal minimal-publisher"; do
    read -r name queue binary <<<"$run"
    per_request=$(measure "$name" "$queue" "$binary")
    log "  $name: $per_request instructions a request"
    rows+=("| $name | $per_request |")
done

RESULTS="bench/results/$(date -u +%Y-%m-%dT%H%M%SZ)-instructions.md"
{
    printf '## Instructions per request %s\n\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
    printf -- '- Machine: %s; %s; commit %s.\n' "$(awk -F': ' '/^model name/{ print $2; exit }' /proc/cpuinfo)" \
        "$(valgrind --version)" "$(git rev-parse --short HEAD)"
    printf -- '- %s requests at 8 connections after %s to warm up; the publisher process only (the broker is not counted).\n\n' \
        "$REQUESTS" "$WARMUP_REQUESTS"
    printf '| publisher | instructions a request |\n| --- | ---: |\n'
    printf '%s\n' "${rows[@]}"
    for name in producer bare-publisher minimal-publisher; do
        printf '\n%s, the costliest functions (their own code, measured part):\n\n%s\n%s\n%s\n' \
            "$name" '```' "$(cat "$WORK/$name.top")" '```'
    done
} | tee "$RESULTS"
log "written to $RESULTS"
