"""Static checks of docker-compose.yml, the Dockerfile and .dockerignore (no Docker engine here).

They only read files: the topology must hang together (dependencies exist, published ports do
not clash, mounted files exist), pssync's processes must point at the Temporal and PostgreSQL
services the file defines, every PSSYNC_* variable must be a real setting and the environment
must make valid production settings, and the search attributes registered must be the ones the
workflows use.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic import BaseModel
from sqlalchemy.engine import make_url

from contracts.naming import SEARCH_ATTRIBUTES
from contracts.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
EXAMPLE_ENV = ROOT / "deploy" / "example.env"
PSSYNC_SERVICES = ("pssync-worker", "pssync-gateway")
TEMPORAL_IMAGES = ("temporalio/server", "temporalio/auto-setup")
NON_FIELD_VARIABLES = {"PSSYNC_CONFIG"}
"""Read by contracts.settings directly, not fields of Settings."""

# Compose interpolation: $$, ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?err}, $NAME.
_INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<invalid>.?))",
    re.S,
)


class MissingVariable(Exception):
    pass


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Resolve compose interpolation in every string of `value`, as `docker compose` would."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        if m.group("escaped"):
            return "$"
        if m.group("invalid") is not None:
            raise ValueError(f"invalid interpolation (write $$ for a literal $): {value!r}")
        name = m.group("braced") or m.group("bare")
        op, arg = m.group("op"), m.group("arg")
        current = env.get(name)
        unset = current is None or (current == "" and op is not None and op.startswith(":"))
        if op in (":-", "-"):
            return arg if unset else str(current)
        if op in (":?", "?") and unset:
            raise MissingVariable(f"{name}: {arg}")
        return current or ""

    return _INTERPOLATION.sub(sub, value)


def interpolated_names(text: str) -> set[str]:
    return {
        m.group("braced") or m.group("bare")
        for m in _INTERPOLATION.finditer(text)
        if m.group("braced") or m.group("bare")
    }


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as compose reads a .env file (comments, optional quotes)."""
    env: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key.strip()] = value
    return env


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def example_env() -> dict[str, str]:
    return read_env_file(EXAMPLE_ENV)


@pytest.fixture(scope="module")
def compose(raw: dict[str, Any], example_env: dict[str, str]) -> dict[str, Any]:
    """The file as `docker compose` sees it with deploy/example.env as its .env."""
    resolved = interpolate(raw, example_env)
    assert isinstance(resolved, dict)
    return resolved


def services(c: Mapping[str, Any]) -> dict[str, Any]:
    return dict(c["services"])


def env_of(c: Mapping[str, Any], name: str) -> dict[str, str]:
    environment = services(c)[name].get("environment", {})
    if isinstance(environment, list):
        return dict(item.partition("=")[::2] for item in environment)
    return {k: "" if v is None else str(v) for k, v in environment.items()}


def depends_on(c: Mapping[str, Any], name: str) -> dict[str, dict[str, Any]]:
    deps = services(c)[name].get("depends_on", {})
    if isinstance(deps, list):
        return {d: {"condition": "service_started"} for d in deps}
    return {d: dict(spec or {}) for d, spec in deps.items()}


def all_dependencies(c: Mapping[str, Any], name: str) -> set[str]:
    seen: set[str] = set()
    todo = [name]
    while todo:
        for dep in depends_on(c, todo.pop()):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def image_name(service: Mapping[str, Any]) -> str:
    return str(service.get("image", "")).split("@")[0].rsplit(":", 1)[0]


def command_of(service: Mapping[str, Any]) -> list[str]:
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else [str(x) for x in command]


def host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def published_ports(service: Mapping[str, Any]) -> list[tuple[str, int, int, str]]:
    """(host ip, published port, container port, protocol) of each `ports` entry."""
    out = []
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            out.append(
                (
                    str(entry.get("host_ip", "")),
                    int(entry["published"]),
                    int(entry["target"]),
                    str(entry.get("protocol", "tcp")),
                )
            )
            continue
        spec, _, protocol = str(entry).partition("/")
        parts = spec.split(":")
        assert len(parts) in (2, 3), f"publish the port explicitly: {entry!r}"
        ip = parts[0] if len(parts) == 3 else ""
        out.append((ip, int(parts[-2]), int(parts[-1]), protocol or "tcp"))
    return out


def is_setting(variable: str) -> bool:
    """`PSSYNC_A__B` names field `a` of Settings and its nested field `b`."""
    if variable in NON_FIELD_VARIABLES:
        return True
    if not variable.startswith("PSSYNC_"):
        return False
    model: type[BaseModel] = Settings
    parts = variable.removeprefix("PSSYNC_").lower().split("__")
    for i, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return False
        if i == len(parts) - 1:
            return True
        nested = [
            t
            for t in (field.annotation, *typing.get_args(field.annotation))
            if isinstance(t, type) and issubclass(t, BaseModel)
        ]
        if not nested:
            return False
        model = nested[0]
    return False


# --------------------------------------------------------------------------- the helpers


def test_the_checks_themselves_can_fail() -> None:
    assert is_setting("PSSYNC_TEMPORAL__ADDRESS")
    assert is_setting("PSSYNC_ERP__MAX_CONCURRENCY")
    assert not is_setting("PSSYNC_TEMPORAL_ADDRESS")
    assert not is_setting("PSSYNC_TEMPORAL__ADRESS")
    assert not is_setting("PSSYNC_PROFILE__X")
    assert interpolate("${A:-x}-${B}-$$C", {"B": "b"}) == "x-b-$C"
    with pytest.raises(MissingVariable):
        interpolate("${A:?needed}", {"A": ""})
    with pytest.raises(ValueError, match="invalid interpolation"):
        interpolate("${attribute%%=*}", {})


# --------------------------------------------------------------------------- topology


def test_parses_with_the_expected_services(raw: dict[str, Any]) -> None:
    names = set(services(raw))
    assert {
        "postgresql",
        "temporal",
        "temporal-ui",
        "pssync-migrate",
        "pssync-worker",
        "pssync-gateway",
    } <= names
    assert image_name(services(raw)["postgresql"]) == "postgres"
    assert str(services(raw)["postgresql"]["image"]) == "postgres:16"


def test_every_dependency_is_a_defined_service(compose: dict[str, Any]) -> None:
    names = set(services(compose))
    for name in names:
        for dep, spec in depends_on(compose, name).items():
            assert dep in names, f"{name} depends on undefined service {dep}"
            assert spec.get("condition", "service_started") in (
                "service_started",
                "service_healthy",
                "service_completed_successfully",
            )
            if spec.get("condition") == "service_healthy":
                assert "healthcheck" in services(compose)[dep], f"{dep} has no healthcheck"


def test_services_outside_a_profile_do_not_need_profiled_ones(compose: dict[str, Any]) -> None:
    profiled = {n for n, s in services(compose).items() if s.get("profiles")}
    for name, service in services(compose).items():
        if service.get("profiles"):
            continue
        for dep, spec in depends_on(compose, name).items():
            if dep in profiled:
                assert spec.get("required") is False, f"{name} needs {dep} of a profile"


def test_published_ports_are_unique(compose: dict[str, Any]) -> None:
    seen: dict[tuple[int, str], str] = {}
    for name, service in services(compose).items():
        for _ip, published, _target, protocol in published_ports(service):
            key = (published, protocol)
            assert key not in seen, f"{name} and {seen[key]} both publish {published}"
            seen[key] = name
    assert (8000, "tcp") in seen and seen[(8000, "tcp")] == "pssync-gateway"


def test_unauthenticated_consoles_are_published_on_loopback_only(compose: dict[str, Any]) -> None:
    for name in ("temporal", "temporal-ui", "pssync-sandbox"):
        for ip, *_ in published_ports(services(compose)[name]):
            assert ip == "127.0.0.1", f"{name} is reachable from the network"
    assert "ports" not in services(compose)["postgresql"]


def test_named_volumes_are_declared_and_mounted_files_exist(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    for name, service in services(compose).items():
        for volume in service.get("volumes", []):
            source = volume["source"] if isinstance(volume, dict) else volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in declared, f"{name} uses undeclared volume {source}"


def test_environment_values_are_strings(raw: dict[str, Any]) -> None:
    # YAML would turn an unquoted false/yes/8000 into bool/int; compose refuses or coerces them.
    for name in services(raw):
        environment = services(raw)[name].get("environment", {})
        if isinstance(environment, dict):
            for key, value in environment.items():
                assert isinstance(value, str), f"{name}: quote {key}"


# --------------------------------------------------------------------------- Temporal


def temporal_target(c: Mapping[str, Any], name: str) -> tuple[str, int]:
    return host_port(env_of(c, name)["PSSYNC_TEMPORAL__ADDRESS"])


@pytest.mark.parametrize("name", PSSYNC_SERVICES)
def test_pssync_points_at_the_temporal_service(compose: dict[str, Any], name: str) -> None:
    env = env_of(compose, name)
    assert env["PSSYNC_TEMPORAL__EMBEDDED"].lower() == "false"
    host, port = temporal_target(compose, name)
    assert host in services(compose), f"{host} is not a service"
    server = services(compose)[host]
    assert image_name(server) in TEMPORAL_IMAGES
    server_env = env_of(compose, host)
    assert port == int(server_env.get("FRONTEND_GRPC_PORT", "7233")) == 7233
    assert server_env.get("BIND_ON_IP") == "0.0.0.0", "the frontend must listen beyond loopback"
    assert host in all_dependencies(compose, name)


def test_temporal_uses_the_postgres_service(compose: dict[str, Any]) -> None:
    temporal = env_of(compose, "temporal")
    assert temporal["DB"] == "postgres12"
    assert image_name(services(compose)[temporal["POSTGRES_SEEDS"]]) == "postgres"
    assert depends_on(compose, "temporal")["postgresql"]["condition"] == "service_healthy"
    schema = env_of(compose, "temporal-schema")
    for key in ("POSTGRES_SEEDS", "POSTGRES_USER", "DB_PORT", "DBNAME", "VISIBILITY_DBNAME"):
        assert schema[key] == temporal[key], key
    assert schema["SQL_PASSWORD"] == temporal["POSTGRES_PWD"]
    assert (
        depends_on(compose, "temporal")["temporal-schema"]["condition"]
        == "service_completed_successfully"
    )


def test_dynamic_config_is_mounted_and_enables_updates(compose: dict[str, Any]) -> None:
    temporal = services(compose)["temporal"]
    target = Path(env_of(compose, "temporal")["DYNAMIC_CONFIG_FILE_PATH"])
    host_file = None
    for volume in temporal["volumes"]:
        source, container = volume.split(":")[:2]
        if target.is_relative_to(container):
            host_file = ROOT / source / target.relative_to(container)
    assert host_file is not None and host_file.is_file(), f"{target} is not mounted"
    config = yaml.safe_load(host_file.read_text())
    assert config["frontend.enableUpdateWorkflowExecution"][0]["value"] is True


def test_temporal_ui_points_at_the_same_frontend(compose: dict[str, Any]) -> None:
    assert image_name(services(compose)["temporal-ui"]) == "temporalio/ui"
    address = env_of(compose, "temporal-ui")["TEMPORAL_ADDRESS"]
    assert host_port(address) == temporal_target(compose, "pssync-worker")
    assert any(
        target == 8080 for *_, target, _p in published_ports(services(compose)["temporal-ui"])
    )


def registering_service(c: Mapping[str, Any]) -> str:
    found = [
        n
        for n, s in services(c).items()
        if any("search-attribute create" in part for part in command_of(s))
    ]
    assert len(found) == 1, found
    return found[0]


def test_registered_search_attributes_are_the_workflows(compose: dict[str, Any]) -> None:
    name = registering_service(compose)
    env = env_of(compose, name)
    registered = dict(pair.split("=", 1) for pair in env["SEARCH_ATTRIBUTES"].split())
    assert registered == SEARCH_ATTRIBUTES
    script = "\n".join(command_of(services(compose)[name]))
    assert "$SEARCH_ATTRIBUTES" in script
    for line in script.splitlines():
        if "search-attribute create" in line:
            # The CLI pairs each --name with a --type: one name with one type per call.
            assert line.count("--name") == 1 and line.count("--type") == 1, line
    worker = env_of(compose, "pssync-worker")
    assert host_port(env["TEMPORAL_ADDRESS"]) == temporal_target(compose, "pssync-worker")
    assert env["TEMPORAL_NAMESPACE"] == worker["PSSYNC_TEMPORAL__NAMESPACE"]
    assert image_name(services(compose)[name]) == "temporalio/admin-tools"


@pytest.mark.parametrize("name", PSSYNC_SERVICES)
def test_pssync_waits_for_search_attributes_and_migrations(
    compose: dict[str, Any], name: str
) -> None:
    deps = depends_on(compose, name)
    for one_shot in (registering_service(compose), "pssync-migrate"):
        assert deps[one_shot]["condition"] == "service_completed_successfully"
        assert services(compose)[one_shot].get("restart") == "no"


# --------------------------------------------------------------------------- the store


@pytest.mark.parametrize("name", (*PSSYNC_SERVICES, "pssync-migrate"))
def test_pssync_points_at_the_postgres_service(compose: dict[str, Any], name: str) -> None:
    url = make_url(env_of(compose, name)["PSSYNC_DATABASE_URL"])
    assert url.drivername == "postgresql+psycopg"
    assert url.host in services(compose)
    assert image_name(services(compose)[url.host]) == "postgres"
    pg = env_of(compose, url.host)
    assert (url.port or 5432) == 5432
    assert url.username == pg["POSTGRES_USER"]
    assert url.database == pg.get("POSTGRES_DB", pg["POSTGRES_USER"])
    assert url.password == pg["POSTGRES_PASSWORD"]
    assert url.host in all_dependencies(compose, name)


def test_migrations_run_once_before_the_processes(compose: dict[str, Any]) -> None:
    migrate = services(compose)["pssync-migrate"]
    assert command_of(migrate) == ["db", "upgrade"]
    assert depends_on(compose, "pssync-migrate")["postgresql"]["condition"] == "service_healthy"
    for name in PSSYNC_SERVICES:
        assert (
            env_of(compose, name)["PSSYNC_DATABASE_URL"]
            == env_of(compose, "pssync-migrate")["PSSYNC_DATABASE_URL"]
        )


# --------------------------------------------------------------------------- pssync itself


def test_worker_and_gateway_run_pssync_from_the_dockerfile(compose: dict[str, Any]) -> None:
    assert command_of(services(compose)["pssync-worker"]) == ["worker"]
    assert command_of(services(compose)["pssync-gateway"]) == ["gateway"]
    for name in (*PSSYNC_SERVICES, "pssync-migrate"):
        build = services(compose)[name]["build"]
        context = ROOT / build.get("context", ".")
        assert (context / build.get("dockerfile", "Dockerfile")).is_file()
        assert "entrypoint" not in services(compose)[name], "the image's entrypoint is pssync"


def test_gateway_listens_where_it_is_published(compose: dict[str, Any]) -> None:
    env = env_of(compose, "pssync-gateway")
    assert env["PSSYNC_GATEWAY_HOST"] == "0.0.0.0"
    targets = {t for *_, t, _p in published_ports(services(compose)["pssync-gateway"])}
    assert int(env["PSSYNC_GATEWAY_PORT"]) in targets


def pssync_variables(raw_text: str, c: Mapping[str, Any], example: Path) -> set[str]:
    names = {n for n in interpolated_names(raw_text) if n.startswith("PSSYNC_")}
    for name in services(c):
        names |= {k for k in env_of(c, name) if k.startswith("PSSYNC_")}
    names |= set(re.findall(r"^#?\s*(PSSYNC_[A-Z0-9_]+)=", example.read_text(), re.M))
    return names


def test_every_pssync_variable_is_a_setting(compose: dict[str, Any]) -> None:
    names = pssync_variables(COMPOSE.read_text(), compose, EXAMPLE_ENV)
    assert "PSSYNC_TEMPORAL__ADDRESS" in names and "PSSYNC_OIDC__ISSUER" in names
    unknown = sorted(n for n in names if not is_setting(n))
    assert not unknown, f"not settings in contracts/settings.py: {unknown}"


def test_production_secrets_have_no_defaults(raw: dict[str, Any]) -> None:
    for name in PSSYNC_SERVICES:
        environment = services(raw)[name]["environment"]
        for key in (
            "PSSYNC_WEBHOOK_SECRET_CRM",
            "PSSYNC_WEBHOOK_SECRET_PSA",
            "PSSYNC_OIDC__ISSUER",
            "PSSYNC_OIDC__AUDIENCE",
        ):
            with pytest.raises(MissingVariable):
                interpolate(environment[key], {})
        with pytest.raises(MissingVariable):
            interpolate(environment["PSSYNC_DATABASE_URL"], {})


def test_example_env_sets_every_required_variable(example_env: dict[str, str]) -> None:
    required = {
        m.group("braced")
        for m in _INTERPOLATION.finditer(COMPOSE.read_text())
        if m.group("op") in (":?", "?")
    }
    assert required and required <= set(example_env), required - set(example_env)
    assert example_env["PSSYNC_OIDC__ISSUER"].startswith("https://")


@pytest.mark.parametrize("name", (*PSSYNC_SERVICES, "pssync-migrate"))
def test_environment_makes_valid_production_settings(
    compose: dict[str, Any], name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for key in list(os.environ):
        if key.startswith("PSSYNC_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("PSSYNC_CONFIG", str(tmp_path / "absent.toml"))
    for key, value in env_of(compose, name).items():
        if key.startswith("PSSYNC_"):
            monkeypatch.setenv(key, value)
    settings = load_settings()  # raises SettingsError naming what production refuses
    assert settings.profile == "production"
    assert settings.temporal.embedded is False
    assert settings.temporal.address == "temporal:7233"
    assert settings.resolved_database_url.startswith("postgresql+psycopg://pssync:")
    assert settings.actors == {}  # static tokens are the dev profile's only
    assert settings.oidc is not None and settings.oidc.issuer.startswith("https://")


def test_systems_default_to_the_sandbox_profile(raw: dict[str, Any]) -> None:
    sandbox = services(raw)["pssync-sandbox"]
    assert sandbox.get("profiles") == ["sandbox"]
    (sandbox_port,) = {target for *_, target, _p in published_ports(sandbox)}
    assert int(env_of(raw, "pssync-sandbox")["PSSYNC_SANDBOX_PORT"]) == sandbox_port
    environment = services(raw)["pssync-worker"]["environment"]
    for system in ("crm", "psa", "erp", "hcm"):
        key = f"PSSYNC_{system.upper()}__BASE_URL"
        url = urlsplit(interpolate(environment[key], {}))
        assert (url.hostname, url.port, url.path) == ("pssync-sandbox", sandbox_port, f"/{system}")
        real = "https://123456.suitetalk.api.netsuite.com"
        assert interpolate(environment[key], {key: real}) == real


def test_sandbox_webhooks_reach_the_gateway_signed_with_its_secrets(
    compose: dict[str, Any],
) -> None:
    sandbox = env_of(compose, "pssync-sandbox")
    gateway = env_of(compose, "pssync-gateway")
    url = urlsplit(sandbox["SANDBOX_GATEWAY_URL"])
    assert url.hostname == "pssync-gateway"
    assert url.port == int(gateway["PSSYNC_GATEWAY_PORT"])
    for key in ("PSSYNC_WEBHOOK_SECRET_CRM", "PSSYNC_WEBHOOK_SECRET_PSA"):
        assert sandbox[key] == gateway[key]
    entrypoint = services(compose)["pssync-sandbox"]["entrypoint"]
    script = entrypoint[-1]
    mounts = dict(
        reversed(v.split(":")[:2]) for v in services(compose)["pssync-sandbox"]["volumes"]
    )
    assert (ROOT / mounts[script]).is_file(), f"{script} is not mounted"


# --------------------------------------------------------------------------- the image


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def test_dockerfile_runs_pssync_as_a_non_root_user() -> None:
    instructions = dockerfile_instructions()
    stages = [i for i, (k, _) in enumerate(instructions) if k == "FROM"]
    final = instructions[stages[-1] :]
    assert final[0][1].split()[0] == "python:3.11-slim"
    entrypoints = [json.loads(rest) for k, rest in final if k == "ENTRYPOINT"]
    assert entrypoints == [["pssync"]]
    users = [rest for k, rest in final if k == "USER"]
    assert users and users[-1] not in ("root", "0", "0:0")
    runs = " ".join(rest for k, rest in instructions if k == "RUN")
    assert re.search(r"pip install (?!-e)[^&;]*\.(\s|$)", runs), "pip install . (not editable)"
    assert "-e ." not in runs and "--editable" not in runs


def test_dockerignore_keeps_local_state_out() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", ".pssync", ".git", ".env", ".pytest_cache"} <= ignored
    assert not ignored & {"README.md", "pyproject.toml", "store", "contracts"}
