#!/usr/bin/env bash
# Every check of the packaging and deployment files, then the two-VM rehearsal. Installs
# nothing: deploy/install-check-tools.sh does that. Exits non-zero if any check fails (after
# running all of them, so that one run shows every problem).
#
#   deploy/install-check-tools.sh && deploy/check.sh      # as root (the rehearsal needs it)
#   SKIP_REHEARSAL=1 deploy/check.sh                      # static checks only, any user
#
#  1. hadolint on the Dockerfile
#  2. shellcheck on every shell script of the repository; every tracked file checks out with
#     LF line endings
#  3. `docker-compose config` on docker-compose.yml (with and without the pubsub profile, and
#     with docker-compose.cluster.yml) with an env file made from .env.example, and on each
#     VM's compose file with its rendered .env, refused without the passwords custom data no
#     longer carries, accepted once deliver-secrets.sh has added them
#  4. the plan test: DRY_RUN=1 deploy/azure/deploy.sh against a fake az (test_plan.py); the
#     VMs' registry login against fakes (test_registry_login.py); the passwords' delivery
#     onto a VM after cloud-init (test_deliver_secrets.py); the images' source label;
#     README's order of the Azure commands
#  5. `cloud-init schema` and the current cloud-init JSON schema on each rendered
#     cloud-config; `systemd-analyze verify` on the VMs' unit
#  6. the rehearsals: deploy/local/rehearse.sh (the network design, release binaries), then
#     deploy/local/rehearse-vms.sh (the VMs' compose files, images, cloud-init files and unit,
#     a Docker engine per VM; needs the machine's engine and the broker's image)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
readonly ROOT
WORK=$(mktemp -d /tmp/coc-check.XXXXXX)
readonly WORK
# Fetched by deploy/install-check-tools.sh.
CLOUD_CONFIG_SCHEMA=${CLOUD_INIT_SCHEMA_DIR:-/var/cache/change-of-circumstances/cloud-init-schema}/schema-cloud-config-v1.json
readonly CLOUD_CONFIG_SCHEMA
trap 'rm -rf "$WORK"' EXIT

failed=()

step() { printf '\n==> %s\n' "$*"; }

# Runs one check; a failure is recorded and the next check runs anyway.
check() { # description command...
  local description=$1
  shift
  if "$@"; then
    printf '    ok: %s\n' "$description"
  else
    printf '    FAILED: %s\n' "$description" >&2
    failed+=("$description")
  fi
}

require_tools() {
  local tool missing=()
  for tool in hadolint docker-compose shellcheck cloud-init python3; do
    command -v "$tool" >/dev/null || missing+=("$tool")
  done
  python3 -c 'import yaml' 2>/dev/null || missing+=("python3-yaml")
  python3 -c 'import jsonschema' 2>/dev/null || missing+=("jsonschema")
  [[ -f $CLOUD_CONFIG_SCHEMA ]] || missing+=("$CLOUD_CONFIG_SCHEMA")
  if ((${#missing[@]})); then
    echo "missing: ${missing[*]}; run deploy/install-check-tools.sh" >&2
    exit 1
  fi
}

lint_dockerfile() {
  step "hadolint"
  check "Dockerfile" hadolint "$ROOT/Dockerfile"
}

# Files with a .sh name or a shell shebang, tracked or new, outside target/.
shell_scripts() {
  local file
  git -C "$ROOT" ls-files --cached --others --exclude-standard | sort -u | while IFS= read -r file; do
    [[ -f $ROOT/$file ]] || continue
    if [[ $file == *.sh ]] || head -n1 "$ROOT/$file" | grep -Eq '^#!(/usr/bin/env )?(/bin/|/usr/bin/)?(ba)?sh( |$)'; then
      printf '%s\n' "$file"
    fi
  done
}

lint_shell_scripts() {
  step "shellcheck"
  local file
  while IFS= read -r file; do
    check "$file" shellcheck --external-sources --source-path=SCRIPTDIR "$ROOT/$file"
  done < <(shell_scripts)
}

# Files checked out with CRLF (Windows, default settings) die in a container or a VM
# (`env: 'bash\r'`): .gitattributes must give every tracked file LF.
every_file_checks_out_with_lf() {
  local not_lf
  not_lf=$(git -C "$ROOT" ls-files -z | xargs -0 git -C "$ROOT" check-attr eol -- | grep -v ': eol: lf$' || true)
  [[ -z $not_lf ]] || { printf '    not forced to LF: %s\n' "$not_lf"; return 1; }
}

# A `# syntax=` line makes every build fetch a BuildKit frontend image from a registry.
builds_without_a_registry() {
  ! grep -qi '^# *syntax *=' "$ROOT/Dockerfile"
}

check_line_endings() {
  step "line endings, and a Dockerfile built by the engine's own BuildKit"
  check "every tracked file checks out with LF line endings (.gitattributes)" every_file_checks_out_with_lf
  check "the Dockerfile names no frontend image (# syntax=)" builds_without_a_registry
}

compose_config() { # env-file compose-file [compose options...]
  local env_file=$1 file=$2
  shift 2
  docker-compose --project-directory "$(dirname "$file")" --env-file "$env_file" -f "$file" "$@" config --quiet
}

# docker-compose.yml sets the broker's version; VM 1 takes it from there (deploy.sh renders
# it into VM 1's .env, which the plan test checks); the cluster's overlay, another file,
# cannot use its anchor and must name the same image.
same_rabbitmq_image() {
  local laptop cluster vm1
  laptop=$(sed -n 's/^x-rabbitmq-image: &rabbitmq-image //p' "$ROOT/docker-compose.yml")
  cluster=$(sed -n 's/^ *image: \(rabbitmq:.*\)$/\1/p' "$ROOT/docker-compose.cluster.yml")
  vm1=$(sed -n 's/^ *image: \(.*RABBITMQ.*\)$/\1/p' "$ROOT/deploy/azure/vm1/compose.yaml")
  echo "    docker-compose.yml: $laptop; docker-compose.cluster.yml: $cluster; VM 1: $vm1"
  # shellcheck disable=SC2016 # the literal compose variable, not a shell expansion
  [[ -n $laptop && $laptop == "$cluster" && $vm1 == '${RABBITMQ_IMAGE:?}' ]]
}

every_setting_has_a_value() { # env-file: no empty value left after new-env.sh
  ! grep -Eq '^[A-Z0-9_]+=$' "$1"
}

refuses_empty_passwords() { # compose config must fail with the blank passwords of .env.example
  ! docker-compose --env-file "$ROOT/.env.example" -f "$ROOT/docker-compose.yml" config --quiet 2>/dev/null
}

validate_compose_files() {
  step "docker-compose config"
  "$ROOT/deploy/new-env.sh" "$WORK/laptop.env" >/dev/null
  check ".env made from .env.example has every password" every_setting_has_a_value "$WORK/laptop.env"
  check "docker-compose.yml" compose_config "$WORK/laptop.env" "$ROOT/docker-compose.yml"
  check "docker-compose.yml --profile pubsub" compose_config "$WORK/laptop.env" "$ROOT/docker-compose.yml" --profile pubsub
  check "docker-compose.yml with docker-compose.cluster.yml (three brokers), pubsub too" \
    compose_config "$WORK/laptop.env" "$ROOT/docker-compose.yml" -f "$ROOT/docker-compose.cluster.yml" --profile pubsub
  check "docker-compose.yml refuses to start without passwords" refuses_empty_passwords
  check "the same RabbitMQ image on the laptop, in its cluster and on VM 1" same_rabbitmq_image
}

# The source label pushed inside the images must carry no credentials from the clone's URL.
source_label_has_no_credentials() {
  # shellcheck source=azure/lib.sh
  source "$ROOT/deploy/azure/lib.sh"
  local url expected
  while IFS=' ' read -r url expected; do
    [[ $(public_source_url "$url") == "$expected" ]] || {
      echo "    public_source_url $url gave $(public_source_url "$url"), not $expected"
      return 1
    }
  done <<'URLS'
https://me:ghp_SECRET@github.com/team/coc.git https://github.com/team/coc.git
https://x-access-token:abc@github.com/team/coc https://github.com/team/coc
https://github.com/team/coc.git https://github.com/team/coc.git
git@github.com:team/coc.git git@github.com:team/coc.git
ssh://git@github.com/team/coc.git ssh://github.com/team/coc.git
URLS
}

# README's Deploying must not start with push-images.sh: on an empty subscription there is
# no registry to push to yet (deploy.sh creates it, then pushes).
readme_deploys_with_deploy_sh_first() {
  local first
  first=$(grep -oE '^(DRY_RUN=1 )?deploy/azure/[a-z-]+\.sh' "$ROOT/README.md" | head -n 1)
  echo "    README's first Azure command: $first"
  [[ $first == *deploy/azure/deploy.sh ]]
}

run_registry_login_test() {
  step "The VMs' registry login (fake metadata service, registry, docker) and password delivery"
  check "deploy/azure/testing/test_registry_login.py" python3 "$ROOT/deploy/azure/testing/test_registry_login.py"
  check "deploy/azure/testing/test_deliver_secrets.py" python3 "$ROOT/deploy/azure/testing/test_deliver_secrets.py"
  check "the images' source label carries no credentials" source_label_has_no_credentials
  check "README deploys with deploy.sh first" readme_deploys_with_deploy_sh_first
}

run_plan_test() {
  step "Plan test: DRY_RUN=1 deploy/azure/deploy.sh against a fake az"
  check "deploy/azure/testing/test_plan.py" python3 "$ROOT/deploy/azure/testing/test_plan.py" --state-root "$WORK/plan"
  local scenario vm
  for scenario in "$WORK"/plan/*/; do
    scenario=${scenario%/}
    [[ -d $scenario/state/cloud-init ]] || continue
    for vm in vm1 vm2; do
      check "deploy/azure/$vm/compose.yaml refuses the .env of $(basename "$scenario") as custom data has it (no password)" \
        refuses_env_without_passwords "$scenario/state/cloud-init/$vm.env" "$ROOT/deploy/azure/$vm/compose.yaml"
      check "deploy/azure/$vm/compose.yaml with that .env once deliver-secrets.sh has added the passwords" \
        compose_config_after_delivery "$scenario" "$vm"
    done
  done
}

refuses_env_without_passwords() { # env-file compose-file
  ! compose_config "$@" 2>/dev/null
}

# What the run command does on the VM, on a copy: the passwords of the plan's secrets.env
# into the rendered .env (fakes stand in for cloud-init and systemctl), then compose config.
compose_config_after_delivery() { # scenario vm
  local scenario=$1 vm=$2 dir names
  dir=$WORK/delivered/$(basename "$scenario")-$vm
  mkdir -p "$dir/bin"
  cp "$scenario/state/cloud-init/$vm.env" "$dir/.env"
  printf '#!/bin/sh\n' >"$dir/bin/cloud-init"
  printf '#!/bin/sh\n' >"$dir/bin/systemctl"
  chmod +x "$dir/bin/cloud-init" "$dir/bin/systemctl"
  names=$(
    # shellcheck source=azure/lib.sh
    source "$ROOT/deploy/azure/lib.sh"
    vm_secret_names "$vm"
  )
  (
    set -a
    # shellcheck disable=SC1091 # made by the plan test
    source "$scenario/state/secrets.env"
    set +a
    PATH=$dir/bin:$PATH COC_DIR=$dir SECRET_NAMES=$names "$ROOT/deploy/azure/vm/deliver-secrets.sh" >/dev/null
  ) && compose_config "$dir/.env" "$ROOT/deploy/azure/$vm/compose.yaml"
}

validate_cloud_init() {
  step "cloud-init schema"
  local file count=0
  for file in "$WORK"/plan/*/state/cloud-init/vm*.yaml; do
    [[ -f $file ]] || continue
    count=$((count + 1))
    check "${file#"$WORK/plan/"}" cloud-init schema --config-file "$file"
    check "${file#"$WORK/plan/"} against the current schema ($(cat "$(dirname "$CLOUD_CONFIG_SCHEMA")/VERSION"))" \
      python3 "$ROOT/deploy/azure/testing/validate_cloud_config.py" "$CLOUD_CONFIG_SCHEMA" "$file"
  done
  check "the current schema refuses a misspelt key (run_cmd:)" refuses_unknown_key
  check "rendered cloud-configs found ($count)" test "$count" -ge 2
  if command -v systemd-analyze >/dev/null; then
    check "systemd-analyze verify change-of-circumstances.service" verify_systemd_unit
  else
    echo "    skipped systemd-analyze verify (not installed)"
  fi
}

# The check above must be able to fail: a key the VMs' cloud-init would ignore is an error.
refuses_unknown_key() {
  printf '#cloud-config\nrun_cmd:\n  - echo never run\n' >"$WORK/misspelt.yaml"
  ! python3 "$ROOT/deploy/azure/testing/validate_cloud_config.py" "$CLOUD_CONFIG_SCHEMA" "$WORK/misspelt.yaml" 2>/dev/null
}

# systemd-analyze verify needs the unit's dependencies and commands to exist: give it a root
# with stand-ins for docker and the targets a VM has.
verify_systemd_unit() {
  local root=$WORK/systemd-root target
  mkdir -p "$root/usr/bin" "$root/etc/systemd/system" "$root/opt/change-of-circumstances"
  printf '#!/bin/sh\n' >"$root/usr/bin/docker"
  cp "$ROOT/deploy/azure/vm/registry-login.sh" "$root/opt/change-of-circumstances/"
  chmod +x "$root/usr/bin/docker" "$root/opt/change-of-circumstances/registry-login.sh"
  printf '[Unit]\nDescription=stand-in\n[Service]\nExecStart=/usr/bin/docker\n' >"$root/etc/systemd/system/docker.service"
  for target in sysinit basic network-online multi-user shutdown sockets paths timers slices local-fs; do
    printf '[Unit]\nDescription=stand-in\n' >"$root/etc/systemd/system/$target.target"
  done
  printf '[Unit]\nDescription=stand-in\n' >"$root/etc/systemd/system/-.slice"
  printf '[Unit]\nDescription=stand-in\n' >"$root/etc/systemd/system/system.slice"
  cp "$ROOT/deploy/azure/vm/change-of-circumstances.service" "$root/etc/systemd/system/"
  systemd-analyze verify --man=no --root="$root" /etc/systemd/system/change-of-circumstances.service
}

run_rehearsal() {
  step "Rehearsal: two VMs in network namespaces (deploy/local/rehearse.sh)"
  if [[ ${SKIP_REHEARSAL:-0} == 1 ]]; then
    echo "    skipped (SKIP_REHEARSAL=1)"
    return
  fi
  check "deploy/local/rehearse.sh" "$ROOT/deploy/local/rehearse.sh"
  step "Rehearsal: the two VMs' own compose files, images and unit, one Docker engine each (deploy/local/rehearse-vms.sh)"
  check "deploy/local/rehearse-vms.sh" "$ROOT/deploy/local/rehearse-vms.sh"
}

main() {
  require_tools
  lint_dockerfile
  lint_shell_scripts
  check_line_endings
  validate_compose_files
  run_plan_test
  run_registry_login_test
  validate_cloud_init
  run_rehearsal
  if ((${#failed[@]})); then
    printf '\n%d check(s) FAILED:\n' "${#failed[@]}" >&2
    printf '  %s\n' "${failed[@]}" >&2
    exit 1
  fi
  printf '\nAll checks passed.\n'
}

main "$@"
