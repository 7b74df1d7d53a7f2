"""The errors a request can end with, each carrying etcd's exact gRPC code and message.

clientv3 turns server errors back into typed errors by matching the message text exactly
(`rpctypes.errStringToError`), and Patroni matches texts and code numbers too: wording and
code must both be etcd's. The server raises these; `server/api/` maps them onto the wire.
The code is the gRPC status code *name* so this module needs no grpc import.
"""

from __future__ import annotations


class EtcdError(Exception):
    """A request failure with etcd's gRPC status code name and message."""

    code: str = "UNKNOWN"
    message: str = "etcdserver: unknown error"

    def __init__(self, message: str | None = None) -> None:
        if message is not None:
            self.message = message
        super().__init__(self.message)


def _error(name: str, code: str, message: str) -> type[EtcdError]:
    return type(name, (EtcdError,), {"code": code, "message": message})


# KV request validation.
EmptyKey = _error("EmptyKey", "INVALID_ARGUMENT", "etcdserver: key is not provided")
KeyNotFound = _error("KeyNotFound", "INVALID_ARGUMENT", "etcdserver: key not found")
ValueProvided = _error("ValueProvided", "INVALID_ARGUMENT", "etcdserver: value is provided")
LeaseProvided = _error("LeaseProvided", "INVALID_ARGUMENT", "etcdserver: lease is provided")
TooManyOps = _error(
    "TooManyOps", "INVALID_ARGUMENT", "etcdserver: too many operations in txn request"
)
DuplicateKey = _error(
    "DuplicateKey", "INVALID_ARGUMENT", "etcdserver: duplicate key given in txn request"
)
InvalidSortOption = _error("InvalidSortOption", "INVALID_ARGUMENT", "etcdserver: invalid sort option")
RequestTooLarge = _error("RequestTooLarge", "INVALID_ARGUMENT", "etcdserver: request is too large")

# MVCC.
Compacted = _error(
    "Compacted", "OUT_OF_RANGE", "etcdserver: mvcc: required revision has been compacted"
)
FutureRevision = _error(
    "FutureRevision", "OUT_OF_RANGE", "etcdserver: mvcc: required revision is a future revision"
)
NoSpace = _error("NoSpace", "RESOURCE_EXHAUSTED", "etcdserver: mvcc: database space exceeded")
TooManyRequests = _error("TooManyRequests", "RESOURCE_EXHAUSTED", "etcdserver: too many requests")

# Leases.
LeaseNotFound = _error("LeaseNotFound", "NOT_FOUND", "etcdserver: requested lease not found")
LeaseExists = _error("LeaseExists", "FAILED_PRECONDITION", "etcdserver: lease already exists")
LeaseTTLTooLarge = _error("LeaseTTLTooLarge", "OUT_OF_RANGE", "etcdserver: too large lease TTL")

# Membership.
MemberNotFound = _error("MemberNotFound", "NOT_FOUND", "etcdserver: member not found")
MemberExists = _error("MemberExists", "FAILED_PRECONDITION", "etcdserver: member ID already exist")
PeerURLExists = _error("PeerURLExists", "FAILED_PRECONDITION", "etcdserver: Peer URLs already exists")
MemberBadURLs = _error(
    "MemberBadURLs", "INVALID_ARGUMENT", "etcdserver: given member URLs are invalid"
)
NotEnoughStartedMembers = _error(
    "NotEnoughStartedMembers",
    "FAILED_PRECONDITION",
    "etcdserver: re-configuration failed due to not enough started members",
)
MemberNotLearner = _error(
    "MemberNotLearner", "FAILED_PRECONDITION", "etcdserver: can only promote a learner member"
)
LearnerNotReady = _error(
    "LearnerNotReady",
    "FAILED_PRECONDITION",
    "etcdserver: can only promote a learner member which is in sync with leader",
)
TooManyLearners = _error(
    "TooManyLearners", "FAILED_PRECONDITION", "etcdserver: too many learner members in cluster"
)
NotSupportedForLearner = _error(
    "NotSupportedForLearner", "FAILED_PRECONDITION", "etcdserver: rpc not supported for learner"
)

# Leadership and availability.
NotLeader = _error("NotLeader", "FAILED_PRECONDITION", "etcdserver: not leader")
BadLeaderTransferee = _error(
    "BadLeaderTransferee", "FAILED_PRECONDITION", "etcdserver: bad leader transferee"
)
NoLeader = _error("NoLeader", "UNAVAILABLE", "etcdserver: no leader")
LeaderChanged = _error("LeaderChanged", "UNAVAILABLE", "etcdserver: leader changed")
Timeout = _error("Timeout", "UNAVAILABLE", "etcdserver: request timed out")
TimeoutDueToLeaderFail = _error(
    "TimeoutDueToLeaderFail",
    "UNAVAILABLE",
    "etcdserver: request timed out, possibly due to previous leader failure",
)
Stopped = _error("Stopped", "UNAVAILABLE", "etcdserver: server stopped")
UnhealthyCluster = _error("UnhealthyCluster", "UNAVAILABLE", "etcdserver: unhealthy cluster")
Corrupt = _error("Corrupt", "DATA_LOSS", "etcdserver: corrupt cluster")
Canceled = _error("Canceled", "CANCELLED", "etcdserver: request canceled")

# Auth (the service arrives later; the texts are what clients match).
InvalidAuthToken = _error("InvalidAuthToken", "UNAUTHENTICATED", "etcdserver: invalid auth token")
PermissionDenied = _error("PermissionDenied", "PERMISSION_DENIED", "etcdserver: permission denied")
AuthNotEnabled = _error(
    "AuthNotEnabled", "FAILED_PRECONDITION", "etcdserver: authentication is not enabled"
)
