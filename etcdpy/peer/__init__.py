"""etcdpy.peer: the member-to-member transport on the peer port (2380).

Raft messages travel over gRPC (`etcdpy._pb.peerpb`): one long-lived bidirectional stream per
peer carrying batches, and a separate chunked stream per snapshot. The same port answers
etcd's peer HTTP `GET /members` and `GET /version` (see `etcdpy.netshare`). This package knows
`etcdpy.raft` value types and nothing of storage or the server: incoming messages go to a
`MessageSink` the node implements.
"""
