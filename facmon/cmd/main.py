"""`facmon`: the command line. Exit codes: 0 ok, 1 bad input or config, 2 usage."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from facmon import __version__
from facmon.cmd.broker import BrokerError
from facmon.config.errors import ConfigError
from facmon.facility.errors import FacilityError

if TYPE_CHECKING:
    from facmon.config.facility import FacilityConfig
from facmon.facility.model import Role
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
    demo.add_argument(
        "--scenario",
        metavar="NAME|FILE",
        default="pressure-drop",
        help="a shipped scenario or a scenario file (default pressure-drop); normal operation after its end",
    )

    simulate = commands.add_parser(
        "simulate",
        help="publish simulated telemetry for the configured devices",
        description="Publish simulated telemetry to the configured broker, one MQTT client per gateway. "
        "See docs/simulators.md.",
    )
    simulate.add_argument("--config", type=Path, help="facility config (not with --load)")
    simulate.add_argument(
        "--scenario", metavar="NAME|FILE", help="a shipped scenario or a scenario file (default: normal operation)"
    )
    simulate.add_argument("--list-scenarios", action="store_true", help="list the shipped scenarios and exit")
    simulate.add_argument(
        "--speed", type=_positive, default=1.0, help="simulated time per real time, time stamps too (default 1)"
    )
    simulate.add_argument(
        "--fast", action="store_true", help="send the whole trace at once, ending now, instead of in real time"
    )
    simulate.add_argument("--seed", type=int, default=1, help="the same seed gives the same messages (default 1)")
    simulate.add_argument(
        "--rate",
        type=_not_negative,
        help="total messages per second, round robin over the devices instead of their intervals; 0 = as fast as "
        "possible",
    )
    simulate.add_argument(
        "--duration", type=_positive, help="stop after this many seconds (default: the scenario's end, or never)"
    )
    load = simulate.add_argument_group("load mode", "a synthetic facility instead of --config")
    load.add_argument("--load", action="store_true", help="publish for a synthetic facility of --sites, --devices each")
    load.add_argument("--sites", type=_count, help="sites of the synthetic facility")
    load.add_argument("--devices", type=_count, help="devices per site")
    load.add_argument(
        "--write-config", type=Path, metavar="FILE", help="write the synthetic facility's config and exit"
    )
    load.add_argument("--url", help="broker URL (default mqtt://127.0.0.1:1883)")
    simulate.set_defaults(usage_error=simulate.error)

    # Every user and token action works on the state store a config names.
    with_config = argparse.ArgumentParser(add_help=False)
    with_config.add_argument("--config", type=Path, required=True)
    roles = [r.value for r in Role]

    user = commands.add_parser("user", help="add users, set their passwords, list them")
    user_commands = user.add_subparsers(dest="action", required=True, metavar="ACTION")

    def user_action(name: str, text: str) -> argparse.ArgumentParser:
        action = user_commands.add_parser(name, help=text, parents=[with_config])
        action.add_argument("username")
        return action

    user_add = user_action("add", "add a user; the password is asked for, or read from stdin")
    user_add.add_argument("--role", choices=roles, required=True)
    user_add.add_argument("--name", help="the name shown (default: the username)")
    user_add.add_argument("--password-stdin", action="store_true", help="read the password from stdin, not a prompt")
    user_action("password", "set a user's password (and lift a lockout)").add_argument(
        "--password-stdin", action="store_true"
    )
    user_commands.add_parser("list", help="list the users", parents=[with_config])
    user_action("role", "give a user another role (their sessions end)").add_argument("role", choices=roles)
    user_action("disable", "stop a user signing in (their sessions end)")
    user_action("enable", "let them again")

    token = commands.add_parser("token", help="machine tokens for programs (Prometheus, Grafana, scripts)")
    token_commands = token.add_subparsers(dest="action", required=True, metavar="ACTION")
    token_add = token_commands.add_parser(
        "add", help="make a token; it is printed once and never again", parents=[with_config]
    )
    token_add.add_argument("name")
    token_add.add_argument("--role", choices=roles, required=True)
    token_add.add_argument("--expires", metavar="DURATION", help="e.g. 365d (default: until revoked)")
    token_commands.add_parser(
        "list", help="list the machine tokens (never the tokens themselves)", parents=[with_config]
    )
    token_commands.add_parser("revoke", help="revoke a token by its id", parents=[with_config]).add_argument(
        "id", type=int
    )

    mosquitto = commands.add_parser(
        "mosquitto-config", help="write Mosquitto's password file and ACL for facmon and the configured gateways"
    )
    mosquitto.add_argument("--config", type=Path, required=True)
    mosquitto.add_argument(
        "--out", type=Path, default=Path(), help="directory for passwd and acl (default: the current directory)"
    )
    return parser


def _positive(text: str) -> float:
    return _number(text, lambda v: v > 0, "must be above 0")


def _not_negative(text: str) -> float:
    return _number(text, lambda v: v >= 0, "must be 0 or above")


def _number(text: str, ok: Callable[[float], bool], rule: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"{text!r} {rule}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be 1 or more")
    return value


def _check_simulate(args: argparse.Namespace) -> None:
    """Combinations of `simulate`'s options that argparse cannot express; usage errors, exit 2."""
    error = args.usage_error
    if args.list_scenarios:
        return
    load_only = [name for name in ("sites", "devices", "write_config", "url") if getattr(args, name) is not None]
    if args.load:
        if args.sites is None or args.devices is None:
            error("simulate --load needs --sites and --devices")
        if args.config is not None or args.fast:
            error("simulate --load makes its own facility and paces by --rate: no --config, no --fast")
    elif load_only:
        error(f"--{load_only[0].replace('_', '-')} is for simulate --load")
    elif args.config is None:
        error("simulate needs --config FILE (or --load, or --list-scenarios)")
    if args.fast and args.rate is not None:
        error("--fast and --rate are two ways of pacing: choose one")
    if args.fast and args.scenario is None and args.duration is None:
        error("--fast needs --scenario or --duration: it sends a trace that ends now")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "simulate":
        _check_simulate(args)
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
    from facmon.config.loader import load_config

    if args.command == "check-config":
        config = load_config(args.file)
        _refuse_placeholders(config, args.file)
        devices = sum(len(b.devices) for s in config.sites for b in s.buildings)
        print(f"{args.file}: ok ({devices} devices in {len(config.sites)} site(s), {len(config.rules)} rules)")
        return 0

    if args.command == "serve":
        from facmon.cmd.service import Service, listen, serve_http

        config = load_config(args.config)
        _refuse_placeholders(config, args.config)
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
        return _simulate(args)

    if args.command in ("user", "token"):
        from facmon.cmd.accounts import run_accounts

        return run_accounts(args)

    if args.command == "mosquitto-config":
        from facmon.cmd.mosquitto_config import write_mosquitto_config

        write_mosquitto_config(load_config(args.config), args.out, config_path=args.config)
        return 0

    raise AssertionError(args.command)


def _refuse_placeholders(config: FacilityConfig, path: Path) -> None:
    from facmon.config.checks import placeholder_secrets
    from facmon.config.errors import ConfigProblem

    found = placeholder_secrets(config)
    if found:
        raise ConfigError(
            [
                ConfigProblem(str(path), key, "is a placeholder: set a real secret (only `facmon demo` runs with one)")
                for key in found
            ]
        )


def _simulate(args: argparse.Namespace) -> int:
    from facmon.config.loader import load_config
    from facmon.simulators.load import DEFAULT_URL, facility_config, synthetic_facility, write_config
    from facmon.simulators.publisher import Simulator
    from facmon.simulators.scenario import Scenario, load_scenario, shipped

    if args.list_scenarios:
        scenarios = [load_scenario(name) for name in sorted(shipped())]
        width = max((len(s.name) for s in scenarios), default=0)
        for listed in scenarios:
            first = next(iter(listed.description.strip().splitlines()), "")
            # Descriptions are folded YAML, a paragraph on one line: wrapped under the name's column.
            lines = textwrap.wrap(first, 110 - width) or [""]
            print(f"{listed.name:<{width}}  {lines[0]}")
            for more in lines[1:]:
                print(f"{'':<{width}}  {more}")
        return 0

    if args.load:
        data = synthetic_facility(args.sites, args.devices, url=args.url or DEFAULT_URL)
        if args.write_config is not None:
            write_config(data, args.write_config, command=f"--sites {args.sites} --devices {args.devices}")
            print(
                f"wrote {args.write_config}: {args.sites} site(s) of {args.devices} devices; start "
                f"`facmon serve --config {args.write_config}`, then run the same command without --write-config"
            )
            return 0
        config = facility_config(data)
    else:
        config = load_config(args.config)
    scenario: Scenario | None = load_scenario(args.scenario) if args.scenario is not None else None
    rate = (args.rate or 0.0) if args.load else args.rate
    simulator = Simulator(config, scenario=scenario, speed=args.speed, seed=args.seed, rate=rate, fast=args.fast)
    stop = threading.Event()
    with _stop_on_signals(stop):
        result = simulator.run(stop, duration=args.duration)
    print(f"published {result.published} messages to {config.mqtt.url}, {result.rate:.0f} msg/s")
    return 0


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Ctrl-C and SIGTERM end the run as its end would: gateways say offline, the count is printed."""
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, lambda _sig, _frame: stop.set()) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
