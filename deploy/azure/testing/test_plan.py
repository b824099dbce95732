#!/usr/bin/env python3
"""The plan test: runs `DRY_RUN=1 deploy/azure/deploy.sh` against a fake `az` (and a fake
`docker`) and checks the printed plan and the rendered cloud-init files.

    deploy/azure/testing/test_plan.py [--state-root DIR]

Each scenario renders into DIR/<scenario> (a temporary directory by default), so that
deploy/check.sh can validate the cloud-init files afterwards. Exit 0 only if every check held.

What must hold, whatever the settings:
  * the dry run calls no az command but `az account show`, and no docker command;
  * no NSG rule lets the internet reach AMQP (5671, 5672), the management UI (15672) or
    RabbitMQ's clustering ports (4369, 25672); AMQP over TLS (5671) is allowed from the VNet
    only, plain AMQP (5672) from nowhere;
  * SSH (22) is allowed from the operator's address only; the producer's 8080 from the internet;
  * both VMs are created on NICs in the same VNet and subnet, VM 1 on its static private IP,
    and `az vm create` makes no network resource of its own (no default NSG opening SSH);
  * the subnet is private (no default outbound access) and VM 2 has an explicit way out;
  * with ACR, each VM's identity gets AcrPull on the registry and nothing else;
  * the cloud-init files carry the repository's compose files, VM 2 reaches VM 1's private
    address with its own user, and no guest user;
  * no password is in custom data or in the printed plan: each VM gets its own, once it exists,
    from a run command (vm/deliver-secrets.sh) with protected parameters;
  * TLS: the deployment's CA is made in STATE_DIR/tls (its key 0600), its certificate is in
    both VMs' custom data, no private key is in custom data or in the plan; VM 1 makes the
    broker's key and request, then installs the certificate, by two run commands before the
    passwords start its stack; the CA signs a request for VM 1's private IP and name;
  * both VMs have boot diagnostics and a daily shutdown (AUTO_SHUTDOWN_UTC, unless off);
  * demo.env sets every variable of deploy/README.md's demo; teardown.sh does not block.
"""

from __future__ import annotations

import argparse
import base64
import ipaddress
import os
import re
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

AZURE_DIR = Path(__file__).resolve().parent.parent
REPO_ROOT = AZURE_DIR.parent.parent
DEPLOY = AZURE_DIR / "deploy.sh"
OPERATOR_IP = "203.0.113.7"
VNET_PREFIX = "10.20.0.0/16"
VM1_PRIVATE_IP = "10.20.1.10"
VM2_PRIVATE_IP = "10.20.1.11"
BROKER_PORTS = {5671, 5672, 15672, 4369, 25672}
# The external registry scenario's password: it must reach the VMs, but not by custom data.
REGISTRY_PASSWORD = "not-a-real-token"
ANYWHERE = {"*", "internet", "any", "0.0.0.0", "0.0.0.0/0", "::/0"}

# Flags (of `az network nsg rule create`, `az vm run-command create`) that take several values,
# and the CLI's defaults of the rule's.
MULTI_VALUE = {
    "--source-address-prefixes",
    "--destination-address-prefixes",
    "--source-port-ranges",
    "--destination-port-ranges",
    "--parameters",
    "--protected-parameters",
}
RULE_DEFAULTS = {
    "--access": ["Allow"],
    "--direction": ["Inbound"],
    "--source-address-prefixes": ["*"],
    "--destination-port-ranges": ["80"],
}


@dataclass
class Outcome:
    scenario: str
    failures: list[str] = field(default_factory=list)

    def check(self, condition: bool, description: str) -> None:
        if condition:
            print(f"    ok: {description}")
        else:
            print(f"    FAILED: {description}")
            self.failures.append(description)


def options(words: list[str]) -> dict[str, list[str]]:
    """`--flag value...` pairs of a command line; a flag without value maps to []."""
    parsed: dict[str, list[str]] = {}
    flag = None
    for word in words:
        if word.startswith("--"):
            flag = word
            parsed.setdefault(flag, [])
        elif flag is not None:
            if parsed[flag] and flag not in MULTI_VALUE:
                flag = None
                continue
            parsed[flag].append(word)
    return parsed


def command_is(words: list[str], *prefix: str) -> bool:
    return words[: len(prefix)] == list(prefix)


def covers(port_spec: str, port: int) -> bool:
    if port_spec == "*":
        return True
    if "-" in port_spec:
        low, high = port_spec.split("-", 1)
        return int(low) <= port <= int(high)
    return int(port_spec) == port


def is_anywhere(source: str) -> bool:
    if source.lower() in ANYWHERE:
        return True
    try:
        return ipaddress.ip_network(source, strict=False).prefixlen == 0
    except ValueError:
        return False


def run_dry(state_dir: Path, fakes: Path, extra_env: dict[str, str]) -> tuple[int, str, str, Path, Path]:
    state_dir.mkdir(parents=True, exist_ok=True)
    home = state_dir / "home"
    (home / ".ssh").mkdir(parents=True, exist_ok=True)
    key = home / ".ssh" / "id_ed25519.pub"
    key.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPlanTestKeyOnlyPlanTestKeyOnlyPlanTestK plan-test\n")
    az_log, docker_log = state_dir / "az.log", state_dir / "docker.log"
    env = {
        "PATH": f"{fakes}:{os.environ['PATH']}",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "DRY_RUN": "1",
        "OPERATOR_IP": OPERATOR_IP,
        "STATE_DIR": str(state_dir / "state"),
        "SSH_PUBLIC_KEY_FILE": str(key),
        "FAKE_AZ_LOG": str(az_log),
        "FAKE_DOCKER_LOG": str(docker_log),
        **extra_env,
    }
    result = subprocess.run(
        [str(DEPLOY)], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    return result.returncode, result.stdout, result.stderr, az_log, docker_log


def generated_secrets(state_dir: Path) -> dict[str, str]:
    """The passwords deploy.sh generated for a scenario (its STATE_DIR/secrets.env)."""
    lines = (state_dir / "state" / "secrets.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def plan_lines(stdout: str) -> list[list[str]]:
    return [shlex.split(line[2:]) for line in stdout.splitlines() if line.startswith("+ ")]


def check_no_side_effects(outcome: Outcome, az_log: Path, docker_log: Path) -> None:
    az_calls = az_log.read_text().splitlines() if az_log.exists() else []
    outcome.check(
        all(call.startswith("account show") for call in az_calls),
        f"az was only asked `account show` ({len(az_calls)} calls)",
    )
    docker_calls = docker_log.read_text().splitlines() if docker_log.exists() else []
    outcome.check(not docker_calls, "docker was never called")


def check_security_rules(outcome: Outcome, plan: list[list[str]], vm2_public: bool) -> None:
    rules = [
        {**RULE_DEFAULTS, **options(words)}
        for words in plan
        if command_is(words, "az", "network", "nsg", "rule", "create")
    ]
    outcome.check(bool(rules), f"the plan creates NSG rules ({len(rules)})")
    outcome.check(
        not any(command_is(words, "az", "vm", "open-port") for words in plan),
        "no `az vm open-port`",
    )
    for rule in rules:
        name = f"{rule['--nsg-name'][0]}/{rule['--name'][0]}"
        if rule["--access"][0].lower() != "allow" or rule["--direction"][0].lower() != "inbound":
            continue
        ports = rule["--destination-port-ranges"]
        sources = rule["--source-address-prefixes"]
        for port in sorted(BROKER_PORTS):
            if any(covers(spec, port) for spec in ports):
                outcome.check(
                    not any(is_anywhere(source) for source in sources),
                    f"{name} allows {port} but not from the internet (sources {sources})",
                )
        if any(covers(spec, 5671) for spec in ports):
            outcome.check(sources == [VNET_PREFIX], f"{name}: AMQP over TLS only from the VNet {VNET_PREFIX}")
        outcome.check(
            not any(covers(spec, 5672) for spec in ports), f"{name} does not allow plain AMQP (5672), VNet included"
        )
        if any(covers(spec, 22) for spec in ports):
            outcome.check(
                sources == [f"{OPERATOR_IP}/32"],
                f"{name}: SSH only from the operator's address {OPERATOR_IP}/32 (sources {sources})",
            )
    allows = [rule for rule in rules if rule["--access"][0].lower() == "allow"]
    outcome.check(
        any(
            rule["--destination-port-ranges"] == ["8080"] and rule["--source-address-prefixes"] == ["Internet"]
            for rule in allows
        ),
        "the producer's 8080 is open to the internet",
    )
    ssh_on_vm2 = [rule for rule in allows if rule["--nsg-name"][0].endswith("vm2-nsg") and "22" in rule["--destination-port-ranges"]]
    if vm2_public:
        outcome.check(len(ssh_on_vm2) == 1, "VM 2 (public IP) admits SSH from the operator only")
    else:
        outcome.check(not ssh_on_vm2, "VM 2 (no public IP) has no SSH rule: it is reached through VM 1")


def check_network_and_vms(outcome: Outcome, plan: list[list[str]], vm2_public: bool) -> dict[str, str]:
    subnets = [options(w) for w in plan if command_is(w, "az", "network", "vnet", "subnet", "create")]
    outcome.check(len(subnets) == 1, "one subnet")
    subnet = subnets[0] if subnets else {}
    outcome.check(subnet.get("--default-outbound") == ["false"], "the subnet is private (--default-outbound false)")
    if not vm2_public:
        outcome.check(bool(subnet.get("--nat-gateway")), "VM 2's way out: the subnet's NAT gateway")
        outcome.check(
            any(command_is(w, "az", "network", "nat", "gateway", "create") for w in plan),
            "the NAT gateway is created",
        )

    nics = {options(w)["--name"][0]: options(w) for w in plan if command_is(w, "az", "network", "nic", "create")}
    outcome.check(len(nics) == 2, f"two NICs ({', '.join(nics)})")
    networks = {(tuple(n.get("--vnet-name", [])), tuple(n.get("--subnet", []))) for n in nics.values()}
    outcome.check(
        len(networks) == 1 and networks == {(tuple(subnet.get("--vnet-name", [])), tuple(subnet.get("--name", [])))},
        f"both NICs in the one VNet and subnet {sorted(networks)}",
    )
    addresses = sorted(n.get("--private-ip-address", [""])[0] for n in nics.values())
    outcome.check(addresses == [VM1_PRIVATE_IP, VM2_PRIVATE_IP], f"static private IPs {addresses}")
    vm2_nic = next((n for n in nics.values() if n.get("--private-ip-address") == [VM2_PRIVATE_IP]), {})
    outcome.check(
        bool(vm2_nic.get("--public-ip-address")) == vm2_public,
        f"VM 2 {'has' if vm2_public else 'has no'} public IP",
    )

    vms = [options(w) for w in plan if command_is(w, "az", "vm", "create")]
    outcome.check(len(vms) == 2, "two VMs")
    used_nics = sorted(vm.get("--nics", [""])[0] for vm in vms)
    outcome.check(used_nics == sorted(nics), f"each VM on its own NIC {used_nics}")
    implicit = {"--vnet-name", "--subnet", "--public-ip-address", "--nsg", "--nsg-rule", "--private-ip-address"}
    outcome.check(
        all(not (implicit & vm.keys()) for vm in vms),
        "az vm create makes no network resource of its own",
    )
    cloud_init = {}
    for vm in vms:
        name = vm["--name"][0]
        path = Path(vm.get("--custom-data", [""])[0])
        outcome.check(
            path.is_file() and path.read_text().startswith("#cloud-config\n"),
            f"{name}: --custom-data is a rendered #cloud-config file",
        )
        if path.is_file():
            encoded = len(base64.b64encode(path.read_bytes()))
            outcome.check(encoded <= 65536, f"{name}: custom data within Azure's 64 KB ({encoded} bytes encoded)")
        cloud_init[name] = str(path)
    return cloud_init


def check_registry(outcome: Outcome, plan: list[list[str]], acr: bool) -> None:
    grants = [options(w) for w in plan if command_is(w, "az", "role", "assignment", "create")]
    if acr:
        acr_create = [options(w) for w in plan if command_is(w, "az", "acr", "create")]
        outcome.check(
            len(acr_create) == 1 and acr_create[0].get("--admin-enabled") == ["false"],
            "an ACR without admin user",
        )
        vm_creates = [options(w) for w in plan if command_is(w, "az", "vm", "create")]
        outcome.check(
            len(vm_creates) == 2
            and all(
                v.get("--role") == ["AcrPull"] and "registries" in v.get("--scope", [""])[0] for v in vm_creates
            ),
            "each VM's identity gets AcrPull on the registry as the VM is created (no wait for a later grant)",
        )
        outcome.check(not grants, "no separate role assignment for VMs created by this run")
        outcome.check(
            any(command_is(w, "docker", "push") for w in plan) and any(command_is(w, "az", "acr", "login") for w in plan),
            "images built locally and pushed to the ACR (no az acr build)",
        )
        outcome.check(not any(command_is(w, "az", "acr", "build") for w in plan), "no az acr build")
    else:
        outcome.check(not grants, "no role assignment with an external registry")
        outcome.check(
            not any("--role" in options(w) for w in plan if command_is(w, "az", "vm", "create")),
            "no role on the VMs with an external registry",
        )
        outcome.check(not any(command_is(w, "az", "acr") for w in plan), "no ACR with an external registry")


def check_secret_delivery(outcome: Outcome, plan: list[list[str]], output: str, state_dir: Path, registry_auth: str) -> None:
    """The passwords reach each VM after it exists, as protected parameters of a run command
    (never custom data), and no value is printed."""
    secrets = generated_secrets(state_dir)
    printed = sorted(name for name, value in secrets.items() if value in output)
    printed += ["REGISTRY_PASSWORD"] if REGISTRY_PASSWORD in output else []
    outcome.check(not printed, f"the plan prints no password {printed}")
    registry = ["REGISTRY_PASSWORD"] if registry_auth == "password" else []
    wanted = {
        "coc-vm1": ["PRODUCER_AMQP_PASSWORD", "RABBITMQ_MONITOR_PASSWORD", *registry],
        "coc-vm2": ["CONSUMER_AMQP_PASSWORD", *registry],
    }
    for vm, names in wanted.items():
        created = next(
            (i for i, w in enumerate(plan) if command_is(w, "az", "vm", "create") and options(w)["--name"] == [vm]), None
        )
        runs = [
            (i, options(w))
            for i, w in enumerate(plan)
            if command_is(w, "az", "vm", "run-command", "create")
            and options(w).get("--vm-name") == [vm]
            and options(w).get("--run-command-name") == ["deliver-secrets"]
        ]
        delivered = len(runs) == 1 and created is not None and runs[0][0] > created
        given = runs[0][1] if runs else {}
        outcome.check(
            delivered
            and given.get("--script", [""])[0].endswith("/vm/deliver-secrets.sh")
            and given.get("--parameters") == [f"SECRET_NAMES={' '.join(names)}"]
            and [p.split("=", 1)[0] for p in given.get("--protected-parameters", [])] == names
            and given.get("--async-execution") == ["false"],
            f"{vm}: after it is created, a run command delivers {', '.join(names)} as protected parameters",
        )
        deleted = [
            i
            for i, w in enumerate(plan)
            if command_is(w, "az", "vm", "run-command", "delete")
            and options(w).get("--vm-name") == [vm]
            and options(w).get("--run-command-name") == ["deliver-secrets"]
        ]
        outcome.check(
            bool(runs) and len(deleted) == 1 and deleted[0] > runs[0][0],
            f"{vm}: the run command is deleted once it has run",
        )


def check_tls(outcome: Outcome, plan: list[list[str]], output: str, cloud_init: dict[str, str], state_dir: Path) -> None:
    """The broker's certificate: a CA on the operator's machine, its certificate on both VMs, the
    broker's key made on VM 1 (two run commands), no private key anywhere it could be read."""
    tls = state_dir / "state" / "tls"
    ca_key, ca_cert = tls / "ca.key", tls / "ca.pem"
    outcome.check(
        ca_key.is_file() and oct(ca_key.stat().st_mode & 0o777) == "0o600" and ca_cert.is_file(),
        "the deployment's CA is in STATE_DIR/tls, its key mode 0600",
    )
    if not ca_cert.is_file():
        return
    texts = {vm: Path(path).read_text() for vm, path in cloud_init.items()}
    outcome.check(
        not any("PRIVATE KEY" in text for text in texts.values()) and "PRIVATE KEY" not in output,
        "no private key in custom data or in the plan",
    )
    base = "/opt/change-of-circumstances"
    files1 = write_files(yaml.safe_load(texts["coc-vm1"]))
    files2 = write_files(yaml.safe_load(texts["coc-vm2"]))
    ca = ca_cert.read_text()
    outcome.check(
        files1.get(f"{base}/rabbitmq/tls/ca.pem") == ca and files2.get(f"{base}/tls/ca.pem") == ca,
        "both VMs get the CA's certificate (VM 1 serves the chain, VM 2 trusts it)",
    )
    outcome.check(
        files1.get(f"{base}/rabbitmq/50-tls.conf") == (REPO_ROOT / "deploy" / "rabbitmq" / "50-tls.conf").read_text(),
        "VM 1 gets the broker's TLS listener settings of docker-compose.yml (50-tls.conf)",
    )
    compose2 = files2.get(f"{base}/compose.yaml", "")
    outcome.check(
        f"amqps://${{CONSUMER_AMQP_USER:?}}:${{CONSUMER_AMQP_PASSWORD:?}}@${{VM1_PRIVATE_IP:?}}:5671/" in compose2
        and "AMQP_CA_FILE: /etc/change-of-circumstances/ca.pem" in compose2
        and "./tls/ca.pem:/etc/change-of-circumstances/ca.pem:ro" in compose2,
        "VM 2's consumer connects with amqps:// to VM 1's private IP on 5671, trusting the CA",
    )

    def runs(vm: str, verb: str) -> list[tuple[int, dict[str, list[str]]]]:
        return [
            (i, options(w))
            for i, w in enumerate(plan)
            if command_is(w, "az", "vm", "run-command", verb)
            and options(w).get("--vm-name") == [vm]
            and options(w).get("--run-command-name") == ["broker-certificate"]
        ]

    created = next(i for i, w in enumerate(plan) if command_is(w, "az", "vm", "create") and options(w)["--name"] == ["coc-vm1"])
    passwords = next(
        (i for i, w in enumerate(plan) if command_is(w, "az", "vm", "run-command", "create") and options(w).get("--run-command-name") == ["deliver-secrets"] and options(w).get("--vm-name") == ["coc-vm1"]),
        -1,
    )
    steps = runs("coc-vm1", "create")
    actions = [next((p for p in given.get("--parameters", []) if p.startswith("ACTION=")), "") for _, given in steps]
    outcome.check(
        actions == ["ACTION=request", "ACTION=install"]
        and all(created < i < passwords for i, _ in steps)
        and all(given.get("--script", [""])[0].endswith("/vm/broker-certificate.sh") for _, given in steps)
        and "COMMON_NAME=coc-vm1" in steps[0][1].get("--parameters", []),
        "VM 1: a run command makes the key and its request, another installs the certificate, before the passwords start the stack",
    )
    deletes = runs("coc-vm1", "delete")
    outcome.check(
        len(deletes) == 2
        and len(steps) == 2
        and steps[0][0] < deletes[0][0] < steps[1][0] < deletes[1][0],
        "VM 1: each certificate run command is deleted once it has run, before the next is made",
    )
    outcome.check(not runs("coc-vm2", "create"), "VM 2 gets no key: it only trusts the CA")

    # The signing deploy.sh does between the two steps, for real: a request of a fresh key.
    with tempfile.TemporaryDirectory() as scratch:
        key, request = Path(scratch) / "key.pem", Path(scratch) / "request.pem"
        subprocess.run(
            ["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-subj", "/CN=coc-vm1", "-addext", "subjectAltName=DNS:evil.example", "-keyout", str(key), "-out", str(request)],
            check=True, capture_output=True,
        )
        env = {**os.environ, "STATE_DIR": str(state_dir / "state"), "HOME": str(state_dir / "home")}
        signed = subprocess.run(
            [str(AZURE_DIR / "sign-broker-request.sh")], input=request.read_text(), env=env,
            capture_output=True, text=True, check=False,
        )
        certificate = Path(scratch) / "broker.pem"
        certificate.write_text(signed.stdout)
        verified = subprocess.run(
            ["openssl", "verify", "-CAfile", str(ca_cert), "-verify_ip", VM1_PRIVATE_IP, "-purpose", "sslserver", str(certificate)],
            capture_output=True, text=True, check=False,
        )
        text = subprocess.run(
            ["openssl", "x509", "-in", str(certificate), "-noout", "-ext", "subjectAltName,basicConstraints"],
            capture_output=True, text=True, check=False,
        ).stdout
        outcome.check(
            signed.returncode == 0 and verified.returncode == 0,
            f"sign-broker-request.sh: a server certificate for {VM1_PRIVATE_IP}, chained to the CA {verified.stdout.strip()}{signed.stderr.strip()}",
        )
        outcome.check(
            f"IP Address:{VM1_PRIVATE_IP}, DNS:coc-vm1" in text and "evil.example" not in text and "CA:FALSE" in text,
            "the CA sets the names (VM 1's IP and name), not the request; the certificate cannot sign",
        )


def check_vm_care(outcome: Outcome, plan: list[list[str]], shutdown: str) -> None:
    """Boot diagnostics on both VMs; a daily shutdown at AUTO_SHUTDOWN_UTC unless it is off."""
    for vm in ("coc-vm1", "coc-vm2"):
        diagnostics = [
            w for w in plan if command_is(w, "az", "vm", "boot-diagnostics", "enable") and options(w)["--name"] == [vm]
        ]
        outcome.check(len(diagnostics) == 1, f"{vm}: boot diagnostics on")
        times = [
            options(w).get("--time")
            for w in plan
            if command_is(w, "az", "vm", "auto-shutdown") and options(w)["--name"] == [vm]
        ]
        wanted = [] if shutdown == "off" else [[shutdown]]
        outcome.check(times == wanted, f"{vm}: daily shutdown {shutdown} ({times})")


def check_demo_env(outcome: Outcome, state_dir: Path) -> None:
    """demo.env defines every variable the README's demo uses, readable by its owner only."""
    demo_env = state_dir / "state" / "demo.env"
    if not demo_env.exists():
        outcome.check(False, "deploy.sh writes demo.env")
        return
    values = dict(line.split("=", 1) for line in demo_env.read_text().splitlines() if "=" in line and line[0] != "#")
    secrets = generated_secrets(state_dir)
    outcome.check(oct(demo_env.stat().st_mode & 0o777) == "0o600", "demo.env is mode 0600 (it holds a password)")
    outcome.check(
        values.get("VM2") == VM2_PRIVATE_IP
        and values.get("RABBITMQ_ADMIN_PASSWORD") == secrets["RABBITMQ_ADMIN_PASSWORD"]
        and values.get("ADMIN_USERNAME") == "azureuser",
        "demo.env: VM 2's private address, the admin user and password",
    )
    readme = (AZURE_DIR.parent / "README.md").read_text()
    demo = readme.split("### The demo", 1)[1].split("\n```sh\n", 1)[1].split("\n```", 1)[0]
    used = set(re.findall(r"\$([A-Z][A-Z0-9_]*)", demo))
    outcome.check(bool(used) and used <= values.keys(), f"the README's demo uses only what demo.env sets {sorted(used)}")


def write_files(cloud_config: dict) -> dict[str, str]:
    return {entry["path"]: entry.get("content", "") for entry in cloud_config.get("write_files", [])}


def check_cloud_init(outcome: Outcome, cloud_init: dict[str, str], state_dir: Path, registry_auth: str) -> None:
    secrets = generated_secrets(state_dir)
    vm1 = yaml.safe_load(Path(cloud_init["coc-vm1"]).read_text())
    vm2 = yaml.safe_load(Path(cloud_init["coc-vm2"]).read_text())
    files1, files2 = write_files(vm1), write_files(vm2)
    base = "/opt/change-of-circumstances"
    outcome.check(
        files1.get(f"{base}/compose.yaml") == (AZURE_DIR / "vm1" / "compose.yaml").read_text()
        and files2.get(f"{base}/compose.yaml") == (AZURE_DIR / "vm2" / "compose.yaml").read_text(),
        "each VM gets the repository's compose file, byte for byte",
    )
    outcome.check(
        files1.get(f"{base}/rabbitmq/30-change-of-circumstances.conf")
        == (REPO_ROOT / "deploy" / "rabbitmq" / "30-change-of-circumstances.conf").read_text(),
        "VM 1 gets the broker settings of docker-compose.yml (loopback_users.guest = true)",
    )
    for vm, files in (("VM 1", files1), ("VM 2", files2)):
        outcome.check(
            "change-of-circumstances.service" in " ".join(files)
            and ["systemctl", "enable", "--now", "--no-block", "change-of-circumstances.service"]
            in (vm1 if vm == "VM 1" else vm2).get("runcmd", []),
            f"{vm}: runcmd enables the systemd unit that starts the stack at every boot",
        )
    laptop_image = next(
        line.split()[-1]
        for line in (REPO_ROOT / "docker-compose.yml").read_text().splitlines()
        if line.startswith("x-rabbitmq-image:")
    )
    outcome.check(
        f"RABBITMQ_IMAGE={laptop_image}\n" in files1.get(f"{base}/.env", ""),
        f"VM 1 runs the broker image docker-compose.yml names ({laptop_image})",
    )
    env2 = files2.get(f"{base}/.env", "")
    outcome.check(
        f"VM1_PRIVATE_IP={VM1_PRIVATE_IP}" in env2 and "CONSUMER_AMQP_USER=coc-consumer" in env2,
        "VM 2 reaches VM 1's private address with the consumer's own user",
    )
    for vm, path in sorted(cloud_init.items()):
        text = Path(path).read_text()
        leaked = sorted(name for name, value in secrets.items() if value in text)
        leaked += ["REGISTRY_PASSWORD"] if REGISTRY_PASSWORD in text else []
        outcome.check(not leaked, f"{vm}: custom data holds no password (the broker's definitions have hashes) {leaked}")
    definitions = yaml.safe_load(files1.get(f"{base}/rabbitmq/definitions/definitions.json", "{}"))
    users = {user["name"] for user in definitions.get("users", [])}
    outcome.check(
        users == {"coc-admin", "coc-monitor", "coc-producer", "coc-consumer"} and "guest" not in users,
        f"the broker's users: {sorted(users)}, no guest",
    )
    outcome.check(
        all(user.get("password_hash") and "password" not in user for user in definitions.get("users", [])),
        "definitions hold password hashes only",
    )
    registry_env = files1.get(f"{base}/registry.env", "")
    outcome.check(f"REGISTRY_AUTH={registry_auth}" in registry_env, f"registry login: {registry_auth}")


def scenario(name: str, root: Path, fakes: Path, extra_env: dict[str, str], *, vm2_public: bool, acr: bool) -> Outcome:
    print(f"\n==> plan: {name}")
    outcome = Outcome(name)
    state_dir = root / name
    status, stdout, stderr, az_log, docker_log = run_dry(state_dir, fakes, extra_env)
    outcome.check(status == 0, f"DRY_RUN=1 deploy.sh exits 0 (exit {status})")
    if status != 0:
        print(stderr, file=sys.stderr)
        return outcome
    plan = plan_lines(stdout)
    outcome.check(bool(plan), f"the plan has {len(plan)} commands")
    check_no_side_effects(outcome, az_log, docker_log)
    check_security_rules(outcome, plan, vm2_public)
    cloud_init = check_network_and_vms(outcome, plan, vm2_public)
    check_registry(outcome, plan, acr)
    auth = "managed-identity" if acr else ("password" if extra_env.get("REGISTRY_USERNAME") else "none")
    if len(cloud_init) == 2:
        check_cloud_init(outcome, cloud_init, state_dir, auth)
    check_secret_delivery(outcome, plan, stdout + stderr, state_dir, auth)
    if len(cloud_init) == 2:
        check_tls(outcome, plan, stdout + stderr, cloud_init, state_dir)
    check_vm_care(outcome, plan, extra_env.get("AUTO_SHUTDOWN_UTC", "1900"))
    check_demo_env(outcome, state_dir)

    # Re-running must reuse the secrets and the registry name: the VMs already have them.
    state = state_dir / "state"
    before = {f: (state / f).read_text() for f in ("secrets.env", "acr-name", "tls/ca.pem") if (state / f).exists()}
    status_again, _, stderr_again, _, _ = run_dry(state_dir, fakes, extra_env)
    after = {f: (state / f).read_text() for f in before}
    outcome.check(status_again == 0 and before == after, "a second run reuses the secrets, the registry name and the CA")
    if status_again != 0:
        print(stderr_again, file=sys.stderr)
    # A re-run cannot change the network layout (existing subnets and NICs stay as they are):
    # with VM 2's way out switched, it must refuse, saying so, before touching anything.
    switched = {**extra_env, "VM2_PUBLIC_IP": "false" if vm2_public else "true"}
    status_switched, _, stderr_switched, _, _ = run_dry(state_dir, fakes, switched)
    outcome.check(
        status_switched != 0 and "VM2_PUBLIC_IP" in stderr_switched and "teardown.sh" in stderr_switched,
        "a re-run with VM2_PUBLIC_IP switched is refused, naming the setting and the way out",
    )
    return outcome


def check_settings_refused(root: Path, fakes: Path) -> Outcome:
    print("\n==> settings deploy.sh refuses before anything happens")
    outcome = Outcome("settings")
    status, _, stderr, _, _ = run_dry(root / "bad-shutdown", fakes, {"AUTO_SHUTDOWN_UTC": "7pm"})
    outcome.check(status != 0 and "AUTO_SHUTDOWN_UTC" in stderr, "AUTO_SHUTDOWN_UTC=7pm is refused, named")
    return outcome


def check_teardown(root: Path, fakes: Path) -> Outcome:
    """teardown.sh returns at once and says how to follow the deletion."""
    print("\n==> teardown")
    outcome = Outcome("teardown")
    env = {"PATH": f"{fakes}:{os.environ['PATH']}", "HOME": str(root), "DRY_RUN": "1", "LANG": "C.UTF-8"}
    result = subprocess.run(
        [str(AZURE_DIR / "teardown.sh")], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    deletes = [options(w) for w in plan_lines(result.stdout) if command_is(w, "az", "group", "delete")]
    outcome.check(
        result.returncode == 0 and len(deletes) == 1 and "--no-wait" in deletes[0],
        "az group delete --no-wait: the terminal does not block for minutes",
    )
    outcome.check("az group wait --deleted" in result.stderr, "it says how to wait for the end")
    return outcome


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-root", type=Path, help="where each scenario renders (kept)")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="coc-plan-") as temporary:
        root = arguments.state_root or Path(temporary)
        fakes = Path(temporary) / "bin"
        fakes.mkdir()
        (fakes / "az").symlink_to(AZURE_DIR / "testing" / "fake-az")
        (fakes / "docker").symlink_to(AZURE_DIR / "testing" / "fake-docker")
        outcomes = [
            scenario("vm2-public-ip", root, fakes, {}, vm2_public=True, acr=True),
            scenario("vm2-private-nat", root, fakes, {"VM2_PUBLIC_IP": "false"}, vm2_public=False, acr=True),
            scenario(
                "external-registry",
                root,
                fakes,
                {
                    "REGISTRY": "ghcr.io/example/coc",
                    "REGISTRY_USERNAME": "robot",
                    "REGISTRY_PASSWORD": REGISTRY_PASSWORD,
                    "AUTO_SHUTDOWN_UTC": "off",
                },
                vm2_public=True,
                acr=False,
            ),
        ]
        outcomes.append(check_settings_refused(root, fakes))
        outcomes.append(check_teardown(root, fakes))
    failed = [f"{o.scenario}: {f}" for o in outcomes for f in o.failures]
    # A re-run looks up the role assignments of VMs that exist; the plan above only creates.
    # `--assignee` would ask Microsoft Graph for the identity, which may not know a new one.
    lookups = [line for line in DEPLOY.read_text().splitlines() if "role assignment list" in line]
    if not lookups or any("--assignee" in line for line in lookups):
        failed.append(f"deploy.sh finds role assignments by object id, never --assignee: {lookups}")
    if failed:
        print(f"\nPlan test FAILED ({len(failed)}):\n  " + "\n  ".join(failed))
        return 1
    print("\nPlan test passed.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
