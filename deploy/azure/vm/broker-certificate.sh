#!/bin/bash
# The broker's TLS certificate on VM 1, in two steps that deploy/azure/deploy.sh runs with
# `az vm run-command create` (deploy/README.md, "TLS between the VMs"):
#
#   ACTION=request   makes the broker's private key here if there is none (it never leaves this
#                    VM), and prints a signing request for it ("request: " and the base64 of
#                    its PEM, on one line); or "not due: <date>" if the installed certificate
#                    is valid for longer than RENEW_DAYS and RENEW=0
#   ACTION=install   BROKER_CERTIFICATE (the signed certificate, base64 of its PEM) is checked
#                    against the key and the CA cloud-init wrote, put in place, and the stack
#                    restarted if it was running, so that RabbitMQ serves it
#
#   COC_DIR        where the stack lives (default /opt/change-of-circumstances)
#   COMMON_NAME    the request's subject (deploy.sh: VM 1's name); the CA sets the names
#   RENEW          1: a request even if the certificate is not due (default 0)
#   RENEW_DAYS     renewal is due this many days before the end (default 30)
#   RABBITMQ_UID   the broker image's rabbitmq user, who must read the key (default 999)
#
# Self-contained (a run command sends one file): openssl from the VM's image.
set -euo pipefail

readonly COC_DIR=${COC_DIR:-/opt/change-of-circumstances}
readonly TLS_DIR=$COC_DIR/rabbitmq/tls
readonly KEY=$TLS_DIR/broker.key CERT=$TLS_DIR/broker.pem CA=$TLS_DIR/ca.pem
readonly UNIT=change-of-circumstances.service

die() {
  echo "broker-certificate.sh: $*" >&2
  exit 1
}

# The CA certificate comes from cloud-init (write_files): wait until it has finished.
if command -v cloud-init >/dev/null; then
  cloud-init status --wait >/dev/null || (($? == 2)) || die "cloud-init failed: sudo cloud-init status --long"
fi
[[ -s $CA ]] || die "$CA is missing: did cloud-init run? (sudo cloud-init status --long)"

request() {
  local renew_days=${RENEW_DAYS:-30}
  # Kept only if it is for this key, from the CA cloud-init wrote (a replaced CA gets a new
  # one), and not within RENEW_DAYS of its end.
  if [[ ${RENEW:-0} != 1 && -s $CERT ]] && matches_key "$CERT" &&
    openssl verify -CAfile "$CA" "$CERT" >/dev/null 2>&1 &&
    openssl x509 -in "$CERT" -noout -checkend $((renew_days * 86400)) >/dev/null; then
    echo "not due: $(openssl x509 -in "$CERT" -noout -enddate | cut -d= -f2)"
    return
  fi
  if [[ ! -s $KEY ]]; then
    (
      umask 077
      openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$KEY.new" 2>/dev/null
      chown "${RABBITMQ_UID:-999}" "$KEY.new"
      mv "$KEY.new" "$KEY"
    )
  fi
  # One line (base64 of the PEM), which the run command's output keeps whole.
  local request
  request=$(openssl req -new -sha256 -key "$KEY" -subj "/CN=${COMMON_NAME:?COMMON_NAME names the broker}")
  echo "request: $(base64 <<<"$request" | tr -d '\n')"
}

public_key_of() { # certificate
  openssl x509 -in "$1" -noout -pubkey
}

matches_key() { # certificate
  [[ $(public_key_of "$1") == "$(openssl pkey -in "$KEY" -pubout 2>/dev/null)" ]]
}

install() {
  [[ -s $KEY ]] || die "no key in $KEY: run ACTION=request first"
  local next
  next=$(mktemp "$CERT.XXXXXX")
  base64 -d <<<"${BROKER_CERTIFICATE:?BROKER_CERTIFICATE is the certificate, base64 of its PEM}" >"$next" ||
    die "BROKER_CERTIFICATE is not base64"
  matches_key "$next" || {
    rm -f "$next"
    die "the certificate is not for this VM's key (a request from another key, or another VM)"
  }
  openssl verify -CAfile "$CA" "$next" >/dev/null || {
    rm -f "$next"
    die "the certificate is not signed by $CA"
  }
  chmod 0644 "$next"
  if cmp -s "$next" "$CERT"; then
    rm -f "$next"
    echo "broker.pem: unchanged"
    return
  fi
  mv "$next" "$CERT"
  echo "broker.pem: in place, valid until $(openssl x509 -in "$CERT" -noout -enddate | cut -d= -f2)"
  # RabbitMQ reads its certificate when it starts. A first boot's stack is not running yet
  # (it waits for its passwords, deliver-secrets.sh, which starts it).
  if systemctl is-active --quiet "$UNIT"; then
    systemctl restart --no-block "$UNIT"
    echo "$UNIT: restarting to serve the new certificate"
  fi
}

case ${ACTION:-} in
  request) request ;;
  install) install ;;
  *) die "ACTION must be request or install" ;;
esac
