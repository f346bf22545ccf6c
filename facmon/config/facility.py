"""The whole config of a facility: every section, validated into one frozen model."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field, model_validator

from facmon.config.alarms import AlarmsConfig
from facmon.config.api import ApiConfig
from facmon.config.cluster import ClusterConfig
from facmon.config.ingest import IngestConfig
from facmon.config.maintenance import MaintenanceConfig
from facmon.config.mqtt import MqttConfig
from facmon.config.notifications import NotificationsConfig
from facmon.config.oncall import OncallConfig
from facmon.config.rules import RuleConfig
from facmon.config.sites import SiteConfig
from facmon.config.storage import StorageConfig
from facmon.config.types import SECTION, TimeZoneName
from facmon.config.work_orders import WorkOrdersConfig


class _Model(BaseModel):
    model_config = SECTION


class FacilityConfig(_Model):
    timezone: TimeZoneName = "UTC"
    mqtt: MqttConfig = MqttConfig()
    storage: StorageConfig = StorageConfig()
    api: ApiConfig = ApiConfig()
    ingest: IngestConfig = IngestConfig()
    sites: list[SiteConfig] = Field(min_length=1)
    rules: list[RuleConfig] = []
    alarms: AlarmsConfig = AlarmsConfig()
    work_orders: WorkOrdersConfig = WorkOrdersConfig()
    notifications: NotificationsConfig = NotificationsConfig()
    oncall: OncallConfig = OncallConfig()
    maintenance: MaintenanceConfig = MaintenanceConfig()
    cluster: ClusterConfig = ClusterConfig()

    @model_validator(mode="before")
    @classmethod
    def _storage_always_validated(cls, data: Any) -> Any:
        # The storage section's defaults hold relative paths: validate it even when absent so they get resolved.
        if isinstance(data, dict) and "storage" not in data:
            data = {**data, "storage": {}}
        return data

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)
