#!/usr/bin/env bash
# A RabbitMQ 4 node beside the machine's own broker, for running the test suite against the
# major version we ship: Debian trixie's rabbitmq-server (4.0.x) in a debootstrap'd root
# filesystem, run under chroot as node rabbit4@localhost on its own ports (AMQP 5673,
# management 15673, distribution 25673; the host's epmd). Needs root, debootstrap and the
# Debian mirror; no Docker and no image registry.
#
#   e2e/scripts/rabbitmq4.sh start     install if needed (cached), start, wait until it serves
#   e2e/scripts/rabbitmq4.sh env       print the variables that point the tests at it
#   e2e/scripts/rabbitmq4.sh ctl ARGS  rabbitmqctl against it (what TEST_RABBITMQCTL runs)
#   e2e/scripts/rabbitmq4.sh stop      stop the node (the cached root filesystem stays)
#
# A three-node cluster for the tests of losing a node, from the same root filesystem: nodes
# rabbit-c1..3@localhost, AMQP 5681..5683, management 15681..15683, distribution
# 25681..25683, one Erlang cookie, clustered with rabbit-c1. As in production they pause a
# minority (`cluster_partition_handling = pause_minority`); unlike production they notice a
# silent peer within about 10 s (`net_ticktime` 10, default 60), so the tests stay short.
# Node N opens its distribution connections from 127.0.1.N, so that iptables can cut one
# node off from the others on loopback and leave every other connection alone.
#
#   e2e/scripts/rabbitmq4.sh cluster start        start every node that is down, heal any
#                                                 partition, cluster them
#   e2e/scripts/rabbitmq4.sh cluster env          TEST_CLUSTER_AMQP_ADDR, TEST_CLUSTER_NODES, ...
#   e2e/scripts/rabbitmq4.sh cluster kill N       SIGKILL node N's Erlang VM (a machine lost)
#   e2e/scripts/rabbitmq4.sh cluster partition N  drop all distribution traffic of node N (its
#                                                 AMQP port stays open: clients still reach it)
#   e2e/scripts/rabbitmq4.sh cluster heal         let it through again
#   e2e/scripts/rabbitmq4.sh cluster stop         stop every node
#
#   eval "$(e2e/scripts/rabbitmq4.sh env)" && cargo test --workspace
#
# The single node also listens for AMQP over TLS on 127.0.0.1:5674, with a certificate for
# localhost and 127.0.0.1 signed by a test CA made here with openssl (in its root's
# /etc/rabbitmq/tls); `env` names the CA (TEST_AMQP_CA_FILE) and another CA that did not sign
# it (TEST_AMQP_IMPOSTOR_CA_FILE) for the tests of amqps://. A node started before this
# listener existed is restarted once to get it.
#
# The root filesystem is cached outside the clone (RABBITMQ4_ROOT); a first install takes
# about a minute, a start from the cache a few seconds. Delete the directory to reinstall.
set -euo pipefail

ROOT=${RABBITMQ4_ROOT:-/var/cache/change-of-circumstances/rabbitmq4-trixie}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
NODE=rabbit4@localhost
AMQP_PORT=5673
MANAGEMENT_PORT=15673
DIST_PORT=25673
TLS_PORT=5674
SELF=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
CLUSTER_SIZE=3

log() { printf 'rabbitmq4: %s\n' "$*" >&2; }
in_root() { chroot "$ROOT" "$@"; }
ctl() { in_root rabbitmqctl "$@"; }
# rabbitmqctl against a node that is down or booting can wait long: the cluster's calls are bounded.
bounded_ctl() { timeout 90 chroot "$ROOT" rabbitmqctl "$@"; }
serving() { (exec 3<>"/dev/tcp/127.0.0.1/$AMQP_PORT") 2>/dev/null && ctl -q status >/dev/null 2>&1; }
tls_serving() { (exec 3<>"/dev/tcp/127.0.0.1/$TLS_PORT") 2>/dev/null; }
TLS_DIR=$ROOT/etc/rabbitmq/tls

install() {
  [ -f "$ROOT/.installed" ] && return
  command -v debootstrap >/dev/null || {
    log "installing debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  }
  # Built beside the cache and moved into place, so an interrupted install is started again.
  local building="$ROOT.building"
  rm -rf "$building"
  mkdir -p "$(dirname "$ROOT")"
  log "debootstrap trixie into $building"
  debootstrap --variant=minbase trixie "$building" "$MIRROR" >"$building.log" 2>&1 \
    || { tail -20 "$building.log" >&2; exit 1; }
  # No service may start inside the chroot while packages install.
  printf '#!/bin/sh\nexit 101\n' >"$building/usr/sbin/policy-rc.d"
  chmod +x "$building/usr/sbin/policy-rc.d"
  log "installing rabbitmq-server"
  chroot "$building" /bin/sh -c 'apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rabbitmq-server' \
    >>"$building.log" 2>&1 || { tail -20 "$building.log" >&2; exit 1; }
  cat >"$building/etc/rabbitmq/rabbitmq-env.conf" <<CONF
NODENAME=$NODE
NODE_PORT=$AMQP_PORT
DIST_PORT=$DIST_PORT
CONF
  chroot "$building" rabbitmq-plugins enable --offline rabbitmq_management >/dev/null
  touch "$building/.installed"
  rm -rf "$ROOT"
  mv "$building" "$ROOT"
  rm -f "$building.log"
}

# A test CA, the node's certificate (localhost and 127.0.0.1 in its subject alternative
# names: clients check the name they dialled), and an impostor CA, made once.
make_certificates() {
  [ -f "$TLS_DIR/impostor-ca.pem" ] && return
  log "making a test CA and the node's TLS certificate in $TLS_DIR"
  rm -rf "$TLS_DIR"
  mkdir -p "$TLS_DIR"
  (
    cd "$TLS_DIR"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj '/CN=change-of-circumstances test CA' \
      -keyout ca.key -out ca.pem 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj '/CN=localhost' -keyout server.key -out server.csr 2>/dev/null
    printf 'subjectAltName = DNS:localhost, IP:127.0.0.1\nextendedKeyUsage = serverAuth\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile server.ext -out server.pem 2>/dev/null
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj '/CN=change-of-circumstances test CA' \
      -keyout impostor-ca.key -out impostor-ca.pem 2>/dev/null
    rm -f server.csr server.ext ca.srl ca.key impostor-ca.key
  )
  in_root chown -R rabbitmq:rabbitmq /etc/rabbitmq/tls
  chmod 0600 "$TLS_DIR/server.key"
}

# rabbitmq.conf is the single node's only (the cluster's nodes have their own files).
write_config() {
  cat >"$ROOT/etc/rabbitmq/rabbitmq.conf" <<CONF
listeners.tcp.default = $AMQP_PORT
management.tcp.port = $MANAGEMENT_PORT
listeners.ssl.default = 127.0.0.1:$TLS_PORT
ssl_options.cacertfile = /etc/rabbitmq/tls/ca.pem
ssl_options.certfile = /etc/rabbitmq/tls/server.pem
ssl_options.keyfile = /etc/rabbitmq/tls/server.key
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
CONF
}

start() {
  install
  if serving && tls_serving; then
    log "$NODE is already serving on 127.0.0.1:$AMQP_PORT (TLS $TLS_PORT)"
    return
  fi
  if serving; then
    log "$NODE has no TLS listener yet: restarting it with one"
    ctl -q stop >/dev/null
  fi
  make_certificates
  write_config
  # Erlang's memory monitor reads /proc.
  mountpoint -q "$ROOT/proc" || mount -t proc proc "$ROOT/proc"
  log "starting $NODE"
  # Every descriptor redirected, the subshell's own too: a caller reading this script's
  # output (the tests do) would otherwise wait for the node to exit.
  (cd / && exec setsid chroot "$ROOT" /usr/sbin/rabbitmq-server) \
    >"$ROOT/var/log/rabbitmq/console.log" 2>&1 </dev/null &
  for _ in $(seq 1 120); do
    if serving && tls_serving; then
      log "$NODE is serving: $(ctl -q version 2>/dev/null) on 127.0.0.1:$AMQP_PORT (TLS $TLS_PORT)"
      return
    fi
    sleep 0.5
  done
  log "$NODE did not start within 60 s; its log:"
  tail -30 "$ROOT/var/log/rabbitmq/console.log" >&2
  exit 1
}

stop() {
  [ -f "$ROOT/.installed" ] || return 0
  if serving; then
    log "stopping $NODE"
    ctl -q stop >/dev/null
  fi
  if mountpoint -q "$ROOT/proc"; then umount "$ROOT/proc"; fi
}

node_name() { echo "rabbit-c$1@localhost"; }
node_serving() { # n
  (exec 3<>"/dev/tcp/127.0.0.1/568$1") 2>/dev/null && bounded_ctl -n "$(node_name "$1")" -q status >/dev/null 2>&1
}

node_running() { # n: its Erlang VM is registered with epmd
  in_root epmd -names 2>/dev/null | grep -q "^name rabbit-c$1 at"
}

start_node() { # n
  local n=$1
  mkdir -p "$ROOT/etc/rabbitmq/cluster"
  cat >"$ROOT/etc/rabbitmq/cluster/c$n.conf" <<CONF
listeners.tcp.default = 568$n
management.tcp.port = 1568$n
cluster_partition_handling = pause_minority
CONF
  mountpoint -q "$ROOT/proc" || mount -t proc proc "$ROOT/proc"
  log "starting $(node_name "$n")"
  (cd / && exec setsid chroot "$ROOT" env RABBITMQ_NODENAME="$(node_name "$n")" \
    RABBITMQ_NODE_PORT="568$n" RABBITMQ_DIST_PORT="2568$n" \
    RABBITMQ_CONFIG_FILE="/etc/rabbitmq/cluster/c$n.conf" \
    RABBITMQ_MNESIA_BASE=/var/lib/rabbitmq/cluster \
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel net_ticktime 10 -kernel inet_dist_connect_options [{ip,{127,0,1,$n}}]" \
    /usr/sbin/rabbitmq-server) >"$ROOT/var/log/rabbitmq/console-c$n.log" 2>&1 </dev/null &
}

# The partition's rules live in a chain of their own, jumped to from OUTPUT for loopback
# only: on loopback every packet, either way, is sent by this machine.
PARTITION_CHAIN=COC_CLUSTER_PARTITION

cluster_partition() { # n
  local n=$1
  command -v iptables >/dev/null || {
    log "installing iptables"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iptables >/dev/null
  }
  cluster_heal
  iptables -N "$PARTITION_CHAIN"
  # Connections to node n's distribution listener, and those node n opened from 127.0.1.n.
  iptables -A "$PARTITION_CHAIN" -p tcp --dport "2568$n" -j DROP
  iptables -A "$PARTITION_CHAIN" -p tcp --sport "2568$n" -j DROP
  iptables -A "$PARTITION_CHAIN" -s "127.0.1.$n" -j DROP
  iptables -A "$PARTITION_CHAIN" -d "127.0.1.$n" -j DROP
  iptables -I OUTPUT -o lo -j "$PARTITION_CHAIN"
  log "$(node_name "$n") is cut off from the other nodes"
}

cluster_heal() {
  command -v iptables >/dev/null || return 0
  iptables -L "$PARTITION_CHAIN" -n >/dev/null 2>&1 || return 0
  while iptables -D OUTPUT -o lo -j "$PARTITION_CHAIN" 2>/dev/null; do :; done
  iptables -F "$PARTITION_CHAIN"
  iptables -X "$PARTITION_CHAIN"
  log "the partition is healed"
}

cluster_start() {
  install
  cluster_heal
  local n
  for n in $(seq 1 $CLUSTER_SIZE); do
    # A node that runs but does not serve (booting, or paused in a minority) is waited for.
    node_running "$n" || start_node "$n"
  done
  for n in $(seq 1 $CLUSTER_SIZE); do
    for _ in $(seq 1 120); do node_serving "$n" && break; sleep 0.5; done
    node_serving "$n" || { log "$(node_name "$n") did not start"; tail -20 "$ROOT/var/log/rabbitmq/console-c$n.log" >&2; exit 1; }
  done
  for n in $(seq 2 $CLUSTER_SIZE); do
    if ! bounded_ctl -n "$(node_name "$n")" -q cluster_status 2>/dev/null | grep -q "$(node_name 1)"; then
      log "joining $(node_name "$n") to $(node_name 1)"
      bounded_ctl -n "$(node_name "$n")" -q stop_app
      bounded_ctl -n "$(node_name "$n")" -q join_cluster "$(node_name 1)"
      bounded_ctl -n "$(node_name "$n")" -q start_app
    fi
  done
  bounded_ctl -n "$(node_name 1)" -q await_online_nodes $CLUSTER_SIZE --timeout 60 >/dev/null
  log "cluster of $CLUSTER_SIZE nodes serving on 127.0.0.1:5681..568$CLUSTER_SIZE"
}

cluster_kill() { # n
  local pid
  pid=$(bounded_ctl -n "$(node_name "$1")" -q eval 'os:getpid().' 2>/dev/null | tr -dc 0-9)
  [ -n "$pid" ] || { log "$(node_name "$1") is not running"; return 0; }
  log "killing $(node_name "$1") (pid $pid)"
  kill -KILL "$pid"
}

cluster_stop() {
  local n
  for n in $(seq 1 $CLUSTER_SIZE); do
    if node_serving "$n"; then bounded_ctl -n "$(node_name "$n")" -q stop >/dev/null || true; fi
  done
}

cluster() {
  case "${1:-}" in
    start) cluster_start ;;
    stop) cluster_stop ;;
    kill) cluster_kill "${2:?which node, 1 to $CLUSTER_SIZE}" ;;
    partition) cluster_partition "${2:?which node, 1 to $CLUSTER_SIZE}" ;;
    heal) cluster_heal ;;
    env)
      local addrs="" nodes="" n
      for n in $(seq 1 $CLUSTER_SIZE); do
        addrs+="${addrs:+,}amqp://guest:guest@127.0.0.1:568$n/%2f"
        nodes+="${nodes:+,}$(node_name "$n")"
      done
      echo "export TEST_CLUSTER_AMQP_ADDR='$addrs'"
      echo "export TEST_CLUSTER_NODES='$nodes'"
      echo "export TEST_CLUSTER_SCRIPT='$SELF'"
      ;;
    *) sed -n '2,39p' "$0" >&2; exit 2 ;;
  esac
}

case "${1:-}" in
  cluster) shift; cluster "$@" ;;
  start) start ;;
  stop) stop ;;
  env)
    echo "export AMQP_ADDR='amqp://guest:guest@127.0.0.1:$AMQP_PORT/%2f'"
    echo "export TEST_RABBITMQCTL='$SELF ctl'"
    echo "export TEST_MANAGEMENT_URL='http://guest:guest@127.0.0.1:$MANAGEMENT_PORT'"
    echo "export TEST_AMQPS_ADDR='amqps://guest:guest@localhost:$TLS_PORT/%2f'"
    echo "export TEST_AMQP_CA_FILE='$TLS_DIR/ca.pem'"
    echo "export TEST_AMQP_IMPOSTOR_CA_FILE='$TLS_DIR/impostor-ca.pem'"
    ;;
  ctl) shift; ctl "$@" ;;
  *) sed -n '2,39p' "$0" >&2; exit 2 ;;
esac
