"""The production container: the Dockerfile, compose.yaml, and the commands the image runs.

This machine has no Docker engine, so the image's own commands are run here instead: the files the
build would copy are laid out as in the image, the migrate command of compose.yaml and the CMD of the
Dockerfile run there, word for word, against PostgreSQL and Redis.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
import yaml
from psycopg import sql

from tests.server import free_port

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "compose.yaml"
VENV_BIN = Path(sys.executable).parent
PG_HOST = "127.0.0.1"
PG_USER = "postgres"
REDIS_URL = "redis://127.0.0.1:6379/0"
CONTAINER_BIND = "0.0.0.0:8000"


# --- reading the Dockerfile and compose.yaml ---------------------------------------------------


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (INSTRUCTION, arguments), continuation lines joined."""
    result: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        whole = pending + stripped
        pending = ""
        name, _, arguments = whole.partition(" ")
        result.append((name.upper(), arguments.strip()))
    assert not pending, "the Dockerfile ends in a continuation line"
    return result


def arguments_of(name: str) -> list[str]:
    """The arguments of every instruction called `name`, in order."""
    return [arguments for instruction, arguments in instructions() if instruction == name]


def exec_form(arguments: str) -> list[str]:
    """A CMD or HEALTHCHECK CMD in exec (JSON) form, as the argument list it runs."""
    command = json.loads(arguments)
    assert isinstance(command, list) and all(isinstance(word, str) for word in command), arguments
    return command


def image_cmd() -> list[str]:
    """What the container runs: the Dockerfile's last CMD."""
    return exec_form(arguments_of("CMD")[-1])


def image_healthcheck() -> list[str]:
    """The HEALTHCHECK's command, without its options."""
    (arguments,) = arguments_of("HEALTHCHECK")
    words = arguments.split(" CMD ", 1)
    assert len(words) == 2, f"HEALTHCHECK without CMD: {arguments}"
    return exec_form(words[1])


def image_env() -> dict[str, str]:
    """The environment the Dockerfile's ENV instructions give the container."""
    environment: dict[str, str] = {}
    for arguments in arguments_of("ENV"):
        for word in shlex.split(arguments):
            name, equals, value = word.partition("=")
            assert equals, f"ENV in the old `ENV name value` form: {arguments}"
            environment[name] = value
    return environment


def compose() -> dict[str, Any]:
    """compose.yaml as data (YAML anchors and merge keys resolved)."""
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def service(name: str) -> dict[str, Any]:
    services = compose()["services"]
    assert name in services, f"compose.yaml has no service {name!r}"
    result = services[name]
    assert isinstance(result, dict)
    return result


def ignored(relative: str, rules: list[str]) -> bool:
    """Whether .dockerignore keeps `relative` out of the build context (the last matching rule wins;
    a rule matching a folder applies to everything in it; `**/` also matches no folder at all)."""
    parts = relative.split("/")
    candidates = ["/".join(parts[: index + 1]) for index in range(len(parts))]
    excluded = False
    for rule in rules:
        negated = rule.startswith("!")
        pattern = rule.lstrip("!").strip("/")
        patterns = [pattern, pattern[3:]] if pattern.startswith("**/") else [pattern]
        if any(fnmatch.fnmatchcase(path, p) for path in candidates for p in patterns):
            excluded = not negated
    return excluded


def dockerignore_rules() -> list[str]:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def lay_out_image(target: Path) -> Path:
    """Copy what `docker build` would put in the image's WORKDIR: the COPY instructions' sources,
    as far as .dockerignore lets them into the build context. Returns the WORKDIR."""
    (workdir,) = arguments_of("WORKDIR")
    app = target / workdir.lstrip("/")
    app.mkdir(parents=True)
    rules = dockerignore_rules()
    for arguments in arguments_of("COPY"):
        words = [word for word in shlex.split(arguments) if not word.startswith("--")]
        *sources, destination = words
        for source in sources:
            origin = ROOT / source
            assert origin.exists(), f"COPY {source}: no such file in the project"
            files = [origin] if origin.is_file() else sorted(p for p in origin.rglob("*") if p.is_file())
            kept = [path for path in files if not ignored(path.relative_to(ROOT).as_posix(), rules)]
            assert kept, f"COPY {source}: .dockerignore keeps all of it out of the build"
            for path in kept:
                inside = path.name if origin.is_file() else path.relative_to(origin).as_posix()
                copy = app / destination / inside
                copy.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, copy)
    return app


# --- the Dockerfile ---------------------------------------------------------------------------


def test_hadolint_finds_nothing_in_the_dockerfile():
    hadolint = VENV_BIN / "hadolint"
    result = subprocess.run(
        [str(hadolint), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"hadolint:\n{result.stdout}{result.stderr}"


def test_the_image_is_a_pinned_slim_python_3_11():
    (base,) = arguments_of("FROM")
    image, _, tag = base.partition(":")
    assert image == "python"
    # A full version (3.11.x), so a rebuild does not silently move to another Python.
    assert fnmatch.fnmatchcase(tag, "3.11.*-slim*"), base
    assert tag.split("-")[0].split(".")[2].isdigit(), base


def test_the_app_runs_as_a_user_without_privileges_on_port_8000():
    users = arguments_of("USER")
    assert users, "the image runs as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert arguments_of("EXPOSE") == ["8000"]
    # The image carries no secret and no local state of this checkout.
    assert not any(name in image_env() for name in ("SECRET_KEY", "DATABASE_URL"))


def test_the_container_serves_with_gevent_workers_and_never_migrates():
    command = image_cmd()
    assert command[0] == "gunicorn"
    assert command[-1] == "estimator:create_app()"
    # Every open page holds an event stream: workers that hold thousands of connections each.
    assert command[command.index("--worker-class") + 1] == "gevent"
    assert int(command[command.index("--worker-connections") + 1]) >= 5000
    assert command[command.index("--bind") + 1] == CONTAINER_BIND
    # The number of workers comes from WEB_CONCURRENCY (gunicorn's own default), set in the image.
    assert "--workers" not in command and "-w" not in command
    assert int(image_env()["WEB_CONCURRENCY"]) >= 2
    assert not any("upgrade" in word for word in command)


def test_the_healthcheck_asks_healthz_with_urllib():
    command = image_healthcheck()
    assert command[:2] == ["python", "-c"]
    assert "urllib.request.urlopen('http://127.0.0.1:8000/healthz'" in command[2]


def test_the_build_context_holds_the_app_and_none_of_the_local_state():
    rules = dockerignore_rules()
    for kept in (
        "requirements.txt",
        "config.py",
        "gunicorn.conf.py",
        "estimator/__init__.py",
        "migrations/env.py",
    ):
        assert not ignored(kept, rules), kept
    for left_out in (
        ".venv/bin/python",
        ".git/HEAD",
        "instance/secret_key",
        "instance/estimator.sqlite",
        ".env",
        "estimator/__pycache__/models.cpython-311.pyc",
        "tests/test_container.py",
    ):
        assert ignored(left_out, rules), left_out


# --- compose.yaml -----------------------------------------------------------------------------


def test_compose_yaml_is_valid_by_the_compose_specification():
    result = subprocess.run(
        [str(VENV_BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_runs_postgresql_15_with_a_healthcheck():
    db = service("db")
    assert db["image"] == "postgres:15"
    assert "pg_isready" in db["healthcheck"]["test"]


def test_compose_redis_never_writes_the_ballot_keys_to_disk():
    redis_service = service("redis")
    assert redis_service["image"] == "redis:7"
    command = redis_service["command"]
    words = shlex.split(command) if isinstance(command, str) else command
    assert words[0] == "redis-server"
    assert words[words.index("--save") + 1] == ""
    assert words[words.index("--appendonly") + 1] == "no"
    assert "volumes" not in redis_service
    assert "redis-cli" in redis_service["healthcheck"]["test"]


def test_compose_migrates_once_before_the_web_workers_start():
    migrate, web = service("migrate"), service("web")
    assert migrate["command"] == ["flask", "--app", "estimator", "db", "upgrade"]
    assert migrate["depends_on"]["db"]["condition"] == "service_healthy"
    assert migrate.get("restart", "no") == "no"
    # Both run the image this repository builds; web runs the image's own CMD, so they cannot drift.
    for each in (migrate, web):
        assert each["build"] == "." and each["image"] == web["image"]
    assert "command" not in web and "entrypoint" not in web
    assert web["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert web["depends_on"]["redis"]["condition"] == "service_healthy"


def test_compose_web_is_configured_for_postgresql_and_redis():
    web = service("web")
    environment = web["environment"]
    assert environment["DATABASE_URL"].startswith("postgresql://")
    assert "@db:5432/" in environment["DATABASE_URL"]
    # No key written in the file: compose refuses to start without one.
    assert environment["SECRET_KEY"].startswith("${SECRET_KEY:?")
    assert environment["RATELIMIT_STORAGE_URI"].startswith("redis://redis:6379/")
    assert environment["BALLOT_KEY_STORE_URI"].startswith("redis://redis:6379/")
    assert service("migrate")["environment"]["DATABASE_URL"] == environment["DATABASE_URL"]
    assert web["ports"] == ["8000:8000"]
    assert web["healthcheck"]["test"] == ["CMD", *image_healthcheck()]


# --- the image's commands, run here -----------------------------------------------------------


def local_command(command: list[str]) -> list[str]:
    """A command of the image, with its program taken from this project's virtual environment."""
    program = VENV_BIN / command[0]
    assert program.exists(), f"{command[0]} is not installed by requirements.txt"
    return [str(program), *command[1:]]


def healthcheck_passes(port: int, environment: dict[str, str]) -> bool:
    """Run the image's HEALTHCHECK command against the server on `port` instead of 8000."""
    command = [word.replace("127.0.0.1:8000", f"127.0.0.1:{port}") for word in image_healthcheck()]
    command[0] = sys.executable
    result = subprocess.run(command, env=environment, capture_output=True, timeout=30)
    return result.returncode == 0


@pytest.mark.server
def test_the_images_migrate_command_and_cmd_serve_the_app(tmp_path):
    app_dir = lay_out_image(tmp_path / "image")
    name = f"est_container_{uuid.uuid4().hex[:12]}"
    prefix = f"estimator-container-test-{uuid.uuid4().hex[:12]}"
    subprocess.run(["createdb", "-h", PG_HOST, "-U", PG_USER, name], check=True, timeout=60)
    server: subprocess.Popen[bytes] | None = None
    try:
        web = service("web")["environment"]
        environment = {
            **{key: value for key, value in os.environ.items() if key not in web},
            **image_env(),
            "DATABASE_URL": f"postgresql://{PG_USER}@{PG_HOST}/{name}",
            "SECRET_KEY": "container-test-secret",
            "RATELIMIT_STORAGE_URI": REDIS_URL,
            "RATELIMIT_KEY_PREFIX": prefix,
            "BALLOT_KEY_STORE_URI": REDIS_URL,
        }

        migrate = subprocess.run(
            local_command(service("migrate")["command"]),
            cwd=app_dir,
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert migrate.returncode == 0, migrate.stdout + migrate.stderr
        with psycopg.connect(host=PG_HOST, user=PG_USER, dbname=name) as connection:
            version = connection.execute("SELECT version_num FROM alembic_version").fetchone()
            tables = connection.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = 'users'"
            ).fetchone()
        assert version is not None and tables == (1,)

        command = image_cmd()
        assert command.count(CONTAINER_BIND) == 1
        port = free_port()
        command = [word.replace(CONTAINER_BIND, f"127.0.0.1:{port}") for word in command]
        log_path = tmp_path / "gunicorn.log"
        with open(log_path, "wb") as log:
            server = subprocess.Popen(
                local_command(command), cwd=app_dir, env=environment, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 30
        while not healthcheck_passes(port, environment):
            assert server.poll() is None, "gunicorn stopped:\n" + log_path.read_text()
            assert time.monotonic() < deadline, "no healthy answer in 30 s:\n" + log_path.read_text()
            time.sleep(0.3)

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            assert response.status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=5) as response:
            assert response.status == 200
            assert b'name="nickname"' in response.read()
        log = log_path.read_text()
        assert log.count("Booting worker") == int(environment["WEB_CONCURRENCY"]), log
        assert "Using worker: gevent" in log

        server.terminate()
        assert server.wait(timeout=30) == 0, log_path.read_text()
        server = None
        assert not healthcheck_passes(port, environment), "the healthcheck passes with no server"
    finally:
        if server is not None:
            server.kill()
            server.wait()
        with psycopg.connect(host=PG_HOST, user=PG_USER, dbname="postgres", autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        store = redis.Redis.from_url(REDIS_URL)
        try:
            for key in store.scan_iter(match=f"{prefix}*"):
                store.delete(key)
        finally:
            store.close()


def test_compose_s_workers_open_fewer_database_connections_than_postgresql_accepts():
    """Each gevent worker holds up to DATABASE_POOL_SIZE connections; past PostgreSQL's
    max_connections (100 unless the db service sets it) requests would answer 503 under load."""
    environment = service("web")["environment"]

    def default(value: str) -> int:  # "${NAME:-4}" → 4
        found = re.fullmatch(r"(?:\$\{\w+:-)?(\d+)\}?", value)
        assert found is not None, value
        return int(found.group(1))

    workers, pool = default(environment["WEB_CONCURRENCY"]), default(environment["DATABASE_POOL_SIZE"])
    assert "max_connections" not in str(service("db").get("command", ""))
    assert workers * pool < 100
