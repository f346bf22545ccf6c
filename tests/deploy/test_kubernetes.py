"""The Kubernetes manifests, read as the cluster would read them: a StatefulSet of cluster workers.

No Kubernetes runs here; the checks are what the manifests promise facmon: its configuration (every variable a
key facmon knows, a cluster over PostgreSQL, each pod its own worker name), the probes on facmon's own routes,
the spool on a volume that outlives the pod, selectors that select the pods.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from facmon.api.routes.health import router as health
from facmon.config.loader import load_config
from tests.conftest import EXAMPLE

MANIFESTS = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes" / "facmon.yaml"
SECRETS = {
    "state-url": "postgresql+psycopg://facmon:a3f9c2e1b7d4@postgres.example:5432/facmon",
    "mqtt-password": "9c1e7a3b5d2f4e6a8b0c",
    "influxdb-token": "5d8e2a7c1f4b9e3a6c0d",
    "oncall-link-secret": "e4b1c7a9d3f2e8b6a5c0d1f7",
}


def documents() -> dict[str, dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(MANIFESTS.read_text(encoding="utf-8")) if d]
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in docs}


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = documents()["StatefulSet/facmon"]["spec"]["template"]["spec"]
    return spec


def container_env(pod_name: str) -> dict[str, str]:
    """The container's environment as the pod `pod_name` gets it, with the secret's keys filled in."""
    [container] = pod_spec()["containers"]
    env: dict[str, str] = {}
    for entry in container["env"]:
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        elif "fieldRef" in entry["valueFrom"]:
            assert entry["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
            env[entry["name"]] = pod_name
        else:
            ref = entry["valueFrom"]["secretKeyRef"]
            assert ref["name"] == "facmon"
            env[entry["name"]] = SECRETS[ref["key"]]
    return env


def test_every_variable_is_a_setting_and_the_pods_are_a_cluster_over_postgresql() -> None:
    names = [f"facmon-{n}" for n in range(documents()["StatefulSet/facmon"]["spec"]["replicas"])]
    configs = [load_config(EXAMPLE, env=container_env(name)) for name in names]  # an unknown key would raise
    assert len(configs) >= 2
    assert all(c.cluster.enabled and c.storage.state_url.startswith("postgresql") for c in configs)
    assert [c.cluster.worker for c in configs] == names  # each pod its own worker
    assert len({c.mqtt.client_id for c in configs}) == 1  # one set of partition sessions, whoever holds them
    assert all(c.storage.telemetry.backend == "influxdb" for c in configs)  # shared by the workers


def test_the_probes_ask_facmons_health_routes_on_its_port() -> None:
    [container] = pod_spec()["containers"]
    routes = {getattr(route, "path", None) for route in health.routes}
    [port] = container["ports"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port["name"]}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    assert {"/readyz", "/healthz"} <= routes
    config = load_config(EXAMPLE, env=container_env("facmon-0"))
    assert config.api.port == port["containerPort"] and config.api.host == "0.0.0.0"


def test_the_spool_is_on_a_volume_of_its_own_per_pod_and_the_config_is_mounted() -> None:
    statefulset = documents()["StatefulSet/facmon"]
    [container] = pod_spec()["containers"]
    mounts = {m["name"]: PurePosixPath(m["mountPath"]) for m in container["volumeMounts"]}
    claims = {c["metadata"]["name"] for c in statefulset["spec"]["volumeClaimTemplates"]}
    spool = PurePosixPath(load_config(EXAMPLE, env=container_env("facmon-0")).storage.spool.path)
    [holder] = [name for name, path in mounts.items() if spool.is_relative_to(path)]
    assert holder in claims  # outlives the pod: what it acknowledged and spooled is not lost with it
    config_path = PurePosixPath(container["args"][container["args"].index("--config") + 1])
    [config_volume] = [name for name, path in mounts.items() if config_path.parent == path]
    volumes = {v["name"]: v for v in pod_spec()["volumes"]}
    assert volumes[config_volume]["configMap"]["name"] == "facmon-facility"


def test_selectors_select_the_pods_and_a_drain_stops_one_worker_at_a_time() -> None:
    docs = documents()
    labels = docs["StatefulSet/facmon"]["spec"]["template"]["metadata"]["labels"]
    for key in ("Service/facmon", "Service/facmon-workers"):
        assert docs[key]["spec"]["selector"].items() <= labels.items()
    assert docs["PodDisruptionBudget/facmon"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert docs["PodDisruptionBudget/facmon"]["spec"]["maxUnavailable"] == 1
    assert docs["StatefulSet/facmon"]["spec"]["serviceName"] == "facmon-workers"
    # Time to save the partitions' memory, give the leases up and let pages in flight finish.
    assert pod_spec()["terminationGracePeriodSeconds"] >= 15
    [container] = pod_spec()["containers"]
    assert not container["image"].endswith(":latest") and ":" in container["image"]
