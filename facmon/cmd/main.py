"""`facmon`: the command line. Exit codes: 0 ok, 1 bad input or config, 2 usage."""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from facmon import __version__
from facmon.cmd.broker import BrokerError
from facmon.facility.errors import ConfigError, FacilityError
from facmon.ingest.errors import IngestError

log = logging.getLogger("facmon")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facmon", description="IoT facility monitoring and alerting.")
    parser.add_argument("--version", action="version", version=f"facmon {__version__}")
    parser.add_argument("--debug", action="store_true", help="debug logging, and tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = commands.add_parser("check-config", help="validate a config file")
    check.add_argument("file", type=Path)

    serve = commands.add_parser("serve", help="run ingest, rules, alerts and the API against a configured broker")
    serve.add_argument("--config", type=Path, required=True)

    demo = commands.add_parser("demo", help="the whole system on embedded defaults, with simulated devices")
    demo.add_argument("--port", type=int, default=8080, help="dashboard and API port (default 8080)")
    demo.add_argument("--data-dir", type=Path, default=Path(".facmon-demo"), help="where the SQLite stores go")
    demo.add_argument("--speed", type=_positive, default=1.0, help="simulated time per real time (default 1)")
    demo.add_argument("--config", type=Path, help="facility config (default: the bundled example)")
    demo.add_argument("--broker", choices=("auto", "mosquitto", "embedded"), default="auto")
    demo.add_argument("--scenario", default="pressure-drop")

    simulate = commands.add_parser("simulate", help="publish simulated telemetry for the configured devices")
    simulate.add_argument("--config", type=Path, required=True)
    simulate.add_argument("--scenario", default="quiet")
    simulate.add_argument("--rate", type=_positive, help="total messages per second (default: each type's interval)")
    simulate.add_argument("--duration", type=_positive, help="stop after this many seconds")
    simulate.add_argument("--speed", type=_positive, default=1.0)
    simulate.add_argument("--seed", type=int, default=1)

    mosquitto = commands.add_parser(
        "mosquitto-config", help="write Mosquitto's password file and ACL for facmon and the configured gateways"
    )
    mosquitto.add_argument("--config", type=Path, required=True)
    mosquitto.add_argument(
        "--out", type=Path, default=Path(), help="directory for passwd and acl (default: the current directory)"
    )
    return parser


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be above 0")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("amqtt", "transitions", "uvicorn.error", "alembic"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if args.debug else logging.WARNING)
    try:
        return _run(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    except (FacilityError, IngestError, BrokerError, OSError, ValueError) as exc:
        if args.debug:
            raise
        print(f"facmon: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


def _run(args: argparse.Namespace) -> int:
    from facmon.facility.config import load_config

    if args.command == "check-config":
        config = load_config(args.file)
        devices = sum(len(b.devices) for s in config.sites for b in s.buildings)
        print(f"{args.file}: ok ({devices} devices in {len(config.sites)} site(s), {len(config.rules)} rules)")
        return 0

    if args.command == "serve":
        from facmon.cmd.service import Service, listen, serve_http

        config = load_config(args.config)
        sock = listen(config.api.host, config.api.port)
        service = Service(config, config_path=args.config)
        try:
            service.start()
            log.info("serving on http://%s:%s/", config.api.host, config.api.port)
            serve_http(service, sock)
        finally:
            service.stop()
            sock.close()
        return 0

    if args.command == "demo":
        from facmon.cmd.demo import run_demo

        run_demo(
            port=args.port,
            data_dir=args.data_dir,
            speed=args.speed,
            config_path=args.config,
            broker_kind=args.broker,
            scenario=args.scenario,
        )
        return 0

    if args.command == "simulate":
        from facmon.simulators.publisher import Simulator

        config = load_config(args.config)
        simulator = Simulator(config, scenario=args.scenario, speed=args.speed, rate=args.rate, seed=args.seed)
        stop = threading.Event()
        try:
            result = simulator.run(stop, duration=args.duration)
        except KeyboardInterrupt:
            stop.set()
            result = None
        published = result.published if result else simulator.published
        rate = f", {result.rate:.0f} msg/s" if result else ""
        print(f"published {published} messages to {config.mqtt.url}{rate}")
        return 0

    if args.command == "mosquitto-config":
        from facmon.cmd.mosquitto_config import write_mosquitto_config

        write_mosquitto_config(load_config(args.config), args.out, config_path=args.config)
        return 0

    raise AssertionError(args.command)
