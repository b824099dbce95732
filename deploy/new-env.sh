#!/usr/bin/env bash
# Writes .env for `docker compose` from .env.example, with a random password for every empty
# *_PASSWORD. An existing .env is kept as it is, so `deploy/new-env.sh && docker compose up`
# is safe to repeat (remove .env to start afresh; the broker and the database keep the old
# passwords in their volumes until `docker compose down -v`).
#
#   deploy/new-env.sh [TARGET]     # TARGET defaults to .env at the repository's root
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
example=$root/.env.example
target=${1:-$root/.env}

# shellcheck source=lib.sh
source "$root/deploy/lib.sh"

write_env() {
  local line
  while IFS= read -r line || [[ -n $line ]]; do
    if [[ $line =~ ^([A-Z0-9_]+_(PASSWORD|COOKIE))=$ ]]; then
      line="${BASH_REMATCH[1]}=$(random_password)"
    fi
    printf '%s\n' "$line"
  done <"$example"
}

if [[ -e $target ]]; then
  echo "$target already exists; keeping it."
  exit 0
fi
umask 077
write_env >"$target"
echo "Wrote $target with new random passwords (mode 0600)."
