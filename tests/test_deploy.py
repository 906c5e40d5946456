"""Checks of the Dockerfile and deploy/ with the tools that consume them.

No Docker engine is needed. The image build is reproduced from the Dockerfile's
own instructions: the files its COPY lines name are built into a wheel, the wheel
goes into a fresh venv, and the entry point runs with the image's ENV. The other
files go through hadolint, docker-compose, promtool, amtool, kubernetes-validate
and systemd-analyze, and the exporter in the fresh venv serves the paths that the
probes, the health check and the scrape configurations request.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import math
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE_FILE = DEPLOY / "compose" / "compose.yaml"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
RULES_FILE = DEPLOY / "prometheus" / "rules.yml"
ALERTMANAGER_CONFIG = DEPLOY / "alertmanager" / "alertmanager.yml"
KUBERNETES = DEPLOY / "kubernetes"
PROMETHEUSRULE_FILE = KUBERNETES / "prometheusrule.yaml"
SYSTEMD_UNIT = DEPLOY / "systemd" / "opensrs-migration-exporter.service"
SYSTEMD_ENV = DEPLOY / "systemd" / "opensrs-migration-exporter.env"

# The only password-like values allowed anywhere in deploy/.
DEMO_SECRETS = {"demo-password"}
TEST_PASSWORD = "test-password-7f3a"
DEMO_JOBS = ["1700000000001", "1700000000002", "0001700000003"]

# The oldest and the newest Kubernetes versions whose schemas kubernetes-validate ships
# that the manifests must satisfy.
KUBERNETES_VERSIONS = ["1.30.0", "1.37.0"]

# Seconds that one exporter or simulator process may take to start serving or to
# finish its first poll cycle on a slow CI machine.
START_TIMEOUT = 60.0

EXIT_INVALID_SETTINGS = 2
NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

VENV_BIN = Path(sys.executable).parent


def require_tool(name: str) -> str:
    """Return the path of a command-line tool from the venv or PATH, or fail the test."""
    candidate = VENV_BIN / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found in {VENV_BIN} or on PATH; install it to run this test")
    return found


def run(command: list[Any], *, env: dict[str, str] | None = None, timeout: float = 300,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(part) for part in command], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=cwd, check=False)


def load_yaml_documents(path: Path) -> list[Any]:
    return [document for document in yaml.safe_load_all(path.read_text(encoding="utf-8")) if document is not None]


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def require_rules_file() -> None:
    if not RULES_FILE.is_file():
        pytest.fail(f"{RULES_FILE.relative_to(ROOT)} not found; prometheus.yml, Compose and the "
                    "PrometheusRule load it")


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http_status(url: str) -> int | None:
    """Return the HTTP status of a GET request, or None when no connection was made."""
    try:
        with NO_PROXY_OPENER.open(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


def http_text(url: str) -> str:
    with NO_PROXY_OPENER.open(url, timeout=5) as response:
        return response.read().decode("utf-8")


def wait_for_status(url: str, process: subprocess.Popen[bytes], expected: int = 200,
                    timeout: float = START_TIMEOUT) -> int | None:
    """Poll a URL until it returns the expected status, the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline and process.poll() is None:
        status = http_status(url)
        if status == expected:
            return status
        time.sleep(0.2)
    return status


# Dockerfile parsing


@dataclass(frozen=True)
class Instruction:
    stage: int
    keyword: str
    arguments: str


def parse_dockerfile(path: Path) -> list[Instruction]:
    """Split a Dockerfile into instructions, joining continuation lines and dropping comments.

    Parser directives and heredocs are not supported because the Dockerfile uses neither.
    """
    instructions: list[Instruction] = []
    stage = -1
    pending = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1].strip() + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        pending = ""
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(stage, keyword, arguments.strip()))
    assert not pending, "the Dockerfile ends inside a continuation line"
    return instructions


def stage_instructions(instructions: list[Instruction], keyword: str, stage: int) -> list[Instruction]:
    return [item for item in instructions if item.keyword == keyword and item.stage == stage]


def final_stage(instructions: list[Instruction]) -> int:
    return max(item.stage for item in instructions)


def parse_key_values(arguments: str) -> dict[str, str]:
    """Parse the `key=value key2="value 2"` form of ENV, ARG and LABEL."""
    values = {}
    for token in shlex.split(arguments):
        key, separator, value = token.partition("=")
        assert separator, f"expected key=value in {arguments!r}, found {token!r}"
        values[key] = value
    return values


def image_env(instructions: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in stage_instructions(instructions, "ENV", final_stage(instructions)):
        env.update(parse_key_values(item.arguments))
    return env


def healthcheck_command(instructions: list[Instruction]) -> tuple[dict[str, str], list[str]]:
    """Return the HEALTHCHECK options and its exec-form CMD."""
    checks = stage_instructions(instructions, "HEALTHCHECK", final_stage(instructions))
    assert len(checks) == 1, "the runtime stage needs exactly one HEALTHCHECK"
    options_text, separator, command_text = checks[0].arguments.partition("CMD ")
    assert separator, "HEALTHCHECK has no CMD"
    options = dict(option.removeprefix("--").split("=", 1) for option in options_text.split())
    return options, json.loads(command_text)


def entrypoint(instructions: list[Instruction]) -> list[str]:
    entrypoints = stage_instructions(instructions, "ENTRYPOINT", final_stage(instructions))
    assert len(entrypoints) == 1, "the runtime stage needs exactly one ENTRYPOINT"
    return json.loads(entrypoints[0].arguments)


def copy_sources(item: Instruction) -> tuple[list[str], str]:
    tokens = [token for token in shlex.split(item.arguments) if not token.startswith("--")]
    return tokens[:-1], tokens[-1]


def read_dockerignore() -> list[str]:
    patterns = []
    for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            patterns.append(line)
    return patterns


def is_dockerignored(relative_path: str, patterns: list[str]) -> bool:
    """Apply .dockerignore patterns the way Docker does: the last matching pattern wins.

    A pattern also excludes everything below a matching directory, and `**/` matches
    any number of leading directories.
    """
    parts = relative_path.split("/")
    prefixes = ["/".join(parts[: index + 1]) for index in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern.removeprefix("!").strip("/")
        for prefix in prefixes:
            if pattern.startswith("**/"):
                prefix_parts = prefix.split("/")
                suffixes = ["/".join(prefix_parts[index:]) for index in range(len(prefix_parts))]
                matched = any(fnmatch.fnmatchcase(suffix, pattern[3:]) for suffix in suffixes)
            else:
                matched = fnmatch.fnmatchcase(prefix, pattern)
            if matched:
                ignored = not negated
                break
    return ignored


def version_from_source() -> str:
    text = (ROOT / "exporter" / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__ = "([^"]+)"', text, re.MULTILINE)
    assert match, "exporter/__init__.py has no __version__ line"
    return match.group(1)


@pytest.fixture(scope="module")
def dockerfile() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE)


# The image, reproduced without Docker


@dataclass
class ImageInstall:
    bin_dir: Path
    env: dict[str, str]
    entrypoint: list[str]
    password_file: Path

    def environment(self, **overrides: str) -> dict[str, str]:
        """Return the image's ENV for a process in the venv, with overrides.

        Nothing comes from the test runner's environment except the locale, so an
        OPENSRS_* variable set in the shell cannot change the result.
        """
        env = {"PATH": f"{self.bin_dir}:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(self.bin_dir.parent)}
        env.update(self.env)
        env.update(overrides)
        return env

    def command(self, *arguments: str) -> list[str]:
        return [str(self.bin_dir / self.entrypoint[0]), *self.entrypoint[1:], *arguments]


def copy_build_context(instructions: list[Instruction], context: Path) -> None:
    """Copy the files that the build stage's COPY lines name, minus .dockerignore matches."""
    patterns = read_dockerignore()
    copies = [item for item in stage_instructions(instructions, "COPY", 0) if "--from" not in item.arguments]
    assert copies, "the build stage copies nothing from the build context"
    for item in copies:
        sources, destination = copy_sources(item)
        for source in sources:
            assert not is_dockerignored(source, patterns), f".dockerignore excludes {source}, which COPY needs"
            origin = ROOT / source
            assert origin.exists(), f"COPY source {source} not found in the repository"
            target_dir = context / destination
            target = target_dir / origin.name if destination.endswith("/") or len(sources) > 1 else target_dir
            if origin.is_dir():
                for path in origin.rglob("*"):
                    relative = path.relative_to(ROOT).as_posix()
                    if path.is_file() and not is_dockerignored(relative, patterns):
                        copied = target / path.relative_to(origin)
                        copied.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(path, copied)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, target)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory, dockerfile: list[Instruction]) -> ImageInstall:
    """Build the wheel the way the Dockerfile does and install it into a fresh venv."""
    work = tmp_path_factory.mktemp("image")
    context = work / "context"
    copy_build_context(dockerfile, context)

    wheels = work / "wheels"
    built = run([sys.executable, "-m", "pip", "wheel", "--no-cache-dir", "--no-deps", "--disable-pip-version-check",
                 "--wheel-dir", wheels, context])
    assert built.returncode == 0, f"pip wheel failed:\n{built.stderr[-3000:]}"

    install_lines = [item.arguments for item in stage_instructions(dockerfile, "RUN", final_stage(dockerfile))
                     if "pip install" in item.arguments]
    assert len(install_lines) == 1, "the runtime stage needs one RUN pip install of the wheel"
    wheel_pattern = re.search(r"/([^/\s]+\.whl)", install_lines[0])
    assert wheel_pattern, "the runtime stage's pip install names no .whl file"
    matching_wheels = sorted(wheels.glob(wheel_pattern.group(1)))
    assert len(matching_wheels) == 1, f"{wheel_pattern.group(1)} matches {matching_wheels} among the built wheels"

    venv = work / "venv"
    created = run([sys.executable, "-m", "venv", venv])
    assert created.returncode == 0, created.stderr
    installed = run([venv / "bin" / "python", "-m", "pip", "install", "--no-cache-dir", "--disable-pip-version-check",
                     matching_wheels[0]])
    assert installed.returncode == 0, f"pip install of the wheel failed:\n{installed.stderr[-3000:]}"

    password_file = work / "opensrs_password"
    password_file.write_text(TEST_PASSWORD + "\n", encoding="utf-8")
    password_file.chmod(0o600)
    return ImageInstall(venv / "bin", image_env(dockerfile), entrypoint(dockerfile), password_file)


class Processes:
    """Started processes, stopped at teardown, with their output kept in files."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log_path = self.directory / f"{name}.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT)
        self.started.append((process, log_path))
        return process

    def output(self, process: subprocess.Popen[bytes]) -> str:
        for started, log_path in self.started:
            if started is process:
                return log_path.read_text(encoding="utf-8", errors="replace")[-4000:]
        return ""

    def stop_all(self) -> None:
        for process, _ in self.started:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


@pytest.fixture
def processes(tmp_path: Path):
    started = Processes(tmp_path)
    yield started
    started.stop_all()


@dataclass
class RunningExporter:
    process: subprocess.Popen[bytes]
    base_url: str
    env: dict[str, str]


@pytest.fixture(scope="module")
def demo_exporter(image: ImageInstall, tmp_path_factory: pytest.TempPathFactory):
    """Run the installed exporter in --demo mode with the image's ENV on a free port."""
    started = Processes(tmp_path_factory.mktemp("demo"))
    port = free_port()
    env = image.environment(OPENSRS_WEB_LISTEN_ADDRESS=f"127.0.0.1:{port}",
                            OPENSRS_PASSWORD_FILE=str(image.password_file))
    process = started.start("exporter", image.command("--demo"), env)
    base_url = f"http://127.0.0.1:{port}"
    try:
        status = wait_for_status(f"{base_url}/-/healthy", process)
        assert status == 200, f"the demo exporter never served /-/healthy ({status}):\n{started.output(process)}"
        yield RunningExporter(process, base_url, env)
    finally:
        started.stop_all()


# Dockerfile


def test_dockerfile_hadolint_clean() -> None:
    hadolint = require_tool("hadolint")
    result = run([hadolint, "--no-color",
                  "--require-label", "org.opencontainers.image.title:text",
                  "--require-label", "org.opencontainers.image.description:text",
                  "--require-label", "org.opencontainers.image.version:text",
                  "--require-label", "org.opencontainers.image.licenses:spdx",
                  DOCKERFILE])
    assert result.stdout == "", result.stdout
    assert result.returncode == 0, result.stderr


def test_dockerfile_stages_and_base_image(dockerfile: list[Instruction]) -> None:
    bases = [item.arguments.split()[0] for item in dockerfile if item.keyword == "FROM"]
    assert len(bases) == 2, f"expected a build stage and a runtime stage, found FROM {bases}"
    for base in bases:
        assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", base), base
    assert bases[0] == bases[1], "both stages must use the same Python so the wheels fit the runtime"

    runtime_copies = stage_instructions(dockerfile, "COPY", 1)
    assert runtime_copies, "the runtime stage copies nothing"
    for item in runtime_copies:
        assert "--from=build" in item.arguments, f"the runtime stage copies from the build context: {item.arguments}"


def test_dockerfile_runtime_settings(dockerfile: list[Instruction]) -> None:
    users = stage_instructions(dockerfile, "USER", final_stage(dockerfile))
    assert [item.arguments for item in users] == ["10001:10001"]

    exposed = stage_instructions(dockerfile, "EXPOSE", final_stage(dockerfile))
    assert [item.arguments for item in exposed] == ["19877"]

    env = image_env(dockerfile)
    assert env.get("OPENSRS_PASSWORD_FILE") == "/run/secrets/opensrs_password"
    assert "OPENSRS_PASSWORD" not in env

    assert entrypoint(dockerfile) == ["opensrs-migration-exporter"]


def test_dockerfile_labels_match_version(dockerfile: list[Instruction]) -> None:
    labels: dict[str, str] = {}
    for item in stage_instructions(dockerfile, "LABEL", final_stage(dockerfile)):
        labels.update(parse_key_values(item.arguments))
    build_arguments: dict[str, str] = {}
    for item in stage_instructions(dockerfile, "ARG", final_stage(dockerfile)):
        build_arguments.update(parse_key_values(item.arguments))

    assert labels["org.opencontainers.image.title"] == "opensrs-migration-exporter"
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert labels["org.opencontainers.image.version"] == "${VERSION}"
    assert build_arguments.get("VERSION") == version_from_source(), "ARG VERSION must default to exporter.__version__"


def test_dockerfile_healthcheck_shape(dockerfile: list[Instruction]) -> None:
    options, command = healthcheck_command(dockerfile)

    assert command[:2] == ["python", "-c"]
    assert "/-/healthy" in command[2]
    request_timeout = re.search(r"timeout=(\d+)", command[2])
    assert request_timeout, "the health check request has no timeout"
    assert int(request_timeout.group(1)) < int(options["timeout"].removesuffix("s")), \
        "the request timeout must end before Docker's HEALTHCHECK --timeout"


def test_dockerignore_keeps_build_inputs(dockerfile: list[Instruction]) -> None:
    patterns = read_dockerignore()

    for item in stage_instructions(dockerfile, "COPY", 0):
        sources, _ = copy_sources(item)
        for source in sources:
            assert not is_dockerignored(source, patterns), f".dockerignore excludes {source}"
    for excluded in [".venv/bin/python", ".git/HEAD", "tests/test_deploy.py", "exporter/__pycache__/cli.cpython-311.pyc"]:
        assert is_dockerignored(excluded, patterns), f".dockerignore lets {excluded} into the build context"


def test_image_version_matches_source(image: ImageInstall) -> None:
    result = run(image.command("--version"), env=image.environment())

    assert result.returncode == 0, result.stderr
    assert version_from_source() in result.stdout


def test_image_config_check_with_secret(image: ImageInstall) -> None:
    # The image's ENV plus the minimal required settings. A local password file
    # replaces the secret that a container gets at OPENSRS_PASSWORD_FILE.
    env = image.environment(OPENSRS_OMA_URL="http://127.0.0.1:9/api", OPENSRS_OMA_USER="sre@example.com",
                            OPENSRS_JOBS="1700000000001", OPENSRS_PASSWORD_FILE=str(image.password_file))

    result = run(image.command("--config.check"), env=env)

    assert result.returncode == 0, result.stderr
    assert TEST_PASSWORD not in result.stdout + result.stderr


def test_image_config_check_without_secret(image: ImageInstall) -> None:
    secret_path = Path(image.env["OPENSRS_PASSWORD_FILE"])
    if secret_path.exists():
        pytest.skip(f"{secret_path} exists on this machine, so the missing-secret case cannot be reproduced")
    env = image.environment(OPENSRS_OMA_URL="http://127.0.0.1:9/api", OPENSRS_OMA_USER="sre@example.com",
                            OPENSRS_JOBS="1700000000001")

    result = run(image.command("--config.check"), env=env)

    assert result.returncode == EXIT_INVALID_SETTINGS
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "OPENSRS_PASSWORD_FILE" in result.stderr


def test_image_demo_without_secret(image: ImageInstall) -> None:
    # `docker run IMAGE --demo` mounts no secret, and the demo simulator makes up
    # its own password, so the image's OPENSRS_PASSWORD_FILE must not stop it.
    secret_path = Path(image.env["OPENSRS_PASSWORD_FILE"])
    if secret_path.exists():
        pytest.skip(f"{secret_path} exists on this machine, so the missing-secret case cannot be reproduced")

    result = run(image.command("--demo", "--config.check"), env=image.environment())

    assert result.returncode == 0, result.stderr


def test_image_healthcheck_follows_exporter(image: ImageInstall, dockerfile: list[Instruction],
                                            processes: Processes) -> None:
    _, command = healthcheck_command(dockerfile)
    port = free_port()
    env = image.environment(OPENSRS_WEB_LISTEN_ADDRESS=f"127.0.0.1:{port}",
                            OPENSRS_PASSWORD_FILE=str(image.password_file))
    exporter = processes.start("exporter", image.command("--demo"), env)
    status = wait_for_status(f"http://127.0.0.1:{port}/-/healthy", exporter)
    assert status == 200, processes.output(exporter)

    healthy = run(command, env=env, timeout=30)
    assert healthy.returncode == 0, healthy.stderr

    exporter.terminate()
    exporter.wait(timeout=10)
    unhealthy = run(command, env=env, timeout=30)
    assert unhealthy.returncode == 1, "the health check passes with no exporter running"


# Docker Compose


@pytest.fixture(scope="module")
def compose_config() -> dict[str, Any]:
    docker_compose = require_tool("docker-compose")
    result = run([docker_compose, "-f", COMPOSE_FILE, "config"], cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_compose_config_valid(compose_config: dict[str, Any]) -> None:
    assert set(compose_config["services"]) == {"simulator", "exporter", "prometheus", "alertmanager", "grafana"}


def test_compose_mounted_files_exist(compose_config: dict[str, Any]) -> None:
    require_rules_file()
    named_volumes = set(compose_config.get("volumes") or {})
    mounts = []
    for name, service in compose_config["services"].items():
        for volume in service.get("volumes", []):
            source = volume["source"] if isinstance(volume, dict) else volume.split(":")[0]
            if source not in named_volumes:
                mounts.append((name, source))
    for name, secret in (compose_config.get("secrets") or {}).items():
        mounts.append((f"secret {name}", secret["file"]))

    assert mounts, "the Compose file mounts no files"
    for owner, source in mounts:
        assert Path(source).is_absolute(), f"{owner}: docker-compose did not resolve {source}"
        assert Path(source).exists(), f"{owner} mounts {source}, which does not exist"


def test_compose_secret_matches_image(compose_config: dict[str, Any], dockerfile: list[Instruction]) -> None:
    password_path = Path(image_env(dockerfile)["OPENSRS_PASSWORD_FILE"])
    exporter = compose_config["services"]["exporter"]
    secret_names = [secret["source"] for secret in exporter["secrets"]]

    # Compose mounts a secret at /run/secrets/<name>.
    assert password_path.parent == Path("/run/secrets")
    assert password_path.name in secret_names
    secret_file = Path(compose_config["secrets"][password_path.name]["file"])
    assert secret_file.read_text(encoding="utf-8").strip() in DEMO_SECRETS
    for service in compose_config["services"].values():
        for key in service.get("environment") or {}:
            assert not key.endswith("PASSWORD"), f"{key} puts a password into the environment"


def test_compose_ports_on_loopback(compose_config: dict[str, Any]) -> None:
    published = []
    for name, service in compose_config["services"].items():
        for port in service.get("ports", []):
            published.append((name, port))

    assert published
    for name, port in published:
        host_ip = port["host_ip"] if isinstance(port, dict) else port.split(":")[0]
        assert host_ip == "127.0.0.1", f"{name} publishes {port} beyond loopback"


def compose_mount_targets(service: dict[str, Any]) -> dict[Path, Path]:
    """Return each bind mount of a resolved Compose service as container path to host path."""
    targets = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("/"):
            targets[Path(target)] = Path(source)
    return targets


def test_compose_prometheus_files_side_by_side(compose_config: dict[str, Any]) -> None:
    # rule_files paths in prometheus.yml resolve against its own directory, so the
    # rule file must be mounted next to it.
    targets = {source.resolve(): target
               for target, source in compose_mount_targets(compose_config["services"]["prometheus"]).items()}
    config_target = targets[PROMETHEUS_CONFIG.resolve()]
    for rule_file in load_yaml(PROMETHEUS_CONFIG)["rule_files"]:
        assert (PROMETHEUS_CONFIG.parent / rule_file).resolve() in targets, f"{rule_file} is not mounted"
        assert targets[(PROMETHEUS_CONFIG.parent / rule_file).resolve()] == config_target.parent / rule_file


def test_compose_grafana_provisioning_wired(compose_config: dict[str, Any]) -> None:
    grafana = compose_config["services"]["grafana"]
    mounts = compose_mount_targets(grafana)
    provisioning = mounts.get(Path("/etc/grafana/provisioning"))
    assert provisioning is not None, "grafana/provisioning is not mounted at /etc/grafana/provisioning"

    dashboard_folders = set()
    for provider_file in sorted((provisioning / "dashboards").glob("*.y*ml")):
        for provider in load_yaml(provider_file)["providers"]:
            dashboard_folders.add(Path(provider["options"]["path"]))
    assert dashboard_folders, "no dashboard provider in grafana/provisioning/dashboards"
    for folder in dashboard_folders:
        dashboards = [target for target, source in mounts.items()
                      if target.parent == folder and source.suffix == ".json" and source.is_file()]
        assert dashboards, f"no dashboard JSON file is mounted in {folder}, which the provider loads"

    prometheus_config = load_yaml(PROMETHEUS_CONFIG)
    for datasource_file in sorted((provisioning / "datasources").glob("*.y*ml")):
        for datasource in load_yaml(datasource_file)["datasources"]:
            if datasource["type"] != "prometheus":
                continue
            url = urlsplit(datasource["url"])
            assert url.hostname == "prometheus", f"{datasource['url']} is not the Compose Prometheus service"
            assert url.port == 9090, f"{datasource['url']} is not the Prometheus port"
            # Grafana derives $__rate_interval from timeInterval, which must be the scrape interval.
            time_interval = datasource.get("jsonData", {}).get("timeInterval")
            assert time_interval == prometheus_config["global"]["scrape_interval"], \
                f"{datasource_file.relative_to(ROOT)} sets timeInterval {time_interval}, prometheus.yml scrapes every " \
                f"{prometheus_config['global']['scrape_interval']}"


def test_compose_stack_without_engine(compose_config: dict[str, Any], image: ImageInstall,
                                      processes: Processes) -> None:
    """Run the simulator and exporter services as Compose would, on loopback ports.

    Each service gets its Compose entry point, command, environment and secret
    files. Only the listen addresses and the simulator's host name change.
    """
    services = compose_config["services"]
    simulator_service = services["simulator"]
    exporter_service = services["exporter"]
    secret_files = {name: secret["file"] for name, secret in compose_config["secrets"].items()}

    def service_environment(service: dict[str, Any], **overrides: str) -> dict[str, str]:
        # Compose mounts each secret at /run/secrets/<name>. Here the variables
        # that point there get the host file instead.
        mounted = {f"/run/secrets/{secret['source']}": secret_files[secret["source"]]
                   for secret in service.get("secrets", [])}
        env = image.environment(**{**(service.get("environment") or {}), **overrides})
        return {key: mounted.get(value, value) for key, value in env.items()}

    simulator_command = list(simulator_service["command"])
    listen_index = simulator_command.index("--listen-address") + 1
    simulator_host, _, simulator_port = simulator_command[listen_index].rpartition(":")
    assert simulator_host == "0.0.0.0", "the simulator must listen on every address of its container"
    simulator_address = f"127.0.0.1:{free_port()}"
    simulator_command[listen_index] = simulator_address
    simulator = processes.start("simulator", [str(image.bin_dir / simulator_service["entrypoint"][0]),
                                              *simulator_command], service_environment(simulator_service))

    exporter_settings = exporter_service.get("environment") or {}
    oma_url = urlsplit(exporter_settings["OPENSRS_OMA_URL"])
    assert oma_url.hostname == "simulator"
    assert str(oma_url.port) == simulator_port
    assert exporter_settings["OPENSRS_OMA_USER"] == simulator_command[simulator_command.index("--user") + 1]
    assert exporter_settings["OPENSRS_JOBS"].split(",") == DEMO_JOBS
    exporter_port = free_port()
    exporter_env = service_environment(
        exporter_service,
        OPENSRS_OMA_URL=urlunsplit(oma_url._replace(netloc=simulator_address)),
        OPENSRS_WEB_LISTEN_ADDRESS=f"127.0.0.1:{exporter_port}",
    )
    assert exporter_env["OPENSRS_PASSWORD_FILE"] == secret_files["opensrs_password"]
    exporter = processes.start("exporter", image.command(*(exporter_service.get("command") or [])), exporter_env)

    status = wait_for_status(f"http://127.0.0.1:{exporter_port}/-/ready", exporter)
    logs = f"exporter:\n{processes.output(exporter)}\nsimulator:\n{processes.output(simulator)}"
    assert status == 200, logs
    metrics = http_text(f"http://127.0.0.1:{exporter_port}/metrics")
    healthcheck = simulator_service["healthcheck"]["test"]
    assert healthcheck[0] == "CMD"
    assert f", {simulator_port})" in healthcheck[-1], "the simulator health check must use its listen port"
    simulator_healthcheck = [*healthcheck[1:-1], healthcheck[-1].replace(f", {simulator_port})",
                                                                          f", {simulator_address.rpartition(':')[2]})")]
    healthy = run(simulator_healthcheck, env=service_environment(simulator_service), timeout=30)
    assert healthy.returncode == 0, healthy.stderr
    for job_id in DEMO_JOBS:
        assert f'opensrs_migration_job_up{{job_id="{job_id}"}} 1.0' in metrics, f"job {job_id} poll failed\n{logs}"


# Prometheus and Alertmanager


@pytest.mark.prometheus
def test_prometheus_config_promtool() -> None:
    require_rules_file()
    promtool = require_tool("promtool")

    result = run([promtool, "check", "config", PROMETHEUS_CONFIG])

    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_prometheus_config_matches_exporter() -> None:
    config = load_yaml(PROMETHEUS_CONFIG)
    scrape = config["scrape_configs"]
    assert len(scrape) == 1
    job = scrape[0]

    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert job["static_configs"][0]["targets"] == ["exporter:19877"]
    interval = parse_seconds(job.get("scrape_interval", config["global"]["scrape_interval"]))
    timeout = parse_seconds(job.get("scrape_timeout", config["global"]["scrape_timeout"]))
    assert timeout < interval <= 60, "scrape at least once per 60 s poll, with the timeout inside the interval"
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager:9093"]


def test_rules_job_selectors_match_scrape_job() -> None:
    require_rules_file()
    job_names = {job["job_name"] for job in load_yaml(PROMETHEUS_CONFIG)["scrape_configs"]}
    selected = set(re.findall(r'\bjob="([^"]+)"', RULES_FILE.read_text(encoding="utf-8")))

    assert selected <= job_names, f"rules.yml selects job {selected - job_names}, which prometheus.yml does not scrape"


@pytest.mark.prometheus
def test_alertmanager_config_amtool() -> None:
    amtool = require_tool("amtool")

    result = run([amtool, "check-config", ALERTMANAGER_CONFIG])

    assert result.returncode == 0, result.stdout + result.stderr


def parse_seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    match = re.fullmatch(r"(\d+)(ms|s|m|h)", duration)
    assert match, f"unsupported duration {duration!r}"
    return int(match.group(1)) * units[match.group(2)]


# Kubernetes


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict[str, Any]]:
    """Return every manifest in deploy/kubernetes by kind."""
    by_kind: dict[str, dict[str, Any]] = {}
    for path in sorted(KUBERNETES.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for document in load_yaml_documents(path):
            assert document["kind"] not in by_kind, f"a second {document['kind']} in {path.name}"
            by_kind[document["kind"]] = document
    return by_kind


def exporter_container(manifests: dict[str, dict[str, Any]]) -> dict[str, Any]:
    containers = manifests["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def container_env(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container.get("env", [])}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("kind", ["Deployment", "Service", "Secret"])
def test_kubernetes_core_schema(manifests: dict[str, dict[str, Any]], kind: str, version: str) -> None:
    try:
        import kubernetes_validate
    except ImportError:
        pytest.fail("kubernetes-validate not installed; install it from PyPI to run this test")

    try:
        kubernetes_validate.validate(manifests[kind], version, strict=True)
    except kubernetes_validate.ValidationError as error:
        pytest.fail(f"{kind} is invalid for Kubernetes {version}: {str(error).splitlines()[0]}")


def test_kustomization_lists_all_manifests(manifests: dict[str, dict[str, Any]]) -> None:
    kustomization = load_yaml(KUBERNETES / "kustomization.yaml")
    listed = kustomization["resources"]
    present = sorted(path.name for path in KUBERNETES.glob("*.yaml") if path.name != "kustomization.yaml")
    image_name, _, image_tag = exporter_container(manifests)["image"].rpartition(":")

    assert sorted(listed) == present
    assert len(set(listed)) == len(listed)
    assert [image["name"] for image in kustomization["images"]] == [image_name]
    assert kustomization["images"][0]["newTag"] == image_tag == version_from_source()


def test_kubernetes_security_context(manifests: dict[str, dict[str, Any]], dockerfile: list[Instruction]) -> None:
    pod = manifests["Deployment"]["spec"]["template"]["spec"]
    container = exporter_container(manifests)
    pod_security = pod["securityContext"]
    security = container["securityContext"]
    image_uid = stage_instructions(dockerfile, "USER", final_stage(dockerfile))[0].arguments.split(":")[0]
    assert image_uid.isdigit(), f"USER {image_uid} must be numeric, so that the kubelet can check runAsNonRoot"

    assert pod_security["runAsNonRoot"] is True
    assert pod_security["runAsUser"] == int(image_uid)
    assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security.get("privileged", False) is False
    assert pod.get("automountServiceAccountToken") is False
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind]), f"resources.{kind} needs cpu and memory"


def test_kubernetes_probes_and_ports(manifests: dict[str, dict[str, Any]], dockerfile: list[Instruction]) -> None:
    container = exporter_container(manifests)
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    exposed = int(stage_instructions(dockerfile, "EXPOSE", final_stage(dockerfile))[0].arguments)

    assert ports == {"metrics": exposed}
    assert container["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": "metrics"}


def test_kubernetes_objects_reference_each_other(manifests: dict[str, dict[str, Any]]) -> None:
    deployment = manifests["Deployment"]
    service = manifests["Service"]
    monitor = manifests["ServiceMonitor"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    container = exporter_container(manifests)
    container_ports = {port["name"] for port in container["ports"]}

    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert service["spec"]["selector"].items() <= pod_labels.items()
    service_ports = {port["name"]: port for port in service["spec"]["ports"]}
    assert service_ports["metrics"]["port"] == 19877
    assert service_ports["metrics"]["targetPort"] in container_ports

    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    endpoints = monitor["spec"]["endpoints"]
    assert [endpoint["port"] for endpoint in endpoints] == ["metrics"]
    assert endpoints[0]["path"] == container_env(container).get("OPENSRS_WEB_TELEMETRY_PATH", "/metrics")
    assert parse_seconds(endpoints[0]["scrapeTimeout"]) < parse_seconds(endpoints[0]["interval"])


def test_kubernetes_secret_mounted_as_password_file(manifests: dict[str, dict[str, Any]]) -> None:
    secret = manifests["Secret"]
    pod = manifests["Deployment"]["spec"]["template"]["spec"]
    container = exporter_container(manifests)
    env = container_env(container)
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    secret_volumes = [name for name, volume in volumes.items() if "secret" in volume]
    assert len(secret_volumes) == 1
    volume = volumes[secret_volumes[0]]
    mount = next(mount for mount in container["volumeMounts"] if mount["name"] == secret_volumes[0])

    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    assert [item["key"] for item in volume["secret"]["items"]] == list(secret["stringData"])
    mounted_path = Path(mount["mountPath"]) / volume["secret"]["items"][0]["path"]
    assert env["OPENSRS_PASSWORD_FILE"] == str(mounted_path)
    assert mount.get("readOnly") is True
    assert "OPENSRS_PASSWORD" not in env
    assert volume["secret"]["defaultMode"] & 0o007 == 0, "the password file must not be world-readable"
    assert set(secret["stringData"].values()) <= DEMO_SECRETS


def test_kubernetes_monitor_job_matches_rules(manifests: dict[str, dict[str, Any]]) -> None:
    require_rules_file()
    selected = set(re.findall(r'\bjob="([^"]+)"', RULES_FILE.read_text(encoding="utf-8")))
    relabelings = manifests["ServiceMonitor"]["spec"]["endpoints"][0].get("relabelings", [])
    job_names = {rule["replacement"] for rule in relabelings if rule.get("targetLabel") == "job"}

    assert selected <= job_names, f"rules.yml selects job {selected}, the ServiceMonitor sets job {job_names}"


def test_prometheusrule_groups_equal_rules(manifests: dict[str, dict[str, Any]]) -> None:
    require_rules_file()
    rule = manifests["PrometheusRule"]

    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"]["groups"] == load_yaml(RULES_FILE)["groups"], \
        "prometheusrule.yaml is out of date: run deploy/kubernetes/generate_prometheusrule.py"


def test_prometheusrule_generator_reproduces_file(tmp_path: Path) -> None:
    require_rules_file()
    output = tmp_path / "prometheusrule.yaml"

    result = run([sys.executable, KUBERNETES / "generate_prometheusrule.py", "--output", output])

    assert result.returncode == 0, result.stderr
    assert output.read_text(encoding="utf-8") == PROMETHEUSRULE_FILE.read_text(encoding="utf-8"), \
        "prometheusrule.yaml differs from the generator's output: run the generator again"


def test_prometheusrule_generator_rejects_no_groups(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text("rules: []\n", encoding="utf-8")

    result = run([sys.executable, KUBERNETES / "generate_prometheusrule.py", "--rules", rules,
                  "--output", tmp_path / "out.yaml"])

    assert result.returncode == 1
    assert "no groups" in result.stderr
    assert not (tmp_path / "out.yaml").exists()


@pytest.mark.prometheus
def test_prometheusrule_groups_pass_promtool(manifests: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    groups_file = tmp_path / "groups.yml"
    groups_file.write_text(yaml.safe_dump({"groups": manifests["PrometheusRule"]["spec"]["groups"]}), encoding="utf-8")

    result = run([promtool, "check", "rules", groups_file])

    assert result.returncode == 0, result.stdout + result.stderr


def test_kubernetes_settings_pass_config_check(manifests: dict[str, dict[str, Any]], image: ImageInstall) -> None:
    container = exporter_container(manifests)
    env = container_env(container)
    # The Secret volume is not mounted here, so a local password file replaces it.
    env["OPENSRS_PASSWORD_FILE"] = str(image.password_file)

    result = run(image.command(*container.get("args", []), "--config.check"), env=image.environment(**env))

    assert result.returncode == 0, result.stderr


SHARDED = DEPLOY / "kubernetes-sharded"


@pytest.fixture(scope="module")
def statefulset() -> dict[str, Any]:
    return load_yaml(SHARDED / "statefulset.yaml")


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("name", ["statefulset.yaml", "headless-service.yaml"])
def test_sharded_objects_schema(name: str, version: str) -> None:
    import kubernetes_validate

    try:
        kubernetes_validate.validate(load_yaml(SHARDED / name), version, strict=True)
    except kubernetes_validate.ValidationError as error:
        pytest.fail(f"{name} is invalid for Kubernetes {version}: {str(error).splitlines()[0]}")


def test_sharded_statefulset_takes_shard_from_ordinal(statefulset: dict[str, Any],
                                                      manifests: dict[str, dict[str, Any]]) -> None:
    pod = statefulset["spec"]["template"]["spec"]
    env = {item["name"]: item for item in pod["containers"][0]["env"]}
    shard_source = env["OPENSRS_SHARD"]["valueFrom"]["fieldRef"]["fieldPath"]

    assert shard_source == "metadata.labels['apps.kubernetes.io/pod-index']"
    assert int(env["OPENSRS_TOTAL_SHARDS"]["value"]) == statefulset["spec"]["replicas"]
    assert statefulset["spec"]["serviceName"] == load_yaml(SHARDED / "headless-service.yaml")["metadata"]["name"]
    deployment_pod = manifests["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"] == deployment_pod["securityContext"]
    assert pod["containers"][0]["securityContext"] == deployment_pod["containers"][0]["securityContext"]
    assert pod["containers"][0]["resources"] == deployment_pod["containers"][0]["resources"]


def test_sharded_kustomization_replaces_deployment() -> None:
    kustomization = load_yaml(SHARDED / "kustomization.yaml")
    present = sorted(path.name for path in SHARDED.glob("*.yaml") if path.name != "kustomization.yaml")

    assert sorted(kustomization["resources"]) == sorted(["../kubernetes", *present])
    deleted = [patch["target"] for patch in kustomization["patches"] if "$patch: delete" in patch["patch"]]
    assert deleted == [{"kind": "Deployment", "name": "opensrs-migration-exporter"}]


@pytest.mark.parametrize("shard", ["0", "2"])
def test_sharded_settings_pass_config_check(statefulset: dict[str, Any], image: ImageInstall, shard: str) -> None:
    container = statefulset["spec"]["template"]["spec"]["containers"][0]
    env = {item["name"]: item.get("value", shard) for item in container["env"]}
    env["OPENSRS_PASSWORD_FILE"] = str(image.password_file)

    result = run(image.command("--config.check"), env=image.environment(**env))

    assert result.returncode == 0, result.stderr


def test_demo_exporter_serves_probe_paths(demo_exporter: RunningExporter,
                                          manifests: dict[str, dict[str, Any]]) -> None:
    container = exporter_container(manifests)
    liveness = container["livenessProbe"]["httpGet"]["path"]
    readiness = container["readinessProbe"]["httpGet"]["path"]
    metrics_path = manifests["ServiceMonitor"]["spec"]["endpoints"][0]["path"]

    assert http_status(demo_exporter.base_url + liveness) == 200
    assert wait_for_status(demo_exporter.base_url + readiness, demo_exporter.process) == 200
    assert "opensrs_migration_build_info" in http_text(demo_exporter.base_url + metrics_path)


# systemd


def read_unit(path: Path) -> dict[str, list[str]]:
    """Return each `Section.Key` of a unit file with all of its values in order."""
    settings: dict[str, list[str]] = {}
    section = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        settings.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return settings


def read_env_file(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, separator, value = line.partition("=")
            assert separator, f"{path.name}: expected KEY=value, found {line!r}"
            env[key] = value
    return env


@pytest.fixture
def verifiable_unit(tmp_path: Path) -> Path:
    """Copy the unit with ExecStart pointing at an executable that exists here.

    systemd-analyze verify rejects a unit whose ExecStart binary is missing, and
    /usr/local/bin/opensrs-migration-exporter is not installed on a test machine.
    The venv's console script of the same name takes its place.
    """
    executable = require_tool("opensrs-migration-exporter")
    text = SYSTEMD_UNIT.read_text(encoding="utf-8")
    replaced, count = re.subn(r"^ExecStart=/usr/local/bin/opensrs-migration-exporter",
                              f"ExecStart={executable}", text, flags=re.MULTILINE)
    assert count == 1, "ExecStart must start /usr/local/bin/opensrs-migration-exporter"
    unit = tmp_path / SYSTEMD_UNIT.name
    unit.write_text(replaced, encoding="utf-8")
    return unit


def test_systemd_unit_verifies(verifiable_unit: Path) -> None:
    systemd_analyze = shutil.which("systemd-analyze")
    if systemd_analyze is None:
        pytest.skip("systemd-analyze not installed")

    result = run([systemd_analyze, "verify", verifiable_unit])

    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr


def test_systemd_unit_exposure_low(verifiable_unit: Path) -> None:
    systemd_analyze = shutil.which("systemd-analyze")
    if systemd_analyze is None:
        pytest.skip("systemd-analyze not installed")

    # --threshold is the exposure level times 10: 20 is exposure 2.0 of 10.
    result = run([systemd_analyze, "security", "--offline=yes", "--threshold=20", "--no-pager", verifiable_unit])

    assert result.returncode == 0, result.stdout[-2000:] + result.stderr


def test_systemd_unit_settings() -> None:
    unit = read_unit(SYSTEMD_UNIT)
    expected = {
        "Service.DynamicUser": "yes",
        "Service.ProtectSystem": "strict",
        "Service.ProtectHome": "yes",
        "Service.PrivateTmp": "yes",
        "Service.NoNewPrivileges": "yes",
        "Service.CapabilityBoundingSet": "",
        "Service.RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "Service.Restart": "on-failure",
        "Service.ExecStart": "/usr/local/bin/opensrs-migration-exporter",
    }
    for key, value in expected.items():
        assert unit.get(key) == [value], f"{key}={unit.get(key)}, expected {value!r}"
    assert "@system-service" in unit["Service.SystemCallFilter"]

    credential_name, _, credential_path = unit["Service.LoadCredential"][0].partition(":")
    assert credential_path.startswith("/etc/opensrs-migration-exporter/")
    assert unit["Service.Environment"] == [f"OPENSRS_PASSWORD_FILE=%d/{credential_name}"]
    assert Path(unit["Service.EnvironmentFile"][0]).name == SYSTEMD_ENV.name


def test_systemd_env_file_passes_config_check(image: ImageInstall) -> None:
    env = read_env_file(SYSTEMD_ENV)
    assert not any(key in env for key in ("OPENSRS_PASSWORD", "OPENSRS_PASSWORD_FILE")), \
        "the password comes from LoadCredential=, not from the environment file"
    # systemd sets OPENSRS_PASSWORD_FILE to the credential. A local password file replaces it.
    env["OPENSRS_PASSWORD_FILE"] = str(image.password_file)

    result = run(image.command("--config.check"), env=image.environment(**env))

    assert result.returncode == 0, result.stderr


# Secrets


PASSWORD_ASSIGNMENT = re.compile(
    r"\b([\w.-]*(?:password|passwd|token|api[_-]?key|secret[_-]?key)[\w.-]*)[ \t]*[=:][ \t]*[\"']?([^\s\"'#,]+)",
    re.IGNORECASE,
)
KNOWN_TOKEN_FORMATS = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----|\bAKIA[0-9A-Z]{16}\b|\bgh[pousr]_[A-Za-z0-9]{30,}"
                                 r"|\bxox[abpr]-[A-Za-z0-9-]{10,}|\bglpat-[A-Za-z0-9_-]{20}")
RANDOM_LOOKING = re.compile(r"[A-Za-z0-9+/_-]{20,}={0,2}")


def is_secret_reference(value: str) -> bool:
    """Return True for a value that names where a secret lives instead of being one."""
    return value.startswith(("/", "./", "%d/", "$")) or value.lower() in {"true", "false", "yes", "no", "<hidden>"}


def shannon_entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(count / len(text) * math.log2(count / len(text)) for count in counts.values())


def find_secret_like_values(text: str) -> list[str]:
    """Return the password-like values and random-looking tokens in a text, except demo values."""
    findings = []
    for match in PASSWORD_ASSIGNMENT.finditer(text):
        value = match.group(2)
        if value not in DEMO_SECRETS and not is_secret_reference(value):
            findings.append(f"{match.group(1)}={value[:4]}...")
    findings.extend(match.group(0)[:12] + "..." for match in KNOWN_TOKEN_FORMATS.finditer(text))
    for match in RANDOM_LOOKING.finditer(text):
        token = match.group(0)
        mixed = re.search(r"[a-z]", token) and re.search(r"[A-Z]", token) and re.search(r"\d", token)
        if mixed and shannon_entropy(token) > 3.5:
            findings.append(token[:4] + "...")
    return findings


def test_secret_finder_flags_real_looking_values() -> None:
    assert find_secret_like_values("OPENSRS_PASSWORD=Xk9fQ2mLp7Rt") == ["OPENSRS_PASSWORD=Xk9f..."]
    assert find_secret_like_values("  password: hunter2\n") == ["password=hunt..."]
    assert find_secret_like_values("token: 9fK2mQx7LpR4tZ8wV1nB3cD6") != []
    assert find_secret_like_values("password: demo-password\nOPENSRS_PASSWORD_FILE=/run/secrets/x\n") == []


def test_deploy_files_contain_only_demo_secrets() -> None:
    scanned = [DOCKERFILE, *sorted(path for path in DEPLOY.rglob("*") if path.is_file())]
    findings = {}
    for path in scanned:
        text = path.read_text(encoding="utf-8")
        found = find_secret_like_values(text)
        if found:
            findings[str(path.relative_to(ROOT))] = found

    assert findings == {}


def test_deploy_secret_values_are_demo_values(manifests: dict[str, dict[str, Any]]) -> None:
    secret = manifests["Secret"]
    values = list(secret.get("stringData", {}).values())
    values += [base64.b64decode(value).decode("utf-8") for value in secret.get("data", {}).values()]
    secret_files = sorted((DEPLOY / "compose" / "secrets").glob("*"))

    assert values
    assert set(values) <= DEMO_SECRETS
    assert secret_files
    for path in secret_files:
        assert path.read_text(encoding="utf-8").strip() in DEMO_SECRETS, f"{path.name} holds a non-demo value"


@pytest.mark.parametrize("folder", ["kubernetes", "kubernetes-sharded"])
def test_kustomize_builds(folder: str) -> None:
    # kubectl is not a Debian package in bookworm, so this extra check runs only where
    # kubectl is installed; the schema tests above run everywhere.
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed; kustomize output not checked")
    result = run([kubectl, "kustomize", str(DEPLOY / folder)])
    assert result.returncode == 0, result.stderr
    kinds = sorted(document["kind"] for document in yaml.safe_load_all(result.stdout))
    workload = "StatefulSet" if folder == "kubernetes-sharded" else "Deployment"
    assert workload in kinds
    assert ("Deployment" in kinds) is (folder == "kubernetes"), "the sharded variant must not also run the Deployment"
