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
#   eval "$(e2e/scripts/rabbitmq4.sh env)" && cargo test --workspace
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
SELF=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")

log() { printf 'rabbitmq4: %s\n' "$*" >&2; }
in_root() { chroot "$ROOT" "$@"; }
ctl() { in_root rabbitmqctl "$@"; }
serving() { (exec 3<>"/dev/tcp/127.0.0.1/$AMQP_PORT") 2>/dev/null && ctl -q status >/dev/null 2>&1; }

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
  cat >"$building/etc/rabbitmq/rabbitmq.conf" <<CONF
listeners.tcp.default = $AMQP_PORT
management.tcp.port = $MANAGEMENT_PORT
CONF
  chroot "$building" rabbitmq-plugins enable --offline rabbitmq_management >/dev/null
  touch "$building/.installed"
  rm -rf "$ROOT"
  mv "$building" "$ROOT"
  rm -f "$building.log"
}

start() {
  install
  if serving; then
    log "$NODE is already serving on 127.0.0.1:$AMQP_PORT"
    return
  fi
  # Erlang's memory monitor reads /proc.
  mountpoint -q "$ROOT/proc" || mount -t proc proc "$ROOT/proc"
  log "starting $NODE"
  (cd / && setsid chroot "$ROOT" /usr/sbin/rabbitmq-server >"$ROOT/var/log/rabbitmq/console.log" 2>&1 </dev/null &)
  for _ in $(seq 1 120); do
    if serving; then
      log "$NODE is serving: $(ctl -q version 2>/dev/null) on 127.0.0.1:$AMQP_PORT"
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

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  env)
    echo "export AMQP_ADDR='amqp://guest:guest@127.0.0.1:$AMQP_PORT/%2f'"
    echo "export TEST_RABBITMQCTL='$SELF ctl'"
    ;;
  ctl) shift; ctl "$@" ;;
  *) sed -n '2,17p' "$0" >&2; exit 2 ;;
esac
