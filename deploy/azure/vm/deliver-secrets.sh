#!/bin/bash
# Puts this VM's passwords in place, after cloud-init, and (re)starts the stack if they changed.
# deploy/azure/deploy.sh runs it on each VM with `az vm run-command create`, the passwords as
# protected parameters: Azure hands them to this script as environment variables, encrypted on
# the way and never shown again by the API. Custom data (cloud-init) is readable by anyone who
# may read the VM's model, so it carries no password (deploy/README.md, "Where the passwords
# live").
#
#   SECRET_NAMES   the variables to write, e.g. "PRODUCER_AMQP_PASSWORD RABBITMQ_MONITOR_PASSWORD"
#   each of them   its value
#   COC_DIR        where the stack lives (default /opt/change-of-circumstances)
#
# REGISTRY_PASSWORD goes to registry.env (registry-login.sh reads the raw value after the
# first '='): any character but a line break. Every other name goes to compose's .env, where
# compose puts it into a URL (AMQP_ADDR, MANAGEMENT_URL): letters, digits and `-._~` only
# (what deploy.sh generates), which neither a URL nor compose's `$` interpolation changes.
# A value outside these is refused before anything is written.
set -euo pipefail

readonly COC_DIR=${COC_DIR:-/opt/change-of-circumstances}
readonly UNIT=change-of-circumstances.service

die() {
  echo "deliver-secrets.sh: $*" >&2
  exit 1
}

# The files below are cloud-init's (write_files): wait until it has finished with the VM.
# Exit 2 means "done, with recoverable errors": the files are there all the same.
if command -v cloud-init >/dev/null; then
  cloud-init status --wait >/dev/null || (($? == 2)) || die "cloud-init failed: sudo cloud-init status --long"
fi

# Prints FILE with NAME's line replaced by LINE where it stands (at the end if it had none).
# LINE reaches awk through the environment: `-v` would interpret its backslashes.
with_line() { # file name line
  NAME=$2 LINE=$3 awk '
    index($0, ENVIRON["NAME"] "=") == 1 { if (!done) print ENVIRON["LINE"]; done = 1; next }
    { print }
    END { if (!done) print ENVIRON["LINE"] }
  ' "$1"
}

changed=0
# Replaces NAME's line in FILE, atomically and readable by root only.
set_line() { # file name line
  local file=$1 next
  [[ -f $file ]] || die "$file is missing: did cloud-init run? (sudo cloud-init status --long)"
  next=$(mktemp "$file.XXXXXX")
  with_line "$file" "$2" "$3" >"$next"
  chmod 0600 "$next"
  if cmp -s "$file" "$next"; then
    rm -f "$next"
  else
    mv "$next" "$file"
    changed=1
  fi
}

read -r -a names <<<"${SECRET_NAMES:?SECRET_NAMES names the variables to write}"
# All or nothing: every value is checked before the first is written.
for name in "${names[@]}"; do
  [[ $name =~ ^[A-Z][A-Z0-9_]*$ ]] || die "not a variable name: $name"
  value=${!name:-}
  [[ -n $value ]] || die "$name is empty or not given"
  if [[ $name == REGISTRY_PASSWORD ]]; then
    [[ $value != *[$'\n\r']* ]] || die "$name contains a line break"
  else
    [[ $value =~ ^[A-Za-z0-9._~-]+$ ]] || die "$name holds a character other than letters, digits and -._~ (it goes into a URL)"
  fi
done
for name in "${names[@]}"; do
  value=${!name}
  if [[ $name == REGISTRY_PASSWORD ]]; then
    set_line "$COC_DIR/registry.env" "$name" "$name=$value"
  else
    set_line "$COC_DIR/.env" "$name" "$name=$value"
  fi
  echo "$name: in place"
done

# A first boot's unit has been failing (no password yet) and retries every 30 s: start it now.
# A re-run with the same passwords leaves a running stack alone.
if ((changed)) || ! systemctl is-active --quiet "$UNIT"; then
  systemctl restart --no-block "$UNIT"
  echo "$UNIT: restarting (sudo journalctl -u $UNIT -f)"
else
  echo "$UNIT: unchanged and running"
fi
