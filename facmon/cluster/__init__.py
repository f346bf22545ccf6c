"""The cluster: which worker holds which partition, and which one is the leader, by leases in the state store."""
