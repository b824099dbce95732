#!/usr/bin/env bash
# Deletes everything deploy.sh created: the resource group RESOURCE_GROUP and all in it (VMs,
# disks, NICs, public IPs, NSGs, VNet, NAT gateway, registry; the VMs' identities and their
# role assignments go with them). Asks first unless YES=1.
#
#   deploy/azure/teardown.sh
#   YES=1 REMOVE_STATE=1 deploy/azure/teardown.sh   # no question; also delete STATE_DIR
#   DRY_RUN=1 deploy/azure/teardown.sh
#
# Azure also made NetworkWatcherRG/NetworkWatcher_<region> when the VNet was created; it is
# free, shared by the subscription's VNets, and left alone.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

confirm() {
  [[ ${YES:-0} == 1 ]] && return
  is_dry_run && return
  [[ -t 0 ]] || die "not a terminal: set YES=1 to delete resource group $RESOURCE_GROUP"
  local answer
  read -r -p "Delete resource group $RESOURCE_GROUP and everything in it? [y/N] " answer
  [[ $answer == [yY]* ]] || die "nothing deleted"
}

delete_resource_group() {
  local exists
  exists=$(read_az true group exists --name "$RESOURCE_GROUP")
  if [[ $exists != true ]]; then
    note "resource group $RESOURCE_GROUP does not exist: nothing to delete"
    return
  fi
  confirm
  step "Deleting resource group $RESOURCE_GROUP"
  # Azure takes 5-15 minutes; the terminal need not wait for it.
  run az group delete --name "$RESOURCE_GROUP" --yes --no-wait
  note "Azure is deleting it now (5-15 minutes). To wait for the end:"
  note "  az group wait --deleted --resource-group $RESOURCE_GROUP"
  note "or look: az group exists --name $RESOURCE_GROUP   (false once it is gone)"
}

remove_local_state() {
  if [[ ${REMOVE_STATE:-0} == 1 ]]; then
    step "Removing $STATE_DIR (passwords, ACR name, rendered cloud-init)"
    run rm -rf "$STATE_DIR"
  elif [[ -d $STATE_DIR ]]; then
    note "kept $STATE_DIR (REMOVE_STATE=1 removes it); a new deployment reuses its passwords and ACR name"
  fi
}

main() {
  require_bash_4_4
  load_settings
  if ! is_dry_run; then
    command -v az >/dev/null || die "the Azure CLI (az) is missing"
    az account show --output none 2>/dev/null || die "not logged in to Azure: run az login"
  fi
  delete_resource_group
  remove_local_state
}

main "$@"
