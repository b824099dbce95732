#!/usr/bin/env bash
# bench/consumer-instructions.sh: what the consumer's own code costs per message while it
# drains a backlog, in CPU instructions, counted by valgrind's callgrind. Unlike msg/s, the
# count does not depend on what else the machine runs.
#
#   bench/consumer-instructions.sh                 # SQLite; MESSAGES=4000
#   STORE=postgres bench/consumer-instructions.sh  # a database of its own on POSTGRES_ADMIN_URL
#
# Starts the consumer under callgrind on a queue of its own, lets it apply WARMUP_MESSAGES,
# zeroes the counters, fills MESSAGES events with bench-queue (natively, far faster than the
# consumer drains them under callgrind, so it works through a backlog in full batches),
# waits until the store holds them all, dumps the counters, and prints instructions per
# message (the whole consumer process, every thread; the broker and the database server
# are not counted) with the functions whose own code costs the most. Writes the same to
# bench/results/<time>-consumer-instructions.md. The exchange, queues and database are
# deleted at the end; the consumer is stopped by PID. KEEP_DUMP=FILE keeps the callgrind
# dump of the measured part there, for callgrind_annotate (--tree=caller shows who calls a
# costly function).
set -euo pipefail
shopt -s inherit_errexit

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
MESSAGES=${MESSAGES:-4000}
WARMUP_MESSAGES=${WARMUP_MESSAGES:-200}
TOP=${TOP:-20}
STORE=${STORE:-sqlite}
RUN_ID="bench.consumer-instructions.$(date -u +%Y%m%dT%H%M%S).$$"
export AMQP_ADDR=${AMQP_ADDR:-amqp://guest:guest@127.0.0.1:5672/%2f}
export EXCHANGE="$RUN_ID" QUEUE="$RUN_ID.drain" QUEUE_TYPE=${QUEUE_TYPE:-classic} RUST_LOG=warn
export PREFETCH=${PREFETCH:-32} RETRY_DELAYS_MS=1000,5000,30000,120000
WORK=$(mktemp -d "${TMPDIR:-/tmp}/consumer-instructions.XXXXXX")
RABBITMQCTL=${RABBITMQCTL:-rabbitmqctl}
POSTGRES_ADMIN_URL=${POSTGRES_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
POSTGRES_DB=""
# shellcheck source=bench/lib.sh
source bench/lib.sh
PID=""

cleanup() {
    local status=$?
    trap - EXIT
    [[ -z $PID ]] || { kill -TERM "$PID" 2>/dev/null; wait "$PID" 2>/dev/null || true; }
    if [[ -x "$BIN/bench-queue" ]]; then
        "$BIN/bench-queue" delete --queues "$QUEUE,$(consumer_side_queues "$QUEUE"),$EXCHANGE.unroutable" \
            --exchanges "$EXCHANGE,$EXCHANGE.unroutable" >/dev/null 2>&1 || log "could not delete the run's queues"
    fi
    if [[ -n $POSTGRES_DB ]]; then
        psql -q "$POSTGRES_ADMIN_URL" -c "DROP DATABASE IF EXISTS \"$POSTGRES_DB\"" >/dev/null 2>&1 ||
            log "could not drop the database $POSTGRES_DB"
    fi
    rm -rf -- "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for tool in valgrind callgrind_control callgrind_annotate; do
    command -v "$tool" >/dev/null || { log "$tool is missing (apt install valgrind)"; exit 1; }
done
case $STORE in
    sqlite) ;;
    postgres) POSTGRES_DB="bench_${RUN_ID//[^a-z0-9]/_}" ;;
    *) log "STORE is sqlite or postgres, not $STORE"; exit 1 ;;
esac
build_release
DATABASE_URL=$(fresh_store "$STORE")

# wait_applied COUNT: until the store holds COUNT events (a deadline, not a pause).
wait_applied() {
    local want=$1 applied=0 waited
    for ((waited = 0; waited < 1200; waited++)); do
        applied=$(applied_in "$DATABASE_URL" 2>/dev/null || echo 0)
        ((applied >= want)) && return 0
        kill -0 "$PID" 2>/dev/null || { log "the consumer exited: $(tail -n 5 "$WORK/consumer.log")"; exit 1; }
        sleep 0.5
    done
    log "the store holds $applied events, not $want, after 10 minutes"
    exit 1
}

fill() {
    "$BIN/bench-queue" fill --count "$1" >"$WORK/fill.out"
}

port=$(free_port)
log "consumer ($STORE) under callgrind, queue $QUEUE"
# The queue exists (and takes the warm-up) before the consumer subscribes to it.
fill "$WARMUP_MESSAGES"
env HTTP_ADDR="127.0.0.1:$port" CONNECTION_NAME="$RUN_ID.consumer" DATABASE_URL="$DATABASE_URL" \
    valgrind --tool=callgrind --callgrind-out-file="$WORK/consumer.%p.out" "$BIN/consumer" \
    >"$WORK/consumer.log" 2>&1 &
PID=$!
wait_applied "$WARMUP_MESSAGES"
callgrind_control --zero "$PID" >/dev/null 2>&1
log "  warmed up on $WARMUP_MESSAGES messages; draining $MESSAGES"
fill "$MESSAGES"
wait_applied $((WARMUP_MESSAGES + MESSAGES))
callgrind_control --dump=drain "$PID" >/dev/null 2>&1
kill -TERM "$PID"
wait "$PID" 2>/dev/null || true
PID=""
dump=$(grep -l '^desc: Trigger: dump drain$' "$WORK"/consumer.*.out.*)
[[ -z ${KEEP_DUMP:-} ]] || cp -- "$dump" "$KEEP_DUMP"
per_message=$(awk -v n="$MESSAGES" '/^summary:/ { printf "%.0f\n", $2 / n; exit }' "$dump")
log "  $per_message instructions a message"

RESULTS="bench/results/$(date -u +%Y-%m-%dT%H%M%SZ)-consumer-instructions.md"
{
    printf '## Consumer instructions per message %s\n\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
    printf -- '- Machine: %s, %s cores; %s; %s; RabbitMQ %s, %s queue; %s store; PREFETCH %s.\n' \
        "$(awk -F': ' '/^model name/{ print $2; exit }' /proc/cpuinfo)" "$CORES" "$(valgrind --version)" \
        "$(describe_tree)" "$(rabbit_version)" "$QUEUE_TYPE" "$STORE" "$PREFETCH"
    printf -- '- %s messages drained from a backlog after %s to warm up; the consumer process only, every thread.\n\n' \
        "$MESSAGES" "$WARMUP_MESSAGES"
    printf '**%s instructions a message.**\n\n' "$per_message"
    # shellcheck disable=SC2016 # markdown's code fence, not a command substitution
    printf 'The costliest functions (their own code, measured part):\n\n```\n%s\n```\n' "$(callgrind_top "$dump" "$TOP")"
} | tee "$RESULTS"
log "written to $RESULTS"
