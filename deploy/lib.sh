# shellcheck shell=bash
# Helpers for every deploy script (new-env.sh, azure/deploy.sh, local/rehearse.sh). Sourced,
# not run.

# 32 random letters and digits: safe unescaped in amqp:// and postgres:// URIs, in .env
# files and in YAML, so a generated password never needs quoting anywhere it goes.
random_password() {
  local password=''
  while ((${#password} < 32)); do
    password+=$(head -c 256 /dev/urandom | LC_ALL=C tr -dc 'A-Za-z0-9')
  done
  printf '%s' "${password:0:32}"
}
