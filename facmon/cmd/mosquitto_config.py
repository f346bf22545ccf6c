"""`facmon mosquitto-config`: Mosquitto's password file and ACL, generated from the facility config.

Each gateway's broker account may publish the telemetry of the device types it serves in its own site, and its
own status (and will), and read nothing. A gateway serves the types its `device_types` names; one without
`device_types` serves its site's devices that no other gateway's types cover. facmon's own account reads
everything under the topic prefix and publishes only to the topics of its MQTT notification channels (a `{to}`
in a channel's topic is a `+` there). Each receiver of a channel (a pager, a siren) has an account that may
read the channel's topics for its own addresses and nothing else, and publish nothing.

A re-run keeps every password already handed out: an account without a password in the config keeps its entry
in the existing password file, and only a new one gets a generated password, printed once. Both files are
written 0600: the ACL says which account reads whose pages, and Mosquitto (from 2.0.17) warns that it will
refuse to load either file when others may read it.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
import shlex
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from pydantic import SecretStr

from facmon.config.facility import FacilityConfig
from facmon.config.notifications import BROADCAST_TO, MqttChannel, MqttReceiver
from facmon.facility.topics import gateway_status_topic, telemetry_topic

# mosquitto_passwd's defaults for its `$7$` (PBKDF2-SHA512) format. The broker hashes on every CONNECT, so
# the iteration count is a cost per login; generated passwords carry 192 random bits and need no more.
ITERATIONS = 101
SALT_BYTES = 12  # Mosquitto 2.0 rejects an entry whose salt is not exactly 12 bytes
PASSWORD_BYTES = 24


class MosquittoConfigError(ValueError):
    """The config or the existing password file does not allow writing the broker's files."""


@dataclass(frozen=True, slots=True)
class Account:
    """A broker user and the password the config gives it, if any."""

    user: str
    password: str | None
    label: str  # how the account is named in what the command prints
    source: str  # where its password would be set


@dataclass(slots=True)
class PasswdPlan:
    """The password file to write, and what changed against the existing one."""

    entries: dict[str, str] = field(default_factory=dict)  # user -> hash, in file order
    generated: list[tuple[Account, str]] = field(default_factory=list)
    changed: list[Account] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    def render(self) -> str:
        return "".join(f"{user}:{hashed}\n" for user, hashed in self.entries.items())


def hash_password(password: str, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """A password in Mosquitto 2.0's `$7$ITERATIONS$base64(salt)$base64(PBKDF2-SHA512)` format."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def check_password(password: str, hashed: str) -> bool:
    """Whether a `$7$` entry is this password's; False for any other or malformed entry."""
    parts = hashed.split("$")
    if len(parts) != 5 or parts[:2] != ["", "7"] or not parts[2].isdigit():
        return False
    try:
        salt = base64.b64decode(parts[3], validate=True)
        expected = base64.b64decode(parts[4], validate=True)
    except ValueError:
        return False
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, int(parts[2]))
    return hmac.compare_digest(digest, expected)


def accounts(config: FacilityConfig) -> list[Account]:
    """facmon's own account first, then one per gateway, then one per receiver of an MQTT channel, in config order."""
    username = config.mqtt.username
    if username is None:
        raise MosquittoConfigError(
            "mqtt.username is not set: mosquitto-config needs facmon's own broker user "
            "(set it in the config or as FACMON_MQTT__USERNAME)"
        )
    _check_text(username, "mqtt.username", user=True)
    _check_text(config.mqtt.topic_prefix, "mqtt.topic_prefix")
    found = [Account(username, _secret(config.mqtt.password, "mqtt.password"), f"user {username}", "mqtt.password")]
    for s, site in enumerate(config.sites):
        for g, gateway in enumerate(site.gateways):
            where = f"sites.{s}.gateways.{g}.password"
            found.append(Account(gateway.id, _secret(gateway.password, where), f"gateway {gateway.id}", where))
    for name, _, r, receiver in receivers(config):
        where = f"notifications.channels.{name}.receivers.{r}.password"
        found.append(Account(receiver.id, _secret(receiver.password, where), f"receiver {receiver.id}", where))
    return found


def mqtt_channels(config: FacilityConfig) -> list[tuple[str, MqttChannel]]:
    """The MQTT notification channels, by name, in config order."""
    return [(n, c) for n, c in config.notifications.channels.items() if isinstance(c, MqttChannel)]


def receivers(config: FacilityConfig) -> list[tuple[str, MqttChannel, int, MqttReceiver]]:
    """Every receiver of an MQTT channel, with its channel's name, the channel, and its place in the list."""
    return [(n, c, r, receiver) for n, c in mqtt_channels(config) for r, receiver in enumerate(c.receivers)]


def write_filter(channel: MqttChannel) -> str:
    """The topic filter facmon may publish a channel's messages to: each level with `{to}` in it becomes `+`.

    A `{to}` that is only part of a level (`pager-{to}`) makes the whole level `+`: a filter has no partial
    wildcard.
    """
    return "/".join("+" if "{to}" in level else level for level in channel.topic.split("/"))


def read_topics(channel: MqttChannel, receiver: MqttReceiver) -> list[str]:
    """The topics a receiver may read: the channel's topic for each of its addresses, or the one topic."""
    if not channel.addressed:
        return [channel.topic]
    return list(dict.fromkeys(channel.topic_for(to) for to in receiver.to))


def read_passwd(path: Path) -> dict[str, str]:
    """user -> hash of an existing password file; empty when there is none."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except UnicodeDecodeError:
        raise MosquittoConfigError(f"{path}: not a Mosquitto password file (not UTF-8)") from None
    entries: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not user.strip() or not hashed.strip():
            raise MosquittoConfigError(f"{path}:{number}: not a 'user:hash' line of a Mosquitto password file")
        entries.setdefault(user.strip(), hashed.strip())
    return entries


def plan_passwd(
    wanted: list[Account],
    existing: dict[str, str],
    new_password: Callable[[], str] = lambda: secrets.token_urlsafe(PASSWORD_BYTES),
) -> PasswdPlan:
    """Keep what still holds, hash what the config sets, generate what is missing, drop who is gone."""
    plan = PasswdPlan()
    for account in wanted:
        old = existing.get(account.user)
        if account.password is not None:
            if old is not None and check_password(account.password, old):
                plan.entries[account.user] = old
            else:
                plan.entries[account.user] = hash_password(account.password)
                if old is not None:
                    plan.changed.append(account)
        elif old is not None:
            plan.entries[account.user] = old
        else:
            password = new_password()
            plan.entries[account.user] = hash_password(password)
            plan.generated.append((account, password))
    plan.dropped = [user for user in existing if user not in plan.entries]
    return plan


def render_acl(config: FacilityConfig, command: str) -> str:
    """The acl_file: each gateway writes its device types' telemetry and its own status; facmon reads everything
    and writes its notification channels' topics; each receiver reads its own messages."""
    prefix = config.mqtt.topic_prefix
    channels = mqtt_channels(config)
    writes = list(dict.fromkeys(write_filter(channel) for _, channel in channels))
    lines = [
        "# Mosquitto ACL generated from the facility config by",
        f"#   {command}",
        "# Do not edit: change the config, run the command again, then make mosquitto reload (kill -HUP).",
        "# Anything not granted here is denied.",
        "",
        (
            "# facmon reads all that the gateways publish, and publishes to the topics of its notification "
            f"channels: {', '.join(_label(name) for name, _ in channels)}."
            if channels
            else "# facmon reads all that the gateways publish and publishes nothing itself."
        ),
        f"user {config.mqtt.username}",
        f"topic read {prefix}/#",
        *(f"topic write {topic}" for topic in writes),
    ]
    for site in config.sites:
        for gateway in site.gateways:
            types = site.types_served_by(gateway)
            serves = f"{', '.join(types)} telemetry" if types else "no device type"
            lines += [
                "",
                f"# {_label(gateway.name or gateway.id)}, site {site.id}: {serves}, its own status and will.",
                f"user {gateway.id}",
                *(f"topic write {telemetry_topic(prefix, site.id, t, '+')}" for t in types),
                f"topic write {gateway_status_topic(prefix, site.id, gateway.id)}",
            ]
    for name, channel, _, receiver in receivers(config):
        lines += [
            "",
            f"# {_label(receiver.name or receiver.id)}, receiver of channel {_label(name)}: "
            + (f"reads the messages to {', '.join(receiver.to)}." if channel.addressed else "reads its messages."),
            f"user {receiver.id}",
            *(f"topic read {topic}" for topic in read_topics(channel, receiver)),
        ]
    return "\n".join(lines) + "\n"


def _label(text: str) -> str:
    # A line break in a display name would end the comment and make the rest of the name a rule.
    return " ".join(text.split())


def write_mosquitto_config(
    config: FacilityConfig,
    out_dir: Path,
    *,
    config_path: Path,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> None:
    """Write `out_dir/passwd` and `out_dir/acl`; print generated passwords on stdout, notes on stderr."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    wanted = accounts(config)
    if not out_dir.is_dir():
        raise MosquittoConfigError(f"{out_dir}: no such directory")
    passwd_path, acl_path = out_dir / "passwd", out_dir / "acl"
    plan = plan_passwd(wanted, read_passwd(passwd_path))
    if not config.mqtt.tls:
        print(
            f"facmon: warning: mqtt.url is {config.mqtt.url}, not mqtts://: "
            "broker passwords travel in clear text without TLS",
            file=stderr,
        )
    for site in config.sites:
        for gateway in site.gateways:
            if not site.types_served_by(gateway):
                print(
                    f"facmon: warning: gateway {gateway.id} of site {site.id} may publish no telemetry: "
                    "give it device_types, or add devices that no other gateway of its site serves",
                    file=stderr,
                )
    for line in _unread(config):
        print(f"facmon: warning: {line}", file=stderr)
    command = shlex.join(["facmon", "mosquitto-config", "--config", str(config_path), "--out", str(out_dir)])
    changed = _replace(passwd_path, plan.render(), mode=0o600)
    changed |= _replace(acl_path, render_acl(config, command), mode=0o600)

    for user in plan.dropped:
        print(f"facmon: removed user {user!r} from {passwd_path}: it is not in the config", file=stderr)
    for account in plan.changed:
        print(f"facmon: new password for {account.label} from {account.source}", file=stderr)
    users = len(plan.entries)
    if changed:
        print(
            f"facmon: wrote {passwd_path} ({users} users) and {acl_path}; make mosquitto reload them: kill -HUP",
            file=stderr,
        )
    else:
        print(f"facmon: {passwd_path} ({users} users) and {acl_path} are up to date", file=stderr)
    if plan.generated:
        print("New broker passwords. Only their hashes are kept: they will not be shown again.", file=stdout)
        for account, password in plan.generated:
            hint = " (facmon's own: set it as FACMON_MQTT__PASSWORD)" if account.source == "mqtt.password" else ""
            print(f"{account.label}: {password}{hint}", file=stdout)


def _unread(config: FacilityConfig) -> list[str]:
    """What an MQTT channel publishes that no receiver's account may read: messages nobody will get."""
    found: list[str] = []
    for name, channel in mqtt_channels(config):
        if not channel.receivers:
            found.append(
                f"notification channel {name} has no receivers: no device's account may read {channel.topic} "
                "(give the channel its receivers)"
            )
            continue
        if not channel.addressed:
            continue
        read = {to for receiver in channel.receivers for to in receiver.to}
        for person in config.oncall.people:
            address = person.contacts.get(name)
            if address and address not in read:
                found.append(
                    f"no receiver of channel {name} reads the pages to {person.id} ({channel.topic_for(address)})"
                )
        if BROADCAST_TO not in read:
            found.append(
                f"no receiver of channel {name} reads its messages to everyone ({channel.topic_for(BROADCAST_TO)})"
            )
    return found


def _secret(value: SecretStr | None, where: str) -> str | None:
    if value is None:
        return None
    password = value.get_secret_value()
    if not password:
        raise MosquittoConfigError(f"{where} is empty: leave it unset to keep or generate a password")
    return password


def _check_text(value: str, where: str, *, user: bool = False) -> None:
    # A newline would end the ACL line and start another rule; ':' ends a user name in the password file.
    if user:
        ok = bool(value) and value == value.strip() and ":" not in value and value.isprintable()
        what = "user name (no ':', control characters or surrounding spaces)"
    else:
        ok = value.isprintable()
        what = "topic prefix (no control characters)"
    if not ok:
        raise MosquittoConfigError(f"{where} {value!r} cannot be a broker {what}")


def _replace(path: Path, text: str, *, mode: int) -> bool:
    """Write through a temporary file and a rename, unless unchanged; a replaced file keeps its owner and group."""
    old: os.stat_result | None
    try:
        old = path.stat()
    except FileNotFoundError:
        old = None
    if old is not None and old.st_mode & 0o777 == mode and path.read_bytes() == text.encode():
        return False  # leave the file, its time and its inode alone
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        Path(tmp).chmod(mode)
        if old is not None:
            # As root (for instance in a container), the broker's user keeps being able to read its file.
            with contextlib.suppress(PermissionError):
                os.chown(tmp, old.st_uid, old.st_gid)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True
