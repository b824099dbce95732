#!/usr/bin/env python3
"""Validates cloud-config files against a cloud-init JSON schema (the one
deploy/install-check-tools.sh fetches from the current cloud-init package).

    validate_cloud_config.py SCHEMA FILE...

`cloud-init schema` of the cloud-init installed here (Debian's 22.4) accepts a misspelt
top-level key such as `run_cmd:`, which the VMs' cloud-init would ignore, silently; the
current schema forbids any key it does not define. Exit 0 only if every file is valid.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jsonschema
import yaml


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    schema = json.loads(Path(sys.argv[1]).read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    invalid = 0
    for name in sys.argv[2:]:
        text = Path(name).read_text()
        if not text.startswith("#cloud-config"):
            print(f"{name}: does not start with #cloud-config", file=sys.stderr)
            invalid += 1
            continue
        errors = sorted(validator.iter_errors(yaml.safe_load(text)), key=lambda e: list(e.path))
        for error in errors:
            where = "/".join(str(part) for part in error.path) or "(top level)"
            print(f"{name}: {where}: {error.message}", file=sys.stderr)
        invalid += bool(errors)
    return 1 if invalid else 0


if __name__ == "__main__":
    sys.exit(main())
