"""Pages over the MQTT channel through a real mosquitto that loads the password file and ACL of
`facmon mosquitto-config`: the pager reads its page with its own account, and a page the broker refuses is
dead in the notification log, never `sent`.

The outbox's clock is a `FakeClock`, so retries come when the test moves it, not after a wait.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from paho.mqtt.enums import MQTTProtocolVersion

from facmon.alerts.notifications.channels import MqttNotifier
from facmon.alerts.notifications.outbox import Outbox
from facmon.cmd.service import Service
from facmon.config.facility import FacilityConfig
from facmon.config.loader import load_config
from facmon.config.notifications import MqttChannel
from facmon.facility.model import NotificationState
from facmon.facility.state import StateStore
from tests.conftest import FakeClock
from tests.mosquitto_auth import (
    MOSQUITTO,
    NOT_AUTHORIZED,
    AuthBroker,
    Client,
    generated,
    mosquitto_config,
)
from tests.signing import signed_in
from tests.waiting import eventually

pytestmark = pytest.mark.skipif(not Path(MOSQUITTO).exists(), reason="needs the mosquitto binary")

PREFIX = "acme/facility"
PAGES = f"{PREFIX}/pagers"
T0 = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)

FACILITY = f"""
timezone: Asia/Shanghai
mqtt:
  url: mqtt://127.0.0.1:1883
  username: facmon
  topic_prefix: {PREFIX}
sites:
  - id: north
    gateways:
      - {{id: gw-north-1}}
    buildings:
      - id: main
        devices:
          - {{id: p1, type: pump, name: Pump 1}}
notifications:
  delivery: {{max_attempts: 3, base_delay: 10s}}
  channels:
    pagers:
      type: mqtt
      topic: "{PAGES}/{{to}}"
      timeout: 5s
      receivers:
        - {{id: pager-zhang, name: Zhang Wei's pager, to: zhang.wei}}
        - {{id: pager-li, to: [li.na, all]}}
oncall:
  people:
    - {{id: zhang.wei, name: 张伟, language: zh, contacts: {{pagers: zhang.wei}}}}
    - {{id: li.na, name: 李娜, language: zh, contacts: {{pagers: li.na}}}}
"""


@dataclass
class Site:
    """The facility's config file, its broker with the generated accounts, and the passwords handed out."""

    config_path: Path
    auth_dir: Path
    broker: AuthBroker
    passwords: dict[str, str]

    def config(self, tmp_path: Path, url: str | None = None, **env: str) -> FacilityConfig:
        return load_config(
            self.config_path,
            env={
                "FACMON_MQTT__URL": url or f"mqtt://{self.broker.host}:{self.broker.port}",
                "FACMON_MQTT__PASSWORD": self.passwords["facmon"],
                "FACMON_MQTT__CLIENT_ID": f"facmon-test-{uuid.uuid4().hex[:8]}",
                "FACMON_STORAGE__TELEMETRY__PATH": str(tmp_path / "telemetry.db"),
                "FACMON_STORAGE__SPOOL__PATH": str(tmp_path / "spool.db"),
                "FACMON_STORAGE__STATE_URL": f"sqlite:///{tmp_path / 'state.db'}",
                **env,
            },
        )


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    config_path = tmp_path / "facility.yaml"
    config_path.write_text(FACILITY)
    auth_dir = tmp_path / "mosquitto"
    auth_dir.mkdir()
    result = mosquitto_config(config_path, auth_dir, FACMON_MQTT__PASSWORD="facmon-secret")
    assert result.returncode == 0, result.stderr
    passwords = {"facmon": "facmon-secret", **generated(result.stdout, "receiver")}
    assert set(passwords) == {"facmon", "pager-zhang", "pager-li"}
    broker = AuthBroker(auth_dir)
    yield Site(config_path, auth_dir, broker, passwords)
    broker.stop()


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    made: list[Client] = []
    yield made
    for client in made:
        client.close()


@pytest.fixture
def service(site: Site, tmp_path: Path) -> Iterator[tuple[Service, FakeClock]]:
    """The service, not started, with the channels of its config: its outbox is run by hand on a FakeClock."""
    clock = FakeClock(T0)
    service = Service(site.config(tmp_path), clock=clock)
    yield service, clock
    service.stop()


def queue_page(store: StateStore, person: str, ref: str, at: datetime) -> int:
    with store.begin() as tx:
        row = tx.queue_notification(
            channel="pagers",
            kind="page",
            ref=f"{ref}:{person}",
            language="zh",
            subject=f"{ref} [P1 紧急] 请处理",
            body="设备 p1，供水压力低",
            at=at,
            recipient=person,
            address=person,
        )
    assert row is not None
    return row


def test_a_page_reaches_the_pager_that_logs_in_with_its_own_account_and_is_sent(
    site: Site, service: tuple[Service, FakeClock], clients: list[Client]
) -> None:
    svc, clock = service
    pager = Client(site.broker, "pager-zhang", site.passwords["pager-zhang"], client_id="pager-zhang")
    clients.append(pager)
    assert pager.accepted
    pager.subscribe(f"{PAGES}/#")  # what it may read of that is its own topic

    to_li = queue_page(svc.state, "li.na", "WO-20261122-0001", clock.now())
    to_zhang = queue_page(svc.state, "zhang.wei", "WO-20261122-0001", clock.now())
    assert svc.outbox.deliver_due(clock.now()) == 2

    for row in (to_li, to_zhang):
        sent = svc.state.get_notification(row)
        assert (sent.state, sent.attempts, sent.last_error) == (NotificationState.SENT, 1, None)
    # li.na's page went first: had her topic been readable by this account, her page would be the first here.
    [(topic, payload)] = eventually(lambda: pager.messages, what="the page on zhang.wei's pager")
    assert topic == f"{PAGES}/zhang.wei"
    page = json.loads(payload)
    assert (page["to"], page["subject"]) == ("zhang.wei", "WO-20261122-0001 [P1 紧急] 请处理")
    assert page["id"] == str(to_zhang)  # the outbox row: the same on a retry, so the pager can drop a repeat


def without_facmons_write_grants(site: Site) -> None:
    """What an ACL from before facmon's grants, or edited by hand, does: facmon's account may only read."""
    acl = site.auth_dir / "acl"
    lines = acl.read_text().splitlines(keepends=True)
    acl.write_text("".join(line for line in lines if line != f"topic write {PAGES}/+\n"))
    assert acl.read_text() != "".join(lines)


def test_a_page_the_broker_refuses_is_dead_with_the_reason_and_shows_on_the_dashboard(
    site: Site, service: tuple[Service, FakeClock], clients: list[Client], tmp_path: Path
) -> None:
    svc, clock = service
    pager = Client(site.broker, "pager-zhang", site.passwords["pager-zhang"], client_id="pager-zhang")
    clients.append(pager)
    pager.subscribe(f"{PAGES}/zhang.wei")

    without_facmons_write_grants(site)
    site.broker.reload()

    def facmon_denied() -> bool:
        probe = Client(site.broker, "facmon", site.passwords["facmon"], protocol=MQTTProtocolVersion.MQTTv5)
        clients.append(probe)
        return probe.publish(f"{PAGES}/probe", b"{}").value == NOT_AUTHORIZED

    eventually(facmon_denied, what="the reloaded ACL denying facmon the pagers")

    row = queue_page(svc.state, "zhang.wei", "WO-20261122-0002", clock.now())
    for _ in range(4):  # more rounds than max_attempts: a refusal is not tried again
        svc.outbox.deliver_due(clock.now())
        clock.advance(minutes=10)

    dead = svc.state.get_notification(row)
    assert (dead.state, dead.attempts, dead.sent_at) == (NotificationState.DEAD, 1, None)
    assert dead.last_error == (
        f"{site.broker.host}:{site.broker.port}: the broker refused the message to {PAGES}/zhang.wei:"
        " Not authorized (0x87)"
    )

    api = signed_in(svc, "li.na")
    listed = api.get("/api/v1/notifications?state=dead").json()
    assert listed["total"] == 1
    [item] = listed["items"]
    assert (item["id"], item["channel"], item["state"], item["recipient"], item["address"]) == (
        row,
        "pagers",
        "dead",
        "zhang.wei",
        "zhang.wei",
    )
    assert item["last_error"] == dead.last_error
    assert api.get("/api/v1/notifications?state=sent").json()["total"] == 0

    # The ACL written again by mosquitto-config and reloaded: the next page goes through, the dead one stays dead.
    result = mosquitto_config(site.config_path, site.auth_dir, FACMON_MQTT__PASSWORD="facmon-secret")
    assert result.returncode == 0, result.stderr
    site.broker.reload()
    eventually(lambda: not facmon_denied(), what="the ACL granting facmon the pagers again")
    again = queue_page(svc.state, "zhang.wei", "WO-20261122-0003", clock.now())
    assert svc.outbox.deliver_due(clock.now()) == 1
    assert svc.state.get_notification(again).state is NotificationState.SENT
    assert svc.state.get_notification(row).state is NotificationState.DEAD
    [(_, payload)] = eventually(lambda: pager.messages, what="the page after the fix")
    assert json.loads(payload)["subject"].startswith("WO-20261122-0003 ")  # never the refused one


class AckLosingLink:
    """A TCP relay to the broker that, while `losing`, loses all the broker says after its CONNACK: a network
    that fails in the middle of an exchange. What the client sends always reaches the broker."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.losing = True
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            broker = socket.create_connection(self.upstream)
            self._sockets += [client, broker]
            for pump in (self._requests, self._answers):
                thread = threading.Thread(target=pump, args=(client, broker), daemon=True)
                self._threads.append(thread)
                thread.start()

    def _requests(self, client: socket.socket, broker: socket.socket) -> None:
        with self._ending(client, broker):
            while data := client.recv(65536):
                broker.sendall(data)

    def _answers(self, client: socket.socket, broker: socket.socket) -> None:
        with self._ending(client, broker):
            # The CONNACK passes: a fixed header byte, then its remaining length in one byte (it is small).
            head = b""
            while len(head) < 2 or len(head) < 2 + head[1]:
                if not (data := broker.recv(65536)):
                    return
                head += data
            connack = 2 + head[1]
            client.sendall(head[:connack])
            data = head[connack:]
            while True:
                if data and not self.losing:
                    client.sendall(data)
                if not (data := broker.recv(65536)):
                    return

    @contextlib.contextmanager
    def _ending(self, *sockets: socket.socket) -> Iterator[None]:
        """Either side hanging up, or the link closed, ends the connection both ways."""
        try:
            yield
        except OSError:
            pass
        finally:
            for sock in sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._listener.close()
        for sock in self._sockets:
            sock.close()
        for thread in self._threads:
            thread.join(5)


def test_a_page_whose_acknowledgement_is_lost_is_not_sent_and_is_tried_again(
    site: Site, clients: list[Client], tmp_path: Path
) -> None:
    link = AckLosingLink(site.broker.host, site.broker.port)
    clock = FakeClock(T0)
    config = site.config(tmp_path, url=f"mqtt://127.0.0.1:{link.port}")
    channel = config.notifications.channels["pagers"]
    assert isinstance(channel, MqttChannel)
    pagers = MqttNotifier("pagers", channel.model_copy(update={"timeout": timedelta(seconds=1)}), config.mqtt)
    store = StateStore.open(f"sqlite:///{tmp_path / 'state.db'}")
    pager = Client(site.broker, "pager-zhang", site.passwords["pager-zhang"])
    clients.append(pager)
    pager.subscribe(f"{PAGES}/zhang.wei")
    try:
        outbox = Outbox(store, {"pagers": pagers}, clock, max_attempts=3, jitter=0.0)
        row = queue_page(store, "zhang.wei", "WO-20261122-0004", clock.now())

        assert outbox.deliver_due(clock.now()) == 0
        first = store.get_notification(row)
        assert (first.state, first.attempts, first.sent_at) == (NotificationState.PENDING, 1, None)
        assert first.last_error == f"127.0.0.1:{link.port}: no acknowledgement within 1s"
        # The broker did take it and pass it on: only its answer was lost. Delivery is at least once.
        eventually(lambda: pager.messages, what="the page on the pager")

        link.losing = False
        assert outbox.deliver_due(clock.advance(seconds=10)) == 1
        sent = store.get_notification(row)
        assert (sent.state, sent.attempts) == (NotificationState.SENT, 2)
        eventually(lambda: len(pager.messages) == 2, what="the page again")
    finally:
        store.close()
        link.close()
