"""Ingest: MQTT telemetry in, decoded and validated, stored; readings handed on to the rules."""
