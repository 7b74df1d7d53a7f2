"""Deterministic simulation of etcdpy.raft clusters (FoundationDB / TigerBeetle style).

Modules: network.py (SimNetwork: seeded delay, drop, duplicate, reorder, partitions),
disk.py (SimDisk: written vs synced, power loss), kv.py (the replicated state machine),
checkers.py (the invariants), profile.py (per-seed fault mix), node.py (one member's
process state), cluster.py (the driver: events, the Ready loop, liveness), result.py,
bugs.py (deliberate bugs for test_teeth), runner.py (many seeds; `scripts/sim`).
"""
