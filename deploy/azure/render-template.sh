#!/usr/bin/env bash
# Renders a template on stdout:
#   {{NAME}}                 the value of the environment variable TPL_NAME
#   {{include:NAME}}         alone on a line: the file whose path is in TPL_NAME, every line
#                            indented like the placeholder (for YAML block scalars)
# An unset TPL_ variable, a value with a line break or a missing file is an error: a template
# is never rendered half-filled.
#
#   TPL_HOST=vm1 TPL_COMPOSE_FILE=compose.yaml render-template.sh cloud-init.yaml.tmpl > out.yaml
set -euo pipefail

template=${1:?usage: render-template.sh TEMPLATE}
[[ -f $template ]] || {
  echo "render-template.sh: no template $template" >&2
  exit 1
}

awk '
  function fail(message) {
    printf "render-template.sh: %s:%d: %s\n", FILENAME, FNR, message > "/dev/stderr"
    failed = 1
    exit 1
  }
  function value_of(name) {
    if (!(("TPL_" name) in ENVIRON)) fail("TPL_" name " is not set")
    if (ENVIRON["TPL_" name] ~ /[\r\n]/) fail("TPL_" name " contains a line break")
    return ENVIRON["TPL_" name]
  }
  /^[ ]*\{\{include:[A-Z0-9_]+\}\}[ ]*$/ {
    indent = $0
    sub(/\{\{.*$/, "", indent)
    name = $0
    sub(/^[ ]*\{\{include:/, "", name)
    sub(/\}\}[ ]*$/, "", name)
    path = value_of(name)
    lines = 0
    while ((status = (getline line < path)) > 0) {
      print (line == "" ? "" : indent line)
      lines++
    }
    if (status < 0) fail("cannot read " path " (TPL_" name ")")
    if (lines == 0) fail(path " (TPL_" name ") is empty")
    close(path)
    next
  }
  {
    rest = $0
    out = ""
    while (match(rest, /\{\{[A-Z0-9_]+\}\}/)) {
      out = out substr(rest, 1, RSTART - 1) value_of(substr(rest, RSTART + 2, RLENGTH - 4))
      rest = substr(rest, RSTART + RLENGTH)
    }
    if (rest ~ /\{\{/) fail("a placeholder this renderer does not know: " rest)
    print out rest
  }
  END { if (failed) exit 1 }
' "$template"
