#!/usr/bin/env bash
# bench/price.sh: what each item of the message contract costs the broker (issue 15). Runs
# bench/src/bin/price-contract.rs against the broker of AMQP_ADDR and writes its table,
# with the machine and the broker, to bench/results/<UTC time>-price-<queue type>.md.
#
# Settings: BENCH_PRICE_MESSAGES (30000 a row and round), BENCH_ROUNDS (3), QUEUE_TYPE
# (classic), AMQP_ADDR (guest@127.0.0.1:5672), RABBITMQCTL (rabbitmqctl). On a RabbitMQ
# before 3.12 the run's classic queues are lazy, as in bench/run.sh. On the RabbitMQ 4 node:
#   eval "$(e2e/scripts/rabbitmq4.sh env)"; export RABBITMQCTL="$TEST_RABBITMQCTL"
#   QUEUE_TYPE=classic bench/price.sh; QUEUE_TYPE=quorum bench/price.sh
set -euo pipefail
shopt -s inherit_errexit

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

export AMQP_ADDR=${AMQP_ADDR:-amqp://guest:guest@127.0.0.1:5672/%2f}
export QUEUE_TYPE=${QUEUE_TYPE:-classic}
RABBITMQCTL=${RABBITMQCTL:-rabbitmqctl}
PREFIX="bench.price.$(date -u +%Y%m%dT%H%M%S).$$"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/price.XXXXXX")
# shellcheck source=bench/lib.sh
source bench/lib.sh

cleanup() {
    local status=$?
    trap - EXIT
    clear_lazy_policy
    rm -rf -- "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

build_and_install
MACHINE=$(describe_machine)
BROKER_PID=$(broker_pid)
[[ -n $BROKER_PID ]] || { log "cannot find the broker's process (ss -ltnp, as root)"; exit 1; }
[[ $QUEUE_TYPE != classic ]] || lazy_queues_before_3_12 "$PREFIX"
log "machine: $MACHINE; QUEUE_TYPE=$QUEUE_TYPE, classic queues: $QUEUE_MODE"

RESULTS="bench/results/$(date -u +%Y-%m-%dT%H%M%SZ)-price-$QUEUE_TYPE.md"
"$BIN/price-contract" --broker-pid "$BROKER_PID" --clock-ticks "$TICKS_PER_SEC" --prefix "$PREFIX" \
    --messages "${BENCH_PRICE_MESSAGES:-30000}" --rounds "${BENCH_ROUNDS:-3}" >"$WORK/table"
{
    printf '## What the contract costs the broker, %s\n\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
    printf -- '- Machine: %s.\n- Code: %s.\n' "$MACHINE" "$(describe_tree)"
    printf -- '- %s messages a row and round (the producer'"'"'s bodies), 64 unconfirmed on one confirm channel, medians of %s rounds; QUEUE_TYPE=%s, classic queues: %s. Broker CPU: its process'"'"'s user + system time over the row, per message.\n\n' \
        "${BENCH_PRICE_MESSAGES:-30000}" "${BENCH_ROUNDS:-3}" "$QUEUE_TYPE" "$QUEUE_MODE"
    cat "$WORK/table"
} | tee "$RESULTS"
log "written to $RESULTS"
