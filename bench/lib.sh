# shellcheck shell=bash
# bench/lib.sh: what the bench scripts share: starting and stopping the services they
# measure, CPU and memory accounting, the lazy-queue policy on an older broker, and the
# lines that name the machine and the code.
# Sourced; expects WORK (a scratch directory) and RABBITMQCTL to be set.

# shellcheck disable=SC2034 # BIN and TICKS_PER_SEC are for the scripts that source this
BIN="$ROOT/target/release"
CORES=$(nproc)
# shellcheck disable=SC2034
TICKS_PER_SEC=$(getconf CLK_TCK)
declare -A RUNNING=() # name -> PID of each service this script started and has not stopped

log() { printf '==> %s\n' "$*" >&2; }

# start NAME VAR=value... COMMAND ARGS...: runs COMMAND in the background (env execs it, so
# the PID is the service's own), logging to $WORK/NAME.log.
start() {
    local name=$1
    shift
    env "$@" >"$WORK/$name.log" 2>&1 &
    RUNNING[$name]=$!
}

stop() {
    local name=$1 pid=${RUNNING[$1]}
    kill -TERM "$pid" 2>/dev/null || true
    # A service gets 15 s to stop; one that hangs must not keep the cleanup from running.
    local waited
    for ((waited = 0; waited < 60; waited++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.25
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    unset "RUNNING[$name]"
}

stop_all() {
    local name
    for name in "${!RUNNING[@]}"; do
        stop "$name"
    done
}

wait_ready() {
    local name=$1 port=$2 attempt
    for attempt in $(seq 1 120); do
        if curl -fs -o /dev/null "http://127.0.0.1:$port/readyz"; then
            return 0
        fi
        if ! kill -0 "${RUNNING[$name]}" 2>/dev/null; then
            log "$name exited: $(tail -n 5 "$WORK/$name.log")"
            return 1
        fi
        sleep 0.25
    done
    log "$name not ready after $((attempt / 4)) s: $(tail -n 5 "$WORK/$name.log")"
    return 1
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# CPU accounting, in clock ticks: the whole machine's busy and total, and one process's own.
machine_ticks() { awk '/^cpu /{ t = 0; for (i = 2; i <= 9; i++) t += $i; print t - $5 - $6, t }' /proc/stat; }
process_ticks() { if [[ -r /proc/$1/stat ]]; then awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; else echo 0; fi; }
# A process's resident memory in KiB (0 once it is gone).
process_rss_kib() { awk '/^VmRSS:/{ print $2; found = 1 } END { if (!found) print 0 }' "/proc/$1/status" 2>/dev/null || echo 0; }

# The broker is the process listening on AMQP_ADDR's port (another node may run beside it).
broker_pid() {
    local port
    port=$(sed -E 's#^amqps?://([^@/]*@)?[^:/,]+:?([0-9]*).*#\2#' <<<"$AMQP_ADDR")
    ss -Hltnp "sport = :${port:-5672}" | grep -o 'pid=[0-9]*' | head -n 1 | cut -d= -f2 || true
}

rabbit_version() { $RABBITMQCTL version 2>/dev/null || echo unknown; }

# RabbitMQ before 3.12 keeps a classic queue's messages in memory and pages them out in bulk
# when memory calls for it, which stalls the queue process: with no consumer a growing queue
# gives every publisher, the ceiling included, a p99 of 60-80 ms from those stalls. From
# 3.12 on (and so in the rabbitmq:4.3 image this project ships), classic queues write
# through to disk as the old "lazy" mode did, whatever the queue says. So that the figures
# describe the broker users run, lazy_queues_before_3_12 PREFIX gives the queues named
# PREFIX.* that mode through a policy on an older broker; clear_lazy_policy removes it.
# QUEUE_MODE says which mode was measured.
LAZY_POLICY=""
QUEUE_MODE="the broker's default"
lazy_queues_before_3_12() {
    local prefix=$1
    python3 -c '
import re, sys
found = re.match(r"(\d+)\.(\d+)", sys.argv[1])
sys.exit(0 if found and (int(found[1]), int(found[2])) < (3, 12) else 1)' "$(rabbit_version)" || return 0
    if $RABBITMQCTL set_policy -q "$prefix.lazy" "^${prefix//./\\.}\\." '{"queue-mode":"lazy"}' --apply-to queues; then
        LAZY_POLICY="$prefix.lazy"
        QUEUE_MODE="lazy (a policy on the run's queues, as classic queues behave from RabbitMQ 3.12 on)"
    else
        log "could not set a lazy-mode policy (rabbitmqctl needs root): measuring the old default"
    fi
}
clear_lazy_policy() {
    [[ -z $LAZY_POLICY ]] || $RABBITMQCTL clear_policy -q "$LAZY_POLICY" || log "could not remove the policy $LAZY_POLICY"
}

# The machine, the broker and the tools, for the results' first line.
describe_machine() {
    local cpu_model ram
    cpu_model=$(awk -F': ' '/^model name/{ print $2; exit }' /proc/cpuinfo)
    ram=$(awk '/^MemTotal/{ printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
    printf '%s, %s cores, %s RAM, Linux %s, RabbitMQ %s, %s, %s, %s' "${cpu_model:-unknown CPU}" "$CORES" "$ram" \
        "$(uname -r)" "$(rabbit_version)" "$(rustc --version | cut -d' ' -f1-2)" "$(oha --version)" "$(date -u '+%Y-%m-%d %H:%M UTC')"
}

# Which code is measured.
describe_tree() {
    local tree
    tree="commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    if [[ -n $(git status --porcelain -- producer consumer shared 2>/dev/null) ]]; then
        tree+=" with uncommitted changes in producer, consumer or shared"
    fi
    printf '%s' "$tree"
}

# Builds what is measured.
build_release() {
    log "building release binaries"
    export PATH="$HOME/.cargo/bin:$PATH"
    cargo build --release --quiet -p producer -p consumer -p bench
}

# Builds what is measured and installs the load tool if it is missing.
build_and_install() {
    build_release
    if ! command -v oha >/dev/null; then
        log "installing the load tool: cargo install oha --locked (several minutes, once)"
        cargo install oha --locked --quiet
    fi
}

# The queues a consumer declares beside its work queue QUEUE: the dead-letter queue and one
# retry queue per delay of RETRY_DELAYS_MS, comma-separated (for bench-queue delete).
consumer_side_queues() {
    local queue=$1 queues delay
    queues="$queue.dlq"
    for delay in ${RETRY_DELAYS_MS//,/ }; do
        queues+=",$queue.retry.${delay}ms"
    done
    printf '%s' "$queues"
}

# A fresh store for a consumer: prints its DATABASE_URL. sqlite: a file in WORK; postgres:
# the database POSTGRES_DB, dropped and created again through POSTGRES_ADMIN_URL.
fresh_store() { # sqlite|postgres
    if [[ $1 == sqlite ]]; then
        rm -f "$WORK"/consumer.db*
        printf 'sqlite://%s/consumer.db' "$WORK"
    else
        psql -q "$POSTGRES_ADMIN_URL" -c "DROP DATABASE IF EXISTS \"$POSTGRES_DB\"" -c "CREATE DATABASE \"$POSTGRES_DB\"" >/dev/null
        # The admin URL with the run's database in place of its own.
        printf '%s/%s' "${POSTGRES_ADMIN_URL%/*}" "$POSTGRES_DB"
    fi
}

applied_in() { # DATABASE_URL: how many events the store applied
    case $1 in
        sqlite://*) python3 -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("SELECT COUNT(*) FROM applied_events").fetchone()[0])' "${1#sqlite://}" ;;
        *) psql -qtA "$1" -c 'SELECT COUNT(*) FROM applied_events' ;;
    esac
}

# callgrind_top DUMP COUNT: the COUNT functions whose own code (exclusive) cost the most in
# a callgrind dump. Threads' entry points and tokio's loops come out at up to 100% even as
# "own" code (the recursion of inlined frames; tokio's blocking pool at 40% in the
# consumer's): above 30% a line is that artefact, not a cost, and is left out.
callgrind_top() {
    callgrind_annotate --inclusive=no --threshold=100 "$1" 2>/dev/null |
        awk -v count="$2" '/^ *[0-9,]+ \( *[0-9.]+%\)/ && !/PROGRAM TOTALS/ {
               percent = $2; gsub(/[(%)]/, "", percent)
               if (percent + 0 > 30) next
               sub(/ \[[^]]*\]$/, ""); if (++shown <= count) print substr($0, 1, 150) }'
}
