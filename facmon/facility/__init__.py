"""The facility: its domain types, its configuration and the state store shared by every part."""
