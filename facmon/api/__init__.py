"""The HTTP API and the control-room dashboard."""
