#!/usr/bin/env bash
# docker-compose.yml's broker certificate, made once and kept until it is due for renewal. Run
# as root by the one-shot broker-certificate service, in the broker's image (it has openssl),
# before any broker node starts:
#
#   local-certificates.sh TLS_DIR CA_DIR
#
#   TLS_DIR  the rabbitmq-tls volume, which only the broker nodes mount (deploy/rabbitmq/50-tls.conf):
#            broker.key (0600, the image's rabbitmq user), broker.pem, ca.pem
#   CA_DIR   the amqp-ca volume, mounted read-only into the consumers: ca.pem (AMQP_CA_FILE)
#
# The CA is a throw-away one: its key signs this one certificate and is deleted, since on one
# machine there is nothing else to sign. A renewal (or a certificate that no longer matches its
# key, its CA or the names below) makes a new CA too; the broker and the consumers read the
# new files when they next start: compose runs this job at every `up` and `start`, but does
# not restart what already runs (the job says so). Names: every broker node's on the compose
# network, and localhost for a client on the broker's own host.
set -euo pipefail
# shellcheck source=certificates.sh
source "$(dirname "$0")/certificates.sh"

readonly NAMES=DNS:rabbitmq,DNS:rabbitmq-2,DNS:rabbitmq-3,DNS:localhost,IP:127.0.0.1
(($# == 2)) || { echo "usage: $0 TLS_DIR CA_DIR" >&2; exit 2; }
readonly TLS_DIR=$1 CA_DIR=$2
# The CA's key and the new files before they are installed: deleted whatever happens.
WORK=''
trap '[[ -z $WORK ]] || rm -rf "$WORK"' EXIT

# Why the certificate in TLS_DIR cannot be kept, or nothing if it can.
reason_to_replace() {
  local cert=$TLS_DIR/broker.pem name check
  [[ -s $cert ]] || { echo "there is none yet"; return; }
  due_for_renewal "$cert" && { echo "it ends within $BROKER_CERTIFICATE_RENEW_DAYS days"; return; }
  [[ -s $TLS_DIR/broker.key && $(openssl pkey -in "$TLS_DIR/broker.key" -pubout 2>/dev/null) == \
    "$(openssl x509 -in "$cert" -noout -pubkey)" ]] || { echo "it does not match broker.key"; return; }
  openssl verify -CAfile "$TLS_DIR/ca.pem" "$cert" >/dev/null 2>&1 ||
    { echo "ca.pem did not sign it"; return; }
  for name in ${NAMES//,/ }; do
    case $name in
      DNS:*) check=(-checkhost "${name#DNS:}") ;;
      IP:*) check=(-checkip "${name#IP:}") ;;
    esac
    # openssl says whether a name matches, and exits 0 either way.
    [[ $(openssl x509 -in "$cert" -noout "${check[@]}") == *" does match "* ]] ||
      { echo "it lacks the name $name"; return; }
  done
}

# Copies FILE to DIR/NAME with MODE and OWNER, replacing the old one in a single rename.
install_file() { # file dir name mode owner
  cp "$1" "$2/.$3.new"
  chown "$5" "$2/.$3.new"
  chmod "$4" "$2/.$3.new"
  mv -f "$2/.$3.new" "$2/$3"
}

end_date() { openssl x509 -in "$TLS_DIR/broker.pem" -noout -enddate | sed 's/^notAfter=//'; }

# The key is installed before the certificate, the CA last: a run cut short leaves a set that
# reason_to_replace refuses, so the next run starts again.
make_new_certificate() {
  local work rabbitmq
  rabbitmq=$(id -u rabbitmq):$(id -g rabbitmq)
  work=$(mktemp -d)
  WORK=$work
  make_ca "$work/ca" "change-of-circumstances local CA $(date -u +%F)"
  key_and_request "$work/broker.key" rabbitmq | sign_request "$work/ca" "$NAMES" >"$work/broker.pem"
  install_file "$work/broker.key" "$TLS_DIR" broker.key 0600 "$rabbitmq"
  install_file "$work/broker.pem" "$TLS_DIR" broker.pem 0644 0:0
  install_file "$work/ca/ca.pem" "$TLS_DIR" ca.pem 0644 0:0
}

chmod 0755 "$TLS_DIR" "$CA_DIR"
reason=$(reason_to_replace)
if [[ -n $reason ]]; then
  echo "Broker certificate: making a new one and a new CA to sign it ($reason)."
  [[ -s $TLS_DIR/broker.pem ]] && replacing=1 || replacing=''
  make_new_certificate
  echo "Broker certificate written, for $NAMES, until $(end_date); its CA's key is deleted."
  # compose runs this job at every `up` and `start`, without restarting what already runs.
  if [[ -n $replacing ]]; then
    echo "A broker or consumer already running reads the new files only when it starts again:" \
      "docker compose restart."
  fi
else
  echo "Broker certificate kept until $(end_date); renewed at the first start in its last $BROKER_CERTIFICATE_RENEW_DAYS days."
fi
# The consumers' copy of the CA, refreshed whenever it differs (a new CA, or a lost volume).
if ! cmp -s "$TLS_DIR/ca.pem" "$CA_DIR/ca.pem"; then
  install_file "$TLS_DIR/ca.pem" "$CA_DIR" ca.pem 0644 0:0
  echo "CA certificate for the consumers written (AMQP_CA_FILE)."
fi
