"""Checks across sections: references that must resolve, and secrets left as placeholders."""

from __future__ import annotations

import re

from pydantic import SecretStr

from facmon.config.facility import FacilityConfig
from facmon.config.maintenance import check_maintenance
from facmon.config.notifications import BROADCAST_TO, EmailChannel, MqttChannel, WebhookChannel, check_topic_level
from facmon.config.oncall import check_oncall
from facmon.config.rules import check_rule
from facmon.config.types import Location, dotted
from facmon.facility.model import Device


def check_references(config: FacilityConfig) -> list[tuple[Location, str]]:
    """Checks across sections that single models cannot make: unique ids, rule fields that exist, …"""
    found: list[tuple[Location, str]] = []
    seen_sites: set[str] = set()
    seen_devices: dict[str, Location] = {}
    devices: list[Device] = []
    # Gateway ids are broker user names: unique across sites and apart from facmon's own account.
    seen_gateways: dict[str, str] = {config.mqtt.username: "facmon's own MQTT user"} if config.mqtt.username else {}
    for s, site in enumerate(config.sites):
        if site.id in seen_sites:
            found.append((("sites", s, "id"), f"site id {site.id!r} is used twice"))
        seen_sites.add(site.id)
        for g, gateway in enumerate(site.gateways):
            if gateway.id in seen_gateways:
                found.append(
                    (
                        ("sites", s, "gateways", g, "id"),
                        f"gateway id {gateway.id!r} is already {seen_gateways[gateway.id]}",
                    )
                )
            else:
                seen_gateways[gateway.id] = f"used at sites.{s}.gateways.{g}"
        seen_buildings: set[str] = set()
        for b, building in enumerate(site.buildings):
            if building.id in seen_buildings:
                found.append((("sites", s, "buildings", b, "id"), f"building id {building.id!r} is used twice"))
            seen_buildings.add(building.id)
            for d, device in enumerate(building.devices):
                here: Location = ("sites", s, "buildings", b, "devices", d, "id")
                if device.id in seen_devices:
                    first = dotted(seen_devices[device.id])
                    found.append((here, f"device id {device.id!r} is already used at {first}"))
                else:
                    seen_devices[device.id] = here
                devices.append(device.to_device(site.id, building.id))

    rule_ids = {rule.id for rule in config.rules}
    seen_rules: set[str] = set()
    for r, rule in enumerate(config.rules):
        if rule.id in seen_rules:
            found.append((("rules", r, "id"), f"rule id {rule.id!r} is used twice"))
        seen_rules.add(rule.id)
        for i, device_id in enumerate(rule.select.ids):
            if device_id not in seen_devices:
                found.append((("rules", r, "select", "ids", i), f"no device has the id {device_id!r}"))
        selected = [d for d in devices if rule.select.matches(d)]
        if not selected:
            found.append((("rules", r, "select"), "selects no device"))
            continue
        found += check_rule(rule, ("rules", r), selected, rule_ids)
    found += check_oncall(config.oncall, set(config.notifications.channels))
    found += _check_mqtt_addresses(config, seen_gateways)
    found += check_maintenance(config.maintenance, devices)
    found += _check_cluster(config, seen_sites)
    return found


def _check_cluster(config: FacilityConfig, sites: set[str]) -> list[tuple[Location, str]]:
    cluster = config.cluster
    found: list[tuple[Location, str]] = [
        (("cluster", "sites", site), f"no site has the id {site!r}") for site in cluster.sites if site not in sites
    ]
    if cluster.enabled and config.storage.state_url.startswith("sqlite"):
        # The workers of a cluster share alarms, work orders and leases: a SQLite file is one machine's.
        found.append((("cluster", "enabled"), "a cluster needs a PostgreSQL state store (storage.state_url)"))
    mqtt = config.mqtt
    if mqtt.shared_group and cluster.enabled:
        found.append(
            (
                ("mqtt", "shared_group"),
                "a cluster splits the sites over its workers by partition: leave shared_group out",
            )
        )
    elif mqtt.shared_group and config.rules and not mqtt.shared_by_topic:
        # Round robin (Mosquitto's) spreads a device's readings over the group: delays, windows and no_data would
        # be judged on fragments, and two processes could raise the same alarm.
        found.append(
            (
                ("mqtt", "shared_group"),
                "a shared subscription spreads each device's readings over the processes, and rules need them "
                "all: run a cluster (cluster.enabled) instead, or set mqtt.shared_by_topic when the broker gives "
                "each topic to one member (EMQX hash_topic)",
            )
        )
    return found


def _check_mqtt_addresses(config: FacilityConfig, accounts: dict[str, str]) -> list[tuple[Location, str]]:
    """MQTT channels' receivers and the addresses put into their topics: each address is one topic level, each
    receiver a broker account of its own, reading addresses that someone is paged at."""
    found: list[tuple[Location, str]] = []
    for name, channel in config.notifications.channels.items():
        if not isinstance(channel, MqttChannel):
            continue
        here: Location = ("notifications", "channels", name)
        addresses = {BROADCAST_TO}
        for p, person in enumerate(config.oncall.people):
            address = person.contacts.get(name)
            if not address or not channel.addressed:
                continue
            where: Location = ("oncall", "people", p, "contacts", name)
            try:
                check_topic_level(address)
            except ValueError:
                found.append(
                    (
                        where,
                        f"{address!r} takes the place of {{to}} in {channel.topic}: one topic level, "
                        "without '/', '+', '#', control characters or spaces",
                    )
                )
                continue
            if address == BROADCAST_TO:
                found.append((where, f"{address!r} is the address of messages to everyone on {name}"))
            addresses.add(address)
        for r, receiver in enumerate(channel.receivers):
            at: Location = (*here, "receivers", r)
            if receiver.id in accounts:
                found.append(((*at, "id"), f"receiver id {receiver.id!r} is already {accounts[receiver.id]}"))
            else:
                accounts[receiver.id] = f"used at {dotted(at)}"
            if not channel.addressed:
                if receiver.to:
                    found.append(((*at, "to"), f"the topic {channel.topic} has no {{to}}: the receiver reads it all"))
                continue
            if not receiver.to:
                found.append(
                    (at, f"name in `to` whose messages it reads on {channel.topic} ({BROADCAST_TO!r}: to everyone)")
                )
            for t, address in enumerate(receiver.to):
                if address not in addresses:
                    found.append(
                        ((*at, "to", t), f"nobody in oncall.people has the address {address!r} on channel {name}")
                    )
    return found


# Values that docs, examples and habit put where a secret goes: a config carrying one is not ready for a site.
_PLACEHOLDERS = re.compile(
    r"^(change[-_ ]?me.*|changeit|secret|password|passw0rd|example|placeholder|todo|tbd|xxx+|default|admin|test|"
    r"123456.*|your[-_ ].*|<.*>|\$\{.*\}|\.\.\.)$",
    re.IGNORECASE,
)


def placeholder_secrets(config: FacilityConfig) -> list[str]:
    """The secrets in a config that are placeholders ("change-me", "secret", …), by key path.

    `facmon serve` refuses to start with any; `facmon demo` runs with them, as demos do.
    """
    found: list[tuple[str, SecretStr | None]] = [
        ("mqtt.password", config.mqtt.password),
        ("storage.telemetry.token", config.storage.telemetry.token),
        ("storage.telemetry.password", config.storage.telemetry.password),
        ("oncall.link_secret", config.oncall.link_secret),
    ]
    for s, site in enumerate(config.sites):
        found += [(f"sites.{s}.gateways.{g}.password", gw.password) for g, gw in enumerate(site.gateways)]
    for name, channel in config.notifications.channels.items():
        if isinstance(channel, WebhookChannel):
            found.append((f"notifications.channels.{name}.secret", channel.secret))
        elif isinstance(channel, EmailChannel):
            found.append((f"notifications.channels.{name}.password", channel.password))
        elif isinstance(channel, MqttChannel):
            found += [
                (f"notifications.channels.{name}.receivers.{r}.password", receiver.password)
                for r, receiver in enumerate(channel.receivers)
            ]
    return [path for path, secret in found if secret is not None and _PLACEHOLDERS.match(secret.get_secret_value())]
