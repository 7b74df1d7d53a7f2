"""Generated protobuf and gRPC modules for etcdpy. Do not edit: run scripts/genproto.

Every message here is registered in POOL, a descriptor pool private to etcdpy, rather than in
protobuf's process-wide default pool, so that another copy of etcd's protos loaded in the same
process (another etcd client library) cannot collide with ours.
"""

from google.protobuf import descriptor_pool as _descriptor_pool

POOL = _descriptor_pool.DescriptorPool()

# Versions of the generators that produced these files (checked by tests/test_proto.py).
GENERATED_WITH = {'grpcio-tools': '1.85.1', 'mypy-protobuf': '5.1.0'}
