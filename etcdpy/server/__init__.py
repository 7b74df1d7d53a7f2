"""The node: Raft driver loop, proposals and apply, reads, watches and leases (asyncio)."""
