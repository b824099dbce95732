#!/usr/bin/env bash
# README's walkthrough and the patterns of docs/sync-or-async.md, run against a running
# `docker compose` stack, step by step: prints what a user would see and stops at the first
# difference from what those pages say.
#
#   docker compose up --build --wait && deploy/local/walkthrough.sh
#
# Steps: what is encrypted where (the consumer's connection to the broker over TLS, the
# producer's not; the broker's certificate verified with the consumers' CA, refused with
# another CA of the same name); post a change and read it back with its postcode normalised;
# stop the consumer, post five, see five ready (from the broker and from the producer's queue
# view), start it, see the queue drain and every change applied, on port 8081 still; the
# pubsub profile (payments gets every change, the Preston mail-shot only PR); three competing
# consumers (each change applied once in PostgreSQL); `down` then `up` keeps the data and the
# broker's certificate, and leaves no volume behind. The last three change the stack (they
# start the pubsub and competing profiles, and end with `down` and `up`);
# WALKTHROUGH_STEPS=basic runs only the first steps.
#
# Settings: PRODUCER_URL (http://localhost:8080), CONSUMER_URL (http://127.0.0.1:8081),
# WAIT_SECS (90: the longest wait for any one thing), VIEW_LAG_MAX_SECS (3: how late the
# queue view may show the queue), and .env's RABBITMQ_VHOST, QUEUE, POSTGRES_DB and the
# AMQP users' names. Needs docker compose v2, curl and python3.
set -euo pipefail
cd "$(dirname "$0")/../.."

PRODUCER_URL=${PRODUCER_URL:-http://localhost:8080}
CONSUMER_URL=${CONSUMER_URL:-http://127.0.0.1:8081}
WAIT_SECS=${WAIT_SECS:-90}
VIEW_LAG_MAX_SECS=${VIEW_LAG_MAX_SECS:-3}
STEPS=${WALKTHROUGH_STEPS:-all}
setting() { # name default: from the environment, else .env, else the default
  local value=${!1:-}
  [[ -z $value && -f .env ]] && value=$(sed -n "s/^$1=//p" .env | tail -n 1)
  printf '%s' "${value:-$2}"
}
VHOST=$(setting RABBITMQ_VHOST change-of-circumstances)
QUEUE=$(setting QUEUE change-of-circumstances)
DATABASE=$(setting POSTGRES_DB change_of_circumstances)
RUN=$(date +%s) # customer ids unique to this run, so that it can run again on the same data
STARTED=$SECONDS

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
show() { printf '    %s\n' "$*"; }
fail() {
  printf '\n\033[31mwalkthrough: FAILED: %s\033[0m\n' "$*" >&2
  exit 1
}

# `eventually WHAT COMMAND...`: runs COMMAND every half second until it succeeds, at most
# WAIT_SECS; fails naming WHAT and showing COMMAND's last output.
eventually() {
  local what=$1 output deadline=$((SECONDS + WAIT_SECS))
  shift
  until output=$("$@" 2>&1); do
    ((SECONDS < deadline)) || fail "$what: not within ${WAIT_SECS} s; last: $output"
    sleep 0.5
  done
  printf '%s' "$output"
}

json() { # expression: a Python expression on `d`, the JSON document on stdin
  python3 -c 'import json, sys; d = json.load(sys.stdin); v = eval(sys.argv[1]); print(v if v is not None else "")' "$1"
}

post() { # customer postcode [url]: prints the event id; fails unless 202
  local body status
  body=$(printf '{"customer_id":"%s","new_address":{"line1":"1 Fishergate","town":"Preston","postcode":"%s","country":"GB"},"effective_date":"2026-12-01"}' "$1" "$2")
  status=$(curl -s -o /tmp/walkthrough.$$ -w '%{http_code}' -X POST "${3:-$PRODUCER_URL}/api/v1/address-changes" \
    -H 'content-type: application/json' -d "$body") || fail "POST for $1: no answer from $PRODUCER_URL"
  [[ $status == 202 ]] || fail "POST for $1: expected 202, got $status $(cat /tmp/walkthrough.$$)"
  json 'd["event_id"]' </tmp/walkthrough.$$
  rm -f /tmp/walkthrough.$$
}

# Succeeds when the consumer at $1 has customer $2's change with event id $3 (and postcode $4).
has_change() {
  local answer
  answer=$(curl -sf "$1/api/v1/customers/$2/address") || return 1
  [[ $(json 'd["event_id"]' <<<"$answer") == "$3" ]] || { echo "$answer"; return 1; }
  [[ -z ${4:-} || $(json 'd["address"]["postcode"]' <<<"$answer") == "$4" ]] || { echo "$answer"; return 1; }
  echo "$answer"
}

lacks_customer() { # url customer: 404
  [[ $(curl -s -o /dev/null -w '%{http_code}' "$1/api/v1/customers/$2/address") == 404 ]]
}

# Messages ready in the work queue, as RabbitMQ's own CLI reports them (quorum queues'
# counters trail by a few seconds: polled).
broker_ready() {
  docker compose exec -T rabbitmq rabbitmqctl -q list_queues -p "$VHOST" --no-table-headers name messages_ready |
    awk -v q="$QUEUE" '$1 == q { print $2 }'
}
broker_consumers_is() {
  local consumers
  consumers=$(docker compose exec -T rabbitmq rabbitmqctl -q list_queues -p "$VHOST" --no-table-headers name consumers |
    awk -v q="$QUEUE" '$1 == q { print $2 }')
  [[ $consumers == "$1" ]] || { echo "$consumers"; return 1; }
}
broker_ready_is() { [[ $(broker_ready) == "$1" ]] || { broker_ready; return 1; }; }
view_ready_is() { # the producer's queue view (GET /api/v1/queues), as its page shows it
  local ready
  ready=$(curl -sf "$PRODUCER_URL/api/v1/queues" | json "next((q['messages_ready'] for q in d['queues'] if q['name'] == '$QUEUE'), None)")
  [[ $ready == "$1" ]] || { echo "$ready"; return 1; }
}

service_healthy() { # service: every container of it is running and healthy
  local ids id
  ids=$(docker compose ps -q "$1")
  [[ -n $ids ]] || return 1
  for id in $ids; do
    [[ $(docker inspect -f '{{.State.Health.Status}}' "$id") == healthy ]] || return 1
  done
}

psql_count() { # SQL: one number from the consumer's PostgreSQL database
  docker compose exec -T postgres psql -U postgres -d "$DATABASE" -tAc "$1"
}

# Succeeds when USER has a connection to the broker and every one of them has TLS (ssl true)
# or has not (false), as RabbitMQ reports them; prints each one's ssl and TLS version.
connections_have_ssl() { # user true|false
  local connections
  connections=$(docker compose exec -T rabbitmq rabbitmqctl -q list_connections --no-table-headers user ssl ssl_protocol |
    awk -v user="$1" '$1 == user { print "ssl " $2 ($3 == "" ? "" : " " $3) }')
  echo "${connections:-no connection}" | paste -sd ';' | sed 's/;/; /g'
  [[ -n $connections ]] && ! grep -qv "^ssl $2\b" <<<"$connections"
}

# A TLS handshake with the broker's AMQP over TLS port, as a client on the compose network
# sees it (127.0.0.1:5671 in the broker's container, host name rabbitmq), trusting only the
# CA certificate on stdin; openssl's verdict on the broker's certificate on stdout, and its
# status (0: verified).
tls_handshake_trusting() {
  docker compose exec -T rabbitmq bash -c 'cat >/tmp/walkthrough-ca.pem
    output=$(openssl s_client -connect 127.0.0.1:5671 -verify_hostname rabbitmq -verify_return_error \
      -CAfile /tmp/walkthrough-ca.pem </dev/null 2>&1)
    status=$?
    rm -f /tmp/walkthrough-ca.pem
    verdict=$(grep -E "^Verify return code|verify error" <<<"$output" | sort -u)
    # No verdict: no handshake (no TLS listener, say); its last words instead.
    printf "%s\n" "${verdict:-$(tail -n 2 <<<"$output")}"
    exit "$status"'
}

# A CA certificate of the same name as the consumers' CA, with another key: what an impostor
# would sign with.
impostor_ca() { # the real CA certificate on stdin
  docker compose exec -T rabbitmq bash -c 'subject=$(openssl x509 -noout -subject -nameopt RFC2253)
    openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -days 1 \
      -subj "/${subject#subject=}" -keyout /dev/null 2>/dev/null'
}

# ---- the walkthrough ---------------------------------------------------------------------

say "The stack is up"
for service in rabbitmq postgres producer consumer; do
  eventually "$service healthy" service_healthy "$service" >/dev/null
done
show "rabbitmq, postgres, producer and consumer are healthy"

say "What is encrypted where: the consumer reaches the broker over TLS, the producer beside it does not"
consumer_user=$(setting CONSUMER_AMQP_USER coc-consumer)
producer_user=$(setting PRODUCER_AMQP_USER coc-producer)
# (`show "$(eventually …)"` would go on after a failure: show's status is the command's.)
connections=$(eventually "$consumer_user's connections over TLS" connections_have_ssl "$consumer_user" true)
show "rabbitmqctl list_connections: $consumer_user: $connections"
connections=$(eventually "$producer_user's connections in plain AMQP" connections_have_ssl "$producer_user" false)
show "rabbitmqctl list_connections: $producer_user: $connections"
# The CA the consumers trust (AMQP_CA_FILE), read from their own volume.
consumers_ca=$(docker compose exec -T consumer cat /etc/amqp-ca/ca.pem)
verdict=$(tls_handshake_trusting <<<"$consumers_ca") ||
  fail "the broker's certificate does not verify with the consumers' CA for rabbitmq:5671: $verdict"
[[ $verdict == "Verify return code: 0 (ok)" ]] || fail "unexpected verdict with the consumers' CA: $verdict"
show "openssl s_client rabbitmq:5671 trusting the consumers' CA: $verdict"
impostor=$(impostor_ca <<<"$consumers_ca")
if verdict=$(tls_handshake_trusting <<<"$impostor"); then
  fail "the broker's certificate verified with a CA that did not sign it: $verdict"
fi
[[ $verdict == *"verify error"* ]] || fail "trusting another CA, the handshake failed, but not on the certificate: $verdict"
show "trusting another CA of the same name: refused (${verdict//$'\n'/; })"

say "Post a change of address: 202, and the consumer has it with the postcode normalised"
event=$(post "C-W$RUN" "pr12he")
show "202 {\"event_id\":\"$event\",\"status\":\"queued\"}"
applied=$(eventually "the consumer to apply C-W$RUN" has_change "$CONSUMER_URL" "C-W$RUN" "$event" "PR1 2HE")
show "$applied"

say "Stop the consumer and post five changes: every one is accepted"
docker compose stop consumer
declare -A queued=()
for i in 1 2 3 4 5; do
  queued["C-Q$RUN-$i"]=$(post "C-Q$RUN-$i" "PR1 3BQ")
  show "202 for C-Q$RUN-$i"
done

say "Five ready in the queue, from the broker and on the producer's queue view"
posted_at=$SECONDS
eventually "GET /api/v1/queues to show 5 ready" view_ready_is 5 >/dev/null
lag=$((SECONDS - posted_at))
show "GET $PRODUCER_URL/api/v1/queues: $QUEUE 5 ready, ${lag} s after the last post"
# The view's depth is the broker's answer to a passive declare, sampled every second; it
# never waits for the management statistics (which trailed by 5 to 8 s when the view read
# its depth from them). So one second and a request or two: 3 s is generous.
((lag <= VIEW_LAG_MAX_SECS)) || fail "the queue view followed the queue ${lag} s late (at most ${VIEW_LAG_MAX_SECS} s)"
eventually "rabbitmqctl to show 5 ready in $QUEUE" broker_ready_is 5 >/dev/null
show "rabbitmqctl list_queues: $QUEUE 5 ready"
rates=$(curl -sf "$PRODUCER_URL/api/v1/queues" | json "next(((q['publish_rate'], q['deliver_rate']) for q in d['queues'] if q['name'] == '$QUEUE'), None)")
[[ $rates == \(*,*\) && $rates != *None* ]] || fail "the queue view shows no rates (in, out): $rates"
show "rates in and out, messages/s: $rates"
history=$(curl -sf "$PRODUCER_URL/api/v1/queues/history" | json "max((s['ready'].get('$QUEUE', 0) for s in d), default=0)")
((history >= 5)) || fail "the queue view's history does not show the 5 ready (its highest: $history)"
show "GET $PRODUCER_URL/api/v1/queues/history: up to 5 ready"

say "Start the consumer: the queue drains, every change is applied, its API is on 8081 again"
docker compose start consumer
eventually "the consumer healthy again" service_healthy consumer >/dev/null
port=$(docker compose port consumer 8081)
[[ $port == 127.0.0.1:8081 ]] || fail "after stop and start the consumer's API is on $port, not 127.0.0.1:8081"
show "docker compose port consumer 8081: $port"
for customer in "${!queued[@]}"; do
  eventually "the consumer to apply $customer" has_change "$CONSUMER_URL" "$customer" "${queued[$customer]}" >/dev/null
done
show "all five applied"
eventually "rabbitmqctl to show the queue empty" broker_ready_is 0 >/dev/null
eventually "the queue view to show the queue empty" view_ready_is 0 >/dev/null
show "ready: 0 (broker and queue view)"

if [[ $STEPS == basic ]]; then
  say "Walkthrough passed (basic steps) in $((SECONDS - STARTED)) s"
  exit 0
fi

say "Pub/sub: payments gets every change, the Preston mail-shot only PR"
docker compose --profile pubsub up -d --wait payments preston-mailshot
preston=$(post "C-PR$RUN" "PR1 1AA")
lancaster=$(post "C-LA$RUN" "LA1 1AA")
eventually "payments to apply C-PR$RUN" has_change http://127.0.0.1:8091 "C-PR$RUN" "$preston" >/dev/null
eventually "payments to apply C-LA$RUN" has_change http://127.0.0.1:8091 "C-LA$RUN" "$lancaster" >/dev/null
eventually "the mail-shot to apply C-PR$RUN" has_change http://127.0.0.1:8092 "C-PR$RUN" "$preston" >/dev/null
eventually "the main consumer to apply C-LA$RUN" has_change "$CONSUMER_URL" "C-LA$RUN" "$lancaster" >/dev/null
lacks_customer http://127.0.0.1:8092 "C-LA$RUN" || fail "the Preston mail-shot got a Lancaster change"
show "payments: both; mail-shot: C-PR$RUN only (404 for C-LA$RUN)"
for user in "$(setting PAYMENTS_AMQP_USER payments-consumer)" "$(setting PRESTON_MAILSHOT_AMQP_USER preston-mailshot-consumer)"; do
  connections=$(eventually "$user's connections over TLS" connections_have_ssl "$user" true)
  show "rabbitmqctl list_connections: $user: $connections"
done

say "Competing consumers: three instances share the queue, each change applied once"
docker compose --profile competing up -d --wait --scale consumer-extra=2 consumer-extra
# Healthy is not yet subscribed: wait for the broker to see all three, or the first could take
# every change before the others arrive.
eventually "three consumers on $QUEUE" broker_consumers_is 3 >/dev/null
show "rabbitmqctl list_queues: $QUEUE has 3 consumers"
connections=$(connections_have_ssl "$consumer_user" true) ||
  fail "an instance of the main consumer is connected without TLS: $connections"
show "rabbitmqctl list_connections: $consumer_user, every instance: $connections"
declare -A shared=()
for i in $(seq 1 30); do
  shared["C-S$RUN-$i"]=$(post "C-S$RUN-$i" "PR1 2HE")
done
for customer in "${!shared[@]}"; do
  eventually "one of the consumers to apply $customer" has_change "$CONSUMER_URL" "$customer" "${shared[$customer]}" >/dev/null
done
applied=$(psql_count "SELECT COUNT(*) FROM applied_events WHERE customer_id LIKE 'C-S$RUN-%'")
[[ $applied == 30 ]] || fail "PostgreSQL holds $applied applications of 30 changes"
# Each instance's log names the changes it applied. With all three subscribed, the broker
# hands sequential messages round the consumers in turn (10 each, here, every time since the
# wait above was added; before it, one instance could take all 30 before the others joined).
spread=()
for id in $(docker compose --profile competing ps -q consumer consumer-extra); do
  # The processing lines only: the main consumer also logs the reads above, by customer.
  spread+=("$(docker logs "$id" 2>&1 | grep "Message processed" | grep -c "C-S$RUN-" || true)")
done
show "30 changes, 30 rows in applied_events; applied per instance: ${spread[*]}"
((${#spread[@]} == 3)) || fail "expected three consumer instances, found ${#spread[@]}"
for count in "${spread[@]}"; do
  ((count > 0)) || fail "the work was not shared: applied per instance ${spread[*]}"
done
for index in 1 2; do
  show "consumer-extra #$index: $(docker compose --profile competing port --index "$index" consumer-extra 8081)"
done
docker compose --profile competing stop consumer-extra

say "down, then up: the data is kept, and no volume is left behind"
volumes_before=$(docker volume ls -q | wc -l)
docker compose --profile '*' down
docker compose up -d --wait
applied=$(eventually "C-W$RUN still there after down and up" has_change "$CONSUMER_URL" "C-W$RUN" "$event")
show "$applied"
[[ $(docker compose exec -T consumer cat /etc/amqp-ca/ca.pem) == "$consumers_ca" ]] ||
  fail "down and up made a new CA: $(docker compose logs --no-log-prefix broker-certificate)"
kept=$(docker compose logs --no-log-prefix broker-certificate | grep -m 1 'kept until') ||
  fail "broker-certificate did not keep the certificate: $(docker compose logs --no-log-prefix broker-certificate)"
show "broker-certificate: $kept"
volumes_after=$(docker volume ls -q | wc -l)
((volumes_after <= volumes_before)) || fail "down and up left $((volumes_after - volumes_before)) more volume(s): $(docker volume ls -qf dangling=true)"
show "volumes: $volumes_before before, $volumes_after after"

say "Walkthrough passed in $((SECONDS - STARTED)) s"
