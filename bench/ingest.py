"""Ingest drain: how fast a backlog of QoS 1 telemetry queued in Mosquitto is drained by each consumer.

N messages (realistic payloads from the simulators' device models, spread over the example facility's devices,
each with its own `ts` and `seq`) are queued in a private mosquitto (`max_queued_messages 0`) for a persistent
session while its consumer is away; then the consumer starts and drains them. Consumers, run in turn, round
after round (interleaved), each in a process of its own:

- `mosquitto_sub`: the raw ceiling of the broker and the loopback;
- `paho`: a bare paho-mqtt 2 client that only counts (auto acknowledgement): the ceiling of a Python consumer;
- `facmon`: facmon's ingest with validation, the SQLite telemetry store, presence and the rule engine over the
  example's rules, acknowledging each batch once it is stored and judged by the rules — one process;
- `facmon-x2`: two such processes on a shared subscription (`mqtt.shared_group`), each with its own stores.

A consumer's rate is N over the time from its start (before it connects) to its last message handled; the
figures are medians over the rounds. Prints one JSON object with every rate and the ratios to `paho`.
`make bench` runs it; `--smoke` runs the same in seconds; `--help` lists the options.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from facmon.cmd.broker import BrokerError, MosquittoBroker, free_port, start_broker
from facmon.config.errors import ConfigError
from facmon.config.loader import load_config
from facmon.config.registry import DeviceRegistry
from facmon.facility.topics import telemetry_filter, telemetry_topic
from facmon.simulators.devices import INTERVALS, model_for

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "facility.yaml"
PREFIX = "facility"
CONSUMERS = ("mosquitto_sub", "paho", "facmon", "facmon-x2")
TARGET_FACMON = 25_000
NODE_RED = 48_000  # a Node-RED 4 flow that parses, checks a threshold and counts, on the same backlog here
IDLE_EXIT_S = 3.0
# `--smoke`: seconds instead of minutes, every consumer and the pipeline runs, for `make test`.
SMOKE: dict[str, Any] = {"messages": 2000, "rounds": 1}


def backlog(n: int, seed: int, config_path: Path = EXAMPLE) -> list[tuple[str, bytes]]:
    """N (topic, payload) pairs over a facility's devices (the example's), each at its own interval."""
    config = load_config(config_path)
    devices = list(DeviceRegistry.from_config(config))
    models = [model_for(d, seed) for d in devices]
    per_device = -(-n // len(devices))
    now_ms = time.time_ns() // 1_000_000
    out: list[tuple[str, bytes]] = []
    for i in range(per_device):
        for model in models:
            if len(out) == n:
                break
            device = model.device
            interval_s = INTERVALS[device.type]
            sim_t = i * interval_s
            # The backlog ends a few seconds ago: every ts is in the past, in order per device.
            ts = now_ms - 5_000 - int((per_device - i) * interval_s * 1000)
            sample = model.sample(sim_t)
            if sample is None:  # only a fault (a sensor dropout) silences a model, and the backlog has none
                continue
            payload = {**sample, "ts": ts, "seq": i}
            out.append((telemetry_topic(PREFIX, device.site, device.type, device.id), orjson.dumps(payload)))
    return out


def mqtt5_session(client_id: str) -> tuple[mqtt.Client, Properties]:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    return client, props


def prepare_session(host: str, port: int, client_id: str, topic: str, v5: bool) -> None:
    """Create the consumer's persistent session and subscription, then leave: the broker queues for it."""
    done = threading.Event()
    if v5:
        client, props = mqtt5_session(client_id)
        client.on_subscribe = lambda *_: done.set()
        client.connect(host, port, clean_start=False, properties=props)
    else:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        client.on_subscribe = lambda *_: done.set()
        client.connect(host, port)
    client.loop_start()
    client.subscribe(topic, qos=1)
    if not done.wait(10):
        raise SystemExit(f"ingest: no SUBACK for {client_id}")
    client.disconnect()
    client.loop_stop()


def drop_session(host: str, port: int, client_id: str) -> None:
    """Remove a consumer's session, so that later rounds do not queue messages for it too."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    client.connect(host, port)
    client.loop_start()
    client.disconnect()
    client.loop_stop()


def publish_all(host: str, port: int, messages: list[tuple[str, bytes]]) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{os.getpid()}")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect(host, port)
    client.loop_start()
    # In chunks: paho numbers outgoing messages 1 to 65535 and refuses more waiting at once.
    for start in range(0, len(messages), 20_000):
        info = None
        for topic, payload in messages[start : start + 20_000]:
            info = client.publish(topic, payload, qos=1)
        if info is not None:
            info.wait_for_publish(300)
    client.disconnect()
    client.loop_stop()


# --- consumers, each run in a child process: `python bench/ingest.py --consume KIND …` -----------------------


def consume_paho(host: str, port: int, client_id: str, topic: str, expect: int) -> dict[str, Any]:
    count = 0
    last = 0.0
    finished = threading.Event()

    def on_message(_c: Any, _u: Any, _m: mqtt.MQTTMessage) -> None:
        nonlocal count, last
        count += 1
        last = time.monotonic()
        if count >= expect:
            finished.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    client.on_message = on_message
    start = time.monotonic()
    client.connect(host, port)
    client.loop_start()
    finished.wait(600)
    client.disconnect()
    client.loop_stop()
    return {"count": count, "start": start, "last": last}


def consume_facmon(config_path: Path, expect: int | None) -> dict[str, Any]:
    from facmon.cmd.service import Service

    config = load_config(config_path)
    service = Service(config, notifiers=[])
    pipeline = service.pipeline
    start = time.monotonic()
    service.start()
    seen, last, idle_since = 0, 0.0, time.monotonic()
    try:
        while True:
            time.sleep(0.01)  # coarse enough not to take the GIL from ingest often
            now = time.monotonic()
            received = pipeline.received
            if received != seen:
                seen, last, idle_since = received, now, now
            if (expect is not None and seen >= expect) or (seen and now - idle_since > IDLE_EXIT_S):
                break
            if now - start > 600:
                break
    finally:
        service.stop()
    return {"count": seen, "start": start, "last": last, "accepted": pipeline.accepted}


def facmon_config(
    work: Path, name: str, url: str, shared: bool, protocol: str, *, store_every_reject: bool = False
) -> Path:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["mqtt"] = {
        "url": url,
        "topic_prefix": PREFIX,
        "client_id": f"bench-{name}",
        "protocol": protocol,
    }
    if shared:
        data["mqtt"]["shared_group"] = "bench"
        # Mosquitto's round robin spreads a device's readings over the pair, which rules refuse: the pair ingests
        # without them. The partitioned cluster, with rules, is bench/cluster.py's.
        data["rules"] = []
    data["storage"] = {
        "telemetry": {"backend": "sqlite", "path": str(work / f"{name}-telemetry.db")},
        "spool": {"path": str(work / f"{name}-spool.db")},
        "state_url": f"sqlite:///{work / f'{name}-state.db'}",
    }
    if store_every_reject:
        # Every reject stored, none only counted: the costlier path, so the test of whether rejects slow the
        # accepted traffic is the strictest one. The default allowance (a burst of 300 per gateway) would store
        # a few hundred of the 10,000 and count the rest.
        data.setdefault("ingest", {})["rejects"] = {"rate": 1_000_000, "burst": 1_000_000}
    # The example's notification channels and on-call stay as they are, so that the config passes the same
    # check as the example; the consumers build `Service` with no notifiers, so nothing is sent.
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    load_config(path)  # the check of `facmon check-config`: a config it refuses fails here, not in a consumer
    return path


def pipeline_only(messages: list[tuple[str, bytes]], work: Path, reject_share: float) -> tuple[float, int, int]:
    """facmon's pipeline without MQTT, in batches of 1000: decode, duplicates, SQLite, presence, rules.

    With `reject_share`, that share of the messages is replaced by a malformed one (each stored as a reject in
    the state store), to see whether rejects slow the accepted traffic. Returns the rate, the rejects and how
    many of them were stored.
    """
    from facmon.cmd.service import Service
    from facmon.ingest.subscriber import Message

    work.mkdir(exist_ok=True)
    name = f"pipeline-{reject_share}"
    config = facmon_config(work, name, "mqtt://127.0.0.1:1", False, "3.1.1", store_every_reject=True)
    service = Service(load_config(config), notifiers=[])
    service.pipeline._acknowledge = lambda _message: None  # no broker to acknowledge to
    every = round(1 / reject_share) if reject_share else 0
    now_ms = time.time_ns() // 1_000_000
    batch = [
        Message(topic, b'{"pressure_bar": NaN}' if every and i % every == 0 else payload, i, 1, now_ms)
        for i, (topic, payload) in enumerate(messages)
    ]
    started = time.perf_counter()
    for i in range(0, len(batch), 1000):
        service.pipeline.process(batch[i : i + 1000])
    rate = len(batch) / (time.perf_counter() - started)
    rejects = service.pipeline.rejected.total()
    stored = rejects - service.reject_gate.status().rate_limited
    service.rules.flush(service.clock.now())
    service.spool.close()
    service.telemetry.close()
    service.state.close()
    return rate, rejects, stored


# --- the parent ------------------------------------------------------------------------------------------------


def child(args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE)


def result_of(proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=900)
    if proc.returncode != 0:
        raise SystemExit(f"ingest: a consumer failed (exit {proc.returncode})")
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


def run_round(
    kind: str, broker: MosquittoBroker, messages: list[tuple[str, bytes]], work: Path, r: int, protocol: str
) -> float:
    n = len(messages)
    host, port = broker.host, broker.port
    topic = telemetry_filter(PREFIX)
    if kind == "mosquitto_sub":
        client_id = f"bench-sub-{r}"
        prepare_session(host, port, client_id, topic, v5=False)
        publish_all(host, port, messages)
        start = time.monotonic()
        sub = shutil.which("mosquitto_sub") or "mosquitto_sub"
        subprocess.run(
            [sub, "-h", host, "-p", str(port), "-i", client_id, "-c", "-q", "1", "-t", topic, "-C", str(n)],
            stdout=subprocess.DEVNULL,
            check=True,
            timeout=600,
        )
        rate = n / (time.monotonic() - start)
        drop_session(host, port, client_id)
        return rate
    if kind == "paho":
        client_id = f"bench-paho-{r}"
        prepare_session(host, port, client_id, topic, v5=False)
        publish_all(host, port, messages)
        result = result_of(child(["--consume", "paho", "--port", str(port), "--client-id", client_id,
                                  "--expect", str(n)]))  # fmt: skip
        drop_session(host, port, client_id)
        return _rate(n, [result])
    names = [f"{kind}-{r}"] if kind == "facmon" else [f"{kind}-{r}-a", f"{kind}-{r}-b"]
    shared = kind == "facmon-x2"
    configs = [facmon_config(work, name, broker.url, shared, protocol) for name in names]
    for name in names:
        group = f"$share/bench/{topic}" if shared else topic
        prepare_session(host, port, f"bench-{name}", group, v5=protocol == "5")
    publish_all(host, port, messages)
    procs = [
        child(["--consume", "facmon", "--config", str(c), *(["--expect", str(n)] if not shared else [])])
        for c in configs
    ]
    results = [result_of(p) for p in procs]
    for name in names:
        drop_session(host, port, f"bench-{name}")
    return _rate(n, results)


def _rate(n: int, results: list[dict[str, Any]]) -> float:
    got = sum(r["count"] for r in results)
    if got != n:
        raise SystemExit(f"ingest: the consumer got {got} of {n} messages")
    return float(n / (max(r["last"] for r in results) - min(r["start"] for r in results)))


def run(args: argparse.Namespace) -> dict[str, Any]:
    load_average = round(os.getloadavg()[0], 2)
    kinds = args.only or list(CONSUMERS)
    if "mosquitto_sub" in kinds and not shutil.which("mosquitto_sub"):
        print("ingest: mosquitto_sub not found (apt-get install mosquitto-clients): skipping it", file=sys.stderr)
        kinds.remove("mosquitto_sub")
    messages = backlog(args.messages, args.seed)
    rates: dict[str, list[float]] = {k: [] for k in kinds}
    with tempfile.TemporaryDirectory(prefix="facmon-bench-") as tmp:
        try:
            broker = start_broker("mosquitto", free_port())
        except BrokerError as exc:
            raise SystemExit(f"ingest: {exc}; as root, `make system-deps` installs it") from None
        assert isinstance(broker, MosquittoBroker)
        try:
            for r in range(args.rounds):
                for kind in kinds:
                    rate = run_round(kind, broker, messages, Path(tmp), r, args.protocol)
                    rates[kind].append(rate)
                    print(f"round {r + 1}: {kind} {rate:,.0f} msg/s", file=sys.stderr)
        finally:
            broker.stop()
        # In this process, after the drains: the pipeline's own rate, and whether rejects slow it; each twice,
        # interleaved, the better run kept.
        runs: dict[str, list[float]] = {"no_rejects": [], "rejects_10pct": []}
        rejects = {"rejected": 0, "stored": 0}
        for attempt in range(2):
            for name, share in (("no_rejects", 0.0), ("rejects_10pct", 0.1)):
                rate, rejected, stored = pipeline_only(messages, Path(tmp) / f"p{attempt}", share)
                runs[name].append(rate)
                if share:
                    rejects = {"rejected": rejected, "stored": stored}
        pipeline = {name: round(max(rates_)) for name, rates_ in runs.items()}
    medians = {k: round(statistics.median(v)) for k, v in rates.items()}
    out: dict[str, Any] = {
        "benchmark": "ingest_drain",
        "smoke": args.smoke,
        "messages": args.messages,
        "rounds": args.rounds,
        "facmon_mqtt_protocol": args.protocol,
        "machine": {
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_1m_before": load_average,
        },
        "rates_msg_s": medians,
        "all_rates_msg_s": {k: [round(x) for x in v] for k, v in rates.items()},
        "pipeline_without_mqtt_msg_s": pipeline,
        # Of the run with rejects: every one is stored (the reject allowance is raised for it), none only counted.
        "pipeline_rejects": rejects,
    }
    paho = medians.get("paho")
    if paho:
        out["ratios_to_paho"] = {k: round(v / paho, 3) for k, v in medians.items() if k in ("facmon", "facmon-x2")}
    if "facmon" in medians:
        out["target_facmon_msg_s"] = TARGET_FACMON
        out["facmon_meets_target"] = medians["facmon"] >= TARGET_FACMON
    if "facmon-x2" in medians:
        out["node_red_msg_s"] = NODE_RED
        out["facmon_x2_ahead_of_node_red"] = medians["facmon-x2"] > NODE_RED
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000, help="backlog size (default 100000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of all consumers (default 3)")
    parser.add_argument("--only", choices=CONSUMERS, action="append", help="run only these consumers")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--protocol", choices=("3.1.1", "5"), default="3.1.1", help="facmon's MQTT version")
    smoke = " ".join(f"--{name.replace('_', '-')} {value}" for name, value in SMOKE.items())
    parser.add_argument("--smoke", action="store_true", help=f"seconds, not minutes, the same path: {smoke}")
    parser.add_argument("--consume", choices=("paho", "facmon"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--client-id", help=argparse.SUPPRESS)
    parser.add_argument("--config", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--expect", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.smoke:  # smaller defaults; options given on the command line still win
        parser.set_defaults(**SMOKE)
        args = parser.parse_args(argv)

    if args.consume == "paho":
        print(json.dumps(consume_paho("127.0.0.1", args.port, args.client_id, telemetry_filter(PREFIX), args.expect)))
        return 0
    if args.consume == "facmon":
        print(json.dumps(consume_facmon(args.config, args.expect)))
        return 0
    if args.messages < 1 or args.rounds < 1:
        parser.error("--messages and --rounds must be 1 or more")

    try:
        result = run(args)
    except ConfigError as exc:
        print(f"ingest: a config written for a consumer is refused:\n{exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ingest: interrupted", file=sys.stderr)
        return 130
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
