"""Deterministic simulation of etcdpy.raft clusters (FoundationDB / TigerBeetle style).

Modules: network.py (SimNetwork: seeded delay, drop, duplicate, reorder, partitions),
disk.py (SimDisk: written vs synced, power loss), kv.py (the replicated state machine),
checkers.py (the invariants), profile.py (per-seed fault mix), node.py (one member's
process state), cluster.py (the driver: events, the Ready loop, liveness), result.py,
bugs.py (deliberate bugs for test_teeth), runner.py (many seeds; `scripts/sim`).

`scripts/sim --server` runs the same faults against the real server layer instead of the
toy KV: server_node.py (one member: LMDB Raft log and MVCC state, Lessor, Applier, state
images), server_cluster.py (its driver), server_checks.py (state agreement, revision steps,
durability of acknowledged writes, linearizable reads), server_runner.py, and
test_server_sim.py.
"""
