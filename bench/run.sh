#!/usr/bin/env bash
# bench/run.sh: issue 6's benchmark in one command, against the local RabbitMQ.
#
#   (a) producer: accepted req/s, p50, p99 at 64 concurrent clients (oha)
#   (b) bare-publisher (our contract, one shared confirm channel, no parsing): the same load
#   (c) minimal-publisher (parse, wrap with an id, default exchange, one confirm channel): the
#       simplest thing that does the job, and the ceiling a user would compare us with
#   (d) node-peer (the course's express + amqplib confirm channel), if Node.js is installed
#   (e) consumer: drain rate of a 20,000-message backlog (SQLite, PREFETCH or its default), and
#       again with PostgreSQL when BENCH_POSTGRES_URL (an admin URL) or a server on
#       127.0.0.1:5432 (postgres, trust) answers
#   (f) raw-drain (lapin consume-and-ack loop): the same backlog, the ceiling
#
# It prints a results table, the ratios against the targets (producer >= 0.9x minimal and
# bare, >= 2.5x Node, p99 <= 1.3x minimal's and <= 15 ms; drain >= 0.9x raw) and the
# machine (drain >= 0.7x raw with PostgreSQL), and writes the same as markdown to
# bench/results/<UTC date and time>.md. Every exchange and queue it uses is its own
# (bench.<time>.<pid>...) and is deleted at the end; the processes it starts are stopped by
# PID. The load tool, the broker and the service share the machine's cores: the table says
# how much CPU each took, and how much went to anything else (each measured phase first
# waits up to BENCH_QUIET_WAIT_SECS for the machine to be nearly idle).
#
# Settings: BENCH_DURATION_SECS (15), BENCH_WARMUP_SECS (3), BENCH_CONNECTIONS (64),
# BENCH_BACKLOG (20000), BENCH_ROUNDS (1; more alternate the order and report medians),
# BENCH_QUIET_CORES (0.3), BENCH_QUIET_WAIT_SECS (120), BENCH_LAZY_QUEUES (1; see below),
# QUEUE_TYPE (classic, as every earlier recorded run; quorum measures the services' default),
# AMQP_ADDR (guest@127.0.0.1:5672), RABBITMQCTL (rabbitmqctl: for its version),
# BENCH_PARTS (all; `drain` runs (e) and (f) only, `http` (a) to (d) only), PREFETCH (the
# consumer's default; raw-drain uses the same).
#
# On the RabbitMQ 4 node of e2e/scripts/rabbitmq4.sh, classic then quorum:
#   eval "$(e2e/scripts/rabbitmq4.sh env)"; export RABBITMQCTL="$TEST_RABBITMQCTL"
#   QUEUE_TYPE=classic bench/run.sh; QUEUE_TYPE=quorum bench/run.sh
set -euo pipefail
shopt -s inherit_errexit # a failed command inside $(...) stops the run too

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

DURATION=${BENCH_DURATION_SECS:-15}
WARMUP=${BENCH_WARMUP_SECS:-3}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
BACKLOG=${BENCH_BACKLOG:-20000}
ROUNDS=${BENCH_ROUNDS:-1}
QUIET_CORES=${BENCH_QUIET_CORES:-0.3}
QUIET_WAIT=${BENCH_QUIET_WAIT_SECS:-120}
PARTS=${BENCH_PARTS:-all}
[[ $PARTS =~ ^(all|drain|http)$ ]] || { echo "BENCH_PARTS must be all, drain or http" >&2; exit 2; }
runs_http() { [[ $PARTS != drain ]]; }
runs_drain() { [[ $PARTS != http ]]; }
BODY='{"customer_id":"C-1001","new_address":{"line1":"1 Fishergate","line2":"Flat 2","town":"Preston","postcode":"PR1 2HE","country":"GB"},"effective_date":"2026-12-01"}'

RUN_ID="bench.$(date -u +%Y%m%dT%H%M%S).$$"
# One exchange and queue for the HTTP runs, another pair for the drains, so that what the
# HTTP runs publish never lands in the backlog.
LOAD_QUEUE="$RUN_ID.load"
DRAIN_QUEUE="$RUN_ID.drain"
# The peers that do the job without our contract declare a plain durable queue each.
MINIMAL_QUEUE="$RUN_ID.minimal"
NODE_QUEUE="$RUN_ID.node"
export AMQP_ADDR=${AMQP_ADDR:-amqp://guest:guest@127.0.0.1:5672/%2f}
RABBITMQCTL=${RABBITMQCTL:-rabbitmqctl}
export EXCHANGE="$LOAD_QUEUE"
DRAIN_EXCHANGE="$DRAIN_QUEUE"
export RUST_LOG=warn
# The HTTP runs keep what they publish in the load queue (purged between runs): make room.
export QUEUE_MAX_LENGTH=10000000
# The run's queues, for every tool alike. Classic unless asked, so that runs stay comparable
# with the recorded ones; the services' own default is quorum (docs/quorum-queues.md).
export QUEUE_TYPE=${QUEUE_TYPE:-classic}
export RETRY_DELAYS_MS=1000,5000,30000,120000
WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench.XXXXXX")
# shellcheck source=bench/lib.sh
source bench/lib.sh

all_queues() {
    # Each exchange has an alternate exchange, and a queue, named <exchange>.unroutable.
    printf '%s' "$LOAD_QUEUE,$DRAIN_QUEUE,$(consumer_side_queues "$DRAIN_QUEUE"),$EXCHANGE.unroutable,$DRAIN_EXCHANGE.unroutable,$MINIMAL_QUEUE,$NODE_QUEUE"
}

cleanup() {
    local status=$?
    trap - EXIT
    stop_all
    if [[ -x "$BIN/bench-queue" ]]; then
        "$BIN/bench-queue" delete --queues "$(all_queues)" --exchanges "$EXCHANGE,$DRAIN_EXCHANGE,$EXCHANGE.unroutable,$DRAIN_EXCHANGE.unroutable" >"$WORK/cleanup.log" 2>&1 ||
            log "could not delete the run's exchange and queues: $(tail -n 3 "$WORK/cleanup.log")"
    fi
    if [[ -n ${POSTGRES_DB:-} ]]; then
        psql -q "$POSTGRES_ADMIN_URL" -c "DROP DATABASE IF EXISTS \"$POSTGRES_DB\"" >/dev/null 2>&1 ||
            log "could not drop the database $POSTGRES_DB"
    fi
    clear_lazy_policy
    rm -rf -- "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# cpu_begin PID: remembers the counters before a measured phase.
cpu_begin() {
    read -r CPU_BUSY0 CPU_TOTAL0 < <(machine_ticks)
    CPU_SERVICE0=$(process_ticks "$1")
    CPU_BROKER0=$(process_ticks "${BROKER_PID:-0}")
}

# cpu_end PID ONE_SHOT_CPU_SECS: prints "service broker one-shot other idle", in cores used
# over the phase; ONE_SHOT_CPU_SECS is the load tool's or raw-drain's CPU (/usr/bin/time),
# and "other" is everything else the machine ran meanwhile (helpers, other users' jobs).
cpu_end() {
    local busy total service broker
    read -r busy total < <(machine_ticks)
    service=$(process_ticks "$1")
    broker=$(process_ticks "${BROKER_PID:-0}")
    awk -v c="$CORES" -v hz="$TICKS_PER_SEC" -v b="$((busy - CPU_BUSY0))" -v t="$((total - CPU_TOTAL0))" \
        -v s="$((service - CPU_SERVICE0))" -v r="$((broker - CPU_BROKER0))" -v o="$2" \
        'BEGIN { secs = t / c / hz; busy = b / t * c; sv = s / t * c; br = r / t * c; os = o / secs
                 other = busy - sv - br - os; if (other < 0) other = 0 # counters are read a moment apart
                 printf "%.2f %.2f %.2f %.2f %.2f", sv, br, os, other, c - busy }'
}

# timed FILE COMMAND...: runs COMMAND, writing its CPU seconds (user + system) to FILE.
timed() {
    local file=$1
    shift
    if [[ -x /usr/bin/time ]]; then
        /usr/bin/time -f '%U %S' -o "$file.time" "$@"
        awk '{ printf "%.2f", $1 + $2 }' "$file.time" >"$file"
    else
        "$@"
        echo 0 >"$file"
    fi
}

# ---- preparation -------------------------------------------------------------------------
command -v python3 >/dev/null || { log "python3 is needed (free ports, oha's JSON)"; exit 1; }
build_and_install
BROKER_PID=$(broker_pid)
# A database of the run's own for the PostgreSQL drain, dropped at the end.
POSTGRES_ADMIN_URL=${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
POSTGRES_DB=""
if command -v psql >/dev/null && psql -qtA "$POSTGRES_ADMIN_URL" -c 'SELECT 1' >/dev/null 2>&1; then
    POSTGRES_DB="bench_${RUN_ID//[^a-z0-9]/_}"
else
    log "no PostgreSQL at $POSTGRES_ADMIN_URL (BENCH_POSTGRES_URL): the drain runs on SQLite only"
fi
NODE_PEER=""
if command -v node >/dev/null && command -v npm >/dev/null &&
    (cd bench/node-peer && npm ci --no-audit --no-fund --loglevel=error >/dev/null); then
    NODE_PEER="node $(node --version), express $(node -p 'require("./bench/node-peer/node_modules/express/package.json").version'), amqplib $(node -p 'require("./bench/node-peer/node_modules/amqplib/package.json").version')"
else
    log "Node.js and npm are missing (or npm ci failed): no node-peer run"
fi
if [[ ! -x /usr/bin/time ]]; then
    log "/usr/bin/time is missing (Debian package 'time'): the load tool's CPU will read 0"
fi

MACHINE=$(describe_machine)
log "machine: $MACHINE"
TREE=$(describe_tree)
log "code: $TREE"
log "run id: $RUN_ID (exchange and queues deleted at the end)"

# Lazy classic queues on a broker before 3.12, as from 3.12 on (lib.sh says why);
# BENCH_LAZY_QUEUES=0 measures the old default instead.
if [[ $(rabbit_version) == unknown ]]; then
    log "cannot tell the RabbitMQ version (rabbitmqctl needs root): measuring its default queue mode"
fi
[[ ${BENCH_LAZY_QUEUES:-1} != 1 ]] || lazy_queues_before_3_12 "$RUN_ID"
log "classic queues: $QUEUE_MODE"

# ---- the phases -------------------------------------------------------------------------
# Before each measured phase, wait (up to BENCH_QUIET_WAIT_SECS) until the machine is nearly
# idle, so that another job's build does not land in the middle of a measurement.
wait_quiet() {
    local waited=0 busy0 total0 busy total cores
    while :; do
        read -r busy0 total0 < <(machine_ticks)
        sleep 2
        read -r busy total < <(machine_ticks)
        cores=$(awk -v b="$((busy - busy0))" -v t="$((total - total0))" -v c="$CORES" 'BEGIN { printf "%.2f", b / t * c }')
        if awk -v x="$cores" -v max="$QUIET_CORES" 'BEGIN { exit !(x <= max) }'; then
            return 0
        fi
        if ((waited >= QUIET_WAIT)); then
            log "  the machine is still busy (${cores} cores in use by others); measuring anyway"
            return 0
        fi
        ((waited == 0)) && log "  waiting for the machine to go quiet (${cores} cores in use by others)"
        waited=$((waited + 2))
    done
}

# http_load NAME PORT QUEUE: warm-up, empty queue, measured run; prints "accepted/s p50_ms
# p99_ms not_202 service broker load_tool other idle".
http_load() {
    local name=$1 port=$2 queue=$3 url pid cpu
    url="http://127.0.0.1:$port/api/v1/address-changes"
    pid=${RUNNING[$name]}
    oha -z "${WARMUP}s" -c "$CONNECTIONS" --no-tui --output-format quiet -m POST \
        -H 'content-type: application/json' -d "$BODY" "$url"
    QUEUE="$queue" "$BIN/bench-queue" purge >/dev/null
    wait_quiet
    cpu_begin "$pid"
    timed "$WORK/$name.oha-cpu" oha -z "${DURATION}s" -c "$CONNECTIONS" --no-tui --output-format json \
        -m POST -H 'content-type: application/json' -d "$BODY" -o "$WORK/$name.json" "$url"
    cpu=$(cpu_end "$pid" "$(cat "$WORK/$name.oha-cpu")")
    python3 - "$WORK/$name.json" "$cpu" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
codes = report.get("statusCodeDistribution", {})
accepted = codes.get("202", 0)
# Requests still in flight when the time is up are cut off by oha, not refused.
errors = {k: v for k, v in report.get("errorDistribution", {}).items() if k != "aborted due to deadline"}
refused = sum(codes.values()) - accepted + sum(errors.values())
pct = report["latencyPercentiles"]
print(f'{accepted / report["summary"]["total"]:.0f} {pct["p50"] * 1000:.2f} {pct["p99"] * 1000:.2f} {refused} {sys.argv[2]}')
PY
}

# run_http NAME QUEUE COMMAND...: one measured HTTP run of a service publishing to QUEUE;
# appends its row.
run_http() {
    local name=$1 queue=$2 port result rate p50 p99 refused svc brk tool other idle
    shift 2
    port=$(free_port)
    log "$name: ${DURATION} s at $CONNECTIONS connections"
    start "$name" HTTP_ADDR="127.0.0.1:$port" QUEUE="$queue" CONNECTION_NAME="$RUN_ID.$name" "$@"
    wait_ready "$name" "$port"
    result=$(http_load "$name" "$port" "$queue")
    stop "$name"
    read -r rate p50 p99 refused svc brk tool other idle <<<"$result"
    log "  $rate req/s, p50 $p50 ms, p99 $p99 ms"
    ROWS+=("| $name | $rate req/s | $p50 | $p99 | $refused | $svc | $brk | $tool | $other | $idle |")
    case $name in
        producer) PRODUCER_RATES+=("$rate") PRODUCER_P99S+=("$p99") ;;
        bare-publisher) BARE_RATES+=("$rate") ;;
        minimal-publisher) MINIMAL_RATES+=("$rate") MINIMAL_P99S+=("$p99") ;;
        node-peer) NODE_RATES+=("$rate") ;;
    esac
}

# The four HTTP runs of a round, in the order given.
run_producer() { run_http producer "$LOAD_QUEUE" "$BIN/producer"; }
run_bare() { run_http bare-publisher "$LOAD_QUEUE" "$BIN/bare-publisher"; }
run_minimal() { run_http minimal-publisher "$MINIMAL_QUEUE" "$BIN/minimal-publisher"; }
run_node() { [[ -z $NODE_PEER ]] || run_http node-peer "$NODE_QUEUE" node bench/node-peer/server.js; }

fill() {
    EXCHANGE="$DRAIN_EXCHANGE" QUEUE="$DRAIN_QUEUE" "$BIN/bench-queue" fill --count "$BACKLOG" >"$WORK/fill.out"
    log "  backlog: $(cat "$WORK/fill.out")"
}

# Both drains are timed the same way, from outside: from the first message taken to the
# queue being empty.
watch_drain() {
    QUEUE="$DRAIN_QUEUE" "$BIN/bench-queue" watch --count "$BACKLOG" >"$WORK/watch.out" &
    RUNNING[watcher]=$!
}
# watch_end: waits for the watcher; then drained prints "rate seconds".
watch_end() {
    wait "${RUNNING[watcher]}"
    unset 'RUNNING[watcher]'
}
drained() { sed -n 's/.*secs=\([0-9.]*\) rate=\([0-9]*\).*/\2 \1/p' "$WORK/watch.out"; }

# all_applied DATABASE_URL: waits (with a deadline) until the store holds the whole backlog
# and prints the seconds that took. The watcher stops at an empty queue, which counts only
# the messages not yet delivered: up to PREFETCH may still be in the consumer's hands.
# Stopping it then would hand them to the next drain (its "applied" would count them).
all_applied() {
    local started=$EPOCHREALTIME applied=0 tries
    for ((tries = 0; tries < 600; tries++)); do
        applied=$(applied_in "$1")
        if ((applied >= BACKLOG)); then
            awk -v from="$started" -v to="$EPOCHREALTIME" 'BEGIN { printf "%.2f", to - from }'
            return 0
        fi
        sleep 0.1
    done
    log "  the store holds $applied of $BACKLOG events a minute after the queue was empty"
    printf 'over 60'
}

run_consumer_drain() { # sqlite|postgres
    local store=$1 port rate secs result svc brk other idle applied set_aside=0 queue database tail_secs
    log "consumer ($store): drain $BACKLOG messages"
    fill
    wait_quiet
    database=$(fresh_store "$store")
    watch_drain
    port=$(free_port)
    cpu_begin 0 # the consumer's whole life is the phase
    start consumer HTTP_ADDR="127.0.0.1:$port" EXCHANGE="$DRAIN_EXCHANGE" QUEUE="$DRAIN_QUEUE" CONNECTION_NAME="$RUN_ID.consumer" \
        DATABASE_URL="$database" "$BIN/consumer"
    watch_end
    read -r rate secs < <(drained)
    result=$(cpu_end "${RUNNING[consumer]}" 0)
    tail_secs=$(all_applied "$database")
    stop consumer
    read -r svc brk _ other idle <<<"$result"
    applied=$(applied_in "$database")
    for queue in $(all_queues | tr ',' ' '); do
        # The alternate exchange's queue is not where the consumer sets messages aside (and
        # as a quorum queue it always holds one placeholder: docs/quorum-queues.md).
        if [[ $queue == "$DRAIN_QUEUE".* && $queue != "$DRAIN_EXCHANGE.unroutable" ]]; then
            set_aside=$((set_aside + $(QUEUE="$queue" "$BIN/bench-queue" depth)))
        fi
    done
    log "  $rate msg/s; applied $applied events, $set_aside set aside (dead-letter or retry queues)"
    ROWS+=("| consumer drain, $store | $rate msg/s ($secs s, the last applied $tail_secs s later; $applied applied, $set_aside set aside) | | | | $svc | $brk | | $other | $idle |")
    if [[ $store == sqlite ]]; then
        CONSUMER_RATES+=("$rate")
    else
        POSTGRES_RATES+=("$rate")
    fi
    # An empty queue proves a drain only if every message was applied, none set aside.
    if ((applied != BACKLOG || set_aside != 0)); then
        DRAIN_COMPLETE=false
    fi
}

run_raw_drain() {
    local rate secs result svc brk other idle own
    log "raw-drain: drain $BACKLOG messages"
    fill
    wait_quiet
    watch_drain
    cpu_begin 0
    timed "$WORK/raw.cpu" env QUEUE="$DRAIN_QUEUE" "$BIN/raw-drain" --count "$BACKLOG" >"$WORK/raw.out"
    watch_end
    read -r rate secs < <(drained)
    result=$(cpu_end 0 "$(cat "$WORK/raw.cpu")")
    # The one-shot process of this phase is raw-drain itself: its CPU is the service's.
    read -r _ brk svc other idle <<<"$result"
    own=$(sed -n 's/.*rate=\([0-9]*\).*/\1/p' "$WORK/raw.out")
    log "  $rate msg/s (own timing $own msg/s)"
    ROWS+=("| raw-drain | $rate msg/s ($secs s; own timing $own msg/s) | | | | $svc | $brk | | $other | $idle |")
    RAW_RATES+=("$rate")
}

ROWS=() PRODUCER_RATES=() PRODUCER_P99S=() BARE_RATES=() MINIMAL_RATES=() MINIMAL_P99S=() NODE_RATES=()
CONSUMER_RATES=() POSTGRES_RATES=() RAW_RATES=()
run_postgres_drain() { [[ -z $POSTGRES_DB ]] || run_consumer_drain postgres; }
DRAIN_COMPLETE=true
for ((round = 1; round <= ROUNDS; round++)); do
    ((ROUNDS > 1)) && log "round $round of $ROUNDS"
    # Every other round runs the ceiling first, so a drift in the machine's speed evens out.
    if ((round % 2)); then
        if runs_http; then run_producer; run_bare; run_minimal; run_node; fi
        if runs_drain; then run_consumer_drain sqlite; run_postgres_drain; run_raw_drain; fi
    else
        if runs_http; then run_node; run_minimal; run_bare; run_producer; fi
        if runs_drain; then run_raw_drain; run_postgres_drain; run_consumer_drain sqlite; fi
    fi
done

# ---- results ------------------------------------------------------------------------------
median() { (($#)) || { echo 0; return; }; printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0) ? a / b : 0 }'; }
verdict() { awk -v v="$1" -v t="$2" -v op="$3" 'BEGIN { ok = (op == ">=") ? v >= t : v <= t; print ok ? "PASS" : "MISS" }'; }
# A ratio compares two runs of the same round, back to back, so that a drift in the
# machine's speed between rounds cancels out; the verdict takes the median of the rounds'.
per_round_ratios() { # per_round_ratios "OURS..." "CEILINGS...": one ratio a round
    local -a ours ceilings
    read -r -a ours <<<"$1"
    read -r -a ceilings <<<"$2"
    local i
    for i in "${!ours[@]}"; do
        ratio "${ours[$i]}" "${ceilings[$i]}"
        echo
    done
}
mapfile -t PRODUCER_RATIOS < <(per_round_ratios "${PRODUCER_RATES[*]}" "${BARE_RATES[*]}")
mapfile -t MINIMAL_RATIOS < <(per_round_ratios "${PRODUCER_RATES[*]}" "${MINIMAL_RATES[*]}")
mapfile -t P99_RATIOS < <(per_round_ratios "${PRODUCER_P99S[*]}" "${MINIMAL_P99S[*]}")
NODE_RATIOS=()
[[ -z $NODE_PEER ]] || mapfile -t NODE_RATIOS < <(per_round_ratios "${PRODUCER_RATES[*]}" "${NODE_RATES[*]}")
mapfile -t DRAIN_RATIOS < <(per_round_ratios "${CONSUMER_RATES[*]}" "${RAW_RATES[*]}")
POSTGRES_RATIOS=()
[[ -z $POSTGRES_DB ]] || mapfile -t POSTGRES_RATIOS < <(per_round_ratios "${POSTGRES_RATES[*]}" "${RAW_RATES[*]}")
PRODUCER_RATIO=$(printf '%.2f' "$(median "${PRODUCER_RATIOS[@]}")")
MINIMAL_RATIO=$(printf '%.2f' "$(median "${MINIMAL_RATIOS[@]}")")
P99_RATIO=$(printf '%.2f' "$(median "${P99_RATIOS[@]}")")
PRODUCER_P99=$(median "${PRODUCER_P99S[@]}")
DRAIN_RATIO=$(printf '%.2f' "$(median "${DRAIN_RATIOS[@]}")")
DRAIN_VERDICT=$(verdict "$DRAIN_RATIO" 0.9 '>=')
[[ $DRAIN_COMPLETE == true ]] || DRAIN_VERDICT="MISS (not every message was applied)"
of_rounds="" producer_rounds="" minimal_rounds="" p99_rounds="" node_rounds="" drain_rounds=""
if ((ROUNDS > 1)); then
    of_rounds=" (medians of $ROUNDS rounds)"
    producer_rounds=" (rounds: ${PRODUCER_RATIOS[*]})"
    minimal_rounds=" (rounds: ${MINIMAL_RATIOS[*]})"
    p99_rounds=" (rounds: ${P99_RATIOS[*]})"
    node_rounds=" (rounds: ${NODE_RATIOS[*]})"
    drain_rounds=" (rounds: ${DRAIN_RATIOS[*]})"
fi

RESULTS="bench/results/$(date -u +%Y-%m-%dT%H%M%SZ).md"
mkdir -p bench/results
{
    printf '## Benchmark %s\n\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
    printf -- '- Machine: %s.\n' "$MACHINE"
    printf -- '- Code: %s.\n' "$TREE"
    printf -- '- HTTP: %s s per run after a %s s warm-up, %s connections, oha, the request body of README. Drain: a %s-message backlog, PREFETCH %s (consumer and raw-drain alike), SQLite in a temporary directory (and PostgreSQL, a database of the run, when one answers). Services with RUST_LOG=warn, otherwise their defaults. QUEUE_TYPE=%s; classic queues: %s.\n' \
        "$DURATION" "$WARMUP" "$CONNECTIONS" "$BACKLOG" "${PREFETCH:-128}" "$QUEUE_TYPE" "$QUEUE_MODE"
    printf -- '- Peers: minimal-publisher and node-peer (%s) publish to a durable queue of their own through the default exchange; bare-publisher and the producer to the topic exchange with its alternate exchange, into a queue with x-max-length.\n' "${NODE_PEER:-not run}"
    printf -- '- CPU columns: cores used during the measured phase, out of %s shared by the load tool, the broker and the service; "other" is everything else the machine ran meanwhile.\n\n' "$CORES"
    printf '| run | rate | p50 ms | p99 ms | not 202 | service CPU | broker CPU | load tool CPU | other CPU | idle |\n'
    printf '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n'
    printf '%s\n' "${ROWS[@]}"
    printf '\n| target%s | measured | result |\n| --- | --- | --- |\n' "$of_rounds"
    if runs_http; then
    printf '| producer >= 0.9x minimal-publisher | %sx%s | %s |\n' "$MINIMAL_RATIO" "$minimal_rounds" "$(verdict "$MINIMAL_RATIO" 0.9 '>=')"
    printf '| producer p99 <= 1.3x minimal-publisher p99 | %sx%s | %s |\n' "$P99_RATIO" "$p99_rounds" "$(verdict "$P99_RATIO" 1.3 '<=')"
    fi
    if runs_http && [[ -n $NODE_PEER ]]; then
        NODE_RATIO=$(printf '%.2f' "$(median "${NODE_RATIOS[@]}")")
        printf '| producer >= 2.5x node-peer | %sx%s | %s |\n' "$NODE_RATIO" "$node_rounds" "$(verdict "$NODE_RATIO" 2.5 '>=')"
    fi
    if runs_http; then
    printf '| producer >= 0.9x bare-publisher (same contract) | %sx%s | %s |\n' "$PRODUCER_RATIO" "$producer_rounds" "$(verdict "$PRODUCER_RATIO" 0.9 '>=')"
    printf '| producer p99 <= 15 ms | %s ms | %s |\n' "$PRODUCER_P99" "$(verdict "$PRODUCER_P99" 15 '<=')"
    fi
    runs_drain && printf '| consumer drain >= 0.9x raw-drain (SQLite) | %sx%s | %s |\n' "$DRAIN_RATIO" "$drain_rounds" "$DRAIN_VERDICT"
    if runs_drain && [[ -n $POSTGRES_DB ]]; then
        POSTGRES_RATIO=$(printf '%.2f' "$(median "${POSTGRES_RATIOS[@]}")")
        postgres_verdict=$(verdict "$POSTGRES_RATIO" 0.7 '>=')
        [[ $DRAIN_COMPLETE == true ]] || postgres_verdict="MISS (not every message was applied)"
        printf '| consumer drain >= 0.7x raw-drain (PostgreSQL) | %sx%s | %s |\n' "$POSTGRES_RATIO" \
            "$( ((ROUNDS > 1)) && printf ' (rounds: %s)' "${POSTGRES_RATIOS[*]}")" "$postgres_verdict"
    fi
} | tee "$RESULTS"
log "written to $RESULTS"
