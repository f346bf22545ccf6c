"""`facmon mosquitto-config` as an installer meets it: the files it writes, loaded by a real mosquitto.

Mosquitto 2 drops a publish it does not authorise without telling the MQTT 3.1.1 client, so a denied publish
is proven by a reader that receives the allowed message sent after it and never the denied one. Under MQTT 5
it also says so: the PUBACK's reason code is "Not authorized" (0x87).
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from paho.mqtt.enums import MQTTProtocolVersion

from facmon.cmd.mosquitto_config import check_password, hash_password, write_filter
from facmon.config.notifications import MqttChannel
from tests.mosquitto_auth import (
    MOSQUITTO,
    NOT_AUTHORIZED,
    AuthBroker,
    Client,
    generated,
    mosquitto_config,
    passwd_lines,
)
from tests.waiting import eventually

PREFIX = "acme/facility"  # two levels, so that nothing assumes the default prefix

FACILITY = f"""
mqtt:
  url: mqtt://127.0.0.1:1883
  username: facmon
  topic_prefix: {PREFIX}
sites:
  - id: north
    gateways:
      - {{id: gw-north-1, name: Pump room}}
      - {{id: gw-north-2}}
    buildings:
      - id: main
        devices:
          - {{id: p1, type: pump, name: Pump 1}}
  - id: south
    gateways:
      - {{id: gw-south-1}}
    buildings:
      - id: main
        devices:
          - {{id: p2, type: pump, name: Pump 2}}
"""

# One site, its gateways split by device type as in the example facility, and one gateway without types.
BY_TYPE = f"""
mqtt:
  url: mqtt://127.0.0.1:1883
  username: facmon
  topic_prefix: {PREFIX}
sites:
  - id: north
    gateways:
      - {{id: gw-pump-room, name: Pump room, device_types: [pump, power]}}
      - {{id: gw-fire-panel, name: Fire panel, device_types: smoke}}
      - {{id: gw-north-other}}
    buildings:
      - id: main
        devices:
          - {{id: p1, type: pump, name: Pump 1}}
          - {{id: s1, type: smoke, name: Smoke detector 1}}
          - {{id: s2, type: smoke, name: Smoke detector 2}}
          - {{id: lift-1, type: elevator, name: Lift 1}}
"""

# facmon's pagers, one topic per person, and a siren on a topic of its own; each device with an account.
PAGERS = (
    FACILITY
    + f"""
notifications:
  channels:
    pagers:
      type: mqtt
      topic: "{PREFIX}/pagers/{{to}}"
      receivers:
        - {{id: pager-zhang, name: Zhang Wei's pager, to: zhang.wei}}
        - {{id: pager-li, to: [li.na, all]}}
    siren:
      type: mqtt
      topic: {PREFIX}/alerts/siren
      receivers:
        - {{id: siren-hall, name: Siren in the hall}}
oncall:
  people:
    - {{id: zhang.wei, name: Zhang Wei, contacts: {{pagers: zhang.wei}}}}
    - {{id: li.na, name: Li Na, contacts: {{pagers: li.na, siren: ""}}}}
"""
)

pytestmark = pytest.mark.skipif(not Path(MOSQUITTO).exists(), reason="needs the mosquitto binary")


@pytest.fixture
def facility(tmp_path: Path) -> Path:
    path = tmp_path / "facility.yaml"
    path.write_text(FACILITY)
    return path


@pytest.fixture
def out(tmp_path: Path) -> Path:
    path = tmp_path / "mosquitto"
    path.mkdir()
    return path


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    made: list[Client] = []
    yield made
    for client in made:
        client.close()


@pytest.fixture
def configured(facility: Path, out: Path) -> Iterator[tuple[AuthBroker, dict[str, str]]]:
    """Files written with facmon's and gw-north-2's passwords from the environment, loaded by a broker."""
    result = mosquitto_config(
        facility,
        out,
        FACMON_MQTT__PASSWORD="facmon-secret",
        FACMON_SITES__0__GATEWAYS__1__PASSWORD="north-2-secret",
    )
    assert result.returncode == 0, result.stderr
    passwords = {"facmon": "facmon-secret", "gw-north-2": "north-2-secret", **generated(result.stdout)}
    assert set(passwords) == {"facmon", "gw-north-1", "gw-north-2", "gw-south-1"}
    broker = AuthBroker(out)
    yield broker, passwords
    broker.stop()


def test_writes_a_0600_password_file_in_mosquitto_2_format_and_an_acl(facility: Path, out: Path) -> None:
    result = mosquitto_config(facility, out, FACMON_SITES__0__GATEWAYS__1__PASSWORD="north-2-secret")

    assert result.returncode == 0, result.stderr
    assert (out / "passwd").stat().st_mode & 0o777 == 0o600
    entries = passwd_lines(out)
    assert list(entries) == ["facmon", "gw-north-1", "gw-north-2", "gw-south-1"]
    assert all(re.fullmatch(r"\$7\$101\$[A-Za-z0-9+/]{16}\$[A-Za-z0-9+/]{86}==", h) for h in entries.values())
    assert check_password("north-2-secret", entries["gw-north-2"])
    printed = generated(result.stdout)
    assert set(printed) == {"gw-north-1", "gw-south-1"}
    assert all(len(password) >= 32 for password in printed.values())
    assert check_password(printed["gw-south-1"], entries["gw-south-1"])
    assert "will not be shown again" in result.stdout
    assert re.search(r"^user facmon: \S+ \(facmon's own: set it as FACMON_MQTT__PASSWORD\)$", result.stdout, re.M)

    # Who reads whose pages is no one else's business; Mosquitto 2.0.17 and later warn about a world-readable ACL.
    assert (out / "acl").stat().st_mode & 0o777 == 0o600
    acl = (out / "acl").read_text()
    assert acl.startswith("# Mosquitto ACL generated from the facility config by\n#   facmon mosquitto-config ")
    rules = [line for line in acl.splitlines() if line and not line.startswith("#")]
    assert rules == [
        "user facmon",
        f"topic read {PREFIX}/#",
        # Gateways without device_types serve their site's devices: pumps, the only type there.
        "user gw-north-1",
        f"topic write {PREFIX}/north/pump/+/telemetry",
        f"topic write {PREFIX}/north/gateway/gw-north-1/status",
        "user gw-north-2",
        f"topic write {PREFIX}/north/pump/+/telemetry",
        f"topic write {PREFIX}/north/gateway/gw-north-2/status",
        "user gw-south-1",
        f"topic write {PREFIX}/south/pump/+/telemetry",
        f"topic write {PREFIX}/south/gateway/gw-south-1/status",
    ]
    [warning] = [line for line in result.stderr.splitlines() if line.startswith("facmon: warning:")]
    assert warning.startswith("facmon: warning: mqtt.url is mqtt://127.0.0.1:1883, not mqtts://")


def test_each_gateway_may_write_only_the_telemetry_of_the_device_types_it_serves(tmp_path: Path, out: Path) -> None:
    facility = tmp_path / "facility.yaml"
    facility.write_text(BY_TYPE)
    result = mosquitto_config(facility, out, FACMON_MQTT__URL="mqtts://127.0.0.1:8883")
    assert result.returncode == 0, result.stderr

    acl = (out / "acl").read_text()
    assert "\n# Pump room, site north: pump, power telemetry, its own status and will.\n" in acl
    rules = [line for line in acl.splitlines() if line and not line.startswith("#")]
    assert rules == [
        "user facmon",
        f"topic read {PREFIX}/#",  # facmon's own account is left as it was
        "user gw-pump-room",
        f"topic write {PREFIX}/north/pump/+/telemetry",
        f"topic write {PREFIX}/north/power/+/telemetry",
        f"topic write {PREFIX}/north/gateway/gw-pump-room/status",
        "user gw-fire-panel",
        f"topic write {PREFIX}/north/smoke/+/telemetry",
        f"topic write {PREFIX}/north/gateway/gw-fire-panel/status",
        # No types of its own: the site's devices that no other gateway serves, the lift.
        "user gw-north-other",
        f"topic write {PREFIX}/north/elevator/+/telemetry",
        f"topic write {PREFIX}/north/gateway/gw-north-other/status",
    ]
    assert "facmon: warning:" not in result.stderr


def test_a_gateway_left_with_no_device_type_keeps_only_its_status_and_is_warned_about(
    tmp_path: Path, out: Path
) -> None:
    facility = tmp_path / "facility.yaml"
    facility.write_text(BY_TYPE.replace("          - {id: lift-1, type: elevator, name: Lift 1}\n", ""))
    result = mosquitto_config(facility, out, FACMON_MQTT__URL="mqtts://127.0.0.1:8883")
    assert result.returncode == 0, result.stderr

    acl = (out / "acl").read_text()
    assert "\n# gw-north-other, site north: no device type, its own status and will.\n" in acl
    rules = [line for line in acl.splitlines() if line and not line.startswith("#")]
    assert rules[-2:] == ["user gw-north-other", f"topic write {PREFIX}/north/gateway/gw-north-other/status"]
    assert [line for line in result.stderr.splitlines() if line.startswith("facmon: warning:")] == [
        "facmon: warning: gateway gw-north-other of site north may publish no telemetry: "
        "give it device_types, or add devices that no other gateway of its site serves"
    ]


def test_a_line_break_in_a_gateway_name_cannot_add_a_rule(facility: Path, out: Path) -> None:
    facility.write_text(FACILITY.replace("name: Pump room}", 'name: "Pump room\\ntopic write #"}'))
    result = mosquitto_config(facility, out)
    assert result.returncode == 0, result.stderr
    acl = (out / "acl").read_text()
    assert "topic write #" not in acl.splitlines()
    assert "# Pump room topic write #, site north: pump telemetry, its own status and will." in acl.splitlines()


def test_no_clear_text_warning_with_tls(facility: Path, out: Path) -> None:
    result = mosquitto_config(facility, out, FACMON_MQTT__URL="mqtts://broker.example:8883")
    assert result.returncode == 0, result.stderr
    assert "facmon: warning:" not in result.stderr


def test_the_hash_is_the_one_mosquitto_passwd_writes(tmp_path: Path) -> None:
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        pytest.skip("mosquitto_passwd is not installed")
    subprocess.run([tool, "-c", "-b", str(tmp_path / "p"), "alice", "s3cret:with colon"], check=True)
    _, theirs = (tmp_path / "p").read_text().strip().split(":", 1)
    salt = base64.b64decode(theirs.split("$")[3])
    assert hash_password("s3cret:with colon", salt=salt) == theirs
    assert check_password("s3cret:with colon", theirs)
    assert not check_password("s3cret", theirs)


def test_gateway_publishes_its_sites_telemetry_status_and_will_which_facmon_receives(
    configured: tuple[AuthBroker, dict[str, str]], clients: list[Client]
) -> None:
    broker, passwords = configured
    facmon = Client(broker, "facmon", passwords["facmon"])
    clients.append(facmon)
    assert facmon.accepted
    assert not facmon.subscribe(f"{PREFIX}/#").is_failure

    status, telemetry = f"{PREFIX}/north/gateway/gw-north-2/status", f"{PREFIX}/north/pump/p1/telemetry"
    gateway = Client(broker, "gw-north-2", passwords["gw-north-2"], will_topic=status, client_id="gw-north-2")
    clients.append(gateway)
    assert gateway.accepted, gateway.connack  # its password came from the environment
    gateway.publish(status, b"online", retain=True)
    gateway.publish(telemetry, b'{"pressure_bar": 4.1}')
    eventually(lambda: len(facmon.messages) == 2, what="facmon receives status and telemetry")

    gateway.drop()
    # The broker has sent the old connection's will at the latest when the same client id connects again.
    back = Client(broker, "gw-north-2", passwords["gw-north-2"], client_id="gw-north-2")
    clients.append(back)
    back.publish(telemetry, b'{"pressure_bar": 4.2}')
    eventually(lambda: len(facmon.messages) == 4, what="facmon receives the will and the next reading")
    assert facmon.messages == [
        (status, b"online"),
        (telemetry, b'{"pressure_bar": 4.1}'),
        (status, b"offline"),
        (telemetry, b'{"pressure_bar": 4.2}'),
    ]

    generated_one = Client(broker, "gw-south-1", passwords["gw-south-1"])  # a generated password works too
    clients.append(generated_one)
    assert generated_one.accepted


def test_gateway_cannot_publish_for_another_site_or_another_gateway(
    configured: tuple[AuthBroker, dict[str, str]], clients: list[Client]
) -> None:
    broker, passwords = configured
    facmon = Client(broker, "facmon", passwords["facmon"])
    clients.append(facmon)
    facmon.subscribe(f"{PREFIX}/#")
    neighbour_status = f"{PREFIX}/north/gateway/gw-north-2/status"
    gateway = Client(broker, "gw-north-1", passwords["gw-north-1"], will_topic=neighbour_status, client_id="gw-north-1")
    clients.append(gateway)

    for forbidden in (
        f"{PREFIX}/south/pump/p2/telemetry",  # another site's device
        f"{PREFIX}/south/gateway/gw-north-1/status",  # its status under another site
        neighbour_status,
        f"{PREFIX}/north/pump/p1/command",  # not telemetry
    ):
        gateway.publish(forbidden, b"forged")
    gateway.drop()  # and its will, on its neighbour's status, is not sent either
    back = Client(broker, "gw-north-1", passwords["gw-north-1"], client_id="gw-north-1")
    clients.append(back)
    allowed = f"{PREFIX}/north/pump/p1/telemetry"
    back.publish(allowed, b'{"pressure_bar": 4.0}')

    eventually(lambda: facmon.messages, what="facmon receives the allowed message")
    assert facmon.topics() == [allowed]


@pytest.fixture
def by_type(tmp_path: Path, out: Path) -> Iterator[tuple[AuthBroker, dict[str, str]]]:
    """BY_TYPE's files, with facmon's password from the environment and the gateways' generated, loaded by a broker."""
    facility = tmp_path / "facility.yaml"
    facility.write_text(BY_TYPE)
    result = mosquitto_config(facility, out, FACMON_MQTT__PASSWORD="facmon-secret")
    assert result.returncode == 0, result.stderr
    passwords = {"facmon": "facmon-secret", **generated(result.stdout)}
    broker = AuthBroker(out)
    yield broker, passwords
    broker.stop()


def test_the_pump_room_gateway_cannot_speak_for_the_smoke_detectors(
    by_type: tuple[AuthBroker, dict[str, str]], clients: list[Client]
) -> None:
    broker, passwords = by_type
    facmon = Client(broker, "facmon", passwords["facmon"])
    clients.append(facmon)
    assert not facmon.subscribe(f"{PREFIX}/#").is_failure  # reads everything

    mqtt5 = MQTTProtocolVersion.MQTTv5
    pump_room = Client(broker, "gw-pump-room", passwords["gw-pump-room"], protocol=mqtt5)
    fire_panel = Client(broker, "gw-fire-panel", passwords["gw-fire-panel"], protocol=mqtt5)
    clients += [pump_room, fire_panel]
    assert pump_room.accepted and fire_panel.accepted

    smoke, pump = f"{PREFIX}/north/smoke/s1/telemetry", f"{PREFIX}/north/pump/p1/telemetry"
    # What a stolen pump-room password would be used for: all clear from a detector in alarm.
    forged = pump_room.publish(smoke, b'{"state": "normal"}')
    assert forged.value == NOT_AUTHORIZED, forged
    assert pump_room.publish(f"{PREFIX}/north/elevator/lift-1/telemetry", b'{"state": "idle"}').value == NOT_AUTHORIZED
    assert fire_panel.publish(pump, b'{"pressure_bar": 9.9}').value == NOT_AUTHORIZED
    assert not pump_room.publish(pump, b'{"pressure_bar": 4.1}').is_failure
    assert not pump_room.publish(f"{PREFIX}/north/gateway/gw-pump-room/status", b"online").is_failure
    assert not fire_panel.publish(smoke, b'{"state": "alarm"}').is_failure

    # The broker took each publish before the next was sent and forwards in that order: a denied message that
    # got through would be among the first three facmon receives.
    eventually(lambda: len(facmon.messages) >= 3, what="facmon receives the three allowed messages")
    assert facmon.messages[:3] == [
        (pump, b'{"pressure_bar": 4.1}'),
        (f"{PREFIX}/north/gateway/gw-pump-room/status", b"online"),
        (smoke, b'{"state": "alarm"}'),
    ]


def test_gateway_reads_nothing(configured: tuple[AuthBroker, dict[str, str]], clients: list[Client]) -> None:
    broker, passwords = configured
    facmon = Client(broker, "facmon", passwords["facmon"])
    clients.append(facmon)
    facmon.subscribe(f"{PREFIX}/#")
    writer = Client(broker, "gw-north-2", passwords["gw-north-2"])
    clients.append(writer)
    writer.publish(f"{PREFIX}/north/gateway/gw-north-2/status", b"online", retain=True)

    reader = Client(broker, "gw-north-1", passwords["gw-north-1"])
    clients.append(reader)
    # Mosquitto 2.0 grants the subscriptions and then withholds every message, retained ones included.
    for topic in ("#", f"{PREFIX}/#", f"{PREFIX}/north/+/+/telemetry", f"{PREFIX}/north/gateway/+/status"):
        reader.subscribe(topic)
    writer.publish(f"{PREFIX}/north/pump/p1/telemetry", b'{"pressure_bar": 4.0}')
    eventually(lambda: len(facmon.messages) == 2, what="facmon receives the status and the reading")
    # Whatever the broker had sent the reader by now arrives before the acknowledgement of its next publish.
    reader.publish(f"{PREFIX}/north/pump/p1/telemetry", b'{"pressure_bar": 4.0}')
    assert reader.messages == []


def test_wrong_password_or_unknown_user_is_refused(
    configured: tuple[AuthBroker, dict[str, str]], clients: list[Client]
) -> None:
    broker, passwords = configured
    for user, password in (
        ("gw-north-1", "guess"),
        ("gw-north-1", passwords["gw-north-2"]),
        ("facmon", passwords["gw-north-1"]),
        ("gw-nowhere", "guess"),
    ):
        client = Client(broker, user, password)
        clients.append(client)
        assert not client.accepted, (user, client.connack)
    right = Client(broker, "gw-north-1", passwords["gw-north-1"])
    clients.append(right)
    assert right.accepted


def test_rerun_keeps_given_passwords_and_generates_only_for_a_new_gateway(
    facility: Path, out: Path, clients: list[Client]
) -> None:
    first = mosquitto_config(facility, out, FACMON_MQTT__PASSWORD="facmon-secret")
    assert first.returncode == 0, first.stderr
    given = generated(first.stdout)
    before = passwd_lines(out)
    broker = AuthBroker(out)
    try:
        # An installer adds a gateway to the south site; gw-north-2 is taken out of service.
        facility.write_text(
            FACILITY.replace("      - {id: gw-north-2}\n", "").replace(
                "      - {id: gw-south-1}\n", "      - {id: gw-south-1}\n      - {id: gw-south-2}\n"
            )
        )
        second = mosquitto_config(facility, out, FACMON_MQTT__PASSWORD="facmon-secret")
        assert second.returncode == 0, second.stderr
        assert list(generated(second.stdout)) == ["gw-south-2"]
        after = passwd_lines(out)
        assert list(after) == ["facmon", "gw-north-1", "gw-south-1", "gw-south-2"]
        assert {user: after[user] for user in ("facmon", "gw-north-1", "gw-south-1")} == {
            user: before[user] for user in ("facmon", "gw-north-1", "gw-south-1")
        }
        assert f"facmon: removed user 'gw-north-2' from {out / 'passwd'}: it is not in the config" in second.stderr

        broker.reload()  # what the operator does: kill -HUP
        new_password = generated(second.stdout)["gw-south-2"]

        def new_gateway_admitted() -> bool:
            client = Client(broker, "gw-south-2", new_password)
            clients.append(client)
            return client.accepted

        eventually(new_gateway_admitted, what="the new gateway admitted after the reload")
        kept = Client(broker, "gw-north-1", given["gw-north-1"])
        clients.append(kept)
        assert kept.accepted
        removed = Client(broker, "gw-north-2", given["gw-north-2"])
        clients.append(removed)
        assert not removed.accepted
    finally:
        broker.stop()

    inode = (out / "passwd").stat().st_ino
    third = mosquitto_config(facility, out, FACMON_MQTT__PASSWORD="facmon-secret")
    assert third.returncode == 0 and third.stdout == ""
    assert "are up to date" in third.stderr
    assert (out / "passwd").stat().st_ino == inode

    rotated = mosquitto_config(facility, out, FACMON_MQTT__PASSWORD="facmon-new-secret")
    assert "facmon: new password for user facmon from mqtt.password" in rotated.stderr
    assert check_password("facmon-new-secret", passwd_lines(out)["facmon"])
    assert {k: v for k, v in passwd_lines(out).items() if k != "facmon"} == {
        k: v for k, v in after.items() if k != "facmon"
    }


def test_missing_mqtt_username_is_exit_1_with_one_line(facility: Path, out: Path) -> None:
    facility.write_text(FACILITY.replace("  username: facmon\n", ""))
    result = mosquitto_config(facility, out)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "facmon: error: mqtt.username is not set: mosquitto-config needs facmon's own broker user "
        "(set it in the config or as FACMON_MQTT__USERNAME)"
    ]
    assert list(out.iterdir()) == []


def test_empty_password_from_the_environment_is_exit_1(facility: Path, out: Path) -> None:
    result = mosquitto_config(facility, out, FACMON_SITES__1__GATEWAYS__0__PASSWORD="")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "facmon: error: sites.1.gateways.0.password is empty: leave it unset to keep or generate a password"
    ]
    assert list(out.iterdir()) == []


def test_a_corrupt_password_file_is_exit_1_and_left_alone(facility: Path, out: Path) -> None:
    (out / "passwd").write_text("facmon:$7$101$abc$def\nnot an entry\n")
    result = mosquitto_config(facility, out)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"facmon: error: {out / 'passwd'}:2: not a 'user:hash' line of a Mosquitto password file"
    ]
    assert (out / "passwd").read_text() == "facmon:$7$101$abc$def\nnot an entry\n"
    assert not (out / "acl").exists()


def test_simulated_gateways_publish_with_their_own_accounts(
    facility: Path, configured: tuple[AuthBroker, dict[str, str]], clients: list[Client]
) -> None:
    import threading

    from facmon.config.loader import load_config
    from facmon.simulators.publisher import Simulator

    broker, passwords = configured
    facmon = Client(broker, "facmon", passwords["facmon"])
    clients.append(facmon)
    assert not facmon.subscribe(f"{PREFIX}/#").is_failure
    config = load_config(
        facility,
        env={
            "FACMON_MQTT__URL": f"mqtt://{broker.host}:{broker.port}",
            # facmon's own account may only read: each gateway logs in as itself.
            **{
                f"FACMON_SITES__{s}__GATEWAYS__{g}__PASSWORD": passwords[gw]
                for s, g, gw in ((0, 0, "gw-north-1"), (0, 1, "gw-north-2"), (1, 0, "gw-south-1"))
            },
        },
    )
    result = Simulator(config, fast=True).run(threading.Event(), duration=60)
    assert result.published > 0
    eventually(
        lambda: (
            {f"{PREFIX}/north/pump/p1/telemetry", f"{PREFIX}/south/pump/p2/telemetry"}
            <= {t for t, _ in facmon.messages}
        ),
        what="both sites' telemetry through the ACL",
    )


# ---------------------------------------------------------------------------------------------------------------
# Notification channels: facmon publishes to their topics, each receiver reads its own


@pytest.fixture
def pagers(tmp_path: Path, out: Path) -> Path:
    path = tmp_path / "facility.yaml"
    path.write_text(PAGERS)
    return path


def test_facmon_may_write_its_channels_topics_and_each_receiver_read_its_own(pagers: Path, out: Path) -> None:
    result = mosquitto_config(
        pagers,
        out,
        FACMON_MQTT__URL="mqtts://127.0.0.1:8883",
        FACMON_NOTIFICATIONS__CHANNELS__PAGERS__RECEIVERS__0__PASSWORD="zhang-secret",
    )
    assert result.returncode == 0, result.stderr
    assert "facmon: warning:" not in result.stderr

    assert (out / "acl").stat().st_mode & 0o777 == 0o600
    acl = (out / "acl").read_text()
    rules = [line for line in acl.splitlines() if line and not line.startswith("#")]
    assert rules == [
        "user facmon",
        f"topic read {PREFIX}/#",
        f"topic write {PREFIX}/pagers/+",  # {to}: one pager's topic each, and .../all
        f"topic write {PREFIX}/alerts/siren",
        # The gateways are left as they were.
        "user gw-north-1",
        f"topic write {PREFIX}/north/pump/+/telemetry",
        f"topic write {PREFIX}/north/gateway/gw-north-1/status",
        "user gw-north-2",
        f"topic write {PREFIX}/north/pump/+/telemetry",
        f"topic write {PREFIX}/north/gateway/gw-north-2/status",
        "user gw-south-1",
        f"topic write {PREFIX}/south/pump/+/telemetry",
        f"topic write {PREFIX}/south/gateway/gw-south-1/status",
        "user pager-zhang",
        f"topic read {PREFIX}/pagers/zhang.wei",
        "user pager-li",
        f"topic read {PREFIX}/pagers/li.na",
        f"topic read {PREFIX}/pagers/all",
        "user siren-hall",
        f"topic read {PREFIX}/alerts/siren",
    ]
    assert "\n# Zhang Wei's pager, receiver of channel pagers: reads the messages to zhang.wei.\n" in acl
    assert "\n# Siren in the hall, receiver of channel siren: reads its messages.\n" in acl

    entries = passwd_lines(out)
    assert list(entries)[4:] == ["pager-zhang", "pager-li", "siren-hall"]  # after facmon and the gateways
    assert check_password("zhang-secret", entries["pager-zhang"])
    printed = generated(result.stdout, "receiver")
    assert set(printed) == {"pager-li", "siren-hall"}  # pager-zhang's came from the environment
    assert check_password(printed["siren-hall"], entries["siren-hall"])


@pytest.fixture
def paging(pagers: Path, out: Path) -> Iterator[tuple[AuthBroker, dict[str, str]]]:
    """PAGERS's files with facmon's password from the environment and the rest generated, loaded by a broker."""
    result = mosquitto_config(pagers, out, FACMON_MQTT__PASSWORD="facmon-secret")
    assert result.returncode == 0, result.stderr
    passwords = {"facmon": "facmon-secret", **generated(result.stdout), **generated(result.stdout, "receiver")}
    broker = AuthBroker(out)
    yield broker, passwords
    broker.stop()


def test_a_pager_reads_only_its_own_pages_and_facmon_writes_nothing_else(
    paging: tuple[AuthBroker, dict[str, str]], clients: list[Client]
) -> None:
    broker, passwords = paging
    mqtt5 = MQTTProtocolVersion.MQTTv5
    facmon = Client(broker, "facmon", passwords["facmon"], protocol=mqtt5)
    zhang = Client(broker, "pager-zhang", passwords["pager-zhang"], protocol=mqtt5)
    siren = Client(broker, "siren-hall", passwords["siren-hall"])
    clients += [facmon, zhang, siren]
    assert facmon.accepted and zhang.accepted and siren.accepted
    zhang.subscribe(f"{PREFIX}/#")  # granted, and then only its own topic's messages are delivered
    siren.subscribe(f"{PREFIX}/alerts/siren")

    to_li, to_zhang = f"{PREFIX}/pagers/li.na", f"{PREFIX}/pagers/zhang.wei"
    assert not facmon.publish(to_li, b'{"to": "li.na"}').is_failure
    assert not facmon.publish(f"{PREFIX}/pagers/all", b'{"subject": "WO-1"}').is_failure
    assert not facmon.publish(to_zhang, b'{"to": "zhang.wei"}').is_failure
    assert not facmon.publish(f"{PREFIX}/alerts/siren", b'{"subject": "fire"}').is_failure
    # What facmon's password cannot be used for: telemetry, and topics one level below a pager's.
    assert facmon.publish(f"{PREFIX}/north/pump/p1/telemetry", b'{"pressure_bar": 9.9}').value == NOT_AUTHORIZED
    assert facmon.publish(f"{to_zhang}/extra", b"{}").value == NOT_AUTHORIZED
    # And a pager's: a page of its own making.
    assert zhang.publish(to_zhang, b'{"subject": "all clear"}').value == NOT_AUTHORIZED

    eventually(lambda: zhang.messages and siren.messages, what="the pager's page and the siren's message")
    # The broker forwards in the order it took them: li.na's page and the broadcast, had they got through,
    # would have come first; the pager's own page, had it got through, after.
    facmon.publish(to_zhang, b'{"to": "zhang.wei", "n": 2}')
    eventually(lambda: len(zhang.messages) == 2, what="the second page")
    assert zhang.messages == [(to_zhang, b'{"to": "zhang.wei"}'), (to_zhang, b'{"to": "zhang.wei", "n": 2}')]
    assert siren.messages == [(f"{PREFIX}/alerts/siren", b'{"subject": "fire"}')]


def test_what_no_receiver_reads_is_warned_about(tmp_path: Path, out: Path) -> None:
    facility = tmp_path / "facility.yaml"
    facility.write_text(
        PAGERS.replace("        - {id: pager-li, to: [li.na, all]}\n", "").replace(
            "      receivers:\n        - {id: siren-hall, name: Siren in the hall}\n", ""
        )
    )
    result = mosquitto_config(facility, out, FACMON_MQTT__URL="mqtts://127.0.0.1:8883")
    assert result.returncode == 0, result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("facmon: warning:")] == [
        f"facmon: warning: no receiver of channel pagers reads the pages to li.na ({PREFIX}/pagers/li.na)",
        f"facmon: warning: no receiver of channel pagers reads its messages to everyone ({PREFIX}/pagers/all)",
        f"facmon: warning: notification channel siren has no receivers: no device's account may read "
        f"{PREFIX}/alerts/siren (give the channel its receivers)",
    ]
    rules = [line for line in (out / "acl").read_text().splitlines() if line and not line.startswith("#")]
    assert rules[:4] == [  # facmon may publish all the same: the broker keeps what no device reads for nobody
        "user facmon",
        f"topic read {PREFIX}/#",
        f"topic write {PREFIX}/pagers/+",
        f"topic write {PREFIX}/alerts/siren",
    ]


@pytest.mark.parametrize(
    ("topic", "grant"),
    [
        ("facility/pagers/{to}", "facility/pagers/+"),
        ("facility/{to}/pager", "facility/+/pager"),
        ("{to}", "+"),
        ("facility/pager-{to}/inbox", "facility/+/inbox"),  # a filter has no wildcard for part of a level
        ("facility/{to}/pagers/{to}", "facility/+/pagers/+"),
        ("facility/alerts/siren", "facility/alerts/siren"),
    ],
)
def test_each_level_with_to_is_a_single_level_wildcard_in_facmons_grant(topic: str, grant: str) -> None:
    assert write_filter(MqttChannel(type="mqtt", topic=topic)) == grant
