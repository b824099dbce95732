# shellcheck shell=bash
# shellcheck disable=SC2034 # the settings are used by the scripts that source this file
# Shared by deploy.sh, teardown.sh and push-images.sh: settings with their defaults, and the
# DRY_RUN runner. Sourced, not run.
#
# Every input is an environment variable with a default; deploy/README.md lists them.

# Repository root, and where each VM's files live.
AZURE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$AZURE_DIR/../.." && pwd)
readonly AZURE_DIR REPO_ROOT

# A repository URL fit to publish (the images' source label): without the user and token a
# clone URL may carry (https://user:TOKEN@github.com/...), which would otherwise be pushed
# inside the image for anyone who can pull it.
public_source_url() { # url
  local url=$1
  if [[ $url =~ ^([A-Za-z][A-Za-z0-9+.-]*://)[^/@]*@(.*)$ ]]; then
    url=${BASH_REMATCH[1]}${BASH_REMATCH[2]}
  fi
  printf '%s' "$url"
}

require_bash_4_4() {
  if ((BASH_VERSINFO[0] < 4 || (BASH_VERSINFO[0] == 4 && BASH_VERSINFO[1] < 4))); then
    echo "These scripts need bash 4.4 or later (this is $BASH_VERSION; on macOS: brew install bash)." >&2
    exit 1
  fi
}

load_settings() {
  DRY_RUN=${DRY_RUN:-0}
  RESOURCE_GROUP=${RESOURCE_GROUP:-coc-demo}
  LOCATION=${LOCATION:-uksouth}
  PREFIX=${PREFIX:-coc}

  VNET_NAME=${VNET_NAME:-$PREFIX-vnet}
  VNET_PREFIX=${VNET_PREFIX:-10.20.0.0/16}
  SUBNET_NAME=${SUBNET_NAME:-$PREFIX-subnet}
  SUBNET_PREFIX=${SUBNET_PREFIX:-10.20.1.0/24}

  VM1_NAME=${VM1_NAME:-$PREFIX-vm1}
  VM1_SIZE=${VM1_SIZE:-Standard_B2s}
  VM1_PRIVATE_IP=${VM1_PRIVATE_IP:-10.20.1.10}
  VM2_NAME=${VM2_NAME:-$PREFIX-vm2}
  VM2_SIZE=${VM2_SIZE:-Standard_B1ms}
  VM2_PRIVATE_IP=${VM2_PRIVATE_IP:-10.20.1.11}
  # true: VM 2 gets a public IP for outbound traffic and SSH from OPERATOR_IP only;
  # false: no public IP at all, outbound through a NAT gateway, SSH through VM 1.
  VM2_PUBLIC_IP=${VM2_PUBLIC_IP:-true}
  VM_IMAGE=${VM_IMAGE:-Canonical:ubuntu-24_04-lts:server:latest}
  OS_DISK_SKU=${OS_DISK_SKU:-StandardSSD_LRS}
  OS_DISK_SIZE_GB=${OS_DISK_SIZE_GB:-30}
  ADMIN_USERNAME=${ADMIN_USERNAME:-azureuser}
  SSH_PUBLIC_KEY_FILE=${SSH_PUBLIC_KEY_FILE:-$(default_ssh_key)}
  OPERATOR_IP=${OPERATOR_IP:-}
  # Each VM stops (deallocated: no compute cost) at this UTC time every day; `off` for never.
  AUTO_SHUTDOWN_UTC=${AUTO_SHUTDOWN_UTC:-1900}

  # Images: an Azure Container Registry made here (ACR_NAME, generated once if unset), or any
  # registry given as REGISTRY (e.g. ghcr.io/you), with REGISTRY_USERNAME/REGISTRY_PASSWORD
  # if the VMs need to log in to pull.
  REGISTRY=${REGISTRY:-}
  REGISTRY_USERNAME=${REGISTRY_USERNAME:-}
  REGISTRY_PASSWORD=${REGISTRY_PASSWORD:-}
  ACR_NAME=${ACR_NAME:-}
  IMAGE_TAG=${IMAGE_TAG:-$(default_image_tag)}
  PUSH_IMAGES=${PUSH_IMAGES:-1}
  IMAGE_PLATFORM=${IMAGE_PLATFORM:-linux/amd64}

  RABBITMQ_VHOST=${RABBITMQ_VHOST:-change-of-circumstances}
  EXCHANGE=${EXCHANGE:-customer.events}
  QUEUE=${QUEUE:-change-of-circumstances}
  RABBITMQ_ADMIN_USER=${RABBITMQ_ADMIN_USER:-coc-admin}
  RABBITMQ_MONITOR_USER=${RABBITMQ_MONITOR_USER:-coc-monitor}
  PRODUCER_AMQP_USER=${PRODUCER_AMQP_USER:-coc-producer}
  CONSUMER_AMQP_USER=${CONSUMER_AMQP_USER:-coc-consumer}

  # 1: a new broker certificate now, even if the one on VM 1 is not due for renewal yet.
  RENEW_BROKER_CERTIFICATE=${RENEW_BROKER_CERTIFICATE:-0}

  WAIT_FOR_PRODUCER=${WAIT_FOR_PRODUCER:-1}
  WAIT_TIMEOUT_SECS=${WAIT_TIMEOUT_SECS:-900}
  # Generated passwords, the ACR name and the rendered cloud-init files live here, outside the
  # repository, so that re-runs reuse them and nothing secret is ever committed.
  STATE_DIR=${STATE_DIR:-${XDG_CONFIG_HOME:-$HOME/.config}/change-of-circumstances/$RESOURCE_GROUP}

  NSG_VM1=$VM1_NAME-nsg
  NSG_VM2=$VM2_NAME-nsg
  PUBLIC_IP_VM1=$VM1_NAME-ip
  PUBLIC_IP_VM2=$VM2_NAME-ip
  NIC_VM1=$VM1_NAME-nic
  NIC_VM2=$VM2_NAME-nic
  NAT_GATEWAY=$PREFIX-nat
  NAT_PUBLIC_IP=$PREFIX-nat-ip
  PRODUCER_REPOSITORY=coc-producer
  CONSUMER_REPOSITORY=coc-consumer
}

default_ssh_key() {
  local key
  for key in "$HOME/.ssh/id_ed25519.pub" "$HOME/.ssh/id_rsa.pub"; do
    if [[ -f $key ]]; then
      printf '%s' "$key"
      return
    fi
  done
}

# The git commit of the working tree, `-dirty` if it has uncommitted changes.
default_image_tag() {
  git -C "$REPO_ROOT" describe --always --dirty --abbrev=12 2>/dev/null || echo latest
}

is_dry_run() { [[ $DRY_RUN == 1 || $DRY_RUN == true ]]; }
is_true() { [[ $1 == 1 || $1 == true || $1 == yes ]]; }

step() { printf '\n==> %s\n' "$*" >&2; }
note() { printf '    %s\n' "$*" >&2; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

# A command line as it can be pasted back into a shell: arguments quoted only when needed.
quote_command() {
  local arg out=()
  for arg in "$@"; do
    if [[ $arg =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
      out+=("$arg")
    else
      out+=("'${arg//\'/\'\\\'\'}'")
    fi
  done
  printf '%s\n' "${out[*]}"
}

# Runs a command that changes something, after printing it; with DRY_RUN=1 only prints it.
run() {
  printf '+ %s\n' "$(quote_command "$@")"
  is_dry_run || "$@"
}

# Runs a read-only az command and prints its output; with DRY_RUN=1 prints the command on
# stderr and outputs the placeholder instead, so that the plan can go on.
read_az() { # placeholder az-arguments...
  local placeholder=$1
  shift
  if is_dry_run; then
    printf '# would read: %s -> %s\n' "$(quote_command az "$@")" "$placeholder" >&2
    printf '%s\n' "$placeholder"
  else
    az "$@"
  fi
}

# True if the resource the az `show` command names exists. With DRY_RUN=1 nothing is asked,
# and everything is planned as if it did not exist yet.
az_exists() {
  if is_dry_run; then
    printf '# would check: %s\n' "$(quote_command az "$@")" >&2
    return 1
  fi
  az "$@" --output none 2>/dev/null
}

# The passwords each VM's stack needs, delivered after its creation (deploy.sh) and checked
# against its compose file (deploy/check.sh): one list for both.
vm_secret_names() { # vm1|vm2
  case $1 in
    vm1) echo PRODUCER_AMQP_PASSWORD RABBITMQ_MONITOR_PASSWORD ;;
    vm2) echo CONSUMER_AMQP_PASSWORD ;;
    *) die "no VM $1" ;;
  esac
}

# The names in the broker's certificate: VM 2's consumer connects to VM 1's private IP; the
# host name is for a client that uses Azure's DNS name within the VNet instead.
broker_certificate_names() { printf 'IP:%s,DNS:%s' "$VM1_PRIVATE_IP" "$VM1_NAME"; }

acr_login_server() { printf '%s.azurecr.io' "$ACR_NAME"; }

# Where the images go: the ACR's login server, or REGISTRY.
image_registry() {
  if [[ -n $REGISTRY ]]; then
    printf '%s' "${REGISTRY%/}"
  else
    acr_login_server
  fi
}

producer_image() { printf '%s/%s:%s' "$(image_registry)" "$PRODUCER_REPOSITORY" "$IMAGE_TAG"; }
consumer_image() { printf '%s/%s:%s' "$(image_registry)" "$CONSUMER_REPOSITORY" "$IMAGE_TAG"; }

# The ACR name, generated once and kept in the state directory: globally unique, 5-50
# lower-case letters and digits.
load_or_create_acr_name() {
  [[ -n $REGISTRY ]] && return
  local file=$STATE_DIR/acr-name
  if [[ -z $ACR_NAME && -f $file ]]; then
    ACR_NAME=$(<"$file")
  fi
  if [[ -z $ACR_NAME ]]; then
    local random
    random=$(head -c 512 /dev/urandom | LC_ALL=C tr -dc 'a-z0-9')
    ACR_NAME=${PREFIX//[^a-z0-9]/}${random:0:10}
  fi
  [[ $ACR_NAME =~ ^[a-z0-9]{5,50}$ ]] || die "ACR_NAME \"$ACR_NAME\" must be 5-50 lower-case letters and digits"
  mkdir -p "$STATE_DIR"
  printf '%s\n' "$ACR_NAME" >"$file"
}
