"""Alarm latency: from a gateway's publish to the alarm change leaving facmon's rule engine.

What is timed: `time.perf_counter_ns()` just before a probe client publishes a pump reading (QoS 1) to a real
mosquitto, until a listener in `service.rules.listeners` receives the resulting AlarmChange. In between lie the
broker, the service's MQTT session, the ingest thread (decode, SQLite telemetry write, presence), the rule
engine and the alarm's commit to the SQLite state store. The service runs in this process on the example
facility, with its stores in a temp dir and the work-order policy without notifiers.

The probe sends pump-2 `pressure_bar` 2.9 (raises pump-pressure-low, major) and 3.5 (returns it, past the 2 %
deadband) in turn, each with its own `ts`, and waits for each change before the next probe, so no probe queues
behind another. The step of 0.6 bar stays under the example's burst-pipe rule (a fall of 1 bar in 30 s); whatever
else the same reading changes would be committed in the same batch, inside the timed span, and is counted in the
output.

Two phases: "idle", with no other traffic, and "load", with background telemetry from `facmon simulate`
(normal operation, no scenario) in a separate process, so that it does not share this process's GIL. Timing
under load starts once the rules' history windows are full. A probe without an answer within `--timeout` ends
the load phase early; the figures then cover the probes that finished, and the ingest rate shows how far the
service fell behind.

Prints one JSON object; times are in milliseconds. `make bench` runs it; `--smoke` runs the same in seconds;
`--help` lists the options.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import queue
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from facmon.cmd.broker import Broker, BrokerError, start_broker
from facmon.cmd.service import Service, sigterm_as_interrupt
from facmon.config.errors import ConfigError
from facmon.config.loader import load_config
from facmon.rules.processor import AlarmChange

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "facility.yaml"
SITE, DEVICE, RULE = "riverside", "pump-2", "pump-pressure-low"
TOPIC = f"facility/{SITE}/pump/{DEVICE}/telemetry"
LOW_BAR, NORMAL_BAR = 2.9, 3.5  # below the major limit (3.0 bar), and back above it past the deadband
RAISES = frozenset({"raised", "reactivated"})  # a new alarm, or the returned-unacknowledged one coming back
RETURNS = frozenset({"returned", "cleared"})
TARGET_P99_MS = 50  # the target under load
SIMULATOR_LINE = re.compile(r"published (\d+) messages to (\S+), (\d+) msg/s")
# `--smoke`: seconds instead of minutes, both phases and the simulator all the same, for `make test`.
SMOKE: dict[str, Any] = {"probes": 5, "warmup_probes": 2, "warmup_seconds": 2, "rate": 500}


class BenchError(Exception):
    """Something kept the benchmark from measuring; the message is for the person who ran it."""


class ProbeTimeoutError(BenchError):
    """A probe's alarm change did not arrive in time."""


class ChangeRecorder:
    """An alarm listener that timestamps the probe's changes and counts all other changes by rule."""

    def __init__(self) -> None:
        self.changes: queue.SimpleQueue[tuple[str, int]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        # Other rules on the probe's pump: the step is chosen to trip none, and this says whether it did.
        self._side_effects: Counter[str] = Counter()
        # Changes on other devices: normal operation should cause none.
        self._background: Counter[str] = Counter()

    def on_alarm_change(self, change: AlarmChange) -> None:
        now = time.perf_counter_ns()
        alarm = change.alarm
        if alarm.device_id == DEVICE and alarm.rule == RULE:
            self.changes.put((change.event.kind, now))
            return
        with self._lock:
            (self._side_effects if alarm.device_id == DEVICE else self._background)[alarm.rule] += 1

    def counts(self) -> tuple[Counter[str], Counter[str]]:
        """Copies of the other changes so far: (on the probe's device, on other devices), by rule."""
        with self._lock:
            return Counter(self._side_effects), Counter(self._background)


class Probe:
    """A gateway of its own that flips pump-2 between low and normal pressure and times each alarm change."""

    def __init__(self, broker: Broker, recorder: ChangeRecorder, timeout: float) -> None:
        self._recorder = recorder
        self._timeout = timeout
        self._last_ts = 0
        self.low = False  # the pressure last sent; the service starts on an empty state store
        connected = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"facmon-bench-probe-{uuid.uuid4().hex[:8]}")
        self._client.on_connect = lambda *_args: connected.set()
        # No network thread: `publish` then writes to the socket in the thread that took the start time, rather
        # than handing the packet to a thread that may wait for the GIL. PUBACKs are read in `pause`.
        self._client.connect(broker.host, broker.port)
        deadline = time.monotonic() + 10
        while not connected.is_set():
            if time.monotonic() > deadline:
                self.close()
                raise BenchError(f"the probe could not connect to {broker.url}")
            self._client.loop(0.1)

    def send(self) -> float:
        """Publish the opposite pressure and return the milliseconds until its alarm change arrived."""
        self.low = not self.low
        expected = RAISES if self.low else RETURNS
        # Unique and increasing, as a gateway stamps them: telemetry rows are keyed by (device, field, ts).
        self._last_ts = max(time.time_ns() // 1_000_000, self._last_ts + 1)
        payload = orjson.dumps({"pressure_bar": LOW_BAR if self.low else NORMAL_BAR, "ts": self._last_ts})
        sent = time.perf_counter_ns()
        info = self._client.publish(TOPIC, payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise BenchError(f"the probe could not publish: {mqtt.error_string(info.rc)}")
        try:
            kind, arrived = self._recorder.changes.get(timeout=self._timeout)
        except queue.Empty:
            raise ProbeTimeoutError(f"no alarm change for {DEVICE} within {self._timeout:g} s of a probe") from None
        if kind not in expected:
            raise BenchError(f"{DEVICE}'s alarm went {kind!r}, expected one of {sorted(expected)}: who else publishes?")
        return (arrived - sent) / 1e6

    def pause(self, seconds: float) -> None:
        """Serve the connection (PUBACKs, keepalive) for `seconds`."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self._client.loop(left)

    def close(self) -> None:
        self._client.disconnect()


def measure(
    probe: Probe, count: int, pause: float, until: subprocess.Popen[bytes] | None = None
) -> tuple[list[float], str | None]:
    """`count` probes, `pause` s apart; stops early, and says why, on a probe's timeout or when `until` has ended."""
    latencies: list[float] = []
    for _ in range(count):
        if until is not None and until.poll() is not None:
            return latencies, "the background load ended; raise --load-seconds"
        try:
            latencies.append(probe.send())
        except ProbeTimeoutError as exc:
            return latencies, str(exc)
        probe.pause(pause)
    return latencies, None


def summary(latencies: list[float]) -> dict[str, Any]:
    if len(latencies) < 2:
        return {"probes": len(latencies), **({"max_ms": round(max(latencies), 2)} if latencies else {})}
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return {
        "probes": len(latencies),
        "p50_ms": round(cuts[49], 2),
        "p90_ms": round(cuts[89], 2),
        "p99_ms": round(cuts[98], 2),
        "max_ms": round(max(latencies), 2),
    }


def measure_idle(probe: Probe, count: int, pause: float) -> list[float]:
    latencies, stopped = measure(probe, count, pause)
    if stopped:
        raise BenchError(f"{stopped}, with no other traffic")
    return latencies


def background_config(broker: Broker, folder: Path) -> Path:
    """The example facility without the probe's pump, pointed at the benchmark's broker."""
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    data["mqtt"]["url"] = broker.url
    for site in data["sites"]:
        for building in site["buildings"]:
            # The simulator's pump-2 readings at 4.0 bar would return the probe's alarm behind its back.
            building["devices"] = [d for d in building["devices"] if d["id"] != DEVICE]
    path = folder / "background.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def start_background(config: Path, rate: float, seconds: float, folder: Path) -> subprocess.Popen[bytes]:
    facmon = Path(sys.executable).with_name("facmon")
    if not facmon.exists():
        raise BenchError(f"no facmon command beside {sys.executable}: run `make install` first")
    command = [str(facmon), "simulate", "--config", str(config), "--rate", f"{rate:g}", "--duration", f"{seconds:g}"]
    with (folder / "simulate.out").open("wb") as out, (folder / "simulate.err").open("wb") as err:
        # Its own session: Ctrl-C reaches this process alone, which then stops the simulator before the service.
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def finish_background(process: subprocess.Popen[bytes], folder: Path, timeout: float) -> tuple[int, int]:
    """Wait for the simulator's own end and read what it published from its last line."""
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        raise BenchError(f"facmon simulate did not finish within {timeout:.0f} s of its duration") from None
    out = (folder / "simulate.out").read_text(errors="replace").strip().splitlines()
    found = SIMULATOR_LINE.search(out[-1]) if out else None
    if process.returncode != 0 or found is None:
        err = (folder / "simulate.err").read_text(errors="replace").strip().splitlines()
        raise BenchError(f"facmon simulate exited {process.returncode}: {(err or out or ['no output'])[-1]}")
    return int(found[1]), int(found[3])


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise BenchError(f"not within {timeout:g} s: {what}")
        time.sleep(0.05)


def run(args: argparse.Namespace) -> dict[str, Any]:
    pause = args.pause_ms / 1000
    # Other work on the machine takes cores from the broker, the service and the simulator: show how much.
    load_average = round(os.getloadavg()[0], 2)
    with contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="facmon-bench-")))
        try:
            broker = start_broker("mosquitto")
        except BrokerError as exc:
            raise BenchError(f"{exc}; as root, `make system-deps` installs it") from None
        stack.callback(broker.stop)

        config = load_config(
            EXAMPLE,
            env={
                "FACMON_MQTT__URL": broker.url,
                "FACMON_MQTT__CLIENT_ID": f"facmon-bench-{uuid.uuid4().hex[:8]}",
                "FACMON_STORAGE__TELEMETRY__PATH": str(folder / "telemetry.db"),
                "FACMON_STORAGE__STATE_URL": f"sqlite:///{folder / 'state.db'}",
            },
        )
        service = Service(config, notifiers=[])
        recorder = ChangeRecorder()
        # First in line: the time stops when the change leaves the rule engine, not after the work-order policy.
        service.rules.listeners.insert(0, recorder)
        service.start()
        stack.callback(service.stop)
        if not service.subscriber.wait_connected(10):
            raise BenchError(f"the service did not connect to {broker.url} within 10 s")
        probe = Probe(broker, recorder, args.timeout)
        stack.callback(probe.close)

        # Not counted: the first probes open the SQLite connections and the alarm's work order.
        measure_idle(probe, args.warmup_probes, pause)
        side_before, _ = recorder.counts()
        idle = summary(measure_idle(probe, args.probes, pause))
        side_after, background_before = recorder.counts()
        idle["other_changes_on_probe_device"] = dict(side_after - side_before)

        received_before = service.pipeline.received
        # The simulator states its rate only when it ends by itself, so it is not stopped after the probes but
        # runs a fixed time: enough for start-up, warm-up and every probe at up to 250 ms.
        seconds = args.load_seconds or 5 + args.warmup_seconds + args.probes * (pause + 0.25)
        background = start_background(background_config(broker, folder), args.rate, seconds, folder)
        stack.callback(stop_process, background)
        wait_for(
            lambda: service.pipeline.received > received_before or background.poll() is not None,
            30,
            "background messages at the service",
        )
        # Steady state first: rules over a time window (pipe-burst: 30 s) keep that much history per device, and
        # each reading costs more until the window is full.
        time.sleep(args.warmup_seconds)

        window_start, received_start = time.monotonic(), service.pipeline.received
        latencies, stopped = measure(probe, args.probes, pause, until=background)
        window, received = time.monotonic() - window_start, service.pipeline.received - received_start - len(latencies)
        side_end, background_end = recorder.counts()
        published, achieved = finish_background(background, folder, seconds + 30)

        load = summary(latencies)
        load["p99_target_ms"] = TARGET_P99_MS
        load["other_changes_on_probe_device"] = dict(side_end - side_after)
        if stopped:
            # Slow probes are what this measures: report those that finished, and why the rest did not run.
            load["probes_planned"] = args.probes
            load["stopped"] = stopped
            print(
                f"alarm_latency: load phase stopped after {len(latencies)} of {args.probes} probes: {stopped}",
                file=sys.stderr,
            )
        load["background"] = {
            "target_msg_s": args.rate,
            "achieved_msg_s": achieved,
            "published": published,
            "ingested_during_probes": received,
            "ingest_msg_s": round(received / window),
            "alarm_changes": dict(background_end - background_before),
        }
    return {
        "benchmark": "alarm_latency",
        "smoke": args.smoke,
        "path": f"publish to {DEVICE} -> mosquitto -> ingest -> rules -> AlarmChange ({RULE})",
        "pause_between_probes_ms": args.pause_ms,
        "idle": idle,
        "load": load,
        "machine": {
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_1m_before": load_average,
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", type=int, default=200, help="timed probes per phase (default 200)")
    parser.add_argument("--warmup-probes", type=int, default=10, help="untimed probes before the first phase")
    parser.add_argument("--pause-ms", type=float, default=20, help="pause after each probe's change (default 20)")
    parser.add_argument("--rate", type=float, default=5000, help="background msg/s under load (default 5000)")
    parser.add_argument("--warmup-seconds", type=float, default=35, help="background load before timing (default 35)")
    parser.add_argument(
        "--load-seconds", type=float, help="how long the background load runs (default: enough for probes of 250 ms)"
    )
    parser.add_argument("--timeout", type=float, default=10, help="give up on a probe after this many s")
    smoke = " ".join(f"--{name.replace('_', '-')} {value}" for name, value in SMOKE.items())
    parser.add_argument("--smoke", action="store_true", help=f"seconds, not minutes, the same path: {smoke}")
    args = parser.parse_args(argv)
    if args.smoke:  # smaller defaults; options given on the command line still win
        parser.set_defaults(**SMOKE)
        args = parser.parse_args(argv)
    if args.probes < 2 or args.warmup_probes < 0 or args.rate <= 0:
        parser.error("--probes must be 2 or more, --warmup-probes 0 or more, --rate above 0")

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    # Hundreds of probe alarms in a few minutes are a flood by ISA-18.2's count; that warning is expected here.
    logging.getLogger("facmon.rules.flood").setLevel(logging.ERROR)
    # Without notifiers no step of a work order's paging reaches anyone, so it ends at once: expected here too.
    logging.getLogger("facmon.alerts.paging.escalation").setLevel(logging.ERROR)
    try:
        with sigterm_as_interrupt():
            result = run(args)
    except BenchError as exc:
        print(f"alarm_latency: {exc}", file=sys.stderr)
        return 1
    except ConfigError as exc:
        print(f"alarm_latency: {'; '.join(str(p) for p in exc.problems)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("alarm_latency: interrupted", file=sys.stderr)
        return 130
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
