"""Read workers (`--etcdpy-read-workers N`): processes beside the member that share its client
port and answer Range from its data dir read-only, so range throughput grows with cores.

Member side: `pool.ReadWorkers` (start, restart, stop) and `service` (the read index the
workers ask for). Worker side (`python -m etcdpy.worker`): `main` composes `reader` (the
state env read-only), `readindex` (batched ReadIndex calls), `local` (Range and Stats) and
`passthrough` (every other call, to the member, byte for byte).
"""
