#!/usr/bin/env bash
# Rehearses the two Azure VMs with what they really run: the images built from our Dockerfile,
# each VM's own compose file, and the files cloud-init writes, rendered by deploy.sh itself.
#
#   internet (operator) --- 192.0.2.0/24 ("public IP") ---  vm1: Docker engine: RabbitMQ + producer
#                                                            |  10.20.1.0/24, the VNet subnet
#                                                           vm2: Docker engine: consumer
#
# Each "VM" is a network namespace with a Docker engine of its own (its own data root, bridge,
# iptables and published ports), so a port published on an address answers there as on the
# VM. Then, as on Azure:
#  1. `DRY_RUN=1 deploy/azure/deploy.sh` (with a fake az) renders each VM's cloud-config, with
#     the variables deploy.sh passes; its write_files go into each VM's root directory
#     (play_cloud_init.py) and its runcmd is played line by line (play_runcmd);
#  2. the broker's certificate is made as deploy.sh makes it: vm/broker-certificate.sh makes
#     the key and its request in VM 1's root, sign-broker-request.sh signs it with the dry
#     run's CA, the same script installs it; the passwords reach each VM as deploy.sh sends
#     them: vm/deliver-secrets.sh with the names of the plan's `az vm run-command` and the
#     values of its state directory;
#  3. each engine gets the images under the names the rendered .env gives (no registry: the
#     hosts have no way out), and the systemd unit's own ExecStartPre/ExecStart lines start the
#     stack, ExecStop stops it;
#  4. checks: only the producer's 8080 answers from the internet side; on VM 1's private
#     address, from vm2, AMQP over TLS (5671) only, plain 5672 closed; a client trusting
#     another CA is refused the broker's certificate; the consumer's connection is TLS; 15672
#     on VM 1's loopback only; guest refused; the demo (post, applied on vm2, stop the
#     consumer's container, the queue on vm1 fills, start it, it drains) while tcpdump records
#     the link between the VMs, where no customer data, user name or password may show in
#     clear; then a reboot of both (the unit's stop, the engines stopped and started, the
#     unit's start), after which the queued messages and the consumer's store are still there.
#
# Runs as root on a Linux machine with Docker (dockerd, the docker CLI with compose v2),
# iproute2, nsenter, curl, openssl, tcpdump and python3 with PyYAML and pika. Builds the two images from the
# Dockerfile (cached layers make it quick after `docker compose build`); the broker's image
# (docker-compose.yml's x-rabbitmq-image) must be on the machine's engine already
# (deploy/local/compose-ci.sh pulls it or builds a stand-in). Removes everything it created
# (engines, containers, volumes, namespaces, files) on exit, whatever happens; the machine's
# own engine keeps its images and nothing else changes there. Prints how long it took.
#
# Settings: KEEP_LOGS=DIR (copy the logs there before cleaning up).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
readonly ROOT
readonly RUN_ID=$$
# shellcheck source=rehearsal-lib.sh
source "$ROOT/deploy/local/rehearsal-lib.sh"
readonly AZURE=$ROOT/deploy/azure PROBE=$ROOT/deploy/local/amqp_probe.py
# Where cloud-init puts the stack and the unit on a VM; under each VM's root here.
readonly COC_DIR=/opt/change-of-circumstances
readonly UNIT=/etc/systemd/system/change-of-circumstances.service
# The images `docker compose build` makes from the Dockerfile, and the name deploy.sh renders
# for each (PRODUCER_IMAGE, CONSUMER_IMAGE in the VMs' .env).
readonly LOCAL_PRODUCER_IMAGE=change-of-circumstances/producer:local
readonly LOCAL_CONSUMER_IMAGE=change-of-circumstances/consumer:local
# deploy.sh's REGISTRY: a name that resolves nowhere, so a pull could never succeed.
readonly REGISTRY=rehearsal.invalid/coc
# The official image's rabbitmq user, which cloud-init's runcmd gives the definitions to.
readonly OFFICIAL_RABBITMQ_UID=999

WORK=''
CAPTURE_PID=''
STARTED=$SECONDS
declare -A ENGINE_PID=()

# ---------------------------------------------------------------------------- the VMs

vm_ns() { if [[ $1 == vm1 ]]; then echo "$VM1_NS"; else echo "$VM2_NS"; fi; }
vm_root() { printf '%s/%s/root' "$WORK" "$1"; }
stack_dir() { printf '%s%s' "$(vm_root "$1")" "$COC_DIR"; }
# Short, and outside $WORK: a unix socket's path may not exceed 108 bytes.
exec_root() { printf '/run/%s' "$(vm_ns "$1")"; }

on_vm() { # vm command...: the command, with the VM's engine as docker's
  local vm=$1
  shift
  DOCKER_HOST="unix://$(exec_root "$vm")/docker.sock" "$@"
}

compose_on() { # vm compose-argument...: docker compose in the VM's stack directory
  local vm=$1
  shift
  (cd "$(stack_dir "$vm")" && on_vm "$vm" docker compose "$@")
}

env_value() { # vm name: a setting of the VM's .env
  awk -v name="$2" 'index($0, name "=") == 1 { print substr($0, length(name) + 2) }' "$(stack_dir "$1")/.env"
}

start_engine() { # vm
  local vm=$1 root
  root=$(exec_root "$vm")
  mkdir -p "$root"
  # nsenter, not `ip netns exec`: that remounts /sys, and dockerd would not find the cgroups.
  # The daemon.json is the one cloud-init wrote. The containers go into a cgroup named after
  # the namespace, which cleanup (and a later run, if this one is killed) empties.
  nsenter --net="/run/netns/$(vm_ns "$vm")" dockerd \
    --config-file "$(vm_root "$vm")/etc/docker/daemon.json" \
    --data-root "$WORK/$vm/docker" --exec-root "$root" --pidfile "$root/dockerd.pid" \
    -H "unix://$root/docker.sock" --cgroup-parent "/$(vm_ns "$vm")" \
    >>"$WORK/logs/dockerd-$vm.log" 2>&1 &
  ENGINE_PID[$vm]=$!
  local deadline=$((SECONDS + 60))
  until on_vm "$vm" docker info >/dev/null 2>&1; do
    kill -0 "${ENGINE_PID[$vm]}" 2>/dev/null || die "the Docker engine of $vm exited (logs/dockerd-$vm.log)"
    ((SECONDS < deadline)) || die "the Docker engine of $vm did not answer within 60 s"
    sleep 0.5
  done
}

stop_engine() { # vm: as at a shutdown, the engine stops what still runs, then exits
  local vm=$1 pid=${ENGINE_PID[$1]:-}
  [[ -n $pid ]] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 600); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset "ENGINE_PID[$vm]"
}

# ---------------------------------------------------------------------------- cleanup

show_logs_of_failure() {
  local vm
  for vm in vm1 vm2; do
    [[ -n ${ENGINE_PID[$vm]:-} ]] || continue
    printf '\n--- docker compose logs on %s (last lines)\n' "$vm" >&2
    compose_on "$vm" logs --no-color --tail 15 >&2 2>&1 || true
  done
  show_last_lines 10 "$WORK"/logs/*.log
}

cleanup() {
  local status=$?
  set +e
  trap - EXIT INT TERM
  if ((status != 0)) && [[ -n $WORK ]]; then
    show_logs_of_failure
  fi
  log "Cleaning up"
  local vm ns mount pid
  for vm in vm2 vm1; do
    stop_engine "$vm"
  done
  for ns in "${namespaces_created[@]}"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do
      kill -KILL "$pid" 2>/dev/null
    done
    kill_cgroup "$ns"
  done
  if [[ -n $WORK ]]; then
    # What a killed engine could not unmount (its containers' file systems, its volumes).
    while IFS= read -r mount; do
      umount -l "$mount" 2>/dev/null
    done < <(awk -v work="$WORK/" 'index($2, work) == 1 { print $2 }' /proc/mounts | sort -r)
    if [[ -n ${KEEP_LOGS:-} ]]; then
      mkdir -p "$KEEP_LOGS" && cp -r "$WORK/logs/." "$KEEP_LOGS/" && echo "Logs copied to $KEEP_LOGS."
    fi
    rm -rf "$WORK"
  fi
  for ns in "${namespaces_created[@]}"; do
    rm -rf "/run/$ns"
    ip netns delete "$ns" 2>/dev/null
  done
  echo "Removed the engines, containers, volumes, namespaces and files of this rehearsal."
  printf 'rehearse-vms.sh took %d s (exit %d).\n' $((SECONDS - STARTED)) "$status"
  exit "$status"
}

# ---------------------------------------------------------------------------- preparing

check_prerequisites() {
  ((EUID == 0)) || die "run as root (it creates network namespaces and Docker engines)"
  local tool
  for tool in ip nsenter dockerd docker curl python3 openssl tcpdump; do
    command -v "$tool" >/dev/null || die "$tool is missing"
  done
  docker compose version >/dev/null 2>&1 || die "docker compose (v2) is missing"
  python3 -c 'import yaml, pika' 2>/dev/null || die "python3 yaml and pika are missing (deploy/install-check-tools.sh)"
  docker info >/dev/null 2>&1 || die "no Docker engine answers on this machine (its images go to the VMs' engines)"
}

broker_image() { sed -n 's/^x-rabbitmq-image: &rabbitmq-image //p' "$ROOT/docker-compose.yml"; }

# With compose, as docker-compose.yml builds them: compose builds with the engine's BuildKit
# (the Dockerfile needs it, and its cache is the one `docker compose build` filled), where a
# plain `docker build` without buildx falls back to the legacy builder.
build_images() {
  log "The images: built from the Dockerfile as docker compose builds them"
  local t=$SECONDS
  cat >"$WORK/build.yaml" <<EOF
services:
  producer: { build: { context: "$ROOT", target: producer }, image: "$LOCAL_PRODUCER_IMAGE" }
  consumer: { build: { context: "$ROOT", target: consumer }, image: "$LOCAL_CONSUMER_IMAGE" }
EOF
  docker compose --file "$WORK/build.yaml" --project-name "coc-rehearse-vms-$RUN_ID" build --quiet \
    >"$WORK/logs/build.log" 2>&1 || die "building the images failed (logs/build.log)"
  pass "producer and consumer images built in $((SECONDS - t)) s"
  docker image inspect "$(broker_image)" >/dev/null 2>&1 ||
    die "no $(broker_image) on this machine's engine: docker pull it (or deploy/local/compose-ci.sh, which builds a stand-in where no registry answers)"
}

make_workdir() {
  WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/coc-rehearse-vms.XXXXXX")
  mkdir -p "$WORK"/{logs,state,fakes,vm-fakes,vm1/root,vm2/root}
  # deploy.sh's dry run may read the Azure account and nothing else; a VM's `cloud-init
  # status` and `systemctl` for deliver-secrets.sh, which only records what it is asked.
  cp "$AZURE/testing/fake-az" "$WORK/fakes/az"
  cp "$AZURE/testing/fake-docker" "$WORK/fakes/docker"
  printf '#!/bin/sh\nexit 0\n' >"$WORK/vm-fakes/cloud-init"
  # shellcheck disable=SC2016 # expanded by the fake, not here
  printf '#!/bin/sh\necho "$*" >>"$SYSTEMCTL_LOG"\n[ "$1" != is-active ]\n' >"$WORK/vm-fakes/systemctl"
  chmod +x "$WORK"/fakes/* "$WORK"/vm-fakes/*
}

# deploy.sh's dry run: the same code and variables as a real deployment render each VM's
# cloud-config (and the passwords, kept in its state directory); its plan is kept in logs/.
render_deployment() {
  log "Rendering the VMs' files: DRY_RUN=1 deploy/azure/deploy.sh (fake az)"
  mkdir -p "$WORK/home/.ssh"
  echo "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIRehearsalKeyOnlyRehearsalKeyOnlyRehears rehearsal" \
    >"$WORK/home/.ssh/id_ed25519.pub"
  env -i PATH="$WORK/fakes:$PATH" HOME="$WORK/home" LANG=C.UTF-8 DRY_RUN=1 \
    STATE_DIR="$WORK/state" OPERATOR_IP="$OPERATOR_IP" REGISTRY="$REGISTRY" \
    VM1_PRIVATE_IP="$VM1_PRIVATE_IP" VM2_PRIVATE_IP="$VM2_PRIVATE_IP" \
    SSH_PUBLIC_KEY_FILE="$WORK/home/.ssh/id_ed25519.pub" \
    "$AZURE/deploy.sh" >"$WORK/logs/deploy-plan.log" 2>&1 ||
    die "DRY_RUN=1 deploy.sh failed (logs/deploy-plan.log)"
  pass "rendered $WORK/state/cloud-init/vm1.yaml and vm2.yaml"
}

# The --parameters of the plan's run commands named NAME (`az vm run-command create`), one
# line per command: "vm1 PARAMETER...".
planned_run_commands() { # name
  python3 - "$WORK/logs/deploy-plan.log" "$1" <<'EOF'
import shlex, sys
for line in open(sys.argv[1]):
    if not line.startswith("+ az vm run-command create "):
        continue
    words = shlex.split(line[2:])
    if words[words.index("--run-command-name") + 1] != sys.argv[2]:
        continue
    vm = words[words.index("--vm-name") + 1]
    start = words.index("--parameters") + 1
    end = next((i for i in range(start, len(words)) if words[i].startswith("--")), len(words))
    print("vm1" if vm.endswith("vm1") else "vm2", *words[start:end])
EOF
}

play_cloud_init() { # vm
  local vm=$1
  python3 "$ROOT/deploy/local/play_cloud_init.py" "$WORK/state/cloud-init/$vm.yaml" "$(vm_root "$vm")" \
    >"$WORK/$vm/runcmd" || die "cannot play $vm's cloud-config"
  pass "$vm: write_files written under $(vm_root "$vm") ($(find "$(vm_root "$vm")" -type f | wc -l) files)"
}

# The images as the VM would pull them: under the names of its .env, and no other.
load_images() { # vm
  local vm=$1 name local_image image images=() renames=()
  for name in RABBITMQ_IMAGE PRODUCER_IMAGE CONSUMER_IMAGE; do
    image=$(env_value "$vm" "$name")
    [[ -n $image ]] || continue
    case $name in
      RABBITMQ_IMAGE) local_image=$(broker_image) ;;
      PRODUCER_IMAGE) local_image=$LOCAL_PRODUCER_IMAGE ;;
      CONSUMER_IMAGE) local_image=$LOCAL_CONSUMER_IMAGE ;;
    esac
    images+=("$local_image")
    renames+=("$local_image=$image")
  done
  # One stream, so that layers the images share go once.
  docker save "${images[@]}" | on_vm "$vm" docker load --quiet >/dev/null || die "cannot load the images into $vm"
  local rename
  for rename in "${renames[@]}"; do
    [[ ${rename%%=*} == "${rename#*=}" ]] && continue
    on_vm "$vm" docker tag "${rename%%=*}" "${rename#*=}"
    on_vm "$vm" docker image rm "${rename%%=*}" >/dev/null
  done
  pass "$vm's engine has $(on_vm "$vm" docker image ls --format '{{.Repository}}:{{.Tag}}' | sort | paste -sd ' ')"
}

# runcmd, line by line: what can run outside a VM runs on the VM's root; the systemd lines are
# what this rehearsal does with the unit (start_unit). A line it does not know stops it.
play_runcmd() { # vm
  local vm=$1 line words
  while IFS= read -r line; do
    read -r -a words <<<"$line"
    case $line in
      "chown -R 999:999 $COC_DIR/rabbitmq/definitions")
        chown -R 999:999 "$(vm_root "$vm")${words[3]}"
        adapt_definitions_owner "$vm"
        ;;
      "systemctl daemon-reload") ;;
      "systemctl enable --now --no-block change-of-circumstances.service") ;;
      *) die "$vm's runcmd has a line this rehearsal does not play: $line (play it here, or list it in deploy/README.md)" ;;
    esac
    pass "$vm runcmd: $line"
  done <"$WORK/$vm/runcmd"
}

# The uid of the broker image's rabbitmq user: 999 in the official image.
rabbitmq_uid() { # vm
  on_vm "$1" docker run --rm --entrypoint id "$(env_value "$1" RABBITMQ_IMAGE)" -u rabbitmq
}

# The definitions (0600) go to the official image's rabbitmq user, 999. A stand-in image
# built from Debian's package (deploy/local/compose-ci.sh, where no registry answers) has
# another uid: give them to that one, and say so.
adapt_definitions_owner() { # vm
  local uid
  uid=$(rabbitmq_uid "$1")
  if [[ $uid != "$OFFICIAL_RABBITMQ_UID" ]]; then
    chown -R "$uid:$uid" "$(stack_dir "$1")/rabbitmq/definitions"
    echo "    note: this $(env_value "$1" RABBITMQ_IMAGE) is not the official image: its rabbitmq user is uid $uid, not $OFFICIAL_RABBITMQ_UID; the definitions were given to $uid"
  fi
}

deliver_secrets() { # vm name...: vm/deliver-secrets.sh as az vm run-command runs it
  local vm=$1 name values=()
  shift
  for name in "$@"; do
    values+=("$name=$(awk -v name="$name" 'index($0, name "=") == 1 { print substr($0, length(name) + 2) }' "$WORK/state/secrets.env")")
  done
  env -i PATH="$WORK/vm-fakes:$PATH" SYSTEMCTL_LOG="$WORK/$vm/systemctl.log" \
    COC_DIR="$(stack_dir "$vm")" SECRET_NAMES="$*" "${values[@]}" \
    bash "$AZURE/vm/deliver-secrets.sh" >>"$WORK/logs/deliver-secrets-$vm.log" 2>&1 ||
    die "deliver-secrets.sh failed on $vm (logs/deliver-secrets-$vm.log)"
  grep -qx 'restart --no-block change-of-circumstances.service' "$WORK/$vm/systemctl.log" ||
    die "deliver-secrets.sh on $vm did not restart the unit"
  pass "$vm: $* in .env (mode $(stat -c %a "$(stack_dir "$vm")/.env")); the unit is (re)started"
}

# vm/broker-certificate.sh on VM 1's root, as the plan's run commands run it (their
# parameters, with RABBITMQ_UID of the image here: 999 is the official image's), around
# sign-broker-request.sh with the dry run's CA, as deploy.sh does between them.
issue_broker_certificate() {
  local request=() answer certificate tls_dir
  read -r -a request <<<"$(planned_run_commands broker-certificate | awk '$1 == "vm1" && $2 == "ACTION=request" { $1 = ""; print; exit }')"
  ((${#request[@]})) || die "the plan has no broker-certificate request on vm1 (logs/deploy-plan.log)"
  answer=$(on_vm1_root "${request[@]}") || die "broker-certificate.sh ACTION=request failed (logs/broker-certificate.log)"
  [[ $answer == "request: "* ]] || die "broker-certificate.sh ACTION=request answered \"$answer\""
  certificate=$(base64 -d <<<"${answer#request: }" | sign_as_deploy_sh | base64 -w0)
  [[ -n $certificate ]] || die "sign-broker-request.sh failed (logs/broker-certificate.log)"
  # A certificate the same CA signed for another key (another VM's request) is refused.
  local stranger
  stranger=$(openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout /dev/null \
    -subj /CN=stranger 2>/dev/null | sign_as_deploy_sh | base64 -w0)
  if on_vm1_root ACTION=install "BROKER_CERTIFICATE=$stranger" >/dev/null; then
    fail "vm1: broker-certificate.sh installed a certificate for another key"
  else
    pass "vm1: broker-certificate.sh refuses a certificate for another key"
  fi
  on_vm1_root ACTION=install "BROKER_CERTIFICATE=$certificate" >/dev/null ||
    die "broker-certificate.sh ACTION=install failed (logs/broker-certificate.log)"
  tls_dir=$(stack_dir vm1)/rabbitmq/tls
  pass "vm1: the broker's key made there (mode $(stat -c %a "$tls_dir/broker.key")), its certificate signed by the dry run's CA for $(openssl x509 -in "$tls_dir/broker.pem" -noout -ext subjectAltName | tail -1 | xargs)"
  if [[ $(on_vm1_root "${request[@]}") == "not due: "* ]]; then
    pass "vm1: asked again, broker-certificate.sh answers that the certificate is not due (a re-run of deploy.sh keeps it)"
  else
    fail "vm1: a second request did not answer \"not due\""
  fi
}

sign_as_deploy_sh() { # request on stdin: sign-broker-request.sh with the dry run's settings
  env -i PATH="$PATH" HOME="$WORK/home" STATE_DIR="$WORK/state" \
    VM1_PRIVATE_IP="$VM1_PRIVATE_IP" VM2_PRIVATE_IP="$VM2_PRIVATE_IP" \
    "$AZURE/sign-broker-request.sh" 2>>"$WORK/logs/broker-certificate.log"
}

on_vm1_root() { # parameter...: vm/broker-certificate.sh with these settings, on vm1's root
  env -i PATH="$WORK/vm-fakes:$PATH" SYSTEMCTL_LOG="$WORK/vm1/systemctl.log" \
    COC_DIR="$(stack_dir vm1)" RABBITMQ_UID="$(rabbitmq_uid vm1)" "$@" \
    bash "$AZURE/vm/broker-certificate.sh" 2>>"$WORK/logs/broker-certificate.log"
}

# ---------------------------------------------------------------------------- the unit

unit_lines() { # vm key: the values of KEY= in the VM's unit file
  awk -v key="$2" 'index($0, key "=") == 1 { print substr($0, length(key) + 2) }' "$(vm_root "$1")$UNIT"
}

# One Exec line of the unit, as systemd runs it: in its WorkingDirectory, a leading "-" lets
# it fail. /usr/bin/docker is this machine's CLI talking to the VM's engine.
run_unit_line() { # vm line
  local vm=$1 line=$2 may_fail=0 words workdir
  if [[ $line == -* ]]; then
    may_fail=1
    line=${line#-}
  fi
  read -r -a words <<<"$line"
  case ${words[0]} in
    /usr/bin/docker) words[0]=docker ;;
    "$COC_DIR"/*) words[0]=$(vm_root "$vm")${words[0]} ;;
    *) die "the unit runs $line, which this rehearsal does not play" ;;
  esac
  workdir=$(vm_root "$vm")$(unit_lines "$vm" WorkingDirectory)
  if (cd "$workdir" && on_vm "$vm" "${words[@]}") >>"$WORK/logs/unit-$vm.log" 2>&1; then
    return 0
  fi
  ((may_fail)) || die "$vm: the unit's $line failed (logs/unit-$vm.log)"
}

start_unit() { # vm: ExecStartPre, then ExecStart
  local vm=$1 line t=$SECONDS
  while IFS= read -r line; do run_unit_line "$vm" "$line"; done < <(unit_lines "$vm" ExecStartPre)
  while IFS= read -r line; do run_unit_line "$vm" "$line"; done < <(unit_lines "$vm" ExecStart)
  pass "$vm: the unit started the stack in $((SECONDS - t)) s ($(unit_lines "$vm" ExecStart))"
}

stop_unit() { # vm
  local vm=$1 line
  while IFS= read -r line; do run_unit_line "$vm" "$line"; done < <(unit_lines "$vm" ExecStop)
  pass "$vm: the unit stopped the stack ($(unit_lines "$vm" ExecStop))"
}

# ---------------------------------------------------------------------------- checks

queue_depth() { # queue: ready + unacknowledged messages, as the broker on vm1 counts them
  compose_on vm1 exec -T rabbitmq rabbitmqctl --quiet list_queues -p "$(env_value vm1 RABBITMQ_VHOST)" \
    --no-table-headers name messages_ready messages_unacknowledged 2>/dev/null |
    awk -v queue="$1" '$1 == queue { print $2 + $3; found = 1 } END { if (!found) print -1 }'
}

answers_tcp() { # runner host port: a TCP connection is accepted within 3 s
  "$1" timeout 3 bash -c "exec 3<>/dev/tcp/$2/$3" 2>/dev/null
}

expect_port() { # open|closed runner host port description
  local want=$1 got=closed
  answers_tcp "$2" "$3" "$4" && got=open
  if [[ $got == "$want" ]]; then
    pass "$5: $want"
  else
    fail "$5: $got, expected $want"
  fi
}

expect_http() { # runner url description: 200 expected
  local status
  status=$(http_status "$1" "$2")
  if [[ $status == 200 ]]; then
    pass "$3: answers"
  else
    fail "$3: ${status:-no answer}, expected 200"
  fi
}

prove_exposure() {
  log "What answers where"
  expect_http from_internet "http://$VM1_PUBLIC_IP:$PRODUCER_PORT/healthz" \
    "the producer on VM 1's public address (8080), from the internet side"
  expect_port closed from_internet "$VM1_PUBLIC_IP" 5671 "AMQP over TLS 5671 from the internet side"
  expect_port closed from_internet "$VM1_PUBLIC_IP" 5672 "AMQP 5672 from the internet side"
  expect_port closed from_internet "$VM1_PUBLIC_IP" 15672 "management 15672 from the internet side"
  expect_port open in_vm2 "$VM1_PRIVATE_IP" 5671 "AMQP over TLS 5671 on VM 1's private address, from vm2"
  expect_port closed in_vm2 "$VM1_PRIVATE_IP" 5672 "plain AMQP 5672 on VM 1's private address, from vm2"
  expect_port closed in_vm2 "$VM1_PRIVATE_IP" 15672 "management 15672 on VM 1's private address, from vm2"
  expect_port closed in_vm1 "$VM1_PRIVATE_IP" 15672 "management 15672 on VM 1's private address, from vm1"
  expect_http in_vm1 "http://127.0.0.1:15672/" "management 15672 on VM 1's loopback (the SSH tunnel's end)"
  expect_http in_vm1 "http://$VM2_PRIVATE_IP:$CONSUMER_PORT/readyz" \
    "the consumer's API on VM 2's private address, from vm1 (the synchronous path)"
}

# A URL of the broker as vm2 reaches it: TLS on VM 1's private address.
broker_url() { # user password vhost
  printf 'amqps://%s:%s@%s:5671/%s' "$1" "$2" "$VM1_PRIVATE_IP" "$3"
}

# The probe from vm2, trusting CA_FILE (or the system's CAs if it is empty).
probe_from_vm2() { # ca-file probe-argument...
  local ca=$1
  shift
  in_vm2 env AMQP_CA_FILE="$ca" python3 "$PROBE" "$@"
}

prove_tls() {
  log "TLS between the VMs: the broker's certificate, and who trusts it"
  local vhost user password ca other_ca
  vhost=$(env_value vm1 RABBITMQ_VHOST)
  user=$(env_value vm2 CONSUMER_AMQP_USER)
  password=$(env_value vm2 CONSUMER_AMQP_PASSWORD)
  ca=$(stack_dir vm2)/tls/ca.pem
  expect_accepted "the consumer's user over TLS from vm2, trusting the CA in VM 2's custom data (tls/ca.pem)" \
    probe_from_vm2 "$ca" login "$(broker_url "$user" "$password" "$vhost")"
  # A CA of the same name with another key, as an impostor would make: not the one that signed.
  (
    source "$ROOT/deploy/tls/certificates.sh"
    make_ca "$WORK/other-ca" "$(openssl x509 -in "$ca" -noout -subject | sed 's/^subject=.*CN *= *//')"
  )
  other_ca=$WORK/other-ca/ca.pem
  expect_probe certificate-refused "from vm2 trusting another CA of the same name" \
    probe_from_vm2 "$other_ca" login "$(broker_url "$user" "$password" "$vhost")"
  expect_probe certificate-refused "from vm2 trusting the system's CAs only" \
    probe_from_vm2 "" login "$(broker_url "$user" "$password" "$vhost")"
  if in_vm2 openssl s_client -connect "$VM1_PRIVATE_IP:5671" -CAfile "$ca" -verify_ip "$VM1_PRIVATE_IP" \
    -verify_return_error </dev/null >"$WORK/logs/s_client.log" 2>&1; then
    pass "openssl s_client from vm2: $(grep -m1 -o 'Protocol *: *TLSv1[.0-9]*\|New, TLSv1[.0-9]*' "$WORK/logs/s_client.log" | tail -1), certificate verified for $VM1_PRIVATE_IP"
  else
    fail "openssl s_client from vm2 could not verify the broker's certificate (logs/s_client.log)"
  fi
  # The consumer's own connection: TLS, from VM 2's address.
  local connections
  connections=$(compose_on vm1 exec -T rabbitmq rabbitmqctl --quiet list_connections --no-table-headers \
    user peer_host ssl ssl_protocol 2>/dev/null | awk -v user="$user" '$1 == user')
  if [[ -n $connections ]] && ! awk '$2 != vm2 || $3 != "true" { bad = 1 } END { exit !bad }' vm2="$VM2_PRIVATE_IP" <<<"$connections"; then
    pass "the consumer's connections are TLS from $VM2_PRIVATE_IP: $(awk '{ print $4 }' <<<"$connections" | sort -u | paste -sd ' ')"
  else
    fail "the consumer's connections are not all TLS from $VM2_PRIVATE_IP: ${connections:-none}"
  fi
}

# tcpdump on vm2's side of the link between the VMs, for as long as the demo runs.
start_capture() {
  local interface
  interface=$(ip -n "$VM2_NS" -o -4 address show | awk -v ip="$VM2_PRIVATE_IP/" 'index($4, ip) == 1 { print $2 }')
  [[ -n $interface ]] || die "no interface with $VM2_PRIVATE_IP in vm2"
  # `ip netns exec` becomes tcpdump (same pid), so $! is what to stop; not in_vm2, a function,
  # which would run in a subshell of its own.
  ip netns exec "$VM2_NS" tcpdump -i "$interface" -U -s 0 -w "$WORK/link.pcap" \
    "host $VM1_PRIVATE_IP and host $VM2_PRIVATE_IP" >>"$WORK/logs/tcpdump.log" 2>&1 &
  CAPTURE_PID=$!
  wait_for 10 "tcpdump is capturing" grep -q 'listening on' "$WORK/logs/tcpdump.log" ||
    die "tcpdump did not start (logs/tcpdump.log)"
  pass "tcpdump records the link between vm1 and vm2 ($interface)"
}

# What the link carried: AMQP only over TLS, with no customer data, user name or password in
# it; and, as the proof that a search of the capture finds clear text, the consumer's HTTP API
# (the synchronous path, plain HTTP within the VNet), which carries an address in clear.
prove_nothing_in_clear() {
  in_vm1 curl -s --max-time 5 "http://$VM2_PRIVATE_IP:$CONSUMER_PORT/api/v1/customers/C-1/address" >/dev/null
  sleep 1 # tcpdump -U writes each packet as it comes; a second lets the last ones land
  # TERM: a background job of a script ignores INT. tcpdump writes what it has and exits.
  kill -TERM "$CAPTURE_PID" 2>/dev/null
  wait "$CAPTURE_PID" 2>/dev/null || true
  log "What crossed the link between the VMs (tcpdump on vm2's side)"
  local amqps=$WORK/amqps.pcap plain=$WORK/amqp.pcap api=$WORK/api.pcap packets secret found
  tcpdump -r "$WORK/link.pcap" -w "$amqps" 'tcp port 5671' 2>/dev/null
  tcpdump -r "$WORK/link.pcap" -w "$plain" 'tcp port 5672' 2>/dev/null
  tcpdump -r "$WORK/link.pcap" -w "$api" "tcp port $CONSUMER_PORT" 2>/dev/null
  packets=$(tcpdump -r "$amqps" 2>/dev/null | wc -l)
  if ((packets >= 20)); then
    pass "$packets packets of AMQP over TLS (5671) during the demo"
  else
    fail "only $packets packets on 5671 during the demo: the capture missed the consumer's traffic"
  fi
  if [[ $(tcpdump -r "$plain" 2>/dev/null | wc -l) == 0 ]]; then
    pass "no packet of plain AMQP (5672) between the VMs"
  else
    fail "plain AMQP (5672) crossed the link"
  fi
  found=()
  for secret in "Church Street" "PR1 3BQ" "$(env_value vm2 CONSUMER_AMQP_USER)" "$(env_value vm2 CONSUMER_AMQP_PASSWORD)"; do
    grep -aqF -- "$secret" "$amqps" && found+=("$secret")
  done
  if ((${#found[@]} == 0)); then
    pass "none of: the addresses posted, a postcode, the consumer's user name, its password, in the AMQP traffic"
  else
    fail "in clear in the AMQP traffic between the VMs: ${found[*]}"
  fi
  if grep -aqF "1 Church Street" "$api"; then
    pass "the search finds clear text where there is some: C-1's address in the consumer's HTTP API (plain HTTP within the VNet; deploy/README.md)"
  else
    fail "the search did not find C-1's address in the consumer's HTTP API traffic: the capture or the search is broken"
  fi
}

prove_guest_is_refused() {
  log "guest is refused from vm2"
  local vhost ca
  vhost=$(env_value vm1 RABBITMQ_VHOST)
  ca=$(stack_dir vm2)/tls/ca.pem
  if compose_on vm1 exec -T rabbitmq rabbitmqctl --quiet list_users 2>/dev/null | grep -qw guest; then
    fail "the broker has a guest user although definitions were loaded at first boot"
  else
    pass "the broker has no guest user (definitions loaded at first boot)"
  fi
  expect_refused "guest/guest from vm2" probe_from_vm2 "$ca" login "$(broker_url guest guest %2f)"
  # A guest added by hand, with every permission, is still kept to the broker's own host.
  compose_on vm1 exec -T rabbitmq rabbitmqctl --quiet add_user guest guest >/dev/null
  compose_on vm1 exec -T rabbitmq rabbitmqctl --quiet set_permissions -p "$vhost" guest '.*' '.*' '.*' >/dev/null
  expect_refused "guest/guest from vm2, with a guest user present" \
    probe_from_vm2 "$ca" login "$(broker_url guest guest "$vhost")"
  compose_on vm1 exec -T rabbitmq rabbitmqctl --quiet delete_user guest >/dev/null
}

all_applied() { # first last: C-first..C-last applied with "<i> Church Street" on vm2
  local i missing=0
  for ((i = $1; i <= $2; i++)); do
    applied "$CONSUMER_PORT" "C-$i" "$i Church Street" || missing=$((missing + 1))
  done
  ((missing == 0))
}

post_changes() { # first last
  local i accepted=0
  for ((i = $1; i <= $2; i++)); do
    post_change "C-$i" "$i Church Street" "$(demo_postcode "$i")" && accepted=$((accepted + 1))
  done
  local which="C-$1..C-$2"
  (($1 == $2)) && which="C-$1"
  ((accepted == $2 - $1 + 1)) && pass "$which accepted (202) from the internet side"
}

consumer_container() { # stop|start: what a user does on VM 2, a failure counted
  if compose_on vm2 "$1" consumer >>"$WORK/logs/demo.log" 2>&1; then
    pass "docker compose $1 consumer (vm2)"
  else
    fail "docker compose $1 consumer (vm2) failed (logs/demo.log)"
  fi
}

run_demo() {
  local queue
  queue=$(env_value vm1 QUEUE)
  log "Demo: post a change to VM 1's public address; the consumer on vm2 applies it"
  post_changes 0 0
  wait_for 30 "C-0 applied on vm2" all_applied 0 0 && pass "C-0 applied by the consumer on vm2"

  log "Demo: stop the consumer's container on vm2; the queue on vm1 fills"
  consumer_container stop
  post_changes 1 20
  wait_for 20 "$queue holds 20 messages" queue_is "$queue" 20 && pass "$queue on vm1 holds 20 messages"

  log "Demo: start it again; the queue drains and every change is applied"
  consumer_container start
  wait_for 60 "the queue drains" queue_is "$queue" 0 && pass "$queue drained to 0"
  wait_for 10 "C-1..C-20 applied" all_applied 1 20 && pass "C-1..C-20 applied on vm2"
}

prove_reboot() {
  local queue vm
  queue=$(env_value vm1 QUEUE)
  log "Reboot: five changes wait in the queue; both VMs stop and start through the unit"
  consumer_container stop
  post_changes 21 25
  wait_for 20 "$queue holds 5 messages" queue_is "$queue" 5 && pass "$queue holds C-21..C-25"
  for vm in vm2 vm1; do
    stop_unit "$vm"
    stop_engine "$vm"
  done
  pass "both engines stopped (the VMs are down)"
  for vm in vm1 vm2; do
    start_engine "$vm"
    if [[ -z $(on_vm "$vm" docker ps --quiet) ]]; then
      pass "$vm's engine is up with nothing running: the unit is what brings the stack back"
    else
      fail "$vm's engine started containers by itself after the unit's stop"
    fi
  done
  for vm in vm1 vm2; do start_unit "$vm"; done
  wait_until_ready from_internet "http://$VM1_PUBLIC_IP:$PRODUCER_PORT/readyz" "the producer after the reboot"
  wait_for 60 "the five queued changes drain after the reboot" queue_is "$queue" 0 &&
    pass "the 5 messages survived the broker's restart and drained"
  wait_for 10 "C-0..C-25 applied after the reboot" all_applied 0 25 &&
    pass "C-0..C-25 all there: the consumer's store survived the reboot"
  post_changes 26 26
  wait_for 30 "C-26 applied after the reboot" all_applied 26 26 && pass "a change after the reboot is applied"
}

main() {
  check_prerequisites
  clean_up_on_exit
  remove_stale_rehearsals
  make_workdir
  build_images
  create_networks
  render_deployment

  local vm secret_names
  log "Each VM: cloud-init's files, its engine, its images, its runcmd, its passwords"
  for vm in vm1 vm2; do
    play_cloud_init "$vm"
    start_engine "$vm"
    pass "$vm: Docker engine up, in its own network namespace, with cloud-init's daemon.json"
    load_images "$vm"
    play_runcmd "$vm"
  done
  issue_broker_certificate
  while read -r vm secret_names; do
    # shellcheck disable=SC2086 # the names, one word each
    deliver_secrets "$vm" ${secret_names#SECRET_NAMES=}
  done < <(planned_run_commands deliver-secrets)

  log "Starting each VM's stack with the unit's commands"
  start_unit vm1
  start_unit vm2

  prove_exposure
  prove_tls
  prove_guest_is_refused
  start_capture
  run_demo
  prove_nothing_in_clear
  prove_reboot

  if ((failures)); then
    log "Rehearsal FAILED: $failures check(s) did not hold"
    exit 1
  fi
  log "Rehearsal passed: every check held"
}

main "$@"
