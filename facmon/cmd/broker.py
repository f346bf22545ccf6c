"""An MQTT broker for the demo and the tests: `mosquitto` on a free port when installed, else amqtt in-process."""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Literal, Protocol

log = logging.getLogger(__name__)

BrokerKind = Literal["auto", "mosquitto", "embedded"]


class BrokerError(Exception):
    pass


class Broker(Protocol):
    host: str
    port: int
    kind: str

    @property
    def url(self) -> str: ...

    def stop(self) -> None: ...


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def start_broker(kind: BrokerKind = "auto", port: int | None = None) -> Broker:
    """Start a broker on 127.0.0.1 and return once it accepts connections."""
    binary = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None
    )
    if kind == "mosquitto" or (kind == "auto" and binary):
        if not binary:
            raise BrokerError("mosquitto is not installed (apt-get install mosquitto)")
        return MosquittoBroker(binary, port or free_port())
    return EmbeddedBroker(port or free_port())


def _wait_accepting(host: str, port: int, timeout: float, alive: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            raise BrokerError("the broker exited during start-up")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise BrokerError(f"the broker did not accept connections on {host}:{port} within {timeout:.0f} s")


def _die_with_parent() -> None:
    # Linux: the broker gets SIGTERM when facmon dies, however it dies, so it is never left an orphan.
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class MosquittoBroker:
    kind = "mosquitto"

    def __init__(self, binary: str, port: int, host: str = "127.0.0.1") -> None:
        self.host, self.port = host, port
        self._dir = tempfile.TemporaryDirectory(prefix="facmon-mosquitto-")
        conf = Path(self._dir.name) / "mosquitto.conf"
        conf.write_text(
            f"listener {port} {host}\n"
            "allow_anonymous true\n"
            "persistence false\n"
            # The default of 1000 silently drops QoS 1 messages queued for a slow or absent persistent client.
            "max_queued_messages 0\n"
            "log_dest stderr\n"
            "log_type error\n"
            "log_type warning\n"
        )
        self._log = (Path(self._dir.name) / "mosquitto.log").open("wb")  # closed in stop()
        self._proc = subprocess.Popen(
            [binary, "-c", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            # Its own session: Ctrl-C reaches facmon alone, which stops the broker last, after ingest.
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        try:
            _wait_accepting(host, port, 10, alive=lambda: self._proc.poll() is None)
        except BrokerError as exc:
            self.stop()
            raise BrokerError(f"mosquitto on port {port}: {exc}") from None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        return self._proc.pid

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._log.close()
        self._dir.cleanup()


class EmbeddedBroker:
    """amqtt on its own event loop in a thread: enough for a demo (about 2k msg/s), not for load."""

    kind = "embedded"

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        try:
            from amqtt.broker import Broker as AmqttBroker
        except ImportError:
            raise BrokerError(
                "no mosquitto on PATH and the embedded broker is not installed: "
                "apt-get install mosquitto, or pip install 'facility-monitor[demo]'"
            ) from None
        self.host, self.port = host, port
        self._loop = asyncio.new_event_loop()
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}", "max_connections": 1000}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        started = threading.Event()
        failure: list[BaseException] = []
        holder: list[Any] = []

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            try:
                # Built on its own loop's thread: amqtt makes futures in __init__ on the current loop.
                holder.append(AmqttBroker(config, loop=self._loop))
                self._loop.run_until_complete(holder[0].start())
            except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
                failure.append(exc)
                started.set()
                return
            started.set()
            self._loop.run_forever()

        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self._thread = threading.Thread(target=run, name="facmon-embedded-broker", daemon=True)
        self._thread.start()
        if not started.wait(15):
            raise BrokerError(f"embedded broker on port {port} did not start within 15 s")
        if failure:
            raise BrokerError(f"embedded broker on port {port}: {failure[0]}")
        self._broker = holder[0]

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def stop(self) -> None:
        if self._loop.is_closed():
            return
        try:
            asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop).result(10)
        except Exception as exc:  # noqa: BLE001 - shutting down anyway
            log.debug("embedded broker shutdown: %s", exc)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
