#!/usr/bin/env python3
"""The password delivery test: runs `deploy/azure/vm/deliver-secrets.sh` as the VM's run
command runs it (the passwords in its environment), on a copy of the VM's directory, with a
fake `cloud-init` and `systemctl` on PATH, then asks docker-compose what VM 1's compose file
makes of the result.

    deploy/azure/testing/test_deliver_secrets.py

What must hold:
  * each password lands in .env (REGISTRY_PASSWORD in registry.env, as registry-login.sh
    reads it), readable by root only, every other line kept;
  * compose puts the passwords into the services' URLs exactly as given; a password that a URL
    or compose would change ($, #, space, ...) is refused, the registry's token is not;
  * the stack is restarted when a password changed, and left alone when nothing did;
  * a re-run replaces a line instead of adding a second one;
  * it waits for cloud-init, goes on after cloud-init's "done with recoverable errors" (2),
    and stops on a failure, on a missing value, or on a value it cannot write safely.
Exit 0 only if every check held.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

AZURE_DIR = Path(__file__).resolve().parent.parent
SCRIPT = AZURE_DIR / "vm" / "deliver-secrets.sh"
VM1_COMPOSE = AZURE_DIR / "vm1" / "compose.yaml"
# deploy.sh's passwords are letters and digits; an operator's own may use the other
# characters a URL keeps as they are.
PRODUCER = "Pr0ducer-pass_word.~"
MONITOR = "m0nitor-password"
# A registry's password (a token) may be base64: '+', '/', '=' padding.
REGISTRY = "t0ken+/\\ending=="

# Logs its arguments; `cloud-init` exits with $FAKE_CLOUD_INIT_EXIT, `systemctl is-active`
# with $FAKE_ACTIVE_EXIT.
FAKE = """#!/bin/sh
echo "$(basename "$0") $*" >>"$FAKE_LOG"
case "$(basename "$0") $1" in
  "cloud-init status") exit "${FAKE_CLOUD_INIT_EXIT:-0}" ;;
  "systemctl is-active") exit "${FAKE_ACTIVE_EXIT:-0}" ;;
esac
"""

ENV_FILE = """# VM 1's settings (rendered from vm1/env.tmpl)
VM1_PRIVATE_IP=10.20.1.10
VM2_PRIVATE_IP=10.20.1.11
PRODUCER_IMAGE=example.azurecr.io/producer:test
RABBITMQ_IMAGE=rabbitmq:4.3.6-management
RABBITMQ_VHOST=change-of-circumstances
EXCHANGE=customer.events
QUEUE=change-of-circumstances
PRODUCER_AMQP_USER=coc-producer
RABBITMQ_MONITOR_USER=coc-monitor
"""

failures: list[str] = []


def check(condition: bool, description: str) -> None:
    print(f"    {'ok' if condition else 'FAILED'}: {description}")
    if not condition:
        failures.append(description)


class Vm:
    """A copy of /opt/change-of-circumstances and the fakes the script meets on a VM."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "opt"
        self.dir.mkdir()
        (self.dir / ".env").write_text(ENV_FILE)
        (self.dir / "registry.env").write_text("REGISTRY_SERVER=ghcr.io\nREGISTRY_AUTH=password\nREGISTRY_USERNAME=robot\n")
        (self.dir / "compose.yaml").write_text(VM1_COMPOSE.read_text())
        self.bin = root / "bin"
        self.bin.mkdir()
        for tool in ("cloud-init", "systemctl"):
            (self.bin / tool).write_text(FAKE)
            (self.bin / tool).chmod(0o755)
        self.log = root / "calls.log"

    def deliver(self, secrets: dict[str, str], **fake: str) -> subprocess.CompletedProcess[str]:
        self.log.write_text("")
        env = {
            "PATH": f"{self.bin}:{os.environ['PATH']}",
            "COC_DIR": str(self.dir),
            "FAKE_LOG": str(self.log),
            "SECRET_NAMES": " ".join(secrets),
            **secrets,
            **fake,
        }
        return subprocess.run([str(SCRIPT)], env=env, capture_output=True, text=True, check=False, timeout=60)

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines()

    def restarted(self) -> bool:
        return any(call.startswith("systemctl restart") for call in self.calls())

    def compose_environment(self, service: str) -> dict[str, str]:
        """The environment compose would give a service, or {} if compose refuses the files."""
        result = subprocess.run(
            ["docker-compose", "--project-directory", str(self.dir), "config", "--format", "json"],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            return {}
        return json.loads(result.stdout)["services"][service].get("environment", {})


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="coc-deliver-") as temporary:
        vm = Vm(Path(temporary))
        env = vm.dir / ".env"

        print("==> before the delivery: custom data alone does not start the producer")
        check(not vm.compose_environment("producer"), "compose refuses VM 1's .env without its passwords")

        print("==> the first delivery")
        secrets = {
            "PRODUCER_AMQP_PASSWORD": PRODUCER,
            "RABBITMQ_MONITOR_PASSWORD": MONITOR,
            "REGISTRY_PASSWORD": REGISTRY,
        }
        first = vm.deliver(secrets, FAKE_ACTIVE_EXIT="3")
        check(first.returncode == 0, f"exit 0 ({first.returncode}: {first.stderr.strip()})")
        check(vm.calls()[:1] == ["cloud-init status --wait"], "it waits for cloud-init first")
        environment = vm.compose_environment("producer")
        check(
            environment.get("AMQP_ADDR")
            == f"amqp://coc-producer:{PRODUCER}@rabbitmq:5672/change-of-circumstances"
            and environment.get("MANAGEMENT_URL") == f"http://coc-monitor:{MONITOR}@rabbitmq:15672",
            f"compose puts the passwords into the URLs as given: {environment.get('AMQP_ADDR')}",
        )
        check(env.read_text().startswith(ENV_FILE), "the rendered settings are kept as they were")
        check(
            f"REGISTRY_PASSWORD={REGISTRY}\n" in (vm.dir / "registry.env").read_text()
            and "REGISTRY_PASSWORD" not in env.read_text(),
            "the registry's password goes to registry.env, raw, as registry-login.sh reads it",
        )
        check(
            all(stat.S_IMODE((vm.dir / f).stat().st_mode) == 0o600 for f in (".env", "registry.env")),
            "both files are readable by root only (0600)",
        )
        check(vm.restarted(), "the stack is (re)started")

        print("==> a re-run with the same passwords")
        before = env.read_text()
        again = vm.deliver(secrets)
        check(again.returncode == 0 and env.read_text() == before, "nothing changes")
        check(not vm.restarted(), "a running stack is left alone")

        print("==> a re-run with a new password")
        changed = vm.deliver({**secrets, "RABBITMQ_MONITOR_PASSWORD": "new-one"})
        lines = [line for line in env.read_text().splitlines() if line.startswith("RABBITMQ_MONITOR_PASSWORD=")]
        check(changed.returncode == 0 and lines == ["RABBITMQ_MONITOR_PASSWORD=new-one"], f"one line, replaced: {lines}")
        check(vm.restarted(), "the stack is restarted")

        print("==> cloud-init")
        degraded = vm.deliver(secrets, FAKE_CLOUD_INIT_EXIT="2")
        check(degraded.returncode == 0, "cloud-init done with recoverable errors (2): it goes on")
        before = env.read_text()
        broken = vm.deliver({**secrets, "PRODUCER_AMQP_PASSWORD": "never-written"}, FAKE_CLOUD_INIT_EXIT="1")
        check(broken.returncode != 0 and env.read_text() == before, "cloud-init failed (1): it stops, nothing written")

        print("==> values it refuses")
        for name, value, why in (
            ("PRODUCER_AMQP_PASSWORD", "pa$word", "a '$' (compose would interpolate it)"),
            ("PRODUCER_AMQP_PASSWORD", "pass #1", "a space and a '#' (a URL would end there)"),
            ("RABBITMQ_MONITOR_PASSWORD", "user@host", "an '@' (it ends a URL's user part)"),
            ("REGISTRY_PASSWORD", "two\nlines", "a line break in the registry's password"),
            ("PRODUCER_AMQP_PASSWORD", "", "an empty value"),
        ):
            refused = vm.deliver({**secrets, name: value})
            check(
                refused.returncode != 0 and env.read_text() == before and not vm.restarted(),
                f"{why}: refused, nothing written ({refused.stderr.strip()})",
            )

    if failures:
        print(f"\nPassword delivery test FAILED ({len(failures)}):\n  " + "\n  ".join(failures))
        return 1
    print("\nPassword delivery test passed.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
