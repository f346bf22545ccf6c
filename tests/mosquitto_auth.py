"""`facmon mosquitto-config` and the broker that loads its files: a real mosquitto with the generated password
file and ACL, and a client that keeps what the broker tells it (CONNACK, SUBACKs, PUBACK reason codes)."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from facmon.cmd.broker import free_port
from tests.waiting import eventually

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
NOT_AUTHORIZED = 0x87


def mosquitto_config(config: Path, out: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the command in a subprocess with only the FACMON_ variables given here."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FACMON_")}
    return subprocess.run(
        [sys.executable, "-m", "facmon", "mosquitto-config", "--config", str(config), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **env},
        check=False,
    )


def generated(stdout: str, kind: str = "gateway") -> dict[str, str]:
    """Account -> password of each `kind` ("gateway", "receiver"), from what the command printed."""
    return dict(re.findall(rf"^{kind} (\S+): (\S+)$", stdout, re.MULTILINE))


def passwd_lines(out: Path) -> dict[str, str]:
    return dict(line.split(":", 1) for line in (out / "passwd").read_text().splitlines())


class AuthBroker:
    """mosquitto on a free loopback port that admits only the users of `passwd` and enforces `acl`."""

    def __init__(self, auth_dir: Path) -> None:
        self.host, self.port = "127.0.0.1", free_port()
        conf = auth_dir / "mosquitto.conf"
        conf.write_text(
            "per_listener_settings false\n"
            "allow_anonymous false\n"
            f"password_file {auth_dir / 'passwd'}\n"
            f"acl_file {auth_dir / 'acl'}\n"
            "persistence false\n"
            # As root it would switch to the "mosquitto" user, which cannot read a 0600 file of ours.
            f"user {pwd.getpwuid(os.getuid()).pw_name}\n"
            f"listener {self.port} {self.host}\n"
            "log_dest stderr\n"
            "log_type all\n"
        )
        self.log = auth_dir / "mosquitto.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
        eventually(self._accepting, timeout=10, what=f"mosquitto accepting on port {self.port}")

    def _accepting(self) -> bool:
        assert self.proc.poll() is None, f"mosquitto exited: {self.log.read_text()}"
        try:
            socket.create_connection((self.host, self.port), timeout=1).close()
        except OSError:
            return False
        return True

    def reload(self) -> None:
        self.proc.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class Client:
    """A paho client that keeps what it is told: its CONNACK, its SUBACKs and the messages it receives."""

    def __init__(
        self,
        broker: AuthBroker,
        user: str,
        password: str,
        will_topic: str | None = None,
        client_id: str | None = None,
        protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv311,
    ) -> None:
        self.connack: ReasonCode | None = None
        self.subacks: dict[int, list[ReasonCode]] = {}
        self.pubacks: dict[int, ReasonCode] = {}
        self.messages: list[tuple[str, bytes]] = []
        self.dropped = False
        self.mqtt = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id or f"test-{uuid.uuid4().hex[:8]}", protocol=protocol
        )
        self.mqtt.username_pw_set(user, password)
        if will_topic:
            self.mqtt.will_set(will_topic, b"offline", qos=1, retain=True)
        self.mqtt.on_connect = self._on_connect
        self.mqtt.on_subscribe = self._on_subscribe
        self.mqtt.on_publish = self._on_publish
        self.mqtt.on_message = self._on_message
        self.mqtt.connect(broker.host, broker.port)
        self.mqtt.loop_start()
        eventually(lambda: self.connack is not None, what=f"CONNACK for {user}")

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: ReasonCode, props: Any) -> None:
        if self.connack is None:
            self.connack = reason_code

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, codes: list[ReasonCode], props: Any) -> None:
        self.subacks[mid] = codes

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason_code: ReasonCode, props: Any) -> None:
        self.pubacks[mid] = reason_code

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.messages.append((message.topic, bytes(message.payload)))

    @property
    def accepted(self) -> bool:
        return self.connack is not None and not self.connack.is_failure

    def subscribe(self, topic: str) -> ReasonCode:
        _, mid = self.mqtt.subscribe(topic, qos=1)
        assert mid is not None
        [code] = eventually(lambda: self.subacks.get(mid, []), what=f"SUBACK for {topic}")
        return code

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> ReasonCode:
        """Publish with QoS 1, wait for the broker's PUBACK (sent even when it drops the message), return its code.

        Under MQTT 3.1.1 the code is always success; under MQTT 5 it says whether the broker took the message.
        """
        info = self.mqtt.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(10)
        eventually(lambda: info.mid in self.pubacks, what=f"PUBACK for {topic}")
        return self.pubacks[info.mid]

    def topics(self) -> list[str]:
        return [topic for topic, _ in self.messages]

    def drop(self) -> None:
        """Lose the connection without a DISCONNECT, as a gateway losing power does: the broker sends the will."""
        self.dropped = True
        self.mqtt.loop_stop()
        sock = self.mqtt.socket()
        assert isinstance(sock, socket.socket)
        sock.close()

    def close(self) -> None:
        if not self.dropped:
            self.mqtt.disconnect()
            self.mqtt.loop_stop()
