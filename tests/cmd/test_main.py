"""The command line as a user meets it: a subprocess, its exit code, and what it prints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from facmon.cmd.broker import free_port
from facmon.simulators.scenario import shipped
from tests.conftest import EXAMPLE

TESTDATA = Path(__file__).parents[1] / "config" / "testdata"


def facmon(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "facmon", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
        input=input,
    )


def test_check_config_accepts_the_example() -> None:
    result = facmon("check-config", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{EXAMPLE}: ok (28 devices in 1 site(s), 17 rules)"


def test_check_config_prints_one_line_per_error_and_exits_1() -> None:
    result = facmon("check-config", str(TESTDATA / "bad-types.yaml"))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 5
    assert all(line.startswith(f"{TESTDATA / 'bad-types.yaml'}:") for line in lines)
    assert "Traceback" not in result.stderr and result.stdout == ""
    unknown = facmon("check-config", str(TESTDATA / "bad-unknown-key.yaml"))
    assert unknown.returncode == 1 and unknown.stderr.strip().endswith(":4: mqtt.colour: unknown key")


def test_missing_file_is_exit_1_without_traceback(tmp_path: Path) -> None:
    result = facmon("check-config", str(tmp_path / "none.yaml"))
    assert result.returncode == 1
    assert result.stderr.strip() == f"{tmp_path / 'none.yaml'}: cannot read the config: No such file or directory"


def test_usage_errors_exit_2() -> None:
    assert facmon().returncode == 2
    assert facmon("frobnicate").returncode == 2
    assert facmon("demo", "--speed", "-3").returncode == 2


def test_serve_with_unreachable_state_store_is_one_clear_line(tmp_path: Path) -> None:
    import os

    env = {
        **os.environ,
        "FACMON_STORAGE__STATE_URL": "postgresql://nobody@127.0.0.1:1/none",
        "FACMON_API__PORT": str(free_port()),
    }
    result = facmon("serve", "--config", str(EXAMPLE), env=env)
    assert result.returncode == 1
    [line] = [x for x in result.stderr.splitlines() if x.startswith("facmon: error:")]
    assert "cannot open the state store" in line and "Traceback" not in result.stderr


def test_serve_on_a_taken_port_is_one_clear_line(tmp_path: Path) -> None:
    import os
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            **os.environ,
            "FACMON_API__PORT": str(port),
            "FACMON_STORAGE__STATE_URL": f"sqlite:///{tmp_path / 's.db'}",
            "FACMON_STORAGE__TELEMETRY__PATH": str(tmp_path / "t.db"),
        }
        result = facmon("serve", "--config", str(EXAMPLE), env=env)
    assert result.returncode == 1
    assert result.stderr.strip().endswith(f"facmon: error: cannot listen on 127.0.0.1:{port}: Address already in use")


def test_simulate_lists_the_shipped_scenarios() -> None:
    result = facmon("simulate", "--list-scenarios")
    assert result.returncode == 0, result.stderr
    names = [line.split()[0] for line in result.stdout.splitlines() if not line.startswith(" ")]
    assert names == sorted(shipped())
    assert {"pressure-drop", "quiet-day"} <= set(names)
    [quiet] = [line for line in result.stdout.splitlines() if line.startswith("quiet-day ")]
    assert "A normal day in the example facility" in quiet


def test_simulate_with_an_unknown_scenario_is_one_line_naming_the_shipped_ones() -> None:
    result = facmon("simulate", "--config", str(EXAMPLE), "--scenario", "no-such-thing")
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("facmon: error: no scenario 'no-such-thing': one of ")
    assert all(name in line for name in shipped())
    assert result.stdout == ""


def test_simulate_with_a_scenario_the_facility_cannot_play_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "elsewhere.yaml"
    path.write_text("name: elsewhere\nduration: 1m\nevents:\n  - {at: 5s, gateway: gw-moon, fault: outage}\n")
    result = facmon("simulate", "--config", str(EXAMPLE), "--scenario", str(path))
    assert result.returncode == 1
    assert result.stderr.strip() == "facmon: error: scenario elsewhere: events.0: no gateway 'gw-moon' in the facility"


def test_simulate_usage_errors_exit_2() -> None:
    assert facmon("simulate").returncode == 2  # neither --config nor --load
    assert facmon("simulate", "--load", "--sites", "2").returncode == 2  # no --devices
    assert facmon("simulate", "--config", str(EXAMPLE), "--sites", "2").returncode == 2  # load option without --load
    assert facmon("simulate", "--config", str(EXAMPLE), "--fast", "--rate", "10").returncode == 2
    assert facmon("simulate", "--config", str(EXAMPLE), "--fast").returncode == 2  # a trace ending now: how long?


def test_user_add_list_and_token_add_revoke(tmp_path: Path) -> None:
    config = EXAMPLE
    env = {"FACMON_STORAGE__STATE_URL": f"sqlite:///{tmp_path / 'state.db'}"}
    added = facmon(
        "user",
        "add",
        "--config",
        str(config),
        "li.na",
        "--role",
        "operator",
        "--name",
        "李娜",
        input="a long enough password\n",
        env=env,
    )
    assert added.returncode == 0, added.stderr
    assert added.stdout == "user li.na added (operator)\n"
    again = facmon(
        "user", "add", "--config", str(config), "li.na", "--role", "admin", input="another password\n", env=env
    )
    assert again.returncode == 1 and again.stderr == "facmon: error: user 'li.na' exists\n"
    short = facmon("user", "add", "--config", str(config), "wang", "--role", "admin", input="short\n", env=env)
    assert short.returncode == 1 and "at least 10 characters" in short.stderr
    listed = facmon("user", "list", "--config", str(config), env=env)
    assert listed.stdout.split() == ["li.na", "operator", "李娜"]

    token = facmon("token", "add", "--config", str(config), "grafana", "--role", "viewer", "--expires", "90d", env=env)
    assert token.returncode == 0, token.stderr
    assert token.stdout.startswith("fmn_") and token.stdout.count("\n") == 1  # the token alone on stdout
    assert "it is shown only now" in token.stderr
    listed_tokens = facmon("token", "list", "--config", str(config), env=env)
    assert listed_tokens.stdout.split()[:4] == ["1", "grafana", "viewer", "until"]
    assert "never used" in listed_tokens.stdout and "fmn_" not in listed_tokens.stdout
    role = facmon("user", "role", "--config", str(config), "li.na", "engineer", env=env)
    assert role.stdout == "li.na is now engineer; their sessions have ended\n"
    disabled = facmon("user", "disable", "--config", str(config), "li.na", env=env)
    assert disabled.returncode == 0
    assert facmon("user", "list", "--config", str(config), env=env).stdout.split() == [
        "li.na",
        "engineer",
        "李娜",
        "disabled",
    ]
    revoked = facmon("token", "revoke", "--config", str(config), "1", env=env)
    assert revoked.stdout == "token 1 revoked\n"
    assert facmon("token", "revoke", "--config", str(config), "1", env=env).returncode == 1


def test_serve_and_check_config_refuse_placeholder_secrets(tmp_path: Path) -> None:
    env = {"FACMON_ONCALL__LINK_SECRET": "change-me-please-now", "FACMON_MQTT__PASSWORD": "secret"}
    checked = facmon("check-config", str(EXAMPLE), env=env)
    assert checked.returncode == 1
    assert checked.stderr.splitlines() == [
        f"{EXAMPLE}: mqtt.password: is a placeholder: set a real secret (only `facmon demo` runs with one)",
        f"{EXAMPLE}: oncall.link_secret: is a placeholder: set a real secret (only `facmon demo` runs with one)",
    ]
    served = facmon("serve", "--config", str(EXAMPLE), env=env)
    assert served.returncode == 1 and "Traceback" not in served.stderr
