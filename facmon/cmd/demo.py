"""`facmon demo`: broker, simulators, ingest, rules, alerts, API and dashboard on embedded defaults."""

from __future__ import annotations

import logging
import math
import os
import secrets
import textwrap
import threading
from importlib.resources import files
from pathlib import Path

from facmon.cmd.broker import BrokerKind, start_broker
from facmon.cmd.service import Service, listen, serve_http
from facmon.config.loader import load_config
from facmon.facility.model import Role
from facmon.simulators.publisher import Simulator
from facmon.simulators.scenario import load_scenario

log = logging.getLogger(__name__)

DEMO_USER = "demo"
DEMO_PASSWORD = "facmon-demo"  # noqa: S105 - the demo's known password, printed at its start


def example_config() -> Path:
    """The example facility: inside the installed package, or in the source checkout."""
    packaged = files("facmon") / "examples" / "facility.yaml"
    if packaged.is_file():
        return Path(str(packaged))
    checkout = Path(__file__).resolve().parents[2] / "examples" / "facility.yaml"
    if checkout.is_file():
        return checkout
    raise FileNotFoundError("the example facility config is missing from this installation")


def run_demo(
    *,
    port: int,
    data_dir: Path,
    speed: float,
    config_path: Path | None = None,
    broker_kind: BrokerKind = "auto",
    scenario: str = "pressure-drop",
    host: str = "127.0.0.1",
) -> None:
    config_path = config_path or example_config()
    # A bad name is reported before anything starts.
    story = load_scenario(scenario)
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    sock = listen(host, port)
    broker = start_broker(broker_kind)
    service: Service | None = None
    stop = threading.Event()
    simulator_thread: threading.Thread | None = None
    try:
        overrides = {
            "FACMON_MQTT__URL": broker.url,
            "FACMON_MQTT__CLIENT_ID": "facmon-demo",
            "FACMON_STORAGE__TELEMETRY__BACKEND": "sqlite",
            "FACMON_STORAGE__TELEMETRY__PATH": str(data_dir / "telemetry.db"),
            "FACMON_STORAGE__SPOOL__PATH": str(data_dir / "spool.db"),
            "FACMON_STORAGE__STATE_URL": f"sqlite:///{data_dir / 'state.db'}",
            "FACMON_API__HOST": host,
            "FACMON_API__PORT": str(port),
            # Pages carry acknowledge links that work while this demo runs.
            "FACMON_API__PUBLIC_URL": f"http://{host}:{port}",
            "FACMON_ONCALL__LINK_SECRET": secrets.token_hex(16),
        }
        config = load_config(config_path, env={**os.environ, **overrides})
        simulator = Simulator(config, scenario=story, speed=speed)  # checks the scenario against the facility
        service = Service(config, config_path=config_path)
        _demo_user(service)
        service.start()
        if not service.wait_connected(10):
            log.warning("ingest has not connected to the broker yet; it keeps trying")
        simulator_thread = threading.Thread(
            target=_simulate, args=(simulator, stop), name="facmon-simulator", daemon=True
        )
        simulator_thread.start()
        print(
            f"facmon demo: {len(service.registry)} devices of {config_path.name}, "
            f"broker {broker.kind} at {broker.url}, data in {data_dir}\n"
            f"  dashboard  http://{host}:{port}/  (sign in as {DEMO_USER} / {DEMO_PASSWORD})\n"
            f"  API docs   http://{host}:{port}/docs\n"
            f"  scenario   {story.name} at {speed:g}x\n{_described(story.description)}"
            "Press Ctrl-C to stop.",
            flush=True,
        )
        serve_http(service, sock)
    finally:
        stop.set()
        if simulator_thread is not None:
            simulator_thread.join(10)
        if service is not None:
            service.stop()
        broker.stop()
        sock.close()
        print("facmon demo stopped.", flush=True)


def _demo_user(service: Service) -> None:
    """The demo's admin, its password printed at the start: a demo on loopback, not a site's sign-in."""
    if service.state.user(DEMO_USER) is None:
        service.accounts.add_user(DEMO_USER, DEMO_PASSWORD, Role.ADMIN, name="Demo admin", at=service.clock.now())


def _described(description: str) -> str:
    """The scenario's description (its first line: folded YAML makes it one paragraph) under the banner's column."""
    first = next(iter(description.strip().splitlines()), "")
    return "".join(
        f"{line}\n" for line in textwrap.wrap(first, 108, initial_indent=" " * 13, subsequent_indent=" " * 13)
    )


def _simulate(simulator: Simulator, stop: threading.Event) -> None:
    try:
        # Past the scenario's end the facility goes on as normal: the dashboard stays alive.
        simulator.run(stop, duration=math.inf)
    except Exception:
        log.exception("the simulator stopped")
