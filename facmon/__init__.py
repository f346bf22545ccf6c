"""facmon: IoT facility monitoring and alerting."""

__version__ = "0.1.0"
