#!/usr/bin/env bash
# `docker compose up --build` for real, README's walkthrough against it, then everything it
# created removed (containers, networks, volumes), whatever happens. What .ci/run runs; runs on
# a laptop too (it uses, and on exit removes, the stack of this checkout's .env).
#
#   deploy/local/compose-ci.sh
#
# Needs a Docker engine with compose v2. Where none answers, or where a base image cannot be
# pulled from its public registry, it uses the docker-here kit (DOCKER_HERE_KIT, default
# ../shared/docker-here beside the repository, else /work/shared/docker-here): its setup.sh
# starts an engine, its standins.sh builds local stand-ins tagged with the exact names.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"

log() { printf '==> compose-ci: %s\n' "$*"; }
die() { printf 'compose-ci: %s\n' "$*" >&2; exit 1; }

kit() {
  local dir
  for dir in "${DOCKER_HERE_KIT:-}" "$ROOT/../shared/docker-here" /work/shared/docker-here; do
    [[ -n $dir && -x $dir/setup.sh ]] && { printf '%s' "$dir"; return; }
  done
  return 1
}

ensure_engine() {
  if docker info >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
    return
  fi
  local dir
  dir=$(kit) || die "no Docker engine with compose v2 answers, and no docker-here kit to start one"
  log "starting a Docker engine with $dir/setup.sh"
  "$dir/setup.sh"
}

# Every image the Dockerfile builds from and the compose file runs, each pulled if missing,
# or built as a stand-in where its registry cannot be reached.
base_images() {
  local name value image
  {
    # FROM lines with the Dockerfile's ARG defaults put in.
    sed -n 's/^FROM \([^ ]*\).*/\1/p' Dockerfile | while IFS= read -r image; do
      while IFS='=' read -r name value; do
        image=${image//\$\{$name\}/$value}
      done < <(sed -n 's/^ARG \([A-Z_]*=.*\)/\1/p' Dockerfile)
      printf '%s\n' "$image"
    done
    sed -n 's/^x-rabbitmq-image: &rabbitmq-image //p; s/^ *image: \([a-z][^$]*:[^ ]*\)$/\1/p' docker-compose.yml
  } | grep ':' | grep -v '^change-of-circumstances/' | sort -u
}

ensure_base_images() {
  local image missing=()
  while IFS= read -r image; do
    docker image inspect "$image" >/dev/null 2>&1 && continue
    if timeout 30 docker pull -q "$image" >/dev/null 2>&1; then
      log "pulled $image"
    else
      missing+=("$image")
    fi
  done < <(base_images)
  ((${#missing[@]})) || return 0
  local dir
  dir=$(kit) || die "cannot pull ${missing[*]}, and no docker-here kit to build stand-ins"
  log "cannot pull ${missing[*]}: building local stand-ins ($dir/standins.sh)"
  NO_PULL=1 "$dir/standins.sh" "${missing[@]}"
}

teardown() {
  local status=$?
  log "removing the stack, every profile's, with its volumes"
  docker compose --profile '*' down -v --remove-orphans >/dev/null 2>&1 || true
  if [[ -n ${created_env:-} ]]; then rm -f "$ROOT/.env"; fi
  exit "$status"
}

started=$SECONDS
ensure_engine
ensure_base_images
if [[ ! -f .env ]]; then
  deploy/new-env.sh >/dev/null
  created_env=1
fi
trap teardown EXIT

log "docker compose build"
t=$SECONDS
docker compose --profile '*' build --quiet
log "built in $((SECONDS - t)) s"

log "docker compose up --wait"
t=$SECONDS
docker compose up -d --wait
log "up and healthy in $((SECONDS - t)) s"

deploy/local/walkthrough.sh

# README's teardown must leave nothing of the project behind, every profile's included.
log "docker compose --profile '*' down -v leaves nothing behind"
docker compose --profile '*' down -v
project=$(docker compose config --format json | python3 -c 'import json, sys; print(json.load(sys.stdin)["name"])')
left=$(docker ps -aq --filter "label=com.docker.compose.project=$project"; docker volume ls -q --filter "label=com.docker.compose.project=$project")
[[ -z $left ]] || die "left behind after down -v: $left"
log "done in $((SECONDS - started)) s"
