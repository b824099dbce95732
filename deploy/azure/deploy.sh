#!/usr/bin/env bash
# Deploys change-of-circumstances to two Azure VMs on one VNet:
#   VM 1 (static private IP): RabbitMQ + producer; the producer's HTTP port is public.
#   VM 2: the consumer, reaching the broker over VM 1's private IP with its own user.
# with NSGs (SSH from the operator's address only, AMQP from the VNet only, the management UI
# never public), a registry (ACR pulled with the VMs' managed identities, or REGISTRY), and a
# cloud-init per VM that installs Docker and starts the stack from a systemd unit at every boot.
#
#   az login && deploy/azure/deploy.sh          # everything; safe to run again
#   DRY_RUN=1 deploy/azure/deploy.sh            # print every az command instead (no login needed)
#
# Every input is an environment variable with a default (deploy/azure/lib.sh; deploy/README.md).
# Secrets are generated once and kept in STATE_DIR (outside the repository, mode 0700).
set -euo pipefail

# shellcheck source-path=SCRIPTDIR
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
# shellcheck source=../lib.sh
source "$(dirname "$0")/../lib.sh" # random_password
# shellcheck source=../tls/certificates.sh
source "$(dirname "$0")/../tls/certificates.sh" # make_ca

# ---------------------------------------------------------------------------- checks

check_tools() {
  local tool
  for tool in awk curl od base64 openssl; do
    command -v "$tool" >/dev/null || die "$tool is missing"
  done
  if ! is_dry_run; then
    command -v az >/dev/null || die "the Azure CLI (az) is missing: https://learn.microsoft.com/cli/azure/install-azure-cli"
    if is_true "$PUSH_IMAGES"; then
      command -v docker >/dev/null || die "docker is missing (needed to build and push the images; PUSH_IMAGES=0 to skip)"
    fi
  fi
}

check_azure_login() {
  step "Azure subscription"
  if SUBSCRIPTION_ID=$(az account show --query id --output tsv 2>/dev/null) && [[ -n $SUBSCRIPTION_ID ]]; then
    note "subscription $SUBSCRIPTION_ID ($(az account show --query name --output tsv 2>/dev/null))"
  elif is_dry_run; then
    SUBSCRIPTION_ID=00000000-0000-0000-0000-000000000000
    note "not logged in (fine for DRY_RUN): using subscription $SUBSCRIPTION_ID in the plan"
  else
    die "not logged in to Azure: run az login (and az account set --subscription ... if you have several)"
  fi
}

ipv4_to_int() { # a.b.c.d
  local IFS=. a b c d
  read -r a b c d <<<"$1"
  printf '%d' $(((a << 24) + (b << 16) + (c << 8) + d))
}

is_ipv4() {
  local IFS=. part
  [[ $1 =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]] || return 1
  for part in $1; do
    ((part <= 255)) || return 1
  done
}

is_cidr() { # a.b.c.d/n
  [[ $1 == */* ]] && is_ipv4 "${1%/*}" && [[ ${1#*/} =~ ^[0-9]+$ ]] && ((${1#*/} <= 32))
}

# True if the address is usable by a VM in the subnet: Azure keeps the first four addresses
# and the last one of every subnet for itself.
usable_in_subnet() { # ip cidr
  local ip base size
  ip=$(ipv4_to_int "$1")
  base=$(ipv4_to_int "${2%/*}")
  size=$((1 << (32 - ${2#*/})))
  ((ip >= base + 4 && ip < base + size - 1))
}

cidr_within() { # inner outer
  local inner outer inner_bits=${1#*/} outer_bits=${2#*/}
  inner=$(ipv4_to_int "${1%/*}")
  outer=$(ipv4_to_int "${2%/*}")
  ((inner_bits >= outer_bits)) && (((inner >> (32 - outer_bits)) == (outer >> (32 - outer_bits))))
}

check_network_settings() {
  is_cidr "$VNET_PREFIX" || die "VNET_PREFIX \"$VNET_PREFIX\" is not an IPv4 CIDR"
  is_cidr "$SUBNET_PREFIX" || die "SUBNET_PREFIX \"$SUBNET_PREFIX\" is not an IPv4 CIDR"
  cidr_within "$SUBNET_PREFIX" "$VNET_PREFIX" || die "SUBNET_PREFIX $SUBNET_PREFIX is not inside VNET_PREFIX $VNET_PREFIX"
  local vm ip
  for vm in VM1_PRIVATE_IP VM2_PRIVATE_IP; do
    ip=${!vm}
    is_ipv4 "$ip" || die "$vm \"$ip\" is not an IPv4 address"
    usable_in_subnet "$ip" "$SUBNET_PREFIX" ||
      die "$vm $ip is not usable in $SUBNET_PREFIX (Azure reserves the first four and the last address)"
  done
  [[ $VM1_PRIVATE_IP != "$VM2_PRIVATE_IP" ]] || die "VM1_PRIVATE_IP and VM2_PRIVATE_IP are the same"
  [[ $VM2_PUBLIC_IP =~ ^(true|false)$ ]] || die "VM2_PUBLIC_IP must be true or false"
}

# The operator's public address, from OPERATOR_IP or asked of a what-is-my-IP service: SSH is
# open to that address only.
detect_operator_ip() {
  step "Operator address (SSH is allowed from it only)"
  if [[ -z $OPERATOR_IP ]]; then
    OPERATOR_IP=$(curl --fail --silent --max-time 10 https://api.ipify.org || true)
    [[ -n $OPERATOR_IP ]] || OPERATOR_IP=$(curl --fail --silent --max-time 10 https://ifconfig.me/ip || true)
    if [[ -z $OPERATOR_IP ]]; then
      is_dry_run || die "cannot detect your public IPv4 address: set OPERATOR_IP"
      OPERATOR_IP=192.0.2.1
      note "not detected (fine for DRY_RUN): planning with $OPERATOR_IP"
    fi
  fi
  if is_ipv4 "$OPERATOR_IP"; then
    OPERATOR_CIDR=$OPERATOR_IP/32
  elif is_cidr "$OPERATOR_IP"; then
    OPERATOR_CIDR=$OPERATOR_IP
    ((${OPERATOR_CIDR#*/} >= 16)) || die "OPERATOR_IP $OPERATOR_IP is too wide for SSH (at most a /16)"
  else
    die "OPERATOR_IP \"$OPERATOR_IP\" is not an IPv4 address or CIDR"
  fi
  note "$OPERATOR_CIDR"
}

check_auto_shutdown() {
  [[ $AUTO_SHUTDOWN_UTC == off || $AUTO_SHUTDOWN_UTC =~ ^([01][0-9]|2[0-3])[0-5][0-9]$ ]] ||
    die "AUTO_SHUTDOWN_UTC \"$AUTO_SHUTDOWN_UTC\" must be a UTC time as hhmm (e.g. 1900) or off"
}

check_ssh_key() {
  if [[ -n $SSH_PUBLIC_KEY_FILE && -f $SSH_PUBLIC_KEY_FILE ]]; then
    return
  fi
  is_dry_run || die "no SSH public key: set SSH_PUBLIC_KEY_FILE, or create one with ssh-keygen -t ed25519"
  SSH_PUBLIC_KEY_FILE=$HOME/.ssh/id_ed25519.pub
  note "no SSH public key found (fine for DRY_RUN): planning with $SSH_PUBLIC_KEY_FILE"
}

# ---------------------------------------------------------------------------- secrets

readonly SECRET_NAMES=(RABBITMQ_ADMIN_PASSWORD RABBITMQ_MONITOR_PASSWORD PRODUCER_AMQP_PASSWORD CONSUMER_AMQP_PASSWORD)

# Passwords are made once per resource group and kept in STATE_DIR/secrets.env: a re-run must
# render the same definitions and .env files as the VMs already have.
load_or_create_secrets() {
  step "Secrets ($STATE_DIR/secrets.env)"
  mkdir -p "$STATE_DIR"
  chmod 0700 "$STATE_DIR"
  local file=$STATE_DIR/secrets.env name value
  if [[ -f $file ]]; then
    while IFS='=' read -r name value; do
      [[ " ${SECRET_NAMES[*]} " == *" $name "* ]] && printf -v "$name" '%s' "$value"
    done <"$file"
  fi
  local created=0
  for name in "${SECRET_NAMES[@]}"; do
    if [[ -z ${!name:-} ]]; then
      printf -v "$name" '%s' "$(random_password)"
      created=1
    fi
  done
  if ((created)); then
    (
      umask 077
      for name in "${SECRET_NAMES[@]}"; do
        printf '%s=%s\n' "$name" "${!name}"
      done >"$file"
    )
    note "generated new passwords"
  else
    note "reusing the passwords of the previous run"
  fi
  export "${SECRET_NAMES[@]}"
}

# The private CA of this deployment, made once and kept in STATE_DIR/tls: it signs the broker's
# certificate (issue_broker_certificate), and the consumer on VM 2 trusts it (besides the
# system's CAs, none of which may certify a private address).
# Its certificate is public and goes into both VMs' custom data; its key never leaves this
# machine.
load_or_create_ca() {
  step "TLS: the deployment's private CA ($STATE_DIR/tls)"
  if [[ -s $STATE_DIR/tls/ca.key && -s $STATE_DIR/tls/ca.pem ]]; then
    note "reusing it (valid until $(openssl x509 -in "$STATE_DIR/tls/ca.pem" -noout -enddate | cut -d= -f2))"
    return
  fi
  make_ca "$STATE_DIR/tls" "change-of-circumstances $RESOURCE_GROUP CA" ||
    die "openssl could not make the CA in $STATE_DIR/tls (OpenSSL 1.1.1 or later is needed; this is $(openssl version))"
  note "made a new CA, valid for $CA_DAYS days"
}

# The network layout a resource group was first deployed with. A re-run never changes an
# existing subnet, NIC or VM (Azure keeps them as they are), so a changed setting would be
# printed in the summary but not take effect: a re-run with a different layout is refused.
readonly LAYOUT_NAMES=(VNET_PREFIX SUBNET_PREFIX VM1_PRIVATE_IP VM2_PRIVATE_IP VM2_PUBLIC_IP)

keep_layout() {
  local file=$STATE_DIR/layout.env line name value
  if [[ -f $file ]]; then
    while IFS= read -r line; do
      name=${line%%=*}
      value=${line#*=}
      [[ " ${LAYOUT_NAMES[*]} " == *" $name "* ]] || continue
      [[ ${!name} == "$value" ]] ||
        die "$RESOURCE_GROUP was deployed with $name=$value, and a re-run cannot change it (existing subnets, NICs and VMs are left as they are). Keep $name=$value, or run deploy/azure/teardown.sh and deploy again. (If only a DRY_RUN ever ran, delete $file.)"
    done <"$file"
    return
  fi
  for name in "${LAYOUT_NAMES[@]}"; do
    printf '%s=%s\n' "$name" "${!name}"
  done >"$file"
}

# ---------------------------------------------------------------------------- Azure resources

register_providers() {
  step "Resource providers (a new subscription has none registered)"
  local namespace
  for namespace in Microsoft.Network Microsoft.Compute Microsoft.ContainerRegistry; do
    run az provider register --namespace "$namespace" --wait
  done
}

create_resource_group() {
  step "Resource group $RESOURCE_GROUP in $LOCATION"
  run az group create --name "$RESOURCE_GROUP" --location "$LOCATION" \
    --tags app=change-of-circumstances --output none
}

create_registry() {
  if [[ -n $REGISTRY ]]; then
    step "Registry: $REGISTRY (given; no ACR created)"
    return
  fi
  step "Container registry $ACR_NAME (ACR Basic; the VMs pull with their managed identities)"
  if az_exists acr show --resource-group "$RESOURCE_GROUP" --name "$ACR_NAME"; then
    note "exists"
  else
    run az acr create --resource-group "$RESOURCE_GROUP" --name "$ACR_NAME" --location "$LOCATION" \
      --sku Basic --admin-enabled false --output none
  fi
  ACR_ID=$(read_az "/subscriptions/$SUBSCRIPTION_ID/resourceGroups/$RESOURCE_GROUP/providers/Microsoft.ContainerRegistry/registries/$ACR_NAME" \
    acr show --resource-group "$RESOURCE_GROUP" --name "$ACR_NAME" --query id --output tsv)
}

push_images() {
  if ! is_true "$PUSH_IMAGES"; then
    step "Images: not built (PUSH_IMAGES=$PUSH_IMAGES); using $(producer_image) and $(consumer_image)"
    return
  fi
  step "Images: build locally and push (az acr build is refused on free-trial subscriptions)"
  ACR_NAME=$ACR_NAME REGISTRY=$REGISTRY IMAGE_TAG=$IMAGE_TAG STATE_DIR=$STATE_DIR \
    IMAGE_PLATFORM=$IMAGE_PLATFORM DRY_RUN=$DRY_RUN "$AZURE_DIR/push-images.sh"
}

create_network() {
  step "Network: VNet $VNET_NAME ($VNET_PREFIX), subnet $SUBNET_NAME ($SUBNET_PREFIX)"
  if az_exists network vnet show --resource-group "$RESOURCE_GROUP" --name "$VNET_NAME"; then
    note "VNet exists"
  else
    run az network vnet create --resource-group "$RESOURCE_GROUP" --name "$VNET_NAME" \
      --location "$LOCATION" --address-prefixes "$VNET_PREFIX" --output none
  fi
  local nat_args=()
  if [[ $VM2_PUBLIC_IP == false ]]; then
    create_nat_gateway
    nat_args=(--nat-gateway "$NAT_GATEWAY")
  fi
  if az_exists network vnet subnet show --resource-group "$RESOURCE_GROUP" --vnet-name "$VNET_NAME" --name "$SUBNET_NAME"; then
    note "subnet exists"
  else
    # A private subnet: no implicit outbound access. Each VM's way out is explicit: VM 1's
    # public IP, and VM 2's public IP or the NAT gateway.
    run az network vnet subnet create --resource-group "$RESOURCE_GROUP" --vnet-name "$VNET_NAME" \
      --name "$SUBNET_NAME" --address-prefixes "$SUBNET_PREFIX" --default-outbound false \
      "${nat_args[@]}" --output none
  fi
}

create_nat_gateway() {
  note "VM 2 has no public IP: its outbound traffic (apt, image pulls) goes through NAT gateway $NAT_GATEWAY"
  create_public_ip "$NAT_PUBLIC_IP"
  if az_exists network nat gateway show --resource-group "$RESOURCE_GROUP" --name "$NAT_GATEWAY"; then
    note "NAT gateway exists"
  else
    run az network nat gateway create --resource-group "$RESOURCE_GROUP" --name "$NAT_GATEWAY" \
      --location "$LOCATION" --public-ip-addresses "$NAT_PUBLIC_IP" --idle-timeout 4 --output none
  fi
}

create_public_ip() { # name
  if az_exists network public-ip show --resource-group "$RESOURCE_GROUP" --name "$1"; then
    note "public IP $1 exists"
  else
    run az network public-ip create --resource-group "$RESOURCE_GROUP" --name "$1" \
      --location "$LOCATION" --sku Standard --allocation-method Static --version IPv4 --output none
  fi
}

create_nsg() { # name
  if az_exists network nsg show --resource-group "$RESOURCE_GROUP" --name "$1"; then
    note "NSG $1 exists"
  else
    run az network nsg create --resource-group "$RESOURCE_GROUP" --name "$1" --location "$LOCATION" --output none
  fi
}

# Creates or updates one inbound TCP rule (a rule is a PUT: re-running with a new operator
# address updates the SSH rule).
nsg_rule() { # nsg name priority access source "port ..." description
  local ports
  read -ra ports <<<"$6"
  run az network nsg rule create --resource-group "$RESOURCE_GROUP" --nsg-name "$1" --name "$2" \
    --priority "$3" --direction Inbound --access "$4" --protocol Tcp \
    --source-address-prefixes "$5" --source-port-ranges '*' \
    --destination-address-prefixes '*' --destination-port-ranges "${ports[@]}" \
    --description "$7" --output none
}

create_security_groups() {
  step "Network security groups (inbound rules; everything else is denied by Azure's defaults)"
  create_nsg "$NSG_VM1"
  nsg_rule "$NSG_VM1" allow-ssh-from-operator 100 Allow "$OPERATOR_CIDR" 22 \
    "SSH from the operator's address only"
  nsg_rule "$NSG_VM1" allow-producer-http 110 Allow Internet 8080 \
    "The producer's HTTP API, open to the internet"
  nsg_rule "$NSG_VM1" allow-amqps-from-vnet 120 Allow "$VNET_PREFIX" 5671 \
    "AMQP over TLS from the VNet only (VM 2's consumer)"
  # Azure's default AllowVnetInBound admits the whole VNet on every port: close the broker's
  # other ports (plain AMQP, management UI, Erlang distribution, metrics) to everyone, VNet
  # included. VM 1's compose does not publish them either.
  nsg_rule "$NSG_VM1" deny-broker-ports 4000 Deny '*' "4369 5672 15672 15692 25672" \
    "Plain AMQP, RabbitMQ management, metrics and clustering ports: never reachable over the network"

  create_nsg "$NSG_VM2"
  if [[ $VM2_PUBLIC_IP == true ]]; then
    nsg_rule "$NSG_VM2" allow-ssh-from-operator 100 Allow "$OPERATOR_CIDR" 22 \
      "SSH from the operator's address only"
  fi
  nsg_rule "$NSG_VM2" allow-consumer-api-from-vm1 110 Allow "$VM1_PRIVATE_IP/32" 8081 \
    "The consumer's API, for the producer's synchronous path on VM 1 only"
  nsg_rule "$NSG_VM2" deny-consumer-api 4000 Deny '*' 8081 \
    "The consumer's API has no authentication: nobody else, VNet included"
}

create_nic() { # name private_ip nsg public_ip_or_empty
  if az_exists network nic show --resource-group "$RESOURCE_GROUP" --name "$1"; then
    note "NIC $1 exists"
    return
  fi
  local public_ip_args=()
  [[ -n $4 ]] && public_ip_args=(--public-ip-address "$4")
  # A given private address makes the NIC's allocation static: VM 1's address is in VM 2's
  # AMQP_ADDR, VM 2's in VM 1's CONSUMER_URL and NSG rule.
  run az network nic create --resource-group "$RESOURCE_GROUP" --name "$1" --location "$LOCATION" \
    --vnet-name "$VNET_NAME" --subnet "$SUBNET_NAME" --private-ip-address "$2" \
    --network-security-group "$3" "${public_ip_args[@]}" --output none
}

create_network_interfaces() {
  step "Network interfaces: $VM1_NAME $VM1_PRIVATE_IP (public IP), $VM2_NAME $VM2_PRIVATE_IP ($([[ $VM2_PUBLIC_IP == true ]] && echo 'public IP, SSH only' || echo 'no public IP'))"
  create_public_ip "$PUBLIC_IP_VM1"
  create_nic "$NIC_VM1" "$VM1_PRIVATE_IP" "$NSG_VM1" "$PUBLIC_IP_VM1"
  if [[ $VM2_PUBLIC_IP == true ]]; then
    create_public_ip "$PUBLIC_IP_VM2"
    create_nic "$NIC_VM2" "$VM2_PRIVATE_IP" "$NSG_VM2" "$PUBLIC_IP_VM2"
  else
    create_nic "$NIC_VM2" "$VM2_PRIVATE_IP" "$NSG_VM2" ""
  fi
}

# ---------------------------------------------------------------------------- cloud-init

render() { # template output: the template with TPL_* from the environment, written atomically
  "$AZURE_DIR/render-template.sh" "$1" >"$2.new"
  mv "$2.new" "$2"
}

registry_auth() {
  if [[ -z $REGISTRY ]]; then
    echo managed-identity
  elif [[ -n $REGISTRY_USERNAME ]]; then
    echo password
  else
    echo none
  fi
}

# The broker's image as docker-compose.yml names it (x-rabbitmq-image): the one place its
# version is set, for the laptop and VM 1 alike.
rabbitmq_image() {
  local image
  image=$(sed -n 's/^x-rabbitmq-image: &rabbitmq-image //p' "$REPO_ROOT/docker-compose.yml")
  [[ $image == rabbitmq:* ]] || die "no x-rabbitmq-image in docker-compose.yml"
  printf '%s' "$image"
}

render_cloud_init() {
  step "cloud-init for each VM ($STATE_DIR/cloud-init)"
  local dir=$STATE_DIR/cloud-init producer consumer rabbitmq registry_server auth
  producer=$(producer_image)
  consumer=$(consumer_image)
  rabbitmq=$(rabbitmq_image)
  registry_server=$(image_registry | cut -d/ -f1)
  auth=$(registry_auth)
  (
    umask 077
    mkdir -p "$dir"
    export TPL_VM1_PRIVATE_IP=$VM1_PRIVATE_IP TPL_VM2_PRIVATE_IP=$VM2_PRIVATE_IP \
      TPL_RABBITMQ_VHOST=$RABBITMQ_VHOST TPL_EXCHANGE=$EXCHANGE TPL_QUEUE=$QUEUE \
      TPL_PRODUCER_IMAGE=$producer TPL_CONSUMER_IMAGE=$consumer TPL_RABBITMQ_IMAGE=$rabbitmq \
      TPL_PRODUCER_AMQP_USER=$PRODUCER_AMQP_USER TPL_CONSUMER_AMQP_USER=$CONSUMER_AMQP_USER \
      TPL_RABBITMQ_MONITOR_USER=$RABBITMQ_MONITOR_USER \
      TPL_REGISTRY_SERVER=$registry_server TPL_REGISTRY_AUTH=$auth TPL_REGISTRY_USERNAME=$REGISTRY_USERNAME
    # No password goes into custom data (anyone who may read the VM's model can read it):
    # deliver_secrets puts them on each VM once it exists.
    render "$AZURE_DIR/vm1/env.tmpl" "$dir/vm1.env"
    render "$AZURE_DIR/vm2/env.tmpl" "$dir/vm2.env"
    render "$AZURE_DIR/vm/registry.env.tmpl" "$dir/registry.env"
    # VM 1's broker gets the users of this deployment with hashed passwords: the consumer's
    # password itself never reaches VM 1.
    "$REPO_ROOT/deploy/rabbitmq/render-definitions.sh" --vhost "$RABBITMQ_VHOST" --exchange "$EXCHANGE" \
      --admin "$RABBITMQ_ADMIN_USER:RABBITMQ_ADMIN_PASSWORD" \
      --monitor "$RABBITMQ_MONITOR_USER:RABBITMQ_MONITOR_PASSWORD" \
      --producer "$PRODUCER_AMQP_USER:$QUEUE:PRODUCER_AMQP_PASSWORD" \
      --consumer "$CONSUMER_AMQP_USER:$QUEUE:CONSUMER_AMQP_PASSWORD" >"$dir/definitions.json"

    export TPL_VM1_COMPOSE_FILE=$AZURE_DIR/vm1/compose.yaml TPL_VM2_COMPOSE_FILE=$AZURE_DIR/vm2/compose.yaml \
      TPL_VM1_ENV_FILE=$dir/vm1.env TPL_VM2_ENV_FILE=$dir/vm2.env \
      TPL_RABBITMQ_CONF_FILE=$REPO_ROOT/deploy/rabbitmq/30-change-of-circumstances.conf \
      TPL_DEFINITIONS_FILE=$dir/definitions.json TPL_REGISTRY_ENV_FILE=$dir/registry.env \
      TPL_REGISTRY_LOGIN_SCRIPT=$AZURE_DIR/vm/registry-login.sh \
      TPL_CA_CERTIFICATE_FILE=$STATE_DIR/tls/ca.pem \
      TPL_TLS_CONF_FILE=$REPO_ROOT/deploy/rabbitmq/50-tls.conf \
      TPL_SYSTEMD_UNIT_FILE=$AZURE_DIR/vm/change-of-circumstances.service
    render "$AZURE_DIR/cloud-init/vm1.yaml.tmpl" "$dir/vm1.yaml"
    render "$AZURE_DIR/cloud-init/vm2.yaml.tmpl" "$dir/vm2.yaml"
  )
  VM1_CLOUD_INIT=$dir/vm1.yaml
  VM2_CLOUD_INIT=$dir/vm2.yaml
  note "$VM1_CLOUD_INIT"
  note "$VM2_CLOUD_INIT"
}

# ---------------------------------------------------------------------------- VMs

# VMs created by this run: their identity got AcrPull as it was made.
CREATED_VMS=()

create_vm() { # name size nic cloud-init
  if az_exists vm show --resource-group "$RESOURCE_GROUP" --name "$1"; then
    # cloud-init ran at its first boot; custom data cannot change afterwards.
    note "VM $1 exists: left as it is (to change its configuration, edit /opt/change-of-circumstances on it, or tear down and deploy again)"
    return
  fi
  # With an ACR, the identity may pull from it from its first boot (the role is assigned as
  # part of the creation), so VM 1's first pull does not wait for a later grant.
  local acr_pull=()
  [[ -n $REGISTRY ]] || acr_pull=(--scope "$ACR_ID" --role AcrPull)
  run az vm create --resource-group "$RESOURCE_GROUP" --name "$1" --location "$LOCATION" \
    --nics "$3" --size "$2" --image "$VM_IMAGE" \
    --os-disk-size-gb "$OS_DISK_SIZE_GB" --storage-sku "$OS_DISK_SKU" \
    --admin-username "$ADMIN_USERNAME" --authentication-type ssh --ssh-key-values "$SSH_PUBLIC_KEY_FILE" \
    --assign-identity '[system]' "${acr_pull[@]}" --custom-data "$4" --output none
  CREATED_VMS+=("$1")
}

create_vms() {
  step "Virtual machines (both on $VNET_NAME/$SUBNET_NAME)"
  create_vm "$VM1_NAME" "$VM1_SIZE" "$NIC_VM1" "$VM1_CLOUD_INIT"
  create_vm "$VM2_NAME" "$VM2_SIZE" "$NIC_VM2" "$VM2_CLOUD_INIT"
}

# For a VM of an earlier run (one made before the role came with the creation, or whose
# grant was removed). The assignments are matched on the identity's object id, in the
# answer: `--assignee` would look the identity up in Microsoft Graph, which may not know a
# new one yet ("Cannot find user or service principal").
grant_acr_pull() { # vm
  local principal count
  if [[ " ${CREATED_VMS[*]} " == *" $1 "* ]]; then
    note "$1 got AcrPull on $ACR_NAME when it was created"
    return
  fi
  principal=$(read_az "<principal-id-of-$1>" vm show --resource-group "$RESOURCE_GROUP" --name "$1" \
    --query identity.principalId --output tsv)
  count=$(read_az 0 role assignment list --role AcrPull --scope "$ACR_ID" \
    --query "length([?principalId=='$principal'])" --output tsv)
  if ((count > 0)); then
    note "$1 may already pull from $ACR_NAME"
    return
  fi
  run az role assignment create --assignee-object-id "$principal" --assignee-principal-type ServicePrincipal \
    --role AcrPull --scope "$ACR_ID" --output none
}

grant_registry_access() {
  [[ -n $REGISTRY ]] && return
  step "AcrPull on $ACR_NAME for each VM's managed identity (and nothing else)"
  grant_acr_pull "$VM1_NAME"
  grant_acr_pull "$VM2_NAME"
}

# ---------------------------------------------------------------------------- run commands on the VMs

# Runs vm/NAME.sh on VM with `az vm run-command create` (a run command of that name) and waits
# for it; sets RUN_OUTPUT to what the script printed. PARAMETERS are plain, shown in the plan;
# each of PROTECTED_NAMES (variables of this script: passwords) is a protected parameter,
# encrypted on its way to the VM, never returned by the API and shown in the plan as <NAME>.
# The run command is deleted afterwards, so its settings do not stay on the VM's model. A
# run command "succeeds" once the script has run, whatever its exit code: its state is asked,
# and a failure stops deploy.sh, saying where to read the script's output.
run_on_vm() { # vm name "protected-name..." parameter...
  local vm=$1 name=$2 protected secret given=() shown=()
  read -r -a protected <<<"$3"
  shift 3
  for secret in "${protected[@]}"; do
    given+=("$secret=${!secret}")
    shown+=("$secret=<$secret>")
  done
  local args=(vm run-command create --resource-group "$RESOURCE_GROUP" --vm-name "$vm"
    --run-command-name "$name" --script "@$AZURE_DIR/vm/$name.sh"
    --parameters "$@" --async-execution false --timeout-in-seconds 1800 --output none)
  if ((${#protected[@]})); then
    printf '+ %s\n' "$(quote_command az "${args[@]}" --protected-parameters "${shown[@]}")"
    is_dry_run || az "${args[@]}" --protected-parameters "${given[@]}"
  else
    run az "${args[@]}"
  fi
  local show=(vm run-command show --resource-group "$RESOURCE_GROUP" --vm-name "$vm"
    --run-command-name "$name" --instance-view) state
  state=$(read_az Succeeded "${show[@]}" --query instanceView.executionState --output tsv)
  [[ $state == Succeeded ]] || die "vm/$name.sh failed on $vm ($state); its output: $(quote_command az "${show[@]}")"
  RUN_OUTPUT=$(read_az '<its output>' "${show[@]}" --query instanceView.output --output tsv)
  run az vm run-command delete --resource-group "$RESOURCE_GROUP" --vm-name "$vm" \
    --run-command-name "$name" --yes --output none
}

# ---------------------------------------------------------------------------- TLS

# The broker's certificate, without its key ever leaving VM 1: VM 1 makes the key and a
# request (vm/broker-certificate.sh ACTION=request), this machine's CA signs it for VM 1's
# private IP and name (sign-broker-request.sh), VM 1 installs it (ACTION=install). On a
# re-run, VM 1 answers "not due" until the certificate is within BROKER_CERTIFICATE_RENEW_DAYS
# of its end (RENEW_BROKER_CERTIFICATE=1 renews it anyway): re-running deploy.sh is the renewal.
issue_broker_certificate() {
  step "TLS: the broker's certificate (its key is made on $VM1_NAME and never leaves it)"
  local certificate renew=0
  is_true "$RENEW_BROKER_CERTIFICATE" && renew=1
  run_on_vm "$VM1_NAME" broker-certificate "" ACTION=request "COMMON_NAME=$VM1_NAME" "RENEW=$renew" \
    "RENEW_DAYS=$BROKER_CERTIFICATE_RENEW_DAYS"
  if [[ $RUN_OUTPUT == "not due: "* ]]; then
    note "the certificate on $VM1_NAME is kept: valid until ${RUN_OUTPUT#not due: } (RENEW_BROKER_CERTIFICATE=1 renews it now)"
    return
  fi
  if is_dry_run; then
    note "(dry run) would sign $VM1_NAME's request for $(broker_certificate_names) with $STATE_DIR/tls/ca.key"
    certificate='<BROKER_CERTIFICATE>'
  else
    # One line each way (base64 of the PEM): the run command's output and parameters keep it whole.
    if ! certificate=$(sed -n 's/^request: //p' <<<"$RUN_OUTPUT" | base64 -d |
      STATE_DIR=$STATE_DIR VM1_NAME=$VM1_NAME VM1_PRIVATE_IP=$VM1_PRIVATE_IP "$AZURE_DIR/sign-broker-request.sh" |
      base64 | tr -d '\n') || [[ -z $certificate ]]; then
      die "could not sign $VM1_NAME's certificate request; it answered: $RUN_OUTPUT"
    fi
  fi
  run_on_vm "$VM1_NAME" broker-certificate "" ACTION=install "BROKER_CERTIFICATE=$certificate"
  note "signed for $(broker_certificate_names), valid for $BROKER_CERTIFICATE_DAYS days"
}

# ---------------------------------------------------------------------------- passwords

# Each VM's passwords, by vm/deliver-secrets.sh as protected parameters (deploy/README.md,
# "Where the passwords live"): the script waits for cloud-init, writes them into the VM's .env
# (or registry.env) and starts the stack.
deliver_secrets_to() { # vm secret-name...
  local vm=$1
  shift
  run_on_vm "$vm" deliver-secrets "$*" "SECRET_NAMES=$*"
}

deliver_secrets() {
  step "Passwords onto each VM (az vm run-command; never in custom data)"
  local registry=()
  [[ $(registry_auth) == password ]] && registry=(REGISTRY_PASSWORD)
  local vm1 vm2
  read -r -a vm1 <<<"$(vm_secret_names vm1)"
  read -r -a vm2 <<<"$(vm_secret_names vm2)"
  deliver_secrets_to "$VM1_NAME" "${vm1[@]}" "${registry[@]}"
  deliver_secrets_to "$VM2_NAME" "${vm2[@]}" "${registry[@]}"
}

# ---------------------------------------------------------------------------- looking after the VMs

# Boot diagnostics (managed storage) give the serial log and console in the portal and
# `az vm boot-diagnostics get-boot-log`, for a VM that does not answer SSH; the daily
# shutdown keeps a forgotten demo from costing more than a working day.
look_after_vms() {
  step "Boot diagnostics, and a daily shutdown at ${AUTO_SHUTDOWN_UTC} UTC"
  local vm
  for vm in "$VM1_NAME" "$VM2_NAME"; do
    run az vm boot-diagnostics enable --resource-group "$RESOURCE_GROUP" --name "$vm" --output none
    if [[ $AUTO_SHUTDOWN_UTC == off ]]; then
      note "$vm: no automatic shutdown (AUTO_SHUTDOWN_UTC=off)"
    else
      run az vm auto-shutdown --resource-group "$RESOURCE_GROUP" --name "$vm" --time "$AUTO_SHUTDOWN_UTC" --output none
    fi
  done
}

# ---------------------------------------------------------------------------- done

wait_for_producer() {
  VM1_PUBLIC_ADDRESS=$(read_az '<vm1-public-ip>' network public-ip show --resource-group "$RESOURCE_GROUP" \
    --name "$PUBLIC_IP_VM1" --query ipAddress --output tsv)
  VM2_PUBLIC_ADDRESS=''
  if [[ $VM2_PUBLIC_IP == true ]]; then
    VM2_PUBLIC_ADDRESS=$(read_az '<vm2-public-ip>' network public-ip show --resource-group "$RESOURCE_GROUP" \
      --name "$PUBLIC_IP_VM2" --query ipAddress --output tsv)
  fi
  if is_dry_run || ! is_true "$WAIT_FOR_PRODUCER"; then
    return
  fi
  step "Waiting for the producer on http://$VM1_PUBLIC_ADDRESS:8080/readyz (first boot: packages, image pulls; a few minutes)"
  local deadline=$((SECONDS + WAIT_TIMEOUT_SECS))
  until curl --fail --silent --max-time 5 "http://$VM1_PUBLIC_ADDRESS:8080/readyz" >/dev/null; do
    if ((SECONDS > deadline)); then
      die "the producer is not ready after ${WAIT_TIMEOUT_SECS} s: see deploy/README.md, Troubleshooting (ssh $ADMIN_USERNAME@$VM1_PUBLIC_ADDRESS sudo journalctl -u change-of-circumstances)"
    fi
    sleep 10
  done
  note "ready"
}

# The demo's variables (deploy/README.md, "The demo"), to source: VM 1's public address, VM 2's
# private one (reached through VM 1 whatever its layout), the admin password for the tunnel.
write_demo_env() {
  DEMO_ENV=$STATE_DIR/demo.env
  (
    umask 077
    cat >"$DEMO_ENV.new" <<EOF
# Written by deploy/azure/deploy.sh for the demo in deploy/README.md: . $DEMO_ENV
VM1=$VM1_PUBLIC_ADDRESS
VM2=$VM2_PRIVATE_IP
ADMIN_USERNAME=$ADMIN_USERNAME
RABBITMQ_ADMIN_PASSWORD=$RABBITMQ_ADMIN_PASSWORD
EOF
    mv "$DEMO_ENV.new" "$DEMO_ENV"
  )
}

print_summary() {
  local vm2_ssh
  if [[ $VM2_PUBLIC_IP == true ]]; then
    vm2_ssh="ssh $ADMIN_USERNAME@$VM2_PUBLIC_ADDRESS"
  else
    vm2_ssh="ssh -J $ADMIN_USERNAME@$VM1_PUBLIC_ADDRESS $ADMIN_USERNAME@$VM2_PRIVATE_IP"
  fi
  cat >&2 <<EOF

==> Deployed$(is_dry_run && echo ' (DRY RUN: nothing was changed)')
  Producer:        http://$VM1_PUBLIC_ADDRESS:8080  (live queue view at /)
  VM 1:            ssh $ADMIN_USERNAME@$VM1_PUBLIC_ADDRESS
  VM 2:            $vm2_ssh
  Management UI:   ssh -N -L 15672:127.0.0.1:15672 $ADMIN_USERNAME@$VM1_PUBLIC_ADDRESS
                   then http://localhost:15672 as $RABBITMQ_ADMIN_USER, password RABBITMQ_ADMIN_PASSWORD
                   in $STATE_DIR/secrets.env
  Demo:            . $DEMO_ENV   then deploy/README.md, "The demo"
  Troubleshooting: deploy/README.md. Remove everything: deploy/azure/teardown.sh
EOF
}

main() {
  require_bash_4_4
  load_settings
  check_tools
  check_network_settings
  check_ssh_key
  check_auto_shutdown
  is_dry_run && step "DRY RUN: az commands are printed, not run"
  check_azure_login
  detect_operator_ip
  load_or_create_acr_name
  load_or_create_secrets
  load_or_create_ca
  keep_layout
  register_providers
  create_resource_group
  create_registry
  push_images
  create_network
  create_security_groups
  create_network_interfaces
  render_cloud_init
  create_vms
  grant_registry_access
  issue_broker_certificate
  deliver_secrets
  look_after_vms
  wait_for_producer
  write_demo_env
  print_summary
}

main "$@"
