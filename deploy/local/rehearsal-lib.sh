# What the two rehearsals share (sourced by rehearse.sh and rehearse-vms.sh): the network of
# the two VMs and the operator's side, in network namespaces, and the checks of the demo.
#
#   internet (operator) --- 192.0.2.0/24 ("public IP") ---  vm1: RabbitMQ + producer
#                                                            |  10.20.1.0/24, the VNet subnet
#                                                           vm2: consumers (no public address)
#
# The sourcing script sets RUN_ID (its pid: namespaces are named after it) and WORK (its
# directory, with logs/), defines queue_depth QUEUE, and calls create_networks.
# shellcheck shell=bash

readonly INTERNET_NS=coc-inet-$RUN_ID VM1_NS=coc-vm1-$RUN_ID VM2_NS=coc-vm2-$RUN_ID
# The VMs' addresses are deploy.sh's defaults (deploy/azure/lib.sh).
readonly OPERATOR_IP=192.0.2.1 VM1_PUBLIC_IP=192.0.2.10
readonly VM1_PRIVATE_IP=10.20.1.10 VM2_PRIVATE_IP=10.20.1.11
# shellcheck disable=SC2034 # used by the sourcing scripts
readonly PRODUCER_PORT=8080 CONSUMER_PORT=8081

namespaces_created=()
failures=0

log() { printf '\n==> %s\n' "$*"; }
pass() { printf '    ok: %s\n' "$*"; }
fail() {
  printf '    FAILED: %s\n' "$*" >&2
  failures=$((failures + 1))
}
die() {
  printf '%s: %s\n' "${0##*/}" "$*" >&2
  exit 1
}

show_last_lines() { # lines file...: the end of each file that exists, on stderr
  local lines=$1 file
  shift
  for file in "$@"; do
    [[ -f $file ]] || continue
    printf '\n--- last lines of %s\n' "${file##*/}" >&2
    tail -n "$lines" "$file" >&2
  done
}

# cleanup on every way out: an interrupt or a TERM exits (so the EXIT trap runs) with the
# status a shell gives a process killed by that signal.
clean_up_on_exit() {
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

stop_pid() { # pid: TERM, then KILL if it has not gone after 10 s
  local pid=$1
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

in_ns() { # namespace command...
  local ns=$1
  shift
  ip netns exec "$ns" "$@"
}
in_vm1() { in_ns "$VM1_NS" "$@"; }
in_vm2() { in_ns "$VM2_NS" "$@"; }
from_internet() { in_ns "$INTERNET_NS" "$@"; }

# A rehearsal killed with SIGKILL cannot clean up: remove the namespaces (and what runs in
# them) of earlier runs whose script is gone. They are named after that script's pid.
remove_stale_rehearsals() {
  local ns pid process
  for ns in $(ip netns list | awk '{ print $1 }'); do
    [[ $ns =~ ^coc-(inet|vm1|vm2)-([0-9]+)$ ]] || continue
    pid=${BASH_REMATCH[2]}
    kill -0 "$pid" 2>/dev/null && continue
    echo "Removing $ns, left by an earlier rehearsal (pid $pid) that could not clean up."
    for process in $(ip netns pids "$ns"); do
      kill -KILL "$process" 2>/dev/null || true
    done
    kill_cgroup "$ns" # the containers of a VM's engine (rehearse-vms.sh)
    ip netns delete "$ns"
  done
}

# Kills every process of the cgroup NAME (in each v1 hierarchy, or v2) and removes it. A VM's
# Docker engine puts its containers there (dockerd --cgroup-parent): their processes live in
# network namespaces of their own, which `ip netns pids` does not list.
kill_cgroup() { # name
  local dir process
  for dir in /sys/fs/cgroup/"$1" /sys/fs/cgroup/*/"$1"; do
    [[ -d $dir ]] || continue
    while IFS= read -r process; do
      kill -KILL "$process" 2>/dev/null || true
    done < <(find "$dir" -name cgroup.procs -exec cat {} + 2>/dev/null)
    # Removed leaves first; a cgroup goes only once its processes have.
    for _ in $(seq 1 50); do
      find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null
      [[ -d $dir ]] || break
      sleep 0.1
    done
  done
}

create_namespace() { # name
  ip netns add "$1"
  namespaces_created+=("$1")
  ip -n "$1" link set lo up
}

link_namespaces() { # ns_a address_a ns_b address_b (addresses with their prefix length)
  local a=coc${RUN_ID}a$((${#namespaces_created[@]})) b=coc${RUN_ID}b$((${#namespaces_created[@]}))
  ip link add "$a" netns "$1" type veth peer name "$b" netns "$3"
  ip -n "$1" address add "$2" dev "$a"
  ip -n "$3" address add "$4" dev "$b"
  ip -n "$1" link set "$a" up
  ip -n "$3" link set "$b" up
}

create_networks() {
  log "Creating the network: internet --(public)-- vm1 --(VNet subnet 10.20.1.0/24)-- vm2"
  create_namespace "$INTERNET_NS"
  create_namespace "$VM1_NS"
  create_namespace "$VM2_NS"
  link_namespaces "$INTERNET_NS" "$OPERATOR_IP/24" "$VM1_NS" "$VM1_PUBLIC_IP/24"
  link_namespaces "$VM1_NS" "$VM1_PRIVATE_IP/24" "$VM2_NS" "$VM2_PRIVATE_IP/24"
  # No route from the internet side to the subnet: vm2 has no public address, like VM 2.
  if ip -n "$INTERNET_NS" route get "$VM2_PRIVATE_IP" >/dev/null 2>&1; then
    die "the internet side has a route to vm2"
  fi
  pass "vm2 has no route from the internet side; vm1 and vm2 share the subnet"
}

http_status() { # namespace-runner url [curl args...]
  local runner=$1 url=$2
  shift 2
  "$runner" curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@" "$url" 2>/dev/null || true
}

wait_until_ready() { # runner url what
  for _ in $(seq 1 150); do
    if [[ $(http_status "$1" "$2") == 200 ]]; then
      pass "$3 is ready"
      return 0
    fi
    sleep 0.2
  done
  fail "$3 did not become ready ($2)"
  return 1
}

wait_for() { # seconds description command...: polls the command until it succeeds
  local seconds=$1 description=$2
  shift 2
  local deadline=$((SECONDS + seconds))
  while ((SECONDS < deadline)); do
    if "$@"; then
      return 0
    fi
    sleep 0.3
  done
  fail "$description (after ${seconds} s)"
  return 1
}

# The probe's (amqp_probe.py) exit status, as a check: 0 accepted, 3 refused by the broker
# (ACCESS_REFUSED), 4 the broker's certificate refused by the client.
expect_probe() { # accepted|refused|certificate-refused description command...
  local want=$1 description=$2 status=0 got
  shift 2
  "$@" 2>>"$WORK/logs/amqp-probe.log" || status=$?
  case $status in
    0) got=accepted ;;
    3) got=refused ;;
    4) got=certificate-refused ;;
    *) got="failed otherwise (exit $status, logs/amqp-probe.log)" ;;
  esac
  if [[ $got == "$want" ]]; then
    pass "$want: $description"
  else
    fail "$got, expected $want: $description"
  fi
}
expect_refused() { expect_probe refused "$@"; }
expect_accepted() { expect_probe accepted "$@"; }

post_change() { # customer_id line1 postcode: 202 from the internet side, or a failure
  local body status
  body=$(printf '{"customer_id":"%s","new_address":{"line1":"%s","town":"Somewhere","postcode":"%s"},"effective_date":"2026-12-01"}' "$1" "$2" "$3")
  status=$(http_status from_internet "http://$VM1_PUBLIC_IP:$PRODUCER_PORT/api/v1/address-changes" \
    -X POST -H 'content-type: application/json' -d "$body")
  [[ $status == 202 ]] || {
    fail "POST $1 answered $status, not 202"
    return 1
  }
}

stored_line1() { # port customer_id: the stored line1, or the HTTP status when there is none
  local answer
  answer=$(in_vm2 curl -s --max-time 5 -w '\n%{http_code}' "http://127.0.0.1:$1/api/v1/customers/$2/address" || true)
  if [[ ${answer##*$'\n'} == 200 ]]; then
    python3 -c 'import json, sys; print(json.loads(sys.argv[1])["address"]["line1"])' "${answer%$'\n'*}"
  else
    echo "${answer##*$'\n'}"
  fi
}

applied() { [[ $(stored_line1 "$1" "$2") == "$3" ]]; }
queue_is() { [[ $(queue_depth "$1") == "$2" ]]; }

# Customers of the demo: odd ones live in Preston (PR), even ones in Lancaster (LA).
demo_postcode() { if (($1 % 2)); then echo 'PR1 3BQ'; else echo 'LA1 1AA'; fi; }
