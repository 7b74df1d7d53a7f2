"""Read workers (`--etcdpy-read-workers N`): processes beside the member that share its client
port, answer Range from its data dir read-only and hand writes to it in batches, so that the
cost of gRPC spreads over cores.

Member side: `pool.ReadWorkers` (start, restart, stop, push the member's `status`),
`control.ReadIndexAnswers` (the read index the workers ask for over their control sockets),
`writes.WriteAnswers` (Put, DeleteRange and Txn from the workers, over a Unix socket) and
`service` (etcdpy.internal.Worker on the member's gRPC server: Stats, and ReadIndex for
tools). Worker side (`python -m etcdpy.worker`): `main` composes `reader` (the state env
read-only), `readindex` + `control` (batched ReadIndex requests), `local` (Range and Stats),
`writes` (batched writes) and `passthrough` (every other call, to the member, byte for byte).
"""
