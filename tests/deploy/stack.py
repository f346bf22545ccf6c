"""The compose stack as Docker would see it, read from the files: docker-compose.yml, the Dockerfile, env.example.

Small readers, for what the deployment tests check and no more: the Dockerfile's final stage (ENV, VOLUME, USER,
HEALTHCHECK, COPY and its heredocs, RUN, CMD, ENTRYPOINT), compose's `${VAR}` interpolation, its volume mounts,
and the environment a service's container gets. `Stack.config` loads the configuration mounted into a service
with facmon's own `load_config`, in a folder laid out like the container's file system, so relative paths
resolve where they would in the container.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from facmon.config.facility import FacilityConfig
from facmon.config.loader import load_config

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / "deploy" / "env.example"

# The image's `facmon` wrapper (Dockerfile): FACMON_<KEY>_FILE for the settings named like secrets.
FILE_VARIABLE = re.compile(r"^(FACMON_[A-Za-z0-9_]*(?:PASSWORD|TOKEN|SECRET))_FILE$")


# --- Dockerfile -----------------------------------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str
    args: str
    heredocs: list[str] = field(default_factory=list)


@dataclass
class Dockerfile:
    """The final stage of a Dockerfile."""

    env: dict[str, str] = field(default_factory=dict)
    volumes: list[str] = field(default_factory=list)
    user: str | None = None
    healthcheck: str | None = None
    copies: dict[str, str] = field(default_factory=dict)  # destination -> source in the build context
    files: dict[str, str] = field(default_factory=dict)  # destination -> text, from COPY <<EOF
    runs: list[str] = field(default_factory=list)
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)


_HEREDOC = re.compile(r"<<-?([\"']?)([A-Za-z_][A-Za-z0-9_]*)\1")


def instructions(text: str) -> list[Instruction]:
    """The instructions, with continuation lines joined, comments dropped and heredoc bodies collected."""
    lines = text.splitlines()
    found: list[Instruction] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = [line.strip()]
        while parts[-1].endswith("\\") and i < len(lines):
            parts[-1] = parts[-1][:-1].strip()
            following = lines[i]
            i += 1
            if following.lstrip().startswith("#"):
                parts.append("\\")  # a comment inside a continued instruction is dropped, the instruction goes on
                continue
            parts.append(following.strip())
        joined = " ".join(p for p in parts if p and p != "\\")
        keyword, _, args = joined.partition(" ")
        bodies = []
        for match in _HEREDOC.finditer(args):
            body = []
            while i < len(lines) and lines[i] != match.group(2):
                body.append(lines[i])
                i += 1
            i += 1
            bodies.append("".join(f"{b}\n" for b in body))
        found.append(Instruction(keyword.upper(), args.strip(), bodies))
    return found


def _expand(value: str, env: Mapping[str, str]) -> str:
    """$VAR and ${VAR} from the ENV so far; a variable of the base image stays as it is."""
    pattern = r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)"
    return re.sub(pattern, lambda m: env.get(m.group(1) or m.group(2), m.group(0)), value)


def _exec_form(args: str) -> list[str]:
    return list(json.loads(args)) if args.startswith("[") else ["/bin/sh", "-c", args]


def read_dockerfile(text: str) -> Dockerfile:
    stage = Dockerfile()
    for ins in instructions(text):
        if ins.keyword == "FROM":
            stage = Dockerfile()
        elif ins.keyword == "ENV":
            tokens = shlex.split(ins.args)
            pairs = [t.split("=", 1) for t in tokens] if "=" in tokens[0] else [[tokens[0], " ".join(tokens[1:])]]
            for name, value in pairs:
                stage.env[name] = _expand(value, stage.env)
        elif ins.keyword == "VOLUME":
            stage.volumes += json.loads(ins.args) if ins.args.startswith("[") else ins.args.split()
        elif ins.keyword == "USER":
            stage.user = ins.args.split(":")[0]
        elif ins.keyword == "HEALTHCHECK":
            words = ins.args.split(" ")
            while words and words[0].startswith("--"):
                words.pop(0)
            if words and words[0] == "CMD":
                stage.healthcheck = " ".join(_exec_form(" ".join(words[1:])))
        elif ins.keyword in ("COPY", "ADD"):
            tokens = [t for t in shlex.split(ins.args, posix=False) if not t.startswith("--")]
            destination = tokens[-1]
            if ins.heredocs:
                stage.files[destination] = ins.heredocs[0]
            else:
                for source in tokens[:-1]:
                    stage.copies[destination] = source
        elif ins.keyword == "RUN":
            stage.runs.append(ins.args)
        elif ins.keyword == "ENTRYPOINT":
            stage.entrypoint = _exec_form(ins.args)
        elif ins.keyword == "CMD":
            stage.cmd = _exec_form(ins.args)
    return stage


# --- .env files -----------------------------------------------------------------------------------------------


@dataclass
class EnvFile:
    values: dict[str, str]  # NAME=value lines
    commented: dict[str, str]  # #NAME=value lines: listed, not set

    @property
    def listed(self) -> set[str]:
        return set(self.values) | set(self.commented)


def read_env_file(text: str) -> EnvFile:
    values: dict[str, str] = {}
    commented: dict[str, str] = {}
    for line in text.splitlines():
        match = re.fullmatch(r"(#?)([A-Za-z_][A-Za-z0-9_]*)=(.*)", line.strip())
        if match:
            (commented if match.group(1) else values)[match.group(2)] = match.group(3)
    return EnvFile(values, commented)


# --- compose --------------------------------------------------------------------------------------------------


class UnsetError(ValueError):
    """A ${VAR:?message} whose variable is unset or empty: compose refuses to start."""


_REFERENCE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(value: Any, env: Mapping[str, str], references: dict[str, bool]) -> Any:
    """Compose's interpolation of every string in a document; `references` gets each variable, True if required."""
    if isinstance(value, dict):
        return {k: interpolate(v, env, references) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, references) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        name = match.group("braced") or match.group("bare")
        op, arg = match.group("op"), match.group("arg") or ""
        references[name] = references.get(name, False) or (op or "").endswith("?")
        current = env.get(name)
        empty = current is None or (current == "" and (op or "").startswith(":"))
        if op and op.endswith("-") and empty:
            return arg
        if op and op.endswith("?") and empty:
            raise UnsetError(f"{name}: {arg}")
        return current or ""

    return _REFERENCE.sub(substitute, value)


@dataclass(frozen=True)
class Mount:
    source: str  # a volume's name, or a bind mount's host path as written
    target: str
    read_only: bool
    bind: bool


def mounts(service: Mapping[str, Any]) -> list[Mount]:
    found = []
    for entry in service.get("volumes", []):
        if isinstance(entry, dict):
            source, target = str(entry.get("source", "")), str(entry["target"])
            found.append(Mount(source, target, bool(entry.get("read_only")), entry.get("type") == "bind"))
            continue
        parts = str(entry).split(":")
        source, target = (parts[0], parts[1]) if len(parts) > 1 else ("", parts[0])
        mode = parts[2].split(",") if len(parts) > 2 else []
        found.append(Mount(source, target, "ro" in mode, source.startswith((".", "/", "~"))))
    return found


def mount_of(path: PurePosixPath, service_mounts: list[Mount]) -> Mount | None:
    """The mount a container path lies on: the deepest one whose target contains it."""
    holding = [m for m in service_mounts if path == PurePosixPath(m.target) or PurePosixPath(m.target) in path.parents]
    return max(holding, key=lambda m: len(PurePosixPath(m.target).parts), default=None)


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    declared = service.get("environment") or {}
    if isinstance(declared, list):
        return {name: value for name, _, value in (str(e).partition("=") for e in declared)}
    return {str(k): "" if v is None else str(v) for k, v in declared.items()}


def command_line(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else shlex.split(str(value))


# --- the stack ------------------------------------------------------------------------------------------------


@dataclass
class Stack:
    """docker-compose.yml (interpolated with .env's values), the image it builds and the .env it reads."""

    compose: dict[str, Any]
    dockerfile: Dockerfile
    env_file: EnvFile
    references: dict[str, bool]  # every ${VAR} of the compose file: name -> required
    root: Path = ROOT

    @classmethod
    def read(
        cls,
        compose_text: str | None = None,
        dockerfile_text: str | None = None,
        env_text: str | None = None,
        *,
        env: Mapping[str, str] | None = None,
    ) -> Stack:
        """The repository's stack, or one made of other texts; `env` instead of env.example's values for .env."""
        env_file = read_env_file(env_text if env_text is not None else ENV_EXAMPLE.read_text(encoding="utf-8"))
        references: dict[str, bool] = {}
        raw = yaml.safe_load(compose_text if compose_text is not None else COMPOSE.read_text(encoding="utf-8"))
        compose = interpolate(raw, env if env is not None else env_file.values, references)
        dockerfile = read_dockerfile(
            dockerfile_text if dockerfile_text is not None else DOCKERFILE.read_text(encoding="utf-8")
        )
        return cls(compose, dockerfile, env_file, references)

    @property
    def services(self) -> dict[str, dict[str, Any]]:
        return dict(self.compose["services"])

    def service(self, name: str) -> dict[str, Any]:
        return dict(self.compose["services"][name])

    def builds(self, name: str) -> bool:
        return "build" in self.service(name)

    def container_env(self, name: str) -> dict[str, str]:
        """What a service's container gets: the image's ENV (for the image built here), its env_file, environment."""
        service = self.service(name)
        env = dict(self.dockerfile.env) if self.builds(name) else {}
        env_files = service.get("env_file") or []
        for env_file in [env_files] if isinstance(env_files, str) else env_files:
            path = env_file if isinstance(env_file, str) else env_file["path"]
            assert path == ".env", f"{name}: env_file {path}: only .env is known here"
            env.update(self.env_file.values)
        env.update(environment(service))
        return env

    def mounts(self, name: str) -> list[Mount]:
        return mounts(self.service(name))

    def command(self, name: str) -> list[str]:
        service = self.service(name)
        if "command" in service:
            return command_line(service["command"])
        return list(self.dockerfile.cmd) if self.builds(name) else []

    def config_path(self, name: str) -> PurePosixPath:
        command = self.command(name)
        return PurePosixPath(command[command.index("--config") + 1])

    def host_file(self, name: str, path: PurePosixPath) -> Path:
        """The file of this repository that a service's container sees at `path`: bind-mounted, or in the image."""
        for mount in self.mounts(name):
            if mount.bind and PurePosixPath(mount.target) == path:
                return self.root / mount.source
        return self.root / self.dockerfile.copies[str(path)]

    def config(self, name: str, container_root: Path, env: Mapping[str, str] | None = None) -> FacilityConfig:
        """The service's facility configuration, loaded by facmon from a copy at its place under `container_root`.

        The environment is the container's (or `env`), after the image's `facmon` wrapper: each FACMON_<KEY>_FILE
        becomes FACMON_<KEY> with a stand-in for the file's content, which exists only in the running stack.
        """
        path = self.config_path(name)
        copy = container_root / path.relative_to("/")
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.host_file(name, path), copy)
        return load_config(copy, env=after_wrapper(self.container_env(name) if env is None else env))


def after_wrapper(env: Mapping[str, str]) -> dict[str, str]:
    result = dict(env)
    for name in list(result):
        match = FILE_VARIABLE.match(name)
        if match:
            path = result.pop(name)
            result.setdefault(match.group(1), "from-file-" + hashlib.sha256(path.encode()).hexdigest()[:32])
    return result


def in_container(path: Path, container_root: Path) -> PurePosixPath:
    """A path of a loaded config as the container sees it."""
    return (
        PurePosixPath("/", path.relative_to(container_root))
        if path.is_relative_to(container_root)
        else PurePosixPath(path)
    )


def written_files(config: FacilityConfig, container_root: Path) -> dict[str, PurePosixPath]:
    """Every file `facmon serve` creates and writes, by the key path of the setting that names it."""
    storage = config.storage
    found = {"storage.spool.path": in_container(storage.spool.path, container_root)}
    if storage.telemetry.backend == "sqlite":
        found["storage.telemetry.path"] = in_container(storage.telemetry.path, container_root)
    url = storage.state_url
    if url.startswith("sqlite:///") and not url.endswith(":memory:"):
        found["storage.state_url"] = in_container(Path(url[len("sqlite:///") :]), container_root)
    return found


Edit = Callable[[str], str]


def edited(text: str, old: str, new: str) -> str:
    """`text` with `old` replaced once; fails when `old` is not there, so a negative case cannot go stale."""
    assert text.count(old) == 1, f"{old!r} is not in the text once"
    return text.replace(old, new)
