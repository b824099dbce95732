#!/usr/bin/env python3
"""The registry login test: runs `deploy/azure/vm/registry-login.sh` as the VM's unit runs
it, with a fake `curl` (the instance metadata service and the registry's token exchange) and
a fake `docker` on PATH, and checks what each of them was given.

    deploy/azure/testing/test_registry_login.py

What must hold:
  * the managed identity's token is asked for the registry's own audience
    (https://containerregistry.azure.net), which every registry accepts, not ARM's;
  * the token goes to the registry's exchange exactly as issued: no trailing newline (which
    would be sent as %0A, and refused);
  * the refresh token reaches `docker login` as ACR's fixed user's password;
  * a password read from registry.env keeps every character, trailing '=' included (base64),
    and the last line is read even without a final newline.
Exit 0 only if every check held.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "vm" / "registry-login.sh"
ENTRA_TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOi.entra"
REFRESH_TOKEN = "acr-refresh-token"
ACR_TOKEN_USER = "00000000-0000-0000-0000-000000000000"

# Records its arguments and stdin in $FAKE_LOG (one JSON object per call), then answers as
# the metadata service or the token exchange would.
FAKE_CURL = f"""#!/usr/bin/env python3
import json, os, sys
args = sys.argv[1:]
stdin = sys.stdin.buffer.read() if "access_token@-" in args else b""
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps({{"tool": "curl", "args": args, "stdin": stdin.decode("latin-1")}}) + "\\n")
url = args[-1]
if "/metadata/identity/oauth2/token" in url:
    print(json.dumps({{"access_token": "{ENTRA_TOKEN}", "token_type": "Bearer"}}))
elif url.endswith("/oauth2/exchange"):
    print(json.dumps({{"refresh_token": "{REFRESH_TOKEN}"}}))
else:
    sys.exit(22)
"""

FAKE_DOCKER = """#!/usr/bin/env python3
import json, os, sys
stdin = sys.stdin.buffer.read() if "--password-stdin" in sys.argv else b""
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps({"tool": "docker", "args": sys.argv[1:], "stdin": stdin.decode("latin-1")}) + "\\n")
"""

failures: list[str] = []


def check(description: str, holds: bool, detail: object = "") -> None:
    if holds:
        print(f"    ok: {description}")
    else:
        print(f"    FAILED: {description} {detail}", file=sys.stderr)
        failures.append(description)


def run_login(registry_env: str) -> list[dict]:
    """Runs a copy of the script beside `registry_env`; returns the fakes' calls in order."""
    with tempfile.TemporaryDirectory() as work:
        work_dir = Path(work)
        bin_dir = work_dir / "bin"
        bin_dir.mkdir()
        for name, text in (("curl", FAKE_CURL), ("docker", FAKE_DOCKER)):
            (bin_dir / name).write_text(text)
            (bin_dir / name).chmod(0o755)
        shutil.copy(SCRIPT, work_dir / "registry-login.sh")
        (work_dir / "registry.env").write_text(registry_env)
        log = work_dir / "calls.jsonl"
        log.touch()
        env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", FAKE_LOG=str(log))
        result = subprocess.run(
            ["bash", str(work_dir / "registry-login.sh")],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        check(f"registry-login.sh exits 0 ({registry_env.splitlines()[1]})", result.returncode == 0, result.stderr)
        return [json.loads(line) for line in log.read_text().splitlines()]


def managed_identity() -> None:
    print("managed identity")
    calls = run_login(
        "REGISTRY_SERVER=coc1234.azurecr.io\nREGISTRY_AUTH=managed-identity\n"
    )
    curls = [call for call in calls if call["tool"] == "curl"]
    dockers = [call for call in calls if call["tool"] == "docker"]
    imds = next((c for c in curls if "/metadata/identity/" in c["args"][-1]), None)
    exchange = next((c for c in curls if c["args"][-1].endswith("/oauth2/exchange")), None)
    check("the metadata service is asked for a token", imds is not None, curls)
    if imds:
        check(
            "for the registry's audience, not ARM's",
            "resource=https%3A%2F%2Fcontainerregistry.azure.net" in imds["args"][-1]
            and "management.azure.com" not in imds["args"][-1],
            imds["args"][-1],
        )
    check("the token is exchanged at the registry", exchange is not None, curls)
    if exchange:
        check(
            "exactly the token issued, with no trailing newline",
            exchange["stdin"] == ENTRA_TOKEN,
            repr(exchange["stdin"]),
        )
        check(
            "for the registry's service",
            "service=coc1234.azurecr.io" in exchange["args"],
            exchange["args"],
        )
    login = dockers[-1] if dockers else None
    check("docker logs in", login is not None, calls)
    if login:
        check(
            "as ACR's token user, with the refresh token",
            ACR_TOKEN_USER in login["args"] and login["stdin"] == REFRESH_TOKEN,
            login,
        )


def password() -> None:
    print("password")
    secret = "c2VjcmV0IHdpdGggZXF1YWxz+/=="
    # No newline after the last line: a file written by hand may end so.
    calls = run_login(
        f"REGISTRY_SERVER=ghcr.io\nREGISTRY_AUTH=password\nREGISTRY_USERNAME=me\nREGISTRY_PASSWORD={secret}"
    )
    login = next((call for call in calls if call["tool"] == "docker"), None)
    check("docker logs in", login is not None, calls)
    if login:
        check("as the user given", "me" in login["args"], login["args"])
        check(
            "with the password whole, trailing '=' included",
            login["stdin"] == secret,
            repr(login["stdin"]),
        )


def main() -> int:
    managed_identity()
    password()
    if failures:
        print(f"{len(failures)} check(s) FAILED", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
