#!/usr/bin/env bash
# Signs VM 1's certificate request (on stdin) with the deployment's CA (STATE_DIR/tls, made by
# deploy.sh) and prints the broker's certificate: for VM 1's private IP and host name, the
# names the consumer on VM 2 may use to reach it. deploy.sh runs it between the two steps of
# vm/broker-certificate.sh; the VMs' rehearsal (deploy/local/rehearse-vms.sh) runs it too.
# Settings as deploy.sh's (deploy/azure/lib.sh): STATE_DIR, VM1_NAME, VM1_PRIVATE_IP.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
# shellcheck source=../tls/certificates.sh
source "$(dirname "$0")/../tls/certificates.sh"

load_settings
readonly CA_DIR=$STATE_DIR/tls
[[ -s $CA_DIR/ca.key ]] || die "no CA in $CA_DIR: deploy.sh makes it"
request=$(cat)
[[ $request == *"-----BEGIN CERTIFICATE REQUEST-----"* ]] || die "no certificate request on stdin"
printf '%s\n' "$request" | sign_request "$CA_DIR" "$(broker_certificate_names)" ||
  die "openssl could not sign the request"
