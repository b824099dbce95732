#!/usr/bin/env python3
"""Plays the part of a rendered cloud-config that can run outside a VM, for the rehearsal.

    play_cloud_init.py CLOUD_CONFIG ROOT

Writes every `write_files` entry under ROOT (ROOT/opt/..., ROOT/etc/...) with its permissions,
as cloud-init would on the VM, then prints each `runcmd` command on a line of its own, its
words shell-quoted, for the rehearsal to run or refuse (rehearse-vms.sh, play_runcmd).

An entry with a key this player does not carry out (encoding, owner, append, defer, ...) is an
error, and so is a runcmd given as a shell string: the rehearsal must never claim to have
played a line it did not. `packages` and `package_update` are left to the VM (Ubuntu's
docker.io and docker-compose-v2): the rehearsal's hosts have their own engine.
"""

import os
import shlex
import sys
from pathlib import Path

import yaml

WRITE_FILES_KEYS = {"path", "permissions", "content"}
TOP_LEVEL_KEYS = {"package_update", "packages", "write_files", "runcmd"}


def fail(message: str) -> None:
    sys.exit(f"play_cloud_init.py: {message}")


def write_file(root: Path, entry: dict) -> None:
    unknown = set(entry) - WRITE_FILES_KEYS
    if unknown:
        fail(f"write_files entry {entry.get('path')} uses {sorted(unknown)}, which the rehearsal does not play")
    path = Path(entry["path"])
    if not path.is_absolute():
        fail(f"write_files path {path} is not absolute")
    target = root / path.relative_to("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(entry.get("content", ""))
    # cloud-init's default is 0644; every entry of ours says what it wants.
    os.chmod(target, int(str(entry.get("permissions", "0644")), 8))


def main() -> None:
    if len(sys.argv) != 3:
        fail("usage: play_cloud_init.py CLOUD_CONFIG ROOT")
    text = Path(sys.argv[1]).read_text()
    if not text.startswith("#cloud-config\n"):
        fail(f"{sys.argv[1]} does not start with #cloud-config")
    config = yaml.safe_load(text)
    unknown = set(config) - TOP_LEVEL_KEYS
    if unknown:
        fail(f"{sys.argv[1]} uses {sorted(unknown)}, which the rehearsal does not play")
    root = Path(sys.argv[2])
    for entry in config.get("write_files", []):
        write_file(root, entry)
    for command in config.get("runcmd", []):
        if not isinstance(command, list):
            fail(f"runcmd {command!r} is a shell string: give it as a list of words")
        print(shlex.join(str(word) for word in command))


if __name__ == "__main__":
    main()
