from __future__ import annotations

import pytest

from facmon.config.facility import FacilityConfig
from facmon.config.loader import load_config
from facmon.config.registry import DeviceRegistry
from facmon.rules.conditions import RuleSet
from tests.conftest import EXAMPLE


@pytest.fixture(scope="session")
def example() -> FacilityConfig:
    return load_config(EXAMPLE, env={})


@pytest.fixture(scope="session")
def registry(example: FacilityConfig) -> DeviceRegistry:
    return DeviceRegistry.from_config(example)


@pytest.fixture(scope="session")
def ruleset(example: FacilityConfig, registry: DeviceRegistry) -> RuleSet:
    return RuleSet.compile(example.rules, registry)
