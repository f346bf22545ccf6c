"""The MQTT topic contract between gateways and facmon."""

from __future__ import annotations

from typing import NamedTuple

DEFAULT_PREFIX = "facility"


class TelemetryTopic(NamedTuple):
    site: str
    device_type: str
    device_id: str


def telemetry_topic(prefix: str, site: str, device_type: str, device_id: str) -> str:
    return f"{prefix}/{site}/{device_type}/{device_id}/telemetry"


def telemetry_filter(prefix: str) -> str:
    """The subscription that matches every device's telemetry under `prefix`."""
    return f"{prefix}/+/+/+/telemetry"


def site_telemetry_filter(prefix: str, site: str) -> str:
    """The subscription that matches the telemetry of every device of one site."""
    return f"{prefix}/{site}/+/+/telemetry"


def gateway_status_topic(prefix: str, site: str, gateway_id: str) -> str:
    return f"{prefix}/{site}/gateway/{gateway_id}/status"


def parse_telemetry_topic(topic: str, prefix: str) -> TelemetryTopic | None:
    """Split a telemetry topic into its parts, or None when it is not one."""
    parts = topic.split("/")
    prefix_parts = prefix.split("/")
    n = len(prefix_parts)
    if len(parts) != n + 4 or parts[:n] != prefix_parts or parts[-1] != "telemetry":
        return None
    site, device_type, device_id = parts[n], parts[n + 1], parts[n + 2]
    if not (site and device_type and device_id):
        return None
    return TelemetryTopic(site, device_type, device_id)


def gateway_status_filter(prefix: str) -> str:
    """The subscription that matches every gateway's status under `prefix`."""
    return f"{prefix}/+/gateway/+/status"


def parse_gateway_status_topic(topic: str, prefix: str) -> tuple[str, str] | None:
    """(site, gateway id) of a gateway status topic, or None when it is not one."""
    parts = topic.split("/")
    prefix_parts = prefix.split("/")
    n = len(prefix_parts)
    if len(parts) != n + 4 or parts[:n] != prefix_parts or parts[n + 1] != "gateway" or parts[-1] != "status":
        return None
    site, gateway_id = parts[n], parts[n + 2]
    return (site, gateway_id) if site and gateway_id else None
