"""Notifications: the channels that carry messages to people, the outbox that delivers and retries them, redaction."""
