"""Alerts: what alarms set in motion — work orders, paging the people on call, and notifications."""
