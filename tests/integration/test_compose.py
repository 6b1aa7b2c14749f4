"""The production-like stack (docker-compose.yml, Dockerfile, .env.example) ships no default secret.

Compose files are checked as Docker Compose reads them: ``${VAR}`` interpolation first (implemented
below: ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``, ``${VAR:?error}``, ``${VAR?error}``,
``$$``), then the YAML merge keys. The file itself is validated by ``docker compose config`` (or the
``docker-compose`` v1 binary Debian ships) and against the Compose JSON schema that binary carries,
whichever is installed; without either that one test skips, except under CI=true (``.ci/run`` installs
Debian's docker-compose), where a missing Compose binary is a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.conftest import IN_CI

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
ENV_EXAMPLE = REPO / ".env.example"
#: The Compose JSON schema shipped by Debian's docker-compose package (not vendored here).
SYSTEM_SCHEMA = Path("/usr/lib/python3/dist-packages/compose/config/compose_spec.json")

#: Every secret the stack needs; none may have a default.
SECRETS = (
    "AIRFLOW_DB_PASSWORD",
    "REDIS_PASSWORD",
    "AIRFLOW_FERNET_KEY",
    "AIRFLOW_JWT_SECRET",
    "AIRFLOW_API_SECRET_KEY",
    "SERVING_ADMIN_PASSWORD",
    "SERVING_WRITER_PASSWORD",
    "SERVING_READER_PASSWORD",
)
TOKENS = {name: f"tok{i}{name.lower().replace('_', '')}" for i, name in enumerate(SECRETS)}
DATABASES = ("postgres", "redis", "serving-db")


class MissingVariableError(KeyError):
    pass


_VAR = re.compile(r"\$(?:\$|\{(?P<braced>[^}]*)\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))")
_BRACED = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>.*))?$", re.DOTALL)


def interpolate(text: str, env: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        if match.group("plain"):
            return env.get(match.group("plain"), "")
        parts = _BRACED.match(match.group("braced"))
        assert parts, match.group(0)
        name, op, arg = parts.group("name"), parts.group("op"), parts.group("arg")
        value = env.get(name)
        unset_or_empty = value is None or (op is not None and op.startswith(":") and value == "")
        if op in (":?", "?") and unset_or_empty:
            raise MissingVariableError(name)
        if op in (":-", "-") and unset_or_empty:
            return arg
        if op in (":+", "+"):
            return "" if unset_or_empty else arg
        return value or ""

    return _VAR.sub(one, text)


def load(env: dict[str, str]) -> dict[str, Any]:
    return yaml.safe_load(interpolate(COMPOSE.read_text(), env))


def full_env() -> dict[str, str]:
    return dict(TOKENS)


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def text_of(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


# --------------------------------------------------------------------------- secrets
@pytest.mark.parametrize("secret", SECRETS)
def test_every_secret_is_required(secret: str) -> None:
    env = {k: v for k, v in full_env().items() if k != secret}
    with pytest.raises(MissingVariableError, match=secret):
        load(env)
    with pytest.raises(MissingVariableError, match=secret):
        load({**env, secret: ""})  # an empty value is as bad as none


def test_no_credential_has_a_default_or_a_literal_value() -> None:
    raw = COMPOSE.read_text()
    defaults = re.findall(r"\$\{([A-Za-z0-9_]*(?:PASSWORD|SECRET|KEY|TOKEN)[A-Za-z0-9_]*)(:?-)", raw)
    assert defaults == []
    config = load(full_env())
    tokens = set(TOKENS.values())
    for name, service in config["services"].items():
        env = environment(service)
        for key, value in env.items():
            if re.search(r"PASSWORD|SECRET|FERNET", key):
                assert value in tokens, (name, key)
            for url in re.findall(r"[a-z0-9+]+://[^\s\"']+", value):
                password = urlsplit(url).password
                assert password is None or password in tokens, (name, key, url)


def test_env_example_lists_every_secret_with_an_empty_value() -> None:
    assignments = dict(
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    )
    for secret in SECRETS:
        # empty: a copied .env.example fails loudly (${VAR:?...}) instead of running with a known value
        assert assignments.get(secret) == "", secret


# --------------------------------------------------------------------------- network, roles, users
def test_databases_and_broker_are_not_published_on_all_interfaces() -> None:
    services = load(full_env())["services"]
    for name in DATABASES:
        for port in services[name].get("ports") or []:
            spec = port if isinstance(port, str) else f"{port.get('host_ip', '')}:{port.get('published')}"
            assert spec.startswith("127.0.0.1:"), (name, port)


def test_only_the_pipeline_holds_the_serving_writer_credentials() -> None:
    services = load(full_env())["services"]
    writer = TOKENS["SERVING_WRITER_PASSWORD"]
    holders = {name for name, svc in services.items() if writer in text_of(svc.get("environment"))}
    assert holders == {"airflow-worker", "airflow-init"}
    api = urlsplit(environment(services["airflow-apiserver"])["DEEPCUTS_SERVING_URL"])
    assert (api.username, api.password) == ("deepcuts_app", TOKENS["SERVING_READER_PASSWORD"])
    admin = TOKENS["SERVING_ADMIN_PASSWORD"]
    assert {n for n, s in services.items() if admin in text_of(s)} == {"serving-db", "airflow-init"}


def test_roles_get_scram_passwords_from_the_environment() -> None:
    services = load(full_env())["services"]
    init = environment(services["airflow-init"])
    assert init["DEEPCUTS_SERVING_READER_PASSWORD"] == TOKENS["SERVING_READER_PASSWORD"]
    writer_url = urlsplit(init["DEEPCUTS_SERVING_URL"])
    assert (writer_url.username, writer_url.password) == (
        "deepcuts_writer",
        TOKENS["SERVING_WRITER_PASSWORD"],
    )
    assert "serving init --roles" in text_of(services["airflow-init"]["command"])
    serving_db = environment(services["serving-db"])
    assert serving_db["POSTGRES_HOST_AUTH_METHOD"] == "scram-sha-256"
    assert "--auth-host=scram-sha-256" in serving_db["POSTGRES_INITDB_ARGS"]


def test_redis_requires_a_password_the_broker_url_carries() -> None:
    services = load(full_env())["services"]
    redis = services["redis"]
    assert "requirepass" in text_of(redis["command"])
    assert TOKENS["REDIS_PASSWORD"] not in text_of(redis["command"])  # not in argv: from the environment
    assert environment(redis)["REDIS_PASSWORD"] == TOKENS["REDIS_PASSWORD"]
    assert "REDISCLI_AUTH" in text_of(redis["healthcheck"])
    broker = urlsplit(environment(services["airflow-worker"])["AIRFLOW__CELERY__BROKER_URL"])
    assert broker.password == TOKENS["REDIS_PASSWORD"]


def test_no_container_of_ours_runs_as_root() -> None:
    services = load({**full_env(), "AIRFLOW_UID": "50000"})["services"]
    for name, service in services.items():
        if name.startswith("airflow-"):
            assert str(service.get("user", "")).split(":")[0] == "50000", name


# --------------------------------------------------------------------------- validation
def test_compose_file_validates() -> None:
    env = {**os.environ, **full_env()}
    ran = []
    for command in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(command[0]) is None:
            continue
        probe = subprocess.run([*command, "version"], capture_output=True, text=True, check=False)
        if probe.returncode != 0:
            continue
        result = subprocess.run(
            [*command, "-f", str(COMPOSE), "config", "-q"],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        ran.append(" ".join(command))
    if IN_CI and not ran:
        pytest.fail("CI=true requires `docker compose` or `docker-compose` (.ci/run installs docker-compose)")
    if SYSTEM_SCHEMA.exists():
        import jsonschema

        schema = json.loads(SYSTEM_SCHEMA.read_text())
        config = {k: v for k, v in load(full_env()).items() if not k.startswith("x-")}
        jsonschema.validate(config, schema)
        ran.append(str(SYSTEM_SCHEMA))
    if not ran:
        pytest.skip("neither `docker compose`, `docker-compose` nor its schema is installed")


# --------------------------------------------------------------------------- image
def _stages() -> list[list[str]]:
    stages: list[list[str]] = []
    for line in DOCKERFILE.read_text().replace("\\\n", " ").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def _args() -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", DOCKERFILE.read_text(), flags=re.MULTILINE))


def test_image_base_is_pinned_by_digest_or_full_version() -> None:
    args = _args()
    for stage in _stages():
        image = stage[0].split()[1]
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        if "@sha256:" in image:
            continue
        assert re.search(r":\d+\.\d+\.\d+-python\d+\.\d+$", image), image


def test_final_image_has_no_build_tools_and_installs_a_built_wheel() -> None:
    stages = _stages()
    assert len(stages) >= 2, "build tools belong in a builder stage"
    final = "\n".join(stages[-1])
    assert not re.search(r"build-essential|\bgcc\b|\bg\+\+|apt-get install", final)
    builder = "\n".join(stages[0])
    assert "build-essential" in builder and re.search(r"pip wheel|python -m build", builder)
    installs = [ln for ln in stages[-1] if re.search(r"\bpip install\b", ln)]
    assert installs and all("-e " not in ln and "--editable" not in ln for ln in installs)
    assert any("--no-index" in ln and "deepcuts" in ln for ln in installs), installs
    users = [ln.split()[1] for ln in stages[-1] if ln.upper().startswith("USER ")]
    assert users and users[-1] == "airflow"
