from __future__ import annotations

import shutil
from datetime import time, timedelta
from pathlib import Path

import pytest

from facmon.config.checks import placeholder_secrets
from facmon.config.errors import ConfigError
from facmon.config.loader import load_config, parse_config
from facmon.facility.model import Priority
from tests.conftest import EXAMPLE

TESTDATA = Path(__file__).parent / "testdata"


def problems(name: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(TESTDATA / name, env=env or {})
    return [str(p) for p in caught.value.problems]


def test_example_facility_is_valid_and_complete() -> None:
    config = load_config(EXAMPLE, env={})
    devices = [d for s in config.sites for b in s.buildings for d in b.devices]
    by_type: dict[str, int] = {}
    for device in devices:
        by_type[device.type] = by_type.get(device.type, 0) + 1
    assert by_type == {"pump": 2, "power": 2, "elevator": 4, "smoke": 20}
    assert [b.id for b in config.sites[0].buildings] == ["A", "B"]
    assert {r.select.types[0] for r in config.rules} == {"pump", "power", "elevator", "smoke"}
    assert config.work_orders.auto_open
    assert config.notifications.channels["duty-log"].type == "console"


def test_minimal_config_gets_defaults_with_paths_relative_to_the_file() -> None:
    config = load_config(TESTDATA / "good-minimal.yaml", env={})
    assert config.mqtt.url == "mqtt://127.0.0.1:1883"
    assert config.storage.telemetry.path == (TESTDATA / "data" / "telemetry.db").resolve()
    assert config.storage.state_url == f"sqlite:///{(TESTDATA / 'data' / 'state.db').resolve()}"
    assert config.work_orders.response_targets[Priority.P1] == timedelta(minutes=5)


def test_unknown_key_is_an_error_with_file_line_and_key_path() -> None:
    assert problems("bad-unknown-key.yaml") == [f"{TESTDATA / 'bad-unknown-key.yaml'}:4: mqtt.colour: unknown key"]


def test_wrong_types_each_reported_on_their_own_line() -> None:
    found = problems("bad-types.yaml")
    source = TESTDATA / "bad-types.yaml"
    assert found[0] == f"{source}:1: timezone: 'Mars/Olympus' is not an IANA time zone such as Asia/Shanghai"
    assert found[1].startswith(f"{source}:3: api.port: Input should be a valid integer")
    assert "(got 'eighty')" in found[1]
    assert found[2].startswith(f"{source}:9: sites.0.buildings.0.devices.0.type: Input should be 'pump'")
    assert found[3] == f"{source}:10: sites.0.buildings.0.devices.1.name: required key is missing"
    assert found[4].startswith(f"{source}:13: work_orders.response_targets.P1: 'soon' is not a duration")
    assert len(found) == 5


def test_references_across_sections_are_checked() -> None:
    found = [p.split(":", 1)[1] for p in problems("bad-references.yaml")]
    assert found == [
        "7: sites.0.buildings.0.devices.1.id: device id 'p1' is already used at sites.0.buildings.0.devices.0.id",
        "12: rules.0.select.ids.1: no device has the id 'p9'",
        "13: rules.0.field: 'presure_bar' is not a field of device type pump",
        "16: rules.1.id: rule id 'low' is used twice",
        "21: rules.1.levels.0: 'broken' not among idle, running, door_open, fault, out_of_service, inspection"
        " (state of elevator)",
        "22: rules.1.levels.1: above needs a numeric field (state of elevator)",
        "25: rules.2.select: selects no device",
        "34: rules.3.levels.0: a numeric field is judged with above, below, falls or rises, not equals or in"
        " (pressure_bar of pump)",
    ]  # rules.4 selects by id alone and is fine


def test_invalid_yaml_names_the_line() -> None:
    [found] = problems("bad-yaml.yaml")
    assert found.startswith(f"{TESTDATA / 'bad-yaml.yaml'}:")
    assert "not valid YAML" in found


def test_missing_file_is_one_clear_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nope.yaml", env={})
    assert str(caught.value) == f"{tmp_path / 'nope.yaml'}: cannot read the config: No such file or directory"


def test_environment_overrides_scalars_and_is_named_in_errors() -> None:
    env = {
        "FACMON_MQTT__URL": "mqtts://broker.example:8883",
        "FACMON_MQTT__PASSWORD": "s3cret",
        "FACMON_API__PORT": "9090",
        "FACMON_STORAGE__TELEMETRY__PATH": "/var/lib/facmon/t.db",
        "FACMON_SITES__0__NAME": "Plant one",
        "FACMON_UNRELATED_SETTING": "ignored: not a config section",
    }
    config = load_config(TESTDATA / "good-minimal.yaml", env=env)
    assert (config.mqtt.host, config.mqtt.port, config.mqtt.tls) == ("broker.example", 8883, True)
    assert config.mqtt.password is not None and config.mqtt.password.get_secret_value() == "s3cret"
    assert config.api.port == 9090
    assert config.storage.telemetry.path == Path("/var/lib/facmon/t.db")
    assert config.sites[0].name == "Plant one"

    found = problems("good-minimal.yaml", env={"FACMON_API__PORT": "http", "FACMON_MQTT__URLS": "x"})
    assert any(p.startswith("environment FACMON_API__PORT: api.port: Input should be a valid integer") for p in found)
    assert "environment FACMON_MQTT__URLS: mqtt.urls: unknown key" in found


def test_environment_keys_match_existing_keys_in_any_case_and_lists_by_index() -> None:
    env = {"FACMON_WORK_ORDERS__RESPONSE_TARGETS__P1": "10m", "FACMON_SITES__0__BUILDINGS__0__ID": "east"}
    config = load_config(TESTDATA / "good-minimal.yaml", env=env)
    assert config.work_orders.response_targets[Priority.P1] == timedelta(minutes=10)
    assert config.sites[0].buildings[0].id == "east"
    assert problems("good-minimal.yaml", env={"FACMON_SITES__5__NAME": "x"}) == [
        "environment FACMON_SITES__5__NAME: sites has 1 entries: there is no entry 5"
    ]
    assert problems("good-minimal.yaml", env={"FACMON_TIMEZONE__X": "x"}) == [
        "environment FACMON_TIMEZONE__X: timezone: Input should be a valid string"
    ]


def test_duplicate_yaml_keys_are_errors() -> None:
    text = "sites: []\nsites:\n  - id: a\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="dup.yaml", env={})
    assert "dup.yaml:2: sites: key given twice" in str(caught.value)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://broker:1883", "scheme must be mqtt:// or mqtts://"),
        ("mqtt://:1883", "no host"),
    ],
)
def test_bad_broker_urls(url: str, message: str) -> None:
    text = f"mqtt: {{url: '{url}'}}\nsites: [{{id: s}}]\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text, env={})
    assert message in str(caught.value)


def test_level_needs_exactly_one_condition() -> None:
    text = """
sites: [{id: s, buildings: [{id: b, devices: [{id: p, type: pump, name: P}]}]}]
rules:
  - {id: r, name: R, field: pressure_bar, levels: [{severity: major, below: 1, above: 5}]}
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="c.yaml", env={})
    assert "c.yaml:4: rules.0.levels.0: a condition is exactly one of above, below, equals, in, falls, rises," in str(
        caught.value
    )
    assert "(got above, below)" in str(caught.value)


def test_yaml_booleans_where_text_is_expected_get_a_hint() -> None:
    text = "sites: [{id: s, buildings: [{id: b, devices: [{id: p, type: pump, name: no}]}]}]\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="c.yaml", env={})
    assert "name: Input should be a valid string (got false: YAML reads yes, no, on and off as booleans" in str(
        caught.value
    )


def test_rules_can_come_from_included_files_in_order() -> None:
    config = load_config(TESTDATA / "includes" / "facility.yaml", env={})
    assert [rule.id for rule in config.rules] == ["silent", "dip", "low", "high"]


def test_problems_in_included_files_name_that_file_and_line(tmp_path: Path) -> None:
    root = TESTDATA / "bad-includes"
    assert problems("bad-includes/facility.yaml") == [
        f"{root / 'facility.yaml'}:9: rules.1.include: no file matches 'rules/missing-*.yaml'",
    ]
    copy = tmp_path / "bad-includes"
    shutil.copytree(root, copy)
    (copy / "rules" / "missing-ok.yaml").write_text("[]\n")
    with pytest.raises(ConfigError) as caught:
        load_config(copy / "facility.yaml", env={})
    assert [str(p) for p in caught.value.problems] == [
        f"{copy / 'rules' / 'pump.yaml'}:10: rules.1.field: 'presure_bar' is not a field of device type pump",
    ]


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("{id: r, name: R, field: state, levels: [{severity: major, equals: 'yes'}]}", "'yes' not among idle"),
        ("{id: r, name: R, field: floor, levels: [{severity: major, equals: 3}]}", "numbers are judged with above or"),
        (
            "{id: r, name: R, derived: {kind: unbalance, fields: [voltage_l1_v, voltage_l2_v]},"
            " levels: [{severity: minor, falls: 1, within: 1m}]}",
            "a derived value is judged with above or below, not falls",
        ),
        (
            "{id: r, name: R, derived: {kind: unbalance, fields: [voltage_l1_v, voltage_l2_v]},"
            " levels: [{severity: minor, above: 2%}]}",
            "a derived value's threshold is a number, not a percentage",
        ),
    ],
)
def test_rules_that_could_never_hold_are_refused(rule: str, message: str) -> None:
    types = "[power]" if "derived" in rule else "[elevator]"
    devices = "{id: v, type: power, name: V}" if "derived" in rule else "{id: e, type: elevator, name: E}"
    selected = rule.replace("{id: r,", "{id: r, select: {types: " + types + "},")
    text = f"sites: [{{id: s, buildings: [{{id: b, devices: [{devices}]}}]}}]\nrules:\n  - {selected}\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text, env={})
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("key", "value"), [("tick", "0s"), ("tick", "5m"), ("max_shelve", "0s"), ("max_shelve", "30d")]
)
def test_alarm_timings_are_bounded(key: str, value: str) -> None:
    text = f"alarms: {{{key}: {value}}}\nsites: [{{id: s}}]\n"
    with pytest.raises(ConfigError, match=f"alarms.{key}: between"):
        parse_config(text, env={})


def test_notification_channels_of_every_type() -> None:
    channels = load_config(TESTDATA / "good-channels.yaml", env={}).notifications.channels
    assert {name: c.type for name, c in channels.items()} == {
        "duty-log": "console",
        "ops-hook": "webhook",
        "wecom-duty": "webhook",
        "duty-mail": "email",
        "siren": "mqtt",
    }
    hook, wecom, mail, siren = channels["ops-hook"], channels["wecom-duty"], channels["duty-mail"], channels["siren"]
    assert hook.type == "webhook" and hook.format == "generic" and hook.timeout == timedelta(seconds=10)
    assert hook.secret is not None and hook.secret.get_secret_value() == "s3cret"
    assert wecom.type == "webhook" and wecom.format == "wecom" and wecom.language == "zh"
    assert mail.type == "email" and (mail.port, mail.starttls, mail.ssl) == (587, True, False)
    assert mail.to == ["duty@example.com", "值班@example.cn"]
    assert siren.type == "mqtt" and (siren.topic, siren.qos, siren.retain) == ("facility/alerts/siren", 1, True)


def test_channel_secrets_come_from_the_environment() -> None:
    config = load_config(
        TESTDATA / "good-channels.yaml", env={"FACMON_NOTIFICATIONS__CHANNELS__DUTY-MAIL__PASSWORD": "from-env"}
    )
    mail = config.notifications.channels["duty-mail"]
    assert mail.type == "email" and mail.password is not None and mail.password.get_secret_value() == "from-env"


def test_bad_channels_each_reported_at_their_key() -> None:
    found = [p.split(":", 1)[1] for p in problems("bad-channels.yaml")]
    assert found == [
        "7: notifications.channels.ops-hook.url: 'ftp://ops.example.com/facmon': write http://host/path or"
        " https://host/path",
        "9: notifications.channels.ops-hook.secret: a teams webhook has no signing secret: its URL is the secret",
        "13: notifications.channels.duty-mail.sender: 'facmon' is not an e-mail address such as duty@example.com",
        "14: notifications.channels.duty-mail.to: name at least one address to send to",
        "16: notifications.channels.pager.type: 'sms' is not one of 'console', 'webhook', 'email', 'mqtt'",
        "17: notifications.channels.siren.type: required key is missing",
    ]


def test_notification_delivery_settings_are_checked() -> None:
    base = "sites: [{id: s}]\nnotifications: {delivery: %s}\n"
    config = parse_config(base % "{max_attempts: 3, base_delay: 30s, max_delay: 10m}", env={})
    assert config.notifications.delivery.max_attempts == 3
    assert config.notifications.delivery.max_delay == timedelta(minutes=10)
    with pytest.raises(ConfigError) as caught:
        parse_config(base % "{base_delay: 1h, max_delay: 10m}", env={})
    assert "max_delay must not be below base_delay" in str(caught.value)


MINIMAL = "sites: [{id: s, buildings: [{id: b, devices: [{id: p1, type: pump, name: Pump}]}]}]\n"


def test_a_time_of_day_written_without_quotes_is_refused() -> None:
    # YAML reads 8:30 as the sexagesimal number 510: taken as seconds it would be 00:08:30.
    with pytest.raises(ConfigError) as caught:
        parse_config(MINIMAL + "notifications: {daily_summary: 8:30}\n", env={})
    assert 'notifications.daily_summary: write a time of day in quotes, e.g. "09:30"' in str(caught.value)
    config = parse_config(MINIMAL + 'notifications: {daily_summary: "08:30"}\n', env={})
    assert config.notifications.daily_summary == time(8, 30)


def test_the_rejects_section_has_bounded_defaults_and_takes_sizes_with_units() -> None:
    defaults = parse_config(MINIMAL, env={}).ingest.rejects
    assert (defaults.rate, defaults.burst, defaults.max_sources) == (60, 300, 1000)
    assert (defaults.max_payload_bytes, defaults.max_total_bytes) == (4096, 100_000_000)
    assert defaults.retention == timedelta(days=30)
    limits = "{rate: 6, burst: 20, max_payload_bytes: 2KiB, max_total_bytes: 2MB, retention: 7d}"
    text = MINIMAL + f"ingest: {{rejects: {limits}}}\n"
    rejects = parse_config(text, env={"FACMON_INGEST__REJECTS__MAX_TOTAL_BYTES": "1GiB"}).ingest.rejects
    assert (rejects.rate, rejects.burst, rejects.max_payload_bytes) == (6, 20, 2048)
    assert rejects.max_total_bytes == 1024**3
    assert rejects.retention == timedelta(days=7)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{rate: 0}", "ingest.rejects.rate: Input should be greater than 0"),
        ("{burst: 0}", "ingest.rejects.burst: Input should be greater than or equal to 1"),
        ("{max_sources: 5}", "ingest.rejects.max_sources: Input should be greater than or equal to 10"),
        ("{max_payload_bytes: 1MB}", "ingest.rejects.max_payload_bytes: between 256 and 65536 (64KiB), got 1000000"),
        ("{max_payload_bytes: 100}", "ingest.rejects.max_payload_bytes: between 256 and 65536 (64KiB), got 100"),
        ("{max_total_bytes: 10KB}", "ingest.rejects.max_total_bytes: between 1MiB and 1TiB, got 10000"),
        ("{max_total_bytes: lots}", "ingest.rejects.max_total_bytes: 'lots' is not a size such as 4096, 4KiB or 100MB"),
        ("{max_total_bytes: yes}", "ingest.rejects.max_total_bytes: expected a size such as 4096, 4KiB or 100MB"),
        ("{retention: 10m}", "ingest.rejects.retention: at least 1h"),
        ("{retention: forever}", "ingest.rejects.retention: 'forever' is not a duration"),
        ("{keep: all}", "ingest.rejects.keep: unknown key"),
    ],
)
def test_bad_reject_limits_name_their_key(value: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(MINIMAL + f"ingest: {{rejects: {value}}}\n", env={})
    assert len(caught.value.problems) == 1
    assert message in str(caught.value.problems[0])


def test_mqtt_receivers_and_the_addresses_in_topics_are_checked() -> None:
    found = [p.split(":", 1)[1] for p in problems("bad-receivers.yaml")]
    assert found == [
        "16: notifications.channels.pagers.receivers.3.to.1: 'a/b' is not one level of a topic (no '/', '+', '#',"
        " control characters or spaces)",
        "26: notifications.channels.beacon.topic: 'facility/{site}/beacon': {to} is the only placeholder of a"
        " topic, not {site}",
    ]


def test_addresses_and_receivers_of_an_mqtt_channel_must_match() -> None:
    text = (TESTDATA / "bad-receivers.yaml").read_text()
    # The file's schema errors fixed: what is left is found by the checks across sections.
    text = text.replace(', "a/b"', "").replace("facility/{site}/beacon", "facility/beacon")
    with pytest.raises(ConfigError) as caught:
        parse_config(text, env={})
    found = [f"{p.path}: {p.message}" for p in caught.value.problems]
    assert found == [
        "notifications.channels.pagers.receivers.1.id: receiver id 'gw-plant' is already used at sites.0.gateways.0",
        "notifications.channels.pagers.receivers.2: name in `to` whose messages it reads on facility/pagers/{to}"
        " ('all': to everyone)",
        "notifications.channels.pagers.receivers.3.to.0: nobody in oncall.people has the address 'zhang.wie'"
        " on channel pagers",
        "notifications.channels.pagers.receivers.4.id: receiver id 'facmon' is already facmon's own MQTT user",
        "notifications.channels.siren.receivers.0.id: receiver id 'pager-zhang' is already used at"
        " notifications.channels.pagers.receivers.0",
        "notifications.channels.siren.receivers.1.to: the topic facility/alerts/siren has no {to}:"
        " the receiver reads it all",
        "oncall.people.1.contacts.pagers: 'li.na/pager' takes the place of {to} in facility/pagers/{to}: one topic"
        " level, without '/', '+', '#', control characters or spaces",
        "oncall.people.2.contacts.pagers: 'all' is the address of messages to everyone on pagers",
    ]


def test_a_receivers_placeholder_password_is_found_like_a_gateways() -> None:
    text = MINIMAL + (
        "notifications: {channels: {siren: {type: mqtt, topic: facility/alerts/siren,"
        " receivers: [{id: siren-hall, password: change-me}, {id: siren-yard}]}}}\n"
    )
    assert placeholder_secrets(parse_config(text, env={})) == ["notifications.channels.siren.receivers.0.password"]


def test_a_round_robin_shared_subscription_is_refused_while_rules_run() -> None:
    def refused(env: dict[str, str]) -> list[str]:
        with pytest.raises(ConfigError) as caught:
            load_config(EXAMPLE, env=env)
        return [str(p) for p in caught.value.problems if "shared_group" in str(p)]

    [problem] = refused({"FACMON_MQTT__SHARED_GROUP": "ingest"})
    assert "mqtt.shared_group: a shared subscription spreads each device's readings over the processes" in problem
    assert "mqtt.shared_by_topic" in problem
    # A broker that gives each topic to one member keeps a device's readings together.
    by_topic = load_config(EXAMPLE, env={"FACMON_MQTT__SHARED_GROUP": "ingest", "FACMON_MQTT__SHARED_BY_TOPIC": "true"})
    assert by_topic.mqtt.shared_group == "ingest"
    [problem] = refused(
        {
            "FACMON_MQTT__SHARED_GROUP": "ingest",
            "FACMON_MQTT__SHARED_BY_TOPIC": "true",
            "FACMON_CLUSTER__ENABLED": "true",
            "FACMON_STORAGE__STATE_URL": "postgresql://facmon@db/facmon",
        }
    )
    assert "a cluster splits the sites over its workers by partition" in problem
