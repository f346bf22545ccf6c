"""Paging the people on call: who is on call, escalation until someone acknowledges, and signed acknowledge links."""
