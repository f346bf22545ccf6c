"""The production stack, checked from its files: docker-compose.yml, the Dockerfile and deploy/.

Docker does not run where the tests run, so these read the files as Docker and compose would (tests/deploy/
stack.py) and check what would stop `docker compose up` on a customer's host, or leave it running wrongly:

- facmon's configuration as its container sees it, loaded with facmon's own `load_config` under the container's
  environment (the Dockerfile's ENV, the service's `environment`, deploy/env.example's values for `${VAR}`),
  puts every file facmon writes (the state and telemetry stores when they are SQLite, the spool) on a writable
  volume of the facmon service;
- every `${VAR}` is in deploy/env.example, whose secrets are placeholders that facmon refuses, and that
  deploy/refuse-placeholders.sh refuses by the same rule for the databases' own;
- images are pinned to exact versions; facmon runs as its own user, its healthcheck asks /readyz, and it waits
  for a healthy broker, PostgreSQL and InfluxDB; InfluxDB's token for facmon reaches it and the operator's
  does not;
- the shell in these files parses, and the image's `facmon` wrapper turns FACMON_<KEY>_FILE into the secret.

These checks would have caught the spool that made the facmon container restart in a loop ("cannot open the
spool"): the Dockerfile moved state and telemetry to /var/lib/facmon but not `storage.spool.path`, which stayed
at the example's `data/spool.db`, next to the configuration in the read-only /etc/facmon.
`test_a_file_off_the_volumes_is_reported` runs the same check on a copy of the stack with that Dockerfile ENV
and requires it to name the spool; its other cases break the stack in the other ways the check looks for.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import tomllib
from pathlib import Path, PurePosixPath

import pytest

from facmon.config.checks import placeholder_secrets
from facmon.config.loader import parse_config
from tests.deploy.stack import (
    COMPOSE,
    DOCKERFILE,
    ROOT,
    Edit,
    Stack,
    edited,
    mount_of,
    written_files,
)

BACKING_SERVICES = ("mosquitto", "postgres", "influxdb")
SECRET_NAME = re.compile(r"(PASSWORD|SECRET|TOKEN)$")
WRAPPER = "/usr/local/lib/facmon/bin/facmon"
GUARD = ROOT / "deploy" / "refuse-placeholders.sh"
TOKEN_SCRIPT = ROOT / "deploy" / "influxdb" / "facmon-token.sh"


def compose_text() -> str:
    return COMPOSE.read_text(encoding="utf-8")


def dockerfile_text() -> str:
    return DOCKERFILE.read_text(encoding="utf-8")


# --- every file facmon writes is on a volume ----------------------------------------------------------------


def off_volume_files(stack: Stack, container_root: Path, service: str = "facmon") -> list[str]:
    """Each file the service's facmon writes that no writable volume or bind mount of the service holds."""
    config = stack.config(service, container_root)
    service_mounts = stack.mounts(service)
    problems = []
    for key, path in written_files(config, container_root).items():
        mount = mount_of(path, service_mounts)
        if mount is None:
            problems.append(f"{key}: {path} is on no volume of {service}")
        elif mount.read_only:
            problems.append(f"{key}: {path} is on {mount.source}, mounted read-only in {service}")
    return problems


def test_every_file_facmon_writes_is_on_a_writable_volume(tmp_path: Path) -> None:
    stack = Stack.read()
    assert off_volume_files(stack, tmp_path) == []
    written = written_files(stack.config("facmon", tmp_path), tmp_path)
    # The stack keeps state in PostgreSQL and telemetry in InfluxDB: the spool is facmon's one file.
    assert written == {"storage.spool.path": PurePosixPath("/var/lib/facmon/spool.db")}


def _without_spool_env(dockerfile: str) -> str:
    # The ENV of the Dockerfile before the fix: state and telemetry moved, the spool not.
    return edited(
        dockerfile,
        " \\\n    FACMON_STORAGE__SPOOL__PATH=/var/lib/facmon/spool.db\n",
        "\n",
    )


BROKEN: list[tuple[str, Edit, Edit, str]] = [
    (
        "the spool left at the example's data/spool.db, the Dockerfile ENV before the fix",
        lambda c: c,
        _without_spool_env,
        "storage.spool.path: /etc/facmon/data/spool.db is on no volume of facmon",
    ),
    (
        "facmon's data volume not mounted",
        lambda c: edited(c, "      - facmon-data:/var/lib/facmon\n", ""),
        lambda d: d,
        "storage.spool.path: /var/lib/facmon/spool.db is on no volume of facmon",
    ),
    (
        "facmon's data volume mounted read-only",
        lambda c: edited(c, "- facmon-data:/var/lib/facmon\n", "- facmon-data:/var/lib/facmon:ro\n"),
        lambda d: d,
        "storage.spool.path: /var/lib/facmon/spool.db is on facmon-data, mounted read-only in facmon",
    ),
    (
        "the state store on SQLite at a path relative to the configuration",
        lambda c: edited(
            c,
            "FACMON_STORAGE__STATE_URL: postgresql+psycopg://facmon:",
            "FACMON_STORAGE__STATE_URL: sqlite:///data/state.db\n      UNUSED: ",
        ),
        lambda d: d,
        "storage.state_url: /etc/facmon/data/state.db is on no volume of facmon",
    ),
    (
        "telemetry on SQLite in /tmp",
        lambda c: edited(
            c,
            "FACMON_STORAGE__TELEMETRY__BACKEND: influxdb\n",
            "FACMON_STORAGE__TELEMETRY__BACKEND: sqlite\n      FACMON_STORAGE__TELEMETRY__PATH: /tmp/telemetry.db\n",
        ),
        lambda d: d,
        "storage.telemetry.path: /tmp/telemetry.db is on no volume of facmon",
    ),
]


@pytest.mark.parametrize(
    ("compose_edit", "dockerfile_edit", "expected"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN]
)
def test_a_file_off_the_volumes_is_reported(
    tmp_path: Path, compose_edit: Edit, dockerfile_edit: Edit, expected: str
) -> None:
    stack = Stack.read(compose_edit(compose_text()), dockerfile_edit(dockerfile_text()))
    assert expected in off_volume_files(stack, tmp_path)


def test_the_image_alone_keeps_its_files_in_its_volume(tmp_path: Path) -> None:
    """`docker run` without compose: the Dockerfile's ENV and VOLUME by themselves."""
    stack = Stack.read()
    dockerfile = stack.dockerfile
    config = stack.config("facmon", tmp_path, env=dockerfile.env)
    volumes = [PurePosixPath(v) for v in dockerfile.volumes]
    for key, path in written_files(config, tmp_path).items():
        assert any(v == path or v in path.parents for v in volumes), f"{key}: {path} is not in {volumes}"
    assert sorted(written_files(config, tmp_path)) == [
        "storage.spool.path",
        "storage.state_url",
        "storage.telemetry.path",
    ]


def test_the_volume_directories_belong_to_the_image_user() -> None:
    """A new named volume takes the owner of the image's directory: facmon must be able to write it."""
    dockerfile = Stack.read().dockerfile
    assert dockerfile.user not in (None, "root", "0")
    for volume in dockerfile.volumes:
        assert any(
            volume in run and (f"-o {dockerfile.user}" in run or f"chown {dockerfile.user}" in run)
            for run in dockerfile.runs
        ), f"no RUN makes {volume} belong to {dockerfile.user}"


def test_facmon_runs_as_the_image_user() -> None:
    stack = Stack.read()
    assert stack.service("facmon").get("user") in (None, stack.dockerfile.user)


# --- variables and secrets ----------------------------------------------------------------------------------


def variable_problems(stack: Stack) -> list[str]:
    problems = []
    for name, required in sorted(stack.references.items()):
        if name not in stack.env_file.listed:
            problems.append(f"{name} is read by docker-compose.yml but not in deploy/env.example")
        elif required and name not in stack.env_file.values:
            problems.append(f"{name} is required but commented out in deploy/env.example")
    return problems


def test_every_variable_the_stack_reads_is_in_env_example() -> None:
    stack = Stack.read()
    assert variable_problems(stack) == []
    expected = {
        "MQTT_SERVICE_PASSWORD",
        "POSTGRES_PASSWORD",
        "INFLUXDB_ADMIN_PASSWORD",
        "FACMON_API__PUBLIC_URL",
        "FACMON_ONCALL__LINK_SECRET",
    }
    assert expected <= {name for name, required in stack.references.items() if required}


def test_a_variable_missing_from_env_example_is_reported() -> None:
    compose = edited(
        compose_text(),
        "      FACMON_STORAGE__TELEMETRY__DIALECT: v2\n",
        (
            "      FACMON_STORAGE__TELEMETRY__DIALECT: v2\n"
            "      FACMON_NOTIFICATIONS__CHANNELS__MAIL__PASSWORD: ${SMTP_PASSWORD:?set SMTP_PASSWORD}\n"
        ),
    )
    stack = Stack.read(compose, env={**Stack.read().env_file.values, "SMTP_PASSWORD": "x"})
    assert variable_problems(stack) == ["SMTP_PASSWORD is read by docker-compose.yml but not in deploy/env.example"]


def refused_by_facmon(value: str) -> bool:
    config = parse_config("sites: [{id: s}]\n", env={"FACMON_MQTT__PASSWORD": value})
    return "mqtt.password" in placeholder_secrets(config)


def test_the_secrets_of_env_example_are_placeholders_facmon_refuses() -> None:
    env_file = Stack.read().env_file
    secrets_listed = {**env_file.commented, **env_file.values}
    secret_names = sorted(n for n in secrets_listed if SECRET_NAME.search(n))
    assert len(secret_names) >= 4
    for name in secret_names:
        assert refused_by_facmon(secrets_listed[name]), f"{name}={secrets_listed[name]} is not a placeholder"


def test_facmon_refuses_the_stack_until_env_is_filled_in(tmp_path: Path) -> None:
    """With env.example as .env, `facmon serve` does not start; with real values, nothing in it is a placeholder."""
    placeholders = Stack.read()
    found = placeholder_secrets(placeholders.config("facmon", tmp_path / "placeholders"))
    assert {"mqtt.password", "oncall.link_secret"} <= set(found)

    real = {
        name: secrets.token_hex(24) if SECRET_NAME.search(name) else value
        for name, value in placeholders.env_file.values.items()
    }
    filled = Stack.read(env=real)
    config = filled.config("facmon", tmp_path / "filled")
    assert placeholder_secrets(config) == []
    assert config.api.public_url == real["FACMON_API__PUBLIC_URL"]
    assert config.oncall.link_secret is not None
    assert config.storage.state_url == (f"postgresql+psycopg://facmon:{real['POSTGRES_PASSWORD']}@postgres:5432/facmon")


def guard(value: str | None, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"]}
    if value is not None:
        env["SECRET"] = value
    return subprocess.run(
        ["sh", str(GUARD), "SECRET", "--", "sh", "-c", "echo started"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=tmp_path,
    )


@pytest.mark.parametrize(
    "value",
    [
        "change-me-postgres-password",
        "Change_Me",
        "secret",
        "password",
        "admin",
        "xxxx",
        "123456789",
        "your-password-here",
        "<password>",
        "${POSTGRES_PASSWORD}",
        "...",
        "3f9c2a77e1d04b6a8e5f",
        "correct-horse-battery-staple",
        "secretive-but-real-1",
    ],
)
def test_the_database_guard_refuses_what_facmon_refuses(value: str, tmp_path: Path) -> None:
    result = guard(value, tmp_path)
    if refused_by_facmon(value):
        assert result.returncode == 1 and result.stdout == ""
        assert "SECRET is unset or a placeholder" in result.stderr
    else:
        assert (result.returncode, result.stdout) == (0, "started\n"), result.stderr


@pytest.mark.parametrize("value", [None, ""])
def test_the_database_guard_refuses_an_unset_secret(value: str | None, tmp_path: Path) -> None:
    assert guard(value, tmp_path).returncode == 1


def test_the_databases_start_through_the_guard() -> None:
    stack = Stack.read()
    for service, variable, command in (
        ("postgres", "POSTGRES_PASSWORD", ["docker-entrypoint.sh", "postgres"]),
        ("influxdb", "INFLUXDB_ADMIN_PASSWORD", ["/entrypoint.sh", "influxd"]),
    ):
        entrypoint = stack.service(service)["entrypoint"]
        assert entrypoint[:2] == ["/bin/sh", "/deploy/refuse-placeholders.sh"], service
        assert (
            variable in entrypoint[2 : entrypoint.index("--")] and entrypoint[entrypoint.index("--") + 1 :] == command
        )
        assert any(m.target == "/deploy/refuse-placeholders.sh" and m.read_only for m in stack.mounts(service))
    influx = stack.container_env("influxdb")
    assert influx["DOCKER_INFLUXDB_INIT_PASSWORD"] == influx["INFLUXDB_ADMIN_PASSWORD"]


# --- images, health and order -------------------------------------------------------------------------------


# PostgreSQL's releases since 10 are MAJOR.MINOR (16.16); the other images' are MAJOR.MINOR.PATCH, where
# MAJOR.MINOR (influxdb:2.7) is a tag that moves.
VERSION_PARTS = {"postgres": 2}


def is_pinned(image: str) -> bool:
    """An exact version (2.0.22, 2.11.4-alpine, postgres 16.16) or a digest; not `latest` or a tag that moves."""
    if re.search(r"@sha256:[0-9a-f]{64}$", image):
        return True
    name = image.rsplit("/", 1)[-1]
    repository, _, tag = name.partition(":")
    parts = VERSION_PARTS.get(repository, 3)
    return re.fullmatch(rf"v?\d+(?:\.\d+){{{parts - 1}}}(?:-[A-Za-z0-9.-]+)?", tag) is not None


@pytest.mark.parametrize(
    ("image", "pinned"),
    [
        ("eclipse-mosquitto:2.0.22", True),
        ("postgres:16.16", True),
        ("caddy:2.11.4-alpine", True),
        ("postgres@sha256:" + "0" * 64, True),
        ("eclipse-mosquitto:2", False),
        ("influxdb:2.7", False),
        ("postgres:latest", False),
        ("caddy", False),
        ("postgres:16", False),
        ("postgres:16-alpine", False),
        ("registry.example.net:5000/caddy", False),
    ],
)
def test_what_counts_as_pinned(image: str, pinned: bool) -> None:
    assert is_pinned(image) is pinned


def test_every_image_is_pinned_to_an_exact_version() -> None:
    stack = Stack.read()
    images = {name: s["image"] for name, s in stack.services.items() if "image" in s}
    assert all(is_pinned(image) for image in images.values()), images
    versions = {name: image.split(":", 1)[1] for name, image in images.items()}
    assert versions["mosquitto"].startswith("2.0.") and versions["influxdb"].startswith("2.7.")
    assert versions["postgres"].startswith("16.") and versions["caddy"].startswith("2.")
    assert all(not stack.builds(name) for name in images), "a built service names no image: it would be :latest"


def healthcheck(stack: Stack, name: str) -> str:
    """The test a service's container runs: its compose healthcheck, else the image's HEALTHCHECK."""
    declared = stack.service(name).get("healthcheck")
    if declared and "test" in declared:
        test = declared["test"]
        return " ".join(test) if isinstance(test, list) else str(test)
    return (stack.dockerfile.healthcheck or "") if stack.builds(name) else ""


def health_problems(stack: Stack) -> list[str]:
    problems = []
    facmon = healthcheck(stack, "facmon")
    if "/readyz" not in facmon or "/healthz" in facmon:
        problems.append(f"facmon's healthcheck is not GET /readyz: {facmon!r}")
    depends_on = stack.service("facmon").get("depends_on") or {}
    for name in BACKING_SERVICES:
        condition = depends_on.get(name, {}).get("condition") if isinstance(depends_on, dict) else None
        if condition != "service_healthy":
            problems.append(f"facmon does not wait for {name} to be healthy ({condition})")
        if not healthcheck(stack, name):
            problems.append(f"{name} has no healthcheck: service_healthy would never be reached")
    return problems


def test_facmon_checks_readiness_and_waits_for_healthy_backing_services() -> None:
    stack = Stack.read()
    assert health_problems(stack) == []
    assert "/readyz" in (stack.dockerfile.healthcheck or "")
    assert "pg_isready" in healthcheck(stack, "postgres")


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda c: edited(
                c,
                "      influxdb:\n        condition: service_healthy\n",
                "      influxdb:\n        condition: service_started\n",
            ),
            "facmon does not wait for influxdb to be healthy (service_started)",
        ),
        (
            lambda c: edited(c, "      postgres:\n        condition: service_healthy\n", ""),
            "facmon does not wait for postgres to be healthy (None)",
        ),
        (
            lambda c: edited(
                c,
                '      test: ["CMD", "pg_isready", "-h", "127.0.0.1", "-U", "facmon", "-d", "facmon"]\n',
                "      disable: true\n",
            ),
            "postgres has no healthcheck: service_healthy would never be reached",
        ),
        (
            lambda c: edited(
                c,
                "    stop_grace_period: 30s\n\n  # Two more workers",
                '    healthcheck:\n      test: ["CMD", "curl", "-f", "http://127.0.0.1:8080/healthz"]\n'
                "    stop_grace_period: 30s\n\n  # Two more workers",
            ),
            "facmon's healthcheck is not GET /readyz: 'CMD curl -f http://127.0.0.1:8080/healthz'",
        ),
    ],
    ids=["started-not-healthy", "not-waited-for", "no-healthcheck", "liveness"],
)
def test_a_wrong_health_or_order_is_reported(edit: Edit, expected: str) -> None:
    assert expected in health_problems(Stack.read(edit(compose_text())))


def test_the_image_has_the_postgresql_driver_the_state_store_needs(tmp_path: Path) -> None:
    stack = Stack.read()
    assert stack.config("facmon", tmp_path).storage.state_url.startswith("postgresql")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    for name in ("facmon", "mosquitto-config"):
        build = stack.service(name)["build"]
        assert "postgres" in build["args"]["FACMON_EXTRAS"].split(",") and "postgres" in extras


# --- InfluxDB: facmon's token, not the operator's -----------------------------------------------------------


def test_facmons_influxdb_token_reaches_it_through_a_shared_volume() -> None:
    stack = Stack.read()
    facmon_env = stack.container_env("facmon")
    token_path = PurePosixPath(facmon_env["FACMON_STORAGE__TELEMETRY__TOKEN_FILE"])
    facmon_mount = mount_of(token_path, stack.mounts("facmon"))
    assert facmon_mount is not None and facmon_mount.read_only and not facmon_mount.bind

    written = PurePosixPath(stack.container_env("influxdb")["FACMON_TOKEN_FILE"])
    influx_mount = mount_of(written, stack.mounts("influxdb"))
    assert influx_mount is not None and influx_mount.source == facmon_mount.source and not influx_mount.read_only
    assert written.relative_to(influx_mount.target) == token_path.relative_to(facmon_mount.target)

    # Run by the image's entrypoint: an executable *.sh in /docker-entrypoint-initdb.d.
    script = next(m for m in stack.mounts("influxdb") if m.target.startswith("/docker-entrypoint-initdb.d/"))
    assert script.target.endswith(".sh") and (ROOT / script.source).resolve() == TOKEN_SCRIPT
    assert os.access(TOKEN_SCRIPT, os.X_OK)
    # The file belongs to facmon's uid and gid.
    uid = re.search(r"--uid (\d+)", " ".join(stack.dockerfile.runs))
    gid = re.search(r"--gid (\d+)", " ".join(stack.dockerfile.runs))
    owner = re.search(r"FACMON_TOKEN_OWNER:-(\d+):(\d+)", TOKEN_SCRIPT.read_text(encoding="utf-8"))
    assert uid and gid and owner and owner.groups() == (uid.group(1), gid.group(1))
    # Scoped to the bucket facmon writes to, never all access or operator.
    text = TOKEN_SCRIPT.read_text(encoding="utf-8")
    assert "--read-bucket" in text and "--write-bucket" in text
    assert "--operator" not in text and "--all-access" not in text


def test_facmon_never_sees_influxdbs_operator_token_or_admin_password() -> None:
    stack = Stack.read()
    influx_env = stack.container_env("influxdb")
    # No operator token of ours: the setup makes one and keeps it in the influxdb-config volume.
    assert "DOCKER_INFLUXDB_INIT_ADMIN_TOKEN" not in influx_env
    admin_password = influx_env["DOCKER_INFLUXDB_INIT_PASSWORD"]
    assert admin_password not in stack.container_env("facmon").values()
    influx_volumes = {
        m.source for m in stack.mounts("influxdb") if m.target in ("/etc/influxdb2", "/var/lib/influxdb2")
    }
    assert influx_volumes and not influx_volumes & {m.source for m in stack.mounts("facmon")}


# --- the files that compose mounts, and the shell in them ----------------------------------------------------


def test_every_bind_mounted_file_is_in_the_repository() -> None:
    stack = Stack.read()
    sources = {m.source for name in stack.services for m in stack.mounts(name) if m.bind}
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source
    named = {m.source for name in stack.services for m in stack.mounts(name) if not m.bind}
    assert named <= set(stack.compose.get("volumes") or {}), named - set(stack.compose.get("volumes") or {})


def shell_snippets(stack: Stack) -> dict[str, tuple[str, str]]:
    """Every shell script of the stack, by where it is: (shell, text)."""
    found = {
        "deploy/refuse-placeholders.sh": ("sh", GUARD.read_text(encoding="utf-8")),
        "deploy/influxdb/facmon-token.sh": ("bash", TOKEN_SCRIPT.read_text(encoding="utf-8")),
        f"Dockerfile {WRAPPER}": ("sh", stack.dockerfile.files[WRAPPER]),
    }
    for name, service in stack.services.items():
        entrypoint = service.get("entrypoint")
        if isinstance(entrypoint, list) and entrypoint[:2] == ["/bin/sh", "-c"]:
            found[f"docker-compose.yml {name}"] = ("sh", entrypoint[2])
    return found


def test_every_shell_script_parses() -> None:
    snippets = shell_snippets(Stack.read())
    assert "docker-compose.yml mosquitto" in snippets
    for where, (shell, text) in snippets.items():
        result = subprocess.run([shell, "-n"], input=text, capture_output=True, text=True, timeout=30, check=False)
        assert result.returncode == 0, f"{where}: {result.stderr}"


def test_the_broker_gets_its_password_file_and_acl_for_itself() -> None:
    """Mosquitto reads both as its own user after dropping root, and warns about files others may read."""
    script = Stack.read().service("mosquitto")["entrypoint"][2]
    for path in ("/mosquitto/auth/passwd", "/mosquitto/auth/acl"):
        assert f"chown mosquitto:mosquitto {path}\n" in script and f"chmod 0600 {path}\n" in script
    assert script.rstrip().endswith("exec /usr/sbin/mosquitto -c /mosquitto/config/mosquitto.conf")
    conf = (ROOT / "deploy" / "mosquitto" / "mosquitto.conf").read_text(encoding="utf-8")
    active = [line.strip() for line in conf.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert "max_queued_messages 0" in active and "allow_anonymous false" in active
    assert "password_file /mosquitto/auth/passwd" in active and "acl_file /mosquitto/auth/acl" in active


def test_caddy_is_optional_and_proxies_to_facmon() -> None:
    stack = Stack.read()
    caddy = stack.service("caddy")
    assert caddy["profiles"] == ["proxy"]
    caddyfile = next(m for m in stack.mounts("caddy") if m.target == "/etc/caddy/Caddyfile")
    text = (ROOT / caddyfile.source).read_text(encoding="utf-8")
    assert set(re.findall(r"\{\$([A-Z_]+)\}", text)) <= set(stack.container_env("caddy"))
    assert stack.container_env("caddy")["FACMON_PUBLIC_URL"] == stack.container_env("facmon")["FACMON_API__PUBLIC_URL"]
    assert re.search(r"^\s*reverse_proxy facmon:8080\b", text, re.MULTILINE)
    assert {"/data", "/config"} <= {m.target for m in stack.mounts("caddy") if not m.bind}


# --- the image's `facmon` wrapper ---------------------------------------------------------------------------


def run_wrapper(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The wrapper from the Dockerfile, with `env` in place of the real facmon it hands over to."""
    text = Stack.read().dockerfile.files[WRAPPER]
    script = tmp_path / "facmon-wrapper"
    recorder = 'exec sh -c \'env; echo "arguments: $*"\' facmon "$@"'
    script.write_text(edited(text, 'exec /usr/local/bin/facmon "$@"', recorder), encoding="utf-8")
    return subprocess.run(
        ["sh", str(script), "serve", "--config", "/etc/facmon/facility.yaml"],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_the_wrapper_reads_secrets_from_files(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("scoped-token==\n", encoding="utf-8")
    result = run_wrapper(
        tmp_path,
        {
            "FACMON_STORAGE__TELEMETRY__TOKEN_FILE": str(token),
            "FACMON_MQTT__PASSWORD_FILE": str(token),
            "FACMON_MQTT__PASSWORD": "set-already",
            "FACMON_MQTT__CA_FILE": "/certs/ca.pem",  # a setting that is a file's name, not a secret in one
        },
    )
    assert result.returncode == 0, result.stderr
    seen = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    assert seen["FACMON_STORAGE__TELEMETRY__TOKEN"] == "scoped-token=="
    assert seen["FACMON_MQTT__PASSWORD"] == "set-already"
    assert seen["FACMON_MQTT__CA_FILE"] == "/certs/ca.pem"
    assert not {"FACMON_STORAGE__TELEMETRY__TOKEN_FILE", "FACMON_MQTT__PASSWORD_FILE"} & set(seen)
    assert result.stdout.endswith("arguments: serve --config /etc/facmon/facility.yaml\n")


@pytest.mark.parametrize("content", [None, ""])
def test_the_wrapper_stops_on_a_missing_or_empty_file(tmp_path: Path, content: str | None) -> None:
    token = tmp_path / "token"
    if content is not None:
        token.write_text(content, encoding="utf-8")
    result = run_wrapper(tmp_path, {"FACMON_STORAGE__TELEMETRY__TOKEN_FILE": str(token)})
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == (
        f"facmon: error: FACMON_STORAGE__TELEMETRY__TOKEN_FILE: cannot read {token} (or it is empty)\n"
    )


def test_facmon_on_path_is_the_wrapper() -> None:
    dockerfile = Stack.read().dockerfile
    assert dockerfile.entrypoint == ["facmon"]
    assert dockerfile.env["PATH"].split(":")[0] == str(PurePosixPath(WRAPPER).parent)
    assert dockerfile.files[WRAPPER].startswith("#!/bin/sh\n")
