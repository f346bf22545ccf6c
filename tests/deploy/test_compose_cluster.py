"""The compose stack's cluster profile: two more facmon workers of one cluster, and Caddy in front of all three."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
from pathlib import Path, PurePosixPath

import pytest

from tests.deploy.stack import ROOT, Stack, mount_of

SECRET_NAME = re.compile(r"(PASSWORD|SECRET|TOKEN)$")


WORKERS = ("facmon", "facmon-2", "facmon-3")


def test_the_cluster_profile_adds_two_workers_of_one_cluster(tmp_path: Path) -> None:
    values = Stack.read().env_file.values
    real = {name: secrets.token_hex(24) if SECRET_NAME.search(name) else value for name, value in values.items()}
    stack = Stack.read(env={**real, "FACMON_CLUSTER__ENABLED": "true"})
    assert [stack.service(name).get("profiles") for name in WORKERS] == [None, ["cluster"], ["cluster"]]
    configs = [stack.config(name, tmp_path / name) for name in WORKERS]
    assert all(c.cluster.enabled and c.storage.state_url.startswith("postgresql") for c in configs)
    assert [c.cluster.worker for c in configs] == ["facmon-1", "facmon-2", "facmon-3"]
    assert len({c.mqtt.client_id for c in configs}) == 1  # the partitions' sessions are the cluster's
    # The same settings but for the worker's name; each its own spool; only the first on a host port.
    envs = [{k: v for k, v in stack.container_env(n).items() if k != "FACMON_CLUSTER__WORKER"} for n in WORKERS]
    assert envs[0] == envs[1] == envs[2]
    spools = [mount_of(PurePosixPath("/var/lib/facmon/spool.db"), stack.mounts(name)) for name in WORKERS]
    assert len({m.source for m in spools if m is not None and not m.bind}) == 3
    assert [bool(stack.service(name).get("ports")) for name in WORKERS] == [True, False, False]
    assert (
        stack.command("facmon-2")[-3:]
        == stack.command("facmon")[-3:]
        == ["serve", "--config", stack.command("facmon")[-1]]
    )


@pytest.mark.parametrize(("enabled", "starts"), [("true", True), ("false", False), (None, False)])
def test_a_cluster_worker_refuses_to_start_outside_a_cluster(enabled: str | None, starts: bool) -> None:
    entrypoint = Stack.read().service("facmon-2")["entrypoint"]
    assert entrypoint[:2] == ["/bin/sh", "-c"]
    env = {"PATH": os.environ["PATH"]} | ({"FACMON_CLUSTER__ENABLED": enabled} if enabled is not None else {})
    # `facmon` replaced by `echo`: what would run, not a service.
    script = entrypoint[2].replace('exec facmon "$@"', 'exec echo started "$@"')
    result = subprocess.run(
        ["sh", "-c", script, *entrypoint[3:], "serve"], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert (result.returncode == 0) is starts, result.stderr
    if starts:
        assert result.stdout.strip() == "started serve"
    else:
        assert "FACMON_CLUSTER__ENABLED=true" in result.stderr


def test_caddy_spreads_the_requests_over_the_cluster_workers_given() -> None:
    stack = Stack.read(env={**Stack.read().env_file.values, "FACMON_CLUSTER_UPSTREAMS": "facmon-2:8080 facmon-3:8080"})
    assert stack.container_env("caddy")["FACMON_CLUSTER_UPSTREAMS"] == "facmon-2:8080 facmon-3:8080"
    caddyfile = (ROOT / "deploy" / "caddy" / "Caddyfile").read_text(encoding="utf-8")
    assert re.search(r"^\s*reverse_proxy facmon:8080 \{\$FACMON_CLUSTER_UPSTREAMS\} \{", caddyfile, re.MULTILINE)
