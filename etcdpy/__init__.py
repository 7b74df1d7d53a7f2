"""etcdpy: an etcd-compatible, Raft-replicated key-value server."""

__version__ = "0.1.0"

# The etcd version we report to clients (Status.version, /version): clients gate
# features on it, e.g. kube-apiserver needs >= 3.5.13 for RequestWatchProgress.
ETCD_SERVER_VERSION = "3.5.17"
ETCD_CLUSTER_VERSION = "3.5.0"
