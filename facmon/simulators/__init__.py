"""Simulated devices and gateways that publish telemetry by the topic and payload contract."""
