"""Alerts: what alarms set in motion — work orders and notifications to people."""
