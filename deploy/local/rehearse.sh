#!/usr/bin/env bash
# Rehearses the two-VM Azure deployment on one Linux machine, with network namespaces for VMs.
#
#   internet (operator) --- 192.0.2.0/24 ("public IP") ---  vm1: RabbitMQ + producer
#                                                            |  10.20.1.0/24, the VNet subnet
#                                                           vm2: consumers (no public address)
#
# As on Azure: the broker listens on VM 1's private address with TLS only (5671; plain 5672 on
# vm1's loopback, for the producer beside it), loads the same definitions (one user per
# service, no guest) and the same settings (deploy/rabbitmq/) as the VMs; the consumers on vm2
# reach it over that private address with amqps://, their own users and the CA that signed the
# broker's certificate; the operator reaches only the producer's HTTP port. Then it proves guest is refused from vm2, that each user can do
# only its own job, and runs the demo: post, stop the consumer, the queue fills, start it, the
# queue drains, every change applied (and routed to the pub/sub subscribers that want it).
#
# Runs as root on Debian/Ubuntu with rabbitmq-server, iproute2, curl, openssl, python3 + pika
# and cargo.
# Starts its own RabbitMQ node inside vm1 (the machine's broker is not touched), and removes
# everything it created (processes, namespaces, files) on exit, whatever happens. Exit 0 only
# if every check held.
#
# Settings: BIN_DIR (default: build target/release with cargo), KEEP_LOGS=DIR (copy the logs
# there before cleaning up).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
readonly ROOT
# shellcheck source=../lib.sh
source "$ROOT/deploy/lib.sh" # random_password
readonly RUN_ID=$$
# shellcheck source=rehearsal-lib.sh
source "$ROOT/deploy/local/rehearsal-lib.sh"
# shellcheck source=../tls/certificates.sh
source "$ROOT/deploy/tls/certificates.sh" # make_ca, key_and_request, sign_request
readonly RABBITMQ_NODE=coc-rehearsal@localhost RABBITMQ_LIB=/usr/lib/rabbitmq/bin
readonly VHOST=change-of-circumstances EXCHANGE=customer.events QUEUE=change-of-circumstances
readonly PAYMENTS_PORT=8091 MAILSHOT_PORT=8092
readonly PROBE=$ROOT/deploy/local/amqp_probe.py

WORK=''
CA_FILE=''
BROKER_ENV=()
started_pids=()

# ---------------------------------------------------------------------------- cleanup

show_logs_of_failure() {
  [[ -n $WORK && -d $WORK/logs ]] || return 0
  show_last_lines 15 "$WORK"/logs/*.log "$WORK"/broker/log/rabbit.log
}

cleanup() {
  local status=$?
  set +e
  trap - EXIT INT TERM
  if ((status != 0)); then
    show_logs_of_failure
  fi
  log "Cleaning up"
  local pid ns i
  # The services first, the broker last (it was started first).
  for ((i = ${#started_pids[@]} - 1; i >= 0; i--)); do
    stop_pid "${started_pids[i]}"
  done
  if ((${#BROKER_ENV[@]})); then
    broker_ctl stop >/dev/null 2>&1
  fi
  # Whatever is still running in our namespaces we started (the broker's epmd, say).
  for ns in "${namespaces_created[@]}"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do
      kill -KILL "$pid" 2>/dev/null
    done
  done
  for ns in "${namespaces_created[@]}"; do
    ip netns delete "$ns" 2>/dev/null
  done
  if [[ -n $WORK ]]; then
    if [[ -n ${KEEP_LOGS:-} ]]; then
      mkdir -p "$KEEP_LOGS" && cp -r "$WORK/logs/." "$WORK/broker/log/." "$KEEP_LOGS/" &&
        echo "Logs copied to $KEEP_LOGS."
    fi
    rm -rf "$WORK"
  fi
  echo "Removed the namespaces, processes and files of this rehearsal."
  exit "$status"
}

# ---------------------------------------------------------------------------- machine

check_prerequisites() {
  ((EUID == 0)) || die "run as root (it creates network namespaces)"
  local tool
  for tool in ip curl python3 setpriv "$RABBITMQ_LIB/rabbitmq-server" "$RABBITMQ_LIB/rabbitmqctl"; do
    command -v "$tool" >/dev/null || die "$tool is missing"
  done
  python3 -c 'import pika' 2>/dev/null || die "python3 pika is missing (deploy/install-check-tools.sh)"
  id rabbitmq >/dev/null 2>&1 || die "no rabbitmq user: install Debian's rabbitmq-server"
}

build_binaries() {
  if [[ -n ${BIN_DIR:-} ]]; then
    echo "Using the binaries in $BIN_DIR."
  else
    BIN_DIR=$ROOT/target/release
    log "Building the release binaries"
    (cd "$ROOT" && cargo build --release --locked --quiet -p producer -p consumer)
  fi
  [[ -x $BIN_DIR/producer && -x $BIN_DIR/consumer ]] || die "no producer/consumer in $BIN_DIR"
  # The services run from their own directories: the path must not be relative.
  BIN_DIR=$(cd "$BIN_DIR" && pwd)
}

make_workdir() {
  WORK=$(mktemp -d /tmp/coc-rehearsal.XXXXXX)
  # The broker runs as the rabbitmq user and must reach its own directory, nothing else.
  chmod 0711 "$WORK"
  mkdir -p "$WORK"/{logs,vm1,vm2} "$WORK/broker"/{definitions,mnesia,log}
  chown -R rabbitmq:rabbitmq "$WORK/broker"
  chmod 0700 "$WORK/broker"
}

# ---------------------------------------------------------------------------- secrets

make_credentials() {
  ADMIN_PASSWORD=$(random_password)
  PRODUCER_PASSWORD=$(random_password)
  CONSUMER_PASSWORD=$(random_password)
  PAYMENTS_PASSWORD=$(random_password)
  MAILSHOT_PASSWORD=$(random_password)
  MONITOR_PASSWORD=$(random_password)
  export ADMIN_PASSWORD MONITOR_PASSWORD PRODUCER_PASSWORD CONSUMER_PASSWORD PAYMENTS_PASSWORD MAILSHOT_PASSWORD
}

# The broker as vm2 reaches it: TLS on VM 1's private address (with AMQP_CA_FILE=$CA_FILE).
amqp_url() { # user password
  printf 'amqps://%s:%s@%s:5671/%s' "$1" "$2" "$VM1_PRIVATE_IP" "$VHOST"
}

# The broker as the producer beside it reaches it: plain AMQP on vm1's loopback.
local_amqp_url() { # user password
  printf 'amqp://%s:%s@127.0.0.1:5672/%s' "$1" "$2" "$VHOST"
}

# The probe on vm2, trusting the rehearsal's CA as the consumers do.
probe_from_vm2() { # probe-argument...
  in_vm2 env AMQP_CA_FILE="$CA_FILE" python3 "$PROBE" "$@"
}

# ---------------------------------------------------------------------------- broker (vm1)

# The environment of this rehearsal's RabbitMQ node, for the server and for rabbitmqctl: its own
# settings, data, logs and Erlang cookie under $WORK, never the machine's broker's.
broker_environment() {
  BROKER_ENV=(
    PATH="$PATH" HOME="$WORK/broker" LANG=C.UTF-8
    RABBITMQ_NODENAME="$RABBITMQ_NODE"
    RABBITMQ_CONF_ENV_FILE="$WORK/broker/rabbitmq-env.conf"
    RABBITMQ_CONFIG_FILE="$WORK/broker/rabbitmq.conf"
    RABBITMQ_ADVANCED_CONFIG_FILE="$WORK/broker/advanced.config"
    RABBITMQ_ENABLED_PLUGINS_FILE="$WORK/broker/enabled_plugins"
    RABBITMQ_MNESIA_BASE="$WORK/broker/mnesia"
    RABBITMQ_LOG_BASE="$WORK/broker/log"
    RABBITMQ_LOGS="$WORK/broker/log/rabbit.log"
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
    RABBITMQ_NODE_PORT=5672
  )
}

# Runs a command on vm1 as the rabbitmq user, in the node's environment.
as_broker_on_vm1() {
  ip netns exec "$VM1_NS" env -i "${BROKER_ENV[@]}" \
    setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups "$@"
}

broker_ctl() {
  as_broker_on_vm1 "$RABBITMQ_LIB/rabbitmqctl" -n "$RABBITMQ_NODE" "$@"
}

write_broker_config() {
  # The same settings file as compose and VM 1, with this machine's paths.
  sed "s|/etc/rabbitmq/definitions/definitions.json|$WORK/broker/definitions/definitions.json|" \
    "$ROOT/deploy/rabbitmq/30-change-of-circumstances.conf" >"$WORK/broker/rabbitmq.conf"
  # TLS as VM 1 has it (50-tls.conf), on the private address, with this machine's paths.
  sed -e "s|/etc/rabbitmq/tls/|$WORK/broker/tls/|" \
    -e "s|^listeners.ssl.default = 5671$|listeners.ssl.default = $VM1_PRIVATE_IP:5671|" \
    "$ROOT/deploy/rabbitmq/50-tls.conf" >>"$WORK/broker/rabbitmq.conf"
  # A CA and the broker's certificate for VM 1's private address, as deploy.sh makes them.
  make_ca "$WORK/broker/tls" "change-of-circumstances rehearsal CA"
  key_and_request "$WORK/broker/tls/broker.key" vm1 |
    sign_request "$WORK/broker/tls" "IP:$VM1_PRIVATE_IP" >"$WORK/broker/tls/broker.pem"
  rm "$WORK/broker/tls/ca.key"
  CA_FILE=$WORK/vm2/ca.pem
  cp "$WORK/broker/tls/ca.pem" "$CA_FILE"
  # The management UI and API on vm1's loopback only, as VM 1 publishes it on 127.0.0.1 (the
  # operator reaches it through an SSH tunnel; here, from inside vm1).
  printf 'management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = 15672\n' >>"$WORK/broker/rabbitmq.conf"
  : >"$WORK/broker/rabbitmq-env.conf"
  echo '[rabbitmq_management].' >"$WORK/broker/enabled_plugins"
  # The same definitions as compose: one user per service (and the pub/sub subscribers).
  "$ROOT/deploy/rabbitmq/render-definitions.sh" --vhost "$VHOST" --exchange "$EXCHANGE" \
    --admin coc-admin:ADMIN_PASSWORD --monitor coc-monitor:MONITOR_PASSWORD \
    --producer "coc-producer:$QUEUE:PRODUCER_PASSWORD" \
    --consumer "coc-consumer:$QUEUE:CONSUMER_PASSWORD" \
    --consumer payments-consumer:payments:PAYMENTS_PASSWORD \
    --consumer preston-mailshot-consumer:preston-mailshot:MAILSHOT_PASSWORD \
    >"$WORK/broker/definitions/definitions.json"
  chown -R rabbitmq:rabbitmq "$WORK/broker"
  chmod 0600 "$WORK/broker/definitions/definitions.json"
}

start_broker() {
  log "Starting RabbitMQ on vm1: TLS on $VM1_PRIVATE_IP:5671, plain AMQP on vm1's loopback"
  write_broker_config
  broker_environment
  as_broker_on_vm1 "$RABBITMQ_LIB/rabbitmq-server" >"$WORK/logs/rabbitmq-server.log" 2>&1 &
  started_pids+=($!)
  # await_startup needs the node to have registered with epmd, which takes a few seconds.
  local deadline=$((SECONDS + 90))
  until broker_ctl --quiet await_startup >/dev/null 2>&1; do
    if ((SECONDS > deadline)) || ! kill -0 "${started_pids[-1]}" 2>/dev/null; then
      die "RabbitMQ did not start"
    fi
    sleep 1
  done
  pass "broker up ($(broker_ctl --quiet version 2>/dev/null))"
}

queue_depth() { # queue: ready + unacknowledged messages
  broker_ctl --quiet list_queues -p "$VHOST" --no-table-headers \
    name messages_ready messages_unacknowledged 2>/dev/null |
    awk -v queue="$1" '$1 == queue { print $2 + $3; found = 1 } END { if (!found) print -1 }'
}

# ---------------------------------------------------------------------------- services

start_producer() {
  log "Starting the producer on vm1 (user coc-producer)"
  (cd "$WORK/vm1" && exec ip netns exec "$VM1_NS" env -i PATH="$PATH" HOSTNAME=vm1 \
    AMQP_ADDR="$(local_amqp_url coc-producer "$PRODUCER_PASSWORD")" \
    EXCHANGE="$EXCHANGE" QUEUE="$QUEUE" HTTP_ADDR="0.0.0.0:$PRODUCER_PORT" \
    MANAGEMENT_URL="http://coc-monitor:$MONITOR_PASSWORD@127.0.0.1:15672" \
    RECONNECT_MAX_DELAY_SECS=2 LOG_FORMAT=json RUST_LOG=info \
    "$BIN_DIR/producer") >>"$WORK/logs/producer.log" 2>&1 &
  started_pids+=($!)
}

# Starts a consumer on vm2; its pid is left in $last_pid.
start_consumer() { # name queue binding_keys user password port
  local name=$1 queue=$2 binding_keys=$3 user=$4 password=$5 port=$6
  (cd "$WORK/vm2" && exec ip netns exec "$VM2_NS" env -i PATH="$PATH" HOSTNAME=vm2 \
    AMQP_ADDR="$(amqp_url "$user" "$password")" AMQP_CA_FILE="$CA_FILE" \
    EXCHANGE="$EXCHANGE" QUEUE="$queue" BINDING_KEYS="$binding_keys" \
    HTTP_ADDR="127.0.0.1:$port" DATABASE_URL="sqlite://$WORK/vm2/$name.db" \
    RECONNECT_MAX_DELAY_SECS=2 RETRY_DELAYS_MS=1000 LOG_FORMAT=json RUST_LOG=info \
    "$BIN_DIR/consumer") >>"$WORK/logs/$name.log" 2>&1 &
  started_pids+=($!)
  last_pid=$!
}

# ---------------------------------------------------------------------------- checks

prove_guest_is_refused() {
  log "guest is refused from vm2"
  if broker_ctl --quiet list_users 2>/dev/null | grep -qw guest; then
    fail "the broker has a guest user although definitions were loaded at first boot"
  else
    pass "the broker has no guest user (definitions loaded at first boot)"
  fi
  expect_refused "guest/guest from vm2" probe_from_vm2 login "amqps://guest:guest@$VM1_PRIVATE_IP:5671/%2f"

  # A broker whose data predates the definitions may still have guest: the settings file keeps
  # it to localhost. Add it by hand, with every permission, and try again from vm2.
  broker_ctl --quiet add_user guest guest >/dev/null
  broker_ctl --quiet set_permissions -p "$VHOST" guest '.*' '.*' '.*' >/dev/null
  expect_refused "guest/guest from vm2, with a guest user present" \
    probe_from_vm2 login "$(amqp_url guest guest)"
  # The broker's log is written asynchronously: give it a moment.
  wait_for 5 "the broker log shows why guest was refused" \
    grep -q "user 'guest' can only connect via localhost" "$WORK/broker/log/rabbit.log" &&
    pass "the broker says why: guest can only connect via localhost (loopback_users.guest = true)"
  broker_ctl --quiet delete_user guest >/dev/null
}

# A consumer started with someone else's user must be refused by the broker and never be ready.
expect_consumer_refused() { # description name queue user password port
  local description=$1 name=$2
  start_consumer "$name" "$3" 'address.changed.#' "$4" "$5" "$6"
  local pid=$last_pid
  if wait_for 15 "$description: no ACCESS_REFUSED in its log" \
    grep -qs ACCESS_REFUSED "$WORK/logs/$name.log"; then
    if [[ $(http_status in_vm2 "http://127.0.0.1:$6/readyz") == 200 ]]; then
      fail "$description: it became ready"
    else
      pass "refused (ACCESS_REFUSED, never ready): $description"
    fi
  fi
  stop_pid "$pid"
}

prove_least_privilege() {
  log "Each user can do its own job only"
  expect_consumer_refused "the producer's user cannot run the consumer" \
    probe-producer-as-consumer "$QUEUE" coc-producer "$PRODUCER_PASSWORD" 18081
  expect_consumer_refused "the payments user cannot take the change-of-circumstances queue" \
    probe-payments-as-main "$QUEUE" payments-consumer "$PAYMENTS_PASSWORD" 18082
  expect_refused "the producer publishing a routing key other than address.changed.<area>" \
    in_vm1 python3 "$PROBE" publish "$(local_amqp_url coc-producer "$PRODUCER_PASSWORD")" \
    "$EXCHANGE" customer.deleted.pr probe-1 '{}'
  expect_refused "a consumer's user publishing to the exchange" \
    probe_from_vm2 publish "$(amqp_url coc-consumer "$CONSUMER_PASSWORD")" \
    "$EXCHANGE" address.changed.pr probe-2 '{}'
  expect_refused "the producer's user reading the queue it publishes to" \
    in_vm1 python3 "$PROBE" get "$(local_amqp_url coc-producer "$PRODUCER_PASSWORD")" "$QUEUE"
  expect_refused "the monitor user (producer's queue view) reading a queue" \
    in_vm1 python3 "$PROBE" get "$(local_amqp_url coc-monitor "$MONITOR_PASSWORD")" "$QUEUE"
  expect_refused "the monitor user (producer's queue view) publishing anything" \
    in_vm1 python3 "$PROBE" publish "$(local_amqp_url coc-monitor "$MONITOR_PASSWORD")" \
    "$EXCHANGE" address.changed.pr probe-3 '{}'
  expect_refused "the monitor user publishing through the default exchange" \
    in_vm1 python3 "$PROBE" publish "$(local_amqp_url coc-monitor "$MONITOR_PASSWORD")" \
    '' "$QUEUE" probe-4 '{}'
  wait_for 30 "the monitor user reads $QUEUE from the management API" \
    management_shows coc-monitor "$MONITOR_PASSWORD" "$QUEUE" name "$QUEUE" &&
    pass "the monitor user reads queue depths from the management API (and nothing else)"
  if in_vm2 curl -s --max-time 3 -o /dev/null "http://$VM1_PRIVATE_IP:15672/" 2>/dev/null; then
    fail "the management UI answers on VM 1's private address"
  else
    pass "the management UI does not answer from vm2 (loopback of vm1 only: SSH tunnel)"
  fi
}

# A queue's field as the management API on vm1's loopback shows it (what the operator sees
# through the SSH tunnel), or nothing.
management_queue_field() { # user password queue field
  in_vm1 curl -fsS --max-time 5 -u "$1:$2" "http://127.0.0.1:15672/api/queues/$VHOST/$3" 2>/dev/null |
    python3 -c 'import json, sys; print(json.load(sys.stdin).get(sys.argv[1], ""))' "$4" 2>/dev/null || true
}

management_shows() { # user password queue field value
  [[ $(management_queue_field "$1" "$2" "$3" "$4") == "$5" ]]
}

# What the producer's live queue view (GET /api/v1/queues) says of a queue, from the internet
# side: "<source> <messages_ready>". Its depth comes from a passive declare on the producer's
# own AMQP connection; the management API, read as coc-monitor, adds unacked counts and rates,
# hence the source "amqp+management".
queue_view_of() { # queue
  from_internet curl -fsS --max-time 5 "http://$VM1_PUBLIC_IP:$PRODUCER_PORT/api/v1/queues" 2>/dev/null |
    python3 -c 'import json, sys
view = json.load(sys.stdin)
ready = [q["messages_ready"] for q in view["queues"] if q["name"] == sys.argv[1]]
print(view["source"], ready[0] if ready else "missing")' "$1" 2>/dev/null || true
}

queue_view_shows() { # queue ready
  [[ $(queue_view_of "$1") == "amqp+management $2" ]]
}

run_demo() {
  log "Demo: the operator posts a change to VM 1's public address"
  local edge i
  edge=$(http_status from_internet "http://$VM1_PUBLIC_IP:$PRODUCER_PORT/healthz")
  if [[ $edge == 200 ]]; then
    pass "the producer answers on the public address"
  else
    fail "the producer's /healthz on the public address: $edge"
  fi
  local port
  for port in 5671 5672; do
    if from_internet bash -c "exec 3<>/dev/tcp/$VM1_PUBLIC_IP/$port" 2>/dev/null; then
      fail "AMQP ($port) answers on VM 1's public address"
    else
      pass "AMQP ($port) does not answer on VM 1's public address"
    fi
  done
  if in_vm2 bash -c "exec 3<>/dev/tcp/$VM1_PRIVATE_IP/5672" 2>/dev/null; then
    fail "plain AMQP (5672) answers on VM 1's private address, from vm2"
  else
    pass "plain AMQP (5672) does not answer on VM 1's private address (TLS on 5671 only)"
  fi
  post_change C-0 '0 Fishergate' 'PR1 2HE' && pass "POST C-0: 202"
  wait_for 15 "C-0 applied by the consumer on vm2" applied "$CONSUMER_PORT" C-0 '0 Fishergate' &&
    pass "C-0 applied by the consumer on vm2"

  log "Demo: stop the consumer on vm2; the producer keeps answering 202 and the queue fills"
  stop_pid "$MAIN_CONSUMER_PID"
  wait "$MAIN_CONSUMER_PID" 2>/dev/null || true
  pass "consumer stopped"
  local accepted=0
  for i in $(seq 1 20); do
    post_change "C-$i" "$i Church Street" "$(demo_postcode "$i")" && accepted=$((accepted + 1))
  done
  if ((accepted == 20)); then
    pass "20 changes accepted (202) while the consumer is down"
  fi
  wait_for 10 "the queue holds 20 messages" queue_is "$QUEUE" 20 &&
    pass "$QUEUE holds 20 messages"
  # The management API refreshes its statistics every 5 s.
  wait_for 20 "the management UI shows 20 ready messages" \
    management_shows coc-admin "$ADMIN_PASSWORD" "$QUEUE" messages_ready 20 &&
    pass "the operator sees them through the tunnel: management API, messages_ready = 20"
  # The producer's view reads its depth over AMQP at each sample, so it does not wait for
  # the management API's statistics.
  wait_for 5 "the producer's queue view shows 20 ready messages" queue_view_shows "$QUEUE" 20 &&
    pass "the producer's queue view (http://VM1:8080/) shows them too (depth over AMQP, rates as coc-monitor)"
  wait_for 10 "payments kept applying while the main consumer was down" \
    applied "$PAYMENTS_PORT" C-20 '20 Church Street' &&
    pass "the payments subscriber kept applying meanwhile (its own queue)"

  log "Demo: start the consumer again; the queue drains and every change is applied"
  start_consumer consumer "$QUEUE" 'address.changed.#' coc-consumer "$CONSUMER_PASSWORD" "$CONSUMER_PORT"
  MAIN_CONSUMER_PID=$last_pid
  wait_for 30 "the queue drains" queue_is "$QUEUE" 0 && pass "$QUEUE drained to 0"
  local missing=0
  for i in $(seq 1 20); do
    applied "$CONSUMER_PORT" "C-$i" "$i Church Street" || missing=$((missing + 1))
  done
  if ((missing == 0)); then
    pass "all 20 changes applied"
  else
    fail "$missing changes not applied"
  fi

  log "Demo: the pub/sub subscribers got what they bound"
  missing=0
  for i in $(seq 0 20); do
    local line1="$i Church Street"
    ((i == 0)) && line1='0 Fishergate'
    applied "$PAYMENTS_PORT" "C-$i" "$line1" || missing=$((missing + 1))
    if [[ $(demo_postcode "$i") == PR* || $i == 0 ]]; then
      applied "$MAILSHOT_PORT" "C-$i" "$line1" || missing=$((missing + 1))
    else
      [[ $(stored_line1 "$MAILSHOT_PORT" "C-$i") == 404 ]] || missing=$((missing + 1))
    fi
  done
  if ((missing == 0)); then
    pass "payments has all 21; preston-mailshot has the 11 PR ones and none of the LA ones"
  else
    fail "$missing pub/sub expectations not met"
  fi
}

prove_dead_letters() {
  log "A poison message goes to the dead-letter queue (the consumer's user publishes there)"
  expect_accepted "the producer's user publishing a message that is not an event" \
    in_vm1 python3 "$PROBE" publish "$(local_amqp_url coc-producer "$PRODUCER_PASSWORD")" \
    "$EXCHANGE" address.changed.zz poison-1 'this is not JSON'
  wait_for 15 "the poison message reached $QUEUE.dlq" queue_is "$QUEUE.dlq" 1 &&
    pass "$QUEUE.dlq holds it"
  if in_vm2 curl -fsS --max-time 5 "http://127.0.0.1:$CONSUMER_PORT/api/v1/dead-letters" | grep -q poison-1; then
    pass "GET /api/v1/dead-letters shows it (the consumer's user reads its dead-letter queue)"
  else
    fail "GET /api/v1/dead-letters does not show the poison message"
  fi
}

main() {
  check_prerequisites
  clean_up_on_exit
  remove_stale_rehearsals
  build_binaries
  make_workdir
  create_networks
  make_credentials
  start_broker

  start_producer
  log "Starting the consumers on vm2, each with its own user, over $VM1_PRIVATE_IP"
  start_consumer consumer "$QUEUE" 'address.changed.#' coc-consumer "$CONSUMER_PASSWORD" "$CONSUMER_PORT"
  MAIN_CONSUMER_PID=$last_pid
  start_consumer payments payments 'address.changed.#' payments-consumer "$PAYMENTS_PASSWORD" "$PAYMENTS_PORT"
  start_consumer preston-mailshot preston-mailshot address.changed.pr \
    preston-mailshot-consumer "$MAILSHOT_PASSWORD" "$MAILSHOT_PORT"
  wait_until_ready in_vm1 "http://127.0.0.1:$PRODUCER_PORT/readyz" "producer (vm1)" || exit 1
  wait_until_ready in_vm2 "http://127.0.0.1:$CONSUMER_PORT/readyz" "consumer (vm2)" || exit 1
  wait_until_ready in_vm2 "http://127.0.0.1:$PAYMENTS_PORT/readyz" "payments consumer (vm2)" || exit 1
  wait_until_ready in_vm2 "http://127.0.0.1:$MAILSHOT_PORT/readyz" "preston-mailshot consumer (vm2)" || exit 1

  prove_guest_is_refused
  prove_least_privilege
  run_demo
  prove_dead_letters

  if ((failures)); then
    log "Rehearsal FAILED: $failures check(s) did not hold"
    exit 1
  fi
  log "Rehearsal passed: every check held"
}

main "$@"
