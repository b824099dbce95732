#!/usr/bin/env bash
# Builds the producer and consumer images on this machine and pushes them to the registry that
# deploy.sh uses: the ACR (ACR_NAME, kept in STATE_DIR) or REGISTRY. Building locally, not with
# `az acr build`, which free-trial subscriptions refuse.
#
#   deploy/azure/push-images.sh                  # deploy.sh runs it unless PUSH_IMAGES=0
#   REGISTRY=ghcr.io/you deploy/azure/push-images.sh
#   DRY_RUN=1 deploy/azure/push-images.sh        # print the commands only
#
# Images are built for IMAGE_PLATFORM (linux/amd64, the VMs' architecture) and tagged IMAGE_TAG
# (the git commit, -dirty with uncommitted changes). Needs Docker with BuildKit (Docker 23+).
set -euo pipefail

# shellcheck source-path=SCRIPTDIR
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

log_in_to_registry() {
  if [[ -z $REGISTRY ]]; then
    # Docker credentials for the ACR from your az login: no admin user, no stored password.
    run az acr login --name "$ACR_NAME"
  elif [[ -n $REGISTRY_USERNAME ]]; then
    local server=${REGISTRY%%/*}
    printf '+ %s\n' "$(quote_command docker login --username "$REGISTRY_USERNAME" --password-stdin "$server")"
    if ! is_dry_run; then
      printf '%s' "$REGISTRY_PASSWORD" | docker login --username "$REGISTRY_USERNAME" --password-stdin "$server"
    fi
  else
    note "REGISTRY_USERNAME is empty: using your existing docker login for $REGISTRY"
  fi
}

build_and_push() { # target image
  local revision created source_url
  revision=$(git -C "$REPO_ROOT" rev-parse HEAD 2>/dev/null || echo unknown)
  created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  source_url=$(public_source_url "$(git -C "$REPO_ROOT" remote get-url origin 2>/dev/null || true)")
  run docker build --platform "$IMAGE_PLATFORM" --target "$1" --tag "$2" \
    --build-arg VERSION="$IMAGE_TAG" --build-arg REVISION="$revision" \
    --build-arg CREATED="$created" --build-arg SOURCE_URL="$source_url" \
    --file "$REPO_ROOT/Dockerfile" "$REPO_ROOT"
  run docker push "$2"
}

main() {
  require_bash_4_4
  load_settings
  load_or_create_acr_name
  if ! is_dry_run; then
    command -v docker >/dev/null || die "docker is missing"
    [[ -n $REGISTRY ]] || command -v az >/dev/null || die "the Azure CLI (az) is missing"
  fi
  step "Images for $(image_registry), tag $IMAGE_TAG, platform $IMAGE_PLATFORM"
  log_in_to_registry
  build_and_push producer "$(producer_image)"
  build_and_push consumer "$(consumer_image)"
}

main "$@"
