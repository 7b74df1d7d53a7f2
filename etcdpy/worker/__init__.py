"""Read workers (`--etcdpy-read-workers N`): processes beside the member that share its client
port and answer Range from its data dir read-only, so range throughput grows with cores.

Member side: `pool.ReadWorkers` (start, restart, stop, push the member's `status`),
`control.ReadIndexAnswers` (the read index the workers ask for over their control sockets)
and `service` (etcdpy.internal.Worker on the member's gRPC server: Stats, and ReadIndex for
tools). Worker side (`python -m etcdpy.worker`): `main` composes `reader` (the state env
read-only), `readindex` + `control` (batched ReadIndex requests), `local` (Range and Stats)
and `passthrough` (every other call, to the member, byte for byte).
"""
