"""The compose deployment (docker/) built, started and called through, as admins run it.

docker/compose.yaml is what admins run with `docker compose`. These machines have no Docker
engine and cannot pull from a registry, so the test does with podman what compose would:

- Base images: scripts/docker-base-images.sh makes them from the machine's Debian mirror
  under the pinned tags (without the digest) and keeps them, so only a machine's first run
  pays for them. The services' images are built from docker/ under a test tag, on those
  bases (build argument BASE_IMAGE), and removed at the end.
- Containers: each service is started as compose.yaml describes it (environment through an
  env file, volumes, command, healthcheck, stop grace, restart policy, depends_on
  conditions), read from the file itself with the variables of docker/.env.example filled
  in. podman-compose 1.0.3 cannot run this file: it hands `network_mode: service:asterisk`
  to podman as `--network service:asterisk`, which podman refuses, and it ignores
  depends_on conditions. So `network_mode: service:X` becomes podman's
  `--network container:<X>` (the same shared namespace), every other service runs on the
  host's network (the only networking on these machines; compose.yaml uses the same port
  numbers inside and out for that reason) and service names resolve to loopback, as
  compose's DNS would resolve them to the service.
- Health: podman runs healthchecks from systemd timers and there is no systemd here, so the
  test runs `podman healthcheck run` at each healthcheck's interval, as the timer would.

Then: the app is healthy within 30 s of its start; it logs in as a role that is no
superuser and may not change the schema; the CLI inside the app container sets up a hotline
and an agent; a citizen calls over the published SIP port and is bridged to the agent's
phone (ARI shows the bridge); stopping the stack (SIGTERM, reverse dependency order, like
`docker compose stop`) ends the call with a BYE to both phones; and nothing of the test is
left: containers, test-tagged images, volumes.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import secrets
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from devenv import sipp
from devenv.ports import free_port, free_port_range
from devenv.sipp import SippPhone

from .hotline_world import wait_until

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
DOCKER_DIR = REPO / "docker"
COMPOSE_FILE = DOCKER_DIR / "compose.yaml"
ENV_EXAMPLE = DOCKER_DIR / ".env.example"
BASE_IMAGES_SCRIPT = REPO / "scripts" / "docker-base-images.sh"
# pip inside the app build trusts the machine's CA bundle (mounted read-only).
CA_DIR = Path("/etc/ssl/certs")
CA_BUNDLE = CA_DIR / "ca-certificates.crt"

# crun refuses on these machines (hybrid cgroups); podman's default ulimits are refused.
PODMAN = ("podman", "--runtime", "runc")
ULIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")

CITIZEN_ADDRESS = "127.0.0.50"  # the "SIP provider" (trunk) the citizen calls through
PHONE_ADDRESS = "127.0.0.11"  # agent 201's desk phone 1001
HOTLINE = "500"
APP_HEALTHY_WITHIN = 30.0
BASE_IMAGES_TIMEOUT = 1800.0  # cold: two debootstraps and two builds on a busy machine
BUILD_TIMEOUT = 900.0


class StackError(AssertionError):
    """The stack did not do what compose.yaml says (with podman's output)."""


# ---- compose.yaml as docker compose reads it ------------------------------------------

_VARIABLE = re.compile(
    r"\$(?:\$|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:-|:\?|-|\?)(?P<arg>[^}]*))?\})"
)


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's variable syntax: ${X}, ${X:-default}, ${X-default}, ${X:?error}, $$."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match["name"], match["op"], match["arg"] or ""
        value = env.get(name)
        if op in (":?", "?") and (value is None or (op == ":?" and not value)):
            raise StackError(f"compose refuses to start: {name}: {arg}")
        if (op == ":-" and not value) or (op == "-" and value is None):
            return arg
        return value or ""

    return _VARIABLE.sub(substitute, text)


def resolve(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [resolve(item, env) for item in node]
    if isinstance(node, dict):
        return {key: resolve(value, env) for key, value in node.items()}
    return node


def compose_variables() -> set[str]:
    return {m["name"] for m in _VARIABLE.finditer(COMPOSE_FILE.read_text()) if m["name"]}


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def without_digest(reference: str) -> str:
    """The tag of a pinned `name:tag@sha256:...` reference (the local stand-in's name)."""
    name, at, digest = reference.partition("@")
    assert at and re.fullmatch(r"sha256:[0-9a-f]{64}", digest), f"not pinned: {reference}"
    assert ":" in name.rsplit("/", 1)[-1], f"no tag: {reference}"
    return name


def dockerfile_base(dockerfile: Path) -> str:
    match = re.search(r"^ARG BASE_IMAGE=(\S+)$", dockerfile.read_text(), re.M)
    assert match, f"{dockerfile.name}: no pinned ARG BASE_IMAGE"
    return without_digest(match.group(1))


def seconds(duration: str) -> float:
    """A compose duration (`2s`, `1m30s`, `500ms`) in seconds."""
    total = 0.0
    for amount, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration):
        total += float(amount) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total


def start_order(services: Mapping[str, Any]) -> list[str]:
    order: list[str] = []

    def visit(name: str) -> None:
        if name not in order:
            deps = list(services[name].get("depends_on") or {})
            network = services[name].get("network_mode", "")
            if network.startswith("service:"):  # compose starts that service first too
                deps.append(network.removeprefix("service:"))
            for dep in deps:
                visit(dep)
            order.append(name)

    for name in services:
        visit(name)
    return order


# ---- podman ---------------------------------------------------------------------------


async def run(*args: str, timeout: float = 120.0, stdin: str | None = None) -> tuple[int, str]:
    """Run a command; (exit code, stdout+stderr). Killed (by its PID) after `timeout`."""
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(
            proc.communicate(stdin.encode() if stdin is not None else None), timeout
        )
    except BaseException as exc:  # timeout, or cancelled because a sibling build failed
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        if isinstance(exc, TimeoutError):
            raise StackError(
                f"{' '.join(args[:4])} ... still running after {timeout:.0f}s"
            ) from None
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


async def podman(*args: str, timeout: float = 120.0, check: bool = True) -> str:
    code, out = await run(*PODMAN, *args, timeout=timeout)
    if check and code != 0:
        raise StackError(f"podman {' '.join(args[:3])} ... exit {code}:\n{out[-3000:]}")
    return out


@dataclass
class Stack:
    """The services of compose.yaml as podman containers; see the module docstring."""

    services: dict[str, Any]
    env: dict[str, str]
    workdir: Path
    run_id: str = field(default_factory=lambda: secrets.token_hex(4))
    images: dict[str, str] = field(default_factory=dict)  # service -> image
    built: list[str] = field(default_factory=list)  # test-tagged images
    started: dict[str, float] = field(default_factory=dict)  # container -> monotonic start
    volumes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"hotline.test={self.run_id}"

    def container(self, service: str) -> str:
        return f"hotline-test-{self.run_id}-{service}"

    # -- build --

    async def build(self) -> None:
        """Build each recipe once (app and migrate share one), the recipes side by side."""
        builds: dict[tuple[Path, Path], str] = {}
        for name, service in self.services.items():
            if "build" not in service:
                self.images[name] = without_digest(service["image"])
                continue
            context = (COMPOSE_FILE.parent / service["build"]["context"]).resolve()
            recipe = (context, context / service["build"]["dockerfile"])
            if recipe not in builds:
                builds[recipe] = f"localhost/hotline-test-{self.run_id}/{name}:test"
                self.built.append(builds[recipe])  # before the build: removed if it fails
            self.images[name] = builds[recipe]
        async with asyncio.TaskGroup() as group:  # one fails: the others are stopped
            for (context, dockerfile), image in builds.items():
                group.create_task(self._build(image, context, dockerfile))

    async def _build(self, image: str, context: Path, dockerfile: Path) -> None:
        await run_checked(
            *("nice", "-n", "19", *PODMAN, "build", "--pull=never", "--layers=false"),
            *("--network", "host", *ULIMITS, "--label", self.label),
            *("-v", f"{CA_DIR}:{CA_DIR}:ro", "--build-arg", f"PIP_CERT={CA_BUNDLE}"),
            *("--build-arg", f"BASE_IMAGE={dockerfile_base(dockerfile)}"),
            *("-f", str(dockerfile), "-t", image, str(context)),
            timeout=BUILD_TIMEOUT,
        )

    # -- up --

    def _hosts_file(self) -> Path:
        path = self.workdir / "hosts"
        names = " ".join(self.services)
        path.write_text(f"127.0.0.1 localhost {names}\n::1 localhost\n")
        return path

    def _run_args(self, name: str) -> list[str]:
        service = self.services[name]
        env_file = self.workdir / f"{name}.env"
        env_file.touch(mode=0o600)
        env_file.write_text(
            "".join(f"{k}={v}\n" for k, v in service.get("environment", {}).items())
        )
        args = ["run", "-d", "--name", self.container(name), "--label", self.label]
        args += ["--pull", "never", *ULIMITS, "--env-file", str(env_file)]
        network = service.get("network_mode", "")
        if network.startswith("service:"):
            args += ["--network", f"container:{self.container(network.removeprefix('service:'))}"]
            args += ["-v", f"{self._hosts_file()}:/etc/hosts:ro"]
        else:
            args += ["--network", "host"]
            args += [f"--add-host={other}:127.0.0.1" for other in self.services]
        for volume in service.get("volumes", []):
            source, _, target = volume.partition(":")
            if source.startswith("."):
                source = str((COMPOSE_FILE.parent / source).resolve())
            else:
                source = f"hotline-test-{self.run_id}-{source}"
            args += ["-v", f"{source}:{target}"]
        check = service.get("healthcheck")
        if check:
            kind, *command = check["test"]
            args += ["--health-cmd", json.dumps(command) if kind == "CMD" else command[0]]
            for key in ("interval", "timeout", "start_period"):
                if key in check:
                    args += [f"--health-{key.replace('_', '-')}", check[key]]
            args += ["--health-retries", str(check.get("retries", 3))]
        if "stop_grace_period" in service:
            args += ["--stop-timeout", f"{seconds(service['stop_grace_period']):.0f}"]
        if service.get("restart", "no") != "no":
            args += ["--restart", service["restart"]]
        args.append(self.images[name])
        args += service.get("command", [])
        return args

    async def up(self) -> None:
        for name in start_order(self.services):
            for dep, rule in (self.services[name].get("depends_on") or {}).items():
                condition = rule.get("condition", "service_started")
                if condition == "service_healthy":
                    await self.wait_healthy(dep, self.health_budget(dep))
                elif condition == "service_completed_successfully":
                    code = await podman("wait", self.container(dep), timeout=120)
                    if code.strip() != "0":
                        raise StackError(f"{dep} exited {code.strip()}:\n{await self.logs(dep)}")
            for volume in self.services[name].get("volumes", []):
                source = volume.partition(":")[0]
                if not source.startswith(".") and source not in self.volumes:
                    self.volumes.append(source)
                    await podman(
                        "volume",
                        "create",
                        "--label",
                        self.label,
                        f"hotline-test-{self.run_id}-{source}",
                    )
            self.started[name] = time.monotonic()
            await podman(*self._run_args(name))

    def health_budget(self, name: str) -> float:
        check = self.services[name]["healthcheck"]
        interval = seconds(check.get("interval", "30s"))
        return seconds(check.get("start_period", "0s")) + interval * check.get("retries", 3) + 5

    async def health(self, name: str) -> str:
        out = await podman("inspect", "--format", "json", self.container(name))
        state = json.loads(out)[0]["State"]
        health = state.get("Health") or state.get("Healthcheck") or {}
        return str(health.get("Status", ""))

    async def wait_healthy(self, name: str, timeout: float) -> float:
        """Run the healthcheck at its interval until it passes; seconds since the start."""
        interval = seconds(self.services[name]["healthcheck"].get("interval", "30s"))
        deadline = time.monotonic() + timeout
        while True:
            code, _ = await run(*PODMAN, "healthcheck", "run", self.container(name), timeout=30)
            if code == 0:
                return time.monotonic() - self.started[name]
            state = json.loads(await podman("inspect", "--format", "json", self.container(name)))
            if state[0].get("RestartCount", 0) or state[0]["State"]["Status"] == "exited":
                raise StackError(f"{name} exited (restart policy or not):\n{await self.logs(name)}")
            if time.monotonic() >= deadline:
                raise StackError(
                    f"{name} not healthy within {timeout:.0f}s:\n{await self.logs(name)}"
                )
            await asyncio.sleep(interval)

    async def exit_code(self, name: str) -> int:
        state = json.loads(await podman("inspect", "--format", "json", self.container(name)))
        return int(state[0]["State"]["ExitCode"])

    async def logs(self, name: str) -> str:
        return (await podman("logs", "--tail", "40", self.container(name), check=False))[-4000:]

    async def exec(self, service: str, *args: str) -> str:
        code, out = await run(*PODMAN, "exec", self.container(service), *args, timeout=60)
        if code != 0 or "Traceback" in out:
            raise StackError(f"{' '.join(args)} in {service}: exit {code}\n{out}")
        return out

    # -- down --

    async def stop(self) -> None:
        """SIGTERM (the image's stop signal) in reverse dependency order, each waited for up
        to its stop grace, like `docker compose stop`."""
        for name in reversed(start_order(self.services)):
            if name in self.started:
                grace = seconds(self.services[name].get("stop_grace_period", "10s"))
                await podman(
                    "stop", "--time", f"{grace:.0f}", self.container(name), timeout=grace + 30
                )

    async def down(self) -> None:
        """Remove every container, volume and test-tagged image of this run (idempotent)."""
        for name in self.services:
            await podman("rm", "-f", "-t", "0", self.container(name), check=False)
        for volume in self.volumes:
            await podman("volume", "rm", "-f", f"hotline-test-{self.run_id}-{volume}", check=False)
        for image in self.built:
            await podman("rmi", "-f", image, check=False)

    async def leftovers(self) -> list[str]:
        found = []
        for what in (("ps", "-a"), ("images", "-a"), ("volume", "ls")):
            out = await podman(*what, "--filter", f"label={self.label}", "--format", "json")
            found += [f"{what[0]}: {item}" for item in json.loads(out or "[]")]
        out = await podman("images", "--format", "{{.Repository}}:{{.Tag}}")
        found += [f"image {ref}" for ref in out.split() if f"hotline-test-{self.run_id}" in ref]
        return found


async def run_checked(*args: str, timeout: float) -> str:
    code, out = await run(*args, timeout=timeout)
    if code != 0:
        raise StackError(f"{' '.join(args[:6])} ... exit {code}:\n{out[-4000:]}")
    return out


# ---- the test -------------------------------------------------------------------------


def stack_env(phone_port: int) -> dict[str, str]:
    """docker/.env as an admin fills it in, with free ports (the host's network is shared)."""
    env = read_env_file(ENV_EXAMPLE)
    missing = compose_variables() - env.keys()
    assert not missing, (
        f"compose.yaml uses variables docker/.env.example does not document: {missing}"
    )
    rtp_start, rtp_end = free_port_range(100)
    env.update(
        {key: secrets.token_urlsafe(24) for key, value in env.items() if not value},
        HOTLINE_TRUNK_ADDRESS=CITIZEN_ADDRESS,
        HOTLINE_TRUNK_PORT=str(free_port(CITIZEN_ADDRESS, "udp")),
        HOTLINE_PHONES=f"1001={PHONE_ADDRESS}:{phone_port}",
        HOTLINE_SIP_PORT=str(free_port("0.0.0.0", "udp")),
        HOTLINE_RTP_START=str(rtp_start),
        HOTLINE_RTP_END=str(rtp_end),
        HOTLINE_PANEL_PORT=str(free_port("0.0.0.0", "tcp")),
        HOTLINE_ARI_PORT=str(free_port("127.0.0.1", "tcp")),
        HOTLINE_DB_PORT=str(free_port("0.0.0.0", "tcp")),
        # calls may go on 3 s after the stop (30 s by default): the test need not wait
        HOTLINE_STOP_GRACE="3",
    )
    return env


@pytest.fixture(scope="module")
async def base_images() -> None:
    """The base images (cached by tag: a no-op once they exist on this machine)."""
    await run_checked(str(BASE_IMAGES_SCRIPT), timeout=BASE_IMAGES_TIMEOUT)


@pytest.fixture
async def stack(base_images: None, tmp_path: Path) -> AsyncIterator[Stack]:
    env = stack_env(free_port(PHONE_ADDRESS, "udp"))
    services = resolve(yaml.safe_load(COMPOSE_FILE.read_text()), env)["services"]
    stack = Stack(services, env, tmp_path)
    try:
        yield stack
    finally:
        await stack.down()


class Ari:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.base = f"http://127.0.0.1:{env['HOTLINE_ARI_PORT']}/ari"
        token = base64.b64encode(f"hotline:{env['HOTLINE_ARI_PASSWORD']}".encode()).decode()
        self.headers = {"Authorization": f"Basic {token}"}

    async def get(self, path: str) -> Any:
        async with (
            aiohttp.ClientSession(headers=self.headers) as session,
            session.get(self.base + path, timeout=aiohttp.ClientTimeout(5)) as resp,
        ):
            resp.raise_for_status()
            return await resp.json()


_ROLE_PROBE = """
import asyncio, os, asyncpg
async def main():
    db = await asyncpg.connect(os.environ["HOTLINE_DATABASE_URL"])
    row = await db.fetchrow("SELECT rolname, rolsuper, rolcreaterole, rolcreatedb"
                            " FROM pg_roles WHERE rolname = current_user")
    try:
        await db.execute("CREATE TABLE role_probe (id int)")
        ddl = "allowed"
    except asyncpg.InsufficientPrivilegeError:
        ddl = "denied"
    print(dict(row, ddl=ddl))
asyncio.run(main())
"""


async def test_compose_stack_calls_through_and_leaves_nothing(stack: Stack, sipp_dir: Path) -> None:
    phone_port = int(stack.env["HOTLINE_PHONES"].rsplit(":", 1)[1])
    began = time.monotonic()
    await stack.build()
    print(f"docker stack: images built in {time.monotonic() - began:.0f}s")
    began = time.monotonic()
    await stack.up()

    # Started as compose starts it, the app is healthy within 30 s.
    took = await stack.wait_healthy("app", APP_HEALTHY_WITHIN)
    assert await stack.health("app") == "healthy"
    assert took <= APP_HEALTHY_WITHIN
    print(
        f"docker stack: up in {time.monotonic() - began:.0f}s, app healthy {took:.1f}s after start"
    )

    # The app's own role: no superuser, no DDL (migrations ran as the owner role).
    probe = await stack.exec("app", "python", "-c", _ROLE_PROBE)
    assert "'rolname': 'hotline_app'" in probe, probe
    assert "'rolsuper': False" in probe and "'rolcreaterole': False" in probe, probe
    assert "'ddl': 'denied'" in probe, probe

    # An admin sets up a hotline and an agent with the CLI inside the app container.
    await stack.exec(
        "app",
        "hotline",
        "line",
        "create",
        HOTLINE,
        "--name",
        "Buergerbuero",
        "--ring-timeout",
        "5s",
        "--wrapup",
        "0s",
        "--announce-every",
        "0s",
    )
    await stack.exec(
        "app", "hotline", "agent", "create", "201", "--name", "Anna", "--device", "PJSIP/1001"
    )
    await stack.exec("app", "hotline", "member", "add", HOTLINE, "201")
    await stack.exec("app", "hotline", "login", "201", HOTLINE)

    ari = Ari(stack.env)
    sip = ("127.0.0.1", int(stack.env["HOTLINE_SIP_PORT"]))
    async with SippPhone(PHONE_ADDRESS, phone_port, sipp_dir, user="1001", ring=0.3) as phone:
        call = await sipp.start_call(
            HOTLINE,
            local_addr=CITIZEN_ADDRESS,
            pbx_addr=sip,
            workdir=sipp_dir,
            caller_id="030111222",
            audio=False,
            bye_timeout=60,
        )
        async with call:
            await phone.wait_for_invite(timeout=15)

            async def bridged() -> bool:
                bridges = await ari.get("/bridges")
                return any(len(b["channels"]) == 2 for b in bridges)

            await wait_until(bridged, 15, "ARI shows the citizen and the agent in one bridge")
            # SIGTERM of the stack: the app ends the call after its grace, then the rest stops.
            await stack.stop()
            result = await call.wait()
        assert result.answered and result.got_bye(), result.describe()
        await wait_until(lambda: phone.received("BYE"), 10, "the agent's phone got a BYE")
    # The app ended the call itself after its grace and exited 0 (not killed at the timeout).
    assert await stack.exit_code("app") == 0, await stack.logs("app")

    await stack.down()
    assert await stack.leftovers() == []
