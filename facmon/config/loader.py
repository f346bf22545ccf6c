"""Loading a config: one YAML file, with included rules, overridden from the environment, validated.

Unknown keys are errors. Every scalar may be overridden from the environment as `FACMON_<KEY>__<SUBKEY>…`.
Relative paths are relative to the config file's folder. `load_config` reports every problem at once, each
with its file, key path and line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from facmon.config.checks import check_references
from facmon.config.errors import ConfigError, ConfigProblem
from facmon.config.facility import FacilityConfig
from facmon.config.notifications import CHANNEL_TYPES
from facmon.config.types import Location, dotted

ENV_PREFIX = "FACMON_"


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> FacilityConfig:
    """Read, override from the environment, and validate a config file; raise ConfigError with every problem."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError([ConfigProblem(source, "", f"cannot read the config: {reason}")]) from None
    return parse_config(text, source=source, base_dir=path.resolve().parent, env=os.environ if env is None else env)


def parse_config(
    text: str, *, source: str = "<config>", base_dir: Path = Path(), env: Mapping[str, str] | None = None
) -> FacilityConfig:
    """Validate config text; `base_dir` anchors relative paths."""
    data, lines, problems = _parse_yaml(text, source)
    if problems:
        raise ConfigError(problems)
    included = _include_rules(data, lines, source, base_dir, problems)
    if problems:
        raise ConfigError(problems)
    env_sources = _apply_env(data, env or {}, problems)
    if problems:
        raise ConfigError(problems)

    def locate(loc: Location) -> tuple[str, int | None]:
        # A problem at, above or below a key that a variable set is that variable's.
        for set_path, variable in env_sources.items():
            n = min(len(loc), len(set_path))
            if loc[:n] == set_path[:n]:
                return f"environment {variable}", None
        where, where_lines = source, lines
        if len(loc) >= 2 and loc[0] == "rules" and loc[1] in included:
            where, where_lines, index = included[loc[1]]
            loc = (index, *loc[2:])
        for i in range(len(loc), -1, -1):
            if loc[:i] in where_lines:
                return where, where_lines[loc[:i]]
        return where, None

    try:
        config = FacilityConfig.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            loc = _key_path(err)
            where, line = locate(loc)
            problems.append(ConfigProblem(where, dotted(loc), _describe(err), line))
        raise ConfigError(_sorted(problems)) from None

    for loc, message in check_references(config):
        where, line = locate(loc)
        problems.append(ConfigProblem(where, dotted(loc), message, line))
    if problems:
        raise ConfigError(_sorted(problems))
    return config


def _parse_yaml(text: str, source: str) -> tuple[dict[str, Any], dict[Location, int], list[ConfigProblem]]:
    data, lines, problems = _parse_document(text, source)
    if problems:
        return {}, {}, problems
    if not isinstance(data, dict):
        return {}, {}, [ConfigProblem(source, "", "the config must be a mapping of sections (timezone, mqtt, …)")]
    return data, lines, problems


def _parse_document(text: str, source: str) -> tuple[Any, dict[Location, int], list[ConfigProblem]]:
    """YAML data with the line of every key path, and problems (bad YAML, keys given twice)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        line = mark.line + 1 if mark is not None else None
        return None, {}, [ConfigProblem(source, "", f"not valid YAML: {problem}", line)]
    lines: dict[Location, int] = {}
    problems: list[ConfigProblem] = []
    if node is not None:
        _index_lines(node, (), lines, problems, source)
    return data, lines, problems


def _include_rules(
    data: dict[str, Any], lines: dict[Location, int], source: str, base_dir: Path, problems: list[ConfigProblem]
) -> dict[int, tuple[str, dict[Location, int], int]]:
    """Replace each `- include: PATTERN` among the rules by the rules of the files it names.

    Returns, for every rule that came from an included file, that file, its line index and the rule's position
    in it, so problems point into the right file. `lines` is re-keyed for the rules that moved.
    """
    rules = data.get("rules")
    if not isinstance(rules, list):
        return {}
    merged: list[Any] = []
    included: dict[int, tuple[str, dict[Location, int], int]] = {}
    moved: dict[Location, int] = {}
    for i, item in enumerate(rules):
        if not (isinstance(item, dict) and set(item) == {"include"}):
            for loc, line in lines.items():
                if loc[:2] == ("rules", i):
                    moved[("rules", len(merged), *loc[2:])] = line
            merged.append(item)
            continue
        here = lines.get(("rules", i, "include"))
        pattern = item["include"]
        if not isinstance(pattern, str) or not pattern:
            problems.append(ConfigProblem(source, f"rules.{i}.include", "expected a file name or pattern", here))
            continue
        paths = sorted(base_dir.glob(pattern)) if not Path(pattern).is_absolute() else [Path(pattern)]
        paths = [p for p in paths if p.is_file()]
        if not paths:
            problems.append(ConfigProblem(source, f"rules.{i}.include", f"no file matches {pattern!r}", here))
            continue
        for path in paths:
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(ConfigProblem(str(path), "", f"cannot read the rules: {exc}"))
                continue
            content, file_lines, file_problems = _parse_document(text, str(path))
            problems.extend(file_problems)
            if file_problems:
                continue
            if not isinstance(content, list):
                problems.append(ConfigProblem(str(path), "", "a rules file is a list of rules", 1))
                continue
            for j, rule in enumerate(content):
                if isinstance(rule, dict) and "include" in rule:
                    problems.append(ConfigProblem(str(path), str(j), "includes do not nest", file_lines.get((j,))))
                    continue
                included[len(merged)] = (str(path), file_lines, j)
                merged.append(rule)
    data["rules"] = merged
    for loc in [loc for loc in lines if loc[:1] == ("rules",) and len(loc) > 1]:
        del lines[loc]
    lines.update(moved)
    return included


def _index_lines(
    node: yaml.Node, loc: Location, lines: dict[Location, int], problems: list[ConfigProblem], source: str
) -> None:
    lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: set[object] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                problems.append(
                    ConfigProblem(source, dotted((*loc, key)), "key given twice", key_node.start_mark.line + 1)
                )
            seen.add(key)
            child = (*loc, key)
            _index_lines(value_node, child, lines, problems, source)
            lines[child] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index_lines(item, (*loc, i), lines, problems, source)


def _apply_env(data: dict[str, Any], env: Mapping[str, str], problems: list[ConfigProblem]) -> dict[Location, str]:
    """Set FACMON_A__B__C=value as data[a][b][c]; return which paths came from which variable."""
    sources: dict[Location, str] = {}
    top_level = set(FacilityConfig.model_fields)
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX):
            continue
        parts = name[len(ENV_PREFIX) :].split("__")
        if parts[0].lower() not in top_level:
            if len(parts) > 1:  # FACMON_SOMETHING_ELSE without "__" is not ours to judge
                problems.append(ConfigProblem(f"environment {name}", "", f"unknown config section {parts[0]!r}"))
            continue
        try:
            sources[_set_path(data, parts, env[name])] = name
        except LookupError as exc:
            problems.append(ConfigProblem(f"environment {name}", "", str(exc.args[0])))
    return sources


def _set_path(data: dict[str, Any], parts: list[str], value: str) -> Location:
    """Walk `parts` from `data` and set `value` there; list entries by index, keys matched ignoring case."""
    target: Any = data
    path: list[str | int] = []
    for i, part in enumerate(parts):
        key: str | int
        if isinstance(target, list):
            if not part.isdigit() or int(part) >= len(target):
                raise LookupError(f"{dotted(tuple(path))} has {len(target)} entries: there is no entry {part}")
            key = int(part)
        elif isinstance(target, dict):
            # Variable names are upper case: match an existing key in any case, else take the lower-case name.
            key = next((k for k in target if isinstance(k, str) and k.lower() == part.lower()), part.lower())
        else:
            raise LookupError(f"{dotted(tuple(path))} is a single value, not a section")
        path.append(key)
        if i == len(parts) - 1:
            target[key] = value
        else:
            if isinstance(target, dict) and key not in target:
                target[key] = {}
            target = target[key]
    return tuple(path)


def _key_path(err: Mapping[str, Any]) -> Location:
    """The error's place in the file: a tagged union's tag is not a key there, the tag's own key is."""
    loc = tuple(err["loc"])
    if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
        return (*loc, "type")
    if len(loc) > 3 and loc[:2] == ("notifications", "channels") and loc[3] in CHANNEL_TYPES:
        return (*loc[:3], *loc[4:])
    return loc


_MESSAGES = {
    "extra_forbidden": "unknown key",
    "missing": "required key is missing",
    "union_tag_not_found": "required key is missing",
}


def _describe(err: Mapping[str, Any]) -> str:
    message = _MESSAGES.get(err["type"])
    if message:
        return message
    if err["type"] == "union_tag_invalid":
        ctx = err.get("ctx") or {}
        return f"{ctx.get('tag')!r} is not one of {ctx.get('expected_tags')}"
    text = str(err["msg"])
    text = re.sub(r"^Value error, ", "", text)
    value = err.get("input")
    if err["type"] == "string_type" and isinstance(value, bool):
        return f"{text} (got {str(value).lower()}: YAML reads yes, no, on and off as booleans; quote the text)"
    if err["type"] != "value_error" and isinstance(value, str | int | float | bool) and value is not None:
        shown = repr(value)
        text += f" (got {shown if len(shown) <= 60 else shown[:57] + '...'})"
    return text


def _sorted(problems: list[ConfigProblem]) -> list[ConfigProblem]:
    return sorted(problems, key=lambda p: (p.source, p.line if p.line is not None else 1 << 30, p.path))
