"""The facility: the domain types every part shares, the payload and topic contracts, and the state store."""
