#!/bin/bash
# Logs Docker in to the image registry, before each start of change-of-circumstances.service
# (so before every pull). Settings in registry.env next to this script.
#
# managed-identity: an Azure Container Registry that this VM's system-assigned identity may
#   pull from (AcrPull). The identity's Entra token (from the instance metadata service) is
#   exchanged for an ACR refresh token, Docker's password for the registry. Nothing secret is
#   stored on the VM; the token lasts about three hours, hence a login at every start.
# password: REGISTRY_USERNAME / REGISTRY_PASSWORD from registry.env.
# none: a public registry.
set -euo pipefail

settings=$(dirname "$0")/registry.env
REGISTRY_SERVER='' REGISTRY_AUTH=none REGISTRY_USERNAME='' REGISTRY_PASSWORD=''
# KEY=VALUE lines, read as data (never sourced): a password may contain any character. The
# value is everything after the first '=' (`IFS='=' read` would drop a trailing '=', which
# ends many base64 passwords).
while IFS= read -r line || [[ -n $line ]]; do
  key=${line%%=*}
  value=${line#*=}
  case $key in
    REGISTRY_SERVER | REGISTRY_AUTH | REGISTRY_USERNAME | REGISTRY_PASSWORD) printf -v "$key" '%s' "$value" ;;
  esac
done <"$settings"

# A token for the registry's own audience: registries may refuse ARM-audience tokens (an
# Azure built-in policy turns them off in many tenants); this one works everywhere.
readonly IMDS_TOKEN_URL='http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fcontainerregistry.azure.net'
# The user name ACR expects with a refresh token.
readonly ACR_TOKEN_USER=00000000-0000-0000-0000-000000000000

json_field() { # name: reads a JSON object on stdin, prints one string field, no newline
  # (a newline would go on to the token exchange as %0A, and the registry refuse the token)
  python3 -c 'import json, sys; sys.stdout.write(json.load(sys.stdin)[sys.argv[1]])' "$1"
}

entra_token_of_this_vm() {
  curl --fail --silent --show-error --max-time 10 --header 'Metadata: true' "$IMDS_TOKEN_URL" |
    json_field access_token
}

# Reads the Entra token on stdin, so that it never appears on a command line.
acr_refresh_token() {
  curl --fail --silent --show-error --max-time 20 \
    --data-urlencode grant_type=access_token \
    --data-urlencode "service=$REGISTRY_SERVER" \
    --data-urlencode 'access_token@-' \
    "https://$REGISTRY_SERVER/oauth2/exchange" |
    json_field refresh_token
}

login_with_managed_identity() {
  local refresh_token
  refresh_token=$(entra_token_of_this_vm | acr_refresh_token) || {
    echo "registry-login: no ACR token for $REGISTRY_SERVER yet (the AcrPull role assignment can take a few minutes to apply)" >&2
    return 1
  }
  printf '%s' "$refresh_token" |
    docker login --username "$ACR_TOKEN_USER" --password-stdin "$REGISTRY_SERVER" >/dev/null
  echo "registry-login: logged in to $REGISTRY_SERVER with this VM's managed identity"
}

login_with_password() {
  printf '%s' "$REGISTRY_PASSWORD" |
    docker login --username "$REGISTRY_USERNAME" --password-stdin "$REGISTRY_SERVER" >/dev/null
  echo "registry-login: logged in to $REGISTRY_SERVER as $REGISTRY_USERNAME"
}

case $REGISTRY_AUTH in
  managed-identity) login_with_managed_identity ;;
  password) login_with_password ;;
  none) echo "registry-login: $REGISTRY_SERVER needs no login" ;;
  *)
    echo "registry-login: unknown REGISTRY_AUTH \"$REGISTRY_AUTH\" in $settings" >&2
    exit 1
    ;;
esac
