#!/usr/bin/env bash
# Writes RabbitMQ definitions (vhost, users, permissions) as JSON on stdout, for
# `load_definitions` in rabbitmq.conf. The one place that says who may do what on the broker:
# docker-compose.yml, the Azure VM 1 and the local rehearsal all load what this prints.
#
#   render-definitions.sh --vhost VHOST --exchange EXCHANGE \
#       --admin USER:PASSWORD_VARIABLE --monitor USER:PASSWORD_VARIABLE \
#       --producer USER:QUEUE:PASSWORD_VARIABLE \
#       --consumer USER:QUEUE:PASSWORD_VARIABLE [--consumer ...] > definitions.json
#
# Passwords are read from the environment variables named on the command line, so that they
# never appear in a process list, and are stored as salted SHA-256 hashes (RabbitMQ's
# rabbit_password_hashing_sha256: base64(salt ++ sha256(salt ++ password)), 4-byte salt).
# They go into amqp:// URIs unescaped, so they are restricted to URI-safe characters.
#
# Least privilege, in RabbitMQ's terms (configure = declare/delete, write = publish/bind a queue,
# read = consume/get, and bind also needs read on the exchange):
#   everyone who declares EXCHANGE also declares its alternate exchange EXCHANGE.unroutable
#                      (and the queue of that name, which refuses every message so that an
#                      unroutable publish is nacked): configure and write on that name, and
#                      read on it to bind; declaring EXCHANGE with it as alternate needs write.
#   producer of QUEUE: declares EXCHANGE and QUEUE and binds them; publishes to EXCHANGE only
#                      with address.changed.<area> routing keys, and binds only address.changed.*
#                      patterns (topic permissions: write = publish, read = queue.bind).
#   consumer of QUEUE: declares EXCHANGE, QUEUE, QUEUE.dlq and QUEUE.retry.<ms>ms and binds QUEUE;
#                      consumes QUEUE, reads QUEUE.dlq; publishes only through the default
#                      exchange (to the dead-letter and retry queues, and replays into QUEUE).
#                      Declaring a retry queue, whose dead-letter exchange is the default
#                      exchange, needs read on that queue and write on amq.default.
#   monitor:           reads queue depths from the management API (tag monitoring) for the
#                      producer's queue view. The API shows a vhost's queues only to users with
#                      a permission entry on it, so it has one that matches nothing (""): it
#                      cannot declare, publish, bind, consume or get anything.
#   admin:             the management UI (tag administrator), everything in VHOST.
# The guest user is not defined: a node that loads definitions at first boot never creates it.
set -euo pipefail

readonly NAME_PATTERN='^[A-Za-z0-9][A-Za-z0-9._-]*$'
readonly PASSWORD_PATTERN='^[A-Za-z0-9._~-]{12,}$'
# Must match shared::topology::routing_key: `address.changed.<postcode area, lower case>`.
readonly PRODUCER_ROUTING_KEYS='^address\.changed\.[a-z]+$'
# The binding patterns the producer may bind its queue with (BINDING_KEYS): address.changed.*
readonly PRODUCER_BINDING_KEYS='^address\.changed\..+$'

usage() {
  sed -n '2,9p' "$0" >&2
  exit 2
}

fail() {
  echo "render-definitions.sh: $*" >&2
  exit 1
}

require_name() { # what value
  [[ $2 =~ $NAME_PATTERN ]] || fail "$1 \"$2\" may only contain letters, digits, '.', '_' and '-'"
}

# The password held by the environment variable named $1, checked.
password_from() {
  local variable=$1
  [[ $variable =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || fail "\"$variable\" is not a variable name"
  local password=${!variable:-}
  [[ -n $password ]] || fail "$variable is empty or unset"
  [[ $password =~ $PASSWORD_PATTERN ]] ||
    fail "$variable must be at least 12 characters from A-Z a-z 0-9 . _ ~ - (it goes into an amqp:// URI unescaped)"
  printf '%s' "$password"
}

sha256_hex() {
  if command -v sha256sum >/dev/null; then
    sha256sum | cut -d' ' -f1
  elif command -v shasum >/dev/null; then
    shasum -a 256 | cut -d' ' -f1
  else
    openssl dgst -sha256 -r | cut -d' ' -f1
  fi
}

hex_to_bytes() {
  local hex=$1 escaped=''
  while [[ -n $hex ]]; do
    escaped+="\\x${hex:0:2}"
    hex=${hex:2}
  done
  # shellcheck disable=SC2059 # the format string is the escaped bytes on purpose
  printf "$escaped"
}

# RabbitMQ's salted SHA-256: base64(salt ++ sha256(salt ++ utf8 password)), salt = 4 random bytes.
password_hash() {
  local password=$1 salt digest
  salt=$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
  digest=$({ hex_to_bytes "$salt"; printf '%s' "$password"; } | sha256_hex)
  hex_to_bytes "$salt$digest" | base64 | tr -d '\n'
}

# A name as a literal inside a regular expression: names only contain [A-Za-z0-9._-], and of
# those only '.' means something in a regex.
regex_literal() {
  printf '%s' "${1//./\\.}"
}

# A JSON string. The values written here are validated names, base64 and regexes, so the only
# character needing an escape is the backslash of the regexes.
json_string() {
  printf '"%s"' "${1//\\/\\\\}"
}

users=()
permissions=()
topic_permissions=()
seen_users=' '

add_user() { # name password tags(JSON array)
  [[ $seen_users != *" $1 "* ]] || fail "user \"$1\" is defined twice"
  seen_users+="$1 "
  users+=("{\"name\": $(json_string "$1"), \"password_hash\": $(json_string "$(password_hash "$2")"), \"hashing_algorithm\": \"rabbit_password_hashing_sha256\", \"tags\": $3, \"limits\": {}}")
}

add_permission() { # user configure write read
  permissions+=("{\"user\": $(json_string "$1"), \"vhost\": $(json_string "$vhost"), \"configure\": $(json_string "$2"), \"write\": $(json_string "$3"), \"read\": $(json_string "$4")}")
}

add_admin() { # USER:PASSWORD_VARIABLE
  local user variable
  IFS=: read -r user variable <<<"$1"
  require_name "admin user" "$user"
  add_user "$user" "$(password_from "$variable")" '["administrator"]'
  add_permission "$user" '.*' '.*' '.*'
}

add_monitor() { # USER:PASSWORD_VARIABLE
  local user variable
  IFS=: read -r user variable <<<"$1"
  require_name "monitor user" "$user"
  add_user "$user" "$(password_from "$variable")" '["monitoring"]'
  add_permission "$user" '' '' ''
}

add_producer() { # USER:QUEUE:PASSWORD_VARIABLE
  local user queue variable
  IFS=: read -r user queue variable <<<"$1"
  require_name "producer user" "$user"
  require_name "queue" "$queue"
  local exchange_re queue_re
  exchange_re="$(regex_literal "$exchange")|$(regex_literal "$exchange.unroutable")"
  queue_re=$(regex_literal "$queue")
  add_user "$user" "$(password_from "$variable")" '[]'
  add_permission "$user" \
    "^($exchange_re|$queue_re)$" \
    "^($exchange_re|$queue_re)$" \
    "^($exchange_re)$"
  topic_permissions+=("{\"user\": $(json_string "$user"), \"vhost\": $(json_string "$vhost"), \"exchange\": $(json_string "$exchange"), \"write\": $(json_string "$PRODUCER_ROUTING_KEYS"), \"read\": $(json_string "$PRODUCER_BINDING_KEYS")}")
}

add_consumer() { # USER:QUEUE:PASSWORD_VARIABLE
  local user queue variable
  IFS=: read -r user queue variable <<<"$1"
  require_name "consumer user" "$user"
  require_name "queue" "$queue"
  local exchange_re unroutable_re queue_re own_queues
  exchange_re=$(regex_literal "$exchange")
  unroutable_re=$(regex_literal "$exchange.unroutable")
  queue_re=$(regex_literal "$queue")
  own_queues="$queue_re|$queue_re\\.dlq|$queue_re\\.retry\\.[0-9]+ms"
  add_user "$user" "$(password_from "$variable")" '[]'
  add_permission "$user" \
    "^($exchange_re|$unroutable_re|$own_queues)$" \
    "^(amq\\.default|$unroutable_re|$queue_re)$" \
    "^($exchange_re|$unroutable_re|$own_queues)$"
}

join_lines() { # items...
  local first=1 item
  for item in "$@"; do
    if ((first)); then first=0; else printf ',\n'; fi
    printf '    %s' "$item"
  done
}

print_definitions() {
  printf '{\n  "vhosts": [\n    {"name": %s}\n  ],\n' "$(json_string "$vhost")"
  printf '  "users": [\n%s\n  ],\n' "$(join_lines "${users[@]}")"
  printf '  "permissions": [\n%s\n  ],\n' "$(join_lines "${permissions[@]}")"
  printf '  "topic_permissions": [\n%s\n  ]\n}\n' "$(join_lines "${topic_permissions[@]}")"
}

vhost=''
exchange=''
specs=()
while (($#)); do
  case $1 in
    --vhost) vhost=${2:?--vhost needs a value}; shift 2 ;;
    --exchange) exchange=${2:?--exchange needs a value}; shift 2 ;;
    --admin | --monitor | --producer | --consumer) specs+=("$1" "${2:?$1 needs a value}"); shift 2 ;;
    -h | --help) usage ;;
    *) echo "render-definitions.sh: unknown argument $1" >&2; usage ;;
  esac
done
require_name "vhost" "$vhost"
require_name "exchange" "$exchange"
((${#specs[@]})) || fail "no users given"

set -- "${specs[@]}"
while (($#)); do
  case $1 in
    --admin) add_admin "$2" ;;
    --monitor) add_monitor "$2" ;;
    --producer) add_producer "$2" ;;
    --consumer) add_consumer "$2" ;;
  esac
  shift 2
done
print_definitions
